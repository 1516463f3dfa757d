//! Gossiped orders from honest and hostile peers: each hostile kind is refused by name with
//! the right penalty, and the books only ever change for a fully valid order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use peerwatt_core::*;
use peerwatt_market::*;

mod common;
use common::*;

const NOW: Timestamp = Timestamp(START - 30 * 60_000);

fn cert_by(signer: &NodeKey, community: CommunityId, member: PublicKey, until: Timestamp) -> Signed<MembershipCert> {
    Signed::sign(
        signer,
        MembershipCert {
            community,
            member,
            name: "m".into(),
            zone: "z".into(),
            valid_from: Timestamp(0),
            valid_until: until,
        },
    )
}

fn cert(member: &NodeKey) -> Signed<MembershipCert> {
    cert_by(&admin(), community().id, member.public(), Timestamp(u64::MAX))
}

fn offer(k: &NodeKey, seq: u64, interval: IntervalId, price: u64) -> Signed<Order> {
    Signed::sign(
        k,
        Order {
            community: community().id,
            side: Side::Sell,
            interval,
            energy: Wh(500),
            start_price: Price(price),
            limit_price: Price(price),
            seq,
            created_at: NOW,
            expires_at: Timestamp(START),
            rules: 0,
        },
    )
}

fn frame(cert: Signed<MembershipCert>, order: &Signed<Order>) -> Vec<u8> {
    GossipFrame::single(cert, order.to_bytes()).to_bytes()
}

#[test]
fn hostile_frames_are_refused_by_name_and_change_nothing() {
    let member = NodeKey::from_seed(&[1; 32]);
    let outsider = NodeKey::from_seed(&[66; 32]);
    let rogue_admin = NodeKey::from_seed(&[77; 32]);
    let mut books = Books::new(community());
    let mut validator = GossipValidator::new(community());

    let good = offer(&member, 10, I, 150_000);
    let accepted = validator.accept_orders(&mut books, &frame(cert(&member), &good), NOW).unwrap();
    assert_eq!(accepted, vec![(good.clone(), Inserted::New)]);

    let forged = offer(&member, 11, I, 90_000).with_signature_for_tests(Signature::from_bytes(&[9; 64]));
    let mut bad_cert_sig = cert(&outsider).with_signature_for_tests(Signature::from_bytes(&[8; 64]));
    // (a certificate never seen before, so its signature is really checked)
    bad_cert_sig = Signed::from_bytes(&bad_cert_sig.to_bytes()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str, Penalty)> = vec![
        ("forged order signature", frame(cert(&member), &forged), "bad_signature", Penalty::Reject),
        (
            "non-member signs with a member's certificate",
            frame(cert(&member), &offer(&outsider, 1, I, 150_000)),
            "not_member",
            Penalty::Reject,
        ),
        (
            "certificate from a rogue admin",
            frame(
                cert_by(&rogue_admin, community().id, outsider.public(), Timestamp(u64::MAX)),
                &offer(&outsider, 1, I, 150_000),
            ),
            "not_admitted",
            Penalty::Reject,
        ),
        (
            "expired certificate",
            frame(
                cert_by(&admin(), community().id, member.public(), Timestamp(NOW.0 - 1)),
                &offer(&member, 12, I, 150_000),
            ),
            // Judged by this node's clock, which an honest sender's need not match.
            "certificate_not_valid",
            Penalty::Ignore,
        ),
        (
            "forged certificate signature",
            frame(bad_cert_sig, &offer(&outsider, 1, I, 150_000)),
            "bad_certificate_signature",
            Penalty::Reject,
        ),
        (
            "another community's certificate",
            frame(
                cert_by(&admin(), CommunityId(Hash([1; 32])), member.public(), Timestamp(u64::MAX)),
                &offer(&member, 13, I, 150_000),
            ),
            "wrong_community",
            Penalty::Reject,
        ),
        ("replayed order", frame(cert(&member), &good), "replay", Penalty::Ignore),
        ("older sequence number", frame(cert(&member), &offer(&member, 9, I, 120_000)), "replay", Penalty::Ignore),
        (
            "interval far in the future",
            frame(cert(&member), &offer(&member, 14, IntervalId(I.0 + 1_000), 150_000)),
            "interval_out_of_window",
            Penalty::Reject,
        ),
        (
            "interval in the past",
            frame(cert(&member), &offer(&member, 15, IntervalId(I.0 - 10), 150_000)),
            "interval_out_of_window",
            Penalty::Reject,
        ),
        (
            "interval whose trading closed a moment ago (honest lateness)",
            frame(cert(&member), &offer(&member, 15, IntervalId(I.0 - 2), 150_000)),
            "interval_not_open",
            Penalty::Ignore,
        ),
        (
            "price above retail",
            frame(cert(&member), &offer(&member, 16, I, 400_000)),
            "price_out_of_range",
            Penalty::Reject,
        ),
        ("oversized frame", vec![1u8; 5_000], "oversized", Penalty::Reject),
        ("garbage", b"\x01\x07garbage".to_vec(), "malformed", Penalty::Reject),
        ("an order where a frame belongs", good.to_bytes(), "malformed", Penalty::Reject),
    ];
    for (what, data, name, penalty) in cases {
        let err = validator.accept_orders(&mut books, &data, NOW).unwrap_err();
        assert_eq!((err.name(), err.penalty()), (name, penalty), "{what}: {err}");
    }
    // Only the one good order is in the book, untouched.
    let asks = books.side(I, Side::Sell, NOW);
    assert_eq!(asks.len(), 1);
    assert_eq!((asks[0].id, asks[0].remaining), (good.digest(), Wh(500)));
    // The honest member can still trade on: its next order is accepted.
    let next = offer(&member, 17, I, 140_000);
    assert_eq!(
        validator.accept_orders(&mut books, &frame(cert(&member), &next), NOW),
        Ok(vec![(next.clone(), Inserted::Replaced(good.digest()))])
    );
}

