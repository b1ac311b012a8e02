//! Legal holds: values the privacy team must keep despite an erasure (GDPR
//! Art. 17(3)(b) and (e): a legal obligation, legal claims).
//!
//! A hold names a customer, the fields it covers (its scope), a reason, a
//! legal basis, a review date and the purpose the held values stay readable
//! for once the customer is erased (default: the policy's first
//! `legal_obligation` purpose that is `allowed_when_restricted`, i.e.
//! `legal.claims`). While it is active:
//! - an erasure keeps the covered values (`partially_erased`);
//! - the retention sweeper leaves the covered values alone.
//!
//! Releasing a hold re-evaluates a pending erasure at once
//! ([`super::erasure::settle`]): what nothing keeps any more is deleted, and
//! when nothing is left the data key is destroyed.
//!
//! The reason is free text for the privacy team; it must be a case
//! reference, not personal data, and it never enters the audit trail.

use crate::audit::{Action, Decision};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::erasure::{Ctx, ErasureReceipt, settle};
use crate::actor::Actor;
use crate::answer::Answer;
use crate::audit::CommitError;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::error::ServiceError;
use crate::policy::{LegalBasis, Policy, is_identifier};
use crate::state::AppState;
use crate::store::{LegalHoldRow, Mutation, Unit};

/// A new hold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    pub customer_id: Uuid,
    /// The fields it covers (at least one, each declared in the policy).
    pub fields: Vec<String>,
    /// A case reference for the privacy team (1–500 characters, no personal data).
    pub reason: String,
    /// The legal ground, e.g. `legal_claims`, `tax_audit` (lowercase identifier).
    pub basis: String,
    /// When the privacy team must review the hold (RFC 3339, in the future).
    pub review_at: String,
    /// The purpose held values stay readable for after an erasure
    /// (default: `legal.claims`, or the policy's equivalent).
    #[serde(default)]
    pub purpose: Option<String>,
}

/// A hold as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct HoldView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub fields: Vec<String>,
    pub reason: String,
    pub basis: String,
    pub purpose: Option<String>,
    pub review_at: String,
    /// The review date has passed and the hold is still active.
    pub review_due: bool,
    pub active: bool,
    pub created_by: String,
    pub created_at: String,
    pub released_at: Option<String>,
}

impl HoldView {
    pub fn new(h: &LegalHoldRow, now: i64) -> Self {
        HoldView {
            id: h.id,
            customer_id: h.customer_id,
            fields: h.fields.clone(),
            reason: h.reason.clone(),
            basis: h.basis.clone(),
            purpose: h.purpose.clone(),
            review_at: rfc3339(h.review_at),
            review_due: h.released_at.is_none() && h.review_at <= now,
            active: h.released_at.is_none(),
            created_by: h.created_by.clone(),
            created_at: rfc3339(h.created_at),
            released_at: h.released_at.map(rfc3339),
        }
    }
}

/// The answer to a release: the hold, and the customer's erasure receipt
/// when an erasure was pending on it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Released {
    pub hold: HoldView,
    pub erasure: Option<ErasureReceipt>,
}

/// The purpose held values are readable for by default.
pub fn default_purpose(policy: &Policy) -> Option<&str> {
    policy
        .purposes
        .values()
        .find(|p| p.allowed_when_restricted && p.basis == LegalBasis::LegalObligation)
        .or_else(|| policy.purposes.values().find(|p| p.allowed_when_restricted))
        .map(|p| p.name.as_str())
}

