//! docs/meters.md is checked: every `toml` block is a valid meter configuration, every example
//! table decodes as it says with the settings of the block before it, and the refusal table
//! names exactly the reasons the code has.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use peerwatt_meter::decode::{Decoder, decoder_for};
use peerwatt_meter::{MeterConfig, Reason, RoleConfig, Sample};

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/meters.md")).unwrap()
}

/// The cells of a Markdown table row, without their backticks.
fn cells(line: &str) -> Vec<String> {
    line.trim().trim_matches('|').split(" | ").map(|c| c.trim().trim_matches('`').to_owned()).collect()
}

/// "power -894 W, import 34507476 Wh, export 14737142 Wh", "waits" or "refused: <reason>".
fn gives(text: &str) -> Result<Sample, String> {
    if let Some(reason) = text.strip_prefix("refused: ") {
        return Err(reason.to_owned());
    }
    let mut s = Sample::default();
    if text == "waits" {
        return Ok(s);
    }
    for item in text.split(", ") {
        let words: Vec<&str> = item.split(' ').collect();
        let value = Some(words[1].parse::<i64>().unwrap_or_else(|_| panic!("{item:?}")));
        match words[0] {
            "power" => s.power = value,
            "import" => s.energy_in = value,
            "export" => s.energy_out = value,
            other => panic!("unknown quantity {other} in {text:?}"),
        }
    }
    Ok(s)
}

/// The role of a `toml` block (`[meter.grid]`, else `[meter.pv]`), if it has one.
fn role_of(block: &str) -> Option<RoleConfig> {
    let table: toml::Table = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    let meter: MeterConfig = table["meter"].clone().try_into().unwrap_or_else(|e| panic!("{e}\n{block}"));
    if meter.grid.is_some() || meter.pv.is_some() {
        meter.pipeline().unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
    meter.grid.or(meter.pv)
}

#[test]
fn every_example_in_the_meters_doc_decodes_as_it_says() {
    let doc = doc();
    let mut role: Option<RoleConfig> = None;
    let (mut in_toml, mut block) = (false, String::new());
    let mut decoder: Option<Box<dyn Decoder>> = None;
    let (mut blocks, mut rows) = (0, 0);
    for line in doc.lines() {
        if in_toml {
            if line.starts_with("```") {
                in_toml = false;
                blocks += 1;
                role = role_of(&block).or(role);
            } else {
                block.push_str(line);
                block.push('\n');
            }
            continue;
        }
        if line == "```toml" {
            (in_toml, block) = (true, String::new());
        } else if line.starts_with("| topic | payload | gives |") {
            let r = role.as_ref().expect("a toml block before the table");
            decoder = Some(decoder_for(r.format, &r.settings()).unwrap());
        } else if let (Some(d), true) = (decoder.as_mut(), line.starts_with("| `")) {
            let row = cells(line);
            let got = d.decode(&row[0], row[1].as_bytes()).map_err(|e| e.reason.name().to_owned());
            assert_eq!(got, gives(&row[2]), "{line}");
            rows += 1;
        } else if !line.starts_with('|') {
            decoder = None;
        }
    }
    assert!(blocks >= 17 && rows >= 55, "{blocks} toml blocks, {rows} example rows");
}

#[test]
fn the_refusal_table_names_every_reason_and_nothing_else() {
    let doc = doc();
    let start = doc.find("| reason | what it means |").unwrap();
    let documented: Vec<String> =
        doc[start..].lines().skip(2).take_while(|l| l.starts_with('|')).map(|l| cells(l)[0].clone()).collect();
    let code: Vec<String> = Reason::ALL.iter().map(|r| r.name().to_owned()).collect();
    let (mut d, mut c) = (documented.clone(), code.clone());
    d.sort();
    c.sort();
    assert_eq!(d, c);
}
