//! Customers: collect, read (whole profile or one field), search, rectify.
//!
//! Every read goes: purpose check (steps 1–2 of the decision, denials are
//! audited) → load → `decide()` per field → decrypt only what is allowed →
//! audit event durable → response. If the event cannot be stored the caller
//! gets 503 and no personal data.

use crate::audit::{Action, Decision as Outcome};
use crate::error::ErrorKind;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::consents::{ConsentInput, consent_event};
use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{Body, PurposeQuery, parse_id};
use super::idempotency::{self, Begin};
use crate::actor::Actor;
use crate::audit::EventDraft;
use crate::clock::{from_micros, rfc3339, to_micros};
use crate::consent::ConsentState;
use crate::crypto::Dek;
use crate::policy::{
    self, CollectedFor, Decision, FieldDef, Policy, Purpose, PurposeError, Reason, Role,
    SubjectState,
};
use crate::state::AppState;
use crate::store::{CustomerRecord, Mutation, Unit, ValuePurpose};

/// A value to store and the purposes it is collected for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldInput {
    /// The value; validated and normalised per the field's type.
    pub value: String,
    /// The purposes it is collected for (each allowed for the field).
    pub purposes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// The helpdesk's own id for this customer.
    #[serde(default)]
    pub external_id: Option<String>,
    /// How the data was collected (web, phone, chat, email, in_person, api).
    #[serde(default)]
    pub channel: Option<String>,
    /// Version of the privacy notice shown at collection.
    #[serde(default)]
    pub notice_version: Option<String>,
    pub fields: BTreeMap<String, FieldInput>,
    /// Consents given in the same interaction (needed for consent-based purposes).
    #[serde(default)]
    pub consents: Vec<ConsentInput>,
}

/// Rectify or extend: a value replaces the old one; `null` removes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    /// Field name to its new value, or `null` to remove the value.
    #[schema(value_type = BTreeMap<String, UpdateField>)]
    pub fields: BTreeMap<String, Option<UpdateField>>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub notice_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateField {
    pub value: String,
    /// Defaults to the purposes of the value being replaced.
    #[serde(default)]
    pub purposes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FieldMeta {
    pub purposes: Vec<String>,
    pub collected_at: String,
}

/// What was stored; values are not echoed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerStored {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub fields: BTreeMap<String, FieldMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Withheld {
    pub field: String,
    /// not_collected_for_purpose, no_consent, objected, restricted, opted_out, limited, expired, hidden
    pub reason: String,
}

