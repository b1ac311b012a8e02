//! Erasure (GDPR Art. 17, CCPA §1798.105) as one resumable job.
//!
//! The job is a row in `erasure_jobs`, written before anything is destroyed
//! and advanced one step per commit; every step is idempotent and guarded
//! (a step that another process already took fails its guard and the job is
//! re-read), so a job can be resumed from wherever it stopped:
//!
//! 1. **begin** — the job row, and the customer marked erased (`erased_at`,
//!    `external_id` cleared): from this commit on no read serves the
//!    customer;
//! 2. **consents** — every consent event and objection deleted;
//! 3. **values** — every value that nothing keeps is deleted with its
//!    purposes and blind-index entries; what is kept is recorded in the job;
//! 4. **keys** — with nothing kept: every remaining row deleted and the data
//!    key destroyed (`wrapped_dek` NULL: crypto-shredding). With values kept
//!    (`partially_erased`): those values are re-encrypted under a fresh data
//!    key in the same transaction that replaces the old key, their purposes
//!    cut down to the ones that keep them, and their index entries dropped.
//!    The key that protected the erased values is therefore gone at once in
//!    both cases; the fresh key protects only what is kept and is destroyed
//!    when the last kept value goes.
//!
//! Then the tombstone is appended to the tombstone log (authenticated and
//! durable, outside the database: [`TombstoneLog`]) before the receipt is
//! returned, and also kept in the `tombstones` table.
//!
//! What is kept: a value under an active legal hold covering its field
//! (kept for the hold's purpose, e.g. `legal.claims`, until the hold is
//! released), and a value collected for a `legal_obligation` purpose whose
//! retention has not run out (kept for that purpose only, until then).
//! While values are kept the customer is readable only for those purposes;
//! for every other purpose it is 404. Releasing a hold, or the retention
//! sweeper, calls [`settle`], which drops what is no longer kept and, when
//! nothing is left, finishes the erasure.
//!
//! At start-up (and `pii-vault migrate`) [`recover`] finishes every job that
//! a crash interrupted, and erases again every customer that the tombstone
//! log lists but the database still holds (an older backup was restored) —
//! only when every entry of the log verifies.

mod tombstone;

use crate::audit::{Action, Decision};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use tombstone::{Tombstone, TombstoneCheck, TombstoneError, TombstoneLog, tombstone_path};

use crate::actor::Actor;
use crate::audit::{CommitError, Committer, EventDraft, StoredEvent};
use crate::clock::{Clock, rfc3339};
use crate::config::Settings;
use crate::crypto::Dek;
use crate::error::ServiceError;
use crate::policy::{LegalBasis, Policy, covers};
use crate::state::AppState;
use crate::store::{
    CustomerRecord, ErasureJobRow, ErasureJobStatus, LegalHoldRow, Mutation, Store, StoreError,
    Unit, ValuePurpose,
};
use crate::vault::{Keys, SYSTEM_ACTOR};

/// `expires_at` of a purpose kept by a legal hold: no end until released.
pub const HELD: i64 = i64::MAX;

// ---------------------------------------------------------------------------
// The receipt
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErasureStatus {
    Erased,
    PartiallyErased,
}

/// A value kept despite the erasure, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetainedValue {
    pub field: String,
    /// The only purpose the value is still readable for.
    pub purpose: String,
    /// `legal_obligation`, or the basis of the legal hold keeping it.
    pub basis: String,
    /// End of the retention period, or the hold's review date.
    pub until: String,
}

/// The erasure receipt: the `result` of an erasure request and the answer
/// of `DELETE /v1/customers/{id}`. Holds no personal value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErasureReceipt {
    pub status: ErasureStatus,
    pub retained: Vec<RetainedValue>,
    pub receipt_id: Uuid,
    pub customer_id: Uuid,
    /// When the erasure began (from then on nothing was served).
    pub erased_at: String,
    /// When the last kept value went and the data key was destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

/// One kept (field, purpose), as recorded in the job row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Kept {
    pub field: String,
    pub purpose: String,
    pub basis: String,
    /// Retention end, or the hold's review date (micros).
    pub until: i64,
    pub collected_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<Uuid>,
}

fn parse_kept(json: &str) -> Vec<Kept> {
    serde_json::from_str(json).unwrap_or_default()
}

fn kept_json(kept: &[Kept]) -> String {
    serde_json::to_string(kept).unwrap_or_else(|_| "[]".into())
}

/// The receipt a job row describes.
pub fn receipt(job: &ErasureJobRow) -> ErasureReceipt {
    let kept = parse_kept(&job.retained);
    let mut retained: Vec<RetainedValue> = kept
        .iter()
        .map(|k| RetainedValue {
            field: k.field.clone(),
            purpose: k.purpose.clone(),
            basis: k.basis.clone(),
            until: rfc3339(k.until),
        })
        .collect();
    retained.dedup();
    let partial = match job.status {
        ErasureJobStatus::Partial => true,
        ErasureJobStatus::Running => !retained.is_empty(),
        ErasureJobStatus::Erased => false,
    };
    ErasureReceipt {
        status: if partial {
            ErasureStatus::PartiallyErased
        } else {
            ErasureStatus::Erased
        },
        retained: if partial { retained } else { Vec::new() },
        receipt_id: job.receipt_id,
        customer_id: job.customer_id,
        erased_at: rfc3339(job.started_at),
        completed_at: job.finished_at.map(rfc3339),
    }
}

