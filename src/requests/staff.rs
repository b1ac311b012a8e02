//! The privacy team's use cases on data subject requests: the listing
//! (by status, kind, or open past the deadline), one request, approval,
//! denial, extension and the yearly metrics. The API (`/v1/requests…`) and
//! the staff console call these with the caller as an [`Actor`].
//!
//! Each checks the caller's capability first (`requests.process`; reading
//! also `audit`), before any parameter is looked at, then validates what
//! was sent, does the step (see [`super::flow`]) and records it in the
//! trail. A step with an effect takes the [`Answer`] the edge records with
//! it (see [`crate::answer`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, Month};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::StoredRequests;
use super::flow::{self, Answered};
use super::lifecycle::{self as lc, DenialReason, Kind, KindMetrics, Request, Status};
use super::view::{self, RequestView};
use crate::actor::Actor;
use crate::answer::Answer;
use crate::audit::{Action, Decision};
use crate::clock::{parse_rfc3339, to_micros};
use crate::error::{ServiceError, ServiceResult};
use crate::policy::Capability;
use crate::state::AppState;
use crate::store::{RequestFilter, Unit};

/// Who reads requests: the privacy team and auditors.
const READERS: &[Capability] = &[Capability::RequestsProcess, Capability::Audit];

// The answer and body types below are schemas of /openapi.json as they
// were when the handlers defined them: a doc comment on one of them would
// add a description there.

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
    /// Pass as `after` for the next page.
    pub next_after: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Metrics {
    pub year: i32,
    pub kinds: BTreeMap<String, KindMetrics>,
    pub total: KindMetrics,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyBody {
    /// identity_not_verified, manifestly_unfounded, excessive,
    /// legal_obligation, legal_claims, freedom_of_expression,
    /// public_interest, rights_of_others, other
    #[serde(default)]
    pub reason: Option<String>,
    /// Told to the requester with the reason.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// Why more time is needed; told to the requester.
    #[serde(default)]
    pub reason: Option<String>,
    /// The new deadline (RFC 3339); default the latest the regulation allows.
    #[serde(default)]
    pub due_at: Option<String>,
}

/// The listing's filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub status: Option<String>,
    pub kind: Option<String>,
    /// Only open requests past their deadline.
    pub overdue: Option<bool>,
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

/// The metrics' year.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Calendar year (UTC); default the current one.
    pub year: Option<i32>,
}

/// The id of the request a step is about, as the edge read it: a malformed
/// id (`Err`) is answered only to a caller allowed to take the step.
pub type RequestRef = ServiceResult<Uuid>;

/// The request `id`, for a caller with `requests.process`.
async fn load(state: &AppState, caller: &Actor, id: RequestRef) -> ServiceResult<Request> {
    caller.require(&state.policy, Capability::RequestsProcess)?;
    let id = id?;
    state
        .store
        .request(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("request_not_found"))
}

/// The answer to record with a step: the privacy team's view of the
/// request as the step left it.
fn staff_answer<'a>(
    state: &'a AppState,
    answer: &'a Answer<'_, RequestView>,
) -> Answer<'a, Answered> {
    answer.before(move |a: &Answered| view::staff(state, &a.request))
}

fn printable(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// Requests by status, kind, or open past their deadline (`requests.process`
/// or `audit`), `limit` (1–1000, default 100) at a time after `after`.
pub async fn list(state: &AppState, caller: &Actor, q: &ListQuery) -> ServiceResult<RequestList> {
    caller.require_any(&state.policy, READERS)?;
    if let Some(s) = &q.status {
        Status::parse(s)
            .ok_or_else(|| ServiceError::bad_request("unknown_status").field("status"))?;
    }
    if let Some(k) = &q.kind {
        Kind::parse(k).ok_or_else(|| ServiceError::bad_request("unknown_kind").field("kind"))?;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ServiceError::invalid_request("limit must be between 1 and 1000").field("limit"),
        );
    }
    let now = state.clock.now_micros();
    let filter = RequestFilter {
        status: q.status.clone(),
        kind: q.kind.clone(),
        overdue: q.overdue.unwrap_or(false),
        now,
        after: q.after,
        limit,
    };
    let rows = state.store.list_requests(&filter).await?;
    let mut ev = caller.event(Action::RequestList, Decision::Allowed);
    for (k, v) in [("status", &q.status), ("kind", &q.kind)] {
        if let Some(v) = v {
            ev = ev.reason(k, v);
        }
    }
    if filter.overdue {
        ev = ev.reason("overdue", "true");
    }
    state.sequencer.commit(Unit::event(ev)).await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(RequestList {
        requests: rows
            .iter()
            .map(|r| view::of(&state.policy, r, true, now))
            .collect(),
        next_after,
    })
}

