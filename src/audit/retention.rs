//! Retention of the audit trail: events older than `audit_retention_days`
//! are deleted, but only up to (and including) a signed checkpoint, which is
//! kept. The trail then starts just after that checkpoint and still
//! verifies from it. Pruning is itself an audit event (`audit.prune`).

use crate::audit::{Action, Decision};
use std::time::Duration;

use super::EventDraft;
use super::sequencer::{CommitError, commit_now};
use crate::clock::{Clock, rfc3339};
use crate::state::AppState;
use crate::store::{Mutation, Store, StoreResult, Unit};
use crate::vault::SYSTEM_ACTOR;

const DAY_MICROS: i64 = 86_400_000_000;

/// What a prune would remove: events up to `through_seq`, all older than
/// `before` (microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunePlan {
    pub through_seq: i64,
    pub before: i64,
}

/// The latest signed checkpoint whose event is older than the retention
/// period, if any: everything up to it may go.
pub async fn plan(
    store: &dyn Store,
    now: i64,
    retention_days: i64,
) -> StoreResult<Option<PrunePlan>> {
    let before = now.saturating_sub(retention_days.saturating_mul(DAY_MICROS));
    let Some(through_seq) = store.audit_prune_point(before).await? else {
        return Ok(None);
    };
    // Nothing to do when the trail already starts after it.
    let first = store
        .audit_events(&crate::store::AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await?;
    match first.first() {
        Some(e) if e.seq <= through_seq => Ok(Some(PrunePlan {
            through_seq,
            before,
        })),
        _ => Ok(None),
    }
}

/// The unit that prunes and records it.
pub fn unit(plan: PrunePlan, actor: &str, role: &str, request_id: &str) -> Unit {
    Unit {
        mutations: vec![Mutation::PruneAudit {
            through_seq: plan.through_seq,
            before: plan.before,
        }],
        events: vec![
            EventDraft::new(
                actor,
                role,
                Action::AuditPrune,
                Decision::Allowed,
                request_id,
            )
            .reason("through_seq", &plan.through_seq.to_string())
            .reason("older_than", &rfc3339(plan.before)),
        ],
    }
}

/// Prunes through `commit_now` (command line). `Ok(None)`: nothing to prune.
pub async fn prune_now(
    store: &dyn Store,
    clock: &dyn Clock,
    retention_days: i64,
    actor: &str,
    role: &str,
) -> Result<Option<PrunePlan>, anyhow::Error> {
    let Some(p) = plan(store, clock.now_micros(), retention_days).await? else {
        return Ok(None);
    };
    let rid = uuid::Uuid::now_v7().to_string();
    commit_now(store, clock, unit(p, actor, role, &rid)).await?;
    Ok(Some(p))
}

/// Prunes through the running vault's sequencer.
pub async fn prune(state: &AppState) -> Result<Option<PrunePlan>, CommitError> {
    let p = plan(
        state.store.as_ref(),
        state.clock.now_micros(),
        state.settings.audit_retention_days,
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "audit retention: cannot read the trail");
        CommitError::Unavailable
    })?;
    let Some(p) = p else { return Ok(None) };
    let rid = uuid::Uuid::now_v7().to_string();
    state
        .sequencer
        .commit(unit(p, SYSTEM_ACTOR, SYSTEM_ACTOR, &rid))
        .await?;
    tracing::info!(
        through_seq = p.through_seq,
        "audit events past retention pruned"
    );
    Ok(Some(p))
}

/// Prunes once an hour (the first time a minute after start), until the
/// state is dropped.
pub async fn run_pruner(weak: std::sync::Weak<crate::state::Inner>) {
    let first = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut interval = tokio::time::interval_at(first, Duration::from_secs(3600));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(state) = AppState::upgrade(&weak) else {
            return;
        };
        if let Err(e) = prune(&state).await {
            tracing::warn!(error = %e, "audit retention: prune failed; retrying later");
        }
    }
}
