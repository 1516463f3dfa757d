//! Market benchmarks over real nodes on loopback (`cargo bench -p peerwatt-node`):
//!
//! 1. latency from placing a crossing order to the trade being durable in both ledgers;
//! 2. trades per second between two nodes (requests pipelined);
//! 3. time until a gossiped order has reached all of 50 network nodes.
//!
//! Real libp2p (TCP, noise, yamux), real sled ledgers flushed on every append, real signatures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark panics to fail

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerwatt_core::{Clock, Hash, IntervalId, Price, Side, SystemClock, Wh};
use peerwatt_net::{Event, NetConfig, NetHandle, Verdict, keypair_of};
use peerwatt_node::{NodeEvent, RunningNode};
use peerwatt_testkit::community_of;
use tokio::sync::broadcast;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits until `events` reports `want` trades recorded; returns their digests with times.
async fn recorded(events: &mut broadcast::Receiver<NodeEvent>, want: usize) -> HashMap<Hash, Instant> {
    let mut seen = HashMap::new();
    while seen.len() < want {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(NodeEvent::TradeRecorded { digest, .. })) => {
                seen.insert(digest, Instant::now());
            }
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("lagged by {n} events"),
            other => {
                eprintln!("no trade event ({other:?}) after {} of {want}", seen.len());
                return seen;
            }
        }
    }
    seen
}

/// Files named `name` under `dir`.
fn walk(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path, name));
        } else if path.file_name().is_some_and(|f| f == name) {
            out.push(path);
        }
    }
    out
}

async fn two_nodes(dir: &std::path::Path) -> (RunningNode, RunningNode, IntervalId) {
    let (community, configs) = community_of(dir, 2).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = peerwatt_node::start(&configs[0], clock.clone()).await.unwrap();
    let b = peerwatt_node::start(&configs[1], clock.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // connect, form the gossip mesh
    // An interval whose trading window is open for the whole run (it opens 4 intervals ahead).
    let now = clock.now();
    let interval = IntervalId(community.interval.interval_at(now).0 + 3);
    (a, b, interval)
}

/// A rests a huge offer; B places a crossing 1 Wh bid, waits for the trade in both ledgers, repeats.
async fn latency(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, interval) = two_nodes(dir.path()).await;
    a.place_order(interval, Side::Sell, Wh(1_000_000_000), Price(100_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut a_events, mut b_events) = (a.subscribe(), b.subscribe());
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        b.place_order(interval, Side::Buy, Wh(1), Price(150_000)).await.unwrap();
        let at_a = recorded(&mut a_events, 1).await;
        let at_b = recorded(&mut b_events, 1).await;
        let (digest, ta) = at_a.into_iter().next().unwrap();
        let tb = at_b[&digest];
        samples.push(ta.max(tb) - t0);
    }
    samples.sort();
    println!(
        "crossing order -> trade durable in both ledgers ({n} trades): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// B places `n` crossing bids, up to `window` of them in flight at once (as a busy node's
/// strategy and gossip would); counts the trades once durable in both ledgers.
async fn throughput(n: usize, window: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, interval) = two_nodes(dir.path()).await;
    a.place_order(interval, Side::Sell, Wh(1_000_000_000), Price(100_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut a_events, mut b_events) = (a.subscribe(), b.subscribe());
    let b = Arc::new(b);
    let t0 = Instant::now();
    let placer = {
        let b = b.clone();
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(window));
            let mut placing = tokio::task::JoinSet::new();
            for _ in 0..n {
                let slot = slots.clone().acquire_owned().await.unwrap();
                let b = b.clone();
                placing.spawn(async move {
                    b.place_order(interval, Side::Buy, Wh(1), Price(150_000)).await.unwrap();
                    drop(slot);
                });
            }
            while let Some(done) = placing.join_next().await {
                done.unwrap();
            }
        })
    };
    let (at_a, at_b) = tokio::join!(recorded(&mut a_events, n), recorded(&mut b_events, n));
    if at_a.len() < n || at_b.len() < n {
        for status in walk(dir.path(), "status.json") {
            eprintln!("{}: {}", status.display(), std::fs::read_to_string(&status).unwrap_or_default());
        }
        panic!("trades stopped: {} at A, {} at B of {n}", at_a.len(), at_b.len());
    }
    placer.await.unwrap();
    let elapsed = at_a.values().chain(at_b.values()).max().copied().unwrap() - t0;
    println!(
        "trades between two nodes, {window} bids in flight: {n} in {:.2} s = {:.0} trades/s (each durable in both ledgers)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    if let Ok(b) = Arc::try_unwrap(b) {
        b.shutdown().await;
    }
    a.shutdown().await;
    // How well the work was batched: ledger commits (one flush each) per node.
    for path in walk(dir.path(), "status.json") {
        if let Ok(status) = peerwatt_node::Status::read(&path) {
            let c = &status.counters;
            println!(
                "  {}: {} ledger commits for {} trades as maker, {} as taker, {} orders",
                status.peer_id.get(..12).unwrap_or_default(),
                c.get("ledger_group_commits"),
                c.get("trades_as_maker"),
                c.get("trades_as_taker"),
                c.get("orders_published"),
            );
        }
    }
}

