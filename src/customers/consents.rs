//! Consent: the ledger of grants and withdrawals (with the notice shown),
//! and the current state per purpose.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::values::valid_channel;
use crate::actor::Actor;
use crate::answer::Answer;
use crate::audit::{Action, CommitError, Decision};
use crate::clock::rfc3339;
use crate::consent::{ConsentState, ConsentStatus};
use crate::error::{ServiceError, ServiceResult};
use crate::policy::{Capability, Policy};
use crate::state::AppState;
use crate::store::{ConsentEvent, CustomerRecord, Mutation, Unit};

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
    /// The customer confirmed the specific statement about special-category
    /// data (GDPR Art. 9(2)(a)): a purpose whose condition is
    /// `explicit_consent` serves such values only under an explicit grant.
    /// Only a grant can be explicit.
    #[serde(default)]
    pub explicit: bool,
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
    /// The customer confirmed the specific statement about special-category
    /// data (GDPR Art. 9(2)(a)): a purpose whose condition is
    /// `explicit_consent` serves such values only under an explicit grant.
    /// Only a grant can be explicit.
    #[serde(default)]
    pub explicit: bool,
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
    /// Recorded as explicit consent (GDPR Art. 9(2)(a)).
    pub explicit: bool,
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
            explicit: e.explicit,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CurrentConsentView {
    pub purpose: String,
    pub status: ConsentStatus,
    pub since: String,
    /// The latest grant was recorded as explicit (GDPR Art. 9(2)(a)).
    pub explicit: bool,
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
) -> ServiceResult<ConsentEvent> {
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
    if c.explicit && action != "grant" {
        return Err(
            ServiceError::invalid_request("only a grant can be recorded as explicit")
                .field("explicit"),
        );
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
        explicit: c.explicit,
    })
}

/// Records a grant or a withdrawal for a live customer; `answer` is
/// recorded with it (see [`crate::answer`]).
pub async fn record(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    input: &ConsentRequest,
    answer: &Answer<'_, ConsentEventView>,
) -> ServiceResult<ConsentEventView> {
    actor.require(&state.policy, Capability::Consents)?;
    record_event(state, actor, id, input, answer).await
}

/// The customer's own grant or withdrawal, on the privacy center: `holder`
/// is the data subject holding a verified request of customer `id`
/// (`crate::requests::flow::subject_customer` decides that). The channel is
/// always `web`.
pub async fn record_own(
    state: &AppState,
    holder: &Actor,
    id: Uuid,
    input: &ConsentRequest,
) -> ServiceResult<ConsentEventView> {
    own(holder)?;
    if input.channel != "web" {
        return Err(ServiceError::invalid_request(
            "the customer's own consent is given on the web",
        )
        .field("channel"));
    }
    record_event(state, holder, id, input, &Answer::none()).await
}

/// The customer's own consents (see [`record_own`]).
pub async fn list_own(state: &AppState, holder: &Actor, id: Uuid) -> ServiceResult<Consents> {
    own(holder)?;
    list_events(state, holder, id).await
}

fn own(holder: &Actor) -> ServiceResult<()> {
    if holder.kind == crate::actor::ActorKind::DataSubject {
        Ok(())
    } else {
        Err(ServiceError::forbidden("capability_required")
            .detail("staff record consent with the consents capability"))
    }
}

async fn record_event(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    input: &ConsentRequest,
    answer: &Answer<'_, ConsentEventView>,
) -> ServiceResult<ConsentEventView> {
    let (action, audit_action) = match input.action {
        ConsentAction::Grant => ("grant", Action::ConsentGrant),
        ConsentAction::Withdraw => ("withdraw", Action::ConsentWithdraw),
    };
    let as_input = ConsentInput {
        purpose: input.purpose.clone(),
        notice_version: input.notice_version.clone(),
        notice_text_sha256: input.notice_text_sha256.clone(),
        language: input.language.clone(),
        jurisdiction: input.jurisdiction.clone(),
        channel: Some(input.channel.clone()),
        explicit: input.explicit,
    };
    let now = state.clock.now_micros();
    let event = consent_event(&state.policy, actor, id, &as_input, action, now)?;
    live_customer(state, actor, audit_action, id).await?;
    let view = ConsentEventView::from(&event);
    let audit = actor
        .event(audit_action, Decision::Allowed)
        .purpose(Some(&event.purpose))
        .customer(id);
    let mut mutations = vec![Mutation::AppendConsent(event)];
    mutations.extend(answer.record(&view)?);
    let committed = state
        .sequencer
        .commit(Unit {
            mutations,
            events: vec![audit],
        })
        .await;
    match committed {
        Ok(_) => Ok(view),
        // Erased meanwhile: nothing was stored.
        Err(CommitError::Conflict(_) | CommitError::NotFound) => {
            not_found(state, actor, audit_action, id).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The current consent per purpose and the full ledger.
pub async fn list(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<Consents> {
    actor.require(&state.policy, Capability::Consents)?;
    list_events(state, actor, id).await
}

async fn list_events(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<Consents> {
    let record = live_customer(state, actor, Action::ConsentRead, id).await?;
    let now = state.clock.now_micros();
    let current = ConsentState::derive(&state.policy, &record.consents, now)
        .current()
        .map(|c| CurrentConsentView {
            purpose: c.purpose.clone(),
            status: c.status,
            since: rfc3339(c.since),
            explicit: c.explicit,
        })
        .collect();
    let events = record.consents.iter().map(ConsentEventView::from).collect();
    state
        .sequencer
        .commit(Unit::event(
            actor
                .event(Action::ConsentRead, Decision::Allowed)
                .customer(id),
        ))
        .await?;
    Ok(Consents { current, events })
}

/// A customer that exists and is not erased; a miss is audited.
async fn live_customer(
    state: &AppState,
    actor: &Actor,
    action: Action,
    id: Uuid,
) -> ServiceResult<CustomerRecord> {
    match state.store.customer_record(id).await? {
        Some(r) if r.customer.erased_at.is_none() => Ok(r),
        _ => not_found(state, actor, action, id).await,
    }
}

async fn not_found<T>(
    state: &AppState,
    actor: &Actor,
    action: Action,
    id: Uuid,
) -> ServiceResult<T> {
    let ev = actor.event(action, Decision::NotFound).customer(id);
    state.sequencer.commit(Unit::event(ev)).await?;
    Err(ServiceError::not_found("customer_not_found").audited())
}