/// Checks a new hold; the validated row (not yet stored).
pub fn validate(
    policy: &Policy,
    input: &NewHold,
    created_by: &str,
    now: i64,
) -> Result<LegalHoldRow, ServiceError> {
    if input.fields.is_empty() {
        return Err(
            ServiceError::invalid_request("a hold covers at least one field").field("fields"),
        );
    }
    let mut fields = Vec::new();
    for f in &input.fields {
        if policy.field(f).is_none() {
            return Err(ServiceError::bad_request("unknown_field")
                .detail("the policy does not declare this field")
                .field(f.clone()));
        }
        if !fields.contains(f) {
            fields.push(f.clone());
        }
    }
    let reason = input.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(
            ServiceError::invalid_request("reason must be 1–500 printable characters")
                .field("reason"),
        );
    }
    let basis_ok = input.basis.len() <= 64 && input.basis.split('.').all(is_identifier);
    if !basis_ok {
        return Err(ServiceError::invalid_request(
            "basis must be a lowercase identifier such as legal_claims",
        )
        .field("basis"));
    }
    let review_at = parse_rfc3339(&input.review_at).ok_or_else(|| {
        ServiceError::invalid_request("review_at must be an RFC 3339 time").field("review_at")
    })?;
    if review_at <= now {
        return Err(
            ServiceError::invalid_request("review_at must be in the future").field("review_at"),
        );
    }
    let purpose = match &input.purpose {
        Some(p) => {
            if policy.purpose(p).is_none() {
                return Err(ServiceError::bad_request("unknown_purpose").field("purpose"));
            }
            p.clone()
        }
        None => default_purpose(policy)
            .ok_or_else(|| {
                ServiceError::bad_request("purpose_required")
                    .detail("the policy has no purpose allowed under restriction; name one")
            })?
            .to_owned(),
    };
    Ok(LegalHoldRow {
        id: Uuid::now_v7(),
        customer_id: input.customer_id,
        fields,
        reason: reason.to_owned(),
        basis: input.basis.clone(),
        purpose: Some(purpose),
        review_at,
        created_by: created_by.to_owned(),
        created_at: now,
        released_at: None,
    })
}

/// Places a hold on a customer that still has a data key (live or
/// partially erased); a partially erased customer's kept values are
/// re-evaluated at once. `answer` is recorded with the hold (see
/// [`crate::answer`]).
pub async fn create(
    state: &AppState,
    caller: &Actor,
    input: &NewHold,
    answer: &Answer<'_, HoldView>,
) -> Result<HoldView, ServiceError> {
    caller.require(&state.policy, crate::policy::Capability::LegalHold)?;
    let now = state.clock.now_micros();
    let row = validate(&state.policy, input, &caller.id, now)?;
    let c = row.customer_id;
    let live = state
        .store
        .customer_record(c)
        .await?
        .is_some_and(|r| r.customer.wrapped_dek.is_some());
    if !live {
        state
            .sequencer
            .commit(Unit::event(
                caller
                    .event(Action::LegalHoldCreate, Decision::NotFound)
                    .customer(c),
            ))
            .await?;
        return Err(ServiceError::not_found("customer_not_found"));
    }
    let ev = caller
        .event(Action::LegalHoldCreate, Decision::Allowed)
        .customer(c)
        .fields(row.fields.clone())
        .purpose(row.purpose.as_deref())
        .reason("hold_id", &row.id.to_string())
        .reason("basis", &row.basis);
    let view = HoldView::new(&row, now);
    let mut mutations = vec![Mutation::InsertLegalHold(row)];
    mutations.extend(answer.record(&view)?);
    state
        .sequencer
        .commit(Unit {
            mutations,
            events: vec![ev],
        })
        .await
        .map_err(|e| match e {
            CommitError::Conflict(_) | CommitError::NotFound => {
                ServiceError::not_found("customer_not_found")
            }
            other => other.into(),
        })?;
    let ctx = Ctx::from_state(state);
    settle(&ctx, c, caller, "hold_placed").await?;
    Ok(view)
}

