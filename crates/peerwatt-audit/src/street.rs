//! A synthetic street of signed ledgers, for the audit's tests and benchmark: every member
//! trades with its neighbours each interval (an order, a request, a countersigned trade),
//! states what its meter measured with its contracts, settles every interval by the market's
//! own rules from everyone's statements, signs a tree head every hour and records the heads
//! of a few neighbours, as nodes do. Built in two steps so a test can plant a fault between
//! them: [`Plan::new`] signs the messages, [`Plan::build`] writes the ledgers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use peerwatt_core::{
    Community, Encode, EntryKind, Hash, IntervalId, ManualClock, MeterFigures, MeterMethod, MeterStatement, NodeKey,
    Order, Price, Settlement, Side, Signed, Timestamp, Trade, TradeRequest, TreeHead, Wh,
};
use peerwatt_ledger::{Ledger, MemoryStore, write_export};
use peerwatt_market::settlement::{self, OwnTrade};
use peerwatt_market::statements::Kept;

/// The street's shape.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Members.
    pub members: usize,
    /// Intervals (15 minutes each), a multiple of 4 (the ledgers are written hour by hour).
    pub intervals: u64,
    /// Neighbours' heads each member records per hour.
    pub witnesses: usize,
}

/// One trade and who records it.
#[derive(Debug, Clone)]
pub struct PlannedTrade {
    /// The maker's order.
    pub order: Signed<Order>,
    /// The trade.
    pub trade: Signed<Trade>,
    /// The maker's member index.
    pub maker: usize,
    /// The taker's.
    pub taker: usize,
    /// Whether the maker's and the taker's ledgers record it.
    pub recorded: [bool; 2],
}

impl PlannedTrade {
    fn held_by(&self, member: usize) -> bool {
        (member == self.maker && self.recorded[0]) || (member == self.taker && self.recorded[1])
    }
}

/// One interval's signed messages.
#[derive(Debug, Clone)]
pub struct IntervalPlan {
    /// The interval.
    pub interval: IntervalId,
    /// Per member: what its meter measured (import, export).
    pub metered: Vec<(Wh, Wh)>,
    /// Its trades.
    pub trades: Vec<PlannedTrade>,
    /// Per member, its statement.
    pub statements: Vec<Signed<MeterStatement>>,
    /// Per member, its settlement.
    pub settlements: Vec<Signed<Settlement>>,
}

/// The street's signed messages, before any ledger is written.
#[derive(Debug)]
pub struct Plan {
    /// The community.
    pub community: Community,
    /// The members' keys.
    pub keys: Vec<NodeKey>,
    /// Every interval.
    pub intervals: Vec<IntervalPlan>,
    /// The shape.
    pub spec: Spec,
}

/// The community of the synthetic street (the trading core's test community, its rules
/// signed as version 1).
pub fn community() -> Community {
    let admin = NodeKey::from_seed(&[7; 32]);
    peerwatt_market::trader::testkit::community_named(&admin, "Audit Street").signed_by(
        &admin,
        IntervalId(0),
        Timestamp(0),
    )
}

/// Member `m`'s key seed.
fn seed(m: usize) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(m as u64 + 1).to_be_bytes());
    seed
}

/// The first interval: 2026-06-01 00:00 UTC.
const FIRST: IntervalId = IntervalId(1_780_272_000 / 900);

/// A number in `lo..hi` drawn from `parts` (deterministic).
fn draw(parts: &[u64], lo: u64, hi: u64) -> u64 {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.to_be_bytes()).collect();
    let h = Hash::of(&bytes);
    let n = u64::from_be_bytes(h.0[..8].try_into().unwrap_or([0; 8]));
    lo + n % (hi - lo).max(1)
}

/// Runs `f` over `0..n` on every core; results in order.
fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..n)
            .collect::<Vec<_>>()
            .chunks(chunk)
            .map(|part| {
                let part = part.to_vec();
                let f = &f;
                scope.spawn(move || part.into_iter().map(f).collect::<Vec<T>>())
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap_or_default()).collect()
    })
}

impl Plan {
    /// Signs the street's messages: trades, then statements and settlements.
    pub fn new(spec: Spec) -> Plan {
        let community = community();
        let keys: Vec<NodeKey> = (0..spec.members).map(|m| NodeKey::from_seed(&seed(m))).collect();
        let mut plan = Plan { community, keys, intervals: Vec::new(), spec };
        plan.intervals = parallel(spec.intervals as usize, |i| plan.trade_interval(IntervalId(FIRST.0 + i as u64)));
        plan.state_and_settle();
        plan
    }