// ---------------------------------------------------------------------------
// What is kept (pure)
// ---------------------------------------------------------------------------

/// The values an erasure at `now` keeps: those under an active hold
/// covering their field (for the hold's purpose), and those collected for a
/// `legal_obligation` purpose still within retention (for that purpose).
/// `force_full` keeps nothing.
pub fn retained_at(
    policy: &Policy,
    record: &CustomerRecord,
    holds: &[LegalHoldRow],
    now: i64,
    force_full: bool,
) -> Vec<Kept> {
    if force_full {
        return Vec::new();
    }
    let mut kept = Vec::new();
    for row in &record.fields {
        for p in &row.purposes {
            let lo = policy
                .purpose(&p.purpose)
                .is_some_and(|d| d.basis == LegalBasis::LegalObligation);
            if lo && p.expires_at > now {
                kept.push(Kept {
                    field: row.field.clone(),
                    purpose: p.purpose.clone(),
                    basis: LegalBasis::LegalObligation.as_str().to_owned(),
                    until: p.expires_at,
                    collected_at: p.collected_at,
                    hold_id: None,
                });
            }
        }
        kept.extend(hold_entries(holds, &row.field, now));
    }
    kept.sort();
    kept.dedup();
    kept
}

fn hold_entries<'a>(
    holds: &'a [LegalHoldRow],
    field: &'a str,
    now: i64,
) -> impl Iterator<Item = Kept> + 'a {
    holds
        .iter()
        .filter(move |h| h.released_at.is_none() && h.fields.iter().any(|f| f == field))
        .filter_map(move |h| {
            Some(Kept {
                field: field.to_owned(),
                purpose: h.purpose.clone()?,
                basis: h.basis.clone(),
                until: h.review_at,
                collected_at: now,
                hold_id: Some(h.id),
            })
        })
}

/// What stays kept of a partially erased customer at `now`: entries whose
/// retention has not run out or whose hold is still active, for values that
/// still exist, plus active holds placed since on those values.
pub fn still_kept(
    previous: &[Kept],
    holds: &[LegalHoldRow],
    stored_fields: &BTreeSet<String>,
    now: i64,
) -> Vec<Kept> {
    let active: BTreeSet<Uuid> = holds
        .iter()
        .filter(|h| h.released_at.is_none())
        .map(|h| h.id)
        .collect();
    let mut kept: Vec<Kept> = previous
        .iter()
        .filter(|k| stored_fields.contains(&k.field))
        .filter(|k| match k.hold_id {
            None => k.until > now,
            Some(h) => active.contains(&h),
        })
        .cloned()
        .collect();
    for field in stored_fields {
        for entry in hold_entries(holds, field, now) {
            if !kept
                .iter()
                .any(|k| k.hold_id == entry.hold_id && k.field == entry.field)
            {
                kept.push(entry);
            }
        }
    }
    kept.sort();
    kept.dedup();
    kept
}

/// The purposes a kept value carries: one row per kept purpose; a purpose a
/// hold keeps has no end (`HELD`) until the hold is released.
pub fn kept_purposes(kept: &[Kept], field: &str) -> Vec<ValuePurpose> {
    let mut by_purpose: BTreeMap<&str, ValuePurpose> = BTreeMap::new();
    for k in kept.iter().filter(|k| k.field == field) {
        let expires = if k.hold_id.is_some() { HELD } else { k.until };
        by_purpose
            .entry(&k.purpose)
            .and_modify(|vp| {
                vp.expires_at = vp.expires_at.max(expires);
                vp.collected_at = vp.collected_at.max(k.collected_at);
            })
            .or_insert(ValuePurpose {
                purpose: k.purpose.clone(),
                collected_at: k.collected_at,
                expires_at: expires,
            });
    }
    by_purpose.into_values().collect()
}

// ---------------------------------------------------------------------------
// Running the job
// ---------------------------------------------------------------------------

/// Why an erasure could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("customer not found")]
    NotFound,
    /// The customer's data is not at the version `If-Match` named.
    #[error("the customer's data changed")]
    PreconditionFailed,
    #[error("the database or the audit trail is unavailable")]
    Unavailable,
    #[error("{0}")]
    Tombstone(TombstoneError),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for EraseError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "database error during an erasure");
        EraseError::Unavailable
    }
}

impl From<EraseError> for ServiceError {
    fn from(e: EraseError) -> Self {
        match e {
            EraseError::NotFound => ServiceError::not_found("customer_not_found"),
            EraseError::PreconditionFailed => crate::customers::precondition_failed(),
            EraseError::Unavailable => ServiceError::unavailable(),
            other => ServiceError::internal(other),
        }
    }
}

