//! RFC 6962 / RFC 9162 Merkle proof verification against independent test data.
//!
//! Source: the transparency-dev/merkle project (Apache-2.0), commit 417fb0c, folder
//! `testdata/`, copied with its README and LICENSE to `tests/data/merkle-vectors/`.
//! Every `happy-path.json` (and every case with `wantErr: false`) must verify; every mutated
//! case (`wantErr: true`) must be rejected.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use peerwatt_ledger::merkle::{ProofError, verify_consistency, verify_inclusion};
use serde_json::Value;

fn vectors(kind: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/merkle-vectors").join(kind), &mut out);
    out.sort();
    out
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap()).unwrap()
}

fn proof(v: &Value) -> Vec<Vec<u8>> {
    v.as_array().map(|a| a.iter().map(b64).collect()).unwrap_or_default()
}

fn load(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs every case of one kind through `verify` and checks it is accepted exactly when
/// `wantErr` is false.
fn check_all(kind: &str, verify: impl Fn(&Value) -> Result<(), ProofError>) {
    let files = vectors(kind);
    assert_eq!(files.len(), 98, "{kind} cases");
    let mut happy = 0;
    for path in &files {
        let case = load(path);
        let got = verify(&case);
        let want_err = case["wantErr"].as_bool().unwrap();
        assert_eq!(got.is_err(), want_err, "{}: {} gave {got:?}", path.display(), case["desc"]);
        happy += usize::from(!want_err);
    }
    assert!(happy >= 5, "the happy paths must be among the {kind} cases");
}

#[test]
fn inclusion_vectors() {
    check_all("inclusion", |c| {
        verify_inclusion(
            c["leafIdx"].as_u64().unwrap(),
            c["treeSize"].as_u64().unwrap(),
            &b64(&c["leafHash"]),
            &proof(&c["proof"]),
            &b64(&c["root"]),
        )
    });
}

#[test]
fn consistency_vectors() {
    check_all("consistency", |c| {
        verify_consistency(
            c["size1"].as_u64().unwrap(),
            c["size2"].as_u64().unwrap(),
            &proof(&c["proof"]),
            &b64(&c["root1"]),
            &b64(&c["root2"]),
        )
    });
}
