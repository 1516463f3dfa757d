//! The MQTT client: one task owns rumqttc's event loop, polls it continuously, re-subscribes
//! on every ConnAck (rumqttc does not restore subscriptions after a reconnect), reconnects with
//! capped exponential backoff, and turns messages into [`MeterEvent`]s.

use std::sync::Arc;
use std::time::Duration;

use peerwatt_core::Clock;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, MeterConfig};
use crate::interval::{Accountant, History, IntervalTotals};
use crate::pipeline::{Outcome, Pipeline};
use crate::reading::Reject;

/// Largest MQTT packet accepted from the broker. Larger than any payload limit, so an
/// oversized payload reaches the pipeline and is refused *by name* rather than dropping the
/// connection.
const MAX_PACKET: usize = 4 * 1024 * 1024;

/// The broker connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Connecting for the first time.
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// Down; the next attempt comes after `retry_in`.
    Down {
        /// What went wrong.
        error: String,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
}

/// Everything the meter client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterEvent {
    /// The connection changed state.
    Connection(Connection),
    /// A message arrived and was decoded, or refused.
    Message {
        /// Its topic.
        topic: String,
        /// The format of the meter it belongs to (as recognised, for `auto`).
        format: Option<crate::decode::Format>,
        /// What became of it.
        outcome: Outcome,
    },
    /// The meter went quiet for longer than allowed.
    Stale(Reject),
    /// A settlement interval closed.
    Interval(IntervalTotals),
    /// The running totals of the current interval, after a grid reading.
    Running(IntervalTotals),
}

/// A running meter client.
#[derive(Debug)]
pub struct MeterHandle {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    connection: watch::Receiver<Connection>,
}

impl MeterHandle {
    /// The current connection state.
    pub fn connection(&self) -> Connection {
        self.connection.borrow().clone()
    }

    /// Stops the client and waits for it to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The broker connection of `cfg` (host, login, TLS, keep-alive), as client `id` (default:
/// `cfg`'s client id, else `peerwatt-<pid>`): the meter's, and any other client of the node on
/// the same broker (Home Assistant's), which must take another id.
pub fn mqtt_options(cfg: &MeterConfig, id: Option<String>) -> Result<MqttOptions, ConfigError> {
    let id = id.or_else(|| cfg.client_id.clone()).unwrap_or_else(|| format!("peerwatt-{}", std::process::id()));
    let mut o = MqttOptions::new(id, cfg.host.clone(), cfg.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)));
    // Incoming and outgoing: a node's Home Assistant state grows with the day's trades.
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    o.set_clean_session(true);
    let password = std::env::var("PEERWATT_MQTT_PASSWORD").ok().or_else(|| cfg.password.clone());
    if let Some(user) = &cfg.username {
        o.set_credentials(user.clone(), password.unwrap_or_default());
    }
    if cfg.tls {
        // rustls needs a process-wide crypto provider; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = match &cfg.ca_file {
            Some(path) => TlsConfiguration::Simple {
                ca: std::fs::read(path).map_err(|source| ConfigError::CaFile { path: path.clone(), source })?,
                alpn: None,
                client_auth: None,
            },
            None => TlsConfiguration::default(),
        };
        o.set_transport(Transport::tls_with_config(tls));
    }
    Ok(o)
}

/// Starts the client. Events go to `events`; when it is full, events are dropped (and
/// logged) rather than stalling the MQTT connection.
pub fn spawn(
    cfg: &MeterConfig,
    pipeline: Pipeline,
    accountant: Accountant,
    history: History,
    clock: Arc<dyn Clock>,
    events: mpsc::Sender<MeterEvent>,
) -> Result<MeterHandle, ConfigError> {
    let (client, eventloop) = AsyncClient::new(mqtt_options(cfg, None)?, 64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (conn_tx, conn_rx) = watch::channel(Connection::Connecting);
    let backoff = Backoff::new(
        Duration::from_millis(cfg.reconnect_min_ms.max(1)),
        Duration::from_millis(cfg.reconnect_max_ms.max(1)),
    );
    let worker = Worker {
        client,
        eventloop,
        pipeline,
        accountant,
        history,
        clock,
        events,
        connection: conn_tx,
        backoff,
        pending_subacks: 0,
    };
    let task = tokio::spawn(worker.run(shutdown_rx));
    Ok(MeterHandle { shutdown: shutdown_tx, task, connection: conn_rx })
}

/// Capped exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starting at `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max: max.max(min), next: min }
    }
    /// Back to `min` (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
    /// The next delay.
    pub fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

