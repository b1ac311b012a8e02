//! Data subject requests over HTTP: intake (a customer without a token, or
//! staff with `requests.file`), verification, approval, denial, extension,
//! the requester's and the privacy team's views, the overdue listing, the
//! yearly metrics and the export download. The rules live in
//! `crate::requests::lifecycle` and the steps in `crate::requests::flow`;
//! these handlers parse, authorise, call and answer.
//!
//! Two kinds of credential reach these endpoints: a staff JWT, or the
//! request token handed out at intake (`Authorization: Bearer pvr_…`). A
//! request token is good for its own request's `GET`, `verify` and
//! `export` only; every other endpoint of the vault takes JWTs alone and
//! refuses it (401).

use crate::audit::{Action, Decision};
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, Month};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{Body, Client, RequestId, client_addr, parse_id};
use super::idempotency::{Keyed, Reply};
use crate::actor::Actor;
use crate::answer::Answer;
use crate::clock::{parse_rfc3339, rfc3339, to_micros};
use crate::customers::{UpdateField, valid_channel};
use crate::policy::{self, Capability, LegalBasis};
use crate::requests::StoredRequests;
use crate::requests::flow::{self, Answered, Changes, Intake, TOKEN_PREFIX};
use crate::requests::lifecycle::{
    self as lc, DenialReason, Kind, KindMetrics, Regulation, Request, Status,
};
use crate::state::AppState;
use crate::store::RequestFilter;
use crate::store::Unit;

// ---------------------------------------------------------------------------
// Bodies and answers
// ---------------------------------------------------------------------------

/// How a customer filing without a token identifies themself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    /// A `searchable` field, e.g. `email`.
    pub field: String,
    pub value: String,
}

/// The new values of a rectification: a value replaces the one on file
/// (keeping its purposes), `null` removes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RectificationChanges {
    #[schema(value_type = BTreeMap<String, UpdateField>)]
    pub fields: BTreeMap<String, Option<UpdateField>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRequest {
    /// access, portability, erasure, rectification, restriction, objection,
    /// opt_out_sale, limit_sensitive
    pub kind: String,
    /// gdpr (due in one month) or ccpa (45 days)
    #[serde(default)]
    pub regulation: Option<String>,
    /// A customer filing without a token.
    #[serde(default)]
    pub identifier: Option<Identifier>,
    /// Staff filing for a known customer.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Staff only: how the requester's identity was checked
    /// (e.g. `id_document_checked`); the request is then verified at once.
    #[serde(default)]
    pub verified_by: Option<String>,
    /// web, phone, chat, email, in_person, api (default web for customers,
    /// api for staff).
    #[serde(default)]
    pub channel: Option<String>,
    /// The purpose an objection is about (e.g. `marketing`).
    #[serde(default)]
    pub purpose: Option<String>,
    /// Withdraw what an earlier request of this kind set: opt back in to
    /// sale/sharing, lift a limit or an objection, or (staff with
    /// `requests.process`) lift a restriction.
    #[serde(default)]
    pub lift: bool,
    /// Rectification only.
    #[serde(default)]
    pub changes: Option<RectificationChanges>,
    /// The language of the messages about the request: `en`, `it` or
    /// `zh-Hans`. Default: the best of them in `Accept-Language`, else `en`.
    #[serde(default)]
    #[schema(pattern = "^(en|it|zh-Hans)$")]
    pub language: Option<String>,
}

/// The answer to a filing. `request_token` is shown once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Filed {
    pub id: Uuid,
    pub status: String,
    pub received_at: String,
    pub due_at: String,
    /// Authorises `GET /v1/requests/{id}`, its `verify` and its `export`.
    /// Returned to a customer filing for themself only: the token of a
    /// request filed by staff goes to the customer's contact on file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_token: Option<String>,
    /// Staff filings only: an open request asking the same was found and is
    /// answered instead.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub merged: bool,
}

/// What the privacy team also sees of a request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StaffDetails {
    pub customer_id: Option<Uuid>,
    pub channel: String,
    pub filed_by: String,
    pub identified_by: Option<String>,
    pub verification_method: Option<String>,
    pub verified_by: Option<String>,
    pub approved_at: Option<String>,
    pub approved_by: Option<String>,
    pub extended_at: Option<String>,
    pub extension_reason: Option<String>,
    pub code_attempts: i64,
    pub merged_into: Option<Uuid>,
    pub overdue: bool,
}

