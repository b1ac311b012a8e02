//! Carrying a data subject request from intake to its outcome: the effects
//! around the pure rules of [`lifecycle`](super::lifecycle). Every step is
//! one unit (the request row, what it changes, the outbox messages it
//! queues and its audit events commit together or not at all), and every
//! update names the version of the request it read, so two concurrent steps
//! never both apply.
//!
//! Identity is never revealed to an unauthenticated requester: an intake
//! whose identifier matches no customer still files a request, hashes a
//! code and answers the same; that request simply can never be verified.

use crate::audit::{Action, Decision};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::lifecycle::{self as lc, DenialReason, Filing, Kind, Refusal, Request, Status};
use super::outbox::{self, Contact};
use super::rows::StoredRequests;
use crate::actor::Actor;
use crate::answer::Answer;
use crate::audit::{CommitError, EventDraft};
use crate::clock::rfc3339;
use crate::crypto::{self, Dek};
use crate::customers::{decrypt, put_field, unwrap_dek};
use crate::error::{ServiceError, ServiceResult};
use crate::policy::{Capability, FieldDef, Policy};
use crate::state::AppState;
use crate::store::{
    CustomerRecord, Mutation, PrincipalKind, RequestMutation as RM, RequestRow, Unit,
};

pub use crate::actor::DATA_SUBJECT;
/// Request tokens start with this, so they are told apart from JWTs (and
/// recognised by secret scanners).
pub const TOKEN_PREFIX: &str = "pvr_";

/// A verified request waits this long before the background resumes it (the
/// step that verified or approved it is normally carrying it out).
const RESUME_AFTER_US: i64 = 5 * 60 * 1_000_000;

/// The new values of a rectification, normalised; `None` removes a value.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Changes {
    pub fields: BTreeMap<String, Option<String>>,
}

