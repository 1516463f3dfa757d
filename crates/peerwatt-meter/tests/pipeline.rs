//! The pipeline's validation: every plausibility rule with its named reason, and counters.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::time::Duration;

use peerwatt_core::{Timestamp, W, Wh};
use peerwatt_meter::decode::TasmotaDecoder;
use peerwatt_meter::{Input, Limits, Outcome, Pipeline, Reason, Role};

fn sml(import_kwh: &str, export_kwh: &str, power: &str) -> Vec<u8> {
    format!(r#"{{"Time":"t","SML":{{"Total_in":{import_kwh},"Total_out":{export_kwh},"Power_curr":{power}}}}}"#)
        .into_bytes()
}

fn pipeline() -> Pipeline {
    let input =
        Input { role: Role::Grid, topics: vec!["tele/+/SENSOR".into()], decoder: Box::new(TasmotaDecoder::default()) };
    Pipeline::new(
        vec![input],
        Limits { max_power_w: 20_000, stale_after: Duration::from_secs(60), ..Limits::default() },
    )
}

const T: Timestamp = Timestamp(1_717_243_200_000);

fn at(secs: u64) -> Timestamp {
    Timestamp(T.0 + secs * 1000)
}

fn reason(o: Outcome) -> Reason {
    match o {
        Outcome::Rejected(r) => r.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn accepted_readings_are_normalised() {
    let mut p = pipeline();
    let Outcome::Reading(r, None) = p.handle("tele/meter/SENSOR", &sml("100.0005", "50", "-894"), T) else { panic!() };
    assert_eq!((r.grid_power, r.import_total, r.export_total), (Some(W(-894)), Some(Wh(100_001)), Some(Wh(50_000))));
    assert_eq!(r.counter_epoch, 0);
    assert_eq!(p.counters().accepted, 1);
}

#[test]
fn plausibility_rules_have_named_reasons() {
    let mut p = pipeline();
    assert!(matches!(p.handle("tele/meter/SENSOR", &sml("100", "50", "0"), at(0)), Outcome::Reading(..)));
    assert_eq!(reason(p.handle("tele/meter/SENSOR", &sml("100", "50", "25000"), at(1))), Reason::ImplausiblePower);
    assert_eq!(reason(p.handle("tele/meter/SENSOR", &sml("-1", "50", "0"), at(2))), Reason::NegativeCounter);
    // 20 kW for 10 s is 55.6 Wh (+10 Wh slack): 100 Wh in 10 s is a jump.
    assert_eq!(reason(p.handle("tele/meter/SENSOR", &sml("100.1", "50", "0"), at(10))), Reason::ImplausibleJump);
    assert!(matches!(p.handle("tele/meter/SENSOR", &sml("100.05", "50", "0"), at(10)), Outcome::Reading(..)));
    assert_eq!(reason(p.handle("other/meter/SENSOR", &sml("1", "1", "0"), at(11))), Reason::WrongTopic);
    let big = vec![b' '; 20_000];
    assert_eq!(reason(p.handle("tele/meter/SENSOR", &big, at(12))), Reason::Oversized);
    let c = p.counters();
    assert_eq!(c.accepted, 2);
    for r in [
        Reason::ImplausiblePower,
        Reason::NegativeCounter,
        Reason::ImplausibleJump,
        Reason::WrongTopic,
        Reason::Oversized,
    ] {
        assert_eq!(c.get(r), 1, "{r}");
    }
}

#[test]
fn a_counter_going_backwards_starts_a_new_epoch_and_says_so() {
    let mut p = pipeline();
    p.handle("tele/meter/SENSOR", &sml("34507.4761", "14737.1422", "0"), at(0));
    let Outcome::Reading(r, Some(notice)) = p.handle("tele/meter/SENSOR", &sml("0.002", "0", "100"), at(10)) else {
        panic!()
    };
    assert_eq!(notice.reason, Reason::CounterReset);
    assert_eq!((r.counter_epoch, r.import_total), (1, Some(Wh(2))));
    // The new epoch's counters are the baseline from now on.
    let Outcome::Reading(r, None) = p.handle("tele/meter/SENSOR", &sml("0.003", "0", "100"), at(20)) else { panic!() };
    assert_eq!(r.counter_epoch, 1);
    assert_eq!(p.counters().get(Reason::CounterReset), 1);
}

#[test]
fn staleness_is_reported_once_until_readings_resume() {
    let mut p = pipeline();
    p.handle("tele/meter/SENSOR", &sml("1", "1", "0"), at(0));
    assert!(p.check_stale(at(59)).is_none());
    assert!(!p.is_stale(at(59)));
    assert_eq!(p.check_stale(at(60)).map(|r| r.reason), Some(Reason::Stale));
    assert!(p.check_stale(at(90)).is_none(), "reported once");
    assert!(p.is_stale(at(90)));
    p.handle("tele/meter/SENSOR", &sml("1", "1", "0"), at(100));
    assert!(!p.is_stale(at(101)));
    assert_eq!(p.check_stale(at(161)).map(|r| r.reason), Some(Reason::Stale));
    assert_eq!(p.counters().get(Reason::Stale), 2);
}

#[test]
fn a_last_will_saying_offline_makes_the_meter_stale_at_once_until_the_next_reading() {
    let input = Input {
        role: Role::Grid,
        topics: vec!["tele/meter/SENSOR".into(), "tele/meter/LWT".into()],
        decoder: Box::new(TasmotaDecoder::default()),
    };
    let mut p = Pipeline::new(vec![input], Limits { stale_after: Duration::from_secs(60), ..Limits::default() });
    assert!(matches!(p.handle("tele/meter/SENSOR", &sml("100", "50", "0"), at(0)), Outcome::Reading(..)));
    assert_eq!(reason(p.handle("tele/meter/LWT", b"Online", at(1))), Reason::Availability);
    assert!(!p.is_stale(at(2)) && p.check_stale(at(2)).is_none(), "online is not a reason to stop");
    assert_eq!(reason(p.handle("tele/meter/LWT", b"Offline", at(3))), Reason::Availability);
    assert!(p.is_stale(at(4)), "stale 1 s after the last reading, not after 60 s of silence");
    let stale = p.check_stale(at(4)).expect("reported");
    assert_eq!(
        (stale.reason, stale.detail.as_str()),
        (Reason::Stale, "the grid meter's device says it is offline (its last will)")
    );
    assert!(p.check_stale(at(5)).is_none(), "reported once");
    assert!(matches!(p.handle("tele/meter/SENSOR", &sml("100.001", "50", "0"), at(6)), Outcome::Reading(..)));
    assert!(!p.is_stale(at(7)));
    assert_eq!((p.counters().get(Reason::Availability), p.counters().get(Reason::Stale)), (2, 1));
}

#[test]
fn an_offline_pv_device_leaves_the_grid_meter_fresh_and_a_pv_reading_does_not_revive_the_grid_meter() {
    let grid = Input {
        role: Role::Grid,
        topics: vec!["tele/meter/SENSOR".into(), "tele/meter/LWT".into()],
        decoder: Box::new(TasmotaDecoder::default()),
    };
    let pv = Input {
        role: Role::Pv,
        topics: vec!["tele/pvplug/SENSOR".into(), "tele/pvplug/LWT".into()],
        decoder: Box::new(TasmotaDecoder::default()),
    };
    let mut p = Pipeline::new(vec![grid, pv], Limits { stale_after: Duration::from_secs(60), ..Limits::default() });
    let plug = br#"{"ENERGY":{"Total":1.5,"Power":300}}"#;
    assert!(matches!(p.handle("tele/meter/SENSOR", &sml("100", "50", "0"), at(0)), Outcome::Reading(..)));
    assert_eq!(reason(p.handle("tele/pvplug/LWT", b"Offline", at(1))), Reason::Availability);
    assert!(!p.is_stale(at(2)), "the PV plug's last will says nothing about the grid meter");
    assert_eq!(reason(p.handle("tele/meter/LWT", b"Offline", at(3))), Reason::Availability);
    assert!(matches!(p.handle("tele/pvplug/SENSOR", plug, at(4)), Outcome::Reading(..)));
    assert!(p.is_stale(at(5)), "a PV reading does not bring the grid meter back");
    // A boolean on a topic that is not an availability topic is no last will.
    let mut other = Pipeline::new(
        vec![Input { role: Role::Grid, topics: vec!["#".into()], decoder: Box::new(TasmotaDecoder::default()) }],
        Limits::default(),
    );
    assert!(matches!(other.handle("tele/meter/SENSOR", &sml("100", "50", "0"), at(0)), Outcome::Reading(..)));
    assert_eq!(reason(other.handle("evcc/site/batteryDischargeControl", b"false", at(1))), Reason::MissingField);
    assert!(!other.is_stale(at(2)));
}

#[test]
fn a_reading_refused_by_validation_leaves_nothing_in_the_decoders_registers() {
    use peerwatt_meter::decode::EsphomeDecoder;
    let input = Input { role: Role::Grid, topics: vec!["#".into()], decoder: Box::new(EsphomeDecoder::default()) };
    let mut p = Pipeline::new(vec![input], Limits { max_power_w: 20_000, ..Limits::default() });
    let t = |id: &str| format!("p1/sensor/{id}/state");
    assert_eq!(p.handle(&t("power_consumed"), b"0.000", at(0)), Outcome::Pending);
    assert!(matches!(p.handle(&t("power_produced"), b"1.100", at(1)), Outcome::Reading(..)));
    // A glitch of 60 kW is refused, and forgotten: the next consumed power pairs with 1.1 kW.
    assert_eq!(reason(p.handle(&t("power_produced"), b"60.000", at(2))), Reason::ImplausiblePower);
    let Outcome::Reading(r, _) = p.handle(&t("power_consumed"), b"0.200", at(3)) else { panic!("a reading") };
    assert_eq!(r.grid_power, Some(W(-900)));
}
