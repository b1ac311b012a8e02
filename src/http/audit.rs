//! The auditor's API: query the trail, export it with signed checkpoints,
//! verify it, fetch the public keys, and read one customer's access log.
//! Each handler reads its parameters and calls one use case of
//! [`crate::audit::service`], which checks the capability, records the
//! call (refused or not) and answers. Nothing here changes or deletes an
//! event: other methods on these paths get 405.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::error::{ApiResult, Problem};
use super::extract::parse_id;
use crate::actor::Actor;
use crate::audit::query::RawFilter;
use crate::audit::service::{
    self, AccessLog, AuditPage, ExportQuery, Given, PageQuery, PublicKeySet, Unreadable,
};
use crate::audit::verify::Report;
use crate::state::AppState;

/// The query string's parameters, or that they did not parse.
fn given<T>(q: &Result<Query<T>, QueryRejection>) -> Given<&T> {
    q.as_ref().map(|Query(t)| t).map_err(|_| Unreadable)
}

/// Query the audit trail.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(RawFilter),
    responses((status = 200, description = "A page of audit events, oldest first, and the cursor for the next page", body = AuditPage),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn query_events(
    State(state): State<AppState>,
    caller: Actor,
    q: Result<Query<RawFilter>, QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    Ok(Json(
        service::query_events(&state, &caller, given(&q)).await?,
    ))
}

/// Export events, then checkpoints, as NDJSON. A checkpoint of the chain
/// head is signed for the export and closes it.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit",
    params(ExportQuery),
    responses((status = 200, description = "NDJSON: events, then checkpoints", content_type = "application/x-ndjson"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    caller: Actor,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let export = service::export(&state, &caller, given(&q)).await?;
    Ok(ndjson_download(export))
}

/// An export as an NDJSON attachment, streamed.
pub fn ndjson_download(export: service::AuditExport) -> Response {
    let disposition = format!("attachment; filename=\"{}\"", export.file_name());
    let chunks = export.into_chunks().map(|c| c.map(Bytes::from));
    let mut resp = Body::from_stream(chunks).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// Verify the whole stored trail: hashes, links, no gap, checkpoint
/// signatures (with trusted keys only), the last event against the chain
/// head, and that the trail extends the last checkpoint witnessed outside
/// the database.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "The result of verifying the chain and its checkpoints (`ok` false names the first problem)", body = Report),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn verify_trail(State(state): State<AppState>, caller: Actor) -> ApiResult<Json<Report>> {
    Ok(Json(service::verify_trail(&state, &caller).await?))
}

/// The public keys that verify checkpoints (Ed25519), current first.
#[utoipa::path(get, path = "/v1/audit/public-key", tag = "audit",
    responses((status = 200, description = "The checkpoint-signing public keys, current first", body = PublicKeySet),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn public_key(
    State(state): State<AppState>,
    caller: Actor,
) -> ApiResult<Json<PublicKeySet>> {
    Ok(Json(service::public_keys(&state, &caller).await?))
}

/// Who accessed this customer's data, when and for which purpose.
#[utoipa::path(get, path = "/v1/customers/{id}/access-log", tag = "audit",
    params(("id" = String, Path, description = "Customer id"), PageQuery),
    responses((status = 200, description = "Accesses to this customer's data: when, by whom, for which purpose", body = AccessLog),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn access_log(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<AccessLog>> {
    let id = parse_id(&id)?;
    Ok(Json(
        service::access_log(&state, &caller, id, given(&q)).await?,
    ))
}
