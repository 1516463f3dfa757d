//! What other nodes send: gossip (orders, trades) and direct calls (the maker's side of the
//! handshake, and queries about earlier requests).

use peerwatt_core::{
    Answer, Decode, Encode, Hash, IntervalId, MembershipCert, Order, Signed, Timestamp, Trade, TradeCall, TradeReply,
    TradeRequest, Wh,
};

use super::turns::{PendingAnswer, Slot};
use super::{Effect, ReplyTo, Stage, Trader};
use crate::book::TAKING_SIDE;
use crate::gossip::{GossipReject, insert_screened};
use crate::maker::Acceptance;
use crate::trader::metrics::order_age_bucket;

impl Trader {
    /// Screened orders, put in the books. A new offer that crosses this node's bid is taken
    /// at the end of this turn rather than at the next tick (once per interval however many
    /// frames of the turn brought crossing offers: a busy node handles hundreds of frames a
    /// turn, and each take sorts the interval's book). (Bids are never taken, so a new bid changes
    /// nothing for this node's requests; and an offer that does not cross the bid now changes
    /// nothing either: looking through the interval's book for every offer that arrived was
    /// most of what a buyer did in a 500-household street.)
    pub(super) fn on_orders(
        &mut self,
        orders: Vec<(Signed<Order>, Hash)>,
        late: Option<GossipReject>,
        now: Timestamp,
    ) -> Result<(), GossipReject> {
        let accepted = insert_screened(&mut self.books, orders, late, now)?;
        if let Some((o, _)) = accepted.first() {
            self.count_order_age(o.body().created_at, now);
        }
        if self.cfg.enabled {
            let crossing: Vec<IntervalId> = accepted
                .iter()
                .filter(|(o, _)| o.body().side != TAKING_SIDE && self.crosses_own_bid(o.body(), now))
                .map(|(o, _)| o.body().interval)
                .collect();
            self.takes_due.extend(crossing);
        }
        Ok(())
    }

    /// Whether `offer` crosses this node's bid in its interval at `now`.
    fn crosses_own_bid(&self, offer: &Order, now: Timestamp) -> bool {
        self.maker
            .current(offer.interval, TAKING_SIDE)
            .is_some_and(|bid| offer.energy > Wh::ZERO && offer.price_at(now) <= bid.body().price_at(now))
    }

    /// Counts how old a gossiped frame's first order was on arrival, in real milliseconds
    /// (clock time divided by the clock's rate): signing, the maker's ledger commit and every
    /// hop of the gossip. The operator's view of the network's latency (docs/operations.md).
    fn count_order_age(&mut self, created: Timestamp, now: Timestamp) {
        self.metrics.order_age[order_age_bucket(self.real_ms_since(created, now))] += 1;
    }

    /// Screened trades: applied to the books, and recorded if one is a trade of this node
    /// whose answer it missed (a timeout, a crash).
    pub(super) fn on_trades(&mut self, trades: Vec<(Signed<Trade>, Hash)>, now: Timestamp) {
        for (trade, digest) in trades {
            let ours = *trade.signer() == self.me || *trade.body().request.signer() == self.me;
            // This node's own requests filled the book when they were sent.
            if self.seen_trades.insert(digest) && !ours {
                self.books.apply_trade(&trade);
            }
            let action = self.taker.on_trade(&trade);
            self.on_taker_action(trade.body().request.digest(), action, now);
        }
    }

    /// A direct call from a taker: trade requests, or a query about earlier requests.
    pub(super) fn on_call(&mut self, reply: ReplyTo, data: &[u8], now: Timestamp) {
        let answer = match TradeCall::from_bytes(data) {
            Ok(TradeCall::Request { cert, request }) => {
                return self.on_trade_requests(&cert, std::slice::from_ref(&request), false, reply, now);
            }
            Ok(TradeCall::Requests { cert, requests }) => {
                return self.on_trade_requests(&cert, &requests, true, reply, now);
            }
            Ok(TradeCall::Query(digests)) => {
                self.metrics.queries_answered += 1;
                match self.maker.query(&digests) {
                    Ok(known) => TradeReply::Known(known),
                    Err(refusal) => TradeReply::Refused(refusal.to_string()),
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "malformed trade call");
                self.metrics.trade_calls_malformed += 1;
                self.effects.push(Effect::Strike(reply));
                TradeReply::Refused(format!("malformed: {e}"))
            }
        };
        self.effects.push(Effect::Respond { reply, data: answer.to_bytes() });
    }

    /// The maker's side of the handshake for the requests of one call: the taker's membership
    /// is checked once, then each request on its own. New trades are recorded with the turn
    /// and the call is answered when they are durable.
    fn on_trade_requests(
        &mut self,
        cert: &Signed<MembershipCert>,
        requests: &[Signed<TradeRequest>],
        batched: bool,
        reply: ReplyTo,
        now: Timestamp,
    ) {
        self.metrics.trade_requests_received += requests.len() as u64;
        let refuse_all = if self.draining {
            Some("the maker is stopping".to_owned())
        } else {
            let signer = requests.first().map(|r| *r.signer());
            match signer.map(|s| self.validator.check_cert(cert, &s, now)) {
                Some(Err(e)) => Some(format!("not a member: {e}")),
                _ => None,
            }
        };
        let slots = requests
            .iter()
            .map(|request| match &refuse_all {
                Some(reason) => {
                    self.metrics.trade_requests_refused += 1;
                    Slot::Ready(Answer::Refused(reason.clone()))
                }
                None => self.on_trade_request(cert, request, now),
            })
            .collect();
        self.turn.answers.push(PendingAnswer { reply, batched, slots });
    }

    /// One request, from a taker whose certificate is checked: refuse, answer again, or
    /// reserve and sign a new trade (spoken for from now on).
    fn on_trade_request(
        &mut self,
        cert: &Signed<MembershipCert>,
        request: &Signed<TradeRequest>,
        now: Timestamp,
    ) -> Slot {
        // Every request of a call must come from the certificate's member.
        if cert.body().member != *request.signer() {
            self.metrics.trade_requests_refused += 1;
            return Slot::Ready(Answer::Refused("the request is not signed by the certificate's member".into()));
        }
        self.learn_name(cert.body().member, &cert.body().name);
        match self.maker.accept(&self.key, request, now) {
            Ok(Acceptance::Again(trade)) => Slot::Ready(Answer::Agreed(trade)),
            Ok(Acceptance::New(reserved)) => {
                let terms = request.body();
                self.position.set(request.digest(), terms.interval, terms.maker_side, terms.energy, Stage::Agreed);
                Slot::Agreed(reserved)
            }
            Err(refusal) => {
                self.metrics.trade_requests_refused += 1;
                let terms = request.body();
                tracing::debug!(
                    reason = %refusal,
                    interval = terms.interval.0,
                    energy_wh = terms.energy.0,
                    taker = %request.signer(),
                    order = %terms.order,
                    "trade request refused"
                );
                Slot::Ready(Answer::Refused(refusal.to_string()))
            }
        }
    }
}
