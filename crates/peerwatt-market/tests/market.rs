//! The order book's rules and the maker/taker handshake, including crash reconciliation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::time::Duration;

use peerwatt_core::*;
use peerwatt_market::*;

mod common;
use common::*;

fn now(minutes_before_start: u64) -> Timestamp {
    Timestamp(START - minutes_before_start * 60_000)
}

fn key(n: u8) -> NodeKey {
    NodeKey::from_seed(&[n; 32])
}

fn order(k: &NodeKey, side: Side, wh: u64, price: u64, seq: u64, created: Timestamp) -> Signed<Order> {
    Signed::sign(
        k,
        Order {
            community: community().id,
            side,
            interval: I,
            energy: Wh(wh),
            start_price: Price(price),
            limit_price: Price(price),
            seq,
            created_at: created,
            expires_at: Timestamp(START),
            rules: 0,
        },
    )
}

#[test]
fn price_time_priority_is_the_same_on_every_node() {
    let mut books = Books::new(community());
    let t = now(30);
    let a = order(&key(1), Side::Sell, 1000, 150_000, 1, Timestamp(t.0 + 2));
    let b = order(&key(2), Side::Sell, 1000, 120_000, 1, Timestamp(t.0 + 3));
    let c = order(&key(3), Side::Sell, 1000, 150_000, 1, Timestamp(t.0 + 1)); // same price as a, earlier
    for o in [&a, &b, &c] {
        books.insert(o, t).unwrap();
    }
    let asks: Vec<Hash> = books.side(I, Side::Sell, t).iter().map(|o| o.id).collect();
    assert_eq!(asks, vec![b.digest(), c.digest(), a.digest()], "cheapest first, then earliest");

    // A buyer limited to 150,000 sees all three; at 130,000 only the cheapest.
    let buyer = key(9).public();
    assert_eq!(books.crossing(I, Side::Buy, Price(150_000), &buyer, t).len(), 3);
    assert_eq!(books.crossing(I, Side::Buy, Price(130_000), &buyer, t).len(), 1);
    // A maker never takes its own order.
    assert_eq!(books.crossing(I, Side::Buy, Price(150_000), &key(2).public(), t).len(), 2);
}

/// docs/market.md, "An order carries its price curve": books rank by the price at the moment,
/// a buyer takes when the curves cross, and the maker accepts the price of its curve at the
/// request's signed time, believed only up to the clock-skew allowance.
#[test]
fn orders_are_ranked_taken_and_accepted_at_their_curve_price() {
    let c = community();
    let (opens, closes) = (now(60), Timestamp(START - 60_000));
    let curve = |k: &NodeKey, start: u64, limit: u64| {
        Signed::sign(
            k,
            Order {
                community: c.id,
                side: Side::Sell,
                interval: I,
                energy: Wh(1_000),
                start_price: Price(start),
                limit_price: Price(limit),
                seq: 1,
                created_at: opens,
                expires_at: closes,
                rules: 0,
            },
        )
    };
    // A fixed ask at 0.150, and a falling one from 0.300 to 0.080 over the 59-minute window.
    let (fixed, falling) = (curve(&key(1), 150_000, 150_000), curve(&key(2), 300_000, 80_000));
    let mut books = Books::new(c.clone());
    books.insert(&fixed, opens).unwrap();
    books.insert(&falling, opens).unwrap();
    let early = now(50);
    let late = Timestamp(closes.0 - 59 * 60_000 / 4); // three quarters through: 0.135
    assert_eq!(books.get(&falling.digest()).unwrap().price(late), Price(135_000));
    let best = |t| books.side(I, Side::Sell, t)[0].id;
    assert_eq!(best(early), fixed.digest(), "early the fixed ask is cheaper");
    assert_eq!(best(late), falling.digest(), "later the falling one is");
    let buyer = key(9).public();
    assert_eq!(books.crossing(I, Side::Buy, Price(140_000), &buyer, early).len(), 0, "nothing crosses yet");
    assert_eq!(books.crossing(I, Side::Buy, Price(140_000), &buyer, late).len(), 1, "the curves crossed");

    // The taker asks at the curve's price now; the maker accepts it later, when its curve is lower.
    let mk = key(2);
    let mut maker = Maker::new(c.clone(), mk.public());
    maker.publish(falling.clone());
    let (tk, mut taker) = (key(3), Taker::new(key(3).public(), c.id, 1));
    let view = books.get(&falling.digest()).unwrap().clone();
    let request = taker.request(&tk, &view, Wh(100), late);
    assert_eq!(request.body().price, Price(135_000));
    let trade = agree(&mut maker, &mk, &request, Timestamp(late.0 + 30_000));
    assert_eq!(trade.body().request.body().price, Price(135_000));
    // A price below the curve at the request's time is refused.
    let mut underpriced = taker.request(&tk, &view, Wh(100), late).body().clone();
    underpriced.price = Price(134_000);
    let underpriced = Signed::sign(&tk, underpriced);
    assert_eq!(maker.accept(&mk, &underpriced, late).unwrap_err(), Refusal::TermsMismatch("price"));
    // Dating a request far ahead buys at most the skew allowance: the maker judges it at now + 5 s.
    let ahead = taker.request(&tk, &view, Wh(100), Timestamp(closes.0 - 1));
    assert_eq!(ahead.body().price, Price(80_001));
    assert_eq!(maker.accept(&mk, &ahead, late).unwrap_err(), Refusal::TermsMismatch("price"));
}