/// One request with the privacy team's details (`requests.process` or
/// `audit`), its reading audited.
pub async fn read(state: &AppState, caller: &Actor, id: Uuid) -> ServiceResult<RequestView> {
    caller.require_any(&state.policy, READERS)?;
    let r = state
        .store
        .request(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("request_not_found"))?;
    let ev = flow::event(caller, Action::RequestRead, Decision::Allowed, &r);
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(view::staff(state, &r))
}

/// Approves a request waiting for the DPO (`requests.process`); it is then
/// carried out. `answer` is recorded with the approval.
pub async fn approve(
    state: &AppState,
    caller: &Actor,
    id: RequestRef,
    answer: &Answer<'_, RequestView>,
) -> ServiceResult<RequestView> {
    let r = load(state, caller, id).await?;
    let r = flow::approve(state, caller, r, &staff_answer(state, answer)).await?;
    Ok(view::staff(state, &r))
}

/// Denies a request with a machine-readable reason and, optionally, a note
/// for the requester (`requests.process`). `answer` is recorded with the
/// denial.
pub async fn deny(
    state: &AppState,
    caller: &Actor,
    id: RequestRef,
    input: &DenyBody,
    answer: &Answer<'_, RequestView>,
) -> ServiceResult<RequestView> {
    let r = load(state, caller, id).await?;
    let reason = match input.reason.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(ServiceError::bad_request("reason_required")
                .detail("a denial needs a reason")
                .field("reason"));
        }
        Some(code) => DenialReason::parse(code).ok_or_else(|| {
            let codes: Vec<&str> = DenialReason::ALL.iter().map(|d| d.as_str()).collect();
            ServiceError::bad_request("invalid_reason")
                .detail(format!("reason must be one of {}", codes.join(", ")))
                .field("reason")
        })?,
    };
    if let Some(n) = &input.note
        && !printable(n, 1000)
    {
        return Err(
            ServiceError::invalid_request("note must be 1–1000 printable characters").field("note"),
        );
    }
    let answer = staff_answer(state, answer);
    let r = flow::deny(state, caller, r, reason, input.note.clone(), &answer).await?;
    Ok(view::staff(state, &r))
}

/// Extends the deadline once, before it passes, with a reason told to the
/// requester (`requests.process`): GDPR up to three months from receipt,
/// CCPA 90 days. `answer` is recorded with the extension.
pub async fn extend(
    state: &AppState,
    caller: &Actor,
    id: RequestRef,
    input: &ExtendBody,
    answer: &Answer<'_, RequestView>,
) -> ServiceResult<RequestView> {
    let r = load(state, caller, id).await?;
    let reason = input.reason.as_deref().unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(ServiceError::bad_request("reason_required")
            .detail("an extension needs a reason")
            .field("reason"));
    }
    if !printable(reason, 1000) {
        return Err(
            ServiceError::invalid_request("reason must be 1–1000 printable characters")
                .field("reason"),
        );
    }
    let until = match input.due_at.as_deref() {
        None => None,
        Some(s) => Some(parse_rfc3339(s).ok_or_else(|| {
            ServiceError::invalid_request("due_at must be an RFC 3339 time").field("due_at")
        })?),
    };
    let answer = staff_answer(state, answer);
    let r = flow::extend(state, caller, r, reason, until, &answer).await?;
    Ok(view::staff(state, &r))
}

/// The figures of the requests received in a calendar year (UTC; default
/// the current one), per kind and in all: received, completed, partially
/// completed, denied, still open, median days to respond
/// (`requests.process` or `audit`).
pub async fn metrics(state: &AppState, caller: &Actor, q: &MetricsQuery) -> ServiceResult<Metrics> {
    caller.require_any(&state.policy, READERS)?;
    let year = q.year.unwrap_or_else(|| state.clock.now().year());
    let start = |y: i32| {
        Date::from_calendar_date(y, Month::January, 1)
            .map(|d| to_micros(d.midnight().assume_utc()))
            .map_err(|_| ServiceError::invalid_request("year is out of range").field("year"))
    };
    let (from, to) = (start(year)?, start(year + 1)?);
    let rows = state.store.requests_received(from, to).await?;
    let mut kinds = BTreeMap::new();
    for k in Kind::ALL {
        let of_kind: Vec<&Request> = rows.iter().filter(|r| r.kind == *k).collect();
        kinds.insert(k.as_str().to_owned(), lc::metrics(of_kind));
    }
    let ev = caller
        .event(Action::RequestMetrics, Decision::Allowed)
        .reason("year", &year.to_string());
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(Metrics {
        year,
        kinds,
        total: lc::metrics(rows.iter()),
    })
}
