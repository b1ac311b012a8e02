//! Customers over HTTP: parse, call the service in `crate::customers`, answer.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{Body, PurposeQuery, parse_id};
use super::idempotency::{self, Reply};
use crate::actor::Actor;
use crate::customers::{
    self, CreateCustomer, CustomerStored, FieldValue, Precondition, Profile, SearchRequest,
    SearchResult, UpdateCustomer,
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
    keyed: idempotency::Keyed,
    Body(input): Body<CreateCustomer>,
) -> ApiResult<Response> {
    let reply = |stored: &CustomerStored| {
        Reply::json(StatusCode::CREATED, stored)
            .map(|r| r.location(&format!("/v1/customers/{}", stored.id)))
    };
    let answer = keyed.answer(&state, reply);
    let stored = customers::create(&state, &actor, q.purpose.as_deref(), &input, &answer).await?;
    Ok(reply(&stored)?.into_response())
}

/// The answer to a batch of new customers: one result per customer, in
/// the order they were sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchCreated {
    pub results: Vec<BatchItem>,
}

/// One customer of a batch: stored (`status` 201 and its `id`) or not
/// (`status` and `problem` as `POST /v1/customers` would have answered).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// Its position in the request (from 0).
    pub index: usize,
    /// 201 when stored, else the status of `problem`.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// Collect many customers in one call (at most 1,000): each is checked,
/// encrypted, stored and audited exactly as `POST /v1/customers` would, on
/// its own (one refused customer does not keep the others from being
/// stored). The caller's right to create for the purpose is checked once.
/// Under an `Idempotency-Key` the new customers' ids are derived from the
/// caller, the key and the request (UUIDv8): a retry after a crash that
/// stored them but not the answer answers them instead of storing them
/// twice.
#[utoipa::path(post, path = "/v1/customers/batch", tag = "customers",
    params(PurposeQuery),
    request_body(content = Vec<CreateCustomer>, description = "1 to 1,000 customers, each as the body of `POST /v1/customers`"),
    responses(
        (status = 200, description = "One result per customer, in order: its id (201) or its problem", body = BatchCreated),
        (status = 400, body = Problem, description = "Not a JSON array of customers, an empty one, or no purpose"),
        (status = 401, body = Problem, description = "No valid token"),
        (status = 403, body = Problem, description = "The role may not collect for this purpose"),
        (status = 413, body = Problem, description = "More than 1,000 customers, or a body over `max_body_bytes`"),
        (status = 415, body = Problem, description = "Not application/json"),
        (status = 503, body = Problem, description = "The audit trail could not store any customer")),
    security(("bearer" = [])))]
pub async fn create_customers(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<PurposeQuery>,
    keyed: idempotency::Keyed,
    Body(inputs): Body<Vec<CreateCustomer>>,
) -> ApiResult<Json<BatchCreated>> {
    let ids = keyed.new_ids();
    let results =
        customers::create_batch(&state, &actor, q.purpose.as_deref(), &inputs, &ids).await?;
    let results = results
        .into_iter()
        .enumerate()
        .map(|(index, r)| match r {
            Ok(stored) => BatchItem {
                index,
                status: StatusCode::CREATED.as_u16(),
                id: Some(stored.id),
                problem: None,
            },
            Err(e) => {
                let problem = Problem::of(&e);
                BatchItem {
                    index,
                    status: problem.status,
                    id: None,
                    problem: Some(problem),
                }
            }
        })
        .collect();
    Ok(Json(BatchCreated { results }))
}

/// The profile as the caller may see it for the purpose.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Customer id"), PurposeQuery),
    responses((status = 200, body = Profile, description = "The profile for the purpose",
            headers(("ETag" = String, description = "Strong ETag: the customer's data version"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_customer(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
) -> ApiResult<Response> {
    actor.role(&state.policy)?;
    let id = parse_id(&id)?;
    let profile = customers::read(&state, &actor, id, q.purpose.as_deref()).await?;
    Ok(with_etag(profile.version, Json(profile)))
}

/// A strong `ETag` from the customer's data version (a counter, never a
/// digest of values).
pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

fn with_etag(version: i64, body: impl IntoResponse) -> Response {
    let mut resp = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// `If-Match`: absent, `*`, or a list of our strong tags. A tag that is
/// not ours (or a weak one: `If-Match` compares strongly) matches nothing.
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<Precondition>> {
    let values: Vec<&HeaderValue> = headers.get_all(header::IF_MATCH).iter().collect();
    if values.is_empty() {
        return Ok(None);
    }
    let mut versions = Vec::new();
    for v in values {
        let text = v.to_str().map_err(|_| {
            ServiceError::invalid_request("If-Match must be `*` or a list of ETags")
        })?;
        for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                return Ok(Some(Precondition::Any));
            }
            if let Some(n) = tag
                .strip_prefix("\"v")
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|n| n.parse::<i64>().ok())
            {
                versions.push(n);
            }
        }
    }
    Ok(Some(Precondition::Versions(versions)))
}

/// One field's value for the purpose, or 403 with the reason it is withheld.
#[utoipa::path(get, path = "/v1/customers/{id}/fields/{field}", tag = "customers",
    params(("id" = String, Path), ("field" = String, Path), PurposeQuery),
    responses((status = 200, body = FieldValue, description = "The value",
            headers(("ETag" = String, description = "Strong ETag: the customer's data version"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_field(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, field)): Path<(String, String)>,
    Query(q): Query<PurposeQuery>,
) -> ApiResult<Response> {
    actor.role(&state.policy)?;
    let id = parse_id(&id)?;
    let value = customers::read_field(&state, &actor, id, &field, q.purpose.as_deref()).await?;
    Ok(with_etag(value.version, Json(value)))
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
    params(("id" = String, Path), PurposeQuery,
        ("If-Match" = Option<String>, Header, description = "`*` or an ETag of a profile read: 412 when the data changed since")),
    request_body = UpdateCustomer,
    responses((status = 200, body = CustomerStored, description = "The stored fields"),
        (status = 412, body = Problem, description = "`precondition_failed`: the data changed since the ETag in If-Match"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_customer(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    Query(q): Query<PurposeQuery>,
    headers: HeaderMap,
    Body(input): Body<UpdateCustomer>,
) -> ApiResult<Json<CustomerStored>> {
    actor.role(&state.policy)?;
    let id = parse_id(&id)?;
    let precondition = if_match(&headers)?;
    Ok(Json(
        customers::update_if(
            &state,
            &actor,
            id,
            q.purpose.as_deref(),
            &input,
            precondition.as_ref(),
        )
        .await?,
    ))
}
