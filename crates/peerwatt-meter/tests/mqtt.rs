//! The meter client against a real mosquitto broker started by the test: every format's
//! payloads published by a real MQTT client, exact readings and interval totals, a broker
//! restart, and a table of hostile payloads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use peerwatt_core::{IntervalId, ManualClock, Timestamp, W, Wh};
use peerwatt_meter::{
    Connection, Format, History, MeterConfig, MeterEvent, MeterHandle, Outcome, Reading, Reason, RoleConfig,
};
use peerwatt_testkit::Mosquitto;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::mpsc;

/// 2024-06-01T12:00:00Z, the start of a 15-minute interval.
const T0: u64 = 1_717_243_200_000;

fn role(format: Format, topics: &[&str]) -> Option<RoleConfig> {
    Some(RoleConfig::new(format, topics.iter().map(|t| t.to_string()).collect()))
}

fn config(port: u16) -> MeterConfig {
    let mut cfg: MeterConfig = toml::from_str("").unwrap();
    cfg.port = port;
    cfg.client_id = Some(format!("peerwatt-test-{port}-{}", std::process::id()));
    cfg.reconnect_min_ms = 50;
    cfg.reconnect_max_ms = 400;
    cfg.max_power_w = 20_000;
    cfg
}

struct Meter {
    handle: MeterHandle,
    events: mpsc::Receiver<MeterEvent>,
    clock: ManualClock,
    /// Closed intervals that arrived while the test waited for something else.
    closed: std::collections::VecDeque<peerwatt_meter::IntervalTotals>,
}

impl Meter {
    async fn start(cfg: MeterConfig) -> Meter {
        let clock = ManualClock::new(Timestamp(T0));
        let (tx, events) = mpsc::channel(10_000);
        let handle = peerwatt_meter::spawn(
            &cfg,
            cfg.pipeline().unwrap(),
            cfg.accountant().unwrap(),
            History::in_memory(100),
            Arc::new(clock.clone()),
            tx,
        )
        .unwrap();
        let mut m = Meter { handle, events, clock, closed: Default::default() };
        m.wait_connection(|c| *c == Connection::Connected).await;
        m
    }

    /// The next event for which `pick` returns something; other events are skipped.
    async fn next<T>(&mut self, mut pick: impl FnMut(MeterEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("timed out waiting for a meter event");
            let event = event.expect("meter client ended");
            if std::env::var_os("PEERWATT_TEST_TRACE").is_some() {
                eprintln!("event: {event:?}");
            }
            if let MeterEvent::Interval(t) = &event {
                self.closed.push_back(*t);
            }
            if let Some(t) = pick(event) {
                return t;
            }
        }
    }

    async fn wait_connection(&mut self, want: impl Fn(&Connection) -> bool) -> Connection {
        self.next(|e| match e {
            MeterEvent::Connection(c) if want(&c) => Some(c),
            _ => None,
        })
        .await
    }

    async fn outcome(&mut self, topic: &str) -> Outcome {
        self.next(|e| match e {
            MeterEvent::Message { topic: t, outcome, .. } if t == topic => Some(outcome),
            _ => None,
        })
        .await
    }

    async fn reading(&mut self, topic: &str) -> Reading {
        match self.outcome(topic).await {
            Outcome::Reading(r, _) => r,
            other => panic!("expected a reading on {topic}, got {other:?}"),
        }
    }

    /// The oldest closed interval not yet taken (waiting for one if none has arrived).
    async fn interval(&mut self) -> peerwatt_meter::IntervalTotals {
        if self.closed.is_empty() {
            self.next(|e| matches!(e, MeterEvent::Interval(_)).then_some(())).await;
        }
        self.closed.pop_front().expect("an interval closed")
    }
}

/// A real MQTT client publishing like a meter firmware.
struct Publisher {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn connect(port: u16) -> Publisher {
        let mut o = MqttOptions::new(format!("fake-meter-{port}-{}", rand_suffix()), "127.0.0.1", port);
        o.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let task = tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Publisher { client, task }
    }

