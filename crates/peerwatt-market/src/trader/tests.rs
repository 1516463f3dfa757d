//! Deterministic tests of the trading core on a simulated street ([`super::testkit`]): whole
//! handshakes, slow flushes, crashes and restarts, one event at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::collections::BTreeMap;

use peerwatt_core::{
    Decode, EntryKind, GossipFrame, Hash, IntervalId, Message, MeterStatement, Money, Order, Price, Settlement, Side,
    Signed, Timestamp, Wh,
};

use super::testkit::{I, Msg, Street, measured};
use super::{Effect, Input, SETTLE_AFTER_MS, STATEMENT_GOSSIP_MS, Stage, Topic};

/// Delivers every message in the queue that `pick` chooses, in order, until none is left.
fn deliver_where(street: &mut Street, pick: impl Fn(&Msg) -> bool) {
    while let Some(k) = street.queue.iter().position(&pick) {
        street.deliver(k, false);
    }
}

fn is_call(m: &Msg) -> bool {
    matches!(m, Msg::Call { .. })
}

fn is_answer(m: &Msg) -> bool {
    matches!(m, Msg::Answer { .. })
}

fn is_gossip(m: &Msg) -> bool {
    matches!(m, Msg::Gossip { .. })
}

/// The orders in the gossip frames waiting in the queue.
fn gossiped_orders(street: &Street) -> Vec<Signed<Order>> {
    street
        .queue
        .iter()
        .filter_map(|m| match m {
            Msg::Gossip { topic: Topic::Orders, frame, to: 0 | 1 } => GossipFrame::from_bytes(frame).ok(),
            _ => None,
        })
        .flat_map(|f| f.messages.into_iter().filter_map(|m| Signed::<Order>::from_bytes(&m).ok()))
        .collect()
}

/// A street of one seller (house 0, `surplus` Wh per interval) and buyers, where the seller's
/// offers are in every buyer's book and every buyer's requests are in the seller's hands,
/// none answered yet.
fn requests_at_the_seller(surplus: i64, buyers: &[i64]) -> Street {
    let mut net = vec![surplus];
    net.extend(buyers.iter().map(|b| -b));
    let mut street = Street::new(&net);
    street.tick(0);
    street.flush(0);
    deliver_where(&mut street, is_gossip);
    for b in 1..=buyers.len() {
        street.tick(b);
        street.flush(b);
    }
    street
}

#[test]
fn a_whole_handshake_records_each_trade_once_on_both_sides() {
    let mut street = requests_at_the_seller(32, &[32]);
    assert!(street.settle(60), "the street did not settle");
    for interval in Street::crossing() {
        assert_eq!(street.traded(0, interval, Side::Sell), Wh(32), "sold in {interval:?}");
        assert_eq!(street.traded(1, interval, Side::Buy), Wh(32), "bought in {interval:?}");
    }
    let (sold, bought) = (street.trades(0), street.trades(1));
    assert_eq!(sold.len(), 2);
    let mut digests: Vec<_> = bought.iter().map(Signed::digest).collect();
    digests.sort_unstable();
    digests.dedup();
    assert_eq!(digests.len(), bought.len(), "a trade recorded twice by the taker");
    assert!(sold.iter().all(|t| bought.contains(t)), "the taker misses a trade of its maker");
}

#[test]
fn nothing_a_turn_decided_leaves_before_its_writes_are_durable() {
    let mut street = requests_at_the_seller(32, &[32]);
    // The buyer's requests are durable and called; the seller agrees in this turn.
    deliver_where(&mut street, is_call);
    assert!(street.houses[0].unsynced.iter().any(|w| !w.entries.is_empty()), "the trades are applied");
    assert!(!street.queue.iter().any(is_answer), "an answer left before the trade was durable");
    assert_eq!(street.traded(0, I, Side::Sell), Wh::ZERO, "not durable yet");
    street.flush(0);
    assert!(street.queue.iter().any(is_answer), "the answer leaves once durable");
    assert_eq!(street.traded(0, I, Side::Sell), Wh(32));
}

