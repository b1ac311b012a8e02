//! Customers: collect, read (whole profile or one field), search, rectify,
//! consent. These are the use cases every edge calls (the HTTP API, the
//! pages, the command line); they take an [`Actor`] and the application
//! state and know nothing of HTTP.
//!
//! Every read goes: purpose check (steps 1–2 of the decision, denials are
//! audited) → load → `decide()` per field → decrypt only what is allowed →
//! audit event durable → answer. If the event cannot be stored the caller
//! gets `Unavailable` and no personal data.

pub mod access;
pub mod consents;
pub mod erase;
pub mod values;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use access::{read_purpose, write_purpose};
pub use consents::{ConsentInput, consent_event};
pub use values::{CHANNELS, decrypt, put_field, unwrap_dek, valid_channel};

use crate::actor::Actor;
use crate::answer::Answer;
use crate::audit::{Action, CommitError, Decision as Outcome, EventDraft};
use crate::clock::rfc3339;
use crate::consent::ConsentState;
use crate::crypto::Dek;
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::policy::{self, Capability, Decision};
use crate::requests::outbox;
use crate::state::AppState;
use crate::store::{Mutation, Unit};
use access::{Source, decide_value, load_for_read, load_live, read_event, view};
use values::{prepare_value, require_consents, valid_notice};

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
    /// not_collected_for_purpose, no_consent, objected, restricted, opted_out, limited, expired, hidden, special_category
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
    /// The customer's data version (the `ETag`), not part of the body.
    #[serde(skip)]
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FieldValue {
    pub field: String,
    pub value: String,
    /// The customer's data version (the `ETag`), not part of the body.
    #[serde(skip)]
    pub version: i64,
}

/// `If-Match` on a write: any current version (`*`), or one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    Any,
    Versions(Vec<i64>),
}

impl Precondition {
    /// The versions as [`Mutation::ExpectCustomerVersion`] takes them;
    /// `None` for `*` (the customer only has to exist).
    pub fn versions(&self) -> Option<String> {
        match self {
            Precondition::Any => None,
            Precondition::Versions(v) => {
                let mut s = String::from(",");
                for n in v {
                    s.push_str(&n.to_string());
                    s.push(',');
                }
                Some(s)
            }
        }
    }
}

/// 412 `precondition_failed`: `If-Match` named a version the customer's
/// data is no longer at.
pub fn precondition_failed() -> ServiceError {
    ServiceError::new(
        crate::error::ErrorKind::PreconditionFailed,
        "precondition_failed",
    )
    .detail("the customer's data changed since the ETag in If-Match was read")
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
// Use cases
// ---------------------------------------------------------------------------

/// The most customers one [`create_batch`] takes.
pub const BATCH_MAX: usize = 1_000;

/// Collects a new customer; `answer` is recorded with it (see
/// [`crate::answer`]). `Conflict("external_id_taken")` when the external id
/// is in use.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    purpose: Option<&str>,
    input: &CreateCustomer,
    answer: &Answer<'_, CustomerStored>,
) -> ServiceResult<CustomerStored> {
    let role = actor.role(&state.policy)?;
    write_purpose(state, actor, role, purpose, Action::CustomerCreate, None).await?;
    let Prepared { mut unit, stored } =
        prepare_create(state, actor, role, purpose, input, Uuid::now_v7())?;
    unit.mutations.extend(answer.record(&stored)?);
    match state.sequencer.commit(unit).await {
        Ok(_) => Ok(stored),
        Err(e) => Err(create_error(e)),
    }
}

