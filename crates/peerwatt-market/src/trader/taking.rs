//! The taker's side: requests against crossing offers, a window of calls per maker, the
//! answers, and queries about requests whose answers never came.

use std::collections::{HashMap, VecDeque};

use peerwatt_core::wire::{MAX_BATCH, MAX_QUERY};
use peerwatt_core::{Answer, Decode, Encode, Hash, IntervalId, PublicKey, Signed, Timestamp, TradeCall, TradeReply};
use peerwatt_core::{TradeRequest, Wh};

use super::{CallId, Effect, Held, Stage, Trader};
use crate::book::{BookOrder, TAKING_SIDE, taking_order};
use crate::taker::TakerAction;

/// At most this many trade requests to one maker are unanswered at once; more wait their
/// turn in [`Window`]. A burst of crossings then never overruns the maker (or the stream
/// limit of the connection) and the maker still batches what it gets. Requests leave in calls
/// of up to [`MAX_BATCH`], so this allows four calls in flight.
const MAX_IN_FLIGHT_PER_MAKER: usize = 4 * MAX_BATCH;

/// A taker spreads its requests over the crossing orders within one of this many bands of
/// the tariff spread from the best price (see [`taking_order`]).
const TAKING_BANDS: u64 = 20;

/// What one of this node's calls was about.
#[derive(Debug, Clone)]
pub(super) enum CallKind {
    /// Trade requests to `maker`, in the call's order.
    Requests { maker: PublicKey, digests: Vec<Hash> },
    /// A query about requests with unknown outcome.
    Query { maker: PublicKey, asked: Vec<Hash> },
}

/// Requests persisted and not yet answered, per maker: sent ones count against the window,
/// the others wait in order.
#[derive(Debug, Default)]
pub(super) struct Window {
    in_flight: HashMap<PublicKey, usize>,
    waiting: HashMap<PublicKey, VecDeque<Signed<TradeRequest>>>,
}

impl Window {
    /// Whether no request is sent and unanswered or waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.waiting.is_empty()
    }
}

impl Trader {
    /// Takes the offers that cross this node's bid in `interval` (only buyers take: see
    /// [`TAKING_SIDE`]): holds the bid's energy and signs a request per offer, sent once
    /// persisted at the end of the turn.
    pub(super) fn take(&mut self, interval: IntervalId, now: Timestamp) {
        if self.draining {
            return;
        }
        let Some(mine) = self.maker.current(interval, TAKING_SIDE).and_then(|o| self.books.get(&o.digest())).cloned()
        else {
            return;
        };
        let crossing = self
            .books
            .crossing(interval, TAKING_SIDE, mine.price(now), &self.me, now)
            .into_iter()
            .filter(|o| !self.refused_by.contains_key(&o.id))
            .collect();
        let terms = self.community.terms_at(interval);
        let band = terms.retail.0.saturating_sub(terms.feed_in.0) / TAKING_BANDS;
        let resting: Vec<BookOrder> = taking_order(&self.me, crossing, band, now).into_iter().cloned().collect();
        for other in resting {
            let energy = self.maker.hold_for_own_request(&mine.id, other.available());
            if energy == Wh::ZERO {
                break;
            }
            let digest = self.request(&other, energy, now);
            self.held.insert(digest, Held { own: mine.id, theirs: other.id, energy });
        }
    }

    /// Signs a request for `energy` of `order` (spoken for from now on) and queues it: persisted
    /// and sent with the turn. Returns its digest.
    fn request(&mut self, order: &BookOrder, energy: Wh, now: Timestamp) -> Hash {
        let request = self.taker.request(&self.key, order, energy, now);
        let digest = request.digest();
        self.position.set(digest, order.order.interval, order.order.side.opposite(), energy, Stage::Requested);
        self.books.request_own(&order.id, energy);
        self.turn.requests.push(request);
        digest
    }

    /// The requests are persisted: each goes to its maker, as far as the window allows.
    pub(super) fn send_requests(&mut self, requests: Vec<Signed<TradeRequest>>, now: Timestamp) {
        if requests.is_empty() {
            return;
        }
        for request in requests {
            self.taker.sent(&request.digest(), now);
            let terms = request.body();
            self.metrics.trade_requests_sent += 1;
            tracing::info!(
                interval = terms.interval.0,
                energy_wh = terms.energy.0,
                price = terms.price.0,
                maker = %terms.maker,
                "trade request sent"
            );
            self.window.waiting.entry(terms.maker).or_default().push_back(request);
        }
        let mut makers: Vec<PublicKey> = self.window.waiting.keys().copied().collect();
        makers.sort_unstable_by_key(PublicKey::to_bytes);
        for maker in makers {
            self.send_waiting(maker);
        }
    }

