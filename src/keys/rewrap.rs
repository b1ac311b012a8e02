//! Rewrap: every data key wrapped by an older KEK version is unwrapped and
//! wrapped again with the active one; field values are never touched.
//!
//! The work is in batches (`rewrap_batch_size` data keys per unit, each unit
//! one transaction with its `keys.rewrap` audit event), and the state lives
//! in the rows themselves: whatever still names an older version is still to
//! do. A crash loses at most the batch in flight, and the next pass picks up
//! the rest. Each row is updated only if it still names the version it was
//! read with, so a concurrent erasure, rewrap or second process is never
//! overwritten.

use crate::audit::{Action, Decision};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Actor, Committer, KeyError, refresh};
use crate::clock::Clock;
use crate::crypto::SIGNING_KEY_LABEL;
use crate::store::{Mutation, Store, Unit};
use crate::vault::Keys;

/// What a pass did.
#[derive(Debug, Clone, Default)]
pub struct RewrapReport {
    /// Data keys moved to the active version.
    pub rewrapped: u64,
    /// Sealed signing keys moved to the active version.
    pub signing_keys: u64,
    /// Data keys that could not be unwrapped (left where they are).
    pub failed: u64,
    /// Older versions this process has not loaded (another process rotated;
    /// the keyring poll will load them).
    pub skipped_versions: Vec<i64>,
    /// Batches committed.
    pub batches: u64,
    pub elapsed: Duration,
}

/// Progress reported after each batch.
#[derive(Debug, Clone)]
pub struct BatchProgress {
    pub from_version: i64,
    pub to_version: i64,
    /// Data keys on `from_version` when the pass reached it.
    pub total: u64,
    /// Rewrapped from it so far in this pass.
    pub done: u64,
}

/// Whether any data key or sealed signing key still names a KEK version
/// older than the active one (cheap: one index probe per older version).
pub async fn has_work(keys: &Keys, store: &dyn Store) -> Result<bool, KeyError> {
    let active = keys.keyring().active_version();
    for s in store.kek_states().await? {
        if s.version < active
            && s.has_material
            && !store.dek_batch(s.version, Uuid::nil(), 1).await?.is_empty()
        {
            return Ok(true);
        }
    }
    Ok(super::all_signing_keys(store)
        .await?
        .iter()
        .any(|(_, s)| s.row.kek_version < active && !s.row.sealed.is_empty()))
}

/// One pass over everything wrapped by an older version. `keep_going` is
/// asked between batches (a stopping process ends the pass early);
/// `on_batch` sees the progress after each committed batch; `pause` is the
/// breather between batches that lets normal traffic through.
#[allow(clippy::too_many_arguments)]
pub async fn run_pass(
    keys: &Keys,
    store: &dyn Store,
    committer: &Committer<'_>,
    clock: &dyn Clock,
    batch_size: usize,
    pause: Duration,
    actor: &Actor,
    keep_going: &(dyn Fn() -> bool + Send + Sync),
    on_batch: &mut (dyn FnMut(&BatchProgress) + Send),
) -> Result<RewrapReport, KeyError> {
    let started = Instant::now();
    let mut report = RewrapReport::default();
    keys.rotation.update_progress(|p| p.running = true);
    let result = pass(
        keys,
        store,
        committer,
        clock,
        batch_size.max(1),
        pause,
        actor,
        keep_going,
        on_batch,
        &mut report,
    )
    .await;
    keys.rotation.update_progress(|p| p.running = false);
    report.elapsed = started.elapsed();
    result.map(|()| report)
}