/// What an erasure needs: the store, the policy, the keys, the clock, and
/// how to commit (through the sequencer when serving, directly from the
/// command line).
pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub policy: &'a Policy,
    pub keys: &'a Keys,
    pub clock: &'a dyn Clock,
    pub committer: Committer<'a>,
    pub tombstones: TombstoneLog,
    /// Test-only pause after each committed step (`test_erasure_pause_ms`).
    pub pause: Duration,
    /// Decide retention as of this time instead of the clock's (`sweep
    /// --as-of`); commits and audit events still carry the clock's time.
    pub as_of: Option<i64>,
    /// How long idempotency records live (`idempotency_ttl_hours`, in µs);
    /// the sweeper deletes older ones.
    pub idempotency_ttl: i64,
    /// `If-Match` on `DELETE /v1/customers/{id}`: the versions (see
    /// [`Mutation::ExpectCustomerVersion`]) the customer's data must be at
    /// when the erasure begins, checked in the same transaction.
    pub expect_versions: Option<String>,
}

/// `idempotency_ttl_hours` in µs.
pub fn idempotency_ttl(settings: &Settings) -> i64 {
    i64::from(settings.idempotency_ttl_hours).saturating_mul(3_600_000_000)
}

impl<'a> Ctx<'a> {
    pub fn from_state(state: &'a AppState) -> Self {
        Ctx {
            store: state.store.as_ref(),
            policy: &state.policy,
            keys: &state.keys,
            clock: state.clock.as_ref(),
            committer: Committer::Sequencer(&state.sequencer),
            tombstones: TombstoneLog::new(state.tamper.clone()),
            pause: Duration::from_millis(state.settings.test_erasure_pause_ms),
            as_of: None,
            idempotency_ttl: idempotency_ttl(&state.settings),
            expect_versions: None,
        }
    }

    /// For command-line tools: commits directly, no sequencer.
    pub fn direct(
        store: &'a dyn Store,
        policy: &'a Policy,
        keys: &'a Keys,
        clock: &'a dyn Clock,
        tombstones: TombstoneLog,
    ) -> Self {
        Ctx {
            store,
            policy,
            keys,
            clock,
            committer: Committer::Direct { store, clock },
            tombstones,
            pause: Duration::ZERO,
            as_of: None,
            idempotency_ttl: idempotency_ttl(&Settings::default()),
            expect_versions: None,
        }
    }

    /// The time retention is decided at.
    pub fn now(&self) -> i64 {
        self.as_of.unwrap_or_else(|| self.clock.now_micros())
    }

    /// The time what is recorded happened (a job's steps, its end, its
    /// notices): the clock's, also in a sweep run as of another time.
    pub fn stamp(&self) -> i64 {
        self.clock.now_micros()
    }

    pub async fn commit(&self, unit: Unit) -> Result<Vec<StoredEvent>, CommitError> {
        self.committer.commit(unit).await
    }

    async fn step_done(&self) {
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
    }
}

/// Erases a customer (the entry point for `DELETE /v1/customers/{id}` and for
/// completed erasure requests) and returns the receipt. Idempotent: an
/// erased customer's stored receipt is returned again; a job interrupted
/// earlier is finished. 404 `customer_not_found` for an unknown customer.
pub async fn erase(
    state: &AppState,
    customer: Uuid,
    actor: &Actor,
    request_id: Option<Uuid>,
) -> Result<ErasureReceipt, ServiceError> {
    erase_if(state, customer, actor, request_id, None).await
}

/// [`erase`], begun only while the customer's data is at one of
/// `expect_versions` (`If-Match`); 412 `precondition_failed` otherwise.
pub async fn erase_if(
    state: &AppState,
    customer: Uuid,
    actor: &Actor,
    request_id: Option<Uuid>,
    expect_versions: Option<String>,
) -> Result<ErasureReceipt, ServiceError> {
    let mut ctx = Ctx::from_state(state);
    ctx.expect_versions = expect_versions;
    let rid = request_id.map(|r| r.to_string());
    Ok(run(&ctx, customer, actor, rid.as_deref(), false).await?)
}

/// The stored receipt of an erased (or partially erased) customer.
pub async fn receipt_of(
    store: &dyn Store,
    customer: Uuid,
) -> Result<Option<ErasureReceipt>, StoreError> {
    Ok(store.erasure_job(customer).await?.map(|j| receipt(&j)))
}

/// Runs (or resumes) the erasure job of `customer` to its end.
pub async fn run(
    ctx: &Ctx<'_>,
    customer: Uuid,
    actor: &Actor,
    request_id: Option<&str>,
    force_full: bool,
) -> Result<ErasureReceipt, EraseError> {
    // Each pass takes one step; a guard that fails (another process took the
    // step) just means re-reading the job. Bounded, in case of a livelock.
    for _ in 0..32 {
        let Some(job) = ctx.store.erasure_job(customer).await? else {
            begin(ctx, customer, actor, request_id, force_full).await?;
            continue;
        };
        match (job.status, job.step) {
            (ErasureJobStatus::Erased, _) => return Ok(receipt(&job)),
            (ErasureJobStatus::Partial, _) if force_full => {
                finish(ctx, &job, actor, Vec::new(), "forced").await?;
            }
            (ErasureJobStatus::Partial, _) => return Ok(receipt(&job)),
            (ErasureJobStatus::Running, 1) => {
                delete_consents(ctx, &job, actor).await?;
            }
            (ErasureJobStatus::Running, 2) => {
                delete_values(ctx, &job, actor).await?;
            }
            (ErasureJobStatus::Running, 3) => {
                let kept = parse_kept(&job.retained);
                finish(ctx, &job, actor, kept, "erasure").await?;
            }
            (ErasureJobStatus::Running, step) => {
                return Err(EraseError::Internal(format!(
                    "running erasure job at an unknown step {step}"
                )));
            }
        }
    }
    Err(EraseError::Internal(
        "the erasure job did not settle".into(),
    ))
}

