//! The notifier's side of the outbox (capability `notify`): read the
//! messages waiting for delivery, acknowledge each once delivered. Reading
//! opens the sealed payloads (addresses, codes) and is audited before the
//! answer leaves; an acknowledgement deletes the payload.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::background::{customer_dek, dropped_event};
use super::flow;
use super::outbox::{Delivery, OpenError, open_message};
use crate::actor::Actor;
use crate::answer::Answer;
use crate::audit::{Action, CommitError, Decision};
use crate::crypto::Dek;
use crate::error::{ServiceError, ServiceResult};
use crate::policy::Capability;
use crate::state::AppState;
use crate::store::RequestMutation as RM;
use crate::store::{Mutation, Unit};

/// Up to `limit` (1..=1000) undelivered messages, oldest first, opened.
/// A message sealed for a customer whose key is gone is dropped.
pub async fn pending(
    state: &AppState,
    caller: &Actor,
    limit: Option<i64>,
) -> ServiceResult<Vec<Delivery>> {
    caller.require(&state.policy, Capability::Notify)?;
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ServiceError::invalid_request("limit must be between 1 and 1000").field("limit"),
        );
    }
    let now = state.clock.now_micros();
    let rows = state.store.outbox_pending(limit).await?;
    let mut deks: HashMap<Uuid, Option<Arc<Dek>>> = HashMap::new();
    let mut messages = Vec::new();
    let mut mutations: Vec<Mutation> = Vec::new();
    let mut events = Vec::new();
    for row in &rows {
        let dek = customer_dek(state, row, &mut deks).await;
        match open_message(row, dek.as_deref()) {
            Ok(d) => {
                let mut ev = caller
                    .event(Action::OutboxRead, Decision::Allowed)
                    .reason("message", &row.id.to_string())
                    .reason("kind", &row.kind);
                if let Some(c) = row.customer_id {
                    ev = ev.customer(c);
                }
                if let Some(f) = d.contact_field() {
                    ev = ev.fields([f]);
                }
                events.push(ev);
                messages.push(d);
            }
            Err(OpenError::Delivered) => {}
            Err(OpenError::Undeliverable) => {
                // Sealed for a customer whose key is gone: never deliverable.
                mutations.push(
                    RM::DropOutbox {
                        id: row.id,
                        at: now,
                        reason: "undeliverable".into(),
                    }
                    .into(),
                );
                events.push(dropped_event(caller, row));
            }
        }
    }
    if events.is_empty() {
        events.push(caller.event(Action::OutboxRead, Decision::Allowed));
    }
    state
        .sequencer
        .commit(Unit { mutations, events })
        .await
        .map_err(|e| match e {
            CommitError::NotFound | CommitError::Conflict(_) => {
                ServiceError::conflict("outbox_changed").detail("the outbox changed; read it again")
            }
            other => other.into(),
        })?;
    Ok(messages)
}

/// Marks a message delivered; its payload is deleted. Acknowledging the
/// notice that precedes lifting a restriction lifts it. Acknowledging again
/// answers the same: the time it was delivered. `answer` (that time) is
/// recorded with the acknowledgement (see [`crate::answer`]).
pub async fn acknowledge(
    state: &AppState,
    caller: &Actor,
    id: Uuid,
    answer: &Answer<'_, i64>,
) -> ServiceResult<i64> {
    caller.require(&state.policy, Capability::Notify)?;
    let row = state
        .store
        .outbox_message(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("message_not_found"))?;
    if let Some(at) = row.delivered_at {
        return Ok(at);
    }
    flow::acknowledge_answered(state, caller, &row, "notifier", answer).await
}