    async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.unwrap();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_decodes_over_a_real_broker() {
    let broker = Mosquitto::start().unwrap();
    let publisher = Publisher::connect(broker.port());

    // Tasmota SML on the grid meter, OpenDTU on the PV inverter, zigbee2mqtt on a battery plug.
    let mut cfg = config(broker.port());
    cfg.grid = role(Format::Tasmota, &["tele/meter/SENSOR"]);
    cfg.pv = role(Format::Opendtu, &["solar/116491234567/0/#"]);
    cfg.battery = role(Format::Zigbee2mqtt, &["zigbee2mqtt/battery"]);
    let mut m = Meter::start(cfg).await;
    publisher.publish("tele/meter/SENSOR", TASMOTA_SML).await;
    let r = m.reading("tele/meter/SENSOR").await;
    assert_eq!(
        (r.grid_power, r.import_total, r.export_total),
        (Some(W(-894)), Some(Wh(34_507_476)), Some(Wh(14_737_142)))
    );
    publisher.publish("solar/116491234567/0/power", "612.4").await;
    assert_eq!(m.reading("solar/116491234567/0/power").await.pv_power, Some(W(612)));
    publisher.publish("solar/116491234567/0/yieldtotal", "1532.118").await;
    assert_eq!(m.reading("solar/116491234567/0/yieldtotal").await.pv_yield_total, Some(Wh(1_532_118)));
    publisher.publish("zigbee2mqtt/battery", ZIGBEE2MQTT).await;
    assert_eq!(m.reading("zigbee2mqtt/battery").await.battery_power, Some(W(48)));
    m.handle.shutdown().await;

    // Shelly Pro 3EM: full status, then a NotifyStatus delta.
    let mut cfg = config(broker.port());
    cfg.grid = role(Format::ShellyGen2, &["shellypro3em-a/status/+", "shellypro3em-a/events/rpc"]);
    let mut m = Meter::start(cfg).await;
    publisher.publish("shellypro3em-a/status/emdata:0", SHELLY_EMDATA).await;
    let r = m.reading("shellypro3em-a/status/emdata:0").await;
    assert_eq!((r.import_total, r.export_total), (Some(Wh(3_476)), Some(Wh(830))));
    publisher.publish("shellypro3em-a/status/em:0", SHELLY_EM).await;
    assert_eq!(m.reading("shellypro3em-a/status/em:0").await.grid_power, Some(W(-914)));
    let delta =
        r#"{"src":"shellypro3em-a","method":"NotifyStatus","params":{"ts":1,"em:0":{"total_act_power":-512.3}}}"#;
    publisher.publish("shellypro3em-a/events/rpc", delta).await;
    assert_eq!(m.reading("shellypro3em-a/events/rpc").await.grid_power, Some(W(-512)));
    m.handle.shutdown().await;

    // DSMR-reader, recognised by format = "auto".
    let mut cfg = config(broker.port());
    cfg.grid = role(Format::Auto, &["dsmr/json"]);
    let mut m = Meter::start(cfg).await;
    publisher.publish("dsmr/json", DSMR_READER).await;
    let r = m.reading("dsmr/json").await;
    assert_eq!((r.grid_power, r.import_total, r.export_total), (Some(W(412)), Some(Wh(3_580_245)), Some(Wh(35_801))));
    m.handle.shutdown().await;

    // ESPHome DSMR: one number per topic; import appears once both tariffs are known.
    let mut cfg = config(broker.port());
    cfg.grid = role(Format::Esphome, &["dsmr-esp/sensor/+/state"]);
    let mut m = Meter::start(cfg).await;
    publisher.publish("dsmr-esp/sensor/energy_delivered_tariff1/state", "1234.567").await;
    assert_eq!(m.outcome("dsmr-esp/sensor/energy_delivered_tariff1/state").await, Outcome::Pending);
    publisher.publish("dsmr-esp/sensor/energy_delivered_tariff2/state", "2345.678").await;
    assert_eq!(m.reading("dsmr-esp/sensor/energy_delivered_tariff2/state").await.import_total, Some(Wh(3_580_245)));
    m.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_totals_from_counters_and_from_power_are_exact() {
    let broker = Mosquitto::start().unwrap();
    let publisher = Publisher::connect(broker.port());

    // Counters every 30 s from 12:00:00 to 12:15:00: +10 Wh import, +3 Wh export each time.
    // The 12:15:00 reading closes the 12:00 interval.
    let mut cfg = config(broker.port());
    cfg.grid = role(Format::Tasmota, &["tele/meter/SENSOR"]);
    let mut m = Meter::start(cfg).await;
    for k in 0..=30u64 {
        m.clock.set(Timestamp(T0 + k * 30_000));
        let payload = format!(
            r#"{{"Time":"t","SML":{{"Total_in":{}.{:03},"Total_out":{}.{:03},"Power_curr":1200}}}}"#,
            1000 + k * 10 / 1000,
            k * 10 % 1000,
            500 + k * 3 / 1000,
            k * 3 % 1000
        );
        publisher.publish("tele/meter/SENSOR", payload).await;
        m.reading("tele/meter/SENSOR").await;
    }
    let t = m.interval().await;
    assert_eq!((t.interval, t.imported, t.exported, t.complete), (IntervalId(T0 / 900_000), Wh(300), Wh(90), true));
    m.handle.shutdown().await;

    // Power only: 1,200 W import for 10 minutes, then 2,400 W export, every 10 s until 12:15:00.
    let mut cfg = config(broker.port());
    cfg.grid = role(Format::Json, &["custom/meter"]);
    cfg.grid.as_mut().unwrap().json =
        Some(peerwatt_meter::decode::GenericJsonConfig { power: Some("/p".into()), ..Default::default() });
    let mut m = Meter::start(cfg).await;
    for k in 0..=90u64 {
        m.clock.set(Timestamp(T0 + k * 10_000));
        let w = if k < 60 { 1_200 } else { -2_400 };
        publisher.publish("custom/meter", format!(r#"{{"p":{w}}}"#)).await;
        m.reading("custom/meter").await;
    }
    let t = m.interval().await;
    assert_eq!((t.imported, t.exported, t.complete, t.source), (Wh(200), Wh(200), true, peerwatt_meter::Source::Power));
    m.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_and_resubscribes_after_a_broker_restart() {
    let mut broker = Mosquitto::start().unwrap();
    let mut cfg = config(broker.port());
    cfg.pv = role(Format::Opendtu, &["solar/1/0/power"]);
    let mut m = Meter::start(cfg).await;
    let mut received = Vec::new();

    let publisher = Publisher::connect(broker.port());
    for w in 1..=5 {
        publisher.publish("solar/1/0/power", w.to_string()).await;
        received.push(m.reading("solar/1/0/power").await.pv_power.unwrap().0);
    }
    drop(publisher);

    broker.stop();
    let down = m.wait_connection(|c| matches!(c, Connection::Down { .. })).await;
    assert!(matches!(down, Connection::Down { .. }));
    broker.restart().unwrap();
    // Connected is reported only once the subscription is acknowledged again.
    m.wait_connection(|c| *c == Connection::Connected).await;

    // The restarted broker knows no subscriptions: these arrive only because the client re-subscribed.
    let publisher = Publisher::connect(broker.port());
    for w in 6..=10 {
        publisher.publish("solar/1/0/power", w.to_string()).await;
        received.push(m.reading("solar/1/0/power").await.pv_power.unwrap().0);
    }
    assert_eq!(received, (1..=10).collect::<Vec<i64>>(), "nothing published while the broker was up was lost");
    m.handle.shutdown().await;
}

/// A payload of `depth` nested arrays.
fn nested(depth: usize) -> String {
    format!("{{\"SML\":{}1{}}}", "[".repeat(depth), "]".repeat(depth))
}

fn sml_with(field: &str, value: &str) -> String {
    let mut fields = [("Total_in", "2000.000"), ("Total_out", "100.000"), ("Power_curr", "50")];
    for f in fields.iter_mut() {
        if f.0 == field {
            f.1 = value;
        }
    }
    format!(
        r#"{{"Time":"t","SML":{{"Total_in":{},"Total_out":{},"Power_curr":{}}}}}"#,
        fields[0].1, fields[1].1, fields[2].1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_are_refused_by_name_and_the_client_keeps_going() {
    let broker = Mosquitto::start().unwrap();
    let publisher = Publisher::connect(broker.port());
    let mut cfg = config(broker.port());
    cfg.grid = role(Format::Tasmota, &["tele/meter/SENSOR"]);
    cfg.pv = role(Format::Opendtu, &["solar/9/#"]);
    cfg.battery = role(Format::Zigbee2mqtt, &["zigbee2mqtt/battery"]);
    let mut m = Meter::start(cfg).await;

    // A good reading first, so counter checks have a baseline.
    publisher.publish("tele/meter/SENSOR", sml_with("", "")).await;
    m.reading("tele/meter/SENSOR").await;

    let grid = "tele/meter/SENSOR";
    let pv = "solar/9/0/power";
    let bat = "zigbee2mqtt/battery";
    let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
        (grid, vec![0xff, 0xfe, 0x00, 0x80, 0x13], Reason::Malformed),
        (grid, b"{\"SML\":".to_vec(), Reason::Malformed),
        (grid, b"".to_vec(), Reason::Malformed),
        (grid, b"null".to_vec(), Reason::MissingField),
        (grid, b"[1,2,3]".to_vec(), Reason::MissingField),
        (grid, nested(200).into_bytes(), Reason::TooDeep),
        (grid, vec![b' '; 1024 * 1024], Reason::Oversized),
        (grid, vec![b'x'; 17 * 1024], Reason::Oversized),
        (grid, sml_with("Total_in", r#""abc""#).into_bytes(), Reason::NonNumeric),
        (grid, sml_with("Power_curr", "true").into_bytes(), Reason::WrongType),
        (grid, sml_with("Power_curr", "{}").into_bytes(), Reason::WrongType),
        (grid, sml_with("Power_curr", "[]").into_bytes(), Reason::WrongType),
        (grid, br#"{"SML":{}}"#.to_vec(), Reason::MissingField),
        (grid, br#"{"SML":5}"#.to_vec(), Reason::WrongType),
        (grid, sml_with("Total_in", "1e999").into_bytes(), Reason::OutOfRange),
        (grid, sml_with("Total_in", &"9".repeat(41)).into_bytes(), Reason::OutOfRange),
        (grid, sml_with("Total_in", r#""NaN""#).into_bytes(), Reason::NotFinite),
        (grid, sml_with("Total_out", r#""-Infinity""#).into_bytes(), Reason::NotFinite),
        (grid, sml_with("Total_in", "-5").into_bytes(), Reason::NegativeCounter),
        (grid, sml_with("Power_curr", "999999").into_bytes(), Reason::ImplausiblePower),
        (grid, sml_with("Total_in", "3000.000").into_bytes(), Reason::ImplausibleJump),
        (pv, b"nan".to_vec(), Reason::NotFinite),
        (pv, b"on".to_vec(), Reason::NonNumeric),
        (pv, b"".to_vec(), Reason::NonNumeric),
        (pv, b"1e400".to_vec(), Reason::OutOfRange),
        (pv, vec![0xc3, 0x28], Reason::Malformed),
        ("solar/9/1/power", b"300".to_vec(), Reason::PartialQuantity), // a DC input, not the AC output
        (bat, br#"{"state":"ON"}"#.to_vec(), Reason::MissingField),
        (bat, br#"{"power":"12,5"}"#.to_vec(), Reason::NonNumeric),
        (bat, br#"{"power":null,"energy":null}"#.to_vec(), Reason::MissingField),
    ];
    assert!(cases.len() >= 25);
    for (topic, payload, want) in &cases {
        publisher.publish(topic, payload.clone()).await;
        match m.outcome(topic).await {
            Outcome::Rejected(r) => {
                assert_eq!(r.reason, *want, "{topic}: {}", String::from_utf8_lossy(&payload[..payload.len().min(60)]))
            }
            other => panic!("{topic}: expected {want}, got {other:?}"),
        }
    }

    // A counter going backwards is accepted into a new epoch, with a counter_reset notice.
    publisher.publish(grid, sml_with("Total_in", "0.010")).await;
    match m.outcome(grid).await {
        Outcome::Reading(r, Some(notice)) => {
            assert_eq!((notice.reason, r.counter_epoch, r.import_total), (Reason::CounterReset, 1, Some(Wh(10))));
        }
        other => panic!("expected a reading with a counter reset, got {other:?}"),
    }

    // And the client still decodes good data afterwards.
    publisher.publish(pv, "777").await;
    assert_eq!(m.reading(pv).await.pv_power, Some(W(777)));
    assert_eq!(m.handle.connection(), Connection::Connected, "no hostile payload dropped the connection");
    m.handle.shutdown().await;
}

/// Starts a client with `cfg` that must fail to connect; returns its first connection error.
async fn first_connection_error(cfg: &MeterConfig) -> String {
    let (tx, mut events) = mpsc::channel(100);
    let clock = Arc::new(ManualClock::default());
    let handle = peerwatt_meter::spawn(
        cfg,
        cfg.pipeline().unwrap(),
        cfg.accountant().unwrap(),
        History::in_memory(1),
        clock,
        tx,
    )
    .unwrap();
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap() {
            MeterEvent::Connection(Connection::Down { error, .. }) => break error,
            MeterEvent::Connection(Connection::Connected) => panic!("this configuration must not connect"),
            _ => {}
        }
    };
    handle.shutdown().await;
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_login_is_used_and_a_wrong_password_is_reported() {
    use peerwatt_testkit::BrokerOptions;
    let broker =
        Mosquitto::start_with(BrokerOptions { login: Some(("meter".into(), "s3cret".into())), tls: false }).unwrap();

    let mut cfg = config(broker.port());
    cfg.pv = role(Format::Opendtu, &["solar/1/0/power"]);
    cfg.username = Some("meter".into());
    cfg.password = Some("wrong".into());
    let down = first_connection_error(&cfg).await;
    assert!(down.contains("NotAuthorized") || down.contains("BadUserNamePassword"), "{down}");

    cfg.password = Some("s3cret".into());
    let mut m = Meter::start(cfg).await;
    let mut o = MqttOptions::new("fake-meter-login", "127.0.0.1", broker.port());
    o.set_credentials("meter", "s3cret");
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client.publish("solar/1/0/power", QoS::AtLeastOnce, false, "321").await.unwrap();
    assert_eq!(m.reading("solar/1/0/power").await.pv_power, Some(W(321)));
    pump.abort();
    m.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connects_with_the_brokers_ca_and_refuses_an_unknown_one() {
    use peerwatt_testkit::BrokerOptions;
    let broker = Mosquitto::start_with(BrokerOptions { login: None, tls: true }).unwrap();

    let mut cfg = config(broker.port());
    cfg.host = "localhost".into();
    cfg.tls = true;
    cfg.pv = role(Format::Opendtu, &["solar/1/0/power"]);

    // Without the broker's CA, the system roots do not trust its certificate.
    let down = first_connection_error(&cfg).await;
    assert!(
        down.to_lowercase().contains("tls") || down.contains("certificate") || down.contains("UnknownIssuer"),
        "{down}"
    );

    // With it, the connection works and messages flow (the test meter publishes over TLS too).
    cfg.ca_file = Some(broker.ca_file());
    let mut m = Meter::start(cfg).await;
    let mut o = MqttOptions::new("fake-meter-tls", "localhost", broker.port());
    o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
        ca: std::fs::read(broker.ca_file()).unwrap(),
        alpn: None,
        client_auth: None,
    }));
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client.publish("solar/1/0/power", QoS::AtLeastOnce, false, "654").await.unwrap();
    assert_eq!(m.reading("solar/1/0/power").await.pv_power, Some(W(654)));
    pump.abort();
    m.handle.shutdown().await;
}

/// One meter reading in a format's own words: the messages for import counter `wh` (Wh),
/// export counter `wh / 5`, and power 1,500 W.
type Render = fn(u64) -> Vec<(&'static str, String)>;

fn kwh(wh: u64) -> String {
    format!("{}.{:03}", wh / 1000, wh % 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grid_format_gives_exact_interval_totals() {
    let broker = Mosquitto::start().unwrap();
    let publisher = Publisher::connect(broker.port());
    let formats: Vec<(Format, Vec<&str>, Render, bool)> = vec![
        (
            Format::Tasmota,
            vec!["tele/meter/SENSOR"],
            |wh| {
                vec![(
                    "tele/meter/SENSOR",
                    format!(
                        r#"{{"Time":"t","SML":{{"Total_in":{},"Total_out":{},"Power_curr":1500}}}}"#,
                        kwh(wh),
                        kwh(wh / 5)
                    ),
                )]
            },
            true,
        ),
        (
            Format::ShellyGen2,
            vec!["sh/status/+"],
            |wh| {
                vec![
                    ("sh/status/em:0", r#"{"id":0,"total_act_power":1500.0}"#.to_owned()),
                    ("sh/status/emdata:0", format!(r#"{{"id":0,"total_act":{wh}.0,"total_act_ret":{}.0}}"#, wh / 5)),
                ]
            },
            true,
        ),
        (
            Format::DsmrReader,
            vec!["dsmr/json"],
            |wh| {
                vec![(
                    "dsmr/json",
                    format!(
                        r#"{{"electricity_delivered_1":"{}","electricity_delivered_2":"0.000","electricity_returned_1":"{}","electricity_returned_2":"0.000","electricity_currently_delivered":1.5,"electricity_currently_returned":0}}"#,
                        kwh(wh),
                        kwh(wh / 5)
                    ),
                )]
            },
            true,
        ),
        (
            Format::Esphome,
            vec!["esp/sensor/+/state"],
            |wh| {
                vec![
                    ("esp/sensor/energy_delivered_tariff1/state", kwh(wh)),
                    ("esp/sensor/energy_delivered_tariff2/state", "0.000".to_owned()),
                    ("esp/sensor/energy_returned_tariff1/state", kwh(wh / 5)),
                    ("esp/sensor/energy_returned_tariff2/state", "0.000".to_owned()),
                ]
            },
            true,
        ),
        (
            Format::Zigbee2mqtt,
            vec!["zigbee2mqtt/meter"],
            |wh| vec![("zigbee2mqtt/meter", format!(r#"{{"power":1500,"energy":{},"linkquality":90}}"#, kwh(wh)))],
            false,
        ),
    ];
    for (format, topics, render, has_export) in formats {
        let mut cfg = config(broker.port());
        cfg.grid = role(format, &topics);
        let mut m = Meter::start(cfg).await;
        // One reading a minute from 12:00 to 12:15; the import counter rises 25 Wh a minute.
        for minute in 0..=15u64 {
            m.clock.set(Timestamp(T0 + minute * 60_000));
            let wh = 100_000 + 25 * minute; // 1.5 kW; multiples of 5, so export = wh / 5 is exact
            for (topic, payload) in render(wh) {
                publisher.publish(topic, payload).await;
                m.outcome(topic).await;
            }
        }
        let t = m.interval().await;
        let want_export = if has_export { 75 } else { 0 }; // a fifth of the import
        assert_eq!((t.imported, t.exported, t.complete), (Wh(375), Wh(want_export), true), "{format}");
        m.handle.shutdown().await;
    }
}
