//! Storage limitation (GDPR Art. 5(1)(e)): the retention sweeper.
//!
//! Every purpose a value was collected for has its own end of retention
//! (`value_purposes.expires_at`, indexed). The sweeper finds the customers
//! with a purpose past its end and, per customer in one unit:
//! - removes each such purpose from its value;
//! - deletes a value once no purpose is left (its blind-index entries go
//!   with it);
//! - audits it: `retention.expired` (decision `deleted`) naming the deleted
//!   fields, `retention.purpose_removed` naming values that keep other
//!   purposes, with the removed purposes as reasons.
//!
//! A value under an active legal hold is left alone (retention is suspended
//! while the hold lasts). A partially erased customer is re-evaluated by
//! [`erasure::settle`](crate::requests::erasure::settle): when its last kept
//! value runs out, its data key is destroyed. A customer whose erasure job
//! is running is left to that job.
//!
//! The deletes are conditional (`expires_at <= now`, "no purpose left"), so
//! a value rewritten meanwhile, or a sweep running in two processes at once,
//! never loses a purpose that has not run out.
//!
//! Runs in the background every `sweep_interval_secs` while serving, and as
//! `pii-vault sweep [--as-of RFC3339]`. Time comes from the injected clock.

use crate::actor::Actor;
use crate::audit::{Action, Decision};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::Duration;

use uuid::Uuid;

use crate::requests::erasure::{Ctx, EraseError, settle};
use crate::state::{AppState, Inner};
use crate::store::{Mutation, Unit};

/// Customers read per batch.
const BATCH: i64 = 200;

/// What a sweep did (so far).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub customers: u64,
    pub values_deleted: u64,
    pub purposes_removed: u64,
    /// Partially erased customers re-evaluated.
    pub erasures_settled: u64,
    /// Values left alone because a legal hold covers them.
    pub held: u64,
}

/// The changes one customer's expired purposes call for (pure).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Field → the purposes to remove from it.
    pub remove: BTreeMap<String, Vec<String>>,
    /// Fields left with no purpose: deleted.
    pub delete: Vec<String>,
    /// Fields with expired purposes that a hold keeps.
    pub held: Vec<String>,
}

/// Decides what expires for one customer at `now`.
pub fn expiry(
    fields: &[crate::store::FieldRow],
    held_fields: &BTreeSet<String>,
    now: i64,
) -> Expiry {
    let mut out = Expiry::default();
    for row in fields {
        let expired: Vec<String> = row
            .purposes
            .iter()
            .filter(|p| p.expires_at <= now)
            .map(|p| p.purpose.clone())
            .collect();
        if expired.is_empty() {
            continue;
        }
        if held_fields.contains(&row.field) {
            out.held.push(row.field.clone());
            continue;
        }
        if expired.len() == row.purposes.len() {
            out.delete.push(row.field.clone());
        }
        out.remove.insert(row.field.clone(), expired);
    }
    out
}

/// Sweeps everything expired at `now`; `progress` is called after each batch.
pub async fn sweep(
    ctx: &Ctx<'_>,
    now: i64,
    mut progress: impl FnMut(&SweepReport),
) -> Result<SweepReport, EraseError> {
    let mut report = SweepReport::default();
    let actor = Actor::system();
    // Idempotency records past their time (they may name a customer and
    // fingerprint a request): deleted, the keys are free again.
    ctx.commit(Unit {
        mutations: vec![Mutation::PruneIdempotency {
            before: now.saturating_sub(ctx.idempotency_ttl),
        }],
        events: Vec::new(),
    })
    .await
    .map_err(|_| EraseError::Unavailable)?;
    let mut after = Uuid::nil();
    loop {
        let batch = ctx
            .store
            .customers_with_expired_purposes(now, after, BATCH)
            .await?;
        let Some(last) = batch.last() else { break };
        after = *last;
        for customer in batch {
            sweep_customer(ctx, customer, now, &actor, &mut report).await?;
            report.customers += 1;
        }
        progress(&report);
    }
    Ok(report)
}

