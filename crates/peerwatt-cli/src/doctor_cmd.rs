//! `peerwatt doctor`: checks a node's setup and says what to fix, one line per check. Exit 0
//! when nothing failed (warnings and notes allowed), 1 when a check failed, 2 when it could
//! not even read the node's configuration.

use std::fmt::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use peerwatt_core::{Clock, NodeKey, SystemClock, Timestamp};
use peerwatt_node::community_file::{load_certificate, load_community};
use peerwatt_node::{NodeConfig, Status};

use crate::DataDirArg;
use crate::failure::{EXIT_INVALID, Failure, Hint};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Good.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Broken: the node cannot work like this.
    Fail,
    /// Not checked here (said why).
    Note,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::Note => "note",
        }
    }
}

/// One line of the report.
struct Check {
    name: &'static str,
    outcome: Outcome,
    detail: String,
    fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check { name, outcome: Outcome::Ok, detail: detail.into(), fix: None }
}

fn bad(name: &'static str, outcome: Outcome, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name, outcome, detail: detail.into(), fix: Some(fix.into()) }
}

/// A certificate that expires sooner than this is a warning.
const EXPIRY_WARNING_MS: u64 = 30 * 86_400_000;
/// Less free disk than this fails; less than ten times it warns.
const DISK_FAIL_KB: u64 = 100 * 1024;

/// Runs every check on the node in `--data-dir`.
pub fn run(args: &DataDirArg) -> Result<ExitCode, Failure> {
    let dir = &args.data_dir;
    let cfg =
        NodeConfig::load(&dir.join("node.toml")).hint("is this a node's data directory? `peerwatt init` makes one")?;
    let now = SystemClock.now();
    let status = running_status(&cfg, now);
    let mut checks = vec![config_permissions(dir), key(&cfg)];
    checks.extend(membership(&cfg, now));
    checks.extend(meter(&cfg, status.as_ref(), now));
    checks.push(listen(&cfg, status.as_ref()));
    checks.extend(network(status.as_ref()));
    checks.push(disk(dir));
    checks.push(ledger(&cfg, status.is_some()));
    let mut out = String::new();
    for c in &checks {
        let _ = writeln!(out, "{} {}: {}", c.outcome.label(), c.name, c.detail);
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    let warned = checks.iter().filter(|c| c.outcome == Outcome::Warn).count();
    let _ = writeln!(
        out,
        "{}",
        match (failed, warned) {
            (0, 0) => "all good".to_owned(),
            (0, w) => format!("nothing broken; {w} to look at"),
            (f, _) => format!("{f} to fix"),
        }
    );
    crate::print_text(&out)?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INVALID) })
}