    /// An interval's meters and trades: a member exports in every other interval, alternately
    /// with its neighbours, and makes one order that its next neighbour takes.
    fn trade_interval(&self, interval: IntervalId) -> IntervalPlan {
        let n = self.keys.len();
        let exports = |m: usize| (m as u64 + interval.0).is_multiple_of(2);
        let metered = (0..n)
            .map(|m| {
                let big = draw(&[m as u64, interval.0, 1], 200, 600);
                let small = draw(&[m as u64, interval.0, 2], 0, 40);
                if exports(m) { (Wh(small), Wh(big)) } else { (Wh(big), Wh(small)) }
            })
            .collect();
        let mut trades = Vec::new();
        for maker in 0..n {
            let taker = (maker + 1) % n;
            if taker == maker || exports(maker) == exports(taker) {
                continue;
            }
            let side = if exports(maker) { Side::Sell } else { Side::Buy };
            let energy = Wh(draw(&[maker as u64, interval.0, 3], 100, 400));
            let price = Price(draw(&[maker as u64, interval.0, 4], 100, 250) * 1_000);
            trades.push(self.sign_trade(interval, maker, taker, side, energy, price));
        }
        IntervalPlan { interval, metered, trades, statements: Vec::new(), settlements: Vec::new() }
    }

    fn sign_trade(
        &self,
        interval: IntervalId,
        maker: usize,
        taker: usize,
        side: Side,
        energy: Wh,
        price: Price,
    ) -> PlannedTrade {
        let start = self.community.interval.start(interval);
        let made = Timestamp(start.0 - 1_800_000);
        let order = Signed::sign(
            &self.keys[maker],
            Order {
                community: self.community.id,
                side,
                interval,
                energy,
                start_price: price,
                limit_price: price,
                seq: interval.0,
                created_at: made,
                expires_at: Timestamp(start.0 - 60_000),
                rules: self.community.terms_at(interval).version,
            },
        );
        let request = Signed::sign(
            &self.keys[taker],
            TradeRequest {
                community: self.community.id,
                order: order.digest(),
                maker: self.keys[maker].public(),
                maker_side: side,
                interval,
                energy,
                price,
                request_seq: interval.0,
                created_at: Timestamp(made.0 + 1_000),
            },
        );
        let trade = Signed::sign(&self.keys[maker], Trade { request, accepted_at: Timestamp(made.0 + 1_200) });
        PlannedTrade { order, trade, maker, taker, recorded: [true, true] }
    }

    /// Signs every member's statement and settlement of every interval from the trades as
    /// planned (again, after a test changed them).
    pub fn state_and_settle(&mut self) {
        let signed = parallel(self.intervals.len(), |i| self.state_and_settle_interval(&self.intervals[i]));
        for (plan, (statements, settlements)) in self.intervals.iter_mut().zip(signed) {
            plan.statements = statements;
            plan.settlements = settlements;
        }
    }

    /// The stated and settled time of an interval: a minute and two after the end of its hour.
    fn stated_at(&self, interval: IntervalId) -> (Timestamp, Timestamp) {
        let hour_end = self.community.interval.start(IntervalId(FIRST.0 + (interval.0 - FIRST.0) / 4 * 4 + 4));
        (Timestamp(hour_end.0 + 60_000), Timestamp(hour_end.0 + 120_000))
    }

    fn state_and_settle_interval(&self, plan: &IntervalPlan) -> (Vec<Signed<MeterStatement>>, Vec<Signed<Settlement>>) {
        let (stated, settled) = self.stated_at(plan.interval);
        let own: Vec<Vec<OwnTrade>> = (0..self.keys.len()).map(|m| self.own_trades(plan, m)).collect();
        let statements: Vec<Signed<MeterStatement>> = (0..self.keys.len())
            .map(|m| {
                let (imported, exported) = plan.metered[m];
                let figures = MeterFigures {
                    imported,
                    exported,
                    covered_ms: 900_000,
                    complete: true,
                    method: MeterMethod::Counters,
                    format: "synthetic".into(),
                };
                let statement = MeterStatement {
                    community: self.community.id,
                    interval: plan.interval,
                    revision: 0,
                    figures,
                    contracts: settlement::contracts_of(&own[m]).0,
                    created_at: stated,
                };
                Signed::sign(&self.keys[m], statement)
            })
            .collect();
        let kept: Vec<Kept> = statements.iter().map(Kept::of_statement).collect();
        let mut members: Vec<([u8; 32], &Kept)> =
            self.keys.iter().zip(&kept).map(|(k, kept)| (k.public().to_bytes(), kept)).collect();
        members.sort_by_key(|(k, _)| *k);
        let rules = settlement::Rules::at(&self.community, plan.interval);
        let worked = settlement::work(&members, &rules);
        let settlements = (0..self.keys.len())
            .map(|m| {
                let me = self.keys[m].public().to_bytes();
                let s =
                    settlement::settle_worked(&self.community, plan.interval, &me, &members, &worked, &own[m], settled);
                Signed::sign(&self.keys[m], s.unwrap_or_else(|e| panic!("the synthetic street settles: {e}")))
            })
            .collect();
        (statements, settlements)
    }