/// A request as its requester (or the privacy team) sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub id: Uuid,
    pub kind: String,
    pub regulation: String,
    pub status: String,
    pub received_at: String,
    pub due_at: String,
    /// The language messages about the request are written in: `en`, `it`
    /// or `zh-Hans`.
    pub language: String,
    /// The deadline was extended (once, with a reason).
    pub extended: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verified_at: Option<String>,
    pub responded_at: Option<String>,
    /// The outcome: an erasure receipt, the export's address, the subject
    /// state set, the values rectified.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Why it was denied (`reason`) and, under the GDPR, the right to complain.
    #[schema(value_type = Option<Object>)]
    pub denial: Option<Value>,
    /// Data subject requests are free of charge.
    pub fee: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none", default)]
    pub staff: Option<StaffDetails>,
}

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
pub struct VerifyBody {
    /// The one-time code (requester, with the request token).
    #[serde(default)]
    pub code: Option<String>,
    /// Staff: how the requester's identity was checked.
    #[serde(default)]
    pub method: Option<String>,
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

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Calendar year (UTC); default the current one.
    pub year: Option<i32>,
}

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

/// A staff principal, or the holder of a request token.
pub enum RequestAuth {
    /// The request the token belongs to, and its holder (a data subject,
    /// with the address the call came from).
    Token(Uuid, Actor),
    Staff(Actor),
}

fn bearer(parts: &Parts) -> Option<&str> {
    let h = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    super::extract::bearer_token(h)
}

impl FromRequestParts<AppState> for RequestAuth {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ServiceError> {
        if let Some(token) = bearer(parts).filter(|t| t.starts_with(TOKEN_PREFIX)) {
            let id = flow::request_for_token(state, token).await?;
            let rid = RequestId::from_request_parts(parts, state)
                .await
                .map(|r| r.0)
                .unwrap_or_default();
            let holder = Actor::data_subject(&rid).from_addr(client_addr(parts, state));
            super::extract::noted(parts, holder.clone());
            return Ok(RequestAuth::Token(id, holder));
        }
        Ok(RequestAuth::Staff(
            Actor::from_request_parts(parts, state).await?,
        ))
    }
}

/// A staff JWT when an `Authorization` header is present; nothing when it
/// is absent (a customer filing without a token).
pub struct MaybeStaff(Option<Actor>);

impl FromRequestParts<AppState> for MaybeStaff {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ServiceError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            Ok(MaybeStaff(Some(
                Actor::from_request_parts(parts, state).await?,
            )))
        } else {
            Ok(MaybeStaff(None))
        }
    }
}

fn require_any(state: &AppState, caller: &Actor, caps: &[Capability]) -> ApiResult<()> {
    let role = caller.role(&state.policy)?;
    if caps.iter().any(|c| role.has(*c)) {
        Ok(())
    } else {
        let names: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
        Err(ServiceError::insufficient_scope("capability_required")
            .detail(format!("this call needs one of: {}", names.join(", "))))
    }
}

/// Loads the request the credential may see: its own for a token, any for
/// staff with one of `caps`.
async fn load(
    state: &AppState,
    auth: &RequestAuth,
    id: Uuid,
    caps: &[Capability],
) -> ApiResult<Request> {
    match auth {
        RequestAuth::Token(own, _) if *own != id => {
            Err(ServiceError::insufficient_scope("token_not_for_request")
                .detail("the request token belongs to another request"))
        }
        RequestAuth::Staff(caller) => {
            require_any(state, caller, caps)?;
            state
                .store
                .request(id)
                .await?
                .ok_or_else(|| ServiceError::not_found("request_not_found"))
        }
        RequestAuth::Token(..) => state
            .store
            .request(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("request_not_found")),
    }
}

async fn load_staff(state: &AppState, caller: &Actor, id: &str) -> ApiResult<Request> {
    caller.require(&state.policy, Capability::RequestsProcess)?;
    let id = parse_id(id)?;
    state
        .store
        .request(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("request_not_found"))
}

