//! `DELETE /v1/customers/{id}`: erase a customer now (capability `erase`).
//!
//! Runs the same resumable job as a completed erasure request
//! (`requests::erasure`) and answers with its receipt. Idempotent: erasing
//! an erased (or partially erased) customer returns the stored receipt
//! again, 200; an unknown id is 404 `customer_not_found`.

use crate::audit::{Action, Decision};
use axum::Json;
use axum::extract::{Path, State};

use super::error::{ApiResult, Problem};
use super::extract::parse_id;
use crate::actor::Actor;
use crate::policy::Capability;
use crate::requests::erasure::{self, ErasureReceipt};
use crate::state::AppState;
use crate::store::Unit;

/// Erase a customer now; returns the erasure receipt.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, body = ErasureReceipt),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn erase_customer(
    State(state): State<AppState>,
    caller: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<ErasureReceipt>> {
    caller.require(&state.policy, Capability::Erase)?;
    let id = parse_id(&id)?;
    // Already erased (or partially erased): the stored receipt again.
    if let Some(done) = erasure::receipt_of(state.store.as_ref(), id).await?
        && (done.completed_at.is_some() || done.status == erasure::ErasureStatus::PartiallyErased)
    {
        state
            .sequencer
            .commit(Unit::event(
                caller
                    .event(Action::CustomerErase, Decision::AlreadyErased)
                    .customer(id)
                    .reason("receipt_id", &done.receipt_id.to_string()),
            ))
            .await?;
        return Ok(Json(done));
    }
    match erasure::erase(&state, id, &caller, None).await {
        Ok(receipt) => Ok(Json(receipt)),
        Err(e) if e.code == "customer_not_found" => {
            state
                .sequencer
                .commit(Unit::event(
                    caller
                        .event(Action::CustomerErase, Decision::NotFound)
                        .customer(id),
                ))
                .await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}