fn batch(cert: Signed<MembershipCert>, orders: &[&Signed<Order>]) -> Vec<u8> {
    GossipFrame { cert, messages: orders.iter().map(|o| o.to_bytes()).collect() }.to_bytes()
}

/// A batch is taken order by order: late orders are skipped without penalty, an order another
/// member signed or one that breaks a rule refuses the frame (with the penalty it earns).
#[test]
fn a_batch_of_orders_is_checked_order_by_order() {
    let member = NodeKey::from_seed(&[31; 32]);
    let other = NodeKey::from_seed(&[32; 32]);
    let mut books = Books::new(community());
    let mut validator = GossipValidator::new(community());
    let next = IntervalId(I.0 + 1);

    let a = offer(&member, 1, I, 150_000);
    let late = offer(&member, 2, IntervalId(I.0 - 2), 150_000);
    let b = offer(&member, 3, next, 140_000);
    let taken = validator.accept_orders(&mut books, &batch(cert(&member), &[&a, &late, &b]), NOW).unwrap();
    assert_eq!(taken, vec![(a.clone(), Inserted::New), (b.clone(), Inserted::New)]);
    assert_eq!(books.side(next, Side::Sell, NOW).len(), 1);

    let only_late = offer(&member, 4, IntervalId(I.0 - 2), 150_000);
    let err = validator.accept_orders(&mut books, &batch(cert(&member), &[&late, &only_late]), NOW).unwrap_err();
    assert_eq!((err.name(), err.penalty()), ("interval_not_open", Penalty::Ignore));

    let smuggled = offer(&other, 1, I, 150_000);
    let c = offer(&member, 5, I, 130_000);
    let err = validator.accept_orders(&mut books, &batch(cert(&member), &[&c, &smuggled]), NOW).unwrap_err();
    assert_eq!((err.name(), err.penalty()), ("not_member", Penalty::Reject));
    assert_eq!(books.side(I, Side::Sell, NOW)[0].id, a.digest(), "nothing of a frame with a stranger's order is taken");

    let greedy = offer(&member, 6, next, 400_000);
    let err = validator.accept_orders(&mut books, &batch(cert(&member), &[&c, &greedy]), NOW).unwrap_err();
    assert_eq!((err.name(), err.penalty()), ("price_out_of_range", Penalty::Reject));

    let trade_batch = batch(cert(&member), &[&a, &b]);
    let err = validator.screen_trades(&trade_batch, NOW).unwrap_err();
    assert_eq!(err.name(), "malformed", "orders on the trades topic");
}

