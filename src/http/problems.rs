//! Every error answer is `application/problem+json`, and the OpenAPI
//! document says so.
//!
//! Handlers answer errors with [`ServiceError`]; what axum and tower answer on
//! their own (a query string that does not parse, a path that does not
//! match, a timeout) is a plain-text or empty body. [`normalize`] replaces
//! such bodies with a problem document carrying a generic detail, so no
//! framework message (which may quote the request) reaches the caller.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ErrorKind, ServiceError};

/// Where problem `type` URIs point: a page of the vault itself (a relative
/// reference, RFC 9457 §3.1.1), one anchor per code.
pub const TYPE_BASE: &str = "/problems#";

/// The stable `code`s the API answers with (the withheld reasons of a
/// field read among them).
pub const CODES: &[&str] = &[
    "already_extended",
    "already_verified",
    "capability_required",
    "changes_required",
    "code_expired",
    "conflict",
    "consent_required",
    "customer_confirmation_required",
    "customer_not_found",
    "expired",
    "export_not_ready",
    "extension_too_long",
    "extension_too_short",
    "external_id_taken",
    "field_not_found",
    "field_not_searchable",
    "hold_not_found",
    "hold_released",
    "idempotency_key_in_use",
    "idempotency_key_reused",
    "identifier_required",
    "internal",
    "invalid_code",
    "invalid_credentials",
    "invalid_filter",
    "invalid_id",
    "invalid_reason",
    "invalid_request",
    "invalid_value",
    "key_version_active",
    "key_version_in_use",
    "key_version_not_found",
    "key_version_recently_active",
    "key_version_retired",
    "lift_not_allowed",
    "limited",
    "message_not_found",
    "method_not_allowed",
    "no_consent",
    "not_an_export",
    "not_approved",
    "not_awaiting_approval",
    "not_collected_for_purpose",
    "not_found",
    "not_ready",
    "not_verified",
    "not_verifying",
    "objected",
    "objection_not_applicable",
    "opted_out",
    "outbox_changed",
    "past_due",
    "payload_too_large",
    "precondition_failed",
    "purpose_not_allowed_for_field",
    "purpose_not_permitted",
    "purpose_required",
    "rate_limited",
    "reason_required",
    "regulation_required",
    "request_changed",
    "request_closed",
    "request_not_found",
    "request_unmatched",
    "restricted",
    "role_unknown",
    "root_key_changed",
    "special_category",
    "token_not_for_request",
    "too_many_attempts",
    "unauthenticated",
    "unavailable",
    "unknown_field",
    "unknown_kind",
    "unknown_purpose",
    "unknown_regulation",
    "unknown_status",
    "unsupported_media_type",
];

/// `GET /problems`: every code, one anchor each (public).
#[utoipa::path(get, path = "/problems", tag = "operations",
    responses((status = 200, content_type = "text/html", body = String,
        description = "The problem codes, one anchor per code")))]
pub async fn page() -> Response {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>pii-vault problem codes</title></head><body><h1>Problem codes</h1>\
         <p>Every error is an <code>application/problem+json</code> document whose \
         <code>code</code> is one of these; <code>detail</code> explains the case, \
         <code>instance</code> names the request id.</p><dl>",
    );
    for code in CODES {
        html.push_str(&format!(
            "<dt id=\"{code}\"><code>{code}</code></dt><dd>{}</dd>",
            code.replace('_', " ")
        ));
    }
    html.push_str("</dl></body></html>");
    let mut resp = html.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// Rewrites error responses that are not problem documents.
pub async fn normalize(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<uuid::Uuid>().ok());
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // The HTML pages answer their errors with pages of their own.
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if is_html {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    if is_problem {
        return completed(resp, request_id).await;
    }
    let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
    let mut fixed = replacement(status).into_response();
    if let Some(v) = retry_after {
        fixed.headers_mut().insert(header::RETRY_AFTER, v);
    }
    completed(fixed, request_id).await
}

/// A problem document with `instance` (`urn:uuid:<request id>`) and a
/// `detail` (the title's words when the code needs no more).
async fn completed(resp: Response, request_id: Option<uuid::Uuid>) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return ServiceError::new(ErrorKind::Internal, "internal").into_response();
    };
    let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_slice(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if let Some(id) = request_id {
        doc.insert("instance".into(), format!("urn:uuid:{id}").into());
    }
    if !doc.get("detail").is_some_and(serde_json::Value::is_string) {
        let title = doc
            .get("title")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("error")
            .to_owned();
        doc.insert("detail".into(), title.into());
    }
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn replacement(status: StatusCode) -> ServiceError {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            ServiceError::new(super::error::kind_of(status), "invalid_request")
                .detail("the request (path, query string or body) could not be read")
        }
        StatusCode::NOT_FOUND => ServiceError::not_found("not_found"),
        StatusCode::METHOD_NOT_ALLOWED => ServiceError::new(
            crate::error::ErrorKind::MethodNotAllowed,
            "method_not_allowed",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ServiceError::new(
            crate::error::ErrorKind::PayloadTooLarge,
            "payload_too_large",
        )
        .detail("the request body is larger than the vault accepts"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ServiceError::new(
            crate::error::ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
        )
        .detail("send the body as application/json"),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            ServiceError::unavailable()
        }
        s if s.is_server_error() => ServiceError::new(ErrorKind::Internal, "internal"),
        s => ServiceError::new(super::error::kind_of(s), "invalid_request"),
    }
}