/// The profile as the caller may see it for the stated purpose.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub external_id: Option<String>,
    /// Allowed values, masked where the role's policy says so.
    pub fields: BTreeMap<String, String>,
    pub withheld: Vec<Withheld>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FieldValue {
    pub field: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// A `searchable` field.
    pub field: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResult {
    pub customers: Vec<Profile>,
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// Collect a new customer.
#[utoipa::path(post, path = "/v1/customers", tag = "customers",
    params(PurposeQuery, ("Idempotency-Key" = Option<String>, Header, description = "Retry key")),
    request_body = CreateCustomer,
    responses(
        (status = 201, body = CustomerStored),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_customer(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<PurposeQuery>,
    headers: HeaderMap,
    Body(input): Body<CreateCustomer>,
) -> ApiResult<Response> {
    let idem =
        match idempotency::begin(&state, &caller, &headers, "POST /v1/customers", &input).await? {
            Begin::Replay(resp) => return Ok(resp),
            Begin::Proceed(idem) => idem,
        };
    let role = caller.role(&state.policy)?;
    write_purpose(
        &state,
        &caller,
        role,
        q.purpose.as_deref(),
        Action::CustomerCreate,
        None,
    )
    .await?;
    if let Some(ext) = &input.external_id
        && (ext.is_empty() || ext.len() > 200 || ext.chars().any(char::is_control))
    {
        return Err(ServiceError::invalid_request(
            "external_id must be 1–200 printable characters",
        )
        .field("external_id"));
    }
    let channel = valid_channel(input.channel.as_deref())?;
    let notice = valid_notice(input.notice_version.as_deref())?;
    if input.fields.is_empty() {
        return Err(
            ServiceError::invalid_request("at least one field is required").field("fields"),
        );
    }
    if !input.consents.is_empty() {
        caller.require(&state.policy, policy::Capability::Consents)?;
    }
    let now = state.clock.now_micros();
    let id = Uuid::now_v7();
    let mut consent_events = Vec::new();
    for c in &input.consents {
        consent_events.push(consent_event(&state.policy, &caller, id, c, "grant", now)?);
    }
    let granted: Vec<&str> = consent_events.iter().map(|c| c.purpose.as_str()).collect();
    let mut prepared = Vec::new();
    for (name, f) in &input.fields {
        let (def, normalized) = prepare_value(&state.policy, role, name, &f.value, &f.purposes)?;
        require_consents(&state.policy, &f.purposes, |p| {
            granted.iter().any(|g| policy::covers(g, p))
        })?;
        prepared.push((def, normalized, f.purposes.clone()));
    }

    let dek = Dek::generate().map_err(ServiceError::internal)?;
    let keyring = state.keys.keyring();
    let (kek_version, wrapped_dek) = keyring.wrap_dek(id, &dek).map_err(ServiceError::internal)?;
    let mut mutations = vec![Mutation::InsertCustomer {
        id,
        external_id: input.external_id.clone(),
        kek_version,
        wrapped_dek,
        at: now,
    }];
    let mut events = Vec::new();
    let mut stored = CustomerStored {
        id,
        external_id: input.external_id.clone(),
        fields: BTreeMap::new(),
    };
    for (def, normalized, purposes) in &prepared {
        mutations.push(put_field(
            &state, &dek, id, def, normalized, purposes, &caller, channel, notice, now,
        )?);
        stored.fields.insert(
            def.name.clone(),
            FieldMeta {
                purposes: purposes.clone(),
                collected_at: rfc3339(now),
            },
        );
    }
    events.push(
        caller
            .event(Action::CustomerCreate, Outcome::Allowed)
            .purpose(q.purpose.as_deref())
            .customer(id)
            .fields(prepared.iter().map(|(d, _, _)| d.name.clone())),
    );
    for c in consent_events {
        events.push(
            caller
                .event(Action::ConsentGrant, Outcome::Allowed)
                .purpose(Some(&c.purpose))
                .customer(id),
        );
        mutations.push(Mutation::AppendConsent(c));
    }
    let body = serde_json::to_string(&stored).map_err(ServiceError::internal)?;
    if let Some(m) = idem.record(StatusCode::CREATED, &body, now) {
        mutations.push(m);
    }
    match state.sequencer.commit(Unit { mutations, events }).await {
        Ok(_) => {}
        Err(crate::audit::CommitError::Conflict(_)) => {
            if let Some(resp) = idempotency::replay_after_conflict(&state, &idem).await? {
                return Ok(resp);
            }
            return Err(ServiceError::conflict("external_id_taken")
                .detail("another customer has this external_id")
                .field("external_id"));
        }
        Err(e) => return Err(e.into()),
    }
    let mut resp = (StatusCode::CREATED, Json(stored)).into_response();
    if let Ok(loc) = format!("/v1/customers/{id}").parse() {
        resp.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    Ok(resp)
}

/// The profile as the caller may see it for the purpose.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id"), PurposeQuery),
    responses((status = 200, body = Profile),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_customer(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
) -> ApiResult<Json<Profile>> {
    let role = caller.role(&state.policy)?;
    let id = parse_id(&id)?;
    let purpose = read_purpose(
        &state,
        &caller,
        role,
        q.purpose.as_deref(),
        Action::CustomerRead,
        Some(id),
    )
    .await?;
    let record = load_live(&state, &caller, id, purpose, Action::CustomerRead).await?;
    let now = state.clock.now_micros();
    let profile = view(&state, role, purpose, &record, now)?;
    let mut unit = Unit::event(read_event(&caller, Action::CustomerRead, purpose, &profile));
    // A recipient's read is a disclosure (GDPR Art. 15(1)(c), Art. 19).
    unit.mutations.extend(crate::requests::outbox::disclosure(
        role,
        &caller.id,
        id,
        &purpose.name,
        profile.fields.keys().cloned().collect(),
        now,
    ));
    state.sequencer.commit(unit).await?;
    Ok(Json(profile))
}

/// One field's value for the purpose, or 403 with the reason it is withheld.
#[utoipa::path(get, path = "/v1/customers/{id}/fields/{field}", tag = "customers",
    params(("id" = String, Path), ("field" = String, Path), PurposeQuery),
    responses((status = 200, body = FieldValue),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_field(
    State(state): State<AppState>,
    caller: Actor,
    Path((id, field)): Path<(String, String)>,
    Query(q): Query<PurposeQuery>,
) -> ApiResult<Json<FieldValue>> {
    let role = caller.role(&state.policy)?;
    let id = parse_id(&id)?;
    let action = Action::CustomerReadField;
    let purpose = read_purpose(
        &state,
        &caller,
        role,
        q.purpose.as_deref(),
        action,
        Some(id),
    )
    .await?;
    let def = state
        .policy
        .field(&field)
        .ok_or_else(|| ServiceError::bad_request("unknown_field").field(field.clone()))?;
    let record = load_live(&state, &caller, id, purpose, action).await?;
    let now = state.clock.now_micros();
    let Some(row) = record.fields.iter().find(|f| f.field == def.name) else {
        let ev = caller
            .event(action, Outcome::NotFound)
            .purpose(Some(&purpose.name))
            .customer(id)
            .fields([def.name.clone()]);
        state.sequencer.commit(Unit::event(ev)).await?;
        return Err(ServiceError::not_found("field_not_found").field(def.name.clone()));
    };
    let consents = ConsentState::derive(&state.policy, &record.consents, now);
    let decision = decide_row(
        &state.policy,
        role,
        purpose,
        def,
        row,
        &record,
        &consents,
        now,
    );
    match decision {
        Decision::Allowed { mask } => {
            let dek = unwrap_dek(&state, &record)?;
            let value = decrypt(&dek, id, row)?;
            let value = match mask {
                Some(m) => policy::apply_mask(m, &value).unwrap_or_default(),
                None => value,
            };
            let ev = caller
                .event(action, Outcome::Allowed)
                .purpose(Some(&purpose.name))
                .customer(id)
                .fields([def.name.clone()]);
            crate::audit::metrics::record_access(&ev);
            let mut unit = Unit::event(ev);
            unit.mutations.extend(crate::requests::outbox::disclosure(
                role,
                &caller.id,
                id,
                &purpose.name,
                vec![def.name.clone()],
                now,
            ));
            state.sequencer.commit(unit).await?;
            Ok(Json(FieldValue {
                field: def.name.clone(),
                value,
            }))
        }
        Decision::Withheld(reason) => {
            let ev = caller
                .event(action, Outcome::Withheld)
                .purpose(Some(&purpose.name))
                .customer(id)
                .reason(&def.name, reason.code());
            crate::audit::metrics::record_access(&ev);
            state.sequencer.commit(Unit::event(ev)).await?;
            Err(ServiceError::forbidden(reason.code())
                .detail("the value is withheld for this purpose")
                .field(def.name.clone()))
        }
    }
}

/// Exact lookup by a searchable field (through its blind index).
#[utoipa::path(post, path = "/v1/customers/search", tag = "customers",
    params(PurposeQuery), request_body = SearchRequest,
    responses((status = 200, body = SearchResult),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<PurposeQuery>,
    Body(input): Body<SearchRequest>,
) -> ApiResult<Json<SearchResult>> {
    let role = caller.role(&state.policy)?;
    let action = Action::CustomerSearch;
    let purpose = read_purpose(&state, &caller, role, q.purpose.as_deref(), action, None).await?;
    let def = state
        .policy
        .field(&input.field)
        .ok_or_else(|| ServiceError::bad_request("unknown_field").field(input.field.clone()))?;
    if !def.searchable {
        return Err(ServiceError::bad_request("field_not_searchable").field(def.name.clone()));
    }
    let normalized = policy::normalize(def.ty, &input.value).map_err(|e| {
        ServiceError::bad_request("invalid_value")
            .detail(e.to_string())
            .field(def.name.clone())
    })?;
    let digest = state.keys.index.blind_index(&def.name, &normalized);
    let candidates = state.store.find_by_blind_index(&def.name, &digest).await?;
    let now = state.clock.now_micros();
    let mut found = Vec::new();
    for id in candidates {
        let Some(record) = state.store.customer_record(id).await? else {
            continue;
        };
        if record.customer.erased_at.is_some() {
            continue;
        }
        let Some(row) = record.fields.iter().find(|f| f.field == def.name) else {
            continue;
        };
        // The match itself uses the searched value: it must be allowed for
        // this purpose, and the candidate's value must really be equal.
        let consents = ConsentState::derive(&state.policy, &record.consents, now);
        if !matches!(
            decide_row(
                &state.policy,
                role,
                purpose,
                def,
                row,
                &record,
                &consents,
                now
            ),
            Decision::Allowed { .. }
        ) {
            continue;
        }
        let dek = unwrap_dek(&state, &record)?;
        let same = crate::crypto::constant_time_eq(
            decrypt(&dek, id, row)?.as_bytes(),
            normalized.as_bytes(),
        );
        if same {
            found.push(view(&state, role, purpose, &record, now)?);
        }
    }
    let mutations: Vec<Mutation> = found
        .iter()
        .filter_map(|p| {
            crate::requests::outbox::disclosure(
                role,
                &caller.id,
                p.id,
                &purpose.name,
                p.fields.keys().cloned().collect(),
                now,
            )
        })
        .collect();
    let events: Vec<EventDraft> = if found.is_empty() {
        vec![
            caller
                .event(action, Outcome::NotFound)
                .purpose(Some(&purpose.name))
                .fields([def.name.clone()]),
        ]
    } else {
        found
            .iter()
            .map(|p| read_event(&caller, action, purpose, p))
            .collect()
    };
    state.sequencer.commit(Unit { mutations, events }).await?;
    Ok(Json(SearchResult { customers: found }))
}

/// Rectify or extend a profile. The old value is gone for good.
#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path), PurposeQuery), request_body = UpdateCustomer,
    responses((status = 200, body = CustomerStored),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_customer(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
    Body(input): Body<UpdateCustomer>,
) -> ApiResult<Json<CustomerStored>> {
    let role = caller.role(&state.policy)?;
    let id = parse_id(&id)?;
    let action = Action::CustomerUpdate;
    let purpose = write_purpose(
        &state,
        &caller,
        role,
        q.purpose.as_deref(),
        action,
        Some(id),
    )
    .await?;
    let channel = valid_channel(input.channel.as_deref())?;
    let notice = valid_notice(input.notice_version.as_deref())?;
    if input.fields.is_empty() {
        return Err(
            ServiceError::invalid_request("at least one field is required").field("fields"),
        );
    }
    let record = load_live(&state, &caller, id, purpose, action).await?;
    let now = state.clock.now_micros();
    let consents = ConsentState::derive(&state.policy, &record.consents, now);
    let dek = unwrap_dek(&state, &record)?;
    let mut mutations = Vec::new();
    let mut stored = CustomerStored {
        id,
        external_id: record.customer.external_id.clone(),
        fields: BTreeMap::new(),
    };
    for (name, change) in &input.fields {
        let existing = record.fields.iter().find(|f| &f.field == name);
        // Changing or removing a value needs write rights for every purpose
        // it was collected for.
        if let Some(old) = existing {
            for p in &old.purposes {
                if !role.write.iter().any(|w| policy::covers(w, &p.purpose)) {
                    return Err(ServiceError::forbidden("purpose_not_permitted")
                        .detail(format!(
                            "the value was collected for {}, which this role may not write",
                            p.purpose
                        ))
                        .field(name.clone()));
                }
            }
        }
        match change {
            None => {
                if state.policy.field(name).is_none() {
                    return Err(ServiceError::bad_request("unknown_field").field(name.clone()));
                }
                if existing.is_some() {
                    mutations.push(Mutation::DeleteField {
                        customer_id: id,
                        field: name.clone(),
                    });
                }
            }
            Some(f) => {
                let purposes = match (&f.purposes, existing) {
                    (Some(p), _) => p.clone(),
                    (None, Some(old)) => old.purposes.iter().map(|p| p.purpose.clone()).collect(),
                    (None, None) => {
                        return Err(ServiceError::invalid_request(
                            "purposes are required for a new value",
                        )
                        .field(name.clone()));
                    }
                };
                let (def, normalized) =
                    prepare_value(&state.policy, role, name, &f.value, &purposes)?;
                require_consents(&state.policy, &purposes, |p| {
                    policy::consented(&consents, p)
                })?;
                mutations.push(put_field(
                    &state,
                    &dek,
                    id,
                    def,
                    &normalized,
                    &purposes,
                    &caller,
                    channel,
                    notice,
                    now,
                )?);
                stored.fields.insert(
                    def.name.clone(),
                    FieldMeta {
                        purposes,
                        collected_at: rfc3339(now),
                    },
                );
            }
        }
    }
    let ev = caller
        .event(action, Outcome::Allowed)
        .purpose(Some(&purpose.name))
        .customer(id)
        .fields(input.fields.keys().cloned());
    state
        .sequencer
        .commit(Unit {
            mutations,
            events: vec![ev],
        })
        .await
        .map_err(|e| match e {
            crate::audit::CommitError::Conflict(_) | crate::audit::CommitError::NotFound => {
                ServiceError::not_found("customer_not_found")
            }
            other => other.into(),
        })?;
    Ok(Json(stored))
}

// ---------------------------------------------------------------------------
// The shared steps
// ---------------------------------------------------------------------------

fn purpose_error(e: PurposeError) -> ServiceError {
    e.into()
}

/// Steps 1–2 of the decision for a read. A refusal is audited (R1) before
/// it is answered.
pub async fn read_purpose<'p>(
    state: &'p AppState,
    caller: &Actor,
    role: &Role,
    purpose: Option<&str>,
    action: Action,
    customer: Option<Uuid>,
) -> ApiResult<&'p Purpose> {
    check_purpose(state, caller, purpose, action, customer, |p| {
        policy::check_read_purpose(&state.policy, role, p)
    })
    .await
}

/// Steps 1–2 for a write, against the role's write grants.
pub async fn write_purpose<'p>(
    state: &'p AppState,
    caller: &Actor,
    role: &Role,
    purpose: Option<&str>,
    action: Action,
    customer: Option<Uuid>,
) -> ApiResult<&'p Purpose> {
    check_purpose(state, caller, purpose, action, customer, |p| {
        policy::check_write_purpose(&state.policy, role, p)
    })
    .await
}

async fn check_purpose<'p>(
    state: &'p AppState,
    caller: &Actor,
    purpose: Option<&str>,
    action: Action,
    customer: Option<Uuid>,
    check: impl FnOnce(Option<&str>) -> Result<&'p Purpose, PurposeError>,
) -> ApiResult<&'p Purpose> {
    match check(purpose) {
        Ok(p) => Ok(p),
        Err(e) => {
            // An undeclared purpose is not recorded verbatim: it is caller
            // input and could carry anything.
            let recorded = match e {
                PurposeError::NotPermitted => purpose,
                _ => None,
            };
            let mut ev = caller
                .event(action, Outcome::Denied)
                .purpose(recorded)
                .reason("purpose", e.code());
            if let Some(id) = customer {
                ev = ev.customer(id);
            }
            crate::audit::metrics::record_access(&ev);
            state.sequencer.commit(Unit::event(ev)).await?;
            Err(purpose_error(e))
        }
    }
}

/// Loads a customer that exists and is not erased (or, for a read, is
/// partially erased with a value kept for the purpose); a miss is audited.
async fn load_live(
    state: &AppState,
    caller: &Actor,
    id: Uuid,
    purpose: &Purpose,
    action: Action,
) -> ApiResult<CustomerRecord> {
    // A partially erased customer is served only for a purpose one of its
    // kept values serves (see requests::erasure::readable_record).
    match crate::requests::erasure::readable_record(state, id, &purpose.name, action).await? {
        Some(r) => Ok(r),
        None => {
            let ev = caller
                .event(action, Outcome::NotFound)
                .purpose(Some(&purpose.name))
                .customer(id);
            state.sequencer.commit(Unit::event(ev)).await?;
            Err(ServiceError::not_found("customer_not_found"))
        }
    }
}

fn subject_state(record: &CustomerRecord) -> SubjectState {
    SubjectState {
        restricted: record.customer.restricted,
        objections: record.objections.clone(),
        opted_out_sale: record.customer.opted_out_sale,
        limit_sensitive: record.customer.limit_sensitive,
    }
}

#[allow(clippy::too_many_arguments)]
fn decide_row(
    policy: &Policy,
    role: &Role,
    purpose: &Purpose,
    def: &FieldDef,
    row: &crate::store::FieldRow,
    record: &CustomerRecord,
    consents: &ConsentState,
    now: i64,
) -> Decision {
    let collected: Vec<CollectedFor> = row
        .purposes
        .iter()
        .map(|p| CollectedFor {
            purpose: p.purpose.clone(),
            collected_at: from_micros(p.collected_at),
        })
        .collect();
    policy::decide(
        policy,
        role,
        purpose,
        def,
        &collected,
        &subject_state(record),
        consents,
        from_micros(now),
    )
}

/// Applies the decision to every stored field; decrypts only allowed ones.
fn view(
    state: &AppState,
    role: &Role,
    purpose: &Purpose,
    record: &CustomerRecord,
    now: i64,
) -> ApiResult<Profile> {
    let id = record.customer.id;
    let consents = ConsentState::derive(&state.policy, &record.consents, now);
    let mut profile = Profile {
        id,
        external_id: record.customer.external_id.clone(),
        fields: BTreeMap::new(),
        withheld: Vec::new(),
    };
    let mut dek: Option<Dek> = None;
    for row in &record.fields {
        // A field no longer in the policy is not served to anyone.
        let Some(def) = state.policy.field(&row.field) else {
            continue;
        };
        match decide_row(
            &state.policy,
            role,
            purpose,
            def,
            row,
            record,
            &consents,
            now,
        ) {
            Decision::Allowed { mask } => {
                if dek.is_none() {
                    dek = Some(unwrap_dek(state, record)?);
                }
                let Some(k) = dek.as_ref() else { continue };
                let value = decrypt(k, id, row)?;
                let shown = match mask {
                    Some(m) => match policy::apply_mask(m, &value) {
                        Some(v) => v,
                        None => {
                            profile.withheld.push(Withheld {
                                field: row.field.clone(),
                                reason: Reason::Hidden.code().to_owned(),
                            });
                            continue;
                        }
                    },
                    None => value,
                };
                profile.fields.insert(row.field.clone(), shown);
            }
            Decision::Withheld(reason) => profile.withheld.push(Withheld {
                field: row.field.clone(),
                reason: reason.code().to_owned(),
            }),
        }
    }
    Ok(profile)
}

fn read_event(caller: &Actor, action: Action, purpose: &Purpose, profile: &Profile) -> EventDraft {
    let decision = if profile.fields.is_empty() && !profile.withheld.is_empty() {
        Outcome::Withheld
    } else {
        Outcome::Allowed
    };
    let mut ev = caller
        .event(action, decision)
        .purpose(Some(&purpose.name))
        .customer(profile.id)
        .fields(profile.fields.keys().cloned());
    for w in &profile.withheld {
        ev = ev.reason(&w.field, &w.reason);
    }
    crate::audit::metrics::record_access(&ev);
    ev
}

pub(crate) fn unwrap_dek(state: &AppState, record: &CustomerRecord) -> ApiResult<Dek> {
    let (Some(version), Some(wrapped)) =
        (record.customer.kek_version, &record.customer.wrapped_dek)
    else {
        return Err(ServiceError::not_found("customer_not_found"));
    };
    state
        .keys
        .keyring()
        .unwrap_dek(record.customer.id, version, wrapped)
        .map_err(|e| match e {
            // Wrapped by a KEK version another process just made active:
            // reload the keyring now; the client retries (Retry-After).
            crate::crypto::CryptoError::UnknownKeyVersion(_) => {
                state.keys.rotation.request_reload();
                ServiceError::unavailable()
            }
            e => ServiceError::internal(e),
        })
}

pub(crate) fn decrypt(dek: &Dek, id: Uuid, row: &crate::store::FieldRow) -> ApiResult<String> {
    let plain = dek
        .decrypt_field(id, &row.field, &row.ciphertext)
        .map_err(ServiceError::internal)?;
    String::from_utf8(plain.to_vec()).map_err(ServiceError::internal)
}

/// Validates a value for a field and the purposes it is collected for.
fn prepare_value<'p>(
    policy: &'p Policy,
    role: &Role,
    name: &str,
    value: &str,
    purposes: &[String],
) -> ApiResult<(&'p FieldDef, String)> {
    let def = policy.field(name).ok_or_else(|| {
        ServiceError::bad_request("unknown_field")
            .detail("the policy does not declare this field")
            .field(name.to_owned())
    })?;
    if purposes.is_empty() {
        return Err(
            ServiceError::invalid_request("a value needs at least one purpose")
                .field(name.to_owned()),
        );
    }
    let normalized = policy::normalize(def.ty, value).map_err(|e| {
        ServiceError::bad_request("invalid_value")
            .detail(e.to_string())
            .field(name.to_owned())
    })?;
    policy::check_collect(policy, role, def, purposes)
        .map_err(|e| ServiceError::from(e).field(name.to_owned()))?;
    Ok((def, normalized))
}

