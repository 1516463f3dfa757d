//! The market end to end over real processes: five `peerwatt run` nodes on loopback with a
//! real mosquitto, 10-second intervals, and a taker killed with SIGKILL right after it sent
//! trade requests that its maker could not answer. Every node starts with a meter history
//! (seeded), so trading starts in the first open interval; the tests wait on what the nodes
//! report, not on the clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::time::Duration;

use peerwatt_testkit::households::*;

#[test]
fn five_households_trade_every_interval_with_surplus_and_deficit() {
    // Two households export (surplus), three import (deficit).
    let mut hood = Neighbourhood::new(env!("CARGO_BIN_EXE_peerwatt"), &[-36_000, 18_000, -24_000, 30_000, 12_000]);
    hood.start_meters();
    hood.start_all();
    // Three closed intervals with trades after the first (where both sides may have come too
    // late for the check below to count it).
    peerwatt_testkit::wait::until("four closed intervals with trades", Duration::from_secs(120), || {
        closed_intervals_with_trades(&hood) >= 4
    });
    let until = now_ms();
    let statuses: Vec<_> = hood.households.iter().map(|h| h.status()).collect();
    hood.stop_all();

    let out = check_ledgers(&hood.households);
    let tradable = tradable_intervals(&out, &hood.community, 4_000, until);
    eprintln!(
        "{} trades; per interval {:?}; tradable intervals {:?}",
        out.trades.len(),
        out.trades_per_interval,
        tradable
    );
    assert!(tradable.len() >= 3, "only {} intervals had both sides early enough: {:?}", tradable.len(), out.orders);
    for i in &tradable {
        assert!(out.trades_per_interval.get(i).copied().unwrap_or(0) > 0, "no trade in interval {i:?}; {out:?}");
    }
    // Every node saw the others, and the status showed its trades while it ran.
    for (h, st) in hood.households.iter().zip(&statuses) {
        assert!(st.running && st.peers.len() >= 2, "{}: {st:?}", h.name);
        assert!(st.counters.get("gossip_accepted_orders") > 0, "{}: {st:?}", h.name);
    }
    let traded: usize = statuses.iter().map(|s| s.trades_today.len()).sum();
    assert!(traded > 0);
    // Sellers only sold and buyers only bought.
    for (h, st) in hood.households.iter().zip(&statuses) {
        let want = if h.power_w < 0 { "sold" } else { "bought" };
        assert!(st.trades_today.iter().all(|t| t.direction == want), "{}: {:?}", h.name, st.trades_today);
    }
    // `peerwatt status` reads what a stopped node left.
    let text = hood.cli(&["status", "--data-dir", s(&hood.households[0].dir)]);
    assert!(text.contains("NOT running") && text.contains("ledger:"), "{text}");
}

#[test]
fn a_taker_killed_after_requesting_ends_with_exactly_its_makers_trades() {
    let mut hood = Neighbourhood::new(env!("CARGO_BIN_EXE_peerwatt"), &[-36_000, 18_000, 30_000]);
    hood.start_meters();
    hood.start_all();
    // The only seller's offers reach both buyers; then the seller freezes, so the next request
    // of either buyer waits for an answer that cannot come: the victim, killed right after it
    // logs that request, always restarts with a request of unknown outcome.
    for b in 1..3 {
        hood.households[b].wait_for_status("an order from gossip", Duration::from_secs(60), |st| {
            st.counters.get("gossip_accepted_orders") > 0
        });
    }
    hood.households[0].freeze();
    let sent_before: Vec<usize> = hood.households.iter().map(requests_logged).collect();
    let victim = wait_for_next_request(&hood, &sent_before);
    hood.households[victim].kill_9();
    let v = &mut hood.households[victim];
    v.start();
    let restored = v.wait_for_log("state restored from the ledger", Duration::from_secs(30));
    let pending = log_field(&restored, "pending_requests");
    assert!(pending > 0, "the unanswered request is pending after the restart: {restored}");
    hood.households[0].thaw();
    // The persisted request's outcome was unknown: the restarted node asks its maker.
    let v = &mut hood.households[victim];
    v.wait_for_log("outstanding request resolved by a query", Duration::from_secs(60));
    // And it trades on afterwards.
    v.wait_for_log("trade agreed as", Duration::from_secs(60));
    hood.stop_all();

    let out = check_ledgers(&hood.households);
    let victim_key = peerwatt_core::PublicKey::from_peer_id(&hood.households[victim].id).unwrap();
    let involved =
        out.trades.values().filter(|t| *t.body().request.signer() == victim_key || *t.signer() == victim_key).count();
    eprintln!("victim {victim} (pending after the crash: {pending}) is in {involved} of {} trades", out.trades.len());
    assert!(involved > 0, "the victim's ledger shows no trade; {out:?}");
    // check_ledgers proved every trade is in its taker's ledger exactly once and in its maker's.
}

/// Waits until `done` holds, checking every 100 ms, for at most `within`.
/// Intervals whose trading has closed with at least one trade, by the nodes' statuses.
fn closed_intervals_with_trades(hood: &Neighbourhood) -> usize {
    let closed_before = now_ms() + hood.community.gate_closure.as_millis() as u64;
    let mut intervals = std::collections::BTreeSet::new();
    for h in &hood.households {
        if let Ok(st) = peerwatt_node::Status::read(&h.dir.join("status.json")) {
            intervals.extend(st.trades_today.iter().map(|t| t.interval_start).filter(|s| *s < closed_before));
        }
    }
    intervals.len()
}

/// How many trade requests a node has logged.
fn requests_logged(h: &Household) -> usize {
    h.log_text().matches("trade request sent").count()
}

/// The number after `name=` in a log line.
fn log_field(line: &str, name: &str) -> u64 {
    let at = line.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in {line:?}")) + name.len() + 1;
    line[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|d| d.parse().ok()).unwrap()
}

/// Waits until some node logs a trade request beyond the `before` it had logged; returns its
/// index.
fn wait_for_next_request(hood: &Neighbourhood, before: &[usize]) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(i) = (0..hood.households.len()).find(|&i| requests_logged(&hood.households[i]) > before[i]) {
            return i;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody sent a trade request; logs:\n{}",
            hood.households.iter().map(|h| h.log_text()).collect::<Vec<_>>().join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
