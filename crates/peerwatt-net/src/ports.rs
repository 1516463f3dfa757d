//! Loopback ports for the nodes and brokers of one machine (the demo's street, the tests).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback port, free for TCP and UDP a moment ago, that this process has not handed out
/// before.
///
/// Why not port 0: a port the kernel picked and we released goes back to the ephemeral pool,
/// where the next outgoing connection of a parallel test (an MQTT client, a libp2p dial) can
/// take it before our child process binds it. So ports come from below Linux's ephemeral range
/// (32768–60999), each at most once per process, starting at a place that depends on the
/// process id so that test binaries running side by side rarely meet.
pub fn free_port() -> std::io::Result<u16> {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = (std::process::id().wrapping_mul(7_919)) % COUNT;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free loopback port left"))
}