/// A relay that held an honest order for hours forwards it long after its interval closed:
/// the order is dropped, but nobody is penalised (the maker dated it inside its window, and a
/// relay cannot make an order older). An order dated long after its window is the maker's doing.
#[test]
fn an_honest_order_delivered_hours_late_is_ignored_not_penalised() {
    let member = NodeKey::from_seed(&[21; 32]);
    let mut validator = GossipValidator::new(community());
    let mut books = Books::new(community());
    let hours_later = Timestamp(START + 3 * 3_600_000);
    let late = frame(cert(&member), &offer(&member, 1, I, 150_000));
    let err = validator.accept_orders(&mut books, &late, hours_later).unwrap_err();
    assert_eq!((err.name(), err.penalty()), ("interval_not_open", Penalty::Ignore), "{err}");

    let mut backdated = offer(&member, 2, I, 150_000).body().clone();
    backdated.created_at = hours_later;
    let forged = frame(cert(&member), &Signed::sign(&member, backdated));
    let err = validator.accept_orders(&mut books, &forged, hours_later).unwrap_err();
    assert_eq!((err.name(), err.penalty()), ("interval_out_of_window", Penalty::Reject), "{err}");
}

fn trade_between(maker: &NodeKey, taker: &NodeKey, price: u64) -> Signed<Trade> {
    let order = offer(maker, 1, I, price);
    let request = Signed::sign(
        taker,
        TradeRequest {
            community: community().id,
            order: order.digest(),
            maker: maker.public(),
            maker_side: Side::Sell,
            interval: I,
            energy: Wh(100),
            price: Price(price),
            request_seq: 1,
            created_at: NOW,
        },
    );
    Signed::sign(maker, Trade { request, accepted_at: NOW })
}

fn trade_frame(cert: Signed<MembershipCert>, trade: &Signed<Trade>) -> Vec<u8> {
    GossipFrame::single(cert, trade.to_bytes()).to_bytes()
}

#[test]
fn trades_are_accepted_only_from_a_party_with_both_signatures() {
    let (maker, taker, outsider) =
        (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]), NodeKey::from_seed(&[5; 32]));
    let mut v = GossipValidator::new(community());
    let trade = trade_between(&maker, &taker, 150_000);
    for announcer in [&maker, &taker] {
        let got = v.screen_trades(&trade_frame(cert(announcer), &trade), NOW).unwrap();
        assert_eq!(got, vec![(trade.clone(), trade.digest())]);
    }
    let refused = |v: &mut GossipValidator, data: Vec<u8>| v.screen_trades(&data, NOW).unwrap_err().name();
    assert_eq!(refused(&mut v, trade_frame(cert(&outsider), &trade)), "not_party");
    // The maker's signature replaced: the trade no longer verifies.
    let forged = trade.clone().with_signature_for_tests(Signature::from_bytes(&[7; 64]));
    assert_eq!(refused(&mut v, trade_frame(cert(&maker), &forged)), "bad_signature");
    // A trade signed by one node as both maker and taker is refused too.
    assert_eq!(refused(&mut v, trade_frame(cert(&maker), &trade_between(&maker, &maker, 150_000))), "bad_signature");
    // Judged by this node's community file: a trade names no rules version, and a sender with
    // another file may see it within the tariffs. Refused and counted, not punished.
    let dear = v.screen_trades(&trade_frame(cert(&maker), &trade_between(&maker, &taker, 310_000)), NOW).unwrap_err();
    assert_eq!((dear.name(), dear.penalty()), ("price_out_of_range", Penalty::Ignore));
    assert_eq!(refused(&mut v, vec![0u8; 9_000]), "oversized");
}

/// A maker announces the trades it agreed in one turn in one frame; one trade in it that
/// the announcer is no party to, or that does not verify, refuses the whole frame.
#[test]
fn a_frame_of_trades_is_accepted_whole_or_not_at_all() {
    let (maker, a, b) = (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]), NodeKey::from_seed(&[3; 32]));
    let mut v = GossipValidator::new(community());
    let (with_a, with_b) = (trade_between(&maker, &a, 150_000), trade_between(&maker, &b, 160_000));
    let framed = |cert: Signed<MembershipCert>, trades: &[&Signed<Trade>]| {
        GossipFrame { cert, messages: trades.iter().map(|t| t.to_bytes()).collect() }.to_bytes()
    };
    let got = v.screen_trades(&framed(cert(&maker), &[&with_a, &with_b]), NOW).unwrap();
    assert_eq!(got, vec![(with_a.clone(), with_a.digest()), (with_b.clone(), with_b.digest())]);
    // The taker of one trade cannot announce the other.
    let err = v.screen_trades(&framed(cert(&a), &[&with_a, &with_b]), NOW).unwrap_err();
    assert_eq!((err.name(), err.penalty()), ("not_party", Penalty::Reject));
    let forged = with_b.clone().with_signature_for_tests(Signature::from_bytes(&[7; 64]));
    let err = v.screen_trades(&framed(cert(&maker), &[&with_a, &forged]), NOW).unwrap_err();
    assert_eq!((err.name(), err.penalty()), ("bad_signature", Penalty::Reject));
}

