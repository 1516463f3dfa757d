//! The fixed inputs of the protocol test vectors (shared by the envelope tests and the
//! `docs/protocol.md` vector check). Keys come from fixed seeds; ed25519 signing is
//! deterministic, so every byte is reproducible.

#![allow(dead_code)]

use peerwatt_core::*;

/// Seed of the maker's key.
pub const MAKER_SEED: [u8; 32] = [0x01; 32];
/// Seed of the taker's key.
pub const TAKER_SEED: [u8; 32] = [0x02; 32];
/// Seed of the community admin's key.
pub const ADMIN_SEED: [u8; 32] = [0x03; 32];

/// The maker's key.
pub fn maker() -> NodeKey {
    NodeKey::from_seed(&MAKER_SEED)
}
/// The taker's key.
pub fn taker() -> NodeKey {
    NodeKey::from_seed(&TAKER_SEED)
}
/// The community admin's key.
pub fn admin() -> NodeKey {
    NodeKey::from_seed(&ADMIN_SEED)
}

/// The vectors' community id.
pub fn community() -> CommunityId {
    CommunityId(Hash([0xc0; 32]))
}

/// 2024-06-01T12:00:00Z, interval 1,908,048 of 15 minutes.
pub const T0: Timestamp = Timestamp(1_717_243_200_000);
/// The interval starting at `T0`.
pub const INTERVAL: IntervalId = IntervalId(1_908_048);

/// The maker's offer.
pub fn offer() -> Order {
    Order {
        community: community(),
        side: Side::Sell,
        interval: INTERVAL,
        energy: Wh(1_500),
        start_price: Price(150_000),
        limit_price: Price(120_000),
        seq: 7,
        created_at: T0,
        expires_at: Timestamp(T0.0 + 840_000),
        rules: 0,
    }
}

/// The taker's bid.
pub fn bid() -> Order {
    Order {
        side: Side::Buy,
        energy: Wh(800),
        start_price: Price(100_000),
        limit_price: Price(150_000),
        seq: 3,
        ..offer()
    }
}

/// The offer, signed by the maker.
pub fn signed_offer() -> Signed<Order> {
    Signed::sign(&maker(), offer())
}

/// The taker's request against the offer.
pub fn trade_request() -> TradeRequest {
    TradeRequest {
        community: community(),
        order: signed_offer().digest(),
        maker: maker().public(),
        maker_side: Side::Sell,
        interval: INTERVAL,
        energy: Wh(500),
        price: Price(120_000),
        request_seq: 42,
        created_at: Timestamp(T0.0 + 1_000),
    }
}

/// The request, signed by the taker.
pub fn signed_request() -> Signed<TradeRequest> {
    Signed::sign(&taker(), trade_request())
}

/// The trade: the signed request as the maker accepts it.
pub fn trade() -> Trade {
    Trade { request: signed_request(), accepted_at: Timestamp(T0.0 + 1_005) }
}

/// The maker's meter statement.
pub fn meter_statement() -> MeterStatement {
    MeterStatement {
        community: community(),
        interval: INTERVAL,
        revision: 0,
        figures: MeterFigures {
            imported: Wh(120),
            exported: Wh(640),
            covered_ms: 900_000,
            complete: true,
            method: MeterMethod::Counters,
            format: "tasmota".into(),
        },
        contracts: vec![Contracted { counterparty: taker().public().to_bytes(), side: Side::Sell, energy: Wh(500) }],
        created_at: Timestamp(T0.0 + 905_000),
    }
}

/// The maker's settlement of the interval: its 500 Wh sale delivered in full, 20 Wh of its
/// remaining 140 Wh shared ex post, the rest to the grid.
pub fn settlement() -> Settlement {
    let delivered = Wh(500);
    Settlement {
        community: community(),
        interval: INTERVAL,
        revision: 0,
        complete: true,
        statement: Signed::sign(&maker(), meter_statement()).digest(),
        members: 2,
        inputs: Hash([0xbb; 32]),
        imported: Wh(120),
        exported: Wh(640),
        trades: vec![SettledTrade {
            trade: Signed::sign(&maker(), trade()).digest(),
            counterparty: taker().public().to_bytes(),
            side: Side::Sell,
            energy: Wh(500),
            price: Price(120_000),
            delivered,
            money: Money(60_000),
        }],
        shared_import: Wh(0),
        shared_export: Wh(20),
        sharing_price: Price(190_000),
        grid_import: Wh(120),
        grid_export: Wh(120),
        retail: Price(300_000),
        feed_in: Price(80_000),
        // 120 Wh at retail 36,000, minus the sale 60,000, the sharing 3,800 and the feed-in 9,600.
        cost: Money(36_000 - 60_000 - 3_800 - 9_600),
        // 120 Wh at retail, minus 640 Wh at feed-in.
        baseline: Money(36_000 - 51_200),
        created_at: Timestamp(T0.0 + 8_100_000),
    }
}

/// A tree head of the maker's ledger.
pub fn tree_head() -> TreeHead {
    TreeHead { size: 3, root: Hash([0xaa; 32]), time: Timestamp(T0.0 + 900_000) }
}

/// The admin's certificate for the maker.
pub fn membership_cert() -> MembershipCert {
    MembershipCert {
        community: community(),
        member: maker().public(),
        name: "Zoë's roof".into(),
        zone: "feeder-7".into(),
        valid_from: T0,
        valid_until: Timestamp(T0.0 + 365 * 86_400_000),
    }
}

/// The maker's ledger entry recording the trade.
pub fn ledger_entry() -> LedgerEntry {
    LedgerEntry {
        seq: 0,
        prev: Hash::ZERO,
        time: Timestamp(T0.0 + 1_005),
        kind: EntryKind::TradeAgreed,
        payload: Signed::sign(&maker(), trade()).to_bytes(),
    }
}

/// Every vector: (name, body bytes, envelope bytes).
pub fn all_vectors() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    fn v<T: Message>(name: &'static str, key: &NodeKey, body: T) -> (&'static str, Vec<u8>, Vec<u8>) {
        let signed = Signed::sign(key, body);
        (name, signed.body_bytes().to_vec(), signed.to_bytes())
    }
    vec![
        v("offer", &maker(), offer()),
        v("bid", &taker(), bid()),
        v("trade-request", &taker(), trade_request()),
        v("trade", &maker(), trade()),
        v("meter-statement", &maker(), meter_statement()),
        v("tree-head", &maker(), tree_head()),
        v("membership-cert", &admin(), membership_cert()),
        v("ledger-entry", &maker(), ledger_entry()),
        v("settlement", &maker(), settlement()),
    ]
}
