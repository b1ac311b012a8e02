//! `pii-vault tombstones …`: check the tombstone log (every entry's MAC,
//! the chain, the head the vault's database recorded) and repair it.

use std::sync::Arc;

use clap::Subcommand;

use super::cli_event;
use crate::audit::sequencer::commit_now;
use crate::audit::{Action, Committer};
use crate::clock::Clock;
use crate::config::Settings;
use crate::requests::erasure::TombstoneCheck;
use crate::store::Unit;

#[derive(Debug, Subcommand)]
pub enum TombstonesCommand {
    /// Check the tombstone log: every entry's MAC, the chain from entry 1,
    /// and its head against the one the vault's database recorded. Exit 0
    /// when it verifies, 1 naming each problem (a forged, altered, removed
    /// or reordered entry, a cut-back end, unauthenticated lines).
    Verify,
    /// With every vault process stopped: keep the entries whose MAC
    /// verifies, in order, drop every other line, and seal them again as
    /// one chain (the old log is kept as `….before-repair`). An erasure
    /// whose entry was removed is added again at the next start if the
    /// database still records it. Recorded as `tombstones.repair`.
    Repair,
}

pub async fn run(
    command: TombstonesCommand,
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let clock = clock.as_ref();
    let opened = crate::open(settings, clock, false, false).await?;
    let log = super::tombstone_log(settings, &opened).await?;
    let store = opened.store.as_ref();
    let check = log.check(store).await?;
    print_check(&check);
    match command {
        TombstonesCommand::Verify => {
            if check.ok() {
                Ok(())
            } else {
                anyhow::bail!(
                    "the tombstone log is not valid: nothing in it is acted on, and the vault \
                     serves no customer data, until this is resolved (restore the log from a \
                     copy, run `pii-vault migrate` for unauthenticated lines, or \
                     `pii-vault tombstones repair`; docs/ERASURE.md)"
                )
            }
        }
        TombstonesCommand::Repair => {
            if check.ok() {
                println!("nothing to repair");
                return Ok(());
            }
            if check.problems.is_empty() {
                anyhow::bail!("run `pii-vault migrate` to authenticate the unauthenticated lines");
            }
            let committer = Committer::Direct { store, clock };
            let kept = log.repair(&committer, &check).await?;
            let dropped = check.lines.saturating_sub(kept as u64);
            let ev = cli_event(Action::TombstonesRepair)
                .reason("kept", &kept.to_string())
                .reason("dropped", &dropped.to_string())
                .reason("problems", &check.problems.len().to_string());
            commit_now(store, clock, Unit::event(ev))
                .await
                .map_err(|e| anyhow::anyhow!("cannot record the repair: {e}"))?;
            println!(
                "repaired: kept {kept} authentic entries, dropped {dropped} line(s); the old log \
                 is kept as {}.before-repair. Start the vault to check it again.",
                check.location
            );
            Ok(())
        }
    }
}

fn print_check(c: &TombstoneCheck) {
    println!("tombstone log: {}", c.location);
    if c.ok() {
        let last = c.head.as_ref().map(|h| h.n).unwrap_or(0);
        let recorded = c
            .recorded
            .as_ref()
            .map(|h| format!("; the vault's database records entry {}", h.n))
            .unwrap_or_default();
        println!(
            "ok: {} entries, chained from entry 1 to entry {last}{recorded}",
            c.entries.len()
        );
        if c.adopted() > 0 {
            println!(
                "{} of them were authenticated as they stood from an earlier version's \
                 unauthenticated file",
                c.adopted()
            );
        }
        return;
    }
    if let Some(s) = c.summary().filter(|_| c.problems.is_empty()) {
        println!("not authenticated: {s}");
    }
    for p in &c.problems {
        println!("broken: {p}");
    }
}
