//! Every payload of the public corpus (`tests/corpus/`, real messages copied from public
//! sources) decodes to what its file says: exact integers, nothing yet (one register of a
//! meter that publishes its registers on separate topics), or the named refusal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::collections::BTreeMap;
use std::path::Path;

use peerwatt_meter::decode::{Format, TasmotaSmlKeys, decoder_for, detect};
use peerwatt_meter::{RoleConfig, Sample};

/// What a corpus file says its payload must give.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Reading(Sample),
    /// Accepted, but nothing known yet: the other registers of the quantity are still missing.
    Pending,
    /// Refused with this reason.
    Refused(String),
}

/// One corpus file.
struct Case {
    name: String,
    family: String,
    topic: String,
    payload: String,
    /// Files whose payloads the same decoder reads first (the other registers).
    after: Vec<String>,
    expected: Expected,
    meter: RoleConfig,
    /// Whether the file uses its family's format with no settings.
    default_meter: bool,
}

/// The format of a family when a file names none.
fn family_format(family: &str) -> Option<Format> {
    Some(match family {
        "tasmota" => Format::Tasmota,
        "shelly" => Format::ShellyGen2,
        "dsmr" => Format::DsmrReader,
        "esphome" => Format::Esphome,
        "opendtu" => Format::Opendtu,
        "zigbee2mqtt" => Format::Zigbee2mqtt,
        _ => return None,
    })
}

