//! How a command fails: one clear line, a hint, and an exit code.

use std::fmt;
use std::process::ExitCode;

/// Exit code for a ledger (or proof) that failed verification.
pub const EXIT_INVALID: u8 = 1;
/// Exit code for every other failure (bad arguments, missing files, I/O).
pub const EXIT_ERROR: u8 = 2;

/// A command's failure as the user sees it.
#[derive(Debug)]
pub struct Failure {
    error: anyhow::Error,
    hint: Option<String>,
    code: u8,
}

impl Failure {
    /// Prints `error: …` and `hint: …` to stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        // One line: the error and its causes, outermost first.
        let chain: Vec<String> = self.error.chain().map(|e| e.to_string()).collect();
        eprintln!("error: {}", dedup_chain(&chain));
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
        ExitCode::from(self.code)
    }

    /// The same failure with `hint` printed after it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    /// The exit code this failure ends the process with.
    pub fn code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Joins an error chain with ": ", skipping causes already spelled out by their parent.
fn dedup_chain(chain: &[String]) -> String {
    let mut out = String::new();
    for msg in chain {
        if out.contains(msg.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(msg);
    }
    out
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure { error: e.into(), hint: None, code: EXIT_ERROR }
    }
}

/// Attaches a hint (and optionally an exit code) to a failing result.
pub trait Hint<T> {
    /// Fails with this hint.
    fn hint(self, hint: impl Into<String>) -> Result<T, Failure>;
    /// Fails as "invalid" (exit 1) with this hint.
    fn invalid(self, hint: impl Into<String>) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> Hint<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> Result<T, Failure> {
        self.map_err(|e| Failure { error: e.into(), hint: Some(hint.into()), code: EXIT_ERROR })
    }
    fn invalid(self, hint: impl Into<String>) -> Result<T, Failure> {
        self.map_err(|e| Failure { error: e.into(), hint: Some(hint.into()), code: EXIT_INVALID })
    }
}