/// Commits a step; `Ok(false)` when its guard failed (re-read the job).
async fn commit_step(ctx: &Ctx<'_>, unit: Unit) -> Result<bool, EraseError> {
    match ctx.commit(unit).await {
        Ok(_) => {
            ctx.step_done().await;
            Ok(true)
        }
        Err(CommitError::NotFound) | Err(CommitError::Conflict(_)) => Ok(false),
        Err(CommitError::Unavailable) => Err(EraseError::Unavailable),
    }
}

async fn begin(
    ctx: &Ctx<'_>,
    customer: Uuid,
    actor: &Actor,
    request_id: Option<&str>,
    force_full: bool,
) -> Result<(), EraseError> {
    if ctx.store.customer_record(customer).await?.is_none() {
        return Err(EraseError::NotFound);
    }
    let receipt_id = Uuid::now_v7();
    let mut ev = actor
        .event(Action::ErasureStarted, Decision::Allowed)
        .customer(customer)
        .reason("receipt_id", &receipt_id.to_string());
    if let Some(r) = request_id {
        ev = ev.reason("request_id", r);
    }
    if force_full {
        ev = ev.reason("mode", "full");
    }
    let expect = ctx
        .expect_versions
        .clone()
        .map(|versions| Mutation::ExpectCustomerVersion {
            customer_id: customer,
            versions,
        });
    let unit = Unit {
        mutations: expect
            .into_iter()
            .chain([Mutation::BeginErasure {
                customer_id: customer,
                receipt_id,
                request_id: request_id.map(str::to_owned),
                actor: actor.id.clone(),
                role: actor.role.clone(),
                force_full,
                at: ctx.stamp(),
            }])
            .collect(),
        events: vec![ev],
    };
    match ctx.commit(unit).await {
        Ok(_) => {
            ctx.step_done().await;
            Ok(())
        }
        Err(CommitError::Conflict(c)) if c == crate::store::VERSION_MISMATCH => {
            Err(EraseError::PreconditionFailed)
        }
        // Another request began it first: resume theirs.
        Err(CommitError::Conflict(_)) => Ok(()),
        Err(CommitError::NotFound) => Err(EraseError::NotFound),
        Err(CommitError::Unavailable) => Err(EraseError::Unavailable),
    }
}

async fn delete_consents(
    ctx: &Ctx<'_>,
    job: &ErasureJobRow,
    actor: &Actor,
) -> Result<bool, EraseError> {
    let c = job.customer_id;
    commit_step(
        ctx,
        Unit {
            mutations: vec![
                Mutation::AdvanceErasure {
                    customer_id: c,
                    from_step: 1,
                    to_step: 2,
                    retained: None,
                    at: ctx.stamp(),
                },
                Mutation::DeleteConsents { customer_id: c },
            ],
            events: vec![
                actor
                    .event(Action::ErasureConsentsDeleted, Decision::Allowed)
                    .customer(c),
            ],
        },
    )
    .await
}

async fn delete_values(
    ctx: &Ctx<'_>,
    job: &ErasureJobRow,
    actor: &Actor,
) -> Result<bool, EraseError> {
    let c = job.customer_id;
    let now = ctx.now();
    let Some(record) = ctx.store.customer_record(c).await? else {
        return Err(EraseError::NotFound);
    };
    let holds = ctx.store.legal_holds(Some(c)).await?;
    // Without a data key nothing can be kept readable.
    let kept = if record.customer.wrapped_dek.is_some() {
        retained_at(ctx.policy, &record, &holds, now, job.force_full)
    } else {
        Vec::new()
    };
    let kept_fields: BTreeSet<&str> = kept.iter().map(|k| k.field.as_str()).collect();
    let deleted: Vec<String> = record
        .fields
        .iter()
        .filter(|f| !kept_fields.contains(f.field.as_str()))
        .map(|f| f.field.clone())
        .collect();
    let mut mutations = vec![Mutation::AdvanceErasure {
        customer_id: c,
        from_step: 2,
        to_step: 3,
        retained: Some(kept_json(&kept)),
        at: ctx.stamp(),
    }];
    mutations.extend(deleted.iter().map(|f| Mutation::DeleteField {
        customer_id: c,
        field: f.clone(),
    }));
    let ev = actor
        .event(Action::ErasureValuesDeleted, Decision::Allowed)
        .customer(c)
        .fields(deleted.iter().cloned());
    commit_step(
        ctx,
        Unit {
            mutations,
            events: vec![ev],
        },
    )
    .await
}

