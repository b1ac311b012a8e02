//! `pii-vault policy check`: validate policy files without a database.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::Exit;
use crate::config::Settings;
use crate::policy::Policy;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy directory; exit 0 when valid (printing any warnings,
    /// e.g. a health category without special_category = true), 1 with
    /// every problem otherwise.
    Check {
        /// Directory of *.toml policy files (default: the configured policy_dir).
        dir: Option<PathBuf>,
    },
}

/// Checks `dir` (default: the configured `policy_dir`) and prints a summary,
/// or every problem found.
pub fn check(config: Option<&Path>, dir: Option<PathBuf>) -> Exit {
    let dir = match dir {
        Some(d) => d,
        None => match Settings::load(config) {
            Ok(s) => s.policy_dir,
            Err(e) => {
                eprintln!("pii-vault: {e}");
                return Exit::Unreadable;
            }
        },
    };
    match Policy::load_dir(&dir) {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: valid ({} purposes, {} fields, {} roles)",
                dir.display(),
                p.purposes.len(),
                p.fields.len(),
                p.roles.len()
            );
            Exit::Success
        }
        Err(errors) => {
            eprintln!("{errors}");
            Exit::Failure
        }
    }
}
