//! The strategy, every tick: this node's orders follow the forecast, re-priced once per
//! period of its own, and its bids take the offers they cross. Also orders placed by hand,
//! and the start of a graceful stop.

use std::time::Duration;

use peerwatt_core::{Hash, IntervalId, Order, Price, Side, Signed, Timestamp, Wh};

use super::{CommandId, Effect, Trader};
use crate::strategy::intent;

impl Trader {
    /// The timer: prune what closed, re-price and take in every open interval, ask about
    /// requests without answers.
    pub(super) fn on_tick(&mut self, now: Timestamp) {
        self.books.prune(now);
        // Requests against orders gone from the book (replaced, closed) need no bookkeeping.
        let books = &self.books;
        self.held.retain(|_, h| books.get(&h.theirs).is_some());
        let backoff = Duration::from_millis(self.cfg.reprice_ms / 5);
        self.refused_by.retain(|order, at| books.get(order).is_some() && now.saturating_since(*at) < backoff);
        let open = self.open_intervals(now);
        if let Some(first) = open.first() {
            self.position.prune_before(*first);
        }
        let slot = self.reprice_slot(now);
        let reprice = slot != self.last_reprice_slot;
        self.last_reprice_slot = slot;
        if self.cfg.enabled && !self.draining {
            for interval in open {
                self.update_order(interval, now, reprice);
                self.take(interval, now);
            }
        }
        self.ask_about_unknown(now);
        self.statements_tick(now);
        self.settlements_tick(now);
    }

    /// Which re-pricing period `now` is in. Periods are `reprice_ms` long and start at an
    /// offset of this node's own (from its key), so the community's re-pricing is spread over
    /// the period rather than all at one instant; a node re-prices all its open intervals in
    /// the same tick, and they leave in one gossip frame.
    fn reprice_slot(&self, now: Timestamp) -> u64 {
        now.0.saturating_add(self.reprice_offset) / self.cfg.reprice_ms.max(1)
    }

    /// Publishes, re-prices or cancels this node's order for `interval` as the strategy says.
    /// `reprice`: this tick starts a new re-pricing period.
    fn update_order(&mut self, interval: IntervalId, now: Timestamp, reprice: bool) {
        let net = self.forecaster.net_export(interval);
        let side = if net.unwrap_or(0) > 0 { Side::Sell } else { Side::Buy };
        // A forecast that flipped sides cancels the order on the other side.
        if self.maker.current(interval, side.opposite()).is_some() {
            self.publish_order(interval, side.opposite(), Wh::ZERO, None, now);
        }
        let committed = self.position.committed(interval, side);
        let wanted = if self.stale {
            None // a stale meter: stop offering and bidding, the status says so
        } else {
            intent(&self.community, &self.cfg.limits, &self.forecaster, interval, committed, now)
                .filter(|i| i.side == side)
        };
        let current = self.maker.current(interval, side).map(|o| (o.digest(), o.body().limit_price));
        match (wanted, current) {
            (None, Some((id, _))) if self.maker.available(&id) > Wh::ZERO => {
                self.publish_order(interval, side, Wh::ZERO, None, now);
            }
            (Some(w), None) if self.places_now(interval, side, w.price, reprice, now) => {
                self.publish_order(interval, side, w.energy, Some((w.price, w.limit)), now)
            }
            (Some(w), Some((id, limit))) => {
                // Offering too much is corrected at once. Energy freed by a refused request, or
                // new limits, wait for the re-pricing tick: one frame per node per period,
                // however many requests were refused. The price needs no message: it follows
                // the signed curve.
                let available = self.maker.available(&id);
                if available > w.energy || (reprice && (limit != w.limit || available != w.energy)) {
                    self.publish_order(interval, side, w.energy, Some((w.price, w.limit)), now);
                }
            }
            _ => {}
        }
    }

