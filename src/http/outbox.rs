//! The outbox for a notifier client over HTTP: see `requests::notify`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiResult, Problem};
use super::extract::parse_id;
use super::idempotency::{Keyed, Reply};
use crate::actor::Actor;
use crate::clock::rfc3339;
use crate::requests::notify;
use crate::requests::outbox::Delivery;
use crate::state::AppState;

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
    responses((status = 200, description = "Messages waiting for delivery, oldest first", body = OutboxList),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_outbox(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<OutboxQuery>,
) -> ApiResult<Json<OutboxList>> {
    Ok(Json(OutboxList {
        messages: notify::pending(&state, &caller, q.limit).await?,
    }))
}

/// Acknowledge a delivered message: its payload is deleted. Acknowledging
/// the notice that precedes lifting a restriction lifts it. Acknowledging
/// again answers the same.
#[utoipa::path(post, path = "/v1/outbox/{id}/ack", tag = "outbox",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, description = "The message is marked as delivered", body = Acknowledged),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn ack(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    keyed: Keyed,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let reply = |at: &i64| {
        let body = Acknowledged {
            id,
            delivered_at: rfc3339(*at),
        };
        Reply::json(StatusCode::OK, &body)
    };
    let at = notify::acknowledge(&state, &caller, id, &keyed.answer(&state, reply)).await?;
    Ok(reply(&at)?.into_response())
}