/// The last step: destroy the data key (nothing kept), or re-encrypt what is
/// kept under a fresh key (partially erased). From `partial`, `kept` empty
/// finishes a pending erasure.
async fn finish(
    ctx: &Ctx<'_>,
    job: &ErasureJobRow,
    actor: &Actor,
    kept: Vec<Kept>,
    trigger: &str,
) -> Result<bool, EraseError> {
    let c = job.customer_id;
    let now = ctx.stamp();
    let Some(record) = ctx.store.customer_record(c).await? else {
        return Err(EraseError::NotFound);
    };
    let stored: BTreeSet<&str> = record.fields.iter().map(|f| f.field.as_str()).collect();
    let mut kept = kept;
    kept.retain(|k| stored.contains(k.field.as_str()));
    let mut mutations = Vec::new();
    let mut events = Vec::new();
    let tombstone_status;
    if kept.is_empty() || record.customer.wrapped_dek.is_none() {
        mutations.push(Mutation::FinishErasure {
            customer_id: c,
            status: ErasureJobStatus::Erased,
            retained: "[]".into(),
            erased_at: job.started_at,
            at: now,
        });
        events.push(
            actor
                .event(Action::CustomerErase, Decision::Erased)
                .customer(c)
                .reason("receipt_id", &job.receipt_id.to_string())
                .reason("trigger", trigger),
        );
        tombstone_status = "erased";
    } else {
        mutations.push(Mutation::FinishErasure {
            customer_id: c,
            status: ErasureJobStatus::Partial,
            retained: kept_json(&kept),
            erased_at: job.started_at,
            at: now,
        });
        mutations.extend(rekey(ctx, &record, &kept)?);
        let mut ev = actor
            .event(Action::CustomerErase, Decision::PartiallyErased)
            .customer(c)
            .fields(
                kept.iter()
                    .map(|k| k.field.clone())
                    .collect::<BTreeSet<_>>(),
            )
            .reason("receipt_id", &job.receipt_id.to_string())
            .reason("trigger", trigger);
        for k in &kept {
            ev = ev.reason(&format!("{}:{}", k.field, k.purpose), &k.basis);
        }
        events.push(ev);
        tombstone_status = "partially_erased";
    }
    mutations.extend(recipient_notices(ctx, c, job, now).await?);
    if !commit_step(ctx, Unit { mutations, events }).await? {
        return Ok(false);
    }
    purge_copies(ctx).await;
    let tombstone = Tombstone {
        customer_id: c,
        status: tombstone_status.into(),
        erased_at: rfc3339(job.started_at),
    };
    ctx.tombstones
        .append(
            &ctx.committer,
            vec![tombstone],
            crate::tamper::tombstones::origin::ERASURE,
        )
        .await
        .map_err(EraseError::Tombstone)?;
    Ok(true)
}

/// Once the data key is destroyed (or replaced), removes the copies the
/// database keeps outside its tables: on SQLite the write-ahead log still
/// holds the old pages (the wrapped data key, the ciphertext) until it is
/// checkpointed and truncated. A reader holding the log makes SQLite refuse;
/// a few tries, then a warning and a metric: the next erasure or the
/// regular checkpoint removes them.
async fn purge_copies(ctx: &Ctx<'_>) {
    for attempt in 0..20 {
        match ctx.store.purge_logs().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot checkpoint the database log after an erasure");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25 * (attempt + 1))).await;
    }
    metrics::counter!("pii_vault_erasure_log_purge_failures_total").increment(1);
    tracing::warn!(
        "the database log could not be truncated after an erasure: copies of the erased data may remain in vault.db-wal until the next checkpoint"
    );
}

/// Re-encrypts the kept values under a fresh data key (same unit as the
/// key's replacement), cuts their purposes to the kept ones, and deletes
/// any other value still stored.
fn rekey(
    ctx: &Ctx<'_>,
    record: &CustomerRecord,
    kept: &[Kept],
) -> Result<Vec<Mutation>, EraseError> {
    let c = record.customer.id;
    let (Some(version), Some(wrapped)) =
        (record.customer.kek_version, &record.customer.wrapped_dek)
    else {
        return Err(EraseError::Internal(
            "no data key to re-encrypt with".into(),
        ));
    };
    let keyring = ctx.keys.keyring();
    let old = keyring
        .unwrap_dek(c, version, wrapped)
        .map_err(|e| EraseError::Internal(format!("cannot unwrap the data key: {e}")))?;
    let fresh = Dek::generate().map_err(|e| EraseError::Internal(e.to_string()))?;
    let (kek_version, wrapped_dek) = keyring
        .wrap_dek(c, &fresh)
        .map_err(|e| EraseError::Internal(e.to_string()))?;
    let kept_fields: BTreeSet<&str> = kept.iter().map(|k| k.field.as_str()).collect();
    let mut out = Vec::new();
    for row in &record.fields {
        if !kept_fields.contains(row.field.as_str()) {
            out.push(Mutation::DeleteField {
                customer_id: c,
                field: row.field.clone(),
            });
            continue;
        }
        let plain = old
            .decrypt_field(c, &row.field, &row.ciphertext)
            .map_err(|e| EraseError::Internal(format!("cannot decrypt a kept value: {e}")))?;
        let ciphertext = fresh
            .encrypt_field(c, &row.field, &plain)
            .map_err(|e| EraseError::Internal(e.to_string()))?;
        out.push(Mutation::ReplaceCiphertext {
            customer_id: c,
            field: row.field.clone(),
            ciphertext,
        });
        out.push(Mutation::SetValuePurposes {
            customer_id: c,
            field: row.field.clone(),
            purposes: kept_purposes(kept, &row.field),
        });
    }
    out.push(Mutation::RekeyCustomer {
        customer_id: c,
        kek_version,
        wrapped_dek,
    });
    Ok(out)
}