/// docs/market.md, "Which crossing order first": asks at 0.120, 0.125 and 0.140, a band of
/// 0.011. Every taker asks both asks of the best band before the 0.140 one; within the band
/// each taker has its own order, so takers do not all queue at the same ask.
#[test]
fn a_taker_spreads_its_requests_within_the_best_band() {
    let mut books = Books::new(community());
    let t = now(30);
    let cheap = order(&key(1), Side::Sell, 1000, 120_000, 1, t);
    let near = order(&key(2), Side::Sell, 1000, 125_000, 1, t);
    let dear = order(&key(3), Side::Sell, 1000, 140_000, 1, t);
    for o in [&cheap, &near, &dear] {
        books.insert(o, t).unwrap();
    }
    let band = 11_000;
    let mut first_asked = std::collections::HashSet::new();
    for taker in 10..30u8 {
        let me = key(taker).public();
        let asked: Vec<Hash> = taking_order(&me, books.crossing(I, Side::Buy, Price(150_000), &me, t), band, t)
            .iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(asked.len(), 3);
        assert_eq!(asked[2], dear.digest(), "the dearer band comes last for every taker");
        first_asked.insert(asked[0]);
    }
    assert_eq!(first_asked, [cheap.digest(), near.digest()].into(), "takers start at different asks of the band");
    // A band narrower than the prices' spread is strict price order.
    let me = key(10).public();
    let strict: Vec<Hash> =
        taking_order(&me, books.crossing(I, Side::Buy, Price(150_000), &me, t), 1, t).iter().map(|o| o.id).collect();
    assert_eq!(strict, vec![cheap.digest(), near.digest(), dear.digest()]);
}

#[test]
fn orders_are_checked_replaced_cancelled_and_pruned() {
    let mut books = Books::new(community());
    let k = key(1);
    let t = now(30);
    assert_eq!(books.insert(&order(&k, Side::Sell, 1000, 150_000, 5, t), t), Ok(Inserted::New));
    // A replay (same or lower sequence) is refused.
    assert!(matches!(
        books.insert(&order(&k, Side::Sell, 900, 140_000, 5, t), t),
        Err(OrderReject::Replay { seq: 5, last: 5 })
    ));
    // Sequence numbers count per interval and side: a maker's order for another interval (or
    // side) with a lower number is no replay (gossip delivers them in any order).
    assert_eq!(books.insert(&order(&k, Side::Buy, 100, 150_000, 2, t), t), Ok(Inserted::New));
    assert!(matches!(books.insert(&order(&k, Side::Buy, 0, 150_000, 3, t), t), Ok(Inserted::Cancelled(Some(_)))));
    // A newer order replaces the older for the same interval and side.
    let newer = order(&k, Side::Sell, 800, 140_000, 6, t);
    assert!(matches!(books.insert(&newer, t), Ok(Inserted::Replaced(_))));
    assert_eq!(books.side(I, Side::Sell, t).len(), 1);
    assert_eq!(books.side(I, Side::Sell, t)[0].id, newer.digest());
    // Energy 0 cancels.
    assert_eq!(
        books.insert(&order(&k, Side::Sell, 0, 140_000, 7, t), t),
        Ok(Inserted::Cancelled(Some(newer.digest())))
    );
    assert!(books.side(I, Side::Sell, t).is_empty());

    let k2 = key(2);
    assert_eq!(
        books.insert(&order(&k2, Side::Buy, 1, 350_000, 1, t), t),
        Err(OrderReject::PriceOutOfRange { price: Price(350_000), feed_in: Price(80_000), retail: Price(300_000) })
    );
    // A seller whose price would rise toward its "limit", and a start price beyond retail.
    let mut rising = order(&k2, Side::Sell, 1, 100_000, 1, t).body().clone();
    rising.limit_price = Price(200_000);
    assert_eq!(books.insert(&Signed::sign(&k2, rising.clone()), t), Err(OrderReject::CurveBackwards));
    rising.start_price = Price(300_001);
    assert_eq!(
        books.insert(&Signed::sign(&k2, rising), t),
        Err(OrderReject::PriceOutOfRange { price: Price(300_001), feed_in: Price(80_000), retail: Price(300_000) })
    );
    assert_eq!(
        books.insert(&order(&k2, Side::Buy, 1, 100_000, 2, now(90)), now(90)),
        Err(OrderReject::OutOfWindow(I)),
        "30 minutes before trading opens: far outside the window"
    );
    assert_eq!(
        books.insert(&order(&k2, Side::Buy, 1, 100_000, 2, now(61)), now(61)),
        Err(OrderReject::NotOpen(I)),
        "a minute before trading opens: near the window"
    );
    assert_eq!(
        books.insert(&order(&k2, Side::Buy, 1, 100_000, 3, now(0)), now(0)),
        Err(OrderReject::NotOpen(I)),
        "past gate closure"
    );
    let future = order(&k2, Side::Buy, 1, 100_000, 4, Timestamp(t.0 + 60_000));
    assert!(matches!(books.insert(&future, t), Err(OrderReject::FromTheFuture(_))));

    books.insert(&order(&k2, Side::Buy, 500, 100_000, 5, t), t).unwrap();
    assert_eq!(books.prune(now(2)), 0, "two minutes before the start it is still open");
    assert_eq!(books.prune(now(1)), 1, "gate closure (one minute before the start) ends the order");
}

