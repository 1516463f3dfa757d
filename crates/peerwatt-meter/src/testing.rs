//! Test support (feature `test-utils`): a real mosquitto broker on a free loopback port.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A mosquitto process listening on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

/// The mosquitto binary: on `PATH`, or where Debian installs it.
pub fn mosquitto_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("mosquitto")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/mosquitto"), PathBuf::from("/usr/local/sbin/mosquitto")])
        .find(|p| p.is_file())
}

/// A port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Mosquitto {
    /// Starts mosquitto on a free port.
    pub fn start() -> std::io::Result<Mosquitto> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "peerwatt-mosquitto-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)?;
        let mut m = Mosquitto { child: None, port: free_port()?, dir };
        m.launch()?;
        Ok(m)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn launch(&mut self) -> std::io::Result<()> {
        let binary = mosquitto_binary().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "mosquitto is not installed: run scripts/test (it installs it) or `apt-get install mosquitto`",
            )
        })?;
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\n",
                self.port
            ),
        )?;
        let child = Command::new(binary).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10))
    }

    /// Kills the broker (SIGKILL: clients see the connection drop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port (with no memory of subscriptions).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.launch()
    }

    /// The broker's scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn wait_for_port(port: u16, limit: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("mosquitto did not listen on port {port}")))
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