/// Collects many customers, each exactly as [`create`] would (the same
/// checks, encryption and audit events), committed together: one customer
/// is stored with all of its values, consents and events or not at all,
/// and a refused customer does not keep the others from being stored.
///
/// The caller's right to create for `purpose` is checked once for the
/// batch (a refusal is audited once and refuses the whole batch); each
/// customer's own problems (an invalid value, a missing consent, a taken
/// external id) are its result, in the order given, and each is audited
/// as the refusal of a single create would be (`customer.create`, the
/// error code, and its `batch_index`). A customer whose events could not
/// be stored gets `Unavailable`. 400 when `inputs` is empty, 413 when it
/// holds more than [`BATCH_MAX`]; `Unavailable` for the whole batch when
/// the audit trail stored none of it.
///
/// The batch's answer is kept after its customers are stored (it depends on
/// which were). With [`NewIds::Derived`] a retry of the same request after a
/// crash in between gives each customer the id it had: one already stored
/// is refused by its id and answered as stored, never stored twice.
pub async fn create_batch(
    state: &AppState,
    actor: &Actor,
    purpose: Option<&str>,
    inputs: &[CreateCustomer],
    ids: &NewIds,
) -> ServiceResult<Vec<ServiceResult<CustomerStored>>> {
    let role = actor.role(&state.policy)?;
    let checked = write_purpose(state, actor, role, purpose, Action::CustomerCreate, None).await?;
    if inputs.is_empty() {
        return Err(ServiceError::invalid_request(
            "at least one customer is required",
        ));
    }
    if inputs.len() > BATCH_MAX {
        return Err(ServiceError::new(
            crate::error::ErrorKind::PayloadTooLarge,
            "payload_too_large",
        )
        .detail(format!("at most {BATCH_MAX} customers per batch")));
    }
    let mut results: Vec<ServiceResult<CustomerStored>> = Vec::with_capacity(inputs.len());
    let mut units = Vec::new();
    // (index in `results`, what it stores)
    let mut pending = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        match prepare_create(state, actor, role, purpose, input, ids.id(index)) {
            Ok(p) => {
                pending.push((results.len(), p.stored));
                units.push(p.unit);
                // Replaced by the commit's outcome below.
                results.push(Err(ServiceError::unavailable()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    let outcomes = state.sequencer.commit_all(units).await;
    let mut stored_any = false;
    for ((i, stored), outcome) in pending.into_iter().zip(outcomes) {
        results[i] = match outcome {
            Ok(_) => {
                stored_any = true;
                Ok(stored)
            }
            Err(CommitError::Conflict(_)) if ids.stored_earlier(state, stored.id).await? => {
                Ok(stored)
            }
            Err(e) => Err(create_error(e)),
        };
    }
    // The refusals, each recorded as a single create's refusal would be.
    let (refused, events): (Vec<usize>, Vec<Unit>) = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let e = r.as_ref().err()?;
            let ev = refusal_event(actor, checked, i, e)?;
            Some((i, Unit::event(ev)))
        })
        .unzip();
    for (i, outcome) in refused
        .into_iter()
        .zip(state.sequencer.commit_all(events).await)
    {
        if let Err(e) = outcome {
            results[i] = Err(e.into());
        }
    }
    let unavailable = results
        .iter()
        .any(|r| r.as_ref().is_err_and(|e| e.kind == ErrorKind::Unavailable));
    // Nothing stored and the trail unavailable: the whole batch is 503,
    // so that a retry (also under the same Idempotency-Key) runs again.
    if unavailable && !stored_any {
        return Err(CommitError::Unavailable.into());
    }
    Ok(results)
}

/// Where the customers of a batch get their ids.
pub enum NewIds {
    /// New ids (time-ordered).
    Fresh,
    /// Ids derived from a secret seed that only the same request under the
    /// same `Idempotency-Key`, from the same caller, yields again.
    Derived([u8; 32]),
}

impl NewIds {
    /// The id of the batch's `index`th customer.
    fn id(&self, index: usize) -> Uuid {
        match self {
            NewIds::Fresh => Uuid::now_v7(),
            NewIds::Derived(seed) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seed);
                let tag = ring::hmac::sign(&key, &(index as u64).to_be_bytes());
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&tag.as_ref()[..16]);
                uuid::Builder::from_custom_bytes(bytes).into_uuid()
            }
        }
    }

    /// Whether a customer refused as a conflict is there under its derived
    /// id: stored by an earlier run of this very request.
    async fn stored_earlier(&self, state: &AppState, id: Uuid) -> ServiceResult<bool> {
        match self {
            NewIds::Fresh => Ok(false),
            NewIds::Derived(_) => Ok(state.store.customer_key(id).await?.is_some()),
        }
    }
}

/// What [`create`] commits for one customer, and its answer.
struct Prepared {
    unit: Unit,
    stored: CustomerStored,
}