// ---------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------

fn view(state: &AppState, r: &Request, staff: bool, now: i64) -> RequestView {
    RequestView {
        id: r.id,
        kind: r.kind.as_str().into(),
        regulation: r.regulation.as_str().into(),
        status: r.status.as_str().into(),
        received_at: rfc3339(r.received_at),
        due_at: rfc3339(r.due_at),
        language: r.language.as_str().into(),
        extended: r.extended_at.is_some(),
        verified_at: r.verified_at.map(rfc3339),
        responded_at: r.responded_at.map(rfc3339),
        result: r
            .result
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok()),
        denial: flow::denial_view(&state.policy, r),
        fee: "none".into(),
        staff: staff.then(|| StaffDetails {
            customer_id: r.customer_id,
            channel: r.channel.clone(),
            filed_by: r.filed_by.clone(),
            identified_by: r.identifier_field.clone(),
            verification_method: r.verification_method.clone(),
            verified_by: r.verified_by.clone(),
            approved_at: r.approved_at.map(rfc3339),
            approved_by: r.approved_by.clone(),
            extended_at: r.extended_at.map(rfc3339),
            extension_reason: r.extension_reason.clone(),
            code_attempts: r.code_attempts,
            merged_into: r.merged_into,
            overdue: r.is_overdue(now),
        }),
    }
}

/// The requester's view follows a merged request to the one it joined
/// (keeping its own id).
async fn requester_view(state: &AppState, r: &Request, now: i64) -> ApiResult<RequestView> {
    let joined = match r.merged_into {
        Some(into) => state.store.request(into).await?,
        None => None,
    };
    Ok(joined_view(state, r, joined.as_ref(), now))
}

/// The requester's view of `r`, which joined `joined` when merged.
fn joined_view(state: &AppState, r: &Request, joined: Option<&Request>, now: i64) -> RequestView {
    if let Some(target) = joined.filter(|_| r.merged_into.is_some()) {
        let mut v = view(state, target, false, now);
        v.id = r.id;
        v.received_at = rfc3339(r.received_at);
        return v;
    }
    view(state, r, false, now)
}

/// Whether the caller sees request records: the privacy team and auditors
/// (R20); other staff (a helpdesk verifying a caller) see what the
/// requester sees.
fn sees_records(state: &AppState, auth: &RequestAuth) -> bool {
    match auth {
        RequestAuth::Token(..) => false,
        RequestAuth::Staff(c) => {
            require_any(state, c, &[Capability::RequestsProcess, Capability::Audit]).is_ok()
        }
    }
}

async fn answer(state: &AppState, auth: &RequestAuth, r: &Request) -> ApiResult<Json<RequestView>> {
    let now = state.clock.now_micros();
    Ok(Json(if sees_records(state, auth) {
        view(state, r, true, now)
    } else {
        requester_view(state, r, now).await?
    }))
}

/// The answer of a staff action on a request (approve, deny, extend).
fn staff_reply(state: &AppState, r: &Request) -> ApiResult<Reply> {
    Reply::json(
        StatusCode::OK,
        &view(state, r, true, state.clock.now_micros()),
    )
}

fn actor(auth: &RequestAuth) -> &Actor {
    match auth {
        RequestAuth::Token(_, holder) => holder,
        RequestAuth::Staff(c) => c,
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

fn printable(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// A method name staff record (`id_document_checked`): no free text.
fn valid_method(m: &str) -> ApiResult<()> {
    let ok = !m.is_empty()
        && m.len() <= 64
        && m.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid_request(
            "a verification method is 1–64 characters of a-z, 0-9 and _ (e.g. id_document_checked)",
        )
        .field("verified_by"))
    }
}

/// The language of a filing: the body's `language`, else the best one of
/// `Accept-Language`, else English.
fn request_language(
    f: &FileRequest,
    headers: &axum::http::HeaderMap,
) -> ApiResult<crate::language::Language> {
    use crate::language::Language;
    if let Some(tag) = f.language.as_deref() {
        return Language::parse(tag).ok_or_else(|| {
            ServiceError::invalid_request("language is en, it or zh-Hans").field("language")
        });
    }
    Ok(headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Language::from_accept_language)
        .unwrap_or_default())
}

