//! The command line: an edge like [`crate::http`]. Each command parses its
//! arguments, opens what it needs, calls the library and prints the result;
//! the logic it calls lives below, in the services and the core.
//!
//! - [`serve`]: `serve` (the HTTP API until SIGINT/SIGTERM);
//! - [`maintenance`]: `migrate`, `sweep`;
//! - [`import`]: `import FILE`;
//! - [`backup`]: `backup --output FILE`;
//! - [`policy`]: `policy check`;
//! - [`clients`], [`users`]: who may call the API (`users add`, `disable`,
//!   `set-password`);
//! - [`keys`]: rotation, rewrap, retirement, status;
//! - [`audit`]: export, public keys, offline verification, checkpoints, prune;
//! - [`tombstones`]: verify (and repair) the tombstone log;
//! - [`bench`](mod@bench): the load benchmark, which drives the binary over HTTP;
//!   [`bench_baseline`]: the plain read server its `baseline` scenario measures.
//!
//! Exit status: 0 on success, 1 when the command fails (or what it checks is
//! invalid), 2 when the configuration or an input file cannot be read.

pub mod audit;
pub mod backup;
pub mod bench;
pub mod bench_baseline;
pub mod clients;
pub mod import;
pub mod keys;
pub mod maintenance;
pub mod policy;
pub mod serve;
pub mod tombstones;
pub mod users;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::actor::Actor;
use crate::audit::{Action, Decision, EventDraft};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::telemetry;
use crate::vault::RootKeyOrigin;

#[derive(Debug, Parser)]
#[command(
    name = "pii-vault",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PII_VAULT_BUILD_COMMIT"), ")"),
    about = "A customer-data vault: encrypted fields, purpose-bound access, consent, data subject requests and a verifiable audit trail."
)]
pub struct Cli {
    /// Configuration file (default: ./pii-vault.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Refuse to start without an explicitly configured root key.
        #[arg(long)]
        production: bool,
    },
    /// Create or upgrade the database schema and the keyring, finish
    /// interrupted erasures and erase again customers listed in the
    /// tombstone file (after restoring an older backup), then exit.
    Migrate,
    /// Import a portability export into an EMPTY vault: the same customer,
    /// values, purposes (with their collection times) and consents.
    Import {
        /// The export package (JSON) of an access or portability request.
        file: PathBuf,
    },
    /// Copy a SQLite vault to FILE while it serves (a consistent snapshot
    /// through VACUUM INTO; never overwrites). On PostgreSQL: use pg_dump.
    Backup {
        /// Where to write the copy (must not exist).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Run the retention sweeper once: remove purposes whose retention
    /// ended, delete values left without one, audit each deletion.
    Sweep {
        /// Sweep as of this time instead of now, e.g. 2031-01-01T00:00:00Z.
        #[arg(long, value_name = "RFC3339")]
        as_of: Option<String>,
    },
    /// Validate policy files.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Manage machine clients.
    Clients {
        #[command(subcommand)]
        command: clients::ClientsCommand,
    },
    /// Manage people who log in with a password.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Rotate and retire keys: KEK versions, the root key, the signing key.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// The audit trail: export, public keys, offline verification,
    /// checkpoints, retention.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// The tombstone log (erased customers, kept outside the database):
    /// verify its authentication, repair it.
    Tombstones {
        #[command(subcommand)]
        command: tombstones::TombstonesCommand,
    },
    /// Run the load benchmark (starts its own vault unless --target is given).
    Bench(bench::BenchArgs),
    /// The plain SQLite read server of the benchmark's `baseline` scenario
    /// (started by `bench`).
    #[command(hide = true)]
    BenchBaseline(bench_baseline::BaselineArgs),
}

/// How a command ended: the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Success,
    /// 1: the command failed, or what it checked is invalid.
    Failure,
    /// 2: the configuration or an input file cannot be read.
    Unreadable,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::FAILURE,
            Exit::Unreadable => ExitCode::from(2),
        }
    }
}

/// Runs one command line to its end.
///
/// `policy check`, `audit verify` and `bench` need no settings (a broken
/// configuration file does not stop them); every other command loads the
/// settings first, sets up logging in the configured format and runs on a
/// multi-threaded runtime.
pub fn run(cli: Cli) -> Exit {
    // Before any HTTP client exists (bench, the webhook): TLS on ring.
    crate::install_tls_provider();
    let Cli { config, command } = cli;
    match command {
        Command::Policy {
            command: policy::PolicyCommand::Check { dir },
        } => policy::check(config.as_deref(), dir),
        Command::Audit {
            command:
                audit::AuditCommand::Verify {
                    public_key,
                    since,
                    export,
                },
        } => audit::verify(&public_key, since.as_deref(), &export),
        Command::Bench(args) => bench::command(args),
        Command::BenchBaseline(args) => bench_baseline::command(args),
        command => with_settings(config.as_deref(), command),
    }
}