/// Outbox notices to every recipient the customer's data was disclosed to
/// (Art. 19, R32), committed with the erasure's last step — once, when the
/// job first ends (not again when a partial erasure later finishes).
async fn recipient_notices(
    ctx: &Ctx<'_>,
    customer: Uuid,
    job: &ErasureJobRow,
    now: i64,
) -> Result<Vec<Mutation>, EraseError> {
    if job.status != ErasureJobStatus::Running {
        return Ok(Vec::new());
    }
    let request = job.request_id.as_deref().and_then(|r| r.parse().ok());
    Ok(crate::requests::outbox::recipient_notices(
        ctx.store,
        ctx.policy,
        customer,
        "erasure",
        request,
        &[],
        now,
    )
    .await?)
}

/// Re-evaluates a partially erased customer: drops what is no longer kept
/// (a released hold, a retention that ran out) and finishes the erasure —
/// destroying the data key — when nothing is left. `None` when the customer
/// has no erasure job.
pub async fn settle(
    ctx: &Ctx<'_>,
    customer: Uuid,
    actor: &Actor,
    trigger: &str,
) -> Result<Option<ErasureReceipt>, EraseError> {
    for _ in 0..8 {
        let Some(job) = ctx.store.erasure_job(customer).await? else {
            return Ok(None);
        };
        if job.status != ErasureJobStatus::Partial {
            return Ok(Some(receipt(&job)));
        }
        let now = ctx.now();
        let Some(record) = ctx.store.customer_record(customer).await? else {
            return Err(EraseError::NotFound);
        };
        let holds = ctx.store.legal_holds(Some(customer)).await?;
        let previous = parse_kept(&job.retained);
        let stored: BTreeSet<String> = record.fields.iter().map(|f| f.field.clone()).collect();
        let kept = still_kept(&previous, &holds, &stored, now);
        if kept.is_empty() {
            finish(ctx, &job, actor, Vec::new(), trigger).await?;
            continue;
        }
        if kept == previous {
            return Ok(Some(receipt(&job)));
        }
        let mut mutations = vec![Mutation::UpdateRetained {
            customer_id: customer,
            retained: kept_json(&kept),
            at: ctx.stamp(),
        }];
        let mut deleted = Vec::new();
        for row in &record.fields {
            let purposes = kept_purposes(&kept, &row.field);
            if purposes.is_empty() {
                deleted.push(row.field.clone());
                mutations.push(Mutation::DeleteField {
                    customer_id: customer,
                    field: row.field.clone(),
                });
            } else if purposes != row.purposes {
                mutations.push(Mutation::SetValuePurposes {
                    customer_id: customer,
                    field: row.field.clone(),
                    purposes,
                });
            }
        }
        let ev = actor
            .event(Action::ErasureRetainedReduced, Decision::Allowed)
            .customer(customer)
            .fields(deleted)
            .reason("trigger", trigger);
        commit_step(
            ctx,
            Unit {
                mutations,
                events: vec![ev],
            },
        )
        .await?;
    }
    Err(EraseError::Internal("the erasure did not settle".into()))
}

// ---------------------------------------------------------------------------
// Reads of partially erased customers
// ---------------------------------------------------------------------------

/// The record a read for `purpose` may use: a live customer, or a partially
/// erased one when a kept value serves the purpose and the call only reads
/// (`customer.read*`). `None` means 404 `customer_not_found`: unknown,
/// erased, in the middle of its erasure, or kept for other purposes only.
pub async fn readable_record(
    state: &AppState,
    id: Uuid,
    purpose: &str,
    action: Action,
) -> Result<Option<CustomerRecord>, StoreError> {
    let Some(r) = state.store.customer_record(id).await? else {
        return Ok(None);
    };
    if r.customer.wrapped_dek.is_none() {
        return Ok(None);
    }
    if r.customer.erased_at.is_none() {
        return Ok(Some(r));
    }
    if !action.is_customer_read() {
        return Ok(None);
    }
    let serves = r
        .fields
        .iter()
        .any(|f| f.purposes.iter().any(|p| covers(&p.purpose, purpose)));
    if !serves {
        return Ok(None);
    }
    let partial = state
        .store
        .erasure_job(id)
        .await?
        .is_some_and(|j| j.status == ErasureJobStatus::Partial);
    Ok(partial.then_some(r))
}

// ---------------------------------------------------------------------------
// Recovery at start-up
// ---------------------------------------------------------------------------