/// The double sale fixed in 4c4f3ab: a tick between agreeing a trade and its flush saw the
/// energy as neither traded nor held, and offered it again (a seller sold 64 Wh on a
/// forecast of 32).
#[test]
fn a_tick_while_a_trade_waits_for_its_flush_offers_nothing_again() {
    let mut street = requests_at_the_seller(32, &[32]);
    deliver_where(&mut street, is_call);
    let seller = street.houses[0].trader.as_ref().unwrap();
    assert_eq!(seller.position().committed(I, Side::Sell), Wh(32));
    assert_eq!(seller.position().count(Stage::Agreed), 2);
    // A new re-pricing period starts while the trades wait.
    street.advance(60_000);
    street.tick(0);
    street.flush(0);
    let seller = street.key_of(0);
    let offers: Vec<_> =
        gossiped_orders(&street).into_iter().filter(|o| *o.signer() == seller && o.body().energy > Wh::ZERO).collect();
    assert!(offers.is_empty(), "energy offered again: {offers:?}");
    assert!(street.settle(60));
    for interval in Street::crossing() {
        assert_eq!(street.traded(0, interval, Side::Sell), Wh(32));
    }
}

#[test]
fn a_slow_flush_never_lets_a_seller_oversell() {
    // Two buyers want the seller's 32 Wh each; the seller's flush is slow.
    let mut street = requests_at_the_seller(32, &[32, 32]);
    deliver_where(&mut street, is_call);
    street.advance(60_000);
    street.tick(0);
    assert!(street.settle(80), "the street did not settle");
    for interval in Street::crossing() {
        let sold = street.traded(0, interval, Side::Sell);
        let bought = street.traded(1, interval, Side::Buy).0 + street.traded(2, interval, Side::Buy).0;
        assert_eq!(sold, Wh(32), "sold in {interval:?}");
        assert_eq!(bought, 32, "bought in {interval:?}");
    }
}

#[test]
fn a_taker_restarted_before_its_answer_asks_its_maker_and_records_once() {
    let mut street = requests_at_the_seller(32, &[32]);
    deliver_where(&mut street, is_call);
    street.flush(0);
    // The answers are on their way when the buyer dies.
    street.crash(1, false);
    deliver_where(&mut street, is_answer);
    street.start(1);
    let buyer = street.houses[1].trader.as_ref().unwrap();
    assert_eq!(buyer.pending_requests(), 2, "the persisted requests are pending again");
    assert_eq!(buyer.position().committed(I, Side::Buy), Wh(32), "and spoken for");
    assert!(street.settle(60));
    for interval in Street::crossing() {
        assert_eq!(street.traded(1, interval, Side::Buy), Wh(32), "bought in {interval:?}");
        assert_eq!(street.traded(0, interval, Side::Sell), Wh(32));
    }
    assert_eq!(street.trades(1).len(), 2, "each trade once");
}

#[test]
fn a_taker_whose_requests_were_lost_in_a_crash_is_told_not_agreed_and_its_energy_is_free() {
    let mut street = requests_at_the_seller(32, &[32]);
    // The calls never reach the seller: the buyer crashes with them in flight.
    street.crash(1, false);
    street.queue.retain(|m| !is_call(m));
    street.start(1);
    assert_eq!(street.houses[1].trader.as_ref().unwrap().position().committed(I, Side::Buy), Wh(32));
    assert!(street.settle(60));
    let buyer = street.houses[1].trader.as_ref().unwrap();
    assert_eq!(buyer.pending_requests(), 0);
    assert_eq!(buyer.position().committed(I, Side::Buy), Wh::ZERO, "refused as final: the energy is free");
    assert_eq!(buyer.metrics().trade_requests_refused_by_maker, 2);
    assert!(street.houses[1].requests.is_empty(), "every persisted request is settled and forgotten");
    assert!(street.trades(0).is_empty() && street.trades(1).is_empty());
}

#[test]
fn a_maker_that_crashes_before_its_flush_agreed_nothing() {
    let mut street = requests_at_the_seller(32, &[32]);
    deliver_where(&mut street, is_call);
    street.crash(0, false);
    street.start(0);
    assert_eq!(street.traded(0, I, Side::Sell), Wh::ZERO);
    assert!(street.settle(80));
    for interval in Street::crossing() {
        assert_eq!(street.traded(0, interval, Side::Sell), street.traded(1, interval, Side::Buy));
        assert!(street.traded(0, interval, Side::Sell) <= Wh(32));
    }
}

#[test]
fn a_failed_write_refuses_the_call_and_frees_the_energy() {
    let mut street = requests_at_the_seller(32, &[32]);
    deliver_where(&mut street, is_call);
    let turn = street.houses[0].unsynced.pop_front().unwrap().turn;
    let now = street.now;
    let seller = street.houses[0].trader.as_mut().unwrap();
    seller.failed(turn, now);
    assert_eq!(seller.position().committed(I, Side::Sell), Wh::ZERO, "the energy is free again");
    let refusals = seller.take_effects().into_iter().filter(|e| matches!(e, Effect::Respond { .. })).count();
    assert_eq!(refusals, 1, "the call is answered: refused");
    assert_eq!(seller.metrics().turns_refused, 1);
}