fn load(path: &Path) -> Case {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let file: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = |k: &str| file.get(k).and_then(toml::Value::as_str).map(str::to_owned);
    let int = |k: &str| file.get(k).and_then(toml::Value::as_integer);
    let family = text("family").unwrap();
    let default_meter = !file.contains_key("meter");
    let mut meter = match file.get("meter") {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => {
            let format = family_format(&family).unwrap_or_else(|| panic!("{name}: family {family} needs a [meter]"));
            toml::toml! { format = (format.name()) }
        }
    };
    meter.entry("topics").or_insert_with(|| toml::Value::Array(vec!["#".into()]));
    let meter: RoleConfig = meter.try_into().unwrap_or_else(|e| panic!("{name}: [meter]: {e}"));
    let expected = if let Some(reason) = text("reason") {
        assert!(file.contains_key("refusal"), "{name}: a reason without the refusal's description");
        Expected::Refused(reason)
    } else if file.get("pending").and_then(toml::Value::as_bool) == Some(true) {
        Expected::Pending
    } else {
        let sample = Sample { power: int("power_w"), energy_in: int("energy_in_wh"), energy_out: int("energy_out_wh") };
        assert!(!sample.is_empty(), "{name}: no expected values, refusal or pending");
        Expected::Reading(sample)
    };
    let after = file
        .get("after")
        .and_then(toml::Value::as_array)
        .map_or_else(Vec::new, |a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect());
    for key in ["source", "licence", "what"] {
        assert!(text(key).is_some_and(|t| !t.is_empty()), "{name}: {key} is missing");
    }
    Case {
        name,
        family,
        topic: text("topic").unwrap(),
        payload: text("payload").unwrap(),
        after,
        expected,
        meter,
        default_meter,
    }
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// What the decoder makes of a case, after its `after` files.
fn decode(case: &Case, all: &[Case]) -> Result<Expected, String> {
    let mut decoder = decoder_for(case.meter.format, &case.meter.settings())?;
    for prior in &case.after {
        let prior = all.iter().find(|c| &c.name == prior).ok_or(format!("no corpus file {prior}"))?;
        decoder.decode(&prior.topic, prior.payload.as_bytes()).map_err(|e| format!("{}: {e}", prior.name))?;
    }
    Ok(match decoder.decode(&case.topic, case.payload.as_bytes()) {
        Ok(sample) if sample.is_empty() => Expected::Pending,
        Ok(sample) => Expected::Reading(sample),
        Err(reject) => Expected::Refused(reject.reason.name().to_owned()),
    })
}

#[test]
fn every_corpus_payload_decodes_to_what_its_file_says() {
    let all = corpus();
    assert!(all.len() >= 80, "the corpus has {} payloads", all.len());
    let mut failures = Vec::new();
    for case in &all {
        match decode(case, &all) {
            Ok(got) if got == case.expected => {}
            Ok(got) => failures.push(format!("{}: expected {:?}, got {got:?}", case.name, case.expected)),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{} of {} corpus payloads:\n{}", failures.len(), all.len(), failures.join("\n"));
}

#[test]
fn the_corpus_readme_counts_the_payloads_of_every_family() {
    let all = corpus();
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for case in &all {
        *counted.entry(case.family.clone()).or_default() += 1;
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/README.md")).unwrap();
    let mut documented = BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let (Some(family), Some(Ok(n))) = (cells.get(1), cells.get(2).map(|c| c.parse::<usize>())) {
            documented.insert((*family).to_owned(), n);
        }
    }
    assert_eq!(documented, counted, "the README's family table");
    let meters_doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/meters.md")).unwrap();
    assert!(meters_doc.contains(&format!("has {} real", all.len())), "docs/meters.md's corpus size ({})", all.len());
    let refusals = all.iter().filter(|c| matches!(c.expected, Expected::Refused(_))).count();
    assert!(readme.contains(&format!("Refusals: {refusals} files")), "the README's refusal count ({refusals})");
}

#[test]
fn auto_detection_recognises_every_payload_its_family_reads_without_settings() {
    let all = corpus();
    let sml = TasmotaSmlKeys::default();
    let mut missed = Vec::new();
    for case in all.iter().filter(|c| c.default_meter && !matches!(c.expected, Expected::Refused(_))) {
        let found = detect(&case.topic, case.payload.as_bytes(), &sml);
        if found != Some(case.meter.format) {
            missed.push(format!("{}: {found:?}", case.name));
        }
    }
    assert!(missed.is_empty(), "not recognised as their format:\n{}", missed.join("\n"));
}

#[test]
fn a_scan_of_the_whole_corpus_finds_each_device_once_with_the_topics_that_read_it() {
    let all = corpus();
    let mut scan = peerwatt_meter::scan::Scan::default();
    for case in &all {
        scan.observe(&case.topic, case.payload.as_bytes());
    }
    let found = scan.found();
    let find =
        |source: &str| found.iter().find(|f| f.source == source).unwrap_or_else(|| panic!("{source}: {found:#?}"));
    // Two DSMR-reader registers on their own topics are one meter, whose import is their sum.
    let dsmr = find("dsmr");
    assert_eq!(dsmr.format, Format::DsmrReader);
    assert!(dsmr.topics.contains("dsmr/reading/electricity_delivered_1"), "{dsmr:?}");
    // A Gen1 3EM's phase topics are one meter, suggested with the channel as a wildcard; it
    // reads nothing until all three phases of a quantity have reported.
    let em3 = find("shellies/shellyem3-3494546ECFF8");
    assert_eq!(
        em3.section(),
        "[meter.grid]\nformat = \"shelly-gen2\"\ntopics = [\"shellies/shellyem3-3494546ECFF8/emeter/+/power\", \"shellies/shellyem3-3494546ECFF8/emeter/+/total\", \"shellies/shellyem3-3494546ECFF8/emeter/+/total_returned\"]\n"
    );
    assert_eq!(em3.latest, Sample::default());
    // OpenDTU's total is suggested as the PV meter, with its power and yield topics.
    let dtu = find("solar/ac");
    assert_eq!(
        dtu.section(),
        "[meter.pv]\nformat = \"opendtu\"\ntopics = [\"solar/ac/power\", \"solar/ac/yieldtotal\"]\n"
    );
    assert_eq!(dtu.latest, Sample { power: Some(0), energy_in: Some(13_338), energy_out: None });
    // Every format that needs no settings is found; generic JSON (which needs pointers) is not.
    let formats: std::collections::BTreeSet<Format> = found.iter().map(|f| f.format).collect();
    assert_eq!(formats.len(), 6, "{formats:?}");
    assert!(!formats.contains(&Format::Json));
}

#[test]
fn a_real_counter_reset_starts_a_new_counter_epoch_instead_of_booking_a_negative_import() {
    use peerwatt_core::Timestamp;
    use peerwatt_meter::{Input, Limits, Outcome, Pipeline, Reason, Role};
    let all = corpus();
    let case = |name: &str| all.iter().find(|c| c.name == name).unwrap();
    let (before, after) =
        (case("tasmota-26-sonoff-pow-before-energyreset3"), case("fault-16-tasmota-sensor-total-reset-to-zero"));
    let decoder = decoder_for(Format::Tasmota, &Default::default()).unwrap();
    let input = Input { role: Role::Grid, topics: vec!["#".into()], decoder };
    let mut pipeline = Pipeline::new(vec![input], Limits::default());
    // Five minutes apart, as in the source's log.
    let Outcome::Reading(first, None) = pipeline.handle(&before.topic, before.payload.as_bytes(), Timestamp(0)) else {
        panic!("the reading before the reset")
    };
    let Outcome::Reading(second, Some(notice)) =
        pipeline.handle(&after.topic, after.payload.as_bytes(), Timestamp(300_000))
    else {
        panic!("the reading after the reset, with a notice")
    };
    assert_eq!(notice.reason, Reason::CounterReset, "{notice}");
    assert_eq!((first.counter_epoch, second.counter_epoch), (0, 1));
    assert_eq!(second.import_total.map(|w| w.0), Some(0));
}
