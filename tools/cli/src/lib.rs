//! `smsctl`, the command-line client of the smsgate API (issue #16): log in once, send,
//! upload a bulk from CSV and follow it with a progress bar, read, cancel and export
//! messages, manage opt-outs. `--json` makes every command's stdout machine-readable.
//!
//! Layout: `args` (the command line), `commands/` (one module per group), `client` (HTTP
//! and the API's envelope and errors), `config` (the stored login), `numbers` (numbers
//! from arguments and CSV), `follow` (polling with a progress bar), `output`, `error`
//! (one error type and its exit codes).

pub mod args;
pub mod client;
mod commands;
pub mod config;
pub mod error;
pub mod follow;
pub mod numbers;
pub mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::error::CliError;

/// Parses the command line, runs the command, prints the error (if any) and gives the
/// exit code `docs/cli.md` documents.
pub fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn hint(err: &CliError) -> Option<&'static str> {
    match err {
        CliError::Api { status: 401, .. } => {
            Some("log in again with `smsctl login` (or check --token / SMSCTL_TOKEN)")
        }
        _ => None,
    }
}
