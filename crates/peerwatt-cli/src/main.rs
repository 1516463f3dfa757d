//! `peerwatt`: the command-line entry point. All work happens in the `peerwatt_cli` library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = peerwatt_cli::Cli::parse();
    match peerwatt_cli::run(cli) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