    /// Sends `maker` the requests waiting for it, as far as its window allows, in calls of up
    /// to [`MAX_BATCH`] requests.
    fn send_waiting(&mut self, maker: PublicKey) {
        loop {
            let in_flight = self.window.in_flight.get(&maker).copied().unwrap_or(0);
            let room = MAX_IN_FLIGHT_PER_MAKER.saturating_sub(in_flight).min(MAX_BATCH);
            let Some(queue) = self.window.waiting.get_mut(&maker) else { return };
            if room == 0 {
                return;
            }
            let requests: Vec<Signed<TradeRequest>> = queue.drain(..room.min(queue.len())).collect();
            if queue.is_empty() {
                self.window.waiting.remove(&maker);
            }
            if requests.is_empty() {
                return;
            }
            self.window.in_flight.insert(maker, in_flight + requests.len());
            let digests: Vec<Hash> = requests.iter().map(Signed::digest).collect();
            let call = TradeCall::Requests { cert: self.cert.clone(), requests };
            self.call(maker, &call, CallKind::Requests { maker, digests });
        }
    }

    /// Calls `maker`; the answer comes back as [`super::Input::Answered`].
    fn call(&mut self, maker: PublicKey, call: &TradeCall, kind: CallKind) {
        let id = CallId(self.next_call);
        self.next_call += 1;
        self.calls.insert(id, kind);
        self.effects.push(Effect::Call { call: id, maker, data: call.to_bytes() });
    }

    /// A call of `n` requests to `maker` came back (answered or failed): their slots are free.
    fn window_freed(&mut self, maker: PublicKey, n: usize) {
        if let Some(in_flight) = self.window.in_flight.get_mut(&maker) {
            *in_flight = in_flight.saturating_sub(n);
            if *in_flight == 0 {
                self.window.in_flight.remove(&maker);
            }
        }
        self.send_waiting(maker);
    }

    /// The answer (or the failure) of one of this node's calls.
    pub(super) fn on_answered(&mut self, call: CallId, reply: Result<Vec<u8>, String>, now: Timestamp) {
        match self.calls.remove(&call) {
            Some(CallKind::Requests { maker, digests }) => self.on_requests_answered(maker, digests, reply, now),
            Some(CallKind::Query { maker, asked }) => self.on_query_answered(maker, asked, reply, now),
            None => tracing::debug!(call = call.0, "an answer to no call of this node"),
        }
    }

