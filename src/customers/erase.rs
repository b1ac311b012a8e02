//! Erasing a customer outright (`DELETE /v1/customers/{id}`, capability
//! `erase`) and exporting one for the privacy team (`requests.process`):
//! the staff side of Art. 17 and Art. 15/20, beside the request flow.

use serde_json::Value;
use uuid::Uuid;

use crate::actor::Actor;
use crate::audit::{Action, Decision};
use crate::error::{ServiceError, ServiceResult};
use crate::policy::Capability;
use crate::requests::erasure::{self, ErasureReceipt, ErasureStatus};
use crate::requests::export::build_package;
use crate::state::AppState;
use crate::store::Unit;

/// Erases the customer and returns the receipt. Idempotent: an erased
/// customer's receipt is returned again (audited as `already_erased`).
pub async fn erase(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<ErasureReceipt> {
    erase_if(state, actor, id, None).await
}

/// [`erase`] with `If-Match`: begun only while the customer's data is at
/// a version the precondition names (checked in the erasure's first
/// transaction); 412 `precondition_failed` otherwise.
pub async fn erase_if(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    precondition: Option<&crate::customers::Precondition>,
) -> ServiceResult<ErasureReceipt> {
    actor.require(&state.policy, Capability::Erase)?;
    if let Some(done) = erasure::receipt_of(state.store.as_ref(), id).await?
        && (done.completed_at.is_some() || done.status == ErasureStatus::PartiallyErased)
    {
        let ev = actor
            .event(Action::CustomerErase, Decision::AlreadyErased)
            .customer(id)
            .reason("receipt_id", &done.receipt_id.to_string());
        state.sequencer.commit(Unit::event(ev)).await?;
        return Ok(done);
    }
    let expect = precondition.and_then(crate::customers::Precondition::versions);
    match erasure::erase_if(state, id, actor, None, expect).await {
        Err(e) if e.code == "customer_not_found" => {
            let ev = actor
                .event(Action::CustomerErase, Decision::NotFound)
                .customer(id);
            state.sequencer.commit(Unit::event(ev)).await?;
            Err(e.audited())
        }
        other => other,
    }
}

/// The export package of a customer (`access` or `portability`), for the
/// privacy team to hand over.
pub async fn export(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    kind: Option<&str>,
) -> ServiceResult<Value> {
    actor.require(&state.policy, Capability::RequestsProcess)?;
    let kind = kind.unwrap_or("access");
    if !matches!(kind, "access" | "portability") {
        return Err(
            ServiceError::invalid_request("kind must be access or portability").field("kind"),
        );
    }
    let now = state.clock.now_micros();
    let package = match build_package(state, id, kind, now).await {
        Ok(p) => p,
        Err(e) if e.code == "customer_not_found" => {
            let ev = actor
                .event(Action::CustomerExport, Decision::NotFound)
                .customer(id);
            state.sequencer.commit(Unit::event(ev)).await?;
            return Err(e.audited());
        }
        Err(e) => return Err(e),
    };
    let ev = actor
        .event(Action::CustomerExport, Decision::Allowed)
        .customer(id)
        .fields(package_fields(&package))
        .reason("kind", kind);
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(package)
}

/// The field names an export package holds values of.
pub fn package_fields(package: &Value) -> Vec<String> {
    package["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|v| v["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
