//! Data subject requests over HTTP: intake (a customer without a token, or
//! staff with `requests.file`), verification, approval, denial, extension,
//! the requester's and the privacy team's views, the overdue listing, the
//! yearly metrics and the export download. The rules live in
//! `crate::requests::lifecycle`, the steps in `crate::requests::flow` and
//! the privacy team's use cases in `crate::requests::staff`; these
//! handlers parse, call and answer.
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
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{Body, Client, RequestId, client_addr, parse_id};
use super::idempotency::{Keyed, Reply};
use crate::actor::Actor;
use crate::answer::Answer;
use crate::clock::rfc3339;
use crate::customers::{UpdateField, valid_channel};
use crate::policy::{self, Capability, LegalBasis};
use crate::requests::StoredRequests;
use crate::requests::flow::{self, Answered, Changes, Intake, TOKEN_PREFIX};
use crate::requests::lifecycle::{Kind, Regulation, Request};
use crate::requests::staff::{
    self, DenyBody, ExtendBody, ListQuery, Metrics, MetricsQuery, RequestList,
};
use crate::requests::view::{self, RequestView};
use crate::state::AppState;
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
            caller.require_any(&state.policy, caps)?;
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

// ---------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------

/// Whether the caller sees request records: the privacy team and auditors
/// (R20); other staff (a helpdesk verifying a caller) see what the
/// requester sees.
fn sees_records(state: &AppState, auth: &RequestAuth) -> bool {
    match auth {
        RequestAuth::Token(..) => false,
        RequestAuth::Staff(c) => c
            .require_any(
                &state.policy,
                &[Capability::RequestsProcess, Capability::Audit],
            )
            .is_ok(),
    }
}

async fn answer(state: &AppState, auth: &RequestAuth, r: &Request) -> ApiResult<Json<RequestView>> {
    let now = state.clock.now_micros();
    Ok(Json(if sees_records(state, auth) {
        view::of(&state.policy, r, true, now)
    } else {
        view::requester(state, r, now).await?
    }))
}

/// The answer of a staff action on a request (approve, deny, extend).
fn staff_reply(v: &RequestView) -> ApiResult<Reply> {
    Reply::json(StatusCode::OK, v)
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
    if let RequestAuth::Staff(caller) = auth {
        return staff::read(state, caller, id).await;
    }
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
            view::of(&state.policy, &a.request, true, now)
        } else {
            view::joined(&state.policy, &a.request, a.joined.as_ref(), now)
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
    let answer = keyed.answer(&state, staff_reply);
    let v = staff::approve(&state, &caller, parse_id(&id), &answer).await?;
    Ok(staff_reply(&v)?.into_response())
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
    let answer = keyed.answer(&state, staff_reply);
    let v = staff::deny(&state, &caller, parse_id(&id), &input, &answer).await?;
    Ok(staff_reply(&v)?.into_response())
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
    let answer = keyed.answer(&state, staff_reply);
    let v = staff::extend(&state, &caller, parse_id(&id), &input, &answer).await?;
    Ok(staff_reply(&v)?.into_response())
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
    Ok(Json(staff::list(&state, &caller, &q).await?))
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
    Ok(Json(staff::metrics(&state, &caller, &q).await?))
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