    /// The maker answered (or did not answer) one call of this node's requests.
    fn on_requests_answered(
        &mut self,
        maker: PublicKey,
        digests: Vec<Hash>,
        reply: Result<Vec<u8>, String>,
        now: Timestamp,
    ) {
        self.window_freed(maker, digests.len());
        let n = digests.len();
        let answers: Vec<Result<Answer, &'static str>> = match reply.map(|bytes| TradeReply::from_bytes(&bytes)) {
            Ok(Ok(TradeReply::Answers(answers))) if answers.len() == n => answers.into_iter().map(Ok).collect(),
            // The call was refused as a whole (not a member, the maker is stopping).
            Ok(Ok(TradeReply::Refused(reason))) => vec![Ok(Answer::Refused(reason)); n],
            Ok(Ok(_)) => vec![Err("an answer that is not for these requests"); n],
            Ok(Err(_)) => vec![Err("a malformed answer"); n],
            Err(error) => {
                // No answer: the outcome is unknown until the maker is asked.
                tracing::debug!(%error, requests = n, "trade requests unanswered");
                self.metrics.trade_requests_unanswered += n as u64;
                return;
            }
        };
        for (digest, answer) in digests.into_iter().zip(answers) {
            let action = match answer {
                Ok(Answer::Agreed(trade)) if trade.body().request.digest() == digest => {
                    self.taker.on_answer(&digest, Ok(trade))
                }
                Ok(Answer::Agreed(_)) => TakerAction::Invalid("an answer that is not for this request"),
                Ok(Answer::Refused(reason)) => self.taker.on_answer(&digest, Err(reason)),
                Err(why) => TakerAction::Invalid(why),
            };
            self.on_taker_action(digest, action, now);
        }
    }

    /// A maker's answer to a query: the agreed trades among the requests asked about; every
    /// other one is final as not agreed.
    fn on_query_answered(
        &mut self,
        maker: PublicKey,
        asked: Vec<Hash>,
        reply: Result<Vec<u8>, String>,
        now: Timestamp,
    ) {
        let known = match reply.map(|bytes| TradeReply::from_bytes(&bytes)) {
            Ok(Ok(TradeReply::Known(trades))) => trades,
            other => {
                tracing::debug!(?other, "query unanswered; asking again later");
                return;
            }
        };
        self.metrics.queries_answered_by_makers += 1;
        for digest in asked {
            let answer = known
                .iter()
                .find(|t| t.body().request.digest() == digest && *t.signer() == maker)
                .cloned()
                .ok_or_else(|| "not agreed (final)".to_owned());
            tracing::info!(request = %digest, agreed = answer.is_ok(), "outstanding request resolved by a query");
            let action = self.taker.on_answer(&digest, answer);
            self.on_taker_action(digest, action, now);
        }
    }

    /// Acts on what the taker made of an answer, an announcement or a query's reply.
    pub(super) fn on_taker_action(&mut self, digest: Hash, action: TakerAction, now: Timestamp) {
        match action {
            // Recorded with the turn; forgotten and counted once durable.
            TakerAction::Record(trade) => {
                if let Some(h) = self.held.remove(&digest) {
                    self.books.answered_own(&h.theirs, h.energy, true);
                }
                // Verified: its announcements need no second check.
                self.remember_trade(&trade, Stage::Agreed);
                self.turn.taken.push(*trade);
            }
            TakerAction::Refused(reason) => {
                if let Some(theirs) = self.release_request(&digest) {
                    self.refused_by.insert(theirs, now);
                }
                self.effects.push(Effect::Forget(vec![digest]));
                self.metrics.trade_requests_refused_by_maker += 1;
                tracing::debug!(%reason, "trade request refused by the maker");
            }
            TakerAction::AlreadyRecorded => {
                if let Some(h) = self.held.remove(&digest) {
                    self.books.answered_own(&h.theirs, h.energy, true);
                }
                // Forgotten only once the trade is durable (then, by the turn that records it):
                // a crash before would lose the trade with nothing left to ask its maker about.
                if !self.taken_awaits_durability(&digest) {
                    self.effects.push(Effect::Forget(vec![digest]));
                }
            }
            TakerAction::NotOurs => {}
            TakerAction::Invalid(why) => {
                self.metrics.answers_invalid += 1;
                tracing::info!(why, "ignoring an invalid answer");
            }
        }
    }

    /// A request of this node will not be agreed: its energy is free again on both sides, in
    /// this node's order at once and in its copy of the other order (the maker never sold
    /// it), and no longer spoken for. Returns the other order.
    pub(super) fn release_request(&mut self, digest: &Hash) -> Option<Hash> {
        self.position.release(digest);
        let h = self.held.remove(digest)?;
        self.maker.release_own_hold(&h.own, h.energy);
        self.books.answered_own(&h.theirs, h.energy, false);
        Some(h.theirs)
    }

    /// Asks makers about requests whose answers never came (at most once per timeout each).
    pub(super) fn ask_about_unknown(&mut self, now: Timestamp) {
        let timeout_ms = self.cfg.request_timeout_ms;
        let timeout = std::time::Duration::from_millis(timeout_ms);
        let mut by_maker: HashMap<PublicKey, Vec<Hash>> = HashMap::new();
        for request in self.taker.expire(now, timeout) {
            by_maker.entry(request.body().maker).or_default().push(request.digest());
        }
        let mut makers: Vec<_> = by_maker.into_iter().collect();
        makers.sort_unstable_by_key(|(m, _)| m.to_bytes());
        for (maker, mut asked) in makers {
            let last = self.last_query.get(&maker).copied().unwrap_or(Timestamp(0));
            if now.saturating_since(last) < timeout {
                continue;
            }
            self.last_query.insert(maker, now);
            asked.sort_unstable();
            asked.truncate(MAX_QUERY);
            self.metrics.queries_sent += 1;
            let call = TradeCall::Query(asked.clone());
            self.call(maker, &call, CallKind::Query { maker, asked });
        }
    }
}
