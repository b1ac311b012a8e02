//! Values in and out of their envelope: the customer's data key, sealing a
//! value for storage (with its purposes and blind index), opening it, and
//! the checks a value passes before it is stored.

use uuid::Uuid;

use crate::actor::Actor;
use crate::clock::{from_micros, to_micros};
use crate::crypto::Dek;
use crate::error::{ServiceError, ServiceResult};
use crate::policy::{self, FieldDef, Policy, Role};
use crate::state::AppState;
use crate::store::{CustomerRecord, Mutation, ValuePurpose};
pub fn unwrap_dek(state: &AppState, record: &CustomerRecord) -> ServiceResult<Dek> {
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

pub fn decrypt(dek: &Dek, id: Uuid, row: &crate::store::FieldRow) -> ServiceResult<String> {
    let plain = dek
        .decrypt_field(id, &row.field, &row.ciphertext)
        .map_err(ServiceError::internal)?;
    String::from_utf8(plain.to_vec()).map_err(ServiceError::internal)
}

/// Validates a value for a field and the purposes it is collected for.
pub fn prepare_value<'p>(
    policy: &'p Policy,
    role: &Role,
    name: &str,
    value: &str,
    purposes: &[String],
) -> ServiceResult<(&'p FieldDef, String)> {
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

/// 422 `consent_required` when a consent-based purpose has no active
/// consent, or when a special-category value is collected for a purpose
/// relying on explicit consent (GDPR Art. 9(2)(a)) that no active explicit
/// consent covers.
pub fn require_consents(
    policy: &Policy,
    def: &FieldDef,
    purposes: &[String],
    active: impl Fn(&str) -> bool,
    explicit: impl Fn(&str) -> bool,
) -> ServiceResult<()> {
    for p in policy::consent_needed(policy, purposes) {
        if !active(&p) {
            return Err(
                ServiceError::unprocessable("consent_required").detail(format!(
                    "collecting for {p} needs the customer's consent first"
                )),
            );
        }
    }
    for p in policy::explicit_consent_needed(policy, def, purposes) {
        if !explicit(&p) {
            return Err(ServiceError::unprocessable("consent_required")
                .detail(format!(
                    "collecting this special-category value for {p} needs the customer's \
                     explicit consent first"
                ))
                .field(def.name.clone()));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn put_field(
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
) -> ServiceResult<Mutation> {
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

pub fn valid_channel(c: Option<&str>) -> ServiceResult<Option<&str>> {
    match c {
        Some(c) if !CHANNELS.contains(&c) => Err(ServiceError::invalid_request(format!(
            "channel must be one of {}",
            CHANNELS.join(", ")
        ))
        .field("channel")),
        other => Ok(other),
    }
}

pub fn valid_notice(n: Option<&str>) -> ServiceResult<Option<&str>> {
    match n {
        Some(v) if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) => Err(
            ServiceError::invalid_request("notice_version must be 1–64 printable characters")
                .field("notice_version"),
        ),
        other => Ok(other),
    }
}
