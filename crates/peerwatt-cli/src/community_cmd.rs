//! `peerwatt community init|admit|check`.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use peerwatt_core::{
    Clock, Community, IntervalId, IntervalLength, MembershipCert, NodeKey, Price, PublicKey, Sharing, Signed,
    SystemClock, Timestamp,
};

use crate::failure::{Failure, Hint};
use peerwatt_node::NodeConfig;
use peerwatt_node::community_file::{certificate_text, community_toml, load_certificate, load_community};
use peerwatt_node::config::FileError;

/// The `peerwatt community` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CommunityCommand {
    /// Create a community: its admin key and community.toml.
    Init(InitArgs),
    /// Admit a node: issue its membership certificate, signed by the admin key.
    Admit(AdmitArgs),
    /// Check this node's membership: community file, certificate, key. Exit 1 if invalid.
    Check(CheckArgs),
    /// Change the rules (tariffs, sharing, bootstrap) from a later interval: a new version,
    /// signed by the admin key, written into community.toml.
    Rules(RulesArgs),
}

/// Arguments of `community rules`.
#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// The community directory (admin.key and community.toml).
    #[arg(long)]
    dir: PathBuf,
    /// When the new version takes effect (UTC): `YYYY-MM-DD` or `YYYY-MM-DDTHH:MMZ`, at the
    /// start of an interval, later than the latest version's and than now.
    #[arg(long)]
    from: String,
    /// The new feed-in tariff, micro-currency per kWh.
    #[arg(long)]
    feed_in: Option<u64>,
    /// The new retail tariff, micro-currency per kWh.
    #[arg(long)]
    retail: Option<u64>,
    /// `pro-rata` or `off`.
    #[arg(long)]
    sharing: Option<String>,
    /// The price of shared energy (micro-currency per kWh); `midpoint` for the tariffs' midpoint.
    #[arg(long)]
    sharing_price: Option<String>,
    /// The bootstrap nodes' multiaddresses, replacing the list (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
}

/// Arguments of `community init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to create the community (admin.key and community.toml).
    #[arg(long)]
    dir: PathBuf,
    /// The community's name.
    #[arg(long)]
    name: String,
    /// Settlement interval length in minutes (must divide a day).
    #[arg(long, default_value_t = 15)]
    interval_minutes: u64,
    /// Settlement interval length in seconds instead (short intervals for tests and demos).
    #[arg(long, hide = true, conflicts_with = "interval_minutes")]
    interval_secs: Option<u64>,
    /// Trading closes this many seconds before an interval starts.
    #[arg(long, default_value_t = 60)]
    gate_closure_secs: u64,
    /// Trading opens this many intervals ahead.
    #[arg(long, default_value_t = 4)]
    horizon: u32,
    /// Feed-in tariff in micro-currency per kWh (82000 = 0.082/kWh).
    #[arg(long, default_value_t = 82_000)]
    feed_in: u64,
    /// Retail tariff in micro-currency per kWh (300000 = 0.30/kWh).
    #[arg(long, default_value_t = 300_000)]
    retail: u64,
    /// A bootstrap node's multiaddress (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
}

/// Arguments of `community admit`.
#[derive(Debug, clap::Args)]
pub struct AdmitArgs {
    /// The community directory (admin.key and community.toml).
    #[arg(long)]
    dir: PathBuf,
    /// The node's public id (printed by `peerwatt init`).
    #[arg(long)]
    node: String,
    /// The member's display name.
    #[arg(long)]
    name: String,
    /// The member's grid zone (e.g. the feeder it is connected to).
    #[arg(long)]
    zone: String,
    /// How many days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    valid_days: u64,
    /// Where to write the certificate.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    force: bool,
}

/// Arguments of `community check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The node's configuration file (its [community] section names the files).
    #[arg(long, default_value = "node.toml", env = "PEERWATT_CONFIG")]
    config: PathBuf,
}

/// Runs a `peerwatt community` subcommand.
pub fn run(cmd: CommunityCommand) -> Result<ExitCode, Failure> {
    match cmd {
        CommunityCommand::Init(a) => init(&a),
        CommunityCommand::Admit(a) => admit(&a),
        CommunityCommand::Check(a) => check(&a),
        CommunityCommand::Rules(a) => rules(&a),
    }
}

