//! A request as its requester, or the privacy team, sees it: the answer of
//! the request use cases of the API, the privacy center and the console.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::StoredRequests;
use super::flow;
use super::lifecycle::Request;
use crate::clock::rfc3339;
use crate::error::ServiceResult;
use crate::policy::Policy;
use crate::state::AppState;

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

/// `r` as of `now`: with the privacy team's details when `staff`.
pub fn of(policy: &Policy, r: &Request, staff: bool, now: i64) -> RequestView {
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
        denial: flow::denial_view(policy, r),
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

/// The privacy team's view of `r`, now.
pub fn staff(state: &AppState, r: &Request) -> RequestView {
    of(&state.policy, r, true, state.clock.now_micros())
}

/// The requester's view follows a merged request to the one it joined
/// (keeping its own id).
pub async fn requester(state: &AppState, r: &Request, now: i64) -> ServiceResult<RequestView> {
    let target = match r.merged_into {
        Some(into) => state.store.request(into).await?,
        None => None,
    };
    Ok(joined(&state.policy, r, target.as_ref(), now))
}

/// The requester's view of `r`, which joined `joined` when merged.
pub fn joined(policy: &Policy, r: &Request, joined: Option<&Request>, now: i64) -> RequestView {
    if let Some(target) = joined.filter(|_| r.merged_into.is_some()) {
        let mut v = of(policy, target, false, now);
        v.id = r.id;
        v.received_at = rfc3339(r.received_at);
        return v;
    }
    of(policy, r, false, now)
}
