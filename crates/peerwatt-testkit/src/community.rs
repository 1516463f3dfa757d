//! A community with its admin and node data directories on loopback, ready for
//! [`peerwatt_node::start`].

use std::path::Path;
use std::time::Duration;

use peerwatt_core::{Community, IntervalId, IntervalLength, NodeKey, Price, Timestamp};

use peerwatt_net::free_port;
use peerwatt_node::config::{FileError, MarketSection, NetworkSection, NodeConfig};
use peerwatt_node::provision::{self, MemberSpec};

/// The test community (60 s intervals, gate closure 5 s, horizon 4, feed-in 0.08, retail
/// 0.30; its rules signed as version 1) and its admin's key.
pub fn bench_community() -> (Community, NodeKey) {
    let admin = NodeKey::from_seed(&[200; 32]);
    let community = Community {
        name: "Bench".into(),
        id: Community::derive_id(&admin.public(), "Bench"),
        admin: admin.public(),
        interval: IntervalLength::from_secs(60).unwrap_or_else(|_| unreachable!("60 s is a valid interval")),
        gate_closure: Duration::from_secs(5),
        horizon: 4,
        feed_in: Price(80_000),
        retail: Price(300_000),
        bootstrap: Vec::new(),
        sharing: peerwatt_core::Sharing::default(),
        rules: Default::default(),
    }
    .signed_by(&admin, IntervalId(0), Timestamp(0));
    (community, admin)
}

/// Creates a community (60 s intervals, gate closure 5 s, horizon 4, feed-in 0.08, retail
/// 0.30) and `n` member nodes under `dir`, all on loopback TCP, node 0 the bootstrap peer of
/// the others, with the strategy off (orders are placed by hand). Returns the community and
/// each node's configuration.
pub fn community_of(dir: &Path, n: usize) -> Result<(Community, Vec<NodeConfig>), FileError> {
    let (community, admin) = bench_community();
    let mut configs: Vec<NodeConfig> = Vec::new();
    let mut first = Vec::new();
    let market = MarketSection { enabled: false, tick_ms: 100, ..MarketSection::default() };
    let network = NetworkSection { heartbeat_ms: 100, discovery_ms: 500, ..NetworkSection::default() };
    for i in 0..n {
        let node_dir = dir.join(format!("node-{i}"));
        let port = free_port().map_err(|source| FileError::Read { path: node_dir.clone(), source })?;
        let config = NodeConfig::builder(&format!("node-{i}")).market(market.clone()).network(network.clone()).build();
        let spec = MemberSpec { port, bootstrap: &first, config };
        let member = provision::member(&node_dir, &community, &admin, spec)?;
        if i == 0 {
            first.push(member.address);
        }
        configs.push(member.config);
    }
    Ok((community, configs))
}

/// Has `taker` buy `buy` from a large offer of `maker` in `interval` until a trade is recorded
/// (the offer is gossiped once the mesh has formed, so it is offered again until then); false
/// if they never trade within about 40 s.
pub async fn trade_once(
    maker: &peerwatt_node::RunningNode,
    taker: &peerwatt_node::RunningNode,
    interval: peerwatt_core::IntervalId,
    buy: peerwatt_core::Wh,
) -> bool {
    use peerwatt_core::{Price, Side, Wh};
    let mut events = taker.subscribe();
    for _ in 0..60 {
        maker.place_order(interval, Side::Sell, Wh(1_000_000), Price(100_000)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        taker.place_order(interval, Side::Buy, buy, Price(150_000)).await.unwrap();
        let recorded = tokio::time::timeout(std::time::Duration::from_millis(300), events.recv()).await;
        if let Ok(Ok(peerwatt_node::NodeEvent::TradeRecorded { .. })) = recorded {
            return true;
        }
    }
    false
}