#[test]
fn a_trade_verified_before_is_accepted_and_a_forged_copy_still_refused() {
    let (maker, taker) = (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]));
    let memo = std::sync::Arc::new(VerifiedMemo::default());
    let mut v = GossipValidator::new(community()).sharing(memo.clone());
    let trade = trade_between(&maker, &taker, 150_000);
    assert_eq!(
        v.screen_trades(&trade_frame(cert(&maker), &trade), NOW).unwrap(),
        vec![(trade.clone(), trade.digest())]
    );
    assert!(memo.contains(&trade.digest()), "a verified trade is remembered");
    // A worker of the same node (or another node of the process) finds it there.
    let mut worker = v.worker();
    assert_eq!(worker.screen_trades(&trade_frame(cert(&taker), &trade), NOW).unwrap().len(), 1);
    // Another signature makes another digest: the memo does not cover it.
    let forged = trade.clone().with_signature_for_tests(Signature::from_bytes(&[7; 64]));
    assert_eq!(worker.screen_trades(&trade_frame(cert(&maker), &forged), NOW).unwrap_err().name(), "bad_signature");
    // The party rule still holds for a known trade.
    let outsider = NodeKey::from_seed(&[5; 32]);
    assert_eq!(worker.screen_trades(&trade_frame(cert(&outsider), &trade), NOW).unwrap_err().name(), "not_party");
}

/// The screen needs no books: it passes a replay (a worker cannot know the maker's last
/// order), and inserting what it passed refuses the replay then, without penalty.
#[test]
fn a_replay_passes_the_screen_and_is_ignored_at_the_books() {
    let member = NodeKey::from_seed(&[41; 32]);
    let mut worker = GossipValidator::new(community());
    let mut books = Books::new(community());
    let (older, newer) = (offer(&member, 1, I, 150_000), offer(&member, 2, I, 140_000));
    for order in [&newer, &older] {
        let Screened::Orders { orders, late, .. } =
            worker.screen(Topic::Orders, &frame(cert(&member), order), NOW).unwrap()
        else {
            panic!("orders screen as orders");
        };
        assert_eq!(late, None);
        let result = insert_screened(&mut books, orders, late, NOW);
        if order == &newer {
            assert_eq!(result, Ok(vec![(newer.clone(), Inserted::New)]));
        } else {
            let err = result.unwrap_err();
            assert_eq!((err.name(), err.penalty()), ("replay", Penalty::Ignore));
        }
    }
    assert_eq!(books.side(I, Side::Sell, NOW)[0].id, newer.digest(), "the newer order stays");
}

#[test]
fn heads_are_accepted_from_their_signer_only() {
    let (member, other) = (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]));
    let mut v = GossipValidator::new(community());
    let head = Signed::sign(&member, TreeHead { size: 3, root: Hash([4; 32]), time: NOW });
    let framed =
        |cert: Signed<MembershipCert>, head: &Signed<TreeHead>| GossipFrame::single(cert, head.to_bytes()).to_bytes();
    assert_eq!(v.screen_head(&framed(cert(&member), &head), NOW).unwrap(), head);
    assert_eq!(v.screen_head(&framed(cert(&other), &head), NOW).unwrap_err().name(), "not_member");
    let future = Signed::sign(&member, TreeHead { size: 3, root: Hash([4; 32]), time: Timestamp(NOW.0 + 60_000) });
    assert_eq!(v.screen_head(&framed(cert(&member), &future), NOW).unwrap_err().name(), "from_the_future");
}

fn statement(k: &NodeKey, interval: IntervalId, revision: u32, covered_ms: u32) -> Signed<MeterStatement> {
    Signed::sign(
        k,
        MeterStatement {
            community: community().id,
            interval,
            revision,
            figures: MeterFigures {
                imported: Wh(120),
                exported: Wh(0),
                covered_ms,
                complete: true,
                method: MeterMethod::Counters,
                format: "tasmota".into(),
            },
            contracts: vec![],
            created_at: NOW,
        },
    )
}

fn statement_frame(cert: Signed<MembershipCert>, statements: &[&Signed<MeterStatement>]) -> Vec<u8> {
    GossipFrame { cert, messages: statements.iter().map(|s| s.to_bytes()).collect() }.to_bytes()
}

