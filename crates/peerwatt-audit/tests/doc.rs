//! docs/audit.md lists every check the audit makes, each once, and nothing it does not make.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use peerwatt_audit::Check;

#[test]
fn the_checks_table_of_docs_audit_names_every_check() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/audit.md")).unwrap();
    let table = doc.split("### What is checked, and each exception").nth(1).expect("the section");
    let documented: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("| check"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap().trim().trim_matches('`'))
        .collect();
    let made: Vec<&str> = Check::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(documented, made, "docs/audit.md lists the checks in report order");
}