struct Worker {
    client: AsyncClient,
    eventloop: EventLoop,
    pipeline: Pipeline,
    accountant: Accountant,
    history: History,
    clock: Arc<dyn Clock>,
    events: mpsc::Sender<MeterEvent>,
    connection: watch::Sender<Connection>,
    backoff: Backoff,
    /// Subscriptions sent since the last ConnAck and not yet acknowledged.
    pending_subacks: usize,
}

impl Worker {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => self.on_tick(),
                event = self.eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => self.on_connected(),
                    Ok(Event::Incoming(Packet::SubAck(_))) => self.on_subscribed(),
                    Ok(Event::Incoming(Packet::Publish(p))) => self.on_message(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(e) => {
                        let retry_in = self.backoff.step();
                        tracing::warn!(error = %e, ?retry_in, "MQTT connection down");
                        self.set_connection(Connection::Down { error: e.to_string(), retry_in });
                        tokio::select! {
                            _ = shutdown.changed() => break,
                            _ = tokio::time::sleep(retry_in) => {}
                        }
                    }
                },
            }
        }
        let _ = self.client.try_disconnect();
    }

    /// Subscribes again on every ConnAck: a clean session (and a restarted broker) forgets them.
    fn on_connected(&mut self) {
        self.backoff.reset();
        self.pending_subacks = 0;
        for topic in self.pipeline.topics() {
            match self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                Ok(()) => self.pending_subacks += 1,
                Err(e) => tracing::error!(%topic, error = %e, "cannot subscribe"),
            }
        }
        tracing::info!(topics = ?self.pipeline.topics(), "MQTT connected; subscribing");
    }

    /// Reports `Connected` once every subscription is acknowledged: only then do messages flow.
    fn on_subscribed(&mut self) {
        self.pending_subacks = self.pending_subacks.saturating_sub(1);
        if self.pending_subacks == 0 {
            tracing::info!("MQTT subscriptions active");
            self.set_connection(Connection::Connected);
        }
    }

    fn on_message(&mut self, topic: &str, payload: &[u8]) {
        let outcome = self.pipeline.handle(topic, payload, self.clock.now());
        let grid_reading = matches!(&outcome, Outcome::Reading(r, _) if r.role == crate::reading::Role::Grid);
        if let Outcome::Reading(reading, _) = &outcome {
            self.accountant.observe(reading);
        }
        let format = self.pipeline.format_of(topic);
        self.emit(MeterEvent::Message { topic: topic.to_owned(), format, outcome });
        self.close_intervals();
        if let Some(running) = self.accountant.running().filter(|_| grid_reading) {
            self.emit(MeterEvent::Running(running));
        }
    }

    fn on_tick(&mut self) {
        let now = self.clock.now();
        if let Some(stale) = self.pipeline.check_stale(now) {
            self.emit(MeterEvent::Stale(stale));
        }
        self.close_intervals();
    }

    fn close_intervals(&mut self) {
        let closed = self.accountant.close(self.clock.now());
        if closed.is_empty() {
            return;
        }
        if let Err(e) = self.history.extend(&closed) {
            tracing::error!(error = %e, "cannot save the meter history");
        }
        for totals in closed {
            self.emit(MeterEvent::Interval(totals));
        }
    }

    fn set_connection(&mut self, state: Connection) {
        let _ = self.connection.send(state.clone());
        self.emit(MeterEvent::Connection(state));
    }

    fn emit(&self, event: MeterEvent) {
        if let Err(mpsc::error::TrySendError::Full(e)) = self.events.try_send(event) {
            tracing::warn!(event = ?e, "meter event dropped: the consumer is too slow");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let steps: Vec<_> = (0..5).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, vec![100, 200, 400, 700, 700]);
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(100));
    }
}
