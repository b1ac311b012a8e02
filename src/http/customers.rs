//! Customers over HTTP: parse, call the service in `crate::customers`, answer.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiResult, Problem};
use super::extract::{Body, PurposeQuery, parse_id};
use super::idempotency::{self, Begin};
use crate::actor::Actor;
use crate::customers::{
    self, CreateCustomer, CustomerStored, FieldValue, Profile, SearchRequest, SearchResult,
    UpdateCustomer,
};
use crate::state::AppState;

/// Collect a new customer.
#[utoipa::path(post, path = "/v1/customers", tag = "customers",
    params(PurposeQuery),
    request_body = CreateCustomer,
    responses(
        (status = 201, description = "The customer is stored (values are not echoed)", body = CustomerStored),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_customer(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<PurposeQuery>,
    headers: HeaderMap,
    Body(input): Body<CreateCustomer>,
) -> ApiResult<Response> {
    let idem =
        match idempotency::begin(&state, &actor, &headers, "POST /v1/customers", &input).await? {
            Begin::Replay(resp) => return Ok(resp),
            Begin::Proceed(idem) => idem,
        };
    let created = customers::create(
        &state,
        &actor,
        q.purpose.as_deref(),
        &input,
        |stored, now| {
            let body =
                serde_json::to_string(stored).map_err(crate::error::ServiceError::internal)?;
            Ok(idem.record(&state, StatusCode::CREATED, &body, Some(stored.id), now))
        },
    )
    .await;
    let stored = match created {
        Ok(s) => s,
        Err(e) if e.code == "external_id_taken" => {
            if let Some(resp) = idempotency::replay_after_conflict(&state, &idem).await? {
                return Ok(resp);
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let id = stored.id;
    let mut resp = (StatusCode::CREATED, Json(stored)).into_response();
    if let Ok(loc) = format!("/v1/customers/{id}").parse() {
        resp.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    Ok(resp)
}

/// The profile as the caller may see it for the purpose.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id"), PurposeQuery),
    responses((status = 200, description = "The profile as the caller may see it for the purpose, and what is withheld and why", body = Profile),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_customer(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
) -> ApiResult<Json<Profile>> {
    actor.role(&state.policy)?;
    let id = parse_id(&id)?;
    Ok(Json(
        customers::read(&state, &actor, id, q.purpose.as_deref()).await?,
    ))
}

/// One field's value for the purpose, or 403 with the reason it is withheld.
#[utoipa::path(get, path = "/v1/customers/{id}/fields/{field}", tag = "customers",
    params(("id" = String, Path), ("field" = String, Path), PurposeQuery),
    responses((status = 200, description = "The field's value for the purpose", body = FieldValue),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_field(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, field)): Path<(String, String)>,
    Query(q): Query<PurposeQuery>,
) -> ApiResult<Json<FieldValue>> {
    actor.role(&state.policy)?;
    let id = parse_id(&id)?;
    Ok(Json(
        customers::read_field(&state, &actor, id, &field, q.purpose.as_deref()).await?,
    ))
}

/// Exact lookup by a searchable field (through its blind index).
#[utoipa::path(post, path = "/v1/customers/search", tag = "customers",
    params(PurposeQuery), request_body = SearchRequest,
    responses((status = 200, description = "The customers whose field matches, each as the caller may see it for the purpose", body = SearchResult),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<PurposeQuery>,
    Body(input): Body<SearchRequest>,
) -> ApiResult<Json<SearchResult>> {
    Ok(Json(
        customers::search(&state, &actor, q.purpose.as_deref(), &input).await?,
    ))
}

/// Rectify or extend a profile. The old value is gone for good.
#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path), PurposeQuery), request_body = UpdateCustomer,
    responses((status = 200, description = "The stored fields after the change (values are not echoed)", body = CustomerStored),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_customer(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
    Body(input): Body<UpdateCustomer>,
) -> ApiResult<Json<CustomerStored>> {
    actor.role(&state.policy)?;
    let id = parse_id(&id)?;
    Ok(Json(
        customers::update(&state, &actor, id, q.purpose.as_deref(), &input).await?,
    ))
}
