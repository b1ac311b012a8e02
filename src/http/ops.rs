//! Operations: health, readiness, metrics, the effective policy and the
//! record of processing activities (GDPR Art. 30).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiResult, Problem};
use crate::actor::Actor;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<serde_json::Value>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        checks: None,
    })
}

/// The database answers, the audit sequencer takes events, keys are loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store.ping().await.is_ok();
    let audit = database && state.store.audit_head().await.is_ok();
    let keys = state
        .keys
        .keyring()
        .versions()
        .contains(&state.keys.keyring().active_version());
    let ok = database && audit && keys;
    let body = Health {
        status: if ok { "ready" } else { "not_ready" }.into(),
        checks: Some(serde_json::json!({"database": database, "audit": audit, "keys": keys})),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The effective policy (purposes, fields, roles). Holds no secrets.
#[utoipa::path(get, path = "/v1/policy", tag = "operations",
    responses((status = 200, description = "The loaded policy"),
        (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn policy(State(state): State<AppState>, _caller: Actor) -> ApiResult<Response> {
    Ok(Json(state.policy.as_ref()).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessingActivity {
    pub purpose: String,
    pub description: String,
    pub legal_basis: String,
    pub retention: String,
    /// Data categories that may be collected for this purpose.
    pub data_categories: Vec<String>,
    pub sensitive_data: bool,
    /// Roles marked as recipients that may read for this purpose.
    pub recipients: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProcessingRecord {
    pub controller: serde_json::Value,
    pub data_subjects: Vec<String>,
    pub activities: Vec<ProcessingActivity>,
    pub security_measures: Vec<String>,
}

/// The record of processing activities, built from the policy.
#[utoipa::path(get, path = "/v1/processing-activities", tag = "operations",
    responses((status = 200, body = ProcessingRecord), (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn processing_activities(
    State(state): State<AppState>,
    _caller: Actor,
) -> ApiResult<Json<ProcessingRecord>> {
    let p = &state.policy;
    let activities = p
        .purposes
        .values()
        .map(|purpose| {
            let fields: Vec<_> = p
                .fields
                .values()
                .filter(|f| {
                    f.purposes.iter().any(|fp| {
                        crate::policy::covers(fp, &purpose.name)
                            || crate::policy::covers(&purpose.name, fp)
                    })
                })
                .collect();
            ProcessingActivity {
                purpose: purpose.name.clone(),
                description: purpose.description.clone(),
                legal_basis: purpose.basis.as_str().to_owned(),
                retention: purpose.retention.to_string(),
                data_categories: fields.iter().map(|f| f.category.clone()).collect(),
                sensitive_data: fields.iter().any(|f| f.sensitive),
                recipients: p
                    .roles
                    .values()
                    .filter(|r| {
                        r.recipient
                            && r.read
                                .iter()
                                .any(|g| crate::policy::covers(g, &purpose.name))
                    })
                    .map(|r| r.name.clone())
                    .collect(),
            }
        })
        .collect();
    Ok(Json(ProcessingRecord {
        controller: serde_json::to_value(&p.controller).unwrap_or_default(),
        data_subjects: vec!["customers of the controller".into()],
        activities,
        security_measures: vec![
            "AES-256-GCM encryption of every value under a per-customer data key".into(),
            "data keys wrapped by versioned key-encryption keys under a root key kept outside the database".into(),
            "purpose-bound access decision on every read".into(),
            "hash-chained, signed audit trail of every access".into(),
            "blind indexes (HMAC-SHA256) instead of plaintext for lookups".into(),
        ],
    }))
}
