//! Consent: an append-only ledger per customer. There is no PUT, PATCH or
//! DELETE: a withdrawal is a new event, and earlier events stay.

use crate::audit::{Action, Decision};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::customers::valid_channel;
use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{Body, parse_id};
use crate::actor::Actor;
use crate::clock::rfc3339;
use crate::consent::{ConsentState, ConsentStatus};
use crate::policy::{Capability, Policy};
use crate::state::AppState;
use crate::store::{ConsentEvent, Mutation, Unit};

/// Consent given as part of collecting a customer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    pub purpose: String,
    pub notice_version: String,
    /// SHA-256 (hex) of the exact notice text shown.
    pub notice_text_sha256: String,
    /// Language of the notice (BCP 47, e.g. `it`, `en-GB`).
    pub language: String,
    /// e.g. `EU`, `US-CA`.
    pub jurisdiction: String,
    #[serde(default)]
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAction {
    Grant,
    Withdraw,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    pub purpose: String,
    pub action: ConsentAction,
    pub notice_version: String,
    pub notice_text_sha256: String,
    pub language: String,
    pub jurisdiction: String,
    pub channel: String,
}

/// One event of the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsentEventView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub purpose: String,
    pub action: String,
    pub notice_version: String,
    pub notice_text_sha256: String,
    pub language: String,
    pub jurisdiction: String,
    pub channel: String,
    /// Who captured it (client or user id).
    pub captured_by: String,
    pub at: String,
}

impl From<&ConsentEvent> for ConsentEventView {
    fn from(e: &ConsentEvent) -> Self {
        ConsentEventView {
            id: e.id,
            customer_id: e.customer_id,
            purpose: e.purpose.clone(),
            action: e.action.clone(),
            notice_version: e.notice_version.clone(),
            notice_text_sha256: e.notice_text_sha256.clone(),
            language: e.language.clone(),
            jurisdiction: e.jurisdiction.clone(),
            channel: e.channel.clone(),
            captured_by: e.captured_by.clone(),
            at: rfc3339(e.at),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CurrentConsentView {
    pub purpose: String,
    pub status: ConsentStatus,
    pub since: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Consents {
    pub current: Vec<CurrentConsentView>,
    pub events: Vec<ConsentEventView>,
}

/// Validates consent facts and builds the ledger event.
pub fn consent_event(
    policy: &Policy,
    caller: &Actor,
    customer: Uuid,
    c: &ConsentInput,
    action: &str,
    at: i64,
) -> ApiResult<ConsentEvent> {
    if policy.purpose(&c.purpose).is_none() {
        return Err(ServiceError::bad_request("unknown_purpose").field("purpose"));
    }
    let sha_ok = c.notice_text_sha256.len() == 64
        && c.notice_text_sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !sha_ok {
        return Err(
            ServiceError::invalid_request("notice_text_sha256 must be 64 hex digits")
                .field("notice_text_sha256"),
        );
    }
    let tag = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !tag(&c.language, 35) {
        return Err(ServiceError::invalid_request(
            "language must be a language tag such as en or it-IT",
        )
        .field("language"));
    }
    if !tag(&c.jurisdiction, 16) {
        return Err(ServiceError::invalid_request(
            "jurisdiction must be a code such as EU or US-CA",
        )
        .field("jurisdiction"));
    }
    if c.notice_version.is_empty()
        || c.notice_version.len() > 64
        || c.notice_version.chars().any(char::is_control)
    {
        return Err(ServiceError::invalid_request(
            "notice_version must be 1–64 printable characters",
        )
        .field("notice_version"));
    }
    let channel = valid_channel(c.channel.as_deref())?.unwrap_or("api");
    Ok(ConsentEvent {
        id: Uuid::now_v7(),
        customer_id: customer,
        purpose: c.purpose.clone(),
        action: action.to_owned(),
        notice_version: c.notice_version.clone(),
        notice_text_sha256: c.notice_text_sha256.to_ascii_lowercase(),
        language: c.language.clone(),
        jurisdiction: c.jurisdiction.clone(),
        channel: channel.to_owned(),
        captured_by: caller.id.clone(),
        at,
    })
}

/// Record a grant or a withdrawal.
#[utoipa::path(post, path = "/v1/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path)), request_body = ConsentRequest,
    responses((status = 201, body = ConsentEventView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn record_consent(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    Body(input): Body<ConsentRequest>,
) -> ApiResult<(StatusCode, Json<ConsentEventView>)> {
    caller.require(&state.policy, Capability::Consents)?;
    let id = parse_id(&id)?;
    let action = match input.action {
        ConsentAction::Grant => "grant",
        ConsentAction::Withdraw => "withdraw",
    };
    let as_input = ConsentInput {
        purpose: input.purpose.clone(),
        notice_version: input.notice_version.clone(),
        notice_text_sha256: input.notice_text_sha256.clone(),
        language: input.language.clone(),
        jurisdiction: input.jurisdiction.clone(),
        channel: Some(input.channel.clone()),
    };
    let now = state.clock.now_micros();
    let event = consent_event(&state.policy, &caller, id, &as_input, action, now)?;
    live_customer(&state, id).await?;
    let view = ConsentEventView::from(&event);
    let audit = caller
        .event(
            if action == "grant" {
                Action::ConsentGrant
            } else {
                Action::ConsentWithdraw
            },
            Decision::Allowed,
        )
        .purpose(Some(&event.purpose))
        .customer(id);
    state
        .sequencer
        .commit(Unit {
            mutations: vec![Mutation::AppendConsent(event)],
            events: vec![audit],
        })
        .await
        .map_err(|e| match e {
            crate::audit::CommitError::Conflict(_) | crate::audit::CommitError::NotFound => {
                ServiceError::not_found("customer_not_found")
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Current consent per purpose and the full ledger.
#[utoipa::path(get, path = "/v1/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path)),
    responses((status = 200, body = Consents),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_consents(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Consents>> {
    caller.require(&state.policy, Capability::Consents)?;
    let id = parse_id(&id)?;
    let record = live_customer(&state, id).await?;
    let now = state.clock.now_micros();
    let current = ConsentState::derive(&state.policy, &record.consents, now)
        .current()
        .map(|c| CurrentConsentView {
            purpose: c.purpose.clone(),
            status: c.status,
            since: rfc3339(c.since),
        })
        .collect();
    let events = record.consents.iter().map(ConsentEventView::from).collect();
    state
        .sequencer
        .commit(Unit::event(
            caller
                .event(Action::ConsentRead, Decision::Allowed)
                .customer(id),
        ))
        .await?;
    Ok(Json(Consents { current, events }))
}

async fn live_customer(state: &AppState, id: Uuid) -> ApiResult<crate::store::CustomerRecord> {
    match state.store.customer_record(id).await? {
        Some(r) if r.customer.erased_at.is_none() => Ok(r),
        _ => Err(ServiceError::not_found("customer_not_found")),
    }
}