/// A maker with one open sell order, a taker, and the taker's view of the order.
fn setup(wh: u64) -> (NodeKey, Maker, NodeKey, Taker, BookOrder) {
    let (mk, tk) = (key(1), key(2));
    let c = community();
    let mut maker = Maker::new(c.clone(), mk.public());
    let offer = order(&mk, Side::Sell, wh, 120_000, 1, now(30));
    maker.publish(offer.clone());
    let mut books = Books::new(c.clone());
    books.insert(&offer, now(30)).unwrap();
    let view = books.get(&offer.digest()).unwrap().clone();
    let taker = Taker::new(tk.public(), c.id, 1);
    (mk, maker, tk, taker, view)
}

fn agree(maker: &mut Maker, mk: &NodeKey, req: &Signed<TradeRequest>, t: Timestamp) -> Signed<Trade> {
    match maker.accept(mk, req, t).unwrap() {
        Acceptance::New(reserved) => maker.commit(reserved), // (the node appends to its ledger in between)
        Acceptance::Again(_) => panic!("expected a new trade"),
    }
}

#[test]
fn the_handshake_gives_both_parties_the_same_two_signature_trade() {
    let (mk, mut maker, tk, mut taker, offer) = setup(1000);
    let t = now(20);
    let req = taker.request(&tk, &offer, Wh(400), t);
    assert_eq!(taker.state(&req.digest()), Some(RequestState::Persisting));
    taker.sent(&req.digest(), t);
    assert_eq!(taker.state(&req.digest()), Some(RequestState::Sent));
    assert_eq!(taker.outstanding(I), Wh(400));
    let trade = agree(&mut maker, &mk, &req, t);
    trade.verify().unwrap();
    assert_eq!(trade.body().seller(), &mk.public());
    assert_eq!(trade.body().buyer(), &tk.public());
    assert_eq!(trade.body().request.body().price, Price(120_000), "the maker's limit price");
    let TakerAction::Record(recorded) = taker.on_answer(&req.digest(), Ok(trade.clone())) else { panic!() };
    assert_eq!(recorded.to_bytes(), trade.to_bytes(), "byte-identical in both ledgers");
    assert_eq!(taker.outstanding(I), Wh::ZERO);
    // The same trade announced on the trades topic is not recorded twice.
    assert_eq!(taker.on_trade(&trade), TakerAction::AlreadyRecorded);
    assert_eq!(maker.remaining(&offer.id), Some(Wh(600)), "partial fill");
}