async fn sweep_customer(
    ctx: &Ctx<'_>,
    customer: Uuid,
    now: i64,
    actor: &Actor,
    report: &mut SweepReport,
) -> Result<(), EraseError> {
    match ctx.store.erasure_job(customer).await? {
        Some(job) if job.status == crate::store::ErasureJobStatus::Partial => {
            settle(ctx, customer, actor, "retention_expired").await?;
            report.erasures_settled += 1;
            return Ok(());
        }
        Some(_) => return Ok(()),
        None => {}
    }
    let Some(record) = ctx.store.customer_record(customer).await? else {
        return Ok(());
    };
    let held_fields: BTreeSet<String> = ctx
        .store
        .legal_holds(Some(customer))
        .await?
        .into_iter()
        .filter(|h| h.released_at.is_none())
        .flat_map(|h| h.fields)
        .collect();
    let e = expiry(&record.fields, &held_fields, now);
    report.held += e.held.len() as u64;
    if e.remove.is_empty() {
        return Ok(());
    }
    let mut mutations = Vec::new();
    for (field, purposes) in &e.remove {
        for p in purposes {
            mutations.push(Mutation::ExpirePurpose {
                customer_id: customer,
                field: field.clone(),
                purpose: p.clone(),
                now,
            });
        }
        mutations.push(Mutation::DeleteFieldIfUnused {
            customer_id: customer,
            field: field.clone(),
        });
    }
    let mut events = Vec::new();
    if !e.delete.is_empty() {
        let mut ev = crate::audit::EventDraft::new(
            &actor.id,
            &actor.role,
            Action::RetentionExpired,
            Decision::Deleted,
            &actor.request_id,
        )
        .customer(customer)
        .fields(e.delete.clone());
        for f in &e.delete {
            ev = ev.reason(f, &e.remove.get(f).map(|p| p.join(",")).unwrap_or_default());
        }
        // Recipients the values were disclosed to are told they are gone
        // (GDPR Art. 17(1)(a), Art. 19), in the same unit.
        let notices = crate::requests::outbox::recipient_notices(
            ctx.store,
            ctx.policy,
            customer,
            "erasure",
            None,
            &e.delete,
            ctx.clock.now_micros(),
        )
        .await?;
        ev = ev.reason("recipients_notified", &notices.len().to_string());
        mutations.extend(notices);
        events.push(ev);
    }
    let trimmed: Vec<&String> = e.remove.keys().filter(|f| !e.delete.contains(f)).collect();
    if !trimmed.is_empty() {
        let mut ev = crate::audit::EventDraft::new(
            &actor.id,
            &actor.role,
            Action::RetentionPurposeRemoved,
            Decision::Allowed,
            &actor.request_id,
        )
        .customer(customer)
        .fields(trimmed.iter().map(|f| (*f).clone()));
        for f in &trimmed {
            ev = ev.reason(
                f,
                &e.remove.get(*f).map(|p| p.join(",")).unwrap_or_default(),
            );
        }
        events.push(ev);
    }
    ctx.commit(Unit { mutations, events })
        .await
        .map_err(|_| EraseError::Unavailable)?;
    report.values_deleted += e.delete.len() as u64;
    report.purposes_removed += e.remove.values().map(|p| p.len() as u64).sum::<u64>();
    Ok(())
}

/// Starts the background sweeper: every `sweep_interval_secs` (0: never),
/// as of the state's clock; it stops with the state. Errors are logged and
/// the next run tries again.
pub fn start_background(state: &AppState) {
    let secs = state.settings.sweep_interval_secs;
    if secs > 0 {
        tokio::spawn(sweep_loop(state.downgrade(), Duration::from_secs(secs)));
    }
}

async fn sweep_loop(weak: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(state) = AppState::upgrade(&weak) else {
            return;
        };
        let ctx = Ctx::from_state(&state);
        match sweep(&ctx, state.clock.now_micros(), |_| {}).await {
            Ok(r) if r.values_deleted + r.purposes_removed + r.erasures_settled > 0 => {
                tracing::info!(
                    customers = r.customers,
                    values_deleted = r.values_deleted,
                    purposes_removed = r.purposes_removed,
                    erasures_settled = r.erasures_settled,
                    "retention sweep"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention sweep failed; retrying next interval"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FieldRow, ValuePurpose};

    fn row(field: &str, purposes: &[(&str, i64)]) -> FieldRow {
        FieldRow {
            field: field.into(),
            ciphertext: vec![],
            collected_by: "c".into(),
            channel: None,
            notice_version: None,
            collected_at: 0,
            purposes: purposes
                .iter()
                .map(|(p, e)| ValuePurpose {
                    purpose: (*p).into(),
                    collected_at: 0,
                    expires_at: *e,
                })
                .collect(),
        }
    }

    #[test]
    fn removes_expired_purposes_and_deletes_values_left_without_one() {
        let fields = vec![
            row("phone", &[("support.callback", 90)]),
            row("email", &[("support", 700), ("billing", 50)]),
            row("name", &[("support", 700)]),
            row("address", &[("billing", 10)]),
        ];
        let held: BTreeSet<String> = ["address".to_owned()].into();
        let e = expiry(&fields, &held, 100);
        assert_eq!(e.delete, vec!["phone".to_owned()]);
        assert_eq!(
            e.remove,
            BTreeMap::from([
                ("email".to_owned(), vec!["billing".to_owned()]),
                ("phone".to_owned(), vec!["support.callback".to_owned()]),
            ])
        );
        assert_eq!(e.held, vec!["address".to_owned()]);
        // Exactly at the end of retention the purpose has run out.
        assert_eq!(expiry(&fields, &held, 90).delete, vec!["phone".to_owned()]);
        assert_eq!(expiry(&fields, &held, 9), Expiry::default());
    }
}
