//! Every supported firmware's real payload shapes decode to exact integers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use peerwatt_meter::decode::{Decoder, Format};
use peerwatt_meter::decode::{
    DsmrReaderDecoder, EsphomeDecoder, GenericJsonConfig, GenericJsonDecoder, OpendtuDecoder, ShellyGen2Decoder,
    TasmotaDecoder, TasmotaSmlKeys, Zigbee2mqttDecoder, detect,
};
use peerwatt_meter::{Reason, Sample};

mod common;
use common::*;

fn sample(power: Option<i64>, energy_in: Option<i64>, energy_out: Option<i64>) -> Sample {
    Sample { power, energy_in, energy_out }
}

#[test]
fn tasmota_sml_and_plug() {
    let mut d = TasmotaDecoder::default();
    assert_eq!(
        d.decode("tele/meter/SENSOR", TASMOTA_SML.as_bytes()).unwrap(),
        sample(Some(-894), Some(34_507_476), Some(14_737_142))
    );
    assert_eq!(d.decode("tele/plug/SENSOR", TASMOTA_PLUG.as_bytes()).unwrap(), sample(Some(0), Some(196_708), None));
    // Custom SML names from the user's meter script.
    let keys =
        TasmotaSmlKeys { object: "MT681".into(), import: "E_in".into(), export: "E_out".into(), power: "P".into() };
    let mut d = TasmotaDecoder::new(keys);
    let custom = r#"{"Time":"x","MT681":{"E_in":1.0005,"E_out":0,"P":12.5}}"#;
    assert_eq!(d.decode("tele/m/SENSOR", custom.as_bytes()).unwrap(), sample(Some(13), Some(1_001), Some(0)));
    let state = r#"{"Time":"x","Uptime":"0T00:01:00","Heap":25,"Wifi":{"RSSI":60}}"#;
    assert_eq!(d.decode("tele/m/STATE", state.as_bytes()).unwrap_err().reason, Reason::MissingField);
}

#[test]
fn shelly_status_and_notify_deltas_over_the_last_full_status() {
    let mut d = ShellyGen2Decoder::default();
    assert_eq!(d.decode("shellypro3em-a/status/em:0", SHELLY_EM.as_bytes()).unwrap(), sample(Some(-914), None, None));
    assert_eq!(
        d.decode("shellypro3em-a/status/emdata:0", SHELLY_EMDATA.as_bytes()).unwrap(),
        sample(None, Some(3_476), Some(830))
    );
    // A NotifyStatus that only carries the changed power.
    let delta = r#"{"src":"shellypro3em-a","dst":"shellypro3em-a/events","method":"NotifyStatus","params":{"ts":1714557600.12,"em:0":{"id":0,"total_act_power":-512.3}}}"#;
    assert_eq!(d.decode("shellypro3em-a/events/rpc", delta.as_bytes()).unwrap(), sample(Some(-512), None, None));
    // A delta of one energy counter keeps the other from the last full status.
    let delta = r#"{"src":"s","method":"NotifyStatus","params":{"ts":1,"emdata:0":{"id":0,"total_act_ret":831.2}}}"#;
    assert_eq!(d.decode("shellypro3em-a/events/rpc", delta.as_bytes()).unwrap(), sample(None, Some(3_476), Some(831)));
    let other = r#"{"src":"s","method":"NotifyEvent","params":{"ts":1,"events":[]}}"#;
    assert_eq!(d.decode("shellypro3em-a/events/rpc", other.as_bytes()).unwrap_err().reason, Reason::MissingField);
    assert_eq!(d.decode("shellypro3em-a/status/switch:0", b"{}").unwrap_err().reason, Reason::WrongTopic);
}

