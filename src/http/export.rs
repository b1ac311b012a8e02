//! The export package's JSON Schema (public) and the staff path to a
//! customer's export: `GET /v1/customers/{id}/export?kind=access|portability`
//! (capability `requests.process`; the customer's own path is a completed
//! access or portability request, `GET /v1/requests/{id}/export`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiResult, Problem};
use super::extract::parse_id;
use crate::actor::Actor;
use crate::requests::export::SCHEMA;
use crate::state::AppState;

/// The JSON Schema (draft 2020-12) of export packages.
#[utoipa::path(get, path = "/v1/schemas/export.json", tag = "requests",
    responses((status = 200, description = "JSON Schema of the export package",
        body = Object, content_type = "application/schema+json")))]
pub async fn export_schema() -> Response {
    ([(header::CONTENT_TYPE, "application/schema+json")], SCHEMA).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `access` (default) or `portability`.
    pub kind: Option<String>,
}

/// A customer's export package (staff path; audited as `customer.export`).
#[utoipa::path(get, path = "/v1/customers/{id}/export", tag = "requests",
    params(("id" = String, Path, description = "Customer id"), ExportQuery),
    responses((status = 200, description = "The export package (see /v1/schemas/export.json)", body = Object),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn export_customer(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_id(&id)?;
    Ok(Json(
        crate::customers::erase::export(&state, &caller, id, q.kind.as_deref()).await?,
    ))
}
