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

/// The lines a child process writes on one of its outputs, read on a thread as they come
/// and kept, for waiting on the one that matters.
#[derive(Debug)]
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Lines {
    /// Reads `output` (a child's stdout or stderr) line by line.
    pub fn of(output: impl std::io::Read + Send + 'static) -> Lines {
        Lines::into_log(output, std::sync::Arc::default())
    }

    /// Reads `output` line by line, keeping every line in `log` too (a log that outlives one
    /// process: a node started again after a crash).
    pub fn into_log(
        output: impl std::io::Read + Send + 'static,
        log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) -> Lines {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(output).lines().map_while(Result::ok) {
                kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, log }
    }

    /// Waits (up to `within`) for the next line that `matches`; returns it. Panics naming
    /// `what`, with everything read so far.
    pub fn wait_for(&self, what: &str, within: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line {what} within {within:?}; output so far:\n{}", self.text()),
            }
        }
    }

    /// Everything read so far, one line each.
    pub fn text(&self) -> String {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).join("\n")
    }
}