#[test]
fn a_draining_node_cancels_its_orders_and_refuses_requests() {
    let mut street = requests_at_the_seller(32, &[32]);
    street.input(0, Input::Drain);
    street.flush(0);
    let cancels = gossiped_orders(&street).into_iter().filter(|o| o.body().energy == Wh::ZERO).count();
    assert_eq!(cancels, 4, "one cancellation per open interval");
    assert!(street.settle(60));
    assert!(street.trades(0).is_empty(), "a stopping maker agrees nothing");
    assert!(street.houses[0].ledger.iter().any(|(k, _)| *k == EntryKind::OrderPublished));
}

/// House `n`'s meter closes `interval` with `imported` Wh.
fn meter_closes(street: &mut Street, n: usize, interval: IntervalId, imported: u64) {
    street.input(n, Input::Meter(measured(interval, imported)));
}

/// The statements in the gossip frames waiting in the queue for house `to`.
fn gossiped_statements(street: &Street, to: usize) -> Vec<Signed<MeterStatement>> {
    street
        .queue
        .iter()
        .filter_map(|m| match m {
            Msg::Gossip { topic: Topic::Statements, frame, to: t } if *t == to => GossipFrame::from_bytes(frame).ok(),
            _ => None,
        })
        .flat_map(|f| f.messages.into_iter().filter_map(|m| Signed::<MeterStatement>::from_bytes(&m).ok()))
        .collect()
}

/// The signed messages of `kind` in house `n`'s durable ledger, in order.
fn in_ledger<T: Message>(street: &Street, n: usize, kind: EntryKind) -> Vec<Signed<T>> {
    let entries = street.houses[n].ledger.iter().filter(|(k, _)| *k == kind);
    entries.map(|(_, p)| Signed::<T>::from_bytes(p).expect("a ledger entry decodes")).collect()
}

fn statements_in_ledger(street: &Street, n: usize) -> Vec<Signed<MeterStatement>> {
    in_ledger(street, n, EntryKind::MeterStatement)
}

/// Whether house `n` has an entry of `kind` among its writes not yet durable.
fn unsynced_has(street: &Street, n: usize, kind: EntryKind) -> bool {
    street.houses[n].unsynced.iter().flat_map(|w| &w.entries).any(|(k, _)| *k == kind)
}

/// An interval that has ended at the street's first moment.
const CLOSED: IntervalId = IntervalId(I.0 - 4);

/// Whether house `n` has a statement among its writes not yet durable.
fn stated_unsynced(street: &Street, n: usize) -> bool {
    unsynced_has(street, n, EntryKind::MeterStatement)
}

/// House `n`'s next statement slot comes (an hour on): its waiting intervals are stated.
fn statement_slot(street: &mut Street, n: usize) {
    street.advance(STATEMENT_GOSSIP_MS);
    street.tick(n);
}

#[test]
fn a_closed_interval_is_stated_in_the_next_slot_and_gossiped_once_durable() {
    let mut street = Street::new(&[100, -100]);
    street.tick(0); // the first tick is in a slot of its own
    meter_closes(&mut street, 0, CLOSED, 120);
    street.tick(0);
    assert!(!stated_unsynced(&street, 0), "nothing is stated before the slot");
    statement_slot(&mut street, 0);
    let writes = street.houses[0].unsynced.back().expect("the statement is written with the slot's turn");
    assert!(writes.entries.iter().any(|(k, _)| *k == EntryKind::MeterStatement));
    assert!(gossiped_statements(&street, 1).is_empty(), "nothing leaves before it is durable");
    street.flush(0);
    let sent = gossiped_statements(&street, 1);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].body().interval, sent[0].body().revision, sent[0].body().figures.imported),
        (CLOSED, 0, Wh(120))
    );
    assert_eq!(statements_in_ledger(&street, 0), sent, "what is gossiped is what the ledger holds");
    deliver_where(&mut street, is_gossip);
    let held = street.houses[1].trader.as_ref().unwrap().statements().get(&street.key_of(0), CLOSED).cloned();
    assert_eq!(held.map(|k| k.digest), Some(sent[0].digest()), "the neighbour keeps it");
}

