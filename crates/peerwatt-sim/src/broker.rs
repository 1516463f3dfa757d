//! The embedded MQTT broker (rumqttd) the simulated meters publish to and the nodes read from.

use std::net::SocketAddr;

use thiserror::Error;

/// The broker could not start.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// Its configuration was refused.
    #[error("broker configuration: {0}")]
    Config(String),
    /// No port or no thread.
    #[error("broker: {0}")]
    Io(#[from] std::io::Error),
}

/// A running embedded broker on loopback. rumqttd has no way to stop a broker, so it runs
/// until the process ends (the demo is one process).
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// Where it listens (MQTT 3.1.1).
    pub addr: SocketAddr,
}

/// Starts rumqttd on a free loopback port, for up to `max_connections` clients.
pub fn start(max_connections: usize) -> Result<EmbeddedBroker, BrokerError> {
    let port = peerwatt_net::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Segments hold the messages of one subscription; a simulated day of one meter is well
    // under a megabyte.
    let text = format!(
        r#"id = 0
[router]
id = 0
max_connections = {max}
max_outgoing_packet_count = 1000
max_segment_size = 1048576
max_segment_count = 10

[v4.1]
name = "peerwatt-sim"
listen = "{addr}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 16384
max_inflight_count = 1000
dynamic_filters = true
"#,
        max = max_connections + 16,
    );
    let config: rumqttd::Config = toml::from_str(&text).map_err(|e| BrokerError::Config(e.to_string()))?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "the embedded MQTT broker stopped");
        }
    })?;
    wait_for(addr)?;
    Ok(EmbeddedBroker { addr })
}

/// Waits (up to 5 s) until the broker accepts connections.
fn wait_for(addr: SocketAddr) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}