/// The audit event of a batch customer refused with `e` (the decision a
/// single create's refusal gets); `None` for what is not a refusal.
fn refusal_event(
    actor: &Actor,
    purpose: &crate::policy::Purpose,
    index: usize,
    e: &ServiceError,
) -> Option<EventDraft> {
    let decision = match e.kind {
        ErrorKind::Forbidden => Outcome::Denied,
        ErrorKind::NotFound => Outcome::NotFound,
        ErrorKind::BadRequest
        | ErrorKind::Conflict
        | ErrorKind::Unprocessable
        | ErrorKind::PreconditionFailed => Outcome::Invalid,
        _ => return None,
    };
    Some(
        actor
            .event(Action::CustomerCreate, decision)
            .purpose(Some(&purpose.name))
            .reason("error", e.code)
            .reason("batch_index", &index.to_string()),
    )
}

fn create_error(e: CommitError) -> ServiceError {
    match e {
        CommitError::Conflict(_) => ServiceError::conflict("external_id_taken")
            .detail("another customer has this external_id")
            .field("external_id"),
        e => e.into(),
    }
}

/// Checks one new customer (after the purpose check) and builds its unit:
/// the customer, its encrypted values, consents and audit events.
fn prepare_create(
    state: &AppState,
    actor: &Actor,
    role: &crate::policy::Role,
    purpose: Option<&str>,
    input: &CreateCustomer,
    id: Uuid,
) -> ServiceResult<Prepared> {
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
        actor.require(&state.policy, Capability::Consents)?;
    }
    let now = state.clock.now_micros();
    let mut consent_events = Vec::new();
    for c in &input.consents {
        consent_events.push(consent_event(&state.policy, actor, id, c, "grant", now)?);
    }
    let granted: Vec<&str> = consent_events.iter().map(|c| c.purpose.as_str()).collect();
    let explicit: Vec<&str> = consent_events
        .iter()
        .filter(|c| c.explicit)
        .map(|c| c.purpose.as_str())
        .collect();
    let mut prepared = Vec::new();
    for (name, f) in &input.fields {
        let (def, normalized) = prepare_value(&state.policy, role, name, &f.value, &f.purposes)?;
        require_consents(
            &state.policy,
            def,
            &f.purposes,
            |p| granted.iter().any(|g| policy::covers(g, p)),
            |p| explicit.iter().any(|g| policy::covers(g, p)),
        )?;
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
    let mut stored = CustomerStored {
        id,
        external_id: input.external_id.clone(),
        fields: BTreeMap::new(),
    };
    for (def, normalized, purposes) in &prepared {
        mutations.push(put_field(
            state, &dek, id, def, normalized, purposes, actor, channel, notice, now,
        )?);
        stored.fields.insert(
            def.name.clone(),
            FieldMeta {
                purposes: purposes.clone(),
                collected_at: rfc3339(now),
            },
        );
    }
    let mut events = vec![
        actor
            .event(Action::CustomerCreate, Outcome::Allowed)
            .purpose(purpose)
            .customer(id)
            .fields(prepared.iter().map(|(d, _, _)| d.name.clone())),
    ];
    for c in consent_events {
        events.push(
            actor
                .event(Action::ConsentGrant, Outcome::Allowed)
                .purpose(Some(&c.purpose))
                .customer(id),
        );
        mutations.push(Mutation::AppendConsent(c));
    }
    Ok(Prepared {
        unit: Unit { mutations, events },
        stored,
    })
}

/// The profile as the actor may see it for the purpose.
pub async fn read(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    purpose: Option<&str>,
) -> ServiceResult<Profile> {
    let role = actor.role(&state.policy)?;
    let action = Action::CustomerRead;
    let purpose = read_purpose(state, actor, role, purpose, action, Some(id)).await?;
    // From the store's copy of the record if it has one; once more from the
    // database if the record changed since the copy was read.
    for source in [Source::Copy, Source::Database] {
        let loaded = load_for_read(state, actor, id, purpose, action, source).await?;
        let now = state.clock.now_micros();
        let profile = view(state, role, purpose, &loaded.record, now)?;
        let mut unit = Unit::event(read_event(&state.policy, actor, action, purpose, &profile));
        // A recipient's read is a disclosure (GDPR Art. 15(1)(c), Art. 19).
        unit.mutations.extend(outbox::disclosure(
            role,
            &actor.id,
            id,
            &purpose.name,
            profile.fields.keys().cloned().collect(),
            now,
        ));
        if loaded.commit(state, unit).await? {
            return Ok(profile);
        }
    }
    Err(access::outdated_after_database_read())
}

