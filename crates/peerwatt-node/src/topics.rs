//! What a node exposes besides its files: the gossip topics of its community, the commands a
//! running node takes and the events it tells its subscribers.

use peerwatt_core::{Community, Hash, IntervalId, Price, Side, Wh};
use peerwatt_market::Topic;
use tokio::sync::oneshot;

/// The gossip topics of one community: `peerwatt/<community id>/<name>/1`.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Orders (offers and bids).
    pub orders: String,
    /// Agreed trades, announced by their maker.
    pub trades: String,
    /// Signed ledger tree heads.
    pub heads: String,
    /// Signed meter statements.
    pub statements: String,
}

impl Topics {
    /// The topics of `community`.
    pub fn of(community: &Community) -> Topics {
        let id = community.id.0.to_hex();
        let name = |t: Topic| format!("peerwatt/{id}/{}/1", t.name());
        Topics {
            orders: name(Topic::Orders),
            trades: name(Topic::Trades),
            heads: name(Topic::Heads),
            statements: name(Topic::Statements),
        }
    }

    /// All of them.
    pub fn all(&self) -> Vec<String> {
        Topic::ALL.iter().map(|t| self.name(*t).to_owned()).collect()
    }

    /// The name of `topic`.
    pub fn name(&self, topic: Topic) -> &str {
        match topic {
            Topic::Orders => &self.orders,
            Topic::Trades => &self.trades,
            Topic::Heads => &self.heads,
            Topic::Statements => &self.statements,
        }
    }

    /// The topic named `name`, if it is one of these.
    pub fn topic(&self, name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| self.name(*t) == name)
    }
}

/// What can be asked of a running node.
#[derive(Debug)]
pub enum NodeCommand {
    /// Place an order by hand (outside the strategy), and take what it crosses at once.
    PlaceOrder {
        /// The delivery interval.
        interval: IntervalId,
        /// Sell or buy.
        side: Side,
        /// Energy (0 cancels the node's order there).
        energy: Wh,
        /// Limit price.
        price: Price,
        /// The order's id, or why it was not placed.
        reply: oneshot::Sender<Result<Hash, String>>,
    },
    /// Sign a tree head over every entry now (for an export that a signature covers whole);
    /// answered with the head's size.
    SignHead {
        /// The size, or why no head was signed.
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Set the homeowner's price limits (the other limits stay); answered with the limits in
    /// force.
    SetLimits {
        /// Never sell below this price (`None`: no limit of the homeowner's own).
        min_sell_price: Option<Price>,
        /// Never buy above this price.
        max_buy_price: Option<Price>,
        /// The limits now in force.
        reply: oneshot::Sender<peerwatt_market::UserLimits>,
    },
}

/// What a running node tells its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A trade is in this node's ledger (durably).
    TradeRecorded {
        /// The trade's digest.
        digest: Hash,
        /// Whether this node was the maker.
        as_maker: bool,
        /// The delivery interval.
        interval: IntervalId,
        /// The energy.
        energy: Wh,
        /// The price.
        price: Price,
    },
    /// A settlement of this node is in its ledger (durably).
    Settled {
        /// The interval settled.
        interval: IntervalId,
        /// Its revision.
        revision: u32,
        /// Whether every counterparty's statement was in (else provisional).
        complete: bool,
    },
}
