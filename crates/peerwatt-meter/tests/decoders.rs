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
    let keys = TasmotaSmlKeys {
        object: Some("MT681".into()),
        import: "E_in".into(),
        export: "E_out".into(),
        power: "P".into(),
        ..TasmotaSmlKeys::default()
    };
    let mut d = TasmotaDecoder::new(keys).unwrap();
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
    assert_eq!(d.decode("shellypro3em-a/status/switch:0", b"{}").unwrap_err().reason, Reason::MissingField);
    assert_eq!(d.decode("shellypro3em-a/status/wifi", br#"{"sta_ip":null}"#).unwrap_err().reason, Reason::WrongTopic);
}

#[test]
fn dsmr_reader_sums_tariffs_and_nets_power() {
    let mut d = DsmrReaderDecoder::default();
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
    let mut d = OpendtuDecoder::default();
    assert_eq!(d.decode("solar/116491234567/0/power", b"612.4").unwrap(), sample(Some(612), None, None));
    assert_eq!(d.decode("solar/116491234567/0/yieldtotal", b"1532.118").unwrap(), sample(None, Some(1_532_118), None));
    assert_eq!(d.decode("solar/116491234567/1/power", b"300").unwrap_err().reason, Reason::PartialQuantity);
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
        invert: true,
        ..GenericJsonConfig::default()
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

#[test]
fn a_json_object_naming_a_key_twice_is_refused_by_every_json_format() {
    let twice = br#"{"ENERGY":{"Total":1.5,"Power":12,"Power":-300}}"#;
    let refused = TasmotaDecoder::default().decode("tele/plug/SENSOR", twice).unwrap_err();
    assert_eq!(refused.reason, Reason::RepeatedKey, "{refused}");
    assert!(refused.detail.contains("\"Power\" appears twice"), "{refused}");
    let z2m = br#"{"power":10,"energy":1.0,"power":20}"#;
    assert_eq!(Zigbee2mqttDecoder.decode("zigbee2mqtt/p", z2m).unwrap_err().reason, Reason::RepeatedKey);
    // The same key in two different objects is fine.
    let nested = br#"{"a":{"power":1},"b":{"power":2},"power":3}"#;
    assert_eq!(Zigbee2mqttDecoder.decode("zigbee2mqtt/p", nested).unwrap(), sample(Some(3), None, None));
}

#[test]
fn generic_json_subtracts_export_power_sums_phases_and_converts_units_per_field() {
    let cfg: GenericJsonConfig = toml::from_str(
        r#"
        power = ["/P1", "/P2", "/P3"]
        power_export = "/PO"
        import = { pointer = "/E_in", unit = "kWh" }
        export = "/E_out"
        power_unit = "kW"
        "#,
    )
    .unwrap();
    let mut d = GenericJsonDecoder::new(cfg).unwrap();
    let payload = br#"{"P1":0.1004,"P2":"0.2","P3":0,"PO":1.5,"E_in":12.3456,"E_out":789}"#;
    // 0.1004 + 0.2 + 0 − 1.5 kW = −1.1996 kW → −1,200 W (rounded once); 12.3456 kWh; 789 Wh.
    assert_eq!(d.decode("m", payload).unwrap(), sample(Some(-1_200), Some(12_346), Some(789)));
    // A missing phase refuses the whole message, and nothing of it is kept.
    assert_eq!(
        d.decode("m", br#"{"P1":1,"P2":1,"PO":0,"E_in":1,"E_out":1}"#).unwrap_err().reason,
        Reason::MissingField
    );
    let wrong_unit: GenericJsonConfig = toml::from_str(
        r#"power = "/p"
power_unit = "kWh""#,
    )
    .unwrap();
    assert!(GenericJsonDecoder::new(wrong_unit).unwrap_err().contains("not a unit of power"));
}

#[test]
fn generic_json_reads_plain_number_topics_once_every_register_has_arrived() {
    let cfg: GenericJsonConfig = toml::from_str(
        r#"
        power = { topic = "p1/power" }
        import = [{ topic = "p1/low" }, { topic = "p1/high" }]
        energy_unit = "kWh"
        "#,
    )
    .unwrap();
    let mut d = GenericJsonDecoder::new(cfg).unwrap();
    assert_eq!(d.decode("p1/power", b"313").unwrap(), sample(Some(313), None, None));
    assert_eq!(d.decode("p1/low", b"2209.397").unwrap(), Sample::default());
    assert_eq!(d.decode("p1/high", b"1964.962").unwrap(), sample(None, Some(4_174_359), None));
    assert_eq!(d.decode("p1/voltage", b"230").unwrap_err().reason, Reason::WrongTopic);
    assert_eq!(d.decode("p1/power", b"nan").unwrap_err().reason, Reason::NotFinite);
}

#[test]
fn tasmota_sml_in_kilowatts_with_separate_export_power() {
    let keys: TasmotaSmlKeys = toml::from_str(
        r#"
        object = "MT175"
        import = "E_in"
        export = "E_out"
        power = "Pp"
        power_export = "Pm"
        power_unit = "kW"
        energy_unit = "Wh"
        "#,
    )
    .unwrap();
    let mut d = TasmotaDecoder::new(keys).unwrap();
    let payload = br#"{"Time":"x","MT175":{"E_in":1234567,"E_out":89,"Pp":0.000,"Pm":0.894}}"#;
    assert_eq!(d.decode("tele/m/SENSOR", payload).unwrap(), sample(Some(-894), Some(1_234_567), Some(89)));
    let zero = br#"{"Time":"x","MT175":{"E_in":0,"E_out":0,"Pp":0.000,"Pm":0}}"#;
    assert_eq!(d.decode("tele/m/SENSOR", zero).unwrap_err().reason, Reason::AllZero);
}

#[test]
fn shelly_gen1_3em_sums_its_three_phases_once_each_has_reported() {
    let mut d = ShellyGen2Decoder::default();
    let t = |i: u32, q: &str| format!("shellies/shellyem3-485519D6FEC7/emeter/{i}/{q}");
    assert_eq!(d.decode(&t(0, "power"), b"120.11").unwrap(), Sample::default());
    assert_eq!(d.decode(&t(1, "power"), b"2.35").unwrap(), Sample::default());
    assert_eq!(d.decode(&t(2, "power"), b"-300.2").unwrap(), sample(Some(-178), None, None));
    assert_eq!(d.decode(&t(1, "power"), b"3").unwrap(), sample(Some(-177), None, None));
    assert_eq!(d.decode(&t(0, "voltage"), b"231").unwrap_err().reason, Reason::WrongTopic);
    // A single-phase Shelly EM reads channel 0 alone; its second clamp is another circuit.
    let mut em = ShellyGen2Decoder::default();
    assert_eq!(
        em.decode("shellies/shellyem-D3B45C/emeter/0/total", b"64541.0").unwrap(),
        sample(None, Some(64_541), None)
    );
    assert_eq!(em.decode("shellies/shellyem-D3B45C/emeter/1/power", b"5").unwrap_err().reason, Reason::PartialQuantity);
}

#[test]
fn availability_messages_are_refused_as_such_by_every_format() {
    let sml = TasmotaSmlKeys::default();
    for format in
        [Format::Tasmota, Format::ShellyGen2, Format::DsmrReader, Format::Esphome, Format::Opendtu, Format::Zigbee2mqtt]
    {
        let mut d = peerwatt_meter::decode::decoder_for(format, &Default::default()).unwrap();
        for (topic, payload) in [
            ("tele/m/LWT", "Offline"),
            ("node/status", "online"),
            ("shellies/x/online", "false"),
            ("zigbee2mqtt/plug/availability", r#"{"state":"offline"}"#),
        ] {
            let refused = d.decode(topic, payload.as_bytes()).unwrap_err();
            assert_eq!(refused.reason, Reason::Availability, "{format} {topic}: {refused}");
        }
    }
    let _ = sml;
}

#[test]
fn extreme_values_and_a_users_own_topic_prefix_are_no_trap() {
    // An export power of i64::MIN W, and an inversion of it, are refused, not wrapped or panicked on.
    let cfg: GenericJsonConfig = toml::from_str("power = \"/p\"\npower_export = \"/o\"\ninvert = true").unwrap();
    let mut d = GenericJsonDecoder::new(cfg).unwrap();
    let huge = br#"{"p":0,"o":-9223372036854775808}"#;
    assert_eq!(d.decode("m", huge).unwrap_err().reason, Reason::OutOfRange);
    assert_eq!(d.decode("m", br#"{"p":5,"o":2}"#).unwrap(), sample(Some(-3), None, None));
    // A day figure is told by DSMR-reader's folder and field, not by words in the user's prefix.
    let mut dsmr = DsmrReaderDecoder::default();
    assert_eq!(dsmr.decode("holiday-home/dsmr/reading/electricity_delivered_1", b"1.000").unwrap(), Sample::default());
    let day = dsmr.decode("holiday-home/dsmr/day-consumption/electricity1", b"1.000").unwrap_err();
    assert_eq!(day.reason, Reason::PeriodAggregate);
}

#[test]
fn a_refused_message_changes_nothing_a_decoder_remembers() {
    let mut d = ShellyGen2Decoder::default();
    let rpc = |params: &str| format!(r#"{{"src":"shellyplus1pm-a","method":"NotifyStatus","params":{params}}}"#);
    let t = "shellyplus1pm-a/events/rpc";
    assert_eq!(
        d.decode(t, rpc(r#"{"switch:0":{"apower":10,"aenergy":{"total":5.0}}}"#).as_bytes()).unwrap(),
        sample(Some(10), Some(5), None)
    );
    // A bad counter in a delta is refused, and not merged into the last status ...
    let bad = rpc(r#"{"switch:0":{"aenergy":{"total":true}}}"#);
    assert_eq!(d.decode(t, bad.as_bytes()).unwrap_err().reason, Reason::WrongType);
    // ... so the next delta still reads, with the counter from before.
    assert_eq!(d.decode(t, rpc(r#"{"switch:0":{"apower":15}}"#).as_bytes()).unwrap(), sample(Some(15), Some(5), None));
    // A notification whose second component fails leaves the first one unapplied too.
    let mixed = rpc(r#"{"switch:0":{"apower":100},"pm1:0":{"apower":"x"}}"#);
    assert_eq!(d.decode(t, mixed.as_bytes()).unwrap_err().reason, Reason::NonNumeric);
    assert_eq!(
        d.decode(t, rpc(r#"{"switch:0":{"voltage":230}}"#).as_bytes()).unwrap(),
        sample(Some(15), Some(5), None)
    );
    // Two tariff registers whose sum overflows: refused, and the first register is kept as it was.
    let mut dsmr = DsmrReaderDecoder::default();
    let r = |f: &str| format!("dsmr/reading/electricity_delivered_{f}");
    assert_eq!(dsmr.decode(&r("1"), b"5000000000000000").unwrap(), Sample::default());
    assert_eq!(dsmr.decode(&r("2"), b"5000000000000000").unwrap_err().reason, Reason::OutOfRange);
    // The refused register was not kept: tariff 2 is still unknown, so tariff 1 alone waits.
    assert_eq!(dsmr.decode(&r("1"), b"1.0").unwrap(), Sample::default());
    assert_eq!(dsmr.decode(&r("2"), b"1.5").unwrap(), sample(None, Some(2_500), None));
}

#[test]
fn a_shelly_that_cannot_be_placed_must_be_told_its_channels() {
    // A Gen1 3EM under a custom MQTT prefix: channel 0 alone would be one phase of three.
    let mut d = ShellyGen2Decoder::default();
    assert_eq!(d.decode("home/grid/emeter/0/power", b"120").unwrap(), sample(Some(120), None, None));
    let refused = d.decode("home/grid/emeter/1/power", b"80").unwrap_err();
    assert_eq!(refused.reason, Reason::PartialQuantity);
    let refused = d.decode("home/grid/emeter/0/power", b"120").unwrap_err();
    assert!(refused.detail.contains("channels = [0] (one clamp) or [0, 1, 2]"), "{refused}");
    // Told, it sums the three phases.
    let cfg = peerwatt_meter::decode::ShellyChannels { channels: vec![0, 1, 2] };
    let mut d = ShellyGen2Decoder::new(Some(cfg)).unwrap();
    for (i, w) in [(0, "120"), (1, "80")] {
        assert_eq!(d.decode(&format!("home/grid/emeter/{i}/power"), w.as_bytes()).unwrap(), Sample::default());
    }
    assert_eq!(d.decode("home/grid/emeter/2/power", b"-500").unwrap(), sample(Some(-300), None, None));
    // A Shelly EM's second clamp is another circuit: refused alone, channel 0 keeps reading.
    let mut em = ShellyGen2Decoder::default();
    assert_eq!(em.decode("shellies/shellyem-D3B45C/emeter/1/power", b"5").unwrap_err().reason, Reason::PartialQuantity);
    assert_eq!(em.decode("shellies/shellyem-D3B45C/emeter/0/power", b"612").unwrap(), sample(Some(612), None, None));
    // A Gen1 plug's relay power is not an OpenDTU inverter's channel 0.
    assert_eq!(detect("shellies/shellyplug-s-1/relay/0/power", b"12.5", &TasmotaSmlKeys::default()), None);
}