/// One field's value for the purpose; `Forbidden(reason)` when withheld.
pub async fn read_field(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    field: &str,
    purpose: Option<&str>,
) -> ServiceResult<FieldValue> {
    let role = actor.role(&state.policy)?;
    let action = Action::CustomerReadField;
    let purpose = read_purpose(state, actor, role, purpose, action, Some(id)).await?;
    let Some(def) = state.policy.field(field) else {
        // The name is caller input: it is not recorded.
        let ev = actor
            .event(action, Outcome::Invalid)
            .purpose(Some(&purpose.name))
            .customer(id)
            .reason("error", "unknown_field");
        state.sequencer.commit(Unit::event(ev)).await?;
        return Err(ServiceError::bad_request("unknown_field")
            .field(field.to_owned())
            .audited());
    };
    // As `read`: from the copy, then once more from the database if the
    // record changed since the copy was read.
    for source in [Source::Copy, Source::Database] {
        let loaded = load_for_read(state, actor, id, purpose, action, source).await?;
        if let Some(answer) = read_loaded_field(state, actor, role, purpose, def, &loaded).await? {
            return answer;
        }
    }
    Err(access::outdated_after_database_read())
}

/// [`read_field`] on a loaded record: the answer, or `None` when the copy
/// it came from was outdated (nothing was stored).
async fn read_loaded_field(
    state: &AppState,
    actor: &Actor,
    role: &policy::Role,
    purpose: &policy::Purpose,
    def: &policy::FieldDef,
    loaded: &access::Loaded,
) -> ServiceResult<Option<ServiceResult<FieldValue>>> {
    let action = Action::CustomerReadField;
    let record = &loaded.record;
    let id = record.customer.id;
    let now = state.clock.now_micros();
    let Some(row) = record.fields.iter().find(|f| f.field == def.name) else {
        let ev = actor
            .event(action, Outcome::NotFound)
            .purpose(Some(&purpose.name))
            .customer(id)
            .fields([def.name.clone()]);
        if !loaded.commit(state, Unit::event(ev)).await? {
            return Ok(None);
        }
        return Ok(Some(Err(ServiceError::not_found("field_not_found")
            .field(def.name.clone())
            .audited())));
    };
    let decision = decide_value(&state.policy, role, purpose, def, row, record, now);
    let mask = match decision {
        Decision::Allowed { mask } => mask,
        Decision::Withheld(reason) => {
            let ev = actor
                .event(action, Outcome::Withheld)
                .purpose(Some(&purpose.name))
                .customer(id)
                .reason(&def.name, reason.code());
            crate::audit::metrics::record_access(&ev);
            if !loaded.commit(state, Unit::event(ev)).await? {
                return Ok(None);
            }
            return Ok(Some(Err(ServiceError::forbidden(reason.code())
                .detail("the value is withheld for this purpose")
                .field(def.name.clone())
                .audited())));
        }
    };
    let dek = unwrap_dek(state, record)?;
    let value = decrypt(&dek, id, row)?;
    let value = match mask {
        Some(m) => policy::apply_mask(m, &value).unwrap_or_default(),
        None => value,
    };
    let ev = actor
        .event(action, Outcome::Allowed)
        .purpose(Some(&purpose.name))
        .customer(id)
        .fields([def.name.clone()]);
    crate::audit::metrics::record_access(&ev);
    let ev = access::with_art9_conditions(ev, &state.policy, purpose, [&def.name]);
    let mut unit = Unit::event(ev);
    unit.mutations.extend(outbox::disclosure(
        role,
        &actor.id,
        id,
        &purpose.name,
        vec![def.name.clone()],
        now,
    ));
    if !loaded.commit(state, unit).await? {
        return Ok(None);
    }
    Ok(Some(Ok(FieldValue {
        field: def.name.clone(),
        value,
        version: record.customer.version,
    })))
}