/// Loads the settings, starts logging and the runtime, runs `command`.
fn with_settings(config: Option<&Path>, command: Command) -> Exit {
    for name in
        Settings::unknown_env_vars(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
    {
        eprintln!(
            "pii-vault: warning: ignoring the environment variable {name}: it names no setting \
             (see pii-vault.example.toml)"
        );
    }
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pii-vault: {e}");
            return Exit::Unreadable;
        }
    };
    telemetry::init_tracing(&settings.log_format);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pii-vault: cannot start the runtime: {e}");
            return Exit::Failure;
        }
    };
    match runtime.block_on(dispatch(command, settings)) {
        Ok(()) => Exit::Success,
        Err(e) => {
            eprintln!("pii-vault: {e:#}");
            Exit::Failure
        }
    }
}

/// The commands that run with settings, on the runtime.
async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match command {
        Command::Serve { production } => serve::serve(settings, clock, production).await,
        Command::Migrate => maintenance::migrate(&settings, clock.as_ref()).await,
        Command::Import { file } => import::import(&settings, clock.as_ref(), &file).await,
        Command::Backup { output } => backup::backup(&settings, &output).await,
        Command::Sweep { as_of } => {
            maintenance::sweep(&settings, clock.as_ref(), as_of.as_deref()).await
        }
        Command::Clients { command } => clients::run(command, settings, clock).await,
        Command::Users { command } => users::run(command, settings, clock).await,
        Command::Keys { command } => keys::run(command, settings, clock).await,
        Command::Audit { command } => audit::run(command, &settings, clock).await,
        Command::Tombstones { command } => tombstones::run(command, &settings, clock).await,
        // Handled by `run` before any settings are loaded.
        Command::Policy { .. } | Command::Bench(_) | Command::BenchBaseline(_) => Ok(()),
    }
}

/// The multi-threaded runtime every command that does I/O runs on.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Runs `work` on a fresh [`runtime`].
fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    runtime()?.block_on(work)
}

/// An allowed audit event by the command line's operator ([`Actor::cli`]).
fn cli_event(action: Action) -> EventDraft {
    Actor::cli().event(action, Decision::Allowed)
}

/// The vault's tombstone log, for commands that may finish an erasure.
async fn tombstone_log(
    settings: &Settings,
    opened: &crate::Opened,
) -> anyhow::Result<crate::requests::erasure::TombstoneLog> {
    let tamper = crate::tamper::Tamper::open(settings, &opened.keys.index, false)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(crate::requests::erasure::TombstoneLog::new(tamper))
}

/// Prints clients or users (`kind`) as a table, or as a JSON array with
/// times in RFC 3339.
fn print_principals(
    rows: &[crate::store::PrincipalListing],
    json: bool,
    kind: &str,
) -> anyhow::Result<()> {
    let time = crate::clock::rfc3339;
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id.to_string(),
                    "name": r.name,
                    "role": r.role,
                    "disabled": r.disabled,
                    "created_at": time(r.created_at),
                    "changed_at": r.changed_at.map(time),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no {kind}s");
        return Ok(());
    }
    println!(
        "{:<36}  {:<24}  {:<16}  {:<8}  created",
        "id", "name", "role", "state"
    );
    for r in rows {
        let state = if r.disabled { "disabled" } else { "enabled" };
        println!(
            "{:<36}  {:<24}  {:<16}  {:<8}  {}",
            r.id,
            r.name,
            r.role,
            state,
            time(r.created_at)
        );
    }
    Ok(())
}

/// Warns that the vault runs on a development root key file.
fn warn_dev_key(origin: &RootKeyOrigin) {
    if let RootKeyOrigin::DevelopmentFile { path, created } = origin {
        let verb = if *created { "created" } else { "using" };
        tracing::warn!(
            "{verb} a DEVELOPMENT root key at {} — anyone who can read that file and the database \
             can read every value. For production set PII_VAULT_MASTER_KEY_FILE and run `serve --production`.",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_statuses_are_0_1_and_2() {
        assert_eq!(ExitCode::from(Exit::Success), ExitCode::SUCCESS);
        assert_eq!(ExitCode::from(Exit::Failure), ExitCode::FAILURE);
        assert_eq!(ExitCode::from(Exit::Unreadable), ExitCode::from(2));
    }
}