/// What [`recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Jobs a crash had interrupted, now finished.
    pub resumed: usize,
    /// Customers the tombstone log lists that the database still held.
    pub re_erased: usize,
    /// Tombstones of the database missing from the log, now appended.
    pub appended: usize,
    /// What is wrong with the tombstone log; when not empty nothing in it
    /// was acted on.
    pub broken: Vec<String>,
}

/// Finishes interrupted erasure jobs; then checks the tombstone log and,
/// only if every entry verifies, re-erases every customer it lists that the
/// database still holds (an older backup was restored), and appends to it
/// what only the database knew. A broken log is reported in
/// [`Recovery::broken`] and not acted on. Runs before the vault serves, and
/// at `pii-vault migrate`.
pub async fn recover(ctx: &Ctx<'_>) -> Result<Recovery, EraseError> {
    let mut out = Recovery::default();
    let system = Actor::system();
    for id in ctx
        .store
        .erasure_jobs_with_status(ErasureJobStatus::Running)
        .await?
    {
        run(ctx, id, &system, None, false).await?;
        out.resumed += 1;
    }
    let checked = ctx
        .tombstones
        .prepare(ctx.store, &ctx.committer)
        .await
        .map_err(EraseError::Tombstone)?;
    if !checked.ok() {
        out.broken = checked.problems.clone();
        if let Some(s) = checked.summary().filter(|_| out.broken.is_empty()) {
            out.broken.push(s);
        }
        return Ok(out);
    }
    let file = checked.latest();
    let db: BTreeMap<Uuid, String> = ctx
        .store
        .tombstones()
        .await?
        .into_iter()
        .map(|t| (t.customer_id, t.status))
        .collect();
    let restored = EventDraft::new(
        SYSTEM_ACTOR,
        SYSTEM_ACTOR,
        Action::ErasureReapplied,
        Decision::Allowed,
        &system.request_id,
    );
    for (id, t) in &file {
        let in_db = db.get(id).map(String::as_str);
        let needed = match (t.status.as_str(), in_db) {
            (_, Some("erased")) => false,
            ("erased", _) => true,
            (_, Some(_)) => false,
            (_, None) => true,
        };
        if !needed || ctx.store.customer_record(*id).await?.is_none() {
            continue;
        }
        let force = t.status == "erased";
        tracing::warn!(customer = %id, "the database holds a customer erased since its backup; erasing again");
        ctx.commit(Unit::event(
            restored.clone().customer(id).reason("tombstone", &t.status),
        ))
        .await
        .map_err(|_| EraseError::Unavailable)?;
        run(ctx, *id, &system, None, force).await?;
        out.re_erased += 1;
    }
    let mut missing = Vec::new();
    for t in ctx.store.tombstones().await? {
        let logged = file
            .get(&t.customer_id)
            .is_some_and(|f| f.status == t.status || f.status == "erased");
        if logged {
            continue;
        }
        // Only what the database's own erasure job confirms goes into the
        // authenticated log: a row merely inserted into `tombstones` does not.
        let job = ctx.store.erasure_job(t.customer_id).await?;
        let confirmed = job.is_some_and(|j| {
            matches!(
                (j.status.as_str(), t.status.as_str()),
                ("erased", "erased") | ("partial", "partially_erased")
            )
        });
        if !confirmed {
            tracing::warn!(
                customer = %t.customer_id,
                "a tombstone row of the database has no matching erasure job: not added to the log"
            );
            continue;
        }
        missing.push(Tombstone {
            customer_id: t.customer_id,
            status: t.status,
            erased_at: rfc3339(t.erased_at),
        });
    }
    out.appended = missing.len();
    ctx.tombstones
        .append(
            &ctx.committer,
            missing,
            crate::tamper::tombstones::origin::DATABASE,
        )
        .await
        .map_err(EraseError::Tombstone)?;
    Ok(out)
}

