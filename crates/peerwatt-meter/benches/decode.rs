//! Decode throughput per format: `cargo bench -p peerwatt-meter` (add `-- --quick` for a short run).
//! Each payload goes through the whole pipeline (size check, topic routing, decoding,
//! validation), as a message from the broker does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark panics to fail

use std::time::Instant;

use peerwatt_core::Timestamp;
use peerwatt_meter::decode::{DecoderSettings, Format, GenericJsonConfig, decoder_for};
use peerwatt_meter::{Input, Limits, Outcome, Pipeline, Role};

fn run(name: &str, format: Format, json: Option<GenericJsonConfig>, messages: &[(String, String)], n: u64) {
    let settings = DecoderSettings { json, ..DecoderSettings::default() };
    let decoder = decoder_for(format, &settings).unwrap();
    let mut p = Pipeline::new(vec![Input { role: Role::Grid, topics: vec!["#".into()], decoder }], Limits::default());
    let start = Instant::now();
    let mut accepted = 0u64;
    for i in 0..n {
        let (topic, payload) = &messages[(i as usize) % messages.len()];
        let topic = topic.as_str();
        // One second apart, so counter plausibility checks see realistic rates.
        match p.handle(topic, payload.as_bytes(), Timestamp(i * 1000)) {
            Outcome::Reading(..) | Outcome::Pending => accepted += 1,
            Outcome::Rejected(r) if accepted == i => eprintln!("{name}: {topic}: {r}"),
            Outcome::Rejected(_) => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(accepted, n, "{name}: every benchmark payload must decode");
    let bytes: usize = messages.iter().map(|(_, p)| p.len()).sum::<usize>() / messages.len();
    println!("{name:<28} {:>10.0} payloads/s  ({:>4} bytes each)", n as f64 / secs, bytes);
}

/// A counter that rises 1 Wh per message, as decimal kWh text.
fn kwh(i: u64) -> String {
    format!("{}.{:03}", 1000 + i / 1000, i % 1000)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 20_000 } else { 200_000 };
    let reps = 1000;
    println!("peerwatt-meter decode throughput ({n} messages per format, one core)");

    let tasmota: Vec<_> = (0..reps)
        .map(|i| ("tele/meter/SENSOR".to_owned(), format!(r#"{{"Time":"2022-07-07T13:01:11","SML":{{"Total_in":{},"Total_out":14737.1422,"Power_curr":-894,"Meter_id":"0a01445a"}}}}"#, kwh(i))))
        .collect();
    run("tasmota (SML)", Format::Tasmota, None, &tasmota, n);

    let shelly: Vec<_> = (0..reps)
        .map(|i| {
            ("shellypro3em-a/events/rpc".to_owned(), format!(r#"{{"src":"shellypro3em-a","dst":"shellypro3em-a/events","method":"NotifyStatus","params":{{"ts":1714557600.12,"em:0":{{"id":0,"total_act_power":-{}.3}}}}}}"#, 500 + i % 100))
        })
        .collect();
    run("shelly-gen2 (NotifyStatus)", Format::ShellyGen2, None, &shelly, n);

    let dsmr: Vec<_> = (0..reps)
        .map(|i| ("dsmr/json".to_owned(), format!(r#"{{"id":1234,"read_at":"2024-05-01T10:00:00+02:00","electricity_delivered_1":"{}","electricity_returned_1":"12.345","electricity_delivered_2":2345.678,"electricity_returned_2":23.456,"electricity_currently_delivered":0.412,"electricity_currently_returned":0.0,"phase_currently_delivered_l1":0.412}}"#, kwh(i))))
        .collect();
    run("dsmr-reader", Format::DsmrReader, None, &dsmr, n);

    let esphome: Vec<_> =
        (0..reps).map(|i| ("dsmr/sensor/power_consumed/state".to_owned(), format!("0.{:03}", i % 1000))).collect();
    run("esphome (one value)", Format::Esphome, None, &esphome, n);

    let opendtu: Vec<_> =
        (0..reps).map(|i| ("solar/116491234567/0/power".to_owned(), format!("{}.4", 600 + i % 50))).collect();
    run("opendtu (one value)", Format::Opendtu, None, &opendtu, n);

    let z2m: Vec<_> = (0..reps)
        .map(|i| ("zigbee2mqtt/plug".to_owned(), format!(r#"{{"child_lock":"UNLOCK","current":0.21,"energy":{},"linkquality":98,"power":48,"state":"ON","voltage":229}}"#, kwh(i))))
        .collect();
    run("zigbee2mqtt", Format::Zigbee2mqtt, None, &z2m, n);

    let json_cfg = GenericJsonConfig {
        power: Some("/meter/p_kw".into()),
        import: Some("/meter/counters/0".into()),
        ..Default::default()
    };
    let json: Vec<_> = (0..reps)
        .map(|i| {
            ("custom/meter".to_owned(), format!(r#"{{"meter":{{"p_kw":0.75,"counters":[{},"3.25"]}},"ts":1}}"#, kwh(i)))
        })
        .collect();
    run("json (pointers)", Format::Json, Some(json_cfg), &json, n);

    // The shapes added for real installations (issue 18): each through the whole pipeline.
    let tasmota_phases: Vec<_> = (0..reps)
        .map(|i| ("tele/Zaehler/SENSOR".to_owned(), format!(r#"{{"Time":"2023-01-10T13:03:11","ENERGY":{{"TotalStartTime":"2023-01-10T00:00:00","Total":16647.945,"Yesterday":26.425,"Today":7.978,"ExportActive":[1508.369,1929.488,1696.624],"Power":[-136.495,0.000,-78.478],"ImportActive":[{},2795.954,4301.033],"Frequency":50,"Voltage":[230.1,231.0,229.8]}}}}"#, kwh(i))))
        .collect();
    run("tasmota (ENERGY per phase)", Format::Tasmota, None, &tasmota_phases, n);

    let shelly_em1: Vec<_> = (0..reps)
        .map(|i| ("shellyproem50/status/em1:0".to_owned(), format!(r#"{{"id":0,"current":2.681,"voltage":236.7,"act_power":-{}.3,"aprt_power":636.0,"pf":0.95,"freq":50.0,"calibration":"factory"}}"#, 600 + i % 50)))
        .collect();
    run("shelly-gen2 (em1 status)", Format::ShellyGen2, None, &shelly_em1, n);

    let shelly_gen1: Vec<_> = (0..reps)
        .map(|i| (format!("shellies/shellyem3-485519D6FEC7/emeter/{}/power", i % 3), format!("{}.11", 100 + i % 50)))
        .collect();
    run("shelly gen1 3EM (3 phases)", Format::ShellyGen2, None, &shelly_gen1, n);

    let dsmr_split: Vec<_> = (0..reps)
        .map(|i| {
            let field = [
                "electricity_delivered_1",
                "electricity_delivered_2",
                "electricity_currently_delivered",
                "electricity_currently_returned",
            ][i as usize % 4];
            (format!("dsmr/reading/{field}"), if field.contains("current") { "0.109".to_owned() } else { kwh(i) })
        })
        .collect();
    run("dsmr-reader (split topics)", Format::DsmrReader, None, &dsmr_split, n);

    let opendtu_total: Vec<_> =
        (0..reps).map(|i| ("solar/ac/power".to_owned(), format!("{}.4", 600 + i % 50))).collect();
    run("opendtu (ac total)", Format::Opendtu, None, &opendtu_total, n);

    let z2m_attr: Vec<_> = (0..reps).map(|i| ("zigbee2mqtt/z1/power".to_owned(), format!("{}", 40 + i % 50))).collect();
    run("zigbee2mqtt (attribute)", Format::Zigbee2mqtt, None, &z2m_attr, n);

    let p1_cfg: GenericJsonConfig = toml_like_p1();
    let p1: Vec<_> = (0..reps)
        .map(|i| {
            let topic =
                ["p1/actual_consumption", "p1/consumption_low_tarif", "p1/consumption_high_tarif"][i as usize % 3];
            let value = if i % 3 == 0 { format!("{}", 300 + i % 50) } else { format!("{}", 2_209_397 + i) };
            (topic.to_owned(), value)
        })
        .collect();
    run("json (plain topics, summed)", Format::Json, Some(p1_cfg), &p1, n);
}

/// A meter that publishes power and two tariff registers on their own topics.
fn toml_like_p1() -> GenericJsonConfig {
    use peerwatt_meter::decode::{Source, Sources};
    let on = |topic: &str| Source::On { topic: Some(topic.to_owned()), pointer: String::new(), unit: None };
    GenericJsonConfig {
        power: Some(Sources::One(on("p1/actual_consumption"))),
        import: Some(Sources::Sum(vec![on("p1/consumption_low_tarif"), on("p1/consumption_high_tarif")])),
        ..GenericJsonConfig::default()
    }
}
