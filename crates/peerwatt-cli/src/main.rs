//! `peerwatt`: the command-line entry point. All work happens in the `peerwatt_cli` library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = peerwatt_cli::Cli::parse();
    peerwatt_cli::init_logging(cli.verbose);
    match peerwatt_cli::run(cli) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