fn init(args: &InitArgs) -> Result<ExitCode, Failure> {
    let key_path = args.dir.join("admin.key");
    let file_path = args.dir.join("community.toml");
    if key_path.exists() || file_path.exists() {
        return Err(anyhow!("{} already holds a community", args.dir.display()))
            .hint("an admin key is never overwritten; use another --dir");
    }
    let secs = args.interval_secs.unwrap_or(args.interval_minutes.saturating_mul(60));
    let interval = IntervalLength::from_secs(secs).hint("use 5, 10, 15, 30 or 60 minutes")?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.dir)
        .hint("check that the parent directory is writable")?;
    let admin = NodeKey::generate()?;
    let community = Community {
        name: args.name.clone(),
        id: Community::derive_id(&admin.public(), &args.name),
        admin: admin.public(),
        interval,
        gate_closure: Duration::from_secs(args.gate_closure_secs),
        horizon: args.horizon,
        feed_in: Price(args.feed_in),
        retail: Price(args.retail),
        bootstrap: args.bootstrap.clone(),
        sharing: peerwatt_core::Sharing::default(),
        rules: Default::default(),
    };
    community.check().hint("adjust the options; `peerwatt community init --help` lists them")?;
    let community = community.signed_by(&admin, IntervalId(0), SystemClock.now());
    community.check().hint("adjust the options; `peerwatt community init --help` lists them")?;
    admin.save(&key_path).hint("check that the directory is writable")?;
    fs::write(&file_path, community_toml(&community)).hint("check that the directory is writable")?;
    println!("Created the community \"{}\" in {}", community.name, args.dir.display());
    println!("  id:        {}", community.id.0.to_hex());
    println!("  admin key: {} (mode 0600; keep it offline and backed up)", key_path.display());
    println!("  file:      {} (give it to every member)", file_path.display());
    println!();
    println!(
        "Admit a member with `peerwatt community admit --dir {} --node <public id> --name … --zone … --out member.cert`.",
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn admit(args: &AdmitArgs) -> Result<ExitCode, Failure> {
    if args.out.exists() && !args.force {
        return Err(anyhow!("{} already exists", args.out.display())).hint("choose another --out, or add --force");
    }
    let community = load_community(&args.dir.join("community.toml")).hint("run `peerwatt community init` first")?;
    let admin = NodeKey::load(&args.dir.join("admin.key")).hint("admit needs the community's admin key")?;
    if admin.public() != community.admin {
        return Err(anyhow!("admin.key is not the admin key named in community.toml"))
            .hint("use the directory created by `peerwatt community init`");
    }
    let member =
        PublicKey::from_peer_id(&args.node).hint("pass the public id printed by `peerwatt init` (12D3KooW…)")?;
    if args.name.is_empty() || args.name.len() > peerwatt_core::messages::MAX_NAME_LEN {
        return Err(anyhow!("the name must be 1 to 64 bytes")).hint("use a shorter --name");
    }
    if args.zone.is_empty() || args.zone.len() > peerwatt_core::messages::MAX_ZONE_LEN {
        return Err(anyhow!("the zone must be 1 to 32 bytes")).hint("use a shorter --zone");
    }
    let now = SystemClock.now();
    let until = Timestamp(now.0.saturating_add(args.valid_days.saturating_mul(86_400_000)));
    let cert = Signed::sign(
        &admin,
        MembershipCert {
            community: community.id,
            member,
            name: args.name.clone(),
            zone: args.zone.clone(),
            valid_from: now,
            valid_until: until,
        },
    );
    fs::write(&args.out, certificate_text(&cert, &community)).hint("check that the output directory is writable")?;
    println!("Admitted {member} (\"{}\", zone {}) to \"{}\" until {until}", args.name, args.zone, community.name);
    println!("  certificate: {}", args.out.display());
    println!("The member puts community.toml and the certificate next to its node.toml and names them in [community].");
    Ok(ExitCode::SUCCESS)
}

fn rules(args: &RulesArgs) -> Result<ExitCode, Failure> {
    let path = args.dir.join("community.toml");
    let community = load_community(&path).hint("run `peerwatt community init` first")?;
    let admin = NodeKey::load(&args.dir.join("admin.key")).hint("a change of rules needs the community's admin key")?;
    if admin.public() != community.admin {
        return Err(anyhow!("admin.key is not the admin key named in community.toml"))
            .hint("use the directory created by `peerwatt community init`");
    }
    let Some(from) = Timestamp::parse_utc(&args.from) else {
        return Err(anyhow!("{:?} is not a time", args.from)).hint("write YYYY-MM-DD or YYYY-MM-DDTHH:MMZ (UTC)");
    };
    let effective = community.interval.interval_at(from);
    let now = SystemClock.now();
    if community.interval.start(effective) != from || from <= now {
        return Err(anyhow!("{} is not the start of a future interval", args.from))
            .hint("members need the new file before it takes effect: give a later time, at an interval's start");
    }
    let mut next = community.clone();
    if let Some(p) = args.feed_in {
        next.feed_in = Price(p);
    }
    if let Some(p) = args.retail {
        next.retail = Price(p);
    }
    next.sharing = sharing_of(args, community.sharing)?;
    if !args.bootstrap.is_empty() {
        next.bootstrap = args.bootstrap.clone();
    }
    let next = next.signed_by(&admin, effective, now);
    next.check().hint("the new rules must be valid on their own; `peerwatt community rules --help` lists them")?;
    fs::write(&path, community_toml(&next)).hint("check that the directory is writable")?;
    let version = next.rules.len();
    println!(
        "Signed version {version} of the rules of \"{}\", in force from {}",
        next.name,
        community.interval.start(effective)
    );
    println!("  prices between {} and {}, shared energy at {}", next.feed_in, next.retail, next.sharing_price());
    println!(
        "  file: {} (give it to every member before then: a node on an older file refuses orders made under the new version)",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The sharing rule after `--sharing` and `--sharing-price`.
fn sharing_of(args: &RulesArgs, current: Sharing) -> Result<Sharing, Failure> {
    let on = match args.sharing.as_deref() {
        None => current.is_on(),
        Some("pro-rata") => true,
        Some("off") => false,
        Some(other) => return Err(anyhow!("sharing is pro-rata or off, not {other:?}").into()),
    };
    let price = match args.sharing_price.as_deref() {
        None => match current {
            Sharing::ProRataAt(p) => Some(p),
            Sharing::Off | Sharing::ProRata => None,
        },
        Some("midpoint") => None,
        Some(p) => Some(Price(p.parse().map_err(|_| anyhow!("{p:?} is not a price in micro-currency per kWh"))?)),
    };
    Ok(match (on, price) {
        (false, _) => Sharing::Off,
        (true, None) => Sharing::ProRata,
        (true, Some(p)) => Sharing::ProRataAt(p),
    })
}

/// A file that could not be read cannot be checked (exit 2); one that was read and is
/// wrong was checked and found bad (exit 1), as everywhere (docs/interfaces.md "Exit codes").
fn found_bad<T>(loaded: Result<T, FileError>, hint: &str) -> Result<T, Failure> {
    match loaded {
        Err(e @ FileError::Read { .. }) => Err(e).hint(hint),
        other => other.invalid(hint),
    }
}

fn check(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let cfg = NodeConfig::load(&args.config).hint("`peerwatt init` writes a node.toml")?;
    let section = cfg
        .community
        .as_ref()
        .ok_or_else(|| anyhow!("{} has no [community] section", args.config.display()))
        .hint("add [community] with file = \"community.toml\" and certificate = \"<your certificate>\"")?;
    let key = NodeKey::load(&cfg.resolve(&cfg.node.key_file))
        .hint("the key file must be private to its owner (mode 0600)")?;
    let community = found_bad(
        load_community(&cfg.resolve(&section.file)),
        "ask your community admin for the current community.toml",
    )?;
    let cert =
        found_bad(load_certificate(&cfg.resolve(&section.certificate)), "ask your community admin for a certificate")?;
    community
        .check_cert(&cert, &key.public(), SystemClock.now())
        .map_err(|e| anyhow!("membership certificate: {e}"))
        .invalid("ask your community admin to admit this node's public id again")?;
    let c = cert.body();
    println!(
        "OK: {} is a member of \"{}\" as \"{}\" (zone {}) until {}",
        key.public(),
        community.name,
        c.name,
        c.zone,
        c.valid_until
    );
    println!(
        "  market: {}-minute intervals, gate closure {} s, horizon {} intervals, prices between {} and {}",
        community.interval.secs() / 60,
        community.gate_closure.as_secs(),
        community.horizon,
        community.feed_in,
        community.retail
    );
    let now = community.interval.interval_at(SystemClock.now());
    let in_force = community.terms_at(now).version;
    let latest = community.rules.last().map(|r| r.body());
    println!(
        "  rules: version {in_force} in force, signed by the admin{}",
        match latest {
            Some(r) if r.version > in_force =>
                format!("; version {} takes effect at {}", r.version, community.interval.start(r.effective_from)),
            _ => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