/// Releases an active hold and lets a pending erasure finish.
pub async fn release(state: &AppState, caller: &Actor, id: Uuid) -> Result<Released, ServiceError> {
    caller.require(&state.policy, crate::policy::Capability::LegalHold)?;
    let now = state.clock.now_micros();
    let Some(row) = state.store.legal_hold(id).await? else {
        return Err(ServiceError::not_found("hold_not_found"));
    };
    if row.released_at.is_some() {
        return Err(ServiceError::conflict("hold_released").detail("the hold was already released"));
    }
    let ev = caller
        .event(Action::LegalHoldRelease, Decision::Allowed)
        .customer(row.customer_id)
        .fields(row.fields.clone())
        .reason("hold_id", &id.to_string());
    state
        .sequencer
        .commit(Unit {
            mutations: vec![Mutation::ReleaseLegalHold { id, at: now }],
            events: vec![ev],
        })
        .await
        .map_err(|e| match e {
            CommitError::NotFound | CommitError::Conflict(_) => {
                ServiceError::conflict("hold_released").detail("the hold was already released")
            }
            other => other.into(),
        })?;
    let ctx = Ctx::from_state(state);
    let erasure = settle(&ctx, row.customer_id, caller, "hold_released").await?;
    let released = LegalHoldRow {
        released_at: Some(now),
        ..row
    };
    Ok(Released {
        hold: HoldView::new(&released, now),
        erasure,
    })
}

/// A customer's holds, or every active hold.
pub async fn list(
    state: &AppState,
    caller: &Actor,
    customer: Option<Uuid>,
) -> Result<Vec<HoldView>, ServiceError> {
    caller.require(&state.policy, crate::policy::Capability::LegalHold)?;
    let now = state.clock.now_micros();
    let rows = state.store.legal_holds(customer).await?;
    let mut ev = caller.event(Action::LegalHoldList, Decision::Allowed);
    if let Some(c) = customer {
        ev = ev.customer(c);
    }
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(rows.iter().map(|h| HoldView::new(h, now)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy() -> Policy {
        Policy::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    fn input() -> NewHold {
        NewHold {
            customer_id: Uuid::nil(),
            fields: vec!["email".into(), "email".into()],
            reason: "Case 2026-17".into(),
            basis: "legal_claims".into(),
            review_at: "2031-01-01T00:00:00Z".into(),
            purpose: None,
        }
    }

    #[test]
    fn defaults_to_the_legal_claims_purpose_and_dedups_fields() {
        let p = policy();
        assert_eq!(default_purpose(&p), Some("legal.claims"));
        let row = validate(&p, &input(), "dpo", 0).unwrap();
        assert_eq!(row.fields, vec!["email".to_owned()]);
        assert_eq!(row.purpose.as_deref(), Some("legal.claims"));
    }

    #[test]
    fn refuses_bad_holds_with_stable_codes() {
        let p = policy();
        let cases = [
            (
                NewHold {
                    fields: vec![],
                    ..input()
                },
                "invalid_request",
                "fields",
            ),
            (
                NewHold {
                    fields: vec!["shoe_size".into()],
                    ..input()
                },
                "unknown_field",
                "shoe_size",
            ),
            (
                NewHold {
                    reason: " ".into(),
                    ..input()
                },
                "invalid_request",
                "reason",
            ),
            (
                NewHold {
                    basis: "Legal Claims".into(),
                    ..input()
                },
                "invalid_request",
                "basis",
            ),
            (
                NewHold {
                    review_at: "tomorrow".into(),
                    ..input()
                },
                "invalid_request",
                "review_at",
            ),
            (
                NewHold {
                    review_at: "2020-01-01T00:00:00Z".into(),
                    ..input()
                },
                "invalid_request",
                "review_at",
            ),
            (
                NewHold {
                    purpose: Some("nope".into()),
                    ..input()
                },
                "unknown_purpose",
                "purpose",
            ),
        ];
        let now = crate::clock::parse_rfc3339("2026-11-22T00:00:00Z").unwrap();
        for (hold, code, field) in cases {
            let e = validate(&p, &hold, "dpo", now).unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), (code, Some(field)));
        }
    }
}
