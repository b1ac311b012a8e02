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
use crate::audit::checkpoint;
use crate::requests::erasure::TombstoneLog;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<serde_json::Value>,
    /// What is wrong, one line per failed check (no personal data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        checks: None,
        problems: Vec::new(),
    })
}

/// The database answers, the audit sequencer takes events, keys are
/// loaded, the audit trail extends the last checkpoint witnessed outside
/// the database, and the tombstone log verifies. Not ready: 503, a problem
/// document (`code` `not_ready`) that also carries `checks` and `problems`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready: every check passes", body = Health),
        (status = 503, description = "Not ready: a problem document with `checks` and `problems`", body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store.ping().await.is_ok();
    let audit = database && state.store.audit_head().await.is_ok();
    let keys = state
        .keys
        .keyring()
        .versions()
        .contains(&state.keys.keyring().active_version());
    let mut problems = Vec::new();
    let witness = if audit {
        match checkpoint::witness_state(&state.tamper, state.store.as_ref()).await {
            Ok(w) => {
                state.tamper.health().set_witness(w.problem());
                w.problem()
            }
            Err(_) => Some("the audit trail cannot be compared with the witness".into()),
        }
    } else {
        None
    };
    if let Some(w) = &witness {
        problems.push(format!("audit witness: {w}"));
    }
    let tombstones = match state.tamper.health().tombstones() {
        Some(p) => Some(p),
        None => {
            TombstoneLog::new(state.tamper.clone())
                .check_tail(state.store.as_ref())
                .await
        }
    };
    if let Some(t) = &tombstones {
        problems.push(format!(
            "tombstone log: {t} (nothing in it is acted on; no customer data is served)"
        ));
    }
    let checks = serde_json::json!({
        "database": database,
        "audit": audit,
        "keys": keys,
        "audit_witness": witness.is_none(),
        "tombstones": tombstones.is_none(),
    });
    if database && audit && keys && problems.is_empty() {
        let body = Health {
            status: "ready".into(),
            checks: Some(checks),
            problems,
        };
        return (StatusCode::OK, Json(body)).into_response();
    }
    // A problem document (so the problem middleware keeps it), with the
    // checks and what is wrong: nothing personal, nothing secret.
    let detail = if problems.is_empty() {
        "a readiness check failed".to_owned()
    } else {
        problems.join("; ")
    };
    let body = serde_json::json!({
        "type": "/problems#not_ready",
        "title": "Service Unavailable",
        "status": 503,
        "code": "not_ready",
        "detail": detail,
        "checks": checks,
        "problems": problems,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
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
    responses((status = 200, description = "The loaded policy", body = Object),
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
    /// Some field is CCPA sensitive personal information.
    pub sensitive_data: bool,
    /// The GDPR Art. 9 special-category fields among them, each with the
    /// Art. 9(2) condition this purpose relies on.
    pub special_categories: Vec<SpecialCategoryUse>,
    /// Roles marked as recipients that may read for this purpose.
    pub recipients: Vec<String>,
}

/// A special-category field of a processing activity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SpecialCategoryUse {
    pub field: String,
    pub category: String,
    /// The Art. 9(2) condition relied on (`explicit_consent`,
    /// `legal_claims`, …); `null` when the purpose declares none, so the
    /// field is neither collected nor served for it.
    pub condition: Option<String>,
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
    responses((status = 200, description = "The record of processing activities (GDPR Art. 30)", body = ProcessingRecord), (status = 401, body = Problem)),
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
                special_categories: fields
                    .iter()
                    .filter(|f| f.special_category)
                    .map(|f| SpecialCategoryUse {
                        field: f.name.clone(),
                        category: f.category.clone(),
                        condition: purpose
                            .special_category_condition
                            .map(|c| c.as_str().to_owned()),
                    })
                    .collect(),
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