#[test]
fn reservations_never_oversell_and_aborts_release() {
    let (mk, mut maker, tk, mut taker, offer) = setup(1000);
    let t = now(20);
    let r1 = taker.request(&tk, &offer, Wh(700), t);
    let r2 = taker.request(&tk, &offer, Wh(400), t);
    let Acceptance::New(first) = maker.accept(&mk, &r1, t).unwrap() else { panic!() };
    // While the first is being recorded, only 300 Wh are available.
    assert_eq!(maker.accept(&mk, &r2, t).unwrap_err(), Refusal::Insufficient { available: Wh(300) });
    assert_eq!(maker.accept(&mk, &r1, t).unwrap_err(), Refusal::InFlight);
    // The ledger write fails: the reservation is released, nobody has a trade.
    maker.abort(first);
    assert_eq!(maker.remaining(&offer.id), Some(Wh(1000)));
    assert!(maker.lookup(&r1.digest()).is_none());
    let trade = agree(&mut maker, &mk, &r2, t);
    assert_eq!(trade.body().request.body().energy, Wh(400));
    assert_eq!(maker.remaining(&offer.id), Some(Wh(600)));
}

#[test]
fn a_repeated_request_gets_the_same_trade() {
    let (mk, mut maker, tk, mut taker, offer) = setup(1000);
    let t = now(20);
    let req = taker.request(&tk, &offer, Wh(100), t);
    let trade = agree(&mut maker, &mk, &req, t);
    let Acceptance::Again(again) = maker.accept(&mk, &req, now(10)).unwrap() else { panic!() };
    assert_eq!(again, trade);
    assert_eq!(maker.remaining(&offer.id), Some(Wh(900)), "not filled twice");
}

#[test]
fn the_maker_refuses_what_does_not_match() {
    let (mk, mut maker, tk, mut taker, offer) = setup(1000);
    let t = now(20);
    let mut cheap = offer.clone();
    cheap.order.start_price = Price(100_000);
    cheap.order.limit_price = Price(100_000);
    assert_eq!(
        maker.accept(&mk, &taker.request(&tk, &cheap, Wh(1), t), t).unwrap_err(),
        Refusal::TermsMismatch("price")
    );
    let mut flipped = offer.clone();
    flipped.order.side = Side::Buy;
    assert_eq!(
        maker.accept(&mk, &taker.request(&tk, &flipped, Wh(1), t), t).unwrap_err(),
        Refusal::TermsMismatch("side")
    );
    assert_eq!(maker.accept(&mk, &taker.request(&tk, &offer, Wh(0), t), t).unwrap_err(), Refusal::ZeroEnergy);
    assert_eq!(
        maker.accept(&mk, &taker.request(&tk, &offer, Wh(2000), t), t).unwrap_err(),
        Refusal::Insufficient { available: Wh(1000) }
    );
    // Past gate closure.
    let late = Timestamp(START - 30_000);
    assert_eq!(maker.accept(&mk, &taker.request(&tk, &offer, Wh(1), late), late).unwrap_err(), Refusal::Closed);
    // Self-trade, a forged request, and a request to someone else.
    let mut own = Taker::new(mk.public(), community().id, 1);
    assert_eq!(maker.accept(&mk, &own.request(&mk, &offer, Wh(1), t), t).unwrap_err(), Refusal::SelfTrade);
    let forged = taker.request(&tk, &offer, Wh(1), t).with_signature_for_tests(Signature::from_bytes(&[5; 64]));
    assert_eq!(maker.accept(&mk, &forged, t).unwrap_err(), Refusal::BadSignature);
    let mut other = offer.clone();
    other.maker = key(7).public();
    assert_eq!(maker.accept(&mk, &taker.request(&tk, &other, Wh(1), t), t).unwrap_err(), Refusal::NotMine);
    // An order the maker never published does not trade.
    let mut unknown = offer.clone();
    unknown.id = Hash([7; 32]);
    assert_eq!(maker.accept(&mk, &taker.request(&tk, &unknown, Wh(1), t), t).unwrap_err(), Refusal::NoSuchOrder);
    // An order replaced by one at a higher ask no longer trades at the old price.
    maker.publish(order(&mk, Side::Sell, 500, 130_000, 2, t));
    assert_eq!(maker.accept(&mk, &taker.request(&tk, &offer, Wh(1), t), t).unwrap_err(), Refusal::Repriced);
}

