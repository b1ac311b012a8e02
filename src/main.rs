//! The `pii-vault` command: parse the command line, run it, exit with its
//! status. Everything else is in the library's [`pii_vault::cli`] edge.

use std::process::ExitCode;

use clap::Parser;
use pii_vault::cli::{Cli, run};

fn main() -> ExitCode {
    ExitCode::from(run(Cli::parse()))
}
