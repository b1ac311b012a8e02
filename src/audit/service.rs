//! The auditor's use cases: query the trail, export it with signed
//! checkpoints, verify it, publish the public keys, and read one customer's
//! access log. The API (`/v1/audit…`, `/v1/customers/{id}/access-log`) and
//! the staff console call these with the caller as an [`Actor`].
//!
//! Only the `audit` capability reads the trail (the access log also
//! `requests.process`). The capability is checked before any parameter is
//! read, so a caller without it learns nothing about its filters; every
//! call, refused or not, is itself an event, durable before the answer
//! leaves. Nothing here changes or deletes an event.

use std::sync::Arc;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::checkpoint::{self, PublicKeys, PublishedKey};
use super::export::ExportCursor;
use super::query::{self, AccessEntry, EventView, FilterError, RawFilter};
use super::verify::{self, Report};
use super::{Action, CommitError, Decision, EventDraft};
use crate::actor::Actor;
use crate::clock::rfc3339;
use crate::error::ServiceError;
use crate::policy::Capability;
use crate::state::AppState;
use crate::store::{AuditFilter, Store, Unit};

/// Parameters as the caller sent them: `Err(Unreadable)` when they did not
/// parse at all (an unknown or repeated query parameter). The service
/// answers that only to a caller allowed to ask.
pub type Given<T> = Result<T, Unreadable>;

/// Parameters that did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// One page of the trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<EventView>,
    /// Pass as `after_seq` for the next page; `null` when there is no more.
    pub next_after_seq: Option<i64>,
}

/// `?after_seq=` of the export.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Events after this sequence number; the export starts at the last
    /// signed checkpoint at or before it so that it verifies on its own.
    pub after_seq: Option<String>,
}

/// `?after_seq=&limit=` of the access log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Entries after this sequence number (the previous page's `next_after_seq`).
    pub after_seq: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<String>,
}

/// The checkpoint-signing public keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PublicKeySet {
    /// Key id of the key that signs new checkpoints.
    pub current: String,
    /// Every key whose checkpoints may still be in the trail, current first.
    pub keys: Vec<PublishedKey>,
    /// The same keys in the file format `pii-vault audit verify --public-key`
    /// reads: one `KID BASE64-PUBLIC-KEY` line per key.
    pub key_file: String,
}

/// Who used a customer's data, when and for which purpose.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessLog {
    pub customer_id: Uuid,
    pub entries: Vec<AccessEntry>,
    /// Pass as `after_seq` for the next page; `null` when there is no more.
    pub next_after_seq: Option<i64>,
}

/// An export ready to be sent: NDJSON, events then checkpoints, through
/// [`AuditExport::through`]. Read it with [`AuditExport::into_chunks`].
pub struct AuditExport {
    /// The last sequence number it covers (the head signed for it).
    pub through: i64,
    cursor: ExportCursor,
    store: Arc<dyn Store>,
}

impl AuditExport {
    /// The name a download of it is saved under.
    pub fn file_name(&self) -> String {
        format!("pii-vault-audit-{}.ndjson", self.through)
    }

    /// Its NDJSON, chunk by chunk; an error ends it (the cause is logged).
    pub fn into_chunks(self) -> impl Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
        let start = Some((self.cursor, self.store));
        futures_util::stream::unfold(start, |st| async move {
            let (mut cursor, store) = st?;
            match cursor.next_chunk(store.as_ref()).await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some((cursor, store)))),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "audit export interrupted");
                    Some((Err(std::io::Error::other("audit export interrupted")), None))
                }
            }
        })
    }
}

fn invalid_filter(e: FilterError) -> ServiceError {
    ServiceError::bad_request("invalid_filter")
        .detail(format!("{} {}", e.param, e.problem))
        .field(e.param)
}

fn unreadable(_: Unreadable) -> ServiceError {
    ServiceError::bad_request("invalid_filter")
        .detail("unknown or repeated query parameter; see the API for the accepted filters")
}

/// Lets the caller through when its role has one of `caps`; otherwise the
/// refusal is recorded and answered 403.
async fn authorize(
    state: &AppState,
    caller: &Actor,
    action: Action,
    caps: &[Capability],
    customer: Option<Uuid>,
) -> Result<(), ServiceError> {
    let allowed = state
        .policy
        .role(&caller.role)
        .is_some_and(|r| caps.iter().any(|c| r.has(*c)));
    if allowed {
        return Ok(());
    }
    let mut ev = caller
        .event(action, Decision::Denied)
        .reason("capability", "capability_required");
    if let Some(id) = customer {
        ev = ev.customer(id);
    }
    state.sequencer.commit(Unit::event(ev)).await?;
    let names: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
    Err(ServiceError::insufficient_scope("capability_required")
        .detail(format!(
            "this call needs the {} capability",
            names.join(" or ")
        ))
        .audited())
}

