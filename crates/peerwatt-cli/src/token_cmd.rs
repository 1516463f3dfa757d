//! `peerwatt token`: bearer tokens for the node's HTTP interface. The secret is printed once;
//! the node keeps only its hash, with a name and a scope.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use peerwatt_core::{Clock, SystemClock};
use peerwatt_node::NodeConfig;
use peerwatt_node::api::tokens::{self, Scope};

use crate::failure::{Failure, Hint};

/// The `peerwatt token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token and print its secret (once: only its hash is kept).
    New(NewArgs),
    /// List the tokens (names, scopes, when made; never secrets).
    List(DirArgs),
    /// Remove a token: requests with it are refused from then on.
    Remove(RemoveArgs),
}

/// Where the node is.
#[derive(Debug, clap::Args)]
pub struct DirArgs {
    /// The node's data directory (where its node.toml is).
    #[arg(long, env = "PEERWATT_DATA_DIR")]
    data_dir: PathBuf,
}

/// Arguments of `token new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// What the token is for (`home-assistant`, `prometheus`).
    #[arg(long)]
    name: String,
    /// `read` (state, trades, ledger, metrics) or `control` (also the limits).
    #[arg(long, default_value = "read")]
    scope: ScopeArg,
}

/// Arguments of `token remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// The token's name.
    #[arg(long)]
    name: String,
}

/// A scope on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScopeArg {
    /// Read only.
    Read,
    /// Read and change the limits.
    Control,
}

/// The tokens file of the node in `dir`.
fn tokens_file(dir: &DirArgs) -> Result<PathBuf, Failure> {
    let cfg = NodeConfig::load(&dir.data_dir.join("node.toml")).hint("is this a node's data directory?")?;
    let section = cfg.api.clone().unwrap_or_default();
    if cfg.api.is_none() {
        eprintln!("note: node.toml has no [api] section: the HTTP interface is off until you add one");
    }
    Ok(cfg.resolve(&section.tokens_file))
}

/// Runs a `peerwatt token` subcommand.
pub fn run(cmd: TokenCommand) -> Result<ExitCode, Failure> {
    match cmd {
        TokenCommand::New(args) => {
            let path = tokens_file(&args.dir)?;
            let scope = match args.scope {
                ScopeArg::Read => Scope::Read,
                ScopeArg::Control => Scope::Control,
            };
            let secret = tokens::create(&path, &args.name, scope, SystemClock.now().0)
                .hint("`peerwatt token list` shows the names in use")?;
            println!("{secret}");
            eprintln!(
                "token {:?} ({}) made; it is shown only now. Send it as `Authorization: Bearer <token>`.",
                args.name,
                scope.name()
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List(dir) => {
            let path = tokens_file(&dir)?;
            for t in tokens::load(&path)? {
                println!("{}\t{}\tmade {}", t.name, t.scope.name(), t.created_at);
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Remove(args) => {
            let path = tokens_file(&args.dir)?;
            if tokens::remove(&path, &args.name)? {
                println!("token {:?} removed", args.name);
                Ok(ExitCode::SUCCESS)
            } else {
                Err(Failure::from(anyhow!("no token named {:?}", args.name)))
            }
        }
    }
}