impl std::fmt::Debug for Changes {
    /// Field names only, never the values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A request as parsed at the edge.
#[derive(Debug, Clone)]
pub struct Intake {
    pub kind: Kind,
    pub regulation: lc::Regulation,
    pub channel: String,
    pub purpose: Option<String>,
    pub lift: bool,
    pub changes: Option<Changes>,
    /// The language messages to the customer about the request are
    /// written in (the edge picks it: the body, else `Accept-Language`).
    pub language: lc::Language,
}

/// The outcome of an intake. (No `Debug`: it holds the request token.)
#[derive(Clone)]
pub struct Filed {
    pub request: Request,
    /// Authorises reading and verifying this request (shown once). Only a
    /// customer filing for themself gets it here; the token of a request
    /// staff filed goes to the customer's contact on file, never to staff.
    pub token: Option<String>,
    /// An open request asking the same was found and is answered instead.
    pub merged: bool,
}

/// A request as a step left it, for the step's answer: with the open
/// request it joined when the step merged it into one.
pub struct Answered {
    pub request: Request,
    pub joined: Option<Request>,
}

impl Answered {
    fn new(request: &Request) -> Self {
        Answered {
            request: request.clone(),
            joined: None,
        }
    }
}

/// An audit event about a request: ids, kind, regulation and status only.
pub fn event(actor: &Actor, action: Action, decision: Decision, r: &Request) -> EventDraft {
    let mut e = actor
        .event(action, decision)
        .reason("request", &r.id.to_string())
        .reason("kind", r.kind.as_str())
        .reason("regulation", r.regulation.as_str())
        .reason("status", r.status.as_str());
    if let Some(c) = r.customer_id {
        e = e.customer(c);
    }
    if r.kind == Kind::Objection {
        e = e.purpose(r.purpose.as_deref());
    }
    e
}

/// The API answer to a refused transition.
pub fn refusal(e: Refusal) -> ServiceError {
    let err = match e {
        Refusal::Closed => ServiceError::conflict("request_closed"),
        Refusal::NotVerifying => ServiceError::conflict("not_verifying"),
        Refusal::CodeExpired => ServiceError::bad_request("code_expired"),
        Refusal::InvalidCode => ServiceError::bad_request("invalid_code"),
        Refusal::TooManyAttempts => ServiceError::new(
            crate::error::ErrorKind::TooManyRequests,
            "too_many_attempts",
        ),
        Refusal::AlreadyVerified => ServiceError::conflict("already_verified"),
        Refusal::NotAwaitingApproval => ServiceError::conflict("not_awaiting_approval"),
        Refusal::AlreadyExtended => ServiceError::conflict("already_extended"),
        Refusal::PastDue => ServiceError::conflict("past_due"),
        Refusal::ReasonRequired => ServiceError::bad_request("reason_required"),
        Refusal::ExtensionTooLong => ServiceError::bad_request("extension_too_long"),
        Refusal::ExtensionTooShort => ServiceError::bad_request("extension_too_short"),
        Refusal::NotVerified => ServiceError::conflict("not_verified"),
        Refusal::NotApproved => ServiceError::conflict("not_approved"),
    };
    err.detail(e.to_string())
}

/// Commits one step. A request that changed since it was read (or a
/// customer erased meanwhile) refuses the whole unit: 409.
async fn commit(
    state: &AppState,
    mutations: Vec<Mutation>,
    events: Vec<EventDraft>,
) -> ServiceResult<()> {
    state
        .sequencer
        .commit(Unit { mutations, events })
        .await
        .map_err(|e| match e {
            CommitError::NotFound | CommitError::Conflict(_) => {
                ServiceError::conflict("request_changed")
                    .detail("the request changed meanwhile; read it again and retry")
            }
            other => other.into(),
        })?;
    Ok(())
}

fn update(r: &Request) -> Mutation {
    RM::UpdateRequest(Box::new(RequestRow::from(r))).into()
}

/// The request as stored after an [`update`] committed.
fn saved(mut r: Request) -> Request {
    r.version += 1;
    r
}

fn live(r: &CustomerRecord) -> bool {
    r.customer.erased_at.is_none() && r.customer.wrapped_dek.is_some()
}

fn new_token() -> ServiceResult<(String, String)> {
    let token = format!(
        "{TOKEN_PREFIX}{}",
        crypto::generate_secret().map_err(ServiceError::internal)?
    );
    let hash = crypto::sha256_hex(&token);
    Ok((token, hash))
}

/// A fresh one-time code and its argon2id hash (hashed off the async
/// threads, through the one limiter of password work: 503 when it is full).
async fn new_code(state: &AppState) -> ServiceResult<(Zeroizing<String>, String)> {
    let code =
        Zeroizing::new(crypto::random_digits(lc::CODE_DIGITS).map_err(ServiceError::internal)?);
    let hash = state.password_work.hash(code.clone()).await?;
    Ok((code, hash))
}

fn changes_label(request: Uuid) -> String {
    format!("request:{request}")
}

fn seal_changes(
    dek: &Dek,
    owner: Uuid,
    request: Uuid,
    changes: &Changes,
) -> ServiceResult<Vec<u8>> {
    let plain = Zeroizing::new(serde_json::to_vec(changes).map_err(ServiceError::internal)?);
    dek.encrypt_field(owner, &changes_label(request), &plain)
        .map_err(ServiceError::internal)
}

fn open_changes(dek: &Dek, customer: Uuid, r: &Request) -> ServiceResult<Changes> {
    let Some(sealed) = r.changes.as_ref() else {
        return Ok(Changes::default());
    };
    let plain = dek
        .decrypt_field(customer, &changes_label(r.id), sealed)
        .map_err(ServiceError::internal)?;
    serde_json::from_slice(&plain).map_err(ServiceError::internal)
}

/// The live customer whose searchable `def` field holds `normalized`: its
/// blind index `digest` finds candidates, the decrypted value must really
/// be equal.
pub async fn find_customer(
    state: &AppState,
    def: &FieldDef,
    normalized: &str,
    digest: &[u8],
) -> ServiceResult<Option<CustomerRecord>> {
    for id in state.store.find_by_blind_index(&def.name, digest).await? {
        let Some(record) = state.store.customer_record(id).await? else {
            continue;
        };
        if !live(&record) {
            continue;
        }
        let Some(row) = record.fields.iter().find(|f| f.field == def.name) else {
            continue;
        };
        let Ok(dek) = unwrap_dek(state, &record) else {
            continue;
        };
        let Ok(value) = decrypt(&dek, id, row) else {
            continue;
        };
        if crypto::constant_time_eq(value.as_bytes(), normalized.as_bytes()) {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

fn code_message(
    dek: &Dek,
    r: &Request,
    to: &Contact,
    code: &str,
    expires_at: i64,
    now: i64,
    token: Option<&str>,
) -> ServiceResult<Mutation> {
    let Some(customer) = r.customer_id else {
        return Err(ServiceError::internal("a code message needs a customer"));
    };
    let confirming = r.kind.needs_customer_confirmation(r.lift);
    let mut body = json!({
        "request_id": r.id,
        "request_kind": r.kind,
        "lift": r.lift,
        "purpose": if confirming { "confirm_request" } else { "verify_identity" },
        "code": code,
        "expires_at": rfc3339(expires_at),
        "message": if confirming {
            "Enter this code to confirm your request. Ignore this message if you did not ask for it."
        } else {
            "Enter this code to confirm it is you who filed the request. Ignore this message if you did not."
        },
    });
    if let Some(t) = token {
        // Filed by staff on the customer's behalf: the customer alone holds
        // the token that confirms, follows and downloads the request.
        body["request_token"] = json!(t);
        body["filed_on_your_behalf"] = json!(true);
    }
    outbox::customer_message(
        dek,
        customer,
        outbox::VERIFICATION_CODE,
        Some(r.id),
        to,
        body,
        now,
    )
    .map_err(ServiceError::internal)
}

/// The denial as the requester sees it; under the GDPR with the right to
/// complain to a supervisory authority (Art. 12(4), R19).
pub fn denial_view(policy: &Policy, r: &Request) -> Option<Value> {
    let reason = r.denial_reason?;
    let mut v = json!({"reason": reason.as_str()});
    if let Some(note) = &r.denial_note {
        v["note"] = json!(note);
    }
    if r.regulation == lc::Regulation::Gdpr {
        v["complaint"] = json!({
            "right": "You may lodge a complaint with a supervisory authority, in particular in the EU member state of your habitual residence, place of work or place of the alleged infringement (GDPR Art. 77), and seek a judicial remedy (Art. 79).",
            "controller": policy.controller.name,
            "contact": policy.controller.dpo_contact.as_ref().unwrap_or(&policy.controller.contact),
        });
    }
    Some(v)
}

/// A message to the customer about `r`, to the contact on file; `None` when
/// there is no live customer or no contact to write to.
async fn tell_customer(
    state: &AppState,
    r: &Request,
    kind: &str,
    body: Value,
    now: i64,
) -> ServiceResult<Option<Mutation>> {
    let Some(customer) = r.customer_id else {
        return Ok(None);
    };
    let Some(record) = state.store.customer_record(customer).await? else {
        return Ok(None);
    };
    if !live(&record) {
        return Ok(None);
    }
    let dek = unwrap_dek(state, &record)?;
    let Some(to) =
        outbox::contact_on_file(&state.policy, &record, &dek, r.identifier_field.as_deref())
    else {
        return Ok(None);
    };
    outbox::customer_message(&dek, customer, kind, Some(r.id), &to, body, now)
        .map(Some)
        .map_err(ServiceError::internal)
}

fn outcome_body(policy: &Policy, r: &Request) -> Value {
    json!({
        "request_id": r.id,
        "request_kind": r.kind,
        "status": r.status,
        "result": r.result.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()),
        "denial": denial_view(policy, r),
        "message": "Follow the request with your request token: GET /v1/requests/{id}.",
    })
}

// ---------------------------------------------------------------------------
// Intake
// ---------------------------------------------------------------------------

/// A request filed by a customer without a token, identified by a
/// searchable field. Answers alike whether or not a customer matches.
/// `actor` is the data subject (with the address the filing came from);
/// one address files at most `intake_per_source_per_hour` (429
/// `rate_limited` past it), before any other work.
/// `gpc`: the request carried `Sec-GPC: 1` (an opt-out of sale/sharing for
/// an identified customer, R11). `answer` is recorded with the filing (see
/// [`crate::answer`]).
pub async fn intake_by_customer(
    state: &AppState,
    actor: &Actor,
    intake: Intake,
    def: &FieldDef,
    normalized: &str,
    gpc: bool,
    answer: &Answer<'_, Filed>,
) -> ServiceResult<Filed> {
    if let Some(addr) = &actor.client_addr {
        let source = crate::auth::client_addr::source_key(addr.ip());
        state.intake_sources.check(&source).map_err(|wait| {
            ServiceError::too_many("rate_limited", wait)
                .detail("too many requests filed from this address; retry after the indicated time")
        })?;
    }
    let actor = actor.clone();
    let now = state.clock.now_micros();
    // Counted whether or not the customer exists, so the limit reveals
    // nothing either: past it the filing is answered and recorded the same
    // way, but no code is sent.
    let digest = state.keys.index.blind_index(&def.name, normalized);
    let code_allowed = state.intake_codes.check(&hex::encode(digest)).is_ok();
    let record = find_customer(state, def, normalized, &digest).await?;
    let dek = record.as_ref().map(|r| unwrap_dek(state, r)).transpose()?;
    let id = Uuid::now_v7();
    let mut r = Request::file(
        id,
        Filing {
            kind: intake.kind,
            regulation: intake.regulation,
            channel: intake.channel.clone(),
            customer_id: record.as_ref().map(|r| r.customer.id),
            identifier_field: Some(def.name.clone()),
            filed_by: DATA_SUBJECT.into(),
            purpose: intake.purpose.clone(),
            lift: intake.lift,
            language: intake.language,
        },
        now,
    );
    let (token, token_hash) = new_token()?;
    let mut mutations: Vec<Mutation> = Vec::new();
    let mut events = Vec::new();
    if let Some(changes) = &intake.changes {
        // With no customer the values are sealed under a key that is thrown
        // away at once: the same work, and never readable.
        let sealed = match &dek {
            Some(k) => seal_changes(k, r.customer_id.unwrap_or(id), id, changes)?,
            None => seal_changes(
                &Dek::generate().map_err(ServiceError::internal)?,
                id,
                id,
                changes,
            )?,
        };
        r.changes = Some(sealed);
    }
    if r.kind.skips_verification(r.lift) {
        r = lc::accept_unverified(&r).map_err(refusal)?;
    } else {
        let (code, hash) = new_code(state).await?;
        let expires = now + ttl(state);
        r = lc::send_code(&r, hash, expires).map_err(refusal)?;
        if let (Some(record), Some(dek)) = (&record, &dek)
            && let Some(to) = outbox::contact_on_file(&state.policy, record, dek, Some(&def.name))
        {
            if code_allowed {
                mutations.push(code_message(dek, &r, &to, &code, expires, now, None)?);
                events.push(
                    event(&actor, Action::RequestCodeSent, Decision::Allowed, &r)
                        .fields([to.field.clone()]),
                );
            } else {
                events.push(
                    event(&actor, Action::RequestCodeWithheld, Decision::Denied, &r)
                        .fields([to.field.clone()])
                        .reason("code", "intake_codes_per_hour"),
                );
            }
        }
    }
    events.insert(
        0,
        event(&actor, Action::RequestReceived, Decision::Allowed, &r)
            .reason("channel", &r.channel)
            .reason("identified_by", &def.name),
    );
    if gpc && let Some(record) = record.as_ref().filter(|r| !r.customer.opted_out_sale) {
        mutations.push(
            RM::SetOptedOutSale {
                customer_id: record.customer.id,
                value: true,
            }
            .into(),
        );
        events.push(
            actor
                .event(Action::SubjectOptOutSale, Decision::Allowed)
                .customer(record.customer.id)
                .reason("source", "global_privacy_control")
                .reason("request", &id.to_string()),
        );
    }
    mutations.insert(0, RM::InsertRequest(Box::new(RequestRow::from(&r))).into());
    mutations.push(
        RM::InsertToken {
            token_sha256: token_hash,
            request_id: id,
            at: now,
        }
        .into(),
    );
    let mut filed = Filed {
        request: r,
        token: Some(token),
        merged: false,
    };
    mutations.extend(answer.record(&filed)?);
    commit(state, mutations, events).await?;
    if filed.request.status == Status::Verified {
        filed.request = execute(state, &actor, filed.request).await?;
    }
    outbox::wake();
    Ok(filed)
}

fn ttl(state: &AppState) -> i64 {
    i64::try_from(state.settings.verification_code_ttl_secs)
        .unwrap_or(1800)
        .saturating_mul(1_000_000)
}

/// A request filed by staff (`requests.file`) for a known customer.
///
/// The filer never receives the request token: when the customer has a
/// contact on file, a token is issued and sent there (with the code when one
/// is needed), so only the customer can confirm, follow and download the
/// request. `verified_by` records how staff checked the requester's identity;
/// it never stands in for the customer's own confirmation of lifting an
/// opt-out, a limit or an objection (R14). A rectification the filer could
/// not make with `PATCH` waits for `requests.process` approval.
///
/// `answer` is recorded with the filing, or with the verification of the
/// open request it is merged into (see [`crate::answer`]).
pub async fn intake_by_staff(
    state: &AppState,
    caller: &Actor,
    intake: Intake,
    customer: Uuid,
    verified_by: Option<String>,
    answer: &Answer<'_, Filed>,
) -> ServiceResult<Filed> {
    caller.require(&state.policy, Capability::RequestsFile)?;
    if intake.kind == Kind::Restriction && intake.lift {
        // Lifting a restriction is the controller's decision (Art. 18(3)).
        caller.require(&state.policy, Capability::RequestsProcess)?;
    }
    let now = state.clock.now_micros();
    let record = match state.store.customer_record(customer).await? {
        Some(r) if live(&r) => r,
        _ => {
            let ev = caller
                .event(Action::RequestReceived, Decision::NotFound)
                .customer(customer)
                .reason("kind", intake.kind.as_str());
            state.sequencer.commit(Unit::event(ev)).await?;
            return Err(ServiceError::not_found("customer_not_found").audited());
        }
    };
    let dek = unwrap_dek(state, &record)?;
    let id = Uuid::now_v7();
    let mut r = Request::file(
        id,
        Filing {
            kind: intake.kind,
            regulation: intake.regulation,
            channel: intake.channel.clone(),
            customer_id: Some(customer),
            identifier_field: None,
            filed_by: caller.id.clone(),
            purpose: intake.purpose.clone(),
            lift: intake.lift,
            language: intake.language,
        },
        now,
    );
    let verified_by = verified_by.filter(|_| !r.kind.needs_customer_confirmation(r.lift));
    // Duplicates are merged: staff may see every open request of the customer.
    let open = state.store.open_requests_of(customer).await?;
    if let Some(s) = open
        .into_iter()
        .find(|s| lc::same_ask(s, &r) && (s.verified_at.is_some() || s.filed_by != DATA_SUBJECT))
    {
        let ev = event(caller, Action::RequestMerged, Decision::Allowed, &s)
            .reason("filed_again_by", "staff");
        let merged = |request: Request| Filed {
            request,
            token: None,
            merged: true,
        };
        let request = match verified_by {
            Some(method) if s.verified_at.is_none() && !s.status.is_closed() => {
                commit(state, Vec::new(), vec![ev]).await?;
                let verified =
                    Answer::new(|a: &Answered| answer.record(&merged(a.request.clone())));
                verify_by_staff(state, caller, s, &method, &verified).await?
            }
            _ => {
                let recorded = answer.record(&merged(s.clone()))?;
                commit(state, recorded.into_iter().collect(), vec![ev]).await?;
                s
            }
        };
        return Ok(merged(request));
    }
    if let Some(changes) = &intake.changes {
        r.changes = Some(seal_changes(&dek, customer, id, changes)?);
    }
    let mut events = vec![
        event(caller, Action::RequestReceived, Decision::Allowed, &r).reason("channel", &r.channel),
    ];
    let needs = approval_needed(state, &r).await?;
    if needs && !state.policy.needs_approval(r.kind.as_str()) {
        events[0]
            .reasons
            .insert("approval_required".into(), "write_grant".into());
    }
    let to = outbox::contact_on_file(&state.policy, &record, &dek, None);
    let (token, token_hash) = new_token()?;
    let mut mutations: Vec<Mutation> = Vec::new();
    let mut code_sent = false;
    if r.kind == Kind::Restriction && r.lift {
        r = lc::verified(&r, now, "controller_decision", &caller.id, false).map_err(refusal)?;
    } else if let Some(method) = &verified_by {
        r = lc::verified(&r, now, method, &caller.id, needs).map_err(refusal)?;
        events.push(
            event(caller, Action::RequestVerified, Decision::Allowed, &r).reason("method", method),
        );
    } else if r.kind.skips_verification(r.lift) {
        r = lc::accept_unverified(&r).map_err(refusal)?;
    } else if let Some(to) = &to {
        let (code, hash) = new_code(state).await?;
        let expires = now + ttl(state);
        r = lc::send_code(&r, hash, expires).map_err(refusal)?;
        mutations.push(code_message(
            &dek,
            &r,
            to,
            &code,
            expires,
            now,
            Some(&token),
        )?);
        code_sent = true;
        events.push(
            event(caller, Action::RequestCodeSent, Decision::Allowed, &r)
                .fields([to.field.clone()]),
        );
    }
    // Otherwise it stays `received` until staff verify the requester.
    events[0]
        .reasons
        .insert("status".into(), r.status.as_str().into());
    mutations.insert(0, RM::InsertRequest(Box::new(RequestRow::from(&r))).into());
    if let Some(to) = &to {
        if !code_sent {
            mutations.push(filed_message(&dek, &r, to, &token, now)?);
        }
        mutations.push(
            RM::InsertToken {
                token_sha256: token_hash,
                request_id: id,
                at: now,
            }
            .into(),
        );
    }
    let mut filed = Filed {
        request: r,
        token: None,
        merged: false,
    };
    mutations.extend(answer.record(&filed)?);
    commit(state, mutations, events).await?;
    if filed.request.status == Status::Verified {
        filed.request = execute(state, caller, filed.request).await?;
    }
    outbox::wake();
    Ok(filed)
}

/// Tells the customer that staff filed a request on their behalf, with the
/// request token that lets them follow it (and download an export).
fn filed_message(
    dek: &Dek,
    r: &Request,
    to: &Contact,
    token: &str,
    now: i64,
) -> ServiceResult<Mutation> {
    let Some(customer) = r.customer_id else {
        return Err(ServiceError::internal("a filing message needs a customer"));
    };
    let body = json!({
        "request_id": r.id,
        "request_kind": r.kind,
        "lift": r.lift,
        "request_token": token,
        "filed_on_your_behalf": true,
        "message": "A request was filed on your behalf. Follow it with this request token: GET /v1/requests/{id}. Contact us if you did not ask for it.",
    });
    outbox::customer_message(
        dek,
        customer,
        outbox::REQUEST_FILED,
        Some(r.id),
        to,
        body,
        now,
    )
    .map_err(ServiceError::internal)
}

/// Whether `r` waits for `requests.process` approval before it is carried
/// out: when the policy says so for its kind, and for a rectification filed
/// by staff whose role could not make the same change with `PATCH`.
async fn approval_needed(state: &AppState, r: &Request) -> ServiceResult<bool> {
    if state.policy.needs_approval(r.kind.as_str()) {
        return Ok(true);
    }
    if r.kind != Kind::Rectification || r.filed_by == DATA_SUBJECT {
        return Ok(false);
    }
    let Some(customer) = r.customer_id else {
        return Ok(false);
    };
    let Some(record) = state.store.customer_record(customer).await? else {
        return Ok(false);
    };
    if !live(&record) {
        return Ok(false);
    }
    let changes = open_changes(&unwrap_dek(state, &record)?, customer, r)?;
    let role = match filer_role(state, &r.filed_by).await? {
        Some(name) => state.policy.role(&name),
        None => None,
    };
    Ok(match role {
        Some(role) => {
            crate::customers::check_rewrite(role, &record, changes.fields.keys()).is_err()
        }
        None => true,
    })
}

/// The current role of the staff principal (client or user) with this id.
async fn filer_role(state: &AppState, filed_by: &str) -> ServiceResult<Option<String>> {
    let Ok(id) = filed_by.parse::<Uuid>() else {
        return Ok(None);
    };
    for kind in [PrincipalKind::Client, PrincipalKind::User] {
        if let Some(p) = state.store.principal(kind, id).await? {
            return Ok(Some(p.role));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// Verification, approval, denial, extension
// ---------------------------------------------------------------------------

/// The requester enters the code (with the request token). `answer` is
/// recorded with the verification (see [`crate::answer`]).
pub async fn verify_code(
    state: &AppState,
    actor: &Actor,
    r: Request,
    code: String,
    answer: &Answer<'_, Answered>,
) -> ServiceResult<Request> {
    let actor = actor.clone();
    let now = state.clock.now_micros();
    lc::check_code_allowed(&r, now).map_err(refusal)?;
    let hash = r.code_hash.clone().unwrap_or_default();
    let right = state
        .password_work
        .verify(hash, Zeroizing::new(code))
        .await?;
    if !right {
        let (n, why) = lc::wrong_code(&r, now);
        let mut mutations = vec![update(&n)];
        let mut events = vec![
            event(
                &actor,
                Action::RequestVerificationFailed,
                Decision::Denied,
                &n,
            )
            .reason("attempts", &n.code_attempts.to_string()),
        ];
        if n.status == Status::Denied {
            events.push(
                event(&actor, Action::RequestDenied, Decision::Denied, &n)
                    .reason("denial_reason", DenialReason::TooManyAttempts.as_str()),
            );
            let body = outcome_body(&state.policy, &n);
            mutations.extend(tell_customer(state, &n, outbox::REQUEST_OUTCOME, body, now).await?);
        }
        commit(state, mutations, events).await?;
        return Err(refusal(why));
    }
    let needs = approval_needed(state, &r).await?;
    let v = lc::verified(&r, now, "code", DATA_SUBJECT, needs).map_err(refusal)?;
    after_verified(state, &actor, v, answer).await
}

/// Staff verify the requester on the customer's behalf, recording how.
/// `answer` is recorded with the verification (see [`crate::answer`]).
pub async fn verify_by_staff(
    state: &AppState,
    caller: &Actor,
    r: Request,
    method: &str,
    answer: &Answer<'_, Answered>,
) -> ServiceResult<Request> {
    let role = caller.role(&state.policy)?;
    if !role.has(Capability::RequestsFile) && !role.has(Capability::RequestsProcess) {
        return Err(ServiceError::insufficient_scope("capability_required")
            .detail("this call needs the requests.file or requests.process capability"));
    }
    if r.status.is_closed() {
        return Err(refusal(Refusal::Closed));
    }
    if r.customer_id.is_none() {
        return Err(ServiceError::conflict("request_unmatched").detail(
            "the identifier given matched no customer; file a new request with the customer's id",
        ));
    }
    if r.kind.needs_customer_confirmation(r.lift) {
        // R14: only the customer's own confirmation lifts an opt-out, a
        // limit or an objection.
        return Err(
            ServiceError::conflict("customer_confirmation_required").detail(
                "lifting this needs the customer's own confirmation with the code sent to them",
            ),
        );
    }
    let now = state.clock.now_micros();
    let needs = approval_needed(state, &r).await?;
    let v = lc::verified(&r, now, method, &caller.id, needs).map_err(refusal)?;
    after_verified(state, caller, v, answer).await
}

/// Stores a verification; a verified duplicate of an open verified request
/// is merged into it; a request ready to be carried out is carried out.
/// `answer` is recorded with the verification.
async fn after_verified(
    state: &AppState,
    actor: &Actor,
    v: Request,
    answer: &Answer<'_, Answered>,
) -> ServiceResult<Request> {
    let now = state.clock.now_micros();
    let method = v.verification_method.clone().unwrap_or_default();
    let verified_ev =
        event(actor, Action::RequestVerified, Decision::Allowed, &v).reason("method", &method);
    if let Some(customer) = v.customer_id {
        let open = state.store.open_requests_of(customer).await?;
        if let Some(s) = open
            .iter()
            .find(|s| s.id != v.id && s.verified_at.is_some() && lc::same_ask(s, &v))
        {
            let m = lc::merge(&v, s.id, now).map_err(refusal)?;
            let merged_ev = event(actor, Action::RequestMerged, Decision::Allowed, &m)
                .reason("into", &s.id.to_string());
            let mut mutations = vec![update(&m)];
            let m = saved(m);
            mutations.extend(answer.record(&Answered {
                request: m.clone(),
                joined: Some(s.clone()),
            })?);
            commit(state, mutations, vec![verified_ev, merged_ev]).await?;
            return Ok(m);
        }
    }
    let mut mutations = vec![update(&v)];
    let v = saved(v);
    mutations.extend(answer.record(&Answered::new(&v))?);
    commit(state, mutations, vec![verified_ev]).await?;
    if v.status == Status::Verified {
        return execute(state, actor, v).await;
    }
    Ok(v)
}

/// The DPO approves; the request is carried out at once. `answer` is
/// recorded with the approval (see [`crate::answer`]).
pub async fn approve(
    state: &AppState,
    caller: &Actor,
    r: Request,
    answer: &Answer<'_, Answered>,
) -> ServiceResult<Request> {
    caller.require(&state.policy, Capability::RequestsProcess)?;
    let now = state.clock.now_micros();
    let a = lc::approve(&r, now, &caller.id).map_err(refusal)?;
    let ev = event(caller, Action::RequestApproved, Decision::Allowed, &a);
    let mut mutations = vec![update(&a)];
    let a = saved(a);
    mutations.extend(answer.record(&Answered::new(&a))?);
    commit(state, mutations, vec![ev]).await?;
    execute(state, caller, a).await
}

/// The DPO denies, with a machine-readable reason; the customer is told.
/// `answer` is recorded with the denial (see [`crate::answer`]).
pub async fn deny(
    state: &AppState,
    caller: &Actor,
    r: Request,
    reason: DenialReason,
    note: Option<String>,
    answer: &Answer<'_, Answered>,
) -> ServiceResult<Request> {
    caller.require(&state.policy, Capability::RequestsProcess)?;
    let now = state.clock.now_micros();
    let d = lc::deny(&r, now, reason, note).map_err(refusal)?;
    let mut mutations = vec![update(&d)];
    let body = outcome_body(&state.policy, &d);
    mutations.extend(tell_customer(state, &d, outbox::REQUEST_OUTCOME, body, now).await?);
    let ev = event(caller, Action::RequestDenied, Decision::Denied, &d)
        .reason("denial_reason", reason.as_str());
    let d = saved(d);
    mutations.extend(answer.record(&Answered::new(&d))?);
    commit(state, mutations, vec![ev]).await?;
    outbox::wake();
    Ok(d)
}

/// The DPO extends the deadline once, with a reason; the customer is told
/// of the extension and the reason (Art. 12(3)). `answer` is recorded with
/// the extension (see [`crate::answer`]).
pub async fn extend(
    state: &AppState,
    caller: &Actor,
    r: Request,
    reason: &str,
    until: Option<i64>,
    answer: &Answer<'_, Answered>,
) -> ServiceResult<Request> {
    caller.require(&state.policy, Capability::RequestsProcess)?;
    let now = state.clock.now_micros();
    let e = lc::extend(&r, now, reason, until).map_err(refusal)?;
    let mut mutations = vec![update(&e)];
    let body = json!({
        "request_id": e.id,
        "request_kind": e.kind,
        "due_at": rfc3339(e.due_at),
        "reason": e.extension_reason,
    });
    mutations.extend(tell_customer(state, &e, outbox::REQUEST_EXTENDED, body, now).await?);
    let ev = event(caller, Action::RequestExtended, Decision::Allowed, &e)
        .reason("due_at", &rfc3339(e.due_at));
    let e = saved(e);
    mutations.extend(answer.record(&Answered::new(&e))?);
    commit(state, mutations, vec![ev]).await?;
    outbox::wake();
    Ok(e)
}

// ---------------------------------------------------------------------------
// Carrying a request out
// ---------------------------------------------------------------------------

/// The id of the notice a restriction lift waits for, if any.
pub fn waiting_notice(r: &Request) -> Option<Uuid> {
    let v: Value = serde_json::from_str(r.result.as_deref()?).ok()?;
    if v.get("lifted").and_then(Value::as_bool) == Some(false) {
        v.get("notice_id")?.as_str()?.parse().ok()
    } else {
        None
    }
}

/// What a request that changes subject state answers, matched or not.
fn state_result(r: &Request) -> Value {
    match r.kind {
        Kind::OptOutSale => json!({"opted_out_sale": !r.lift}),
        Kind::LimitSensitive => json!({"limit_sensitive": !r.lift}),
        Kind::Objection => json!({"objection": r.purpose, "withdrawn": r.lift}),
        Kind::Restriction => json!({"restricted": !r.lift}),
        _ => json!({}),
    }
}

/// Carries out a verified (and, if the policy says so, approved) request.
pub async fn execute(state: &AppState, actor: &Actor, r: Request) -> ServiceResult<Request> {
    let needs = approval_needed(state, &r).await?;
    lc::ready(&r, needs).map_err(refusal)?;
    let now = state.clock.now_micros();
    let Some(customer) = r.customer_id else {
        // Only requests that need no verification get here unmatched: they
        // complete like any other, with nothing to change.
        let result = state_result(&r);
        return finish(state, actor, r, false, result, Vec::new(), Vec::new()).await;
    };
    if r.kind == Kind::Erasure {
        let receipt = super::erasure::erase(state, customer, actor, Some(r.id)).await?;
        let partial = receipt.status == super::erasure::ErasureStatus::PartiallyErased;
        let result = serde_json::to_value(&receipt).map_err(ServiceError::internal)?;
        // Undelivered messages sealed for the customer are dropped with it.
        let drop = RM::DropCustomerOutbox {
            customer_id: customer,
            at: now,
        };
        return finish(
            state,
            actor,
            r,
            partial,
            result,
            vec![drop.into()],
            Vec::new(),
        )
        .await;
    }
    let record = state.store.customer_record(customer).await?;
    let Some(record) = record.filter(live) else {
        // Erased since the request was filed: nothing is left to act on.
        let mut result = json!({"customer_erased": true});
        if matches!(r.kind, Kind::Access | Kind::Portability) {
            result["export"] = json!(format!("/v1/requests/{}/export", r.id));
        }
        return finish(state, actor, r, false, result, Vec::new(), Vec::new()).await;
    };
    let dek = unwrap_dek(state, &record)?;
    let target = Target {
        record: &record,
        dek: &dek,
        customer,
        now,
    };
    let done = match r.kind {
        Kind::OptOutSale | Kind::LimitSensitive | Kind::Objection => {
            subject_choice(actor, &r, &target)
        }
        Kind::Restriction if !r.lift => restrict(state, actor, &r, &target).await?,
        Kind::Restriction => match lift_restriction(state, actor, &r, &target).await? {
            Some(done) => done,
            // Waiting for the notice to the customer to be delivered.
            None => return Ok(r),
        },
        Kind::Rectification => rectify(state, actor, &r, &target).await?,
        // The package is built from live data at each download, so it never
        // serves a value rectified or erased since (no copy is kept).
        Kind::Access | Kind::Portability => Effects::outcome(
            json!({"export": format!("/v1/requests/{}/export", r.id), "format": "application/json"}),
        ),
        Kind::Erasure => return Err(ServiceError::internal("erasure is carried out above")),
    };
    match done {
        Step::Finish(e) => {
            finish(state, actor, r, e.partial, e.result, e.mutations, e.events).await
        }
        Step::Waiting(w) => Ok(*w),
    }
}

/// The live customer a request is carried out on.
struct Target<'a> {
    record: &'a CustomerRecord,
    dek: &'a Dek,
    customer: Uuid,
    now: i64,
}

/// What carrying out a request changes, and its outcome.
struct Effects {
    partial: bool,
    result: Value,
    mutations: Vec<Mutation>,
    events: Vec<EventDraft>,
}

impl Effects {
    fn outcome(result: Value) -> Step {
        Step::Finish(Effects {
            partial: false,
            result,
            mutations: Vec::new(),
            events: Vec::new(),
        })
    }
}

/// A request is completed with its effects, or waits (already stored).
enum Step {
    Finish(Effects),
    Waiting(Box<Request>),
}

fn subject_event(actor: &Actor, r: &Request, customer: Uuid, action: Action) -> EventDraft {
    actor
        .event(action, Decision::Allowed)
        .customer(customer)
        .reason("request", &r.id.to_string())
}

/// Opt-out of sale/sharing, limit on sensitive data, objection: set, or
/// lifted (after the customer's own confirmation).
fn subject_choice(actor: &Actor, r: &Request, t: &Target<'_>) -> Step {
    let customer = t.customer;
    let (mutation, action): (Mutation, Action) = match r.kind {
        Kind::OptOutSale => (
            RM::SetOptedOutSale {
                customer_id: customer,
                value: !r.lift,
            }
            .into(),
            if r.lift {
                Action::SubjectOptInSale
            } else {
                Action::SubjectOptOutSale
            },
        ),
        Kind::LimitSensitive => (
            RM::SetLimitSensitive {
                customer_id: customer,
                value: !r.lift,
            }
            .into(),
            if r.lift {
                Action::SubjectUnlimitSensitive
            } else {
                Action::SubjectLimitSensitive
            },
        ),
        _ => {
            let purpose = r.purpose.clone().unwrap_or_default();
            if r.lift {
                (
                    RM::RemoveObjection {
                        customer_id: customer,
                        purpose,
                    }
                    .into(),
                    Action::SubjectObjectionWithdrawn,
                )
            } else {
                (
                    RM::AddObjection {
                        customer_id: customer,
                        purpose,
                        at: t.now,
                    }
                    .into(),
                    Action::SubjectObjection,
                )
            }
        }
    };
    let mut ev = subject_event(actor, r, customer, action);
    if r.kind == Kind::Objection {
        ev = ev.purpose(r.purpose.as_deref());
    }
    Step::Finish(Effects {
        partial: false,
        result: state_result(r),
        mutations: vec![mutation],
        events: vec![ev],
    })
}

/// Restricts processing; every recipient is told (Art. 18, 19).
async fn restrict(
    state: &AppState,
    actor: &Actor,
    r: &Request,
    t: &Target<'_>,
) -> ServiceResult<Step> {
    let mut mutations: Vec<Mutation> = vec![
        RM::SetRestricted {
            customer_id: t.customer,
            value: true,
        }
        .into(),
    ];
    let notices = outbox::recipient_notices(
        state.store.as_ref(),
        &state.policy,
        t.customer,
        "restriction",
        Some(r.id),
        &[],
        t.now,
    )
    .await?;
    let n = notices.len();
    mutations.extend(notices);
    let ev = subject_event(actor, r, t.customer, Action::SubjectRestricted)
        .reason("recipients_notified", &n.to_string());
    Ok(Step::Finish(Effects {
        partial: false,
        result: json!({"restricted": true, "recipients_notified": n}),
        mutations,
        events: vec![ev],
    }))
}

/// Lifts a restriction. Art. 18(3): the customer is told first, and it is
/// lifted once the notice is delivered ([`acknowledge`]); with no contact
/// on file it is lifted at once. `None`: already waiting for the notice.
async fn lift_restriction(
    state: &AppState,
    actor: &Actor,
    r: &Request,
    t: &Target<'_>,
) -> ServiceResult<Option<Step>> {
    if waiting_notice(r).is_some() {
        return Ok(None);
    }
    let Some(to) = outbox::contact_on_file(&state.policy, t.record, t.dek, None) else {
        let lifted: Mutation = RM::SetRestricted {
            customer_id: t.customer,
            value: false,
        }
        .into();
        let ev = subject_event(actor, r, t.customer, Action::SubjectRestrictionLifted)
            .reason("notice", "no_contact_on_file");
        return Ok(Some(Step::Finish(Effects {
            partial: false,
            result: json!({"restricted": false, "notice": "no_contact_on_file"}),
            mutations: vec![lifted],
            events: vec![ev],
        })));
    };
    let body = json!({
        "request_id": r.id,
        "request_kind": r.kind,
        "message": "The restriction of the processing of your personal data will be lifted.",
    });
    let msg = outbox::customer_message(
        t.dek,
        t.customer,
        outbox::RESTRICTION_LIFT_NOTICE,
        Some(r.id),
        &to,
        body,
        t.now,
    )
    .map_err(ServiceError::internal)?;
    let notice_id = outbox::message_id(&msg).unwrap_or_default();
    let mut w = r.clone();
    w.result = Some(json!({"lifted": false, "notice_id": notice_id}).to_string());
    let e = event(
        actor,
        Action::RequestLiftNoticeQueued,
        Decision::Allowed,
        &w,
    )
    .fields([to.field.clone()]);
    commit(state, vec![update(&w), msg], vec![e]).await?;
    outbox::wake();
    Ok(Some(Step::Waiting(Box::new(saved(w)))))
}

/// Writes the corrected values (keeping each value's purposes) and tells
/// every recipient (Art. 16, 19). Values no longer on file are reported as
/// not held: the request is then partially completed.
async fn rectify(
    state: &AppState,
    actor: &Actor,
    r: &Request,
    t: &Target<'_>,
) -> ServiceResult<Step> {
    let customer = t.customer;
    let changes = open_changes(t.dek, customer, r)?;
    let mut mutations: Vec<Mutation> = Vec::new();
    let mut rectified = Vec::new();
    let mut not_held = Vec::new();
    for (name, value) in &changes.fields {
        let existing = t.record.fields.iter().find(|f| &f.field == name);
        match (value, existing, state.policy.field(name)) {
            (None, Some(_), _) => {
                mutations.push(Mutation::DeleteField {
                    customer_id: customer,
                    field: name.clone(),
                });
                rectified.push(name.clone());
            }
            (Some(v), Some(old), Some(def)) => {
                let purposes: Vec<String> =
                    old.purposes.iter().map(|p| p.purpose.clone()).collect();
                mutations.push(put_field(
                    state,
                    t.dek,
                    customer,
                    def,
                    v,
                    &purposes,
                    actor,
                    old.channel.as_deref(),
                    old.notice_version.as_deref(),
                    t.now,
                )?);
                rectified.push(name.clone());
            }
            _ => not_held.push(name.clone()),
        }
    }
    let notices = outbox::recipient_notices(
        state.store.as_ref(),
        &state.policy,
        customer,
        "rectification",
        Some(r.id),
        &rectified,
        t.now,
    )
    .await?;
    let n = notices.len();
    mutations.extend(notices);
    let mut events = Vec::new();
    if !rectified.is_empty() {
        events.push(
            actor
                .event(Action::CustomerRectify, Decision::Allowed)
                .customer(customer)
                .fields(rectified.clone())
                .reason("request", &r.id.to_string()),
        );
    }
    Ok(Step::Finish(Effects {
        partial: !not_held.is_empty(),
        result: json!({"rectified": rectified, "not_held": not_held, "recipients_notified": n}),
        mutations,
        events,
    }))
}

/// Completes a request with its outcome, in one unit with its effects; the
/// customer is told (except after an erasure: no address is left to use).
async fn finish(
    state: &AppState,
    actor: &Actor,
    r: Request,
    partial: bool,
    result: Value,
    effects: Vec<Mutation>,
    mut events: Vec<EventDraft>,
) -> ServiceResult<Request> {
    let needs = state.policy.needs_approval(r.kind.as_str());
    let now = state.clock.now_micros();
    let done = lc::complete(&r, now, needs, partial, Some(result.to_string())).map_err(refusal)?;
    let mut mutations = vec![update(&done)];
    mutations.extend(effects);
    if done.kind != Kind::Erasure {
        let body = outcome_body(&state.policy, &done);
        mutations.extend(tell_customer(state, &done, outbox::REQUEST_OUTCOME, body, now).await?);
    }
    events.insert(
        0,
        event(
            actor,
            Action::RequestCompleted,
            if partial {
                Decision::PartiallyCompleted
            } else {
                Decision::Completed
            },
            &done,
        ),
    );
    commit(state, mutations, events).await?;
    outbox::wake();
    Ok(saved(done))
}

/// The request a request token opens. A token stops working
/// `request_token_ttl_days` after its request closed (a merged request:
/// after the request it joined closed); then, like an unknown token, it is
/// `Unauthenticated` with the OAuth error `invalid_token` (RFC 6750 §3.1).
pub async fn request_for_token(state: &AppState, token: &str) -> ServiceResult<Uuid> {
    let hash = crypto::sha256_hex(token);
    let Some(id) = state.store.request_for_token(&hash).await? else {
        return Err(ServiceError::invalid_token());
    };
    let Some(r) = state.store.request(id).await? else {
        return Err(ServiceError::invalid_token());
    };
    let closing = match r.merged_into {
        Some(into) => state.store.request(into).await?.unwrap_or(r),
        None => r,
    };
    if closing.status.is_closed()
        && let Some(closed_at) = closing.responded_at
    {
        let ttl = i64::from(state.settings.request_token_ttl_days)
            .saturating_mul(86_400)
            .saturating_mul(1_000_000);
        if state.clock.now_micros() > closed_at.saturating_add(ttl) {
            return Err(ServiceError::invalid_token().detail("the request token has expired"));
        }
    }
    Ok(id)
}

/// The customer a data subject proved to be through request `r`: its code
/// was entered (or staff verified the requester) and it names a live
/// customer. What the privacy center lets the holder of the request token
/// manage (their consents). 403 `not_verified` otherwise, alike whether or
/// not a customer matched, so it reveals nothing.
pub async fn subject_customer(state: &AppState, r: &Request) -> ServiceResult<Uuid> {
    let refused = || {
        ServiceError::forbidden("not_verified")
            .detail("the request is not verified, or names no customer")
    };
    if r.verified_at.is_none() {
        return Err(refused());
    }
    let customer = r.customer_id.ok_or_else(refused)?;
    match state.store.customer_record(customer).await? {
        Some(record) if live(&record) => Ok(customer),
        _ => Err(refused()),
    }
}

/// The export package of a completed access or portability request, built
/// from the customer's live data at each download; once the customer is
/// erased, only the erasure receipt (R26).
pub async fn export_package(state: &AppState, r: &Request) -> ServiceResult<Value> {
    if !matches!(r.kind, Kind::Access | Kind::Portability) {
        return Err(ServiceError::conflict("not_an_export")
            .detail("only access and portability requests have an export"));
    }
    if !matches!(r.status, Status::Completed | Status::PartiallyCompleted) {
        return Err(
            ServiceError::conflict("export_not_ready").detail("the request is not completed")
        );
    }
    let Some(customer) = r.customer_id else {
        return Err(
            ServiceError::conflict("export_not_ready").detail("the request is not completed")
        );
    };
    let record = state.store.customer_record(customer).await?;
    if record.as_ref().is_some_and(live) {
        let now = state.clock.now_micros();
        let package = super::export::build_package(state, customer, r.kind.as_str(), now).await?;
        return Ok(package);
    }
    let receipt = super::erasure::receipt_of(state.store.as_ref(), customer).await?;
    Ok(json!({
        "customer_id": customer,
        "erased": true,
        "receipt": receipt,
    }))
}

/// Marks a message delivered (notifier acknowledgement or webhook 2xx). The
/// notice before lifting a restriction lifts it in the same unit.
pub async fn acknowledge(
    state: &AppState,
    actor: &Actor,
    row: &crate::store::OutboxRow,
    via: &str,
) -> ServiceResult<()> {
    acknowledge_answered(state, actor, row, via, &Answer::none())
        .await
        .map(|_| ())
}

/// [`acknowledge`], recording `answer` (the time of delivery) with it (see
/// [`crate::answer`]); the time of delivery.
pub async fn acknowledge_answered(
    state: &AppState,
    actor: &Actor,
    row: &crate::store::OutboxRow,
    via: &str,
    answer: &Answer<'_, i64>,
) -> ServiceResult<i64> {
    let now = state.clock.now_micros();
    let mut mutations: Vec<Mutation> = vec![
        RM::AckOutbox {
            id: row.id,
            at: now,
        }
        .into(),
    ];
    let mut ack = actor
        .event(Action::OutboxAcknowledged, Decision::Allowed)
        .reason("message", &row.id.to_string())
        .reason("kind", &row.kind)
        .reason("via", via);
    if let Some(c) = row.customer_id {
        ack = ack.customer(c);
    }
    let mut events = vec![ack];
    if row.kind == outbox::RESTRICTION_LIFT_NOTICE
        && let (Some(rid), Some(customer)) = (row.request_id, row.customer_id)
        && let Some(r) = state.store.request(rid).await?
        && r.status == Status::Verified
        && waiting_notice(&r) == Some(row.id)
    {
        let needs = state.policy.needs_approval(r.kind.as_str());
        let result = json!({
            "restricted": false,
            "notice_id": row.id,
            "notice_delivered_at": rfc3339(now),
        });
        let done =
            lc::complete(&r, now, needs, false, Some(result.to_string())).map_err(refusal)?;
        mutations.push(update(&done));
        mutations.push(
            RM::SetRestricted {
                customer_id: customer,
                value: false,
            }
            .into(),
        );
        events.push(
            actor
                .event(Action::SubjectRestrictionLifted, Decision::Allowed)
                .customer(customer)
                .reason("request", &r.id.to_string())
                .reason("notice", "delivered"),
        );
        events.push(event(
            actor,
            Action::RequestCompleted,
            Decision::Completed,
            &done,
        ));
    }
    mutations.extend(answer.record(&now)?);
    commit(state, mutations, events).await?;
    Ok(now)
}

/// Background upkeep: requests never verified are denied once their
/// deadline passes; verified requests whose carrying out was interrupted
/// (a crash, a database outage) are carried out.
pub async fn housekeeping(state: &AppState) -> ServiceResult<()> {
    let actor = Actor::system();
    let now = state.clock.now_micros();
    for r in state
        .store
        .requests_with_status(Status::Verifying, 200)
        .await?
    {
        if now <= r.due_at {
            continue;
        }
        let Ok(d) = lc::deny(&r, now, DenialReason::IdentityNotVerified, None) else {
            continue;
        };
        let mut mutations = vec![update(&d)];
        let body = outcome_body(&state.policy, &d);
        mutations.extend(tell_customer(state, &d, outbox::REQUEST_OUTCOME, body, now).await?);
        let ev = event(&actor, Action::RequestDenied, Decision::Denied, &d)
            .reason("denial_reason", DenialReason::IdentityNotVerified.as_str());
        if let Err(e) = commit(state, mutations, vec![ev]).await {
            tracing::debug!(code = e.code, "request housekeeping: deny skipped");
        }
    }
    for r in state
        .store
        .requests_with_status(Status::Verified, 50)
        .await?
    {
        if waiting_notice(&r).is_some() {
            continue;
        }
        let since = r.approved_at.or(r.verified_at).unwrap_or(r.received_at);
        if now - since < RESUME_AFTER_US {
            continue;
        }
        if let Err(e) = execute(state, &actor, r).await {
            tracing::warn!(
                code = e.code,
                "request housekeeping: resuming a request failed"
            );
        }
    }
    Ok(())
}