#[test]
fn a_correction_supersedes_and_a_restart_continues_the_revisions() {
    let mut street = Street::new(&[100, -100]);
    street.tick(0);
    meter_closes(&mut street, 0, CLOSED, 120);
    statement_slot(&mut street, 0);
    street.flush(0);
    meter_closes(&mut street, 0, CLOSED, 120);
    statement_slot(&mut street, 0);
    assert!(!stated_unsynced(&street, 0), "the same figures are not stated twice");
    meter_closes(&mut street, 0, CLOSED, 130);
    statement_slot(&mut street, 0);
    street.flush(0);
    let sent = gossiped_statements(&street, 1);
    assert_eq!(sent.iter().map(|s| s.body().revision).collect::<Vec<_>>(), vec![0, 1], "both leave, in order");
    deliver_where(&mut street, is_gossip);
    let neighbour = street.houses[1].trader.as_ref().unwrap();
    assert_eq!(neighbour.statements().get(&street.key_of(0), CLOSED).unwrap().imported, Wh(130));
    assert_eq!(neighbour.metrics().statements_superseded, 1);

    street.crash(0, false);
    street.start(0);
    meter_closes(&mut street, 0, CLOSED, 130);
    statement_slot(&mut street, 0);
    assert!(!stated_unsynced(&street, 0), "restored from the ledger: stated already");
    meter_closes(&mut street, 0, CLOSED, 140);
    statement_slot(&mut street, 0);
    street.flush(0);
    let revisions: Vec<u32> = statements_in_ledger(&street, 0).iter().map(|s| s.body().revision).collect();
    assert_eq!(revisions, vec![0, 1, 2]);
}

#[test]
fn a_statement_whose_write_failed_is_stated_again_in_the_next_slot() {
    let mut street = Street::new(&[100, -100]);
    street.tick(0);
    meter_closes(&mut street, 0, CLOSED, 120);
    statement_slot(&mut street, 0);
    let turn = street.houses[0].unsynced.pop_front().unwrap().turn;
    let now = street.now;
    street.houses[0].trader.as_mut().unwrap().failed(turn, now);
    statement_slot(&mut street, 0);
    street.flush(0);
    let stated = statements_in_ledger(&street, 0);
    assert_eq!(stated.len(), 1, "stated again, once");
    assert_eq!((stated[0].body().revision, stated[0].body().figures.imported), (0, Wh(120)));
}

#[test]
fn a_draining_node_states_its_closed_intervals_without_waiting_for_its_slot() {
    let mut street = Street::new(&[100, -100]);
    street.tick(0);
    meter_closes(&mut street, 0, CLOSED, 120);
    street.input(0, Input::Drain);
    street.flush(0);
    assert_eq!(gossiped_statements(&street, 1).len(), 1);
}

#[test]
fn an_interval_closed_before_a_crash_and_offered_again_is_stated_once() {
    let mut street = Street::new(&[100, -100]);
    street.tick(0);
    meter_closes(&mut street, 0, CLOSED, 120);
    statement_slot(&mut street, 0);
    street.flush(0);
    let next = IntervalId(CLOSED.0 + 1);
    meter_closes(&mut street, 0, next, 70);
    street.crash(0, false); // `next` waited for the slot: not in the ledger
    street.start(0);
    let history = [measured(CLOSED, 120), measured(next, 70)];
    street.houses[0].trader.as_mut().unwrap().restate(history);
    street.tick(0);
    statement_slot(&mut street, 0);
    street.flush(0);
    let stated: Vec<(IntervalId, u32)> =
        statements_in_ledger(&street, 0).iter().map(|s| (s.body().interval, s.body().revision)).collect();
    assert_eq!(stated, vec![(CLOSED, 0), (next, 0)], "the stated one is not stated again, the other is");
}

/// House `n`'s meter closes `interval` with `imported` and `exported` Wh.
fn meter_closes_with(street: &mut Street, n: usize, interval: IntervalId, imported: u64, exported: u64) {
    let mut m = measured(interval, imported);
    m.figures.exported = Wh(exported);
    street.input(n, Input::Meter(m));
}

/// House `n`'s latest durable settlement of each interval, by its ledger.
fn settlements_in_ledger(street: &Street, n: usize) -> BTreeMap<IntervalId, Settlement> {
    let all = in_ledger::<Settlement>(street, n, EntryKind::Settlement);
    all.into_iter().map(|s| (s.body().interval, s.body().clone())).collect()
}

/// Delivers the gossip waiting for house `to` (and nothing else).
fn deliver_gossip_to(street: &mut Street, to: usize) {
    deliver_where(street, |m| matches!(m, Msg::Gossip { to: t, .. } if *t == to));
}

/// Per trade: (delivered, money, energy, price) in the settlements of house `n`.
fn settled_trades(settlements: &BTreeMap<IntervalId, Settlement>) -> BTreeMap<Hash, (Wh, Money, Wh, Price)> {
    settlements.values().flat_map(|s| &s.trades).map(|t| (t.trade, (t.delivered, t.money, t.energy, t.price))).collect()
}

