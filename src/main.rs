//! Thin: parse the command line, run it, report errors.

use std::process::ExitCode;

use clap::Parser;
use incident_vault::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Errors carry no secrets and no report content: safe for the terminal.
            eprintln!("incident-vault: {error:#}");
            ExitCode::FAILURE
        }
    }
}