    /// Member `m`'s trades of an interval, as its settlement reads them.
    fn own_trades(&self, plan: &IntervalPlan, m: usize) -> Vec<OwnTrade> {
        let me = self.keys[m].public();
        plan.trades
            .iter()
            .filter(|t| t.held_by(m))
            .map(|t| {
                let terms = t.trade.body().request.body();
                let maker = t.maker == m;
                let other = if maker { t.taker } else { t.maker };
                debug_assert!(me != self.keys[other].public());
                OwnTrade {
                    trade: t.trade.digest(),
                    counterparty: self.keys[other].public().to_bytes(),
                    side: if maker { terms.maker_side } else { terms.maker_side.opposite() },
                    energy: terms.energy,
                    price: terms.price,
                }
            })
            .collect()
    }

    /// Member `m`'s entries of the hour starting at interval index `first`.
    fn entries_of_hour(&self, m: usize, first: usize) -> Vec<(EntryKind, Vec<u8>)> {
        let mut entries = Vec::new();
        for plan in &self.intervals[first..(first + 4).min(self.intervals.len())] {
            for t in plan.trades.iter().filter(|t| t.held_by(m)) {
                if t.maker == m {
                    entries.push((EntryKind::OrderPublished, t.order.to_bytes()));
                }
                entries.push((EntryKind::TradeAgreed, t.trade.to_bytes()));
            }
        }
        for plan in &self.intervals[first..(first + 4).min(self.intervals.len())] {
            entries.push((EntryKind::MeterStatement, plan.statements[m].to_bytes()));
        }
        for plan in &self.intervals[first..(first + 4).min(self.intervals.len())] {
            entries.push((EntryKind::Settlement, plan.settlements[m].to_bytes()));
        }
        entries
    }

    /// Writes every member's ledger, hour by hour: its entries of the hour, a signed head,
    /// and in the next hour the heads of its next `witnesses` neighbours. `init` is the note
    /// each ledger starts with (a test changes one to fork a history).
    pub fn build_with(&self, init: impl Fn(usize) -> String + Sync) -> Vec<Ledger<MemoryStore>> {
        let n = self.keys.len();
        let clock = Arc::new(ManualClock::new(self.community.interval.start(FIRST)));
        let ledgers: Vec<Ledger<MemoryStore>> = parallel(n, |m| {
            let ledger = Ledger::open(MemoryStore::new(), NodeKey::from_seed(&seed(m)), clock.clone())
                .unwrap_or_else(|e| panic!("a memory ledger opens: {e}"));
            let note = init(m).into_bytes();
            ledger.append(EntryKind::ConfigChange, note).unwrap_or_else(|e| panic!("appends: {e}"));
            ledger
        });
        let mut heads: Vec<Option<Signed<TreeHead>>> = vec![None; n];
        for first in (0..self.intervals.len()).step_by(4) {
            let (stated, _) = self.stated_at(self.intervals[first].interval);
            clock.set(stated);
            heads = parallel(n, |m| {
                let mut entries = self.witnessed(m, &heads);
                entries.extend(self.entries_of_hour(m, first));
                ledgers[m].append_batch(entries).unwrap_or_else(|e| panic!("appends: {e}"));
                Some(ledgers[m].sign_head().unwrap_or_else(|e| panic!("signs a head: {e}")))
            });
        }
        clock.advance(Duration::from_secs(600));
        parallel(n, |m| {
            ledgers[m].append_batch(self.witnessed(m, &heads)).unwrap_or_else(|e| panic!("appends: {e}"));
            ledgers[m].sign_head().unwrap_or_else(|e| panic!("signs a head: {e}"));
        });
        ledgers
    }

    /// [`Plan::build_with`] the usual note.
    pub fn build(&self) -> Vec<Ledger<MemoryStore>> {
        self.build_with(|_| "peerwatt init".into())
    }

    /// The heads of member `m`'s next neighbours, to record.
    fn witnessed(&self, m: usize, heads: &[Option<Signed<TreeHead>>]) -> Vec<(EntryKind, Vec<u8>)> {
        let n = self.keys.len();
        (1..=self.spec.witnesses.min(n.saturating_sub(1)))
            .filter_map(|d| heads[(m + d) % n].as_ref())
            .map(|h| (EntryKind::WitnessedHead, h.to_bytes()))
            .collect()
    }

    /// Member `m`'s key bytes.
    pub fn key(&self, m: usize) -> [u8; 32] {
        self.keys[m].public().to_bytes()
    }
}

/// Writes each ledger's export into `dir` as `member-NNNN.pwl`; returns the paths.
pub fn write_exports(ledgers: &[Ledger<MemoryStore>], dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let written = parallel(ledgers.len(), |m| -> std::io::Result<PathBuf> {
        let path = dir.join(format!("member-{m:04}.pwl"));
        let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        write_export(ledgers[m].reader(), file).map_err(std::io::Error::other)?;
        Ok(path)
    });
    written.into_iter().collect()
}
