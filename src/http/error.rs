//! The one error type of the API: `application/problem+json` with a stable
//! `code`. Details name fields and rules, never values; 5xx bodies are
//! generic, the cause is logged with the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    /// Stable, machine-readable reason.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The field the problem concerns, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: Option<String>,
    pub field: Option<String>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str) -> Self {
        ApiError {
            status,
            code,
            detail: None,
            field: None,
            retry_after: None,
        }
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }
    pub fn bad_request(code: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code)
    }
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::bad_request("invalid_request").detail(detail)
    }
    pub fn forbidden(code: &'static str) -> Self {
        Self::new(StatusCode::FORBIDDEN, code)
    }
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated")
    }
    pub fn not_found(code: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code)
    }
    pub fn conflict(code: &'static str) -> Self {
        Self::new(StatusCode::CONFLICT, code)
    }
    pub fn too_many(code: &'static str, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, code);
        e.retry_after = Some(retry_after);
        e
    }
    /// The audit trail (or the database behind it) cannot take the event.
    pub fn unavailable() -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        e.retry_after = Some(1);
        e
    }
    /// An unexpected failure. The cause is logged; the body says nothing.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal")
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "database error");
        ApiError::unavailable()
    }
}

impl From<crate::audit::CommitError> for ApiError {
    fn from(e: crate::audit::CommitError) -> Self {
        match e {
            crate::audit::CommitError::Conflict(_) => ApiError::conflict("conflict"),
            crate::audit::CommitError::NotFound => ApiError::not_found("not_found"),
            crate::audit::CommitError::Unavailable => ApiError::unavailable(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let server_side = self.status.is_server_error();
        let body = Problem {
            type_: format!("https://pii-vault.dev/problems/{}", self.code),
            title: self.title().to_owned(),
            status: self.status.as_u16(),
            code: self.code.to_owned(),
            detail: if server_side { None } else { self.detail },
            field: if server_side { None } else { self.field },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