/// The address `h` listens on, with its `/p2p/` suffix, once it listens.
async fn listen_address(h: &NetHandle) -> peerwatt_net::Multiaddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(addr) = h.listen_addrs().await.unwrap().into_iter().next() {
            return format!("{addr}/p2p/{}", h.peer_id()).parse().unwrap();
        }
        assert!(Instant::now() < deadline, "node {} not listening after 10 s", h.peer_id());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node has `peers` peers and at least one of them in its gossip
/// mesh of `topic` (so a message reaches it through the mesh, not a heartbeat later through
/// lazy gossip); returns how long that took. Panics naming the nodes still short after `limit`.
async fn until_meshed(handles: &[NetHandle], topic: &str, peers: usize, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let mut short = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            let have = h.peers().await.unwrap().len();
            let mesh = h.mesh_peers(topic).await.unwrap().len();
            // A mesh of at least one peer: a path for the node's own messages. The bootstrap
            // node, which every other node dials, keeps a small mesh (gossipsub prunes it from
            // meshes that are full); what matters is measured below: whether every message
            // reaches every node, and how fast.
            if have < peers || mesh == 0 {
                short.push(format!("node {i}: {have} peers, mesh {mesh}"));
            }
        }
        if short.is_empty() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "after {limit:?}, {} of {} nodes lack {peers} peers or a mesh: {}",
            short.len(),
            handles.len(),
            short.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 50 network nodes (node 0 the bootstrap peer); each of `messages` gossip messages from a
/// different node; the time until the last of the other 49 has it.
async fn propagation(nodes: usize, messages: usize) {
    const TOPIC: &str = "peerwatt/bench/orders/1";
    let mut handles = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Vec<u8>, Instant)>();
    let mut first: Option<peerwatt_net::Multiaddr> = None;
    let target = NetConfig::default().target_peers;
    for i in 0..nodes {
        let key = peerwatt_core::NodeKey::generate().unwrap();
        let cfg = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: first.iter().cloned().collect(),
            topics: vec![TOPIC.into()],
            // The daemon's own defaults: heartbeat 1 s, discovery every 30 s once a node has its
            // target of peers (every second while it is short and finding some).
            heartbeat: Duration::from_secs(1),
            discovery_interval: Duration::from_secs(30),
            ..NetConfig::default()
        };
        let (net, mut events) = peerwatt_net::spawn(keypair_of(&key).unwrap(), cfg).await.unwrap();
        let judge = net.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let Event::Gossip { id, source, data, .. } = e {
                    let _ = tx.send((i, data.to_vec(), Instant::now()));
                    let _ = judge.report(id, source, Verdict::Accept).await;
                }
            }
        });
        if first.is_none() {
            first = Some(listen_address(&net).await);
        }
        handles.push(net);
    }
    eprintln!("{nodes} nodes started; waiting for discovery and the mesh");
    // Measure a settled community: every node at its target of peers (discovery done) with a
    // full gossip mesh. A fixed sleep here once ended with every node but the bootstrap
    // holding one peer, and message 0 reaching 6 of 49 nodes.
    let settled = until_meshed(&handles, TOPIC, target.min(nodes - 1), Duration::from_secs(60)).await;
    eprintln!("discovery and mesh settled in {:.1} s", settled.as_secs_f64());
    for (i, h) in handles.iter().enumerate().step_by(10) {
        let mesh = h.mesh_peers(TOPIC).await.unwrap().len();
        eprintln!("node {i}: {} peers, mesh {mesh}", h.peers().await.unwrap().len());
    }
    let mut samples = Vec::new();
    for m in 0..messages {
        let sender = m % nodes;
        let payload = format!("order {m}").into_bytes();
        let t0 = Instant::now();
        handles[sender].publish(TOPIC, payload.clone()).await.unwrap();
        let mut got = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = t0;
        while got.len() < nodes - 1 && Instant::now() < deadline {
            if let Ok(Some((i, data, at))) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await
                && data == payload
                && got.insert(i)
            {
                last = at;
            }
        }
        assert_eq!(got.len(), nodes - 1, "message {m} reached only {} of {} nodes", got.len(), nodes - 1);
        samples.push(last - t0);
        if m % 20 == 0 {
            eprintln!("message {m}: {:.1} ms", ms(last - t0));
        }
    }
    samples.sort();
    println!(
        "order gossip to all of {nodes} nodes ({messages} orders): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
}

/// `cargo bench -p peerwatt-node [-- latency|throughput|propagation]`:
/// the parts named (all without a name).
fn main() {
    let names: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |part: &str| names.is_empty() || names.iter().any(|n| n == part);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        if wanted("latency") {
            latency(500).await;
        }
        if wanted("throughput") {
            throughput(3_000, 1).await;
        }
        if wanted("throughput") || wanted("pipelined") {
            throughput(10_000, 64).await;
        }
        if wanted("propagation") {
            propagation(50, 200).await;
        }
    });
}