fn parse_seq(param: &'static str, v: Option<&String>) -> Result<i64, ServiceError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(0),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(invalid_filter(FilterError {
                param,
                problem: "must be a non-negative integer".into(),
            })),
        },
    }
}

/// The filters, as recorded in the `audit.query` event: validated values,
/// and only the presence of free-text ones that could hold anything.
fn with_filters(mut ev: EventDraft, state: &AppState, f: &AuditFilter) -> EventDraft {
    if let Some(c) = &f.customer_id {
        ev = ev.customer(c);
    }
    if let Some(a) = &f.action {
        ev = ev.reason("filter.action", a);
    }
    if let Some(a) = &f.actor {
        let shown = if a.parse::<Uuid>().is_ok() {
            a
        } else {
            "given"
        };
        ev = ev.reason("filter.actor", shown);
    }
    if let Some(p) = &f.purpose {
        let shown = if state.policy.purpose(p).is_some() {
            p
        } else {
            "given"
        };
        ev = ev.reason("filter.purpose", shown);
    }
    if let Some(d) = &f.decision {
        let known = ["allowed", "denied", "withheld", "not_found"].contains(&d.as_str());
        ev = ev.reason("filter.decision", if known { d } else { "given" });
    }
    if let Some(t) = f.from {
        ev = ev.reason("filter.from", &rfc3339(t));
    }
    if let Some(t) = f.to {
        ev = ev.reason("filter.to", &rfc3339(t));
    }
    ev.reason("filter.after_seq", &f.after_seq.to_string())
        .reason("filter.limit", &f.limit.to_string())
}

/// The keys verification trusts: the one whose private half this process
/// holds and those the audit witness records (never a public-key row of the
/// database alone); and the witness as read.
async fn verification_keys(
    state: &AppState,
) -> Result<(Vec<PublishedKey>, String, checkpoint::WitnessView), ServiceError> {
    let signer = state.keys.checkpoint();
    let current = signer.signing_key().kid().to_owned();
    let witness = checkpoint::read_witness(&state.tamper, state.store.as_ref()).await?;
    let keys = checkpoint::trusted_keys(signer.signing_key(), &witness.keys);
    Ok((keys, current, witness))
}

/// A page of the trail, oldest first, matching `filter`.
pub async fn query_events(
    state: &AppState,
    caller: &Actor,
    filter: Given<&RawFilter>,
) -> Result<AuditPage, ServiceError> {
    authorize(
        state,
        caller,
        Action::AuditQuery,
        &[Capability::Audit],
        None,
    )
    .await?;
    let filter = filter
        .map_err(unreadable)?
        .parse()
        .map_err(invalid_filter)?;
    let (events, next) = query::page(state.store.as_ref(), &filter).await?;
    let ev = with_filters(
        caller.event(Action::AuditQuery, Decision::Allowed),
        state,
        &filter,
    )
    .reason("returned", &events.len().to_string());
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(AuditPage {
        events: events.iter().map(EventView::from).collect(),
        next_after_seq: next,
    })
}

/// The trail after `after_seq` for export: a checkpoint of the chain head
/// is signed (and witnessed) for it and closes it.
pub async fn export(
    state: &AppState,
    caller: &Actor,
    params: Given<&ExportQuery>,
) -> Result<AuditExport, ServiceError> {
    authorize(
        state,
        caller,
        Action::AuditExport,
        &[Capability::Audit],
        None,
    )
    .await?;
    let q = params.map_err(unreadable)?;
    let after_seq = parse_seq("after_seq", q.after_seq.as_ref())?;
    let signer = state.keys.checkpoint();
    let row = checkpoint::sign_head(
        state.store.as_ref(),
        signer.signing_key(),
        state.clock.now_micros(),
    )
    .await?;
    let through = row.as_ref().map(|r| r.seq).unwrap_or(0);
    let mut ev = caller
        .event(Action::AuditExport, Decision::Allowed)
        .reason("after_seq", &after_seq.to_string())
        .reason("through_seq", &through.to_string());
    let mutations = match &row {
        Some(row) => match checkpoint::witness_checkpoint(
            &state.tamper,
            state.store.as_ref(),
            signer.signing_key(),
            row,
        )
        .await
        {
            Ok(m) => m,
            // A trail that no longer extends the witness is not signed: the
            // export goes out without a fresh checkpoint, so it does not
            // verify on its own either.
            Err(checkpoint::WitnessError::Mismatch(why)) => {
                tracing::error!(problem = %why, "audit export without a signed head");
                ev = ev.reason("unsigned", "witness_mismatch");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "the export's checkpoint was not witnessed");
                return Err(ServiceError::unavailable());
            }
        },
        None => Vec::new(),
    };
    let unit = Unit {
        mutations,
        events: vec![ev],
    };
    state.sequencer.commit(unit).await.map_err(|e| match e {
        // The signed head is always an event or the head row; if not, the
        // trail changed under us: the caller may simply retry.
        CommitError::NotFound | CommitError::Conflict(_) => ServiceError::unavailable(),
        other => other.into(),
    })?;
    let store = Arc::clone(&state.store);
    let cursor = ExportCursor::new(store.as_ref(), after_seq, through).await?;
    Ok(AuditExport {
        through,
        cursor,
        store,
    })
}

