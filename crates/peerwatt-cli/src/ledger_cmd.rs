//! `peerwatt ledger show|verify|export|prove|check-proof`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use peerwatt_core::{
    Decode, EntryKind, LedgerEntry, MeterStatement, Order, Settlement, Signed, Trade, TreeHead, keys::hex_encode,
};
use peerwatt_ledger::{VerifyReport, verify_export, write_export};
use serde_json::json;

use crate::datadir::DataDir;
use crate::failure::{Failure, Hint};
use crate::{DataDirArg, count};
use peerwatt_ledger::proof_file::ProofFile;

/// The `peerwatt ledger` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// List ledger entries (the newest 20 unless --from/--limit say otherwise).
    Show(ShowArgs),
    /// Check every entry, the hash chain, the Merkle tree and the signed heads. Exit 1 if bad.
    Verify(VerifyArgs),
    /// Write the whole ledger to one self-contained file.
    Export(ExportArgs),
    /// Print an inclusion proof of one entry against a signed tree head (JSON).
    Prove(ProveArgs),
    /// Check an inclusion proof file with nothing but the file. Exit 1 if bad.
    CheckProof(CheckProofArgs),
}

/// Arguments of `ledger show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// First sequence number to show.
    #[arg(long)]
    from: Option<u64>,
    /// How many entries to show.
    #[arg(long, default_value_t = 20)]
    limit: u64,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `ledger verify`: a data directory or an export file.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct VerifyArgs {
    /// The node's data directory.
    #[arg(long, env = "PEERWATT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// An export file written by `peerwatt ledger export`.
    #[arg(long)]
    file: Option<PathBuf>,
}

/// Arguments of `ledger export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite the file if it exists.
    #[arg(long)]
    force: bool,
}

/// Arguments of `ledger prove`.
#[derive(Debug, clap::Args)]
pub struct ProveArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The entry's sequence number.
    #[arg(long)]
    seq: u64,
    /// Write the proof to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Arguments of `ledger check-proof`.
#[derive(Debug, clap::Args)]
pub struct CheckProofArgs {
    /// A proof file written by `peerwatt ledger prove`.
    #[arg(long)]
    file: PathBuf,
}

/// Runs a `peerwatt ledger` subcommand.
pub fn run(cmd: LedgerCommand) -> Result<ExitCode, Failure> {
    match cmd {
        LedgerCommand::Show(a) => show(&a),
        LedgerCommand::Verify(a) => verify(&a),
        LedgerCommand::Export(a) => export(&a),
        LedgerCommand::Prove(a) => prove(&a),
        LedgerCommand::CheckProof(a) => check_proof(&a),
    }
}

