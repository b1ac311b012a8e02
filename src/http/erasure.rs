//! `DELETE /v1/customers/{id}`: erase a customer now (capability `erase`).
//!
//! Runs the same resumable job as a completed erasure request
//! (`requests::erasure`) and answers with its receipt. Idempotent: erasing
//! an erased (or partially erased) customer returns the stored receipt
//! again, 200; an unknown id is 404 `customer_not_found`.

use axum::Json;
use axum::extract::{Path, State};

use super::error::{ApiResult, Problem};
use super::extract::parse_id;
use crate::actor::Actor;
use crate::requests::erasure::ErasureReceipt;
use crate::state::AppState;

/// Erase a customer now; returns the erasure receipt.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id"),
        ("If-Match" = Option<String>, Header, description = "`*` or an ETag of a profile read: 412 when the data changed since")),
    responses((status = 200, body = ErasureReceipt, description = "The erasure receipt"),
        (status = 412, body = Problem, description = "`precondition_failed`: the data changed since the ETag in If-Match"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn erase_customer(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Json<ErasureReceipt>> {
    let id = parse_id(&id)?;
    let precondition = super::customers::if_match(&headers)?;
    Ok(Json(
        crate::customers::erase::erase_if(&state, &caller, id, precondition.as_ref()).await?,
    ))
}