fn parse_intake(
    state: &AppState,
    f: &FileRequest,
    headers: &axum::http::HeaderMap,
    staff: bool,
) -> ApiResult<Intake> {
    let kind = Kind::parse(&f.kind).ok_or_else(|| {
        ServiceError::bad_request("unknown_kind")
            .detail(format!(
                "kind must be one of {}",
                policy::REQUEST_KINDS.join(", ")
            ))
            .field("kind")
    })?;
    let regulation = match f.regulation.as_deref() {
        None => {
            return Err(ServiceError::bad_request("regulation_required")
                .detail("regulation is gdpr or ccpa")
                .field("regulation"));
        }
        Some(r) => Regulation::parse(r).ok_or_else(|| {
            ServiceError::bad_request("unknown_regulation")
                .detail("regulation is gdpr or ccpa")
                .field("regulation")
        })?,
    };
    let channel = valid_channel(f.channel.as_deref())?
        .unwrap_or(if staff { "api" } else { "web" })
        .to_owned();
    if f.lift && !kind.may_lift() {
        return Err(ServiceError::bad_request("lift_not_allowed")
            .detail("lift applies to restriction, objection, opt_out_sale and limit_sensitive")
            .field("lift"));
    }
    if f.lift && kind == Kind::Restriction && !staff {
        return Err(ServiceError::bad_request("lift_not_allowed")
            .detail("a restriction is lifted by the controller")
            .field("lift"));
    }
    let purpose = match (kind, f.purpose.as_deref()) {
        (Kind::Objection, None) => {
            return Err(ServiceError::bad_request("purpose_required")
                .detail("an objection names the purpose it objects to")
                .field("purpose"));
        }
        (Kind::Objection, Some(p)) => {
            let declared = state
                .policy
                .purpose(p)
                .ok_or_else(|| ServiceError::bad_request("unknown_purpose").field("purpose"))?;
            // Art. 21 applies to processing on legitimate interests or a
            // public task, and to direct marketing (consent here).
            if !matches!(
                declared.basis,
                LegalBasis::LegitimateInterest | LegalBasis::PublicTask | LegalBasis::Consent
            ) {
                return Err(ServiceError::bad_request("objection_not_applicable")
                    .detail(format!(
                        "{} is processed on the basis {}, which an objection does not stop",
                        declared.name, declared.basis
                    ))
                    .field("purpose"));
            }
            Some(declared.name.clone())
        }
        (_, Some(_)) => {
            return Err(
                ServiceError::invalid_request("purpose applies to objections only")
                    .field("purpose"),
            );
        }
        (_, None) => None,
    };
    let changes = match (kind, &f.changes) {
        (Kind::Rectification, None) => {
            return Err(ServiceError::bad_request("changes_required")
                .detail("a rectification names the values to change")
                .field("changes"));
        }
        (Kind::Rectification, Some(c)) => {
            if c.fields.is_empty() {
                return Err(ServiceError::bad_request("changes_required")
                    .detail("a rectification names the values to change")
                    .field("changes"));
            }
            let mut out = Changes::default();
            for (name, change) in &c.fields {
                let def = state.policy.field(name).ok_or_else(|| {
                    ServiceError::bad_request("unknown_field")
                        .detail("the policy does not declare this field")
                        .field(name.clone())
                })?;
                let value = match change {
                    None => None,
                    Some(u) => {
                        if u.purposes.is_some() {
                            return Err(ServiceError::invalid_request(
                                "a rectification corrects a value; its purposes stay",
                            )
                            .field(name.clone()));
                        }
                        Some(policy::normalize(def.ty, &u.value).map_err(|e| {
                            ServiceError::bad_request("invalid_value")
                                .detail(e.to_string())
                                .field(name.clone())
                        })?)
                    }
                };
                out.fields.insert(def.name.clone(), value);
            }
            Some(out)
        }
        (_, Some(_)) => {
            return Err(
                ServiceError::invalid_request("changes apply to rectification only")
                    .field("changes"),
            );
        }
        (_, None) => None,
    };
    Ok(Intake {
        kind,
        regulation,
        channel,
        purpose,
        lift: f.lift,
        changes,
        language: request_language(f, headers)?,
    })
}

