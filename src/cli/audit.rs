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
use crate::store::{self, Unit};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an export offline with the public key file: every hash, no
    /// gap, every checkpoint signature, a signed end. With `--since`, also
    /// that it extends the export verified last time (nothing cut back or
    /// rewritten in between). Needs no database. Exit 0 when it verifies, 1
    /// naming the first bad event, 2 when a file cannot be read.
    Verify {
        /// Public key file: lines of `KID BASE64-PUBLIC-KEY`
        /// (from `pii-vault audit public-key`). Only these keys are trusted.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// The previous export: EXPORT must extend it (hold its last event,
        /// with the same hash).
        #[arg(long, value_name = "PREVIOUS_EXPORT")]
        since: Option<PathBuf>,
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
    /// After restoring an older backup of the database (the trail in it no
    /// longer reaches the last checkpoint witnessed outside the database):
    /// accept its chain head as the new point the trail must extend. The
    /// trail must verify on its own. The rollback is appended to the
    /// witness (what was abandoned, what was accepted) and recorded as
    /// `audit.rollback_accepted`.
    AcceptRollback,
    /// Delete events older than `audit_retention_days`, up to the last
    /// signed checkpoint before that age (which is kept). Recorded as
    /// `audit.prune`.
    Prune,
}

/// `pii-vault audit verify`: runs without settings or database. Exit 0
/// when the export verifies (and extends `since`), 1 when it does not, 2
/// when a file cannot be read.
pub fn verify(public_key: &Path, since: Option<&Path>, export_file: &Path) -> Exit {
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
    if let Some(old) = since {
        return verify_since(&keys, old, export_file);
    }
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

/// `--since OLD NEW`: OLD verifies, NEW verifies and extends OLD.
fn verify_since(keys: &PublicKeys, old: &Path, new: &Path) -> Exit {
    if let Err(e) = std::fs::File::open(new) {
        eprintln!("pii-vault: cannot read {}: {e}", new.display());
        return Exit::Unreadable;
    }
    match export::verify_extends(old, new, keys) {
        Ok((before, None)) => {
            println!(
                "the previous export {} does not verify: {}",
                old.display(),
                export::describe(&before)
            );
            Exit::Failure
        }
        Ok((before, Some(after))) => {
            if after.ok {
                println!(
                    "{}; it extends the previous export (seq {}, hash {})",
                    export::describe(&after),
                    before.head_seq,
                    before.head
                );
                Exit::Success
            } else {
                println!(
                    "{}\nit does not extend the previous export {} (which ends at seq {}): the trail \
                     was cut back or rewritten in between, or the export starts too late \
                     (export with --after-seq {} or less)",
                    export::describe(&after),
                    old.display(),
                    before.head_seq,
                    before.head_seq
                );
                Exit::Failure
            }
        }
        Err(e) => {
            eprintln!(
                "pii-vault: cannot read {} or {}: {e}",
                old.display(),
                new.display()
            );
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
        AuditCommand::PublicKey { output } => public_key(settings, clock, output.as_deref()).await,
        AuditCommand::Checkpoint => sign_checkpoint(settings, clock).await,
        AuditCommand::AcceptRollback => accept_rollback(settings, clock).await,
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
    let tamper = open_tamper(settings, &opened).await?;
    let store = opened.store.as_ref();
    let signer = opened.keys.checkpoint();
    let row = checkpoint::sign_head(store, signer.signing_key(), clock.now_micros())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the audit trail is empty"))?;
    let through = row.seq;
    let mut ev = cli_event(Action::AuditExport)
        .reason("after_seq", &after_seq.to_string())
        .reason("through_seq", &through.to_string());
    let mutations =
        match checkpoint::witness_checkpoint(&tamper, store, signer.signing_key(), &row).await {
            Ok(m) => m,
            Err(checkpoint::WitnessError::Mismatch(why)) => {
                eprintln!(
                    "pii-vault: warning: {why}\nthe export ends without a fresh signed checkpoint \
                     and will not verify on its own"
                );
                ev = ev.reason("unsigned", "witness_mismatch");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
    let unit = Unit {
        mutations,
        events: vec![ev],
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

/// Writes the checkpoint-signing public keys verification trusts, in the
/// key file format: the key whose private half the keyring holds, and the
/// keys the audit witness records. Needs the root key (public-key rows of
/// the database alone are never published).
async fn public_key(
    settings: &Settings,
    clock: &dyn Clock,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let tamper = open_tamper(settings, &opened).await?;
    let witness = checkpoint::read_witness(&tamper, opened.store.as_ref()).await?;
    if let Some(p) = &witness.problem {
        eprintln!("pii-vault: warning: {p}");
    }
    let signer = opened.keys.checkpoint();
    let keys = checkpoint::trusted_keys(signer.signing_key(), &witness.keys);
    let mut w = output(out)?;
    w.write_all(checkpoint::key_file(&keys).as_bytes())?;
    w.flush()?;
    Ok(())
}

/// Signs, witnesses and stores a checkpoint of the chain head.
async fn sign_checkpoint(settings: &Settings, clock: &dyn Clock) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let tamper = open_tamper(settings, &opened).await?;
    let store = opened.store.as_ref();
    let signer = opened.keys.checkpoint();
    let Some(row) = checkpoint::sign_head(store, signer.signing_key(), clock.now_micros()).await?
    else {
        println!("the audit trail is empty: nothing to sign");
        return Ok(());
    };
    let (seq, kid) = (row.seq, row.kid.clone());
    let mutations =
        checkpoint::witness_checkpoint(&tamper, store, signer.signing_key(), &row).await?;
    let unit = Unit {
        mutations,
        events: Vec::new(),
    };
    commit_now(store, clock, unit)
        .await
        .map_err(|e| anyhow::anyhow!("cannot store the checkpoint: {e}"))?;
    println!("checkpoint at seq {seq} signed by {kid}");
    Ok(())
}

/// `audit accept-rollback`: the restored trail's head becomes the point the
/// trail must extend, once the trail verifies on its own.
async fn accept_rollback(settings: &Settings, clock: &dyn Clock) -> anyhow::Result<()> {
    use crate::tamper::witness::WitnessRecord;
    let opened = crate::open(settings, clock, false, false).await?;
    let tamper = open_tamper(settings, &opened).await?;
    let store = opened.store.as_ref();
    let witness = checkpoint::read_witness(&tamper, store).await?;
    if let Some(p) = witness.problem {
        anyhow::bail!("{p}: the witness itself must be restored first");
    }
    let Some(point) = witness.point else {
        println!("nothing witnessed yet: nothing to accept");
        return Ok(());
    };
    if checkpoint::witness_state(&tamper, store)
        .await?
        .problem()
        .is_none()
    {
        println!(
            "the trail extends the last witnessed checkpoint (seq {}): nothing to accept",
            point.seq
        );
        return Ok(());
    }
    let signer = opened.keys.checkpoint();
    let keys = checkpoint::to_public_keys(&checkpoint::trusted_keys(
        signer.signing_key(),
        &witness.keys,
    ));
    let report = crate::audit::verify::verify_store(store, &keys, None).await?;
    if !report.ok {
        anyhow::bail!(
            "the trail in the database does not verify on its own ({}): not accepted",
            export::describe(&report)
        );
    }
    let head = store.audit_head().await?;
    let (seq, hash) = (head.seq, hex::encode(head.hash));
    let rollback = WitnessRecord::Rollback {
        seq,
        hash: hash.clone(),
        abandoned_seq: point.seq,
        abandoned_hash: point.hash.clone(),
        at: crate::clock::rfc3339(clock.now_micros()),
    };
    let head = tamper.witness().append(vec![rollback]).await?;
    let mut mutations = Vec::new();
    if let Some(h) = head.filter(|_| tamper.anchored()) {
        mutations.push(crate::store::Mutation::ReplaceMeta {
            name: checkpoint::META_WITNESS_HEAD.into(),
            expected: None,
            value: h.encode(),
        });
    }
    let ev = cli_event(Action::AuditRollbackAccepted)
        .reason("abandoned_seq", &point.seq.to_string())
        .reason("accepted_seq", &seq.to_string());
    commit_now(
        store,
        clock,
        Unit {
            mutations,
            events: vec![ev],
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot record the rollback: {e}"))?;
    println!(
        "accepted: the trail now has to extend seq {seq} (hash {hash}); the witnessed checkpoint \
         at seq {} was abandoned",
        point.seq
    );
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

/// The tamper-evidence logs (the audit witness) of the opened vault.
async fn open_tamper(
    settings: &Settings,
    opened: &crate::Opened,
) -> anyhow::Result<crate::tamper::Tamper> {
    crate::tamper::Tamper::open(settings, &opened.keys.index, false)
        .await
        .map_err(anyhow::Error::msg)
}