/// `pii-vault migrate`: [`recover`] without a server.
pub async fn recover_command(
    opened: &crate::Opened,
    settings: &Settings,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let tamper = crate::tamper::Tamper::open(settings, &opened.keys.index, false)
        .await
        .map_err(anyhow::Error::msg)?;
    let ctx = Ctx::direct(
        opened.store.as_ref(),
        &opened.policy,
        &opened.keys,
        clock,
        TombstoneLog::new(tamper),
    );
    let r = recover(&ctx)
        .await
        .map_err(|e| anyhow::anyhow!("cannot complete pending erasures: {e}"))?;
    let log = ctx.tombstones.location();
    if !r.broken.is_empty() {
        anyhow::bail!(
            "{} interrupted erasure job(s) finished, but the tombstone log {log} is broken, so \
             nothing in it was acted on:\n  {}\nsee `pii-vault tombstones verify`",
            r.resumed,
            r.broken.join("\n  ")
        );
    }
    println!(
        "erasures: {} interrupted job(s) finished, {} customer(s) of a restored backup erased again, \
         {} tombstone(s) added to {log}",
        r.resumed, r.re_erased, r.appended
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CustomerRow, FieldRow};
    use std::path::Path;

    const DAY: i64 = 86_400_000_000;

    fn policy() -> Policy {
        Policy::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    fn value(field: &str, purposes: &[(&str, i64)]) -> FieldRow {
        FieldRow {
            field: field.into(),
            ciphertext: vec![],
            collected_by: "c".into(),
            channel: None,
            notice_version: None,
            collected_at: 0,
            purposes: purposes
                .iter()
                .map(|(p, exp)| ValuePurpose {
                    purpose: (*p).into(),
                    collected_at: 0,
                    expires_at: *exp,
                })
                .collect(),
        }
    }

    fn record(fields: Vec<FieldRow>) -> CustomerRecord {
        CustomerRecord {
            customer: CustomerRow {
                id: Uuid::now_v7(),
                external_id: None,
                created_at: 0,
                kek_version: Some(1),
                wrapped_dek: Some(vec![1]),
                restricted: false,
                opted_out_sale: false,
                limit_sensitive: false,
                erased_at: None,
                version: 1,
            },
            fields,
            consents: vec![],
            objections: vec![],
        }
    }

    fn hold(fields: &[&str], released: bool) -> LegalHoldRow {
        LegalHoldRow {
            id: Uuid::now_v7(),
            customer_id: Uuid::nil(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            reason: "case 17".into(),
            basis: "legal_claims".into(),
            purpose: Some("legal.claims".into()),
            review_at: 90 * DAY,
            created_by: "dpo".into(),
            created_at: 0,
            released_at: released.then_some(1),
        }
    }

    #[test]
    fn keeps_legal_obligation_within_retention_and_held_fields_only() {
        let p = policy();
        let r = record(vec![
            value("email", &[("support", 700 * DAY), ("billing", 3650 * DAY)]),
            value("phone", &[("support.callback", 90 * DAY)]),
            value("address", &[("billing", 10 * DAY)]),
            value("name", &[("support", 700 * DAY)]),
        ]);
        let now = 20 * DAY;
        let kept = retained_at(
            &p,
            &r,
            &[hold(&["name"], false), hold(&["phone"], true)],
            now,
            false,
        );
        let got: Vec<(&str, &str, Option<bool>)> = kept
            .iter()
            .map(|k| {
                (
                    k.field.as_str(),
                    k.purpose.as_str(),
                    k.hold_id.map(|_| true),
                )
            })
            .collect();
        // billing is legal_obligation and runs 10 years; the address's billing
        // retention ended; the phone's hold was released; the name is held.
        assert_eq!(
            got,
            vec![
                ("email", "billing", None),
                ("name", "legal.claims", Some(true))
            ]
        );
        assert!(retained_at(&p, &r, &[hold(&["name"], false)], now, true).is_empty());
        assert_eq!(
            kept_purposes(&kept, "email"),
            vec![ValuePurpose {
                purpose: "billing".into(),
                collected_at: 0,
                expires_at: 3650 * DAY
            }]
        );
        assert_eq!(kept_purposes(&kept, "name")[0].expires_at, HELD);
    }

    #[test]
    fn releasing_the_hold_or_running_out_of_retention_drops_what_was_kept() {
        let h = hold(&["name"], false);
        let previous = vec![
            Kept {
                field: "email".into(),
                purpose: "billing".into(),
                basis: "legal_obligation".into(),
                until: 100 * DAY,
                collected_at: 0,
                hold_id: None,
            },
            Kept {
                field: "name".into(),
                purpose: "legal.claims".into(),
                basis: "legal_claims".into(),
                until: 90 * DAY,
                collected_at: 0,
                hold_id: Some(h.id),
            },
        ];
        let stored: BTreeSet<String> = ["email".to_owned(), "name".to_owned()].into();
        assert_eq!(
            still_kept(&previous, std::slice::from_ref(&h), &stored, 50 * DAY),
            previous
        );
        let mut released = h.clone();
        released.released_at = Some(60 * DAY);
        assert_eq!(
            still_kept(&previous, &[released.clone()], &stored, 60 * DAY),
            previous[..1].to_vec()
        );
        assert!(still_kept(&previous, &[released], &stored, 100 * DAY).is_empty());
    }

    #[test]
    fn receipt_lists_kept_values_only_while_partial() {
        let job = ErasureJobRow {
            customer_id: Uuid::nil(),
            receipt_id: Uuid::nil(),
            request_id: None,
            actor: "a".into(),
            role: "dpo".into(),
            status: ErasureJobStatus::Partial,
            step: 4,
            force_full: false,
            retained: kept_json(&[Kept {
                field: "email".into(),
                purpose: "billing".into(),
                basis: "legal_obligation".into(),
                until: 0,
                collected_at: 0,
                hold_id: None,
            }]),
            started_at: 0,
            updated_at: 0,
            finished_at: None,
        };
        let r = receipt(&job);
        assert_eq!(r.status, ErasureStatus::PartiallyErased);
        assert_eq!(r.retained.len(), 1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "partially_erased");
        assert_eq!(json["retained"][0]["until"], "1970-01-01T00:00:00.000000Z");
        let done = ErasureJobRow {
            status: ErasureJobStatus::Erased,
            retained: "[]".into(),
            finished_at: Some(5),
            ..job
        };
        assert_eq!(receipt(&done).status, ErasureStatus::Erased);
        assert!(receipt(&done).retained.is_empty());
    }
}
