//! The access decision applied to a customer: the purpose check (steps 1–2
//! of the decision, refusals audited before they are answered), loading a
//! readable customer, and the per-value decision that builds a role's view
//! (only allowed values are decrypted, masks applied).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::values::{decrypt, unwrap_dek};
use super::{Profile, Withheld};
use crate::actor::Actor;
use crate::audit::CommitError;
use crate::audit::{Action, Decision as Outcome, EventDraft};
use crate::clock::from_micros;
use crate::consent::ConsentState;
use crate::crypto::Dek;
use crate::error::{ServiceError, ServiceResult};
use crate::policy::{
    self, CollectedFor, Decision, FieldDef, Policy, Purpose, PurposeError, Reason, Role,
    SubjectState,
};
use crate::state::AppState;
use crate::store::{CustomerRecord, RECORD_CHANGED, RecordStamp, Unit};

/// Steps 1–2 of the decision for a read. A refusal is audited (R1) before
/// it is answered.
pub async fn read_purpose<'p>(
    state: &'p AppState,
    caller: &Actor,
    role: &Role,
    purpose: Option<&str>,
    action: Action,
    customer: Option<Uuid>,
) -> ServiceResult<&'p Purpose> {
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
) -> ServiceResult<&'p Purpose> {
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
) -> ServiceResult<&'p Purpose> {
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
            Err(ServiceError::from(e).audited())
        }
    }
}

/// Loads a customer that exists and is not erased (or, for a read, is
/// partially erased with a value kept for the purpose); a miss is audited.
pub(crate) async fn load_live(
    state: &AppState,
    caller: &Actor,
    id: Uuid,
    purpose: &Purpose,
    action: Action,
) -> ServiceResult<CustomerRecord> {
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
            Err(ServiceError::not_found("customer_not_found").audited())
        }
    }
}

/// Where a read takes a customer's record from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The store's in-memory copy when it keeps one, else the database.
    Copy,
    Database,
}

/// A customer's record loaded for a read, with the stamp of the copy it
/// came from (`None`: read from the database just now).
pub(crate) struct Loaded {
    pub record: CustomerRecord,
    pub stamp: Option<RecordStamp>,
}

impl Loaded {
    /// Commits `unit`, which was decided on this record. From a copy, the
    /// unit checks the copy's stamp in its transaction: `Ok(false)` when
    /// the record has changed since (nothing was stored; make the read again
    /// from the database).
    pub async fn commit(&self, state: &AppState, unit: Unit) -> ServiceResult<bool> {
        commit_checked(state, unit, self.stamp.as_slice()).await
    }
}

/// Commits `unit`, decided on copies of records read at `stamps`, with a
/// check of each: `Ok(false)` when one of the records has changed since
/// (nothing was stored).
pub(crate) async fn commit_checked(
    state: &AppState,
    mut unit: Unit,
    stamps: &[RecordStamp],
) -> ServiceResult<bool> {
    unit.mutations
        .splice(0..0, stamps.iter().map(|s| s.check()));
    match state.sequencer.commit(unit).await {
        Ok(_) => Ok(true),
        Err(CommitError::Conflict(code)) if !stamps.is_empty() && code == RECORD_CHANGED => {
            metrics::counter!("pii_vault_record_copies_outdated_total").increment(1);
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a read answers if even the record it read from the database was
/// found outdated when its event was committed (a unit without stamps is
/// never refused as outdated, so this does not happen).
pub(crate) fn outdated_after_database_read() -> ServiceError {
    ServiceError::internal("a record read from the database was outdated")
}

/// [`load_live`] for a read, from `source`.
pub(crate) async fn load_for_read(
    state: &AppState,
    caller: &Actor,
    id: Uuid,
    purpose: &Purpose,
    action: Action,
    source: Source,
) -> ServiceResult<Loaded> {
    if source == Source::Copy
        && let Some((record, stamp)) = state.store.record_copy(id)
    {
        return Ok(Loaded {
            record,
            stamp: Some(stamp),
        });
    }
    Ok(Loaded {
        record: load_live(state, caller, id, purpose, action).await?,
        stamp: None,
    })
}

pub(crate) fn subject_state(record: &CustomerRecord) -> SubjectState {
    SubjectState {
        restricted: record.customer.restricted,
        objections: record.objections.clone(),
        opted_out_sale: record.customer.opted_out_sale,
        limit_sensitive: record.customer.limit_sensitive,
    }
}

/// [`decide_row`] for one value, with the customer's consents as they
/// stand at `now`.
pub(crate) fn decide_value(
    policy: &Policy,
    role: &Role,
    purpose: &Purpose,
    def: &FieldDef,
    row: &crate::store::FieldRow,
    record: &CustomerRecord,
    now: i64,
) -> Decision {
    let consents = ConsentState::derive(policy, &record.consents, now);
    decide_row(policy, role, purpose, def, row, record, &consents, now)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn decide_row(
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
pub(crate) fn view(
    state: &AppState,
    role: &Role,
    purpose: &Purpose,
    record: &CustomerRecord,
    now: i64,
) -> ServiceResult<Profile> {
    let id = record.customer.id;
    let consents = ConsentState::derive(&state.policy, &record.consents, now);
    let mut profile = Profile {
        id,
        external_id: record.customer.external_id.clone(),
        fields: BTreeMap::new(),
        withheld: Vec::new(),
        version: record.customer.version,
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

/// The audit key naming the GDPR Art. 9(2) condition a served
/// special-category value relied on (`art9.<field>` → condition).
pub(crate) fn art9_key(field: &str) -> String {
    format!("art9.{field}")
}

/// Adds, for each served special-category field, the Art. 9(2) condition
/// the purpose relied on. Added after the access metrics are counted: it is
/// not a withholding reason.
pub(crate) fn with_art9_conditions<'f>(
    mut ev: EventDraft,
    policy: &Policy,
    purpose: &Purpose,
    served: impl IntoIterator<Item = &'f String>,
) -> EventDraft {
    for field in served {
        let condition = policy
            .field(field)
            .and_then(|def| policy::special_category_condition(purpose, def));
        if let Some(c) = condition {
            ev = ev.reason(&art9_key(field), c.as_str());
        }
    }
    ev
}

pub(crate) fn read_event(
    policy: &Policy,
    caller: &Actor,
    action: Action,
    purpose: &Purpose,
    profile: &Profile,
) -> EventDraft {
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
    with_art9_conditions(ev, policy, purpose, profile.fields.keys())
}