/// 422 `consent_required` when a consent-based purpose has no active consent.
fn require_consents(
    policy: &Policy,
    purposes: &[String],
    active: impl Fn(&str) -> bool,
) -> ApiResult<()> {
    for p in policy::consent_needed(policy, purposes) {
        if !active(&p) {
            return Err(
                ServiceError::new(ErrorKind::Unprocessable, "consent_required").detail(format!(
                    "collecting for {p} needs the customer's consent first"
                )),
            );
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn put_field(
    state: &AppState,
    dek: &Dek,
    customer: Uuid,
    def: &FieldDef,
    normalized: &str,
    purposes: &[String],
    caller: &Actor,
    channel: Option<&str>,
    notice: Option<&str>,
    now: i64,
) -> ApiResult<Mutation> {
    let ciphertext = dek
        .encrypt_field(customer, &def.name, normalized.as_bytes())
        .map_err(ServiceError::internal)?;
    let mut vp = Vec::with_capacity(purposes.len());
    for p in purposes {
        let declared = state
            .policy
            .purpose(p)
            .ok_or_else(|| ServiceError::bad_request("unknown_purpose").field(def.name.clone()))?;
        vp.push(ValuePurpose {
            purpose: p.clone(),
            collected_at: now,
            expires_at: to_micros(declared.retention.end_from(from_micros(now))),
        });
    }
    vp.sort_by(|a, b| a.purpose.cmp(&b.purpose));
    vp.dedup_by(|a, b| a.purpose == b.purpose);
    Ok(Mutation::PutField {
        customer_id: customer,
        field: def.name.clone(),
        ciphertext,
        collected_by: caller.id.clone(),
        channel: channel.map(str::to_owned),
        notice_version: notice.map(str::to_owned),
        at: now,
        purposes: vp,
        blind_index: def
            .searchable
            .then(|| state.keys.index.blind_index(&def.name, normalized).to_vec()),
    })
}

pub const CHANNELS: &[&str] = &["web", "phone", "chat", "email", "in_person", "api"];

pub fn valid_channel(c: Option<&str>) -> ApiResult<Option<&str>> {
    match c {
        Some(c) if !CHANNELS.contains(&c) => Err(ServiceError::invalid_request(format!(
            "channel must be one of {}",
            CHANNELS.join(", ")
        ))
        .field("channel")),
        other => Ok(other),
    }
}

fn valid_notice(n: Option<&str>) -> ApiResult<Option<&str>> {
    match n {
        Some(v) if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) => Err(
            ServiceError::invalid_request("notice_version must be 1–64 printable characters")
                .field("notice_version"),
        ),
        other => Ok(other),
    }
}
