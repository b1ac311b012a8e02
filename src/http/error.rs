//! Service errors as the API answers them: `application/problem+json` with
//! a stable `code`. Details name fields and rules, never values; 5xx bodies
//! are generic, the cause is logged with the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::error::{ErrorKind, ServiceError};

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
    /// `urn:uuid:<request id>` of the request that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The field the problem concerns, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The OAuth 2.0 error (RFC 6749 §5.2, RFC 6750 §3.1) on token endpoint
    /// errors, refused bearer tokens and refusals of the caller's role:
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type`, `invalid_token`, `insufficient_scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `WWW-Authenticate` value of a 401, or of a 403 for want of
/// privileges (RFC 6750 §3, RFC 6749 §5.2); `None` for other answers.
pub fn challenge(status: StatusCode, e: &ServiceError) -> Option<HeaderValue> {
    match (status, e.oauth_error) {
        (StatusCode::UNAUTHORIZED, _) if e.basic_challenge => Some(HeaderValue::from_static(
            "Basic realm=\"pii-vault\", charset=\"UTF-8\"",
        )),
        (StatusCode::UNAUTHORIZED, Some("invalid_token")) => Some(HeaderValue::from_static(
            "Bearer realm=\"pii-vault\", error=\"invalid_token\"",
        )),
        (StatusCode::UNAUTHORIZED, _) => {
            Some(HeaderValue::from_static("Bearer realm=\"pii-vault\""))
        }
        (StatusCode::FORBIDDEN, Some("insufficient_scope")) => Some(HeaderValue::from_static(
            "Bearer realm=\"pii-vault\", error=\"insufficient_scope\"",
        )),
        _ => None,
    }
}

/// The HTTP status of a service error: the one place the kinds meet HTTP.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The kind an HTTP status from outside the services stands for (a
/// framework rejection being rewritten into our shape).
pub fn kind_of(status: StatusCode) -> ErrorKind {
    ErrorKind::ALL
        .iter()
        .copied()
        .find(|k| status_of(*k) == status)
        .unwrap_or(if status.is_server_error() {
            ErrorKind::Internal
        } else {
            ErrorKind::BadRequest
        })
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = status_of(self.kind);
        let server_side = self.kind.is_server_side();
        let body = Problem {
            type_: format!("{}{}", super::problems::TYPE_BASE, self.code),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: self.code.to_owned(),
            detail: if server_side {
                None
            } else {
                self.detail.clone()
            },
            instance: None,
            field: if server_side {
                None
            } else {
                self.field.clone()
            },
            error: self.oauth_error.map(str::to_owned),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(challenge) = challenge(status, &self) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        resp.extensions_mut()
            .insert(super::refusals::ErrorCode(self.code));
        if self.audited {
            resp.extensions_mut().insert(super::refusals::Audited);
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ServiceError>;