    /// Whether a first order for `interval` on `side`, at `price` now, is placed in this tick.
    /// Orders wait for the node's re-pricing tick, so that all of a node's new orders leave in
    /// one frame, with one exception: a bid that crosses an offer now, since it is what makes
    /// the trade. A bid into a book without offers only costs every member a message to
    /// check: it waits until someone offers (offers come first: surplus is what the market
    /// is for).
    fn places_now(&self, interval: IntervalId, side: Side, price: Price, reprice: bool, now: Timestamp) -> bool {
        match side {
            Side::Sell => reprice,
            Side::Buy => {
                let offers_at = |limit| !self.books.crossing(interval, Side::Buy, limit, &self.me, now).is_empty();
                if reprice { offers_at(self.community.terms_at(interval).retail) } else { offers_at(price) }
            }
        }
    }

    /// Signs an order (energy 0 cancels) and makes it this node's current one; it is recorded
    /// and then gossiped with the turn. `curve`: the price now and the limit at gate closure
    /// (a cancellation repeats the current order's).
    fn publish_order(
        &mut self,
        interval: IntervalId,
        side: Side,
        energy: Wh,
        curve: Option<(Price, Price)>,
        now: Timestamp,
    ) {
        let (_, closes) = self.community.trading_window(interval);
        let (price, limit) = curve
            .or_else(|| self.maker.current(interval, side).map(|o| (o.body().price_at(now), o.body().limit_price)))
            .unwrap_or_else(|| {
                let feed_in = self.community.terms_at(interval).feed_in;
                (feed_in, feed_in)
            });
        let order = Signed::sign(
            &self.key,
            Order {
                community: self.community.id,
                side,
                interval,
                energy,
                start_price: price,
                limit_price: limit,
                seq: self.next_order_seq,
                created_at: now,
                expires_at: closes,
                rules: self.community.terms_at(interval).version,
            },
        );
        self.next_order_seq += 1;
        self.maker.publish(order.clone());
        if let Err(e) = self.books.insert(&order, now) {
            tracing::warn!(error = %e, "own order refused by the book");
        }
        if energy == Wh::ZERO {
            self.metrics.orders_cancelled += 1;
        } else {
            self.metrics.orders_published += 1;
        }
        tracing::debug!(
            interval = interval.0,
            ?side,
            energy_wh = energy.0,
            price = price.0,
            limit = limit.0,
            "order published"
        );
        self.turn.orders.push(order);
    }

    /// An order placed by hand: published and taken at once, answered once durable.
    pub(super) fn on_place(
        &mut self,
        command: CommandId,
        interval: IntervalId,
        side: Side,
        energy: Wh,
        price: Price,
        now: Timestamp,
    ) {
        let refusal = if self.draining {
            Some("the node is stopping".to_owned())
        } else if !self.community.is_open(interval, now) {
            Some(format!("trading for interval {} is not open", interval.0))
        } else {
            None
        };
        if let Some(why) = refusal {
            self.effects.push(Effect::Placed { command, result: Err(why) });
            return;
        }
        self.publish_order(interval, side, energy, Some((price, price)), now);
        let id: Option<Hash> = self.maker.current(interval, side).map(Signed::digest);
        self.take(interval, now);
        self.turn.placed.push((command, id.ok_or_else(|| "the order was not placed (see the log)".to_owned())));
    }

    /// The start of a graceful stop. The node stops trading: it cancels its open orders (so
    /// peers stop sending it requests), refuses new requests and sends no new ones. The caller
    /// keeps it running until [`Trader::drained`]: every request it sent is answered.
    pub(super) fn begin_drain(&mut self, now: Timestamp) {
        self.draining = true;
        let open: Vec<(IntervalId, Side)> = self
            .open_intervals(now)
            .into_iter()
            .flat_map(|i| [(i, Side::Sell), (i, Side::Buy)])
            .filter(|(i, side)| self.maker.current(*i, *side).is_some_and(|o| o.body().energy > Wh::ZERO))
            .collect();
        for (interval, side) in &open {
            self.publish_order(*interval, *side, Wh::ZERO, None, now);
        }
        // Closed intervals are stated now: there may be no next slot.
        self.state_waiting(now);
        tracing::info!(
            orders_cancelled = open.len(),
            pending_requests = self.taker.pending_count(),
            "stopping: no new trades; waiting for the answers to this node's requests"
        );
    }
}