/// A request that crossed the maker's re-pricing on its way fills the maker's current order
/// when its price is at least as good for the maker: at the price both signed, with the energy
/// the current order has.
#[test]
fn a_request_that_crossed_a_repricing_fills_the_current_order() {
    let (mk, mut maker, tk, mut taker, offer) = setup(1000);
    let t = now(20);
    let request = taker.request(&tk, &offer, Wh(300), t);
    let cheaper = order(&mk, Side::Sell, 400, 110_000, 2, t);
    maker.publish(cheaper.clone());
    let trade = agree(&mut maker, &mk, &request, t);
    assert_eq!(trade.body().request.body().price, Price(120_000), "the price the taker signed");
    assert_eq!(maker.remaining(&cheaper.digest()), Some(Wh(100)), "filled from the current order");
    assert_eq!(
        maker.accept(&mk, &taker.request(&tk, &offer, Wh(200), t), t).unwrap_err(),
        Refusal::Insufficient { available: Wh(100) }
    );
    // A cancelled order leaves nothing to fill.
    maker.publish(order(&mk, Side::Sell, 0, 110_000, 3, t));
    assert_eq!(maker.accept(&mk, &taker.request(&tk, &offer, Wh(50), t), t).unwrap_err(), Refusal::Cancelled);
}

#[test]
fn a_taker_that_crashes_after_sending_reconciles_exactly_once() {
    let (mk, mut maker, tk, mut taker, offer) = setup(1000);
    let t = now(20);
    let a = taker.request(&tk, &offer, Wh(100), t);
    let b = taker.request(&tk, &offer, Wh(200), t);
    let c = taker.request(&tk, &offer, Wh(300), t);
    // The maker agrees to a and b; c is lost on the way. Then the taker crashes.
    let trade_a = agree(&mut maker, &mk, &a, t);
    let trade_b = agree(&mut maker, &mk, &b, t);
    let persisted = [a.clone(), b.clone(), c.clone()];
    drop(taker);

    // Restart: the taker had recorded trade a before crashing; b and c are unknown.
    let mut taker = Taker::new(tk.public(), community().id, 1);
    taker.restore_recorded(&trade_a);
    for r in &persisted {
        taker.restore_pending(r.clone(), t);
    }
    assert_eq!(taker.next_seq(), 4, "request numbers are never reused");
    let to_ask = taker.expire(now(19), Duration::from_secs(5));
    assert_eq!(to_ask.len(), 2);
    // Ask the maker about them in one query: it answers with the agreed ones, and closes the rest.
    let digests: Vec<Hash> = to_ask.iter().map(|r| r.digest()).collect();
    let known = maker.query(&digests).unwrap();
    let mut recorded = vec![];
    for d in &digests {
        let answer = known.iter().find(|t| t.body().request.digest() == *d).cloned().ok_or_else(|| "not agreed".into());
        if let TakerAction::Record(t) = taker.on_answer(d, answer) {
            recorded.push(*t);
        }
    }
    assert_eq!(recorded, vec![trade_b.clone()], "exactly the trades the maker recorded");
    // The lost request c, arriving late after all, is refused: "not agreed" was final.
    assert_eq!(maker.accept(&mk, &c, t).unwrap_err(), Refusal::AnsweredBefore);
    // The announcement of a arriving late changes nothing.
    assert_eq!(taker.on_trade(&trade_a), TakerAction::AlreadyRecorded);
    assert_eq!(taker.on_trade(&trade_b), TakerAction::AlreadyRecorded);
    assert_eq!(taker.outstanding(I), Wh::ZERO);
}

#[test]
fn forged_or_foreign_trades_are_not_recorded() {
    let (mk, mut maker, tk, mut taker, offer) = setup(1000);
    let t = now(20);
    let req = taker.request(&tk, &offer, Wh(100), t);
    let trade = agree(&mut maker, &mk, &req, t);
    let mut someone_else = Taker::new(key(8).public(), community().id, 1);
    assert_eq!(someone_else.on_trade(&trade), TakerAction::NotOurs);
    // The maker's countersignature forged by a third party.
    let forged = Signed::sign(&key(9), trade.body().clone());
    assert!(matches!(taker.on_trade(&forged), TakerAction::Invalid(_)));
    assert!(matches!(taker.on_trade(&trade), TakerAction::Record(_)));
}

#[test]
fn an_order_that_also_takes_never_trades_the_same_energy_twice() {
    let (mk, mut maker, tk, mut taker, offer) = setup(1000);
    // The maker's own order crossed a resting bid: it holds 700 Wh of the order for its request.
    assert_eq!(maker.hold_for_own_request(&offer.id, Wh(700)), Wh(700));
    assert_eq!(maker.available(&offer.id), Wh(300));
    // So a taker can only get the remaining 300 Wh.
    let req = taker.request(&tk, &offer, Wh(400), now(20));
    assert_eq!(maker.accept(&mk, &req, now(20)).unwrap_err(), Refusal::Insufficient { available: Wh(300) });
    assert_eq!(maker.hold_for_own_request(&offer.id, Wh(500)), Wh(300), "never more than is left");
    assert_eq!(maker.available(&offer.id), Wh::ZERO);
}