/// Exact lookup by a searchable field (through its blind index).
pub async fn search(
    state: &AppState,
    actor: &Actor,
    purpose: Option<&str>,
    input: &SearchRequest,
) -> ServiceResult<SearchResult> {
    let role = actor.role(&state.policy)?;
    let action = Action::CustomerSearch;
    let purpose = read_purpose(state, actor, role, purpose, action, None).await?;
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
    // As `read`: from copies of the records, then once more from the
    // database if one of them changed since its copy was read.
    for source in [Source::Copy, Source::Database] {
        let candidates = state.store.find_by_blind_index(&def.name, &digest).await?;
        let mut stamps = Vec::new();
        let now = state.clock.now_micros();
        let mut found = Vec::new();
        for id in candidates {
            let copy = match source {
                Source::Copy => state.store.record_copy(id),
                Source::Database => None,
            };
            let record = match copy {
                Some((record, stamp)) => {
                    stamps.push(stamp);
                    record
                }
                None => match state.store.customer_record(id).await? {
                    Some(record) => record,
                    None => continue,
                },
            };
            if record.customer.erased_at.is_some() {
                continue;
            }
            let Some(row) = record.fields.iter().find(|f| f.field == def.name) else {
                continue;
            };
            // The match itself uses the searched value: it must be allowed
            // for this purpose, and the candidate's value must really be
            // equal.
            let decision = decide_value(&state.policy, role, purpose, def, row, &record, now);
            if !matches!(decision, Decision::Allowed { .. }) {
                continue;
            }
            let dek = unwrap_dek(state, &record)?;
            let same = crate::crypto::constant_time_eq(
                decrypt(&dek, id, row)?.as_bytes(),
                normalized.as_bytes(),
            );
            if same {
                found.push(view(state, role, purpose, &record, now)?);
            }
        }
        let mutations: Vec<Mutation> = found
            .iter()
            .filter_map(|p| {
                outbox::disclosure(
                    role,
                    &actor.id,
                    p.id,
                    &purpose.name,
                    p.fields.keys().cloned().collect(),
                    now,
                )
            })
            .collect();
        let events: Vec<EventDraft> = if found.is_empty() {
            vec![
                actor
                    .event(action, Outcome::NotFound)
                    .purpose(Some(&purpose.name))
                    .fields([def.name.clone()]),
            ]
        } else {
            found
                .iter()
                .map(|p| read_event(&state.policy, actor, action, purpose, p))
                .collect()
        };
        if access::commit_checked(state, Unit { mutations, events }, &stamps).await? {
            return Ok(SearchResult { customers: found });
        }
    }
    Err(access::outdated_after_database_read())
}

/// The write check for changing or removing values held on file: the role
/// needs a write grant covering every purpose each value was collected for
/// (`PATCH` and a rectification request filed by staff pass the same check).
pub fn check_rewrite<'a>(
    role: &crate::policy::Role,
    record: &crate::store::CustomerRecord,
    fields: impl IntoIterator<Item = &'a String>,
) -> ServiceResult<()> {
    for name in fields {
        let Some(old) = record.fields.iter().find(|f| &f.field == name) else {
            continue;
        };
        for p in &old.purposes {
            if !role.write.iter().any(|w| policy::covers(w, &p.purpose)) {
                return Err(ServiceError::insufficient_scope("purpose_not_permitted")
                    .detail(format!(
                        "the value was collected for {}, which this role may not write",
                        p.purpose
                    ))
                    .field(name.clone()));
            }
        }
    }
    Ok(())
}

/// Rectifies or extends a profile; the old value is gone for good. The
/// recipients the customer's data was disclosed to are told of the
/// rectification in the same unit (GDPR Art. 19).
pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    purpose: Option<&str>,
    input: &UpdateCustomer,
) -> ServiceResult<CustomerStored> {
    update_if(state, actor, id, purpose, input, None).await
}

