//! The outbox for a notifier client (capability `notify`): read the
//! messages waiting for delivery, acknowledge each once delivered. Reading
//! opens the sealed payloads (addresses, codes) and is audited before the
//! answer leaves; an acknowledgement deletes the payload.

use crate::audit::{Action, Decision};
use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::parse_id;
use crate::actor::Actor;
use crate::clock::rfc3339;
use crate::crypto::Dek;
use crate::policy::Capability;
use crate::requests::background::{customer_dek, dropped_event};
use crate::requests::flow;
use crate::requests::outbox::{Delivery, OpenError, open_message};
use crate::state::AppState;
use crate::store::RequestMutation as RM;
use crate::store::{Mutation, Unit};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// At most this many messages (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutboxList {
    /// Oldest first: verification codes, request outcomes, the notice
    /// before a restriction is lifted, notices to recipients.
    pub messages: Vec<Delivery>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Acknowledged {
    pub id: Uuid,
    pub delivered_at: String,
}

/// Messages waiting for delivery.
#[utoipa::path(get, path = "/v1/outbox", tag = "outbox",
    params(OutboxQuery),
    responses((status = 200, body = OutboxList),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_outbox(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<OutboxQuery>,
) -> ApiResult<Json<OutboxList>> {
    caller.require(&state.policy, Capability::Notify)?;
    let limit = q.limit.unwrap_or(100);
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
        let dek = customer_dek(&state, row, &mut deks).await;
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
                events.push(dropped_event(&caller, row));
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
            crate::audit::CommitError::NotFound | crate::audit::CommitError::Conflict(_) => {
                ServiceError::conflict("outbox_changed").detail("the outbox changed; read it again")
            }
            other => other.into(),
        })?;
    Ok(Json(OutboxList { messages }))
}

/// Acknowledge a delivered message: its payload is deleted. Acknowledging
/// the notice that precedes lifting a restriction lifts it. Acknowledging
/// again answers the same.
#[utoipa::path(post, path = "/v1/outbox/{id}/ack", tag = "outbox",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = Acknowledged),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn ack(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Acknowledged>> {
    caller.require(&state.policy, Capability::Notify)?;
    let id = parse_id(&id)?;
    let row = state
        .store
        .outbox_message(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("message_not_found"))?;
    if let Some(at) = row.delivered_at {
        return Ok(Json(Acknowledged {
            id,
            delivered_at: rfc3339(at),
        }));
    }
    flow::acknowledge(&state, &caller, &row, "notifier").await?;
    Ok(Json(Acknowledged {
        id,
        delivered_at: rfc3339(state.clock.now_micros()),
    }))
}