/// The node's status, if it is running (its status file fresh).
fn running_status(cfg: &NodeConfig, now: Timestamp) -> Option<Status> {
    Status::read(&cfg.status_file()).ok().filter(|s| s.is_live(now.0))
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

fn config_permissions(dir: &Path) -> Check {
    match mode_of(dir) {
        Some(mode) if mode & 0o002 != 0 => bad(
            "data directory",
            Outcome::Fail,
            format!("{} is writable by everyone ({mode:o})", dir.display()),
            format!("chmod 700 {}", dir.display()),
        ),
        Some(mode) if mode & 0o077 != 0 => bad(
            "data directory",
            Outcome::Warn,
            format!(
                "{} is readable by others ({mode:o}): its ledger and status say what the household trades",
                dir.display()
            ),
            format!("chmod 700 {}", dir.display()),
        ),
        Some(mode) => ok("data directory", format!("{} is private ({mode:o})", dir.display())),
        None => bad("data directory", Outcome::Fail, format!("cannot read {}", dir.display()), "check the path"),
    }
}

fn key(cfg: &NodeConfig) -> Check {
    let path = cfg.resolve(&cfg.node.key_file);
    if let Some(mode) = mode_of(&path).filter(|m| m & 0o077 != 0) {
        return bad(
            "key",
            Outcome::Fail,
            format!(
                "{} can be read by others ({mode:o}): whoever reads it can sign trades as this node",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        );
    }
    match NodeKey::load(&path) {
        Ok(key) => ok("key", format!("{} is private; public id {}", path.display(), key.public())),
        Err(e) => bad(
            "key",
            Outcome::Fail,
            format!("{}: {e}", path.display()),
            "`peerwatt init` makes a key; restore it from the backup",
        ),
    }
}

fn membership(cfg: &NodeConfig, now: Timestamp) -> Vec<Check> {
    let Some(section) = &cfg.community else {
        return vec![bad(
            "community",
            Outcome::Fail,
            "node.toml has no [community] section",
            "ask your community admin to admit this node's public id, then add [community] (docs/operations.md)",
        )];
    };
    let community = match load_community(&cfg.resolve(&section.file)) {
        Ok(c) => c,
        Err(e) => {
            return vec![bad(
                "community",
                Outcome::Fail,
                e.to_string(),
                "ask your community admin for the current community.toml",
            )];
        }
    };
    let mut checks = vec![ok(
        "community",
        format!(
            "\"{}\": {} rules versions, interval {} s",
            community.name,
            community.rules.len(),
            community.interval.secs()
        ),
    )];
    let cert = match load_certificate(&cfg.resolve(&section.certificate)) {
        Ok(c) => c,
        Err(e) => {
            checks.push(bad("certificate", Outcome::Fail, e.to_string(), "ask your community admin for a certificate"));
            return checks;
        }
    };
    let Ok(member) = NodeKey::load(&cfg.resolve(&cfg.node.key_file)).map(|k| k.public()) else {
        checks.push(Check {
            name: "certificate",
            outcome: Outcome::Note,
            detail: "checked against the key once the key is fixed".into(),
            fix: None,
        });
        return checks;
    };
    let checked = community.check_cert(&cert, &member, now).map_err(|e| e.to_string());
    let c = cert.body();
    checks.push(match checked {
        Err(why) => {
            bad("certificate", Outcome::Fail, why, "ask your community admin to admit this node's public id again")
        }
        Ok(()) if c.valid_until.0.saturating_sub(now.0) < EXPIRY_WARNING_MS => bad(
            "certificate",
            Outcome::Warn,
            format!("\"{}\" expires {} (in under 30 days)", c.name, c.valid_until),
            "ask your community admin for a new certificate before then",
        ),
        Ok(()) => ok("certificate", format!("\"{}\", zone {}, valid until {}", c.name, c.zone, c.valid_until)),
    });
    checks
}

fn meter(cfg: &NodeConfig, status: Option<&Status>, now: Timestamp) -> Vec<Check> {
    let Some(meter) = &cfg.meter else {
        return vec![bad(
            "meter",
            Outcome::Warn,
            "no [meter] section: the node cannot trade",
            "`peerwatt meter scan --host <broker>` finds your meter and prints the lines (docs/meters.md)",
        )];
    };
    let target = format!("{}:{}", meter.host, meter.port);
    let reachable = target
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(3)));
    let mut checks = vec![match reachable {
        Some(Ok(_)) => ok("broker", format!("{target} answers")),
        Some(Err(e)) => bad(
            "broker",
            Outcome::Fail,
            format!("{target}: {e}"),
            "is the MQTT broker running, and are [meter] host and port right?",
        ),
        None => bad(
            "broker",
            Outcome::Fail,
            format!("{target} is not an address"),
            "set [meter] host to the broker's name or address",
        ),
    }];
    checks.push(match status {
        None => Check {
            name: "meter",
            outcome: Outcome::Note,
            detail: "the node is not running: `peerwatt meter watch --config node.toml` shows the readings".into(),
            fix: None,
        },
        Some(s) => match s.last_reading_at {
            Some(at) if now.0.saturating_sub(at) < 120_000 => {
                ok("meter", format!("{}; last reading {} s ago", s.meter, now.0.saturating_sub(at) / 1000))
            }
            _ => bad(
                "meter",
                Outcome::Fail,
                format!("{}; no reading in the last two minutes", s.meter),
                "`peerwatt meter watch --config node.toml --detect` says what the broker carries",
            ),
        },
    });
    checks
}

