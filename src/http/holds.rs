//! Legal holds (capability `legal_hold`): place, list, release.
//! See `requests::holds` for what a hold does.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiResult, Problem};
use super::extract::{Body, parse_id};
use super::idempotency::{Keyed, Reply};
use crate::actor::Actor;
use crate::requests::holds::{self, HoldView, NewHold, Released};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoldQuery {
    /// A customer's holds (active and released); without it, every active hold.
    pub customer_id: Option<String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HoldList {
    pub holds: Vec<HoldView>,
}

/// Place a legal hold on some of a customer's fields.
#[utoipa::path(post, path = "/v1/legal-holds", tag = "legal holds",
    request_body = NewHold,
    responses((status = 201, description = "The hold as placed", body = HoldView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_hold(
    State(state): State<AppState>,
    caller: Actor,
    keyed: Keyed,
    Body(input): Body<NewHold>,
) -> ApiResult<Response> {
    let reply = |view: &HoldView| Reply::json(StatusCode::CREATED, view);
    let view = holds::create(&state, &caller, &input, &keyed.answer(&state, reply)).await?;
    Ok(reply(&view)?.into_response())
}

/// List a customer's holds, or every active hold (by review date).
#[utoipa::path(get, path = "/v1/legal-holds", tag = "legal holds",
    params(HoldQuery),
    responses((status = 200, description = "The holds, by review date", body = HoldList),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_holds(
    State(state): State<AppState>,
    caller: Actor,
    Query(q): Query<HoldQuery>,
) -> ApiResult<Json<HoldList>> {
    let customer: Option<Uuid> = match q.customer_id.as_deref() {
        Some(c) => Some(parse_id(c)?),
        None => None,
    };
    let holds = holds::list(&state, &caller, customer).await?;
    Ok(Json(HoldList { holds }))
}

/// Release a hold; a pending erasure of the customer finishes at once.
#[utoipa::path(delete, path = "/v1/legal-holds/{id}", tag = "legal holds",
    params(("id" = String, Path, description = "Hold id")),
    responses((status = 200, description = "The hold is released", body = Released),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn release_hold(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Released>> {
    let id = parse_id(&id)?;
    Ok(Json(holds::release(&state, &caller, id).await?))
}
