//! `pii-vault audit …`: export the trail, publish the public keys, verify
//! an export offline, sign a checkpoint, prune past retention.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;

use super::{Exit, cli_event};
use crate::audit::checkpoint::{self, PublicKeys};
use crate::audit::export::{self, ExportCursor};
use crate::audit::sequencer::commit_now;
use crate::audit::{Action, retention};
use crate::clock::Clock;
use crate::config::Settings;
use crate::store::{self, Mutation, Store, Unit};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an export offline with the public key file: every hash, no
    /// gap, every checkpoint signature, a signed end. Needs no database.
    /// Exit 0 when it verifies, 1 naming the first bad event, 2 when a file
    /// cannot be read.
    Verify {
        /// Public key file: lines of `KID BASE64-PUBLIC-KEY`
        /// (from `pii-vault audit public-key`).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// The export (NDJSON) to verify.
        #[arg(value_name = "EXPORT")]
        export: PathBuf,
    },
    /// Export events and signed checkpoints as NDJSON, ending with a
    /// checkpoint of the chain head signed now. Recorded as `audit.export`.
    Export {
        /// Export the events after this sequence number (the export starts
        /// at the last signed checkpoint at or before it, so it verifies on
        /// its own).
        #[arg(long, default_value_t = 0, value_name = "N")]
        after_seq: i64,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the checkpoint-signing public keys in the key file format.
    PublicKey {
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Sign a checkpoint of the chain head now.
    Checkpoint,
    /// Delete events older than `audit_retention_days`, up to the last
    /// signed checkpoint before that age (which is kept). Recorded as
    /// `audit.prune`.
    Prune,
}

/// `pii-vault audit verify`: runs without settings or database. Exit 0
/// when the export verifies, 1 when it does not, 2 when a file cannot be read.
pub fn verify(public_key: &Path, export_file: &Path) -> Exit {
    let text = match std::fs::read_to_string(public_key) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("pii-vault: cannot read {}: {e}", public_key.display());
            return Exit::Unreadable;
        }
    };
    let keys = match PublicKeys::parse(&text) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("pii-vault: {}: {e}", public_key.display());
            return Exit::Unreadable;
        }
    };
    match export::verify_file(export_file, &keys) {
        Ok(report) => {
            println!("{}", export::describe(&report));
            if report.ok {
                Exit::Success
            } else {
                Exit::Failure
            }
        }
        Err(e) => {
            eprintln!("pii-vault: cannot read {}: {e}", export_file.display());
            Exit::Unreadable
        }
    }
}

/// The commands that use the database.
pub async fn run(
    command: AuditCommand,
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let clock = clock.as_ref();
    match command {
        // Handled by `cli::run` without settings.
        AuditCommand::Verify { .. } => Ok(()),
        AuditCommand::Export { after_seq, output } => {
            export_trail(settings, clock, after_seq, output.as_deref()).await
        }
        AuditCommand::PublicKey { output } => public_key(settings, output.as_deref()).await,
        AuditCommand::Checkpoint => sign_checkpoint(settings, clock).await,
        AuditCommand::Prune => prune(settings, clock).await,
    }
}

/// Standard output, or a new file at `path`.
fn output(path: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

/// Signs a checkpoint of the head, records `audit.export` with it, then
/// writes the events after `after_seq` (from the last checkpoint at or
/// before it) through that checkpoint.
async fn export_trail(
    settings: &Settings,
    clock: &dyn Clock,
    after_seq: i64,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    if after_seq < 0 {
        anyhow::bail!("--after-seq must not be negative");
    }
    let opened = crate::open(settings, clock, false, false).await?;
    let store = opened.store.as_ref();
    let tokens = opened.keys.tokens();
    let row = checkpoint::sign_head(store, tokens.signing_key(), clock.now_micros())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the audit trail is empty"))?;
    let through = row.seq;
    let unit = Unit {
        mutations: vec![Mutation::InsertCheckpoint(row)],
        events: vec![
            cli_event(Action::AuditExport)
                .reason("after_seq", &after_seq.to_string())
                .reason("through_seq", &through.to_string()),
        ],
    };
    commit_now(store, clock, unit)
        .await
        .map_err(|e| anyhow::anyhow!("cannot record the export: {e}"))?;
    let cursor = ExportCursor::new(store, after_seq, through).await?;
    let mut w = output(out)?;
    cursor.write_all(store, &mut w).await?;
    if let Some(p) = out {
        eprintln!(
            "exported the audit trail up to seq {through} to {}",
            p.display()
        );
    }
    Ok(())
}

/// Writes the checkpoint-signing public keys in the key file format. Needs
/// only the database, not the root key.
async fn public_key(settings: &Settings, out: Option<&Path>) -> anyhow::Result<()> {
    let url = settings.database_url().map_err(anyhow::Error::msg)?;
    let store = store::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = public_keys(store.as_ref()).await?;
    if keys.is_empty() {
        anyhow::bail!("the vault has no signing key yet: run `pii-vault migrate` first");
    }
    let mut w = output(out)?;
    w.write_all(checkpoint::key_file(&keys).as_bytes())?;
    w.flush()?;
    Ok(())
}

/// Signs and stores a checkpoint of the chain head.
async fn sign_checkpoint(settings: &Settings, clock: &dyn Clock) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let store = opened.store.as_ref();
    let tokens = opened.keys.tokens();
    let Some(row) = checkpoint::sign_head(store, tokens.signing_key(), clock.now_micros()).await?
    else {
        println!("the audit trail is empty: nothing to sign");
        return Ok(());
    };
    let (seq, kid) = (row.seq, row.kid.clone());
    let unit = Unit {
        mutations: vec![Mutation::InsertCheckpoint(row)],
        events: Vec::new(),
    };
    commit_now(store, clock, unit)
        .await
        .map_err(|e| anyhow::anyhow!("cannot store the checkpoint: {e}"))?;
    println!("checkpoint at seq {seq} signed by {kid}");
    Ok(())
}

/// Deletes the events past `audit_retention_days`, up to the last signed
/// checkpoint before that age.
async fn prune(settings: &Settings, clock: &dyn Clock) -> anyhow::Result<()> {
    let url = settings.database_url().map_err(anyhow::Error::msg)?;
    let store = store::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let days = settings.audit_retention_days;
    match retention::prune_now(store.as_ref(), clock, days, "cli", "admin").await? {
        Some(p) => println!(
            "pruned the audit events up to seq {} (older than {days} days); the trail now starts after the checkpoint at seq {}",
            p.through_seq, p.through_seq
        ),
        None => println!("nothing to prune: no signed checkpoint is older than {days} days"),
    }
    Ok(())
}

/// The published keys as stored: the active key is current.
pub async fn public_keys(store: &dyn Store) -> anyhow::Result<Vec<checkpoint::PublishedKey>> {
    let rows = store.signing_keys().await?;
    let current = rows
        .iter()
        .rev()
        .find(|r| r.active)
        .map(|r| r.kid.clone())
        .unwrap_or_default();
    Ok(checkpoint::published_keys(store, &[], &current).await?)
}