/// Verifies the whole stored trail: hashes, links, no gap, checkpoint
/// signatures (with trusted keys only), the last event against the chain
/// head, and that the trail extends the last checkpoint witnessed outside
/// the database. The report names the first problem; the vault's health
/// follows what it found about the witness.
pub async fn verify_trail(state: &AppState, caller: &Actor) -> Result<Report, ServiceError> {
    authorize(
        state,
        caller,
        Action::AuditVerify,
        &[Capability::Audit],
        None,
    )
    .await?;
    let (keys, _, witness) = verification_keys(state).await?;
    let keys: PublicKeys = checkpoint::to_public_keys(&keys);
    let point = witness.point.as_ref().map(|p| (p.seq, p.hash.clone()));
    let mut report = verify::verify_store(state.store.as_ref(), &keys, point).await?;
    if let Some(problem) = &witness.problem {
        report.fail_outside(problem.clone());
    }
    let extended = report.witness.as_ref().and_then(|w| w.extended);
    match (&witness.problem, extended) {
        (Some(p), _) => state.tamper.health().set_witness(Some(p.clone())),
        (None, Some(false)) => state.tamper.health().set_witness(report.reason.clone()),
        (None, Some(true)) => state.tamper.health().set_witness(None),
        (None, None) => {}
    }
    let mut ev = caller
        .event(Action::AuditVerify, Decision::Allowed)
        .reason("ok", if report.ok { "true" } else { "false" })
        .reason("events", &report.events.to_string())
        .reason("head_seq", &report.head_seq.to_string());
    if let Some(bad) = report.first_bad_seq {
        ev = ev.reason("first_bad_seq", &bad.to_string());
    }
    state.sequencer.commit(Unit::event(ev)).await?;
    if !report.ok {
        tracing::error!(
            first_bad_seq = report.first_bad_seq,
            "audit trail verification failed"
        );
    }
    Ok(report)
}

/// The public keys that verify checkpoints (Ed25519), current first.
pub async fn public_keys(state: &AppState, caller: &Actor) -> Result<PublicKeySet, ServiceError> {
    authorize(
        state,
        caller,
        Action::AuditPublicKey,
        &[Capability::Audit],
        None,
    )
    .await?;
    let (keys, current, _) = verification_keys(state).await?;
    let ev = caller
        .event(Action::AuditPublicKey, Decision::Allowed)
        .reason("current", &current);
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(PublicKeySet {
        key_file: checkpoint::key_file(&keys),
        current,
        keys,
    })
}

/// Who accessed customer `id`'s data, when and for which purpose; 404 for
/// a customer the vault never knew (neither stored nor in the trail).
pub async fn access_log(
    state: &AppState,
    caller: &Actor,
    id: Uuid,
    params: Given<&PageQuery>,
) -> Result<AccessLog, ServiceError> {
    let action = Action::AccessLogRead;
    authorize(
        state,
        caller,
        action,
        &[Capability::RequestsProcess, Capability::Audit],
        Some(id),
    )
    .await?;
    let q = params.map_err(unreadable)?;
    let after_seq = parse_seq("after_seq", q.after_seq.as_ref())?;
    let limit = match q.limit.as_ref().filter(|s| !s.is_empty()) {
        None => query::DEFAULT_LIMIT,
        Some(s) => s.parse::<i64>().map_err(|_| {
            invalid_filter(FilterError {
                param: "limit",
                problem: "must be an integer".into(),
            })
        })?,
    };
    // Known: stored, or erased with its accesses still in the trail. Reads
    // of the trail about an id (this refusal among them) are no access and
    // do not make it known: asking twice gets the same answer.
    let known = state.store.customer_record(id).await?.is_some()
        || !query::access_log(state.store.as_ref(), id, 0, 1)
            .await?
            .0
            .is_empty();
    if !known {
        let ev = caller.event(action, Decision::NotFound).customer(id);
        state.sequencer.commit(Unit::event(ev)).await?;
        return Err(ServiceError::not_found("customer_not_found").audited());
    }
    let (entries, next) = query::access_log(state.store.as_ref(), id, after_seq, limit).await?;
    let ev = caller
        .event(action, Decision::Allowed)
        .customer(id)
        .reason("returned", &entries.len().to_string());
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(AccessLog {
        customer_id: id,
        entries,
        next_after_seq: next,
    })
}