/// The generic part of the OpenAPI document, applied to every operation so
/// that a new route gets it without annotations of its own:
/// - error responses are `application/problem+json`, described by status
///   when the annotation gives no description;
/// - every operation with parameters or a body may answer 400, and every
///   authenticated one 429 `rate_limited` (rate_limit.rs);
/// - every POST takes an `Idempotency-Key` header (and may answer 422
///   `idempotency_key_reused`).
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        if let Some(post) = item.post.as_mut() {
            declare_idempotency_key(post);
        }
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            document_problems(op);
        }
    }
}

fn document_problems(op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::RefOr;
    for (status, resp) in op.responses.responses.iter_mut() {
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        if let RefOr::T(r) = resp {
            if let Some(c) = r.content.shift_remove("application/json") {
                r.content.insert("application/problem+json".into(), c);
            }
            if r.description.trim().is_empty() {
                r.description = problem_description(status).into();
            }
        }
    }
    // Every parameter and body is read by an extractor that answers
    // 400 `invalid_request` when it does not parse.
    let has_input =
        op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if has_input {
        add_problem(op, "400");
    }
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    if authenticated {
        add_problem(op, "429");
    }
}

/// Declares `status` as a problem answer unless the operation already does.
fn add_problem(op: &mut utoipa::openapi::path::Operation, status: &str) {
    use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
    if op.responses.responses.contains_key(status) {
        return;
    }
    let problem = Content::new(Some(Ref::from_schema_name("Problem")));
    op.responses.responses.insert(
        status.into(),
        RefOr::T(
            ResponseBuilder::new()
                .description(problem_description(status))
                .content("application/problem+json", problem)
                .build(),
        ),
    );
}

/// API.md: `Idempotency-Key` on any POST; a retry with the same key and
/// request replays the first answer, a different request under the same
/// key is refused with 422 `idempotency_key_reused`.
fn declare_idempotency_key(op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, RefOr, Required, Type};
    let params = op.parameters.get_or_insert_with(Vec::new);
    let declared = params.iter().any(|p| {
        matches!(p, RefOr::T(p)
            if p.parameter_in == ParameterIn::Header
                && p.name.eq_ignore_ascii_case("idempotency-key"))
    });
    if !declared {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some("^[!-~]+$"));
        params.push(RefOr::T(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "A key of the caller's choice (1–255 visible ASCII characters). A retry \
                     with the same key and request returns the first answer and has no second \
                     effect.",
                ))
                .schema(Some(schema))
                .build(),
        ));
    }
    add_problem(op, "422");
}

/// The description of an error answer whose annotation gives none.
fn problem_description(status: &str) -> &'static str {
    match status {
        "400" => {
            "The request could not be used; `code` names the reason (`invalid_request`, `purpose_required`, ...)"
        }
        "401" => "No valid token (`unauthenticated`) or bad credentials",
        "403" => "The caller may not do this, or the value is withheld; `code` names the reason",
        "404" => "Not found (`code` names what)",
        "405" => "The method is not allowed here (`method_not_allowed`)",
        "409" => "Conflicts with the current state; `code` names the conflict",
        "412" => "The `If-Match` precondition failed (`precondition_failed`)",
        "413" => "The request body is larger than the vault accepts (`payload_too_large`)",
        "415" => {
            "The body is not in a media type this operation accepts (`unsupported_media_type`)"
        }
        "422" => {
            "Well-formed but not acceptable; `code` names the reason (e.g. `idempotency_key_reused`)"
        }
        "429" => "Too many requests (`rate_limited`, `too_many_attempts`); see `Retry-After`",
        "500" => "Internal error (`internal`); the body carries no detail",
        "503" => "Not available for now (`unavailable`); retry later",
        s if s.starts_with('5') => "A server error, as a problem document",
        _ => "A client error, as a problem document; `code` names the reason",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_text_errors_become_problems() {
        use axum::Router;
        use axum::routing::get;
        use tower::ServiceExt;
        let app = Router::new()
            .route(
                "/q",
                get(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        "Failed to deserialize query string: x=ada@example.com",
                    )
                }),
            )
            .route("/ok", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(normalize));
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/q")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"code\":\"invalid_request\""), "{text}");
        assert!(!text.contains("ada@example.com"), "{text}");
        let resp = app
            .oneshot(
                Request::builder()
                    .uri("/ok")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