fn filed(f: &flow::Filed) -> ApiResult<Reply> {
    let body = Filed {
        id: f.request.id,
        status: f.request.status.as_str().into(),
        received_at: rfc3339(f.request.received_at),
        due_at: rfc3339(f.request.due_at),
        request_token: f.token.clone(),
        merged: f.merged,
    };
    Reply::json(StatusCode::ACCEPTED, &body)
        .map(|r| r.location(&format!("/v1/requests/{}", f.request.id)))
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// File a data subject request. Without a token: a customer identified by
/// a searchable field; always 202 with the same shape whether or not such a
/// customer exists. With a staff token (`requests.file`): for a known
/// customer. `Sec-GPC: 1` on an identified customer's request records an
/// opt-out of sale/sharing.
#[utoipa::path(post, path = "/v1/requests", tag = "requests",
    params(("Sec-GPC" = Option<String>, Header, description = "Global Privacy Control: 1 opts out of sale/sharing")),
    request_body = FileRequest,
    responses((status = 202, description = "The request is received (always the same shape, whether or not the customer is known)", body = Filed),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)),
    security((), ("bearer" = [])))]
pub async fn file_request(
    State(state): State<AppState>,
    MaybeStaff(staff): MaybeStaff,
    RequestId(rid): RequestId,
    Client(addr): Client,
    keyed: Keyed,
    headers: axum::http::HeaderMap,
    Body(input): Body<FileRequest>,
) -> ApiResult<Response> {
    let answer = keyed.answer(&state, filed);
    match staff {
        Some(caller) => {
            let intake = parse_intake(&state, &input, &headers, true)?;
            let Some(raw) = input.customer_id.as_deref() else {
                return Err(ServiceError::bad_request("identifier_required")
                    .detail("staff file a request with the customer's id")
                    .field("customer_id"));
            };
            if input.identifier.is_some() {
                return Err(ServiceError::invalid_request(
                    "staff name the customer by customer_id, not by identifier",
                )
                .field("identifier"));
            }
            let customer = parse_id(raw)?;
            if let Some(m) = &input.verified_by {
                valid_method(m)?;
            }
            let f = flow::intake_by_staff(
                &state,
                &caller,
                intake,
                customer,
                input.verified_by.clone(),
                &answer,
            )
            .await?;
            Ok(filed(&f)?.into_response())
        }
        None => {
            let filer = Actor::data_subject(&rid).from_addr(addr);
            let f = file_by_customer(&state, &filer, &headers, &input, &answer).await?;
            Ok(filed(&f)?.into_response())
        }
    }
}

/// A customer's own filing, without a token (the API's and the privacy
/// center's): identified by a searchable field, answered alike whether or
/// not a customer matches. `Sec-GPC: 1` in `headers` records an opt-out of
/// sale/sharing for an identified customer.
pub(crate) async fn file_by_customer(
    state: &AppState,
    filer: &Actor,
    headers: &axum::http::HeaderMap,
    input: &FileRequest,
    answer: &Answer<'_, flow::Filed>,
) -> ApiResult<flow::Filed> {
    let intake = parse_intake(state, input, headers, false)?;
    if input.customer_id.is_some() || input.verified_by.is_some() {
        return Err(ServiceError::unauthenticated()
            .detail("customer_id and verified_by are for staff, with a token"));
    }
    let Some(ident) = &input.identifier else {
        return Err(ServiceError::bad_request("identifier_required")
            .detail("identify yourself with a searchable field, e.g. {\"field\": \"email\", \"value\": …}")
            .field("identifier"));
    };
    let def = state
        .policy
        .field(&ident.field)
        .ok_or_else(|| ServiceError::bad_request("unknown_field").field(ident.field.clone()))?;
    if !def.searchable {
        return Err(ServiceError::bad_request("field_not_searchable").field(def.name.clone()));
    }
    let normalized = policy::normalize(def.ty, &ident.value).map_err(|e| {
        ServiceError::bad_request("invalid_value")
            .detail(e.to_string())
            .field(def.name.clone())
    })?;
    flow::intake_by_customer(state, filer, intake, def, &normalized, gpc(headers), answer).await
}