#[test]
fn both_parties_settle_each_trade_alike_and_a_missing_statement_gives_a_provisional_settlement_that_is_redone() {
    let mut street = requests_at_the_seller(32, &[32]);
    assert!(street.settle(60), "the street did not settle");
    let [first, second] = Street::crossing();
    // Both intervals are over; the buyer took only 20 Wh from the grid in the second.
    street.now = Timestamp(street.community().interval.start(IntervalId(second.0 + 1)).0 + 1_000);
    for (interval, bought) in [(first, 32), (second, 20)] {
        meter_closes_with(&mut street, 0, interval, 0, 32);
        meter_closes_with(&mut street, 1, interval, bought, 0);
    }
    // Both state in their slots; only the seller's statements reach the buyer.
    street.advance(STATEMENT_GOSSIP_MS);
    for n in [0, 1] {
        street.tick(n);
        street.flush(n);
    }
    deliver_gossip_to(&mut street, 1);
    assert_eq!(statements_in_ledger(&street, 0).len(), 2);
    // The deadline passes.
    street.advance(SETTLE_AFTER_MS);
    for n in [0, 1] {
        street.tick(n);
        street.flush(n);
    }
    let (seller, buyer) = (settlements_in_ledger(&street, 0), settlements_in_ledger(&street, 1));
    assert_eq!(buyer.len(), 2, "the buyer settled both intervals");
    assert!(buyer.values().all(|s| s.complete && s.revision == 0));
    assert_eq!(seller.len(), 2, "the seller settled both, provisionally");
    assert!(seller.values().all(|s| !s.complete && s.trades.iter().all(|t| t.delivered == Wh(0))));
    assert_eq!(street.houses[0].trader.as_ref().unwrap().metrics().settlements_provisional, 2);
    // The buyer's statements arrive: the seller settles again.
    deliver_gossip_to(&mut street, 0);
    street.tick(0);
    assert!(!settled_unsynced(&street, 0), "a settled interval is redone at the top of the hour, not at once");
    street.advance(STATEMENT_GOSSIP_MS);
    street.tick(0);
    street.flush(0);
    let seller = settlements_in_ledger(&street, 0);
    assert!(seller.values().all(|s| s.complete && s.revision == 1), "redone: {seller:?}");
    assert_eq!(settled_trades(&seller), settled_trades(&buyer), "both parties settle every trade alike");
    let delivered: Vec<u64> = seller.values().map(|s| s.trades.iter().map(|t| t.delivered.0).sum()).collect();
    assert_eq!(delivered, vec![32, 20]);
    let s = &seller[&second];
    assert_eq!((s.grid_export, s.shared_export), (Wh(12), Wh(0)), "nobody had import left to share");
    assert_eq!(street.houses[0].trader.as_ref().unwrap().metrics().settlements_redone, 2);
    // Nothing changed since: the next hour settles nothing again.
    street.advance(STATEMENT_GOSSIP_MS);
    street.tick(0);
    assert!(!settled_unsynced(&street, 0), "settled again with nothing changed");
}

/// Whether house `n` has a settlement among its writes not yet durable.
fn settled_unsynced(street: &Street, n: usize) -> bool {
    unsynced_has(street, n, EntryKind::Settlement)
}

/// `peerwatt status` says why a node does not trade: a new node is learning its household's
/// use, a node with nothing forecast has nothing to trade, one with orders trades.
#[test]
fn the_trading_state_says_why_a_node_does_not_trade() {
    use super::TradingState;
    use crate::strategy::{ForecastMethod, Forecaster};
    let mut street = Street::new(&[500, -300, 0]);
    street.tick(0);
    let now = street.now;
    let trader = |street: &Street, n: usize| street.houses[n].trader.as_ref().unwrap().trading_state(now);
    assert!(matches!(trader(&street, 0), TradingState::Trading { orders } if orders > 0), "{:?}", trader(&street, 0));
    assert_eq!(trader(&street, 2), TradingState::NothingForecast);
    // A new node without a complete hour of meter history: learning.
    let community = street.community().clone();
    let fresh = Forecaster::with_method(&community, vec![], ForecastMethod::SameTimeOfDay { days: 7 });
    let cert = street.cert(0);
    let new_node =
        super::Trader::new(super::testkit::key(0), community, cert, fresh, super::testkit::config(), 0, None);
    let state = new_node.trading_state(now);
    assert_eq!(state, TradingState::Learning { have: 0, need: 4 });
    assert!(state.to_string().contains("0 of 4 complete intervals"), "{state}");
}
