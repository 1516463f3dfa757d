//! API tokens: `peerwatt token new` writes one, stored hashed (SHA-256) with its name and scope
//! in the tokens file; the secret is shown once. A request off loopback names its token in
//! `Authorization: Bearer …`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What a token may do. Control includes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read state, trades, statements, the ledger and metrics.
    Read,
    /// Read, and change the node's limits.
    Control,
}

impl Scope {
    /// The scope's name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Control => "control",
        }
    }
}

/// One token, as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Who or what it is for (`home-assistant`).
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    /// When it was made (ms since the epoch).
    pub created_at: u64,
}

/// The tokens file cannot be used.
#[derive(Debug, Error)]
pub enum TokenError {
    /// Reading or writing it failed.
    #[error("tokens file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not a list of tokens.
    #[error("tokens file {path} is damaged: {why}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// No randomness for a secret.
    #[error("no randomness for a token: {0}")]
    Random(String),
    /// A token of that name exists.
    #[error("a token named {0:?} exists; remove it first or choose another name")]
    Exists(String),
}

/// The prefix of every secret, so a leaked one is recognisable.
const PREFIX: &str = "pwt_";

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The tokens in `path` (none if the file does not exist).
pub fn load(path: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(TokenError::Io { path: shown, source }),
    };
    serde_json::from_str(&text).map_err(|e| TokenError::Damaged { path: shown, why: e.to_string() })
}

/// Makes a token named `name` with `scope`, stores its hash in `path`, and returns the secret.
pub fn create(path: &Path, name: &str, scope: Scope, now_ms: u64) -> Result<String, TokenError> {
    let mut tokens = load(path)?;
    if tokens.iter().any(|t| t.name == name) {
        return Err(TokenError::Exists(name.to_owned()));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let secret = format!("{PREFIX}{}", hex::encode(bytes));
    tokens.push(TokenRecord { name: name.to_owned(), scope, sha256: hash(&secret), created_at: now_ms });
    save(path, &tokens)?;
    Ok(secret)
}

/// Removes the token named `name`; whether there was one.
pub fn remove(path: &Path, name: &str) -> Result<bool, TokenError> {
    let mut tokens = load(path)?;
    let before = tokens.len();
    tokens.retain(|t| t.name != name);
    if tokens.len() == before {
        return Ok(false);
    }
    save(path, &tokens)?;
    Ok(true)
}

fn save(path: &Path, tokens: &[TokenRecord]) -> Result<(), TokenError> {
    let io = |source| TokenError::Io { path: path.display().to_string(), source };
    let text = serde_json::to_string_pretty(tokens).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    restrict(&tmp).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Only the owner reads the file: the hashes are not secrets, but the names and scopes say
/// who can control the node.
#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The scope of the token whose secret is `presented`, if it is one of `tokens`. Every hash
/// is compared in full, whatever matches first.
pub fn scope_of(tokens: &[TokenRecord], presented: &str) -> Option<Scope> {
    let h = hash(presented);
    let mut found = None;
    for t in tokens {
        let same =
            t.sha256.len() == h.len() && t.sha256.bytes().zip(h.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            found = Some(t.scope);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_stored_hashed_and_its_secret_gives_its_scope() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("api-tokens.json");
        let read = create(&path, "ha", Scope::Read, 1).unwrap_or_else(|e| panic!("{e}"));
        let control = create(&path, "me", Scope::Control, 2).unwrap_or_else(|e| panic!("{e}"));
        assert!(read.starts_with("pwt_") && read.len() == 4 + 64);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!text.contains(&read[4..]) && !text.contains(&control[4..]), "secrets are not stored");
        let tokens = load(&path).unwrap_or_default();
        assert_eq!(scope_of(&tokens, &read), Some(Scope::Read));
        assert_eq!(scope_of(&tokens, &control), Some(Scope::Control));
        assert_eq!(scope_of(&tokens, "pwt_guess"), None);
        assert!(matches!(create(&path, "ha", Scope::Read, 3), Err(TokenError::Exists(_))));
        assert!(remove(&path, "ha").unwrap_or(false));
        assert_eq!(scope_of(&load(&path).unwrap_or_default(), &read), None);
    }
}