fn listen(cfg: &NodeConfig, status: Option<&Status>) -> Check {
    if let Some(s) = status {
        return if s.listen.is_empty() {
            bad(
                "listen",
                Outcome::Fail,
                "the running node listens nowhere",
                "check [network] listen (docs/operations.md \"Network\")",
            )
        } else {
            ok("listen", s.listen.join(", "))
        };
    }
    for addr in &cfg.network.listen {
        if let Some(busy) = busy_port(addr) {
            return bad(
                "listen",
                Outcome::Fail,
                format!("{addr}: {busy}"),
                "change [network] listen (docs/operations.md \"Network\")",
            );
        }
    }
    ok("listen", format!("{} (free)", cfg.network.listen.join(", ")))
}

/// Why `addr`'s port cannot be listened on, if it cannot (the node's own probe).
fn busy_port(addr: &str) -> Option<String> {
    match addr.parse::<peerwatt_net::Multiaddr>() {
        Ok(parsed) => peerwatt_net::probe_port(&parsed).err(),
        Err(e) => Some(format!("not a multiaddr: {e}")),
    }
}

fn network(status: Option<&Status>) -> Vec<Check> {
    let Some(s) = status else {
        return vec![Check {
            name: "peers",
            outcome: Outcome::Note,
            detail: "the node is not running: start it (`peerwatt run`) and run doctor again for its peers".into(),
            fix: None,
        }];
    };
    let connected = s.peers.len();
    vec![
        if connected == 0 {
            bad(
                "peers",
                Outcome::Fail,
                "no peer connected",
                "check the bootstrap addresses (community file, [network] bootstrap) and the firewall (port 4001 TCP and UDP)",
            )
        } else {
            ok("peers", format!("{connected} connected; {} members known", s.members.len()))
        },
        Check {
            name: "reachability",
            outcome: Outcome::Note,
            detail: "not measured yet: AutoNAT, relays and hole punching come with issue 20's NAT traversal".into(),
            fix: None,
        },
    ]
}

fn disk(dir: &Path) -> Check {
    let out = std::process::Command::new("df").arg("-Pk").arg(dir).output();
    let free_kb = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|n| n.parse::<u64>().ok())
    });
    match free_kb {
        Some(kb) if kb < DISK_FAIL_KB => {
            bad("disk", Outcome::Fail, format!("{} MB free", kb / 1024), "free space: the ledger cannot grow")
        }
        Some(kb) if kb < 10 * DISK_FAIL_KB => {
            bad("disk", Outcome::Warn, format!("{} MB free", kb / 1024), "free space before the ledger fills it")
        }
        Some(kb) => ok("disk", format!("{} MB free", kb / 1024)),
        None => Check { name: "disk", outcome: Outcome::Note, detail: "`df` could not say".into(), fix: None },
    }
}

fn ledger(cfg: &NodeConfig, running: bool) -> Check {
    if running {
        return Check {
            name: "ledger",
            outcome: Outcome::Note,
            detail: "the node holds it: `peerwatt ledger verify --data-dir …` checks it through the node's API".into(),
            fix: None,
        };
    }
    let dir = cfg.resolve(&cfg.node.ledger_dir);
    match peerwatt_ledger::LedgerReader::open_dir(&dir)
        .map_err(|e| e.to_string())
        .and_then(|l| l.verify().map_err(|e| e.to_string()))
    {
        Ok(r) => ok("ledger", format!("verified: {} entries, {} signed heads", r.entries, r.heads)),
        Err(e) => bad(
            "ledger",
            Outcome::Fail,
            e,
            "keep this copy as evidence; restore from the last export (docs/operations.md \"What to back up\")",
        ),
    }
}