#[test]
fn meter_statements_are_screened_by_name_and_penalty() {
    let (member, other) = (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]));
    let mut validator = GossipValidator::new(community());
    let interval_ms = community().interval.millis();
    // NOW is 30 minutes before START: the interval two before START's has just ended.
    let ended = IntervalId(START / interval_ms - 3);
    let running = IntervalId(START / interval_ms - 2);
    let ancient = IntervalId(ended.0 - STATEMENT_MAX_AGE_MS / interval_ms - 1);
    let screen = |v: &mut GossipValidator, frame: Vec<u8>| v.screen(Topic::Statements, &frame, NOW);

    let good = statement(&member, ended, 0, 900_000);
    let screened = screen(&mut validator, statement_frame(cert(&member), &[&good])).unwrap();
    assert!(
        matches!(screened, Screened::Statements(ref s) if s.len() == 1 && s[0] == Stated::of(&good, good.digest()))
    );

    let cases: Vec<(Vec<u8>, &str, Penalty)> = vec![
        (statement_frame(cert(&member), &[&statement(&member, running, 0, 0)]), "from_the_future", Penalty::Ignore),
        (statement_frame(cert(&member), &[&statement(&member, ancient, 0, 900_000)]), "expired", Penalty::Ignore),
        (statement_frame(cert(&member), &[&statement(&member, ended, 0, 900_001)]), "malformed", Penalty::Reject),
        (
            statement_frame(cert(&member), &[&good, &statement(&other, ended, 0, 900_000)]),
            "not_member",
            Penalty::Reject,
        ),
        (
            statement_frame(cert(&member), &[&good.clone().with_signature_for_tests(Signature::from_bytes(&[7; 64]))]),
            "bad_signature",
            Penalty::Reject,
        ),
    ];
    for (frame, name, penalty) in cases {
        let reject = screen(&mut validator, frame).unwrap_err();
        assert_eq!((reject.name(), reject.penalty()), (name, penalty), "{reject}");
    }
}

/// Orders under the community's signed rules: an order names the version it was made under,
/// and a node refuses (without penalty: an outdated file, not malice) one made under another
/// version than the one in force for its interval, where a new version's tariffs apply.
#[test]
fn an_order_made_under_other_rules_is_refused_and_the_version_in_force_sets_the_prices() {
    let member = NodeKey::from_seed(&[1; 32]);
    let v1 = community().signed_by(&admin(), IntervalId(0), Timestamp(0));
    // Version 2, from the interval after I: retail down to 0.140.
    let next = IntervalId(I.0 + 1);
    let v2 = Community { retail: Price(140_000), ..v1.clone() }.signed_by(&admin(), next, Timestamp(0));
    assert_eq!(v2.check(), Ok(()));
    let mut books = Books::new(v2.clone());
    let mut validator = GossipValidator::new(v2.clone());
    let under = |rules: u32, seq: u64, interval: IntervalId, price: u64| {
        let o = offer(&member, seq, interval, price).body().clone();
        Signed::sign(&member, Order { rules, ..o })
    };
    // Interval I is still under version 1, with its tariffs.
    let old = under(1, 1, I, 150_000);
    assert!(validator.accept_orders(&mut books, &frame(cert(&member), &old), NOW).is_ok());
    let cases = [
        ("an outdated member's order for the next interval", under(1, 2, next, 130_000), "other_rules"),
        ("an order from a member ahead, for interval I", under(2, 3, I, 130_000), "other_rules"),
        ("an order priced by the old tariff under the new version", under(2, 4, next, 150_000), "price_out_of_range"),
    ];
    for (what, order, name) in cases {
        let refused = validator.accept_orders(&mut books, &frame(cert(&member), &order), NOW).unwrap_err();
        assert_eq!(refused.name(), name, "{what}");
        let penalty = if name == "other_rules" { Penalty::Ignore } else { Penalty::Reject };
        assert_eq!(refused.penalty(), penalty, "{what}");
    }
    let current = under(2, 5, next, 130_000);
    assert!(validator.accept_orders(&mut books, &frame(cert(&member), &current), NOW).is_ok());
    assert!(books.get(&old.digest()).is_some() && books.get(&current.digest()).is_some());
    let in_books = books.side(I, Side::Sell, NOW).len() + books.side(next, Side::Sell, NOW).len();
    assert_eq!(in_books, 2, "only the orders under the rules in force");
}