/// The request carried the Global Privacy Control signal (`Sec-GPC: 1`).
pub(crate) fn gpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("sec-gpc")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1")
}

/// A request: to its requester (request token) or to the privacy team
/// (`requests.process`) and auditors (`audit`).
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, description = "The request: status, timestamps, deadline and result", body = RequestView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_request(
    State(state): State<AppState>,
    auth: RequestAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestView>> {
    let id = parse_id(&id)?;
    Ok(Json(read(&state, &auth, id).await?))
}

/// The request itself, when `auth` may see it (its own for a token).
pub(crate) async fn own_request(
    state: &AppState,
    auth: &RequestAuth,
    id: Uuid,
) -> ApiResult<Request> {
    load(state, auth, id, &[Capability::RequestsProcess]).await
}

/// A request as `auth` may see it, its reading audited (the API's and the
/// privacy center's).
pub(crate) async fn read(state: &AppState, auth: &RequestAuth, id: Uuid) -> ApiResult<RequestView> {
    let r = load(
        state,
        auth,
        id,
        &[Capability::RequestsProcess, Capability::Audit],
    )
    .await?;
    let ev = flow::event(actor(auth), Action::RequestRead, Decision::Allowed, &r);
    state.sequencer.commit(Unit::event(ev)).await?;
    answer(state, auth, &r).await.map(|Json(v)| v)
}

/// Verify the requester: the one-time code (request token), or staff
/// (`requests.file` or `requests.process`) recording the method they used.
#[utoipa::path(post, path = "/v1/requests/{id}/verify", tag = "requests",
    params(("id" = String, Path)), request_body = VerifyBody,
    responses((status = 200, description = "The requester is verified; the request's new status", body = RequestView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    auth: RequestAuth,
    Path(id): Path<String>,
    keyed: Keyed,
    Body(input): Body<VerifyBody>,
) -> ApiResult<Json<RequestView>> {
    let id = parse_id(&id)?;
    let records = sees_records(&state, &auth);
    let reply = |a: &Answered| {
        let now = state.clock.now_micros();
        let v = if records {
            view(&state, &a.request, true, now)
        } else {
            joined_view(&state, &a.request, a.joined.as_ref(), now)
        };
        Reply::json(StatusCode::OK, &v)
    };
    let recorded = keyed.answer(&state, reply);
    Ok(Json(
        verify_request(&state, &auth, id, input, &recorded).await?,
    ))
}

/// Verifies the requester (the API's and the privacy center's), recording
/// `recorded` with the effect.
pub(crate) async fn verify_request(
    state: &AppState,
    auth: &RequestAuth,
    id: Uuid,
    input: VerifyBody,
    recorded: &Answer<'_, Answered>,
) -> ApiResult<RequestView> {
    let r = load(
        state,
        auth,
        id,
        &[Capability::RequestsFile, Capability::RequestsProcess],
    )
    .await?;
    let r = match (auth, input.code, input.method) {
        (RequestAuth::Token(_, holder), Some(code), None) => {
            if code.is_empty() || code.len() > 64 {
                return Err(ServiceError::bad_request("invalid_code").detail("the code is wrong"));
            }
            flow::verify_code(state, holder, r, code, recorded).await?
        }
        (RequestAuth::Staff(caller), None, Some(method)) => {
            valid_method(&method).map_err(|e| e.field("method"))?;
            flow::verify_by_staff(state, caller, r, &method, recorded).await?
        }
        (RequestAuth::Token(..), _, _) => {
            return Err(ServiceError::invalid_request("send the code you received").field("code"));
        }
        (RequestAuth::Staff(_), _, _) => {
            return Err(ServiceError::invalid_request(
                "staff send the method they verified the requester with",
            )
            .field("method"));
        }
    };
    answer(state, auth, &r).await.map(|Json(v)| v)
}

/// Approve a request waiting for the DPO (`requests.process`); it is then
/// carried out.
#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests",
    params(("id" = String, Path)),
    responses((status = 200, description = "The request is approved and carried out; its new status", body = RequestView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    keyed: Keyed,
) -> ApiResult<Response> {
    let r = load_staff(&state, &caller, &id).await?;
    let reply = |a: &Answered| staff_reply(&state, &a.request);
    let r = flow::approve(&state, &caller, r, &keyed.answer(&state, reply)).await?;
    Ok(staff_reply(&state, &r)?.into_response())
}

/// Deny a request with a machine-readable reason (`requests.process`).
#[utoipa::path(post, path = "/v1/requests/{id}/deny", tag = "requests",
    params(("id" = String, Path)), request_body = DenyBody,
    responses((status = 200, description = "The request is denied; its new status", body = RequestView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn deny(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    keyed: Keyed,
    Body(input): Body<DenyBody>,
) -> ApiResult<Response> {
    let r = load_staff(&state, &caller, &id).await?;
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
    let reply = |a: &Answered| staff_reply(&state, &a.request);
    let answer = keyed.answer(&state, reply);
    let r = flow::deny(&state, &caller, r, reason, input.note.clone(), &answer).await?;
    Ok(staff_reply(&state, &r)?.into_response())
}

/// Extend the deadline once, before it passes, with a reason
/// (`requests.process`): GDPR up to three months from receipt, CCPA 90 days.
#[utoipa::path(post, path = "/v1/requests/{id}/extend", tag = "requests",
    params(("id" = String, Path)), request_body = ExtendBody,
    responses((status = 200, description = "The deadline is extended; the request with its new `due_at`", body = RequestView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn extend(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    keyed: Keyed,
    Body(input): Body<ExtendBody>,
) -> ApiResult<Response> {
    let r = load_staff(&state, &caller, &id).await?;
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
    let reply = |a: &Answered| staff_reply(&state, &a.request);
    let answer = keyed.answer(&state, reply);
    let r = flow::extend(&state, &caller, r, reason, until, &answer).await?;
    Ok(staff_reply(&state, &r)?.into_response())
}

/// Requests by status, kind, or open past their deadline (`requests.process`
/// or `audit`).
#[utoipa::path(get, path = "/v1/requests", tag = "requests",
    params(ListQuery),
    responses((status = 200, description = "The matching requests", body = RequestList),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_requests(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RequestList>> {
    require_any(
        &state,
        &caller,
        &[Capability::RequestsProcess, Capability::Audit],
    )?;
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
    Ok(Json(RequestList {
        requests: rows.iter().map(|r| view(&state, r, true, now)).collect(),
        next_after,
    }))
}

/// Yearly figures per kind: received, completed, partially completed,
/// denied, still open, median days to respond (`requests.process` or
/// `audit`).
#[utoipa::path(get, path = "/v1/requests/metrics", tag = "requests", operation_id = "request_metrics",
    params(MetricsQuery),
    responses((status = 200, description = "Request counts and response times for the year", body = Metrics),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<Json<Metrics>> {
    require_any(
        &state,
        &caller,
        &[Capability::RequestsProcess, Capability::Audit],
    )?;
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
    Ok(Json(Metrics {
        year,
        kinds,
        total: lc::metrics(rows.iter()),
    }))
}

/// The package of a completed access or portability request (request token
/// or `requests.process`); once the customer is erased, only the receipt.
#[utoipa::path(get, path = "/v1/requests/{id}/export", tag = "requests",
    params(("id" = String, Path)),
    responses((status = 200, description = "The export package (see /v1/schemas/export.json)", body = Object),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_export(
    State(state): State<AppState>,
    auth: RequestAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    Ok(Json(export(&state, &auth, id).await?))
}

/// The export package, its download audited (the API's and the privacy
/// center's).
pub(crate) async fn export(state: &AppState, auth: &RequestAuth, id: Uuid) -> ApiResult<Value> {
    let r = load(state, auth, id, &[Capability::RequestsProcess]).await?;
    // A merged request's export is that of the request it joined.
    let r = match r.merged_into {
        Some(into) => state.store.request(into).await?.unwrap_or(r),
        None => r,
    };
    let package = flow::export_package(state, &r).await?;
    let fields = crate::customers::erase::package_fields(&package);
    let ev =
        flow::event(actor(auth), Action::RequestExported, Decision::Allowed, &r).fields(fields);
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(package)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_names_not_free_text() {
        assert!(valid_method("id_document_checked").is_ok());
        assert!(valid_method("Ada Lovelace's passport").is_err());
        assert!(valid_method("").is_err());
    }
}