#[allow(clippy::too_many_arguments)]
async fn pass(
    keys: &Keys,
    store: &dyn Store,
    committer: &Committer<'_>,
    clock: &dyn Clock,
    batch_size: usize,
    pause: Duration,
    actor: &Actor,
    keep_going: &(dyn Fn() -> bool + Send + Sync),
    on_batch: &mut (dyn FnMut(&BatchProgress) + Send),
    report: &mut RewrapReport,
) -> Result<(), KeyError> {
    report.signing_keys += rewrap_signing_keys(keys, store, committer, actor).await?;
    let limit = i64::try_from(batch_size).unwrap_or(500);
    let usage = store.kek_usage().await?;
    let active = keys.keyring().active_version();
    keys.rotation.update_progress(|p| {
        p.versions.clear();
        for u in usage.iter().filter(|u| u.kek_version < active) {
            p.versions
                .insert(u.kek_version, (u64::try_from(u.data_keys).unwrap_or(0), 0));
        }
    });
    for u in usage.into_iter().filter(|u| u.kek_version < active) {
        let (from_version, count) = (u.kek_version, u.data_keys);
        if !keys.keyring().has_version(from_version) {
            keys.rotation.request_reload();
            report.skipped_versions.push(from_version);
            continue;
        }
        let total = u64::try_from(count).unwrap_or(0);
        let mut done = 0u64;
        // Start at a random id and wrap around once: several processes
        // rewrapping at the same time then mostly work on different rows.
        let start = random_id();
        let mut cursor = start;
        let mut second_half = start.is_nil();
        loop {
            if !keep_going() {
                return Ok(());
            }
            let mut rows = store.dek_batch(from_version, cursor, limit).await?;
            let fetched = rows.len();
            if second_half && !start.is_nil() {
                // Up to the starting point only: beyond it is the first half.
                rows.retain(|r| r.customer_id <= start);
            }
            let Some(last) = rows.last().map(|r| r.customer_id) else {
                if second_half {
                    break;
                }
                second_half = true;
                cursor = Uuid::nil();
                continue;
            };
            cursor = last;
            let reached_start = rows.len() < fetched;
            let keyring = keys.keyring();
            let to_version = keyring.active_version();
            let mut mutations = Vec::with_capacity(rows.len());
            for row in &rows {
                match keyring.rewrap_dek(row.customer_id, from_version, &row.wrapped_dek) {
                    Ok((kek_version, wrapped_dek)) => mutations.push(Mutation::RewrapDek {
                        customer_id: row.customer_id,
                        from_version,
                        kek_version,
                        wrapped_dek,
                    }),
                    Err(e) => {
                        report.failed += 1;
                        keys.rotation.update_progress(|p| p.failed += 1);
                        tracing::warn!(customer_id = %row.customer_id, kek_version = from_version,
                            error = %e, "rewrap: data key cannot be unwrapped; left on its version");
                    }
                }
            }
            if mutations.is_empty() {
                if reached_start {
                    break;
                }
                continue;
            }
            let n = mutations.len() as u64;
            let unit = Unit {
                mutations,
                events: vec![
                    actor
                        .event(Action::KeysRewrap, Decision::Allowed)
                        .reason("from_version", &from_version.to_string())
                        .reason("to_version", &to_version.to_string())
                        .reason("data_keys", &n.to_string()),
                ],
            };
            committer
                .commit(unit)
                .await
                .map_err(|_| KeyError::Unavailable)?;
            done += n;
            report.rewrapped += n;
            report.batches += 1;
            let now = clock.now_micros();
            keys.rotation.update_progress(|p| {
                p.rewrapped += n;
                p.last_batch_at = Some(now);
                if let Some(e) = p.versions.get_mut(&from_version) {
                    e.1 += n;
                }
            });
            metrics::counter!("pii_vault_keys_rewrapped_total").increment(n);
            refresh::set_remaining_gauge(from_version, total.saturating_sub(done));
            on_batch(&BatchProgress {
                from_version,
                to_version,
                total: total.max(done),
                done,
            });
            if reached_start {
                break;
            }
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
        }
    }
    Ok(())
}

/// Moves sealed signing keys (the active one; replaced ones have no private
/// key left) to the active KEK version.
async fn rewrap_signing_keys(
    keys: &Keys,
    store: &dyn Store,
    committer: &Committer<'_>,
    actor: &Actor,
) -> Result<u64, KeyError> {
    let keyring = keys.keyring();
    let active = keyring.active_version();
    let mut mutations = Vec::new();
    let mut kids = Vec::new();
    for (key_use, s) in super::all_signing_keys(store).await? {
        let row = s.row;
        if row.sealed.is_empty() || row.kek_version >= active {
            continue;
        }
        if !keyring.has_version(row.kek_version) {
            keys.rotation.request_reload();
            continue;
        }
        let pkcs8 = keyring.open(SIGNING_KEY_LABEL, row.kek_version, &row.sealed)?;
        let (kek_version, sealed) = keyring.seal(SIGNING_KEY_LABEL, &pkcs8)?;
        kids.push(row.kid.clone());
        mutations.push(Mutation::RewrapSigningKey {
            key_use,
            kid: row.kid,
            from_version: row.kek_version,
            kek_version,
            sealed,
        });
    }
    if mutations.is_empty() {
        return Ok(0);
    }
    let n = mutations.len() as u64;
    let unit = Unit {
        mutations,
        events: vec![
            actor
                .event(Action::KeysRewrap, Decision::Allowed)
                .reason("to_version", &active.to_string())
                .reason("signing_keys", &kids.join(",")),
        ],
    };
    committer
        .commit(unit)
        .await
        .map_err(|_| KeyError::Unavailable)?;
    Ok(n)
}

fn random_id() -> Uuid {
    let mut bytes = [0u8; 16];
    match crate::crypto::envelope::fill_random(&mut bytes) {
        Ok(()) => Uuid::from_bytes(bytes),
        Err(_) => Uuid::nil(),
    }
}