#[test]
fn dsmr_reader_sums_tariffs_and_nets_power() {
    let mut d = DsmrReaderDecoder;
    // Import 1234.567 + 2345.678 kWh, export 12.345 + 23.456 kWh, 0.412 kW delivered.
    assert_eq!(
        d.decode("dsmr/json", DSMR_READER.as_bytes()).unwrap(),
        sample(Some(412), Some(3_580_245), Some(35_801))
    );
    let exporting = DSMR_READER
        .replace(r#""electricity_currently_delivered":0.412"#, r#""electricity_currently_delivered":0"#)
        .replace(r#""electricity_currently_returned":0.0"#, r#""electricity_currently_returned":1.5"#);
    assert_eq!(d.decode("dsmr/json", exporting.as_bytes()).unwrap().power, Some(-1_500));
    let negative =
        DSMR_READER.replace(r#""electricity_currently_returned":0.0"#, r#""electricity_currently_returned":-0.2"#);
    assert_eq!(d.decode("dsmr/json", negative.as_bytes()).unwrap_err().reason, Reason::NegativePower);
}

#[test]
fn esphome_waits_for_both_tariffs_and_both_directions() {
    let mut d = EsphomeDecoder::default();
    let t = |id: &str| format!("dsmr-reader/sensor/{id}/state");
    assert_eq!(d.decode(&t("energy_delivered_tariff1"), b"1234.567").unwrap(), Sample::default());
    assert_eq!(d.decode(&t("energy_delivered_tariff2"), b"2345.678").unwrap(), sample(None, Some(3_580_245), None));
    assert_eq!(d.decode(&t("energy_returned_tariff_1"), b"12.345").unwrap(), Sample::default());
    assert_eq!(d.decode(&t("energy_returned_tariff_2"), b"23.456").unwrap(), sample(None, None, Some(35_801)));
    assert_eq!(d.decode(&t("power_consumed"), b"0.412").unwrap(), Sample::default());
    assert_eq!(d.decode(&t("power_produced"), b"0.000").unwrap(), sample(Some(412), None, None));
    assert_eq!(d.decode(&t("power_produced"), b"1.100").unwrap(), sample(Some(-688), None, None));
    assert_eq!(d.decode(&t("voltage_l1"), b"230.1").unwrap_err().reason, Reason::WrongTopic);
    assert_eq!(d.decode(&t("power_consumed"), b"nan").unwrap_err().reason, Reason::NotFinite);
    assert_eq!(d.decode("dsmr/whatever", b"1").unwrap_err().reason, Reason::WrongTopic);
}

#[test]
fn opendtu_power_and_yield() {
    let mut d = OpendtuDecoder;
    assert_eq!(d.decode("solar/116491234567/0/power", b"612.4").unwrap(), sample(Some(612), None, None));
    assert_eq!(d.decode("solar/116491234567/0/yieldtotal", b"1532.118").unwrap(), sample(None, Some(1_532_118), None));
    assert_eq!(d.decode("solar/116491234567/1/power", b"300").unwrap_err().reason, Reason::WrongTopic);
    assert_eq!(d.decode("solar/116491234567/0/power", b"on").unwrap_err().reason, Reason::NonNumeric);
}

#[test]
fn zigbee2mqtt_power_and_energy() {
    let mut d = Zigbee2mqttDecoder;
    assert_eq!(
        d.decode("zigbee2mqtt/heat-pump", ZIGBEE2MQTT.as_bytes()).unwrap(),
        sample(Some(48), Some(12_340), None)
    );
    assert_eq!(d.decode("zigbee2mqtt/x", br#"{"state":"ON"}"#).unwrap_err().reason, Reason::MissingField);
}

#[test]
fn generic_json_with_pointers_scale_and_invert() {
    let cfg = GenericJsonConfig {
        power: Some("/meter/p_kw".into()),
        import: Some("/meter/counters/0".into()),
        export: Some("/meter/counters/1".into()),
        scale: Some(peerwatt_meter::decode::ScaleValue::Float(1000.0)),
        energy_scale: None,
        invert: true,
    };
    let mut d = GenericJsonDecoder::new(cfg).unwrap();
    let payload = br#"{"meter":{"p_kw":0.75,"counters":[12.5,"3.25"]},"ts":1}"#;
    assert_eq!(d.decode("any/topic", payload).unwrap(), sample(Some(-750), Some(12_500), Some(3_250)));
    assert_eq!(d.decode("any/topic", br#"{"meter":{}}"#).unwrap_err().reason, Reason::MissingField);
    assert!(
        GenericJsonDecoder::new(GenericJsonConfig { power: Some("meter/p".into()), ..Default::default() }).is_err()
    );
    assert!(GenericJsonDecoder::new(GenericJsonConfig::default()).is_err());
}

#[test]
fn auto_detection_recognises_every_format_from_one_message() {
    let sml = TasmotaSmlKeys::default();
    let cases = [
        ("tele/meter/SENSOR", TASMOTA_SML, Format::Tasmota),
        ("tele/plug/SENSOR", TASMOTA_PLUG, Format::Tasmota),
        ("shellypro3em-a/status/em:0", SHELLY_EM, Format::ShellyGen2),
        ("shellypro3em-a/events/rpc", r#"{"method":"NotifyStatus"}"#, Format::ShellyGen2),
        ("dsmr/json", DSMR_READER, Format::DsmrReader),
        ("dsmr/sensor/power_consumed/state", "0.412", Format::Esphome),
        ("solar/1164/0/power", "612.4", Format::Opendtu),
        ("zigbee2mqtt/plug", ZIGBEE2MQTT, Format::Zigbee2mqtt),
    ];
    for (topic, payload, want) in cases {
        assert_eq!(detect(topic, payload.as_bytes(), &sml), Some(want), "{topic}");
    }
    assert_eq!(detect("x/y", b"\x00\x01binary", &sml), None);
    assert_eq!(detect("x/y", br#"{"temperature":21.5}"#, &sml), None);
}

/// A payload of the corpus (tests/corpus/, copied from public sources) and what it should give.
fn corpus(name: &str) -> (String, String, Sample) {
    let path = format!("{}/tests/corpus/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let file: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let int = |k: &str| file.get(k).and_then(toml::Value::as_integer);
    let text = |k: &str| file[k].as_str().unwrap().to_owned();
    (text("topic"), text("payload"), sample(int("power_w"), int("energy_in_wh"), int("energy_out_wh")))
}

#[test]
fn tasmota_status_replies_phase_arrays_and_import_export_counters() {
    for name in [
        "tasmota-02-pow-r2-status8",              // the Status reply: sensors under StatusSNS
        "tasmota-04-status10-energy-4dec",        // the same on newer firmware
        "tasmota-05-status10-power-array",        // per-channel Power in an array, under StatusSNS
        "tasmota-12-modbus-3phase-import-export", // per-phase ImportActive/ExportActive, Power summed exactly
    ] {
        let (topic, payload, expected) = corpus(name);
        let got = TasmotaDecoder::default().decode(&topic, payload.as_bytes());
        assert_eq!(got, Ok(expected), "{name}");
    }
}
