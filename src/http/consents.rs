//! Consent over HTTP: parse, call `crate::customers::consents`, answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::{ApiResult, Problem};
use super::extract::{Body, parse_id};
use super::idempotency::{Keyed, Reply};
use crate::actor::Actor;
use crate::customers::consents::{self, ConsentEventView, ConsentRequest, Consents};
use crate::state::AppState;

/// Record a grant or a withdrawal.
#[utoipa::path(post, path = "/v1/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path)), request_body = ConsentRequest,
    responses((status = 201, description = "The consent event as recorded", body = ConsentEventView),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn record_consent(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    keyed: Keyed,
    Body(input): Body<ConsentRequest>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let reply = |view: &ConsentEventView| Reply::json(StatusCode::CREATED, view);
    let view = consents::record(&state, &actor, id, &input, &keyed.answer(&state, reply)).await?;
    Ok(reply(&view)?.into_response())
}

/// Current consent per purpose and the full ledger.
#[utoipa::path(get, path = "/v1/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path)),
    responses((status = 200, description = "Current consent per purpose and every event of the ledger", body = Consents),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_consents(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Consents>> {
    let id = parse_id(&id)?;
    Ok(Json(consents::list(&state, &actor, id).await?))
}
