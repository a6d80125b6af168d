//! Thin: parse the command line, run it, report errors.

use std::process::ExitCode;

use clap::Parser;
use incident_vault::cli::{Cli, forbid_core_dumps, private_files, run};
use incident_vault::services::audit::VerifyError;

/// The exit code of a check that ran and found the audit chain broken, so that a monitoring
/// script can tell it from a command that could not run (1: a database that does not open; 2, from
/// clap: a mistyped argument).
const EXIT_BROKEN_CHAIN: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(error) = forbid_core_dumps() {
        // Before telemetry exists; the start goes on (a platform without prctl would otherwise
        // have no service at all), and the operator's own limit still applies.
        eprintln!("incident-vault: warning: could not turn off core dumps: {error}");
    }
    private_files();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Errors carry no secrets and no report content: safe for the terminal.
            eprintln!("incident-vault: {error:#}");
            match error.downcast_ref::<VerifyError>() {
                Some(VerifyError::Broken(_)) => ExitCode::from(EXIT_BROKEN_CHAIN),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
