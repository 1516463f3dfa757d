//! Waiting on conditions, never on fixed sleeps: a condition is checked until it holds or
//! its deadline passes, and a timeout fails the test with what was awaited.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(20);

/// Waits (blocking the thread) until `check` holds; panics naming `what` after `within`.
pub fn until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    until_some(what, within, || check().then_some(()), String::new);
}

/// Waits (asynchronously) until `check` holds; panics naming `what` after `within`.
pub async fn until_async<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (blocking the thread) until `check` returns a value; panics naming `what` after
/// `within`, with `context()` (a log, say) in the message.
pub fn until_some<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}\n{}", context());
        std::thread::sleep(POLL);
    }
}
