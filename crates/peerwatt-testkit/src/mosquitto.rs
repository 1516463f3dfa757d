//! A real mosquitto broker on a free loopback port, killed on drop.

use std::net::TcpStream;
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
    options: BrokerOptions,
}

/// How the test broker is set up.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Require this user name and password (anonymous clients are refused).
    pub login: Option<(String, String)>,
    /// Serve TLS with a certificate for `localhost`, signed by a throwaway CA (see
    /// [`Mosquitto::ca_file`]).
    pub tls: bool,
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

impl Mosquitto {
    /// Starts a plain, anonymous mosquitto on a free port.
    pub fn start() -> std::io::Result<Mosquitto> {
        Mosquitto::start_with(BrokerOptions::default())
    }

    /// Starts mosquitto on a free port with `options`.
    pub fn start_with(options: BrokerOptions) -> std::io::Result<Mosquitto> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("peerwatt-mosquitto-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut m = Mosquitto { child: None, port: peerwatt_net::free_port()?, dir, options };
        if let Some((user, password)) = &m.options.login {
            let passwd = m.dir.join("passwd");
            run(Command::new("mosquitto_passwd").arg("-b").arg("-c").arg(passwd).arg(user).arg(password))?;
        }
        if m.options.tls {
            make_certificates(&m.dir)?;
        }
        m.launch()?;
        Ok(m)
    }

    /// The PEM file of the CA that signed the TLS broker's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
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
        let mut text =
            format!("listener {} 127.0.0.1\npersistence false\nlog_dest stderr\nlog_type error\n", self.port);
        match &self.options.login {
            Some(_) => {
                text.push_str(&format!("allow_anonymous false\npassword_file {}\n", self.dir.join("passwd").display()))
            }
            None => text.push_str("allow_anonymous true\n"),
        }
        if self.options.tls {
            let d = self.dir.display();
            text.push_str(&format!("cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"));
        }
        std::fs::write(&conf, text)?;
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

fn run(cmd: &mut Command) -> std::io::Result<()> {
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr))))
    }
}

/// A throwaway CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) -> std::io::Result<()> {
    let openssl = || {
        let mut c = Command::new("openssl");
        c.current_dir(dir);
        c
    };
    run(openssl()
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=peerwatt test CA"]))?;
    run(openssl().args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]))?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    run(openssl()
        .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"])
        .args(["-out", "server.pem", "-days", "2", "-extfile", "server.ext"]))?;
    // mosquitto started as root drops to its own user before it loads the key: a throwaway
    // test key may be readable by everyone.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o644))
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