/// [`update`] with `If-Match`: the version check and the change are one
/// transaction; 412 `precondition_failed` when the data moved on.
pub async fn update_if(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    purpose: Option<&str>,
    input: &UpdateCustomer,
    precondition: Option<&Precondition>,
) -> ServiceResult<CustomerStored> {
    let role = actor.role(&state.policy)?;
    let action = Action::CustomerUpdate;
    let purpose = write_purpose(state, actor, role, purpose, action, Some(id)).await?;
    let channel = valid_channel(input.channel.as_deref())?;
    let notice = valid_notice(input.notice_version.as_deref())?;
    if input.fields.is_empty() {
        return Err(
            ServiceError::invalid_request("at least one field is required").field("fields"),
        );
    }
    let record = load_live(state, actor, id, purpose, action).await?;
    let now = state.clock.now_micros();
    let consents = ConsentState::derive(&state.policy, &record.consents, now);
    let dek = unwrap_dek(state, &record)?;
    check_rewrite(role, &record, input.fields.keys())?;
    let mut mutations: Vec<Mutation> = precondition
        .and_then(Precondition::versions)
        .map(|versions| Mutation::ExpectCustomerVersion {
            customer_id: id,
            versions,
        })
        .into_iter()
        .collect();
    let mut stored = CustomerStored {
        id,
        external_id: record.customer.external_id.clone(),
        fields: BTreeMap::new(),
    };
    // Values that were on file and now differ: what recipients are told of.
    let mut rectified = Vec::new();
    for (name, change) in &input.fields {
        let existing = record.fields.iter().find(|f| &f.field == name);
        let Some(f) = change else {
            if state.policy.field(name).is_none() {
                return Err(ServiceError::bad_request("unknown_field").field(name.clone()));
            }
            if existing.is_some() {
                mutations.push(Mutation::DeleteField {
                    customer_id: id,
                    field: name.clone(),
                });
                rectified.push(name.clone());
            }
            continue;
        };
        let purposes = match (&f.purposes, existing) {
            (Some(p), _) => p.clone(),
            (None, Some(old)) => old.purposes.iter().map(|p| p.purpose.clone()).collect(),
            (None, None) => {
                return Err(
                    ServiceError::invalid_request("purposes are required for a new value")
                        .field(name.clone()),
                );
            }
        };
        let (def, normalized) = prepare_value(&state.policy, role, name, &f.value, &purposes)?;
        require_consents(
            &state.policy,
            def,
            &purposes,
            |p| policy::consented(&consents, p),
            |p| policy::consented_explicitly(&consents, p),
        )?;
        mutations.push(put_field(
            state,
            &dek,
            id,
            def,
            &normalized,
            &purposes,
            actor,
            channel,
            notice,
            now,
        )?);
        if existing.is_some() {
            rectified.push(def.name.clone());
        }
        stored.fields.insert(
            def.name.clone(),
            FieldMeta {
                purposes,
                collected_at: rfc3339(now),
            },
        );
    }
    let mut ev = actor
        .event(action, Outcome::Allowed)
        .purpose(Some(&purpose.name))
        .customer(id)
        .fields(input.fields.keys().cloned());
    if !rectified.is_empty() {
        let notices = outbox::recipient_notices(
            state.store.as_ref(),
            &state.policy,
            id,
            "rectification",
            None,
            &rectified,
            now,
        )
        .await?;
        ev = ev.reason("recipients_notified", &notices.len().to_string());
        mutations.extend(notices);
    }
    state
        .sequencer
        .commit(Unit {
            mutations,
            events: vec![ev],
        })
        .await
        .map_err(|e| match e {
            CommitError::Conflict(c) if c == crate::store::VERSION_MISMATCH => {
                precondition_failed()
            }
            CommitError::Conflict(_) | CommitError::NotFound => {
                ServiceError::not_found("customer_not_found")
            }
            other => other.into(),
        })?;
    outbox::wake();
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::NewIds;

    #[test]
    fn derived_ids_are_stable_per_index_and_seed_and_marked_as_derived() {
        let a = NewIds::Derived([7; 32]);
        let b = NewIds::Derived([8; 32]);
        assert_eq!(a.id(3), a.id(3));
        assert_ne!(a.id(3), a.id(4));
        assert_ne!(a.id(3), b.id(3));
        assert_eq!(a.id(0).get_version(), Some(uuid::Version::Custom));
        assert_eq!(
            NewIds::Fresh.id(0).get_version(),
            Some(uuid::Version::SortRand)
        );
        assert_ne!(NewIds::Fresh.id(0), NewIds::Fresh.id(0));
    }
}