fn show(args: &ShowArgs) -> Result<ExitCode, Failure> {
    let dir = DataDir::new(&args.dir.data_dir);
    if dir.ledger_in_use() {
        return show_running_node(&dir, args);
    }
    let ledger = dir.open_ledger_reader()?;
    let len = ledger.len()?;
    let from = args.from.unwrap_or(len.saturating_sub(args.limit));
    let to = from.saturating_add(args.limit).min(len);
    let mut out = std::io::stdout().lock();
    if !args.json {
        let owner = ledger.owner().map(|o| o.to_string()).unwrap_or_else(|| "(none yet)".into());
        show_header(&mut out, &owner, len, ledger.latest_head()?.as_ref(), from < to)?;
    }
    for seq in from..to {
        let bytes = ledger.entry_bytes(seq)?;
        let hash = peerwatt_ledger::merkle::leaf_hash(&bytes);
        let entry = Signed::<LedgerEntry>::from_bytes(&bytes).map_err(|e| e.to_string());
        show_entry(&mut out, args.json, seq, entry, hash)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ledger show` of a running node: from its export (through its HTTP interface), verified on
/// the way; the entries shown are those the node's signed head covers.
fn show_running_node(dir: &DataDir, args: &ShowArgs) -> Result<ExitCode, Failure> {
    let tmp = std::env::temp_dir().join(format!("peerwatt-show-{}.pwl", std::process::id()));
    download_export(dir, &tmp)?;
    let mut window = Window { from: args.from, limit: args.limit, entries: Default::default(), head: None };
    let walked = fs::File::open(&tmp)
        .map(std::io::BufReader::new)
        .map(|r| peerwatt_ledger::verify_export_visiting(r, &mut window));
    let _ = fs::remove_file(&tmp);
    let report =
        walked?.map_err(|e| anyhow!("the running node's ledger failed verification: {e}")).invalid(TAMPER_HINT)?;
    let mut out = std::io::stdout().lock();
    if !args.json {
        show_header(
            &mut out,
            &report.owner.to_string(),
            report.entries,
            window.head.as_ref(),
            !window.entries.is_empty(),
        )?;
    }
    for (entry, leaf) in window.entries {
        show_entry(&mut out, args.json, entry.body().seq, Ok(entry), leaf)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The entries `ledger show` asks for, kept while an export is walked: `limit` from `from`,
/// or the last `limit`.
struct Window {
    from: Option<u64>,
    limit: u64,
    entries: std::collections::VecDeque<(Signed<LedgerEntry>, peerwatt_core::Hash)>,
    head: Option<Signed<TreeHead>>,
}

impl peerwatt_ledger::Visit for Window {
    fn head(&mut self, head: &Signed<TreeHead>) {
        if self.head.as_ref().is_none_or(|h| h.body().size <= head.body().size) {
            self.head = Some(head.clone());
        }
    }

    fn entry(&mut self, entry: &Signed<LedgerEntry>, leaf: peerwatt_core::Hash) {
        let seq = entry.body().seq;
        match self.from {
            Some(from) if seq < from || seq >= from.saturating_add(self.limit) => {}
            Some(_) => self.entries.push_back((entry.clone(), leaf)),
            None => {
                self.entries.push_back((entry.clone(), leaf));
                if self.entries.len() as u64 > self.limit {
                    self.entries.pop_front();
                }
            }
        }
    }
}

/// The lines above `ledger show`'s table.
fn show_header(
    out: &mut impl Write,
    owner: &str,
    len: u64,
    head: Option<&Signed<TreeHead>>,
    table: bool,
) -> std::io::Result<()> {
    writeln!(out, "ledger of {owner}")?;
    writeln!(out, "  entries: {len}")?;
    match head {
        Some(h) => writeln!(
            out,
            "  latest signed tree head: size {}, root {}, signed {}",
            h.body().size,
            h.body().root,
            h.body().time
        )?,
        None => writeln!(out, "  latest signed tree head: none")?,
    }
    if table {
        writeln!(out, "\n{:>6}  {:<24}  {:<16}  {:<16}  payload", "seq", "time (UTC)", "kind", "hash")?;
    }
    Ok(())
}

/// One row of `ledger show` (a JSON object with `--json`).
fn show_entry(
    out: &mut impl Write,
    as_json: bool,
    seq: u64,
    entry: Result<Signed<LedgerEntry>, String>,
    hash: peerwatt_core::Hash,
) -> std::io::Result<()> {
    match entry {
        Ok(signed) => {
            let e = signed.body();
            let summary = describe_payload(e.kind, &e.payload);
            if as_json {
                let line = json!({
                    "seq": e.seq, "time": e.time.to_string(), "time_ms": e.time.0, "kind": e.kind.name(),
                    "hash": hash.to_hex(), "prev": e.prev.to_hex(), "payload_hex": hex_encode(&e.payload),
                    "summary": summary,
                });
                writeln!(out, "{line}")
            } else {
                let short = &hash.to_hex()[..16];
                writeln!(out, "{seq:>6}  {:<24}  {:<16}  {short}  {summary}", e.time.to_string(), e.kind.name())
            }
        }
        Err(e) => writeln!(out, "{seq:>6}  (malformed: {e}; run `peerwatt ledger verify`)"),
    }
}

/// A one-line human description of an entry's payload.
pub fn describe_payload(kind: EntryKind, payload: &[u8]) -> String {
    let described = match kind {
        EntryKind::ConfigChange => std::str::from_utf8(payload).ok().map(|s| s.chars().take(80).collect()),
        EntryKind::OrderPublished => Signed::<Order>::from_bytes(payload).ok().map(|o| {
            let b = o.body();
            format!("{:?} {} at {} for interval {}", b.side, b.energy, b.limit_price, b.interval)
        }),
        EntryKind::TradeAgreed => Signed::<Trade>::from_bytes(payload).ok().map(|t| {
            let r = t.body().request.body();
            format!(
                "{} at {} in interval {}: {} sells to {}",
                r.energy,
                r.price,
                r.interval,
                t.body().seller(),
                t.body().buyer()
            )
        }),
        EntryKind::MeterStatement => Signed::<MeterStatement>::from_bytes(payload).ok().map(|m| {
            let b = m.body();
            format!(
                "interval {}{}: imported {}, exported {}, {} from {}{}",
                b.interval,
                if b.revision > 0 { format!(" (correction {})", b.revision) } else { String::new() },
                b.figures.imported,
                b.figures.exported,
                b.figures.method.name(),
                b.figures.format,
                if b.figures.complete {
                    String::new()
                } else {
                    format!(" (incomplete: {} ms covered)", b.figures.covered_ms)
                }
            )
        }),
        EntryKind::WitnessedHead => Signed::<TreeHead>::from_bytes(payload)
            .ok()
            .map(|h| format!("head of {}: size {}, root {}", h.signer(), h.body().size, h.body().root)),
        EntryKind::Settlement => Signed::<Settlement>::from_bytes(payload).ok().map(|s| {
            let b = s.body();
            let delivered: u64 = b.trades.iter().map(|t| t.delivered.0).sum();
            format!(
                "settled interval {}{}{}: {} trades, {} Wh delivered, shared in {} out {}, cost {} (grid alone {})",
                b.interval,
                if b.revision > 0 { format!(" (revision {})", b.revision) } else { String::new() },
                if b.complete { "" } else { " (provisional)" },
                b.trades.len(),
                delivered,
                b.shared_import,
                b.shared_export,
                b.cost,
                b.baseline
            )
        }),
    };
    described.unwrap_or_else(|| format!("{} bytes", payload.len()))
}

fn print_report(what: &str, r: &VerifyReport) {
    let last = r.last_time.map(|t| format!(", last entry {t}")).unwrap_or_default();
    println!(
        "OK: {what} of {} verified: {}, {}, root {}{last}",
        r.owner,
        count(r.entries, "entry", "entries"),
        count(r.heads, "signed tree head", "signed tree heads"),
        r.root
    );
}

const TAMPER_HINT: &str = "the ledger was altered or damaged after it was written; keep this copy as evidence and compare it with an earlier export or with the tree heads its peers witnessed";

fn verify(args: &VerifyArgs) -> Result<ExitCode, Failure> {
    if let Some(file) = &args.file {
        let f = fs::File::open(file)
            .with_context(|| format!("cannot open {}", file.display()))
            .hint("check the path of the export file")?;
        let report = verify_export(f)
            .map_err(|e| anyhow!("export {} failed verification: {e}", file.display()))
            .invalid(TAMPER_HINT)?;
        print_report("export", &report);
    } else if let Some(dir) = &args.data_dir {
        let dir = DataDir::new(dir);
        if dir.ledger_in_use() {
            return verify_running_node(&dir);
        }
        let ledger = dir.open_ledger_reader()?;
        let report = ledger.verify().map_err(|e| anyhow!("ledger failed verification: {e}")).invalid(TAMPER_HINT)?;
        print_report("ledger", &report);
    }
    Ok(ExitCode::SUCCESS)
}

fn export(args: &ExportArgs) -> Result<ExitCode, Failure> {
    if args.out.exists() && !args.force {
        return Err(anyhow!("{} already exists", args.out.display()))
            .hint("choose another --out, or add --force to overwrite it");
    }
    let dir = DataDir::new(&args.dir.data_dir);
    if dir.ledger_in_use() {
        return export_from_running_node(&dir, args);
    }
    let ledger = dir.open_ledger()?;
    // Close the export with a head that covers every entry, so a cut-off copy is detectable.
    let covered = ledger.latest_head()?.map(|h| h.body().size);
    if covered != Some(ledger.len()?) {
        ledger.sign_head()?;
    }
    let tmp = temp_path(&args.out);
    let file = fs::File::create(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))
        .hint("check that the output directory exists and is writable")?;
    let summary = write_export(ledger.reader(), &file)?;
    file.sync_all()?;
    fs::rename(&tmp, &args.out)?;
    println!(
        "exported {} and {} ({} bytes) to {}",
        count(summary.entries, "entry", "entries"),
        count(summary.heads, "signed tree head", "signed tree heads"),
        summary.bytes,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A running node holds its ledger: its export comes through the node's HTTP interface (the
/// same file, up to a head the node signs for it) into `to`. Returns the bytes and the address.
fn download_export(dir: &DataDir, to: &Path) -> Result<(u64, std::net::SocketAddr), Failure> {
    let cfg = peerwatt_node::NodeConfig::load(&dir.config_path()).hint("is this a node's data directory?")?;
    let section = cfg
        .api
        .as_ref()
        .ok_or_else(|| {
            anyhow!("the ledger is in use by another process (a running node?), and node.toml has no [api] through which a running node gives its ledger")
        })
        .hint("add an [api] section to node.toml and restart the node (docs/interfaces.md), or stop the node")?;
    let addr = peerwatt_node::api::client::local_address(&section.listen)
        .ok_or_else(|| anyhow!("[api] listen {:?} is not an address and port", section.listen))
        .hint("e.g. listen = \"127.0.0.1:8470\"")?;
    // Needed when the node does not trust loopback (behind a reverse proxy).
    let token = std::env::var("PEERWATT_API_TOKEN").ok();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let downloaded: Result<u64, Failure> = runtime.block_on(async {
        let mut file = tokio::fs::File::create(to)
            .await
            .with_context(|| format!("cannot create {}", to.display()))
            .hint("check that the output directory exists and is writable")?;
        let bytes = peerwatt_node::api::client::download(addr, "/api/v1/ledger/export", token.as_deref(), &mut file)
            .await
            .hint("is the node running with this node.toml? `peerwatt status` says; PEERWATT_API_TOKEN holds a token when the node does not trust loopback")?;
        file.sync_all().await?;
        Ok(bytes)
    });
    let bytes = downloaded.inspect_err(|_| {
        let _ = fs::remove_file(to);
    })?;
    Ok((bytes, addr))
}

/// The export of a running node, verified before it is called done.
fn export_from_running_node(dir: &DataDir, args: &ExportArgs) -> Result<ExitCode, Failure> {
    let tmp = temp_path(&args.out);
    let (bytes, addr) = download_export(dir, &tmp)?;
    let report = match fs::File::open(&tmp).map(std::io::BufReader::new).map(verify_export) {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            let _ = fs::remove_file(&tmp);
            return Err(anyhow!("the export from the running node does not verify: {e}")).invalid(TAMPER_HINT);
        }
        Err(e) => return Err(e.into()),
    };
    fs::rename(&tmp, &args.out)?;
    println!(
        "exported {} and {} ({bytes} bytes) from the running node at {addr} to {}",
        count(report.entries, "entry", "entries"),
        count(report.heads, "signed tree head", "signed tree heads"),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Verifies a running node's ledger through its export (up to the head it signs for it).
fn verify_running_node(dir: &DataDir) -> Result<ExitCode, Failure> {
    let tmp = PrivateTemp::new()?;
    download_export(dir, tmp.path())?;
    let verified = fs::File::open(tmp.path()).map(std::io::BufReader::new).map(verify_export);
    let report =
        verified?.map_err(|e| anyhow!("the running node's ledger failed verification: {e}")).invalid(TAMPER_HINT)?;
    print_report("ledger (of the running node, up to the head it signed for this check)", &report);
    Ok(ExitCode::SUCCESS)
}

/// A file of our own in the temporary directory: created exclusively (never through a link
/// someone else planted), readable by us only, removed when dropped.
struct PrivateTemp(PathBuf);

impl PrivateTemp {
    fn new() -> std::io::Result<PrivateTemp> {
        use std::os::unix::fs::OpenOptionsExt;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = std::env::temp_dir().join(format!("peerwatt-{}-{nanos}.pwl", std::process::id()));
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        Ok(PrivateTemp(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateTemp {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn temp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

fn prove(args: &ProveArgs) -> Result<ExitCode, Failure> {
    let ledger = DataDir::new(&args.dir.data_dir).open_ledger()?;
    let len = ledger.len()?;
    if args.seq >= len {
        return Err(anyhow!("the ledger has {len} entries; there is no entry {}", args.seq))
            .hint("`peerwatt ledger show` lists the entries");
    }
    let proof = match ledger.prove_inclusion(args.seq)? {
        Some(p) => p,
        None => {
            ledger.sign_head()?;
            ledger.prove_inclusion(args.seq)?.ok_or_else(|| anyhow!("no signed head covers entry {}", args.seq))?
        }
    };
    let text = serde_json::to_string_pretty(&ProofFile::from_proof(&proof))? + "\n";
    match &args.out {
        Some(path) => fs::write(path, text).hint("check that the output directory is writable")?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn check_proof(args: &CheckProofArgs) -> Result<ExitCode, Failure> {
    let text = fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))
        .hint("check the path of the proof file")?;
    let file: ProofFile =
        serde_json::from_str(&text).invalid("the file is not a proof written by `peerwatt ledger prove`")?;
    let proof = file.to_proof().invalid("the proof file was altered")?;
    let entry = proof
        .verify()
        .map_err(|e| anyhow!("the proof does not hold: {e}"))
        .invalid("the entry, the signed tree head or the path was altered, or the proof belongs to another ledger")?;
    let e = entry.body();
    println!(
        "OK: entry {} ({}, {}) is in the ledger of {} under its signed tree head of size {} (root {})",
        e.seq,
        e.kind.name(),
        e.time,
        entry.signer(),
        proof.head.body().size,
        proof.head.body().root
    );
    Ok(ExitCode::SUCCESS)
}
