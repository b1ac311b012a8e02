//! The HTTP API: router, middleware, and one module per resource.
//!
//! Middleware, outermost first:
//! 1. request id — a fresh UUIDv7 unless a trusted proxy sent a UUID, so
//!    no caller-chosen text reaches logs or the audit trail;
//! 2. trace — spans named by the matched route, never the raw URI;
//! 3. metrics — requests by route and status;
//! 4. timeout — 503 after `request_timeout_secs`;
//! 5. body limit — 413 past `max_body_bytes`;
//! 6. security headers (the HTML pages, [`pages`], set their own CSP and
//!    caching first); 7. panics become a generic 500.
//!
//! Between 3 and the refusal audit: while the tombstone log is broken every
//! route but health, tokens and the auditor's answers 503 ([`tamper`]).

pub mod audit;
pub mod consents;
pub mod customers;
pub mod erasure;
pub mod error;
pub mod export;
pub mod extract;
pub mod holds;
pub mod idempotency;
pub mod keys;
pub mod oauth;
pub mod ops;
pub mod outbox;
pub mod pages;
pub mod problems;
pub mod refusals;
pub mod requests;
pub mod tamper;
pub mod tokens;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::state::AppState;
use error::ServiceError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pii-vault",
        description = "Customer-data vault: field-level encryption, purpose-bound access, consent, data subject requests and a verifiable audit trail."
    ),
    modifiers(&BearerAuth),
    components(schemas(error::Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The routes and the OpenAPI document generated from their handlers.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let routes = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tokens::issue_token))
        .routes(routes!(oauth::introspect))
        .routes(routes!(oauth::metadata))
        .routes(routes!(oauth::jwks))
        .routes(routes!(customers::create_customer))
        .routes(routes!(customers::create_customers))
        .routes(routes!(customers::search))
        .routes(routes!(
            customers::get_customer,
            customers::update_customer,
            erasure::erase_customer
        ))
        .routes(routes!(export::export_customer))
        .routes(routes!(export::export_schema))
        .routes(routes!(holds::create_hold, holds::list_holds))
        .routes(routes!(holds::release_hold))
        .routes(routes!(customers::get_field))
        .routes(routes!(consents::record_consent, consents::list_consents))
        .routes(routes!(audit::query_events))
        .routes(routes!(audit::export))
        .routes(routes!(audit::verify_trail))
        .routes(routes!(audit::public_key))
        .routes(routes!(audit::access_log))
        .routes(routes!(requests::file_request, requests::list_requests))
        .routes(routes!(requests::metrics))
        .routes(routes!(requests::get_request))
        .routes(routes!(requests::verify))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::deny))
        .routes(routes!(requests::extend))
        .routes(routes!(requests::get_export))
        .routes(routes!(outbox::list_outbox))
        .routes(routes!(outbox::ack))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::policy))
        .routes(routes!(ops::processing_activities))
        .routes(routes!(problems::page))
        .routes(routes!(keys::key_status))
        .routes(routes!(keys::rotate_kek))
        .routes(routes!(keys::retire_kek))
        .routes(routes!(keys::rotate_signing_key))
        .routes(routes!(keys::rotate_token_signing_key))
        .split_for_parts();
    let (router, mut openapi) = routes;
    problems::document(&mut openapi);
    (router, openapi)
}

/// The operations a caller may use without credentials, by method and
/// route (path template): those whose OpenAPI `security` lists the empty
/// requirement, `security(())` on the handler in the route table.
#[derive(Debug, Default)]
pub struct Anonymous(HashSet<(Method, String)>);

impl Anonymous {
    /// Read from the route table's document.
    pub fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        let open = utoipa::openapi::security::SecurityRequirement::default();
        let mut routes = HashSet::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, op) in ops {
                let anonymous = op
                    .as_ref()
                    .and_then(|op| op.security.as_ref())
                    .is_some_and(|reqs| reqs.contains(&open));
                if anonymous {
                    routes.insert((method, path.clone()));
                }
            }
        }
        Anonymous(routes)
    }

    /// Whether `method` on `route` (a path template) takes no credentials.
    pub fn allows(&self, method: &Method, route: &str) -> bool {
        self.0.contains(&(method.clone(), route.to_owned()))
    }
}

/// The application: routes, `/openapi.json`, fallbacks and middleware.
pub fn app(state: AppState) -> Router {
    let (router, openapi) = routes();
    let anonymous = Arc::new(Anonymous::of(&openapi));
    let doc = Arc::new(openapi);
    let max_body = state.settings.max_body_bytes;
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    router
        .merge(pages::routes())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ServiceError::not_found("not_found").detail("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ServiceError::new(
                crate::error::ErrorKind::MethodNotAllowed,
                "method_not_allowed",
            )
        })
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(state.clone(), request_id))
                .layer(middleware::from_fn(json_newline))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(span)
                        .on_request(())
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(middleware::from_fn(record_metrics))
                .option_layer(cors(&state.settings.cors_allowed_origins))
                .layer(middleware::from_fn_with_state(state.clone(), tamper::guard))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    refusals::audit,
                ))
                .layer(middleware::from_fn(problems::normalize))
                .layer(middleware::from_fn_with_state(
                    idempotency::Layer {
                        state: state.clone(),
                        anonymous,
                    },
                    idempotency::layer,
                ))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    timeout,
                ))
                .layer(DefaultBodyLimit::max(max_body))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                // The pages set their own (static files may be cached).
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ))
                // The pages set their own (pages::CSP); the API's forbids
                // everything.
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
                ))
                .layer(CatchPanicLayer::custom(|_| {
                    ServiceError::internal("handler panicked").into_response()
                })),
        )
        .with_state(state)
}

/// CORS for the origins in `cors_allowed_origins`; none configured, no
/// layer (and no CORS header on any answer). Preflights are answered here,
/// before authentication.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                header::IF_MATCH,
            ])
            .expose_headers([header::ETAG, X_REQUEST_ID])
            .max_age(Duration::from_secs(600)),
    )
}

/// Ends every JSON body (`application/json`, `application/problem+json`)
/// with a newline, so a shell prompt after `curl` starts on its own line.
/// Other bodies (NDJSON streams, HTML, metrics) pass through untouched.
async fn json_newline(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/json") || ct.starts_with("application/problem+json")
        });
    if !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ServiceError::internal("response body unreadable").into_response();
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let mut with_newline = Vec::with_capacity(bytes.len() + 1);
    with_newline.extend_from_slice(&bytes);
    with_newline.push(b'\n');
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(with_newline))
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Keeps an incoming request id only when it is a UUID and the peer is a
/// trusted proxy (`trusted_proxies`); otherwise a fresh UUIDv7. Answers
/// with it.
async fn request_id(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let from_proxy = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| state.trusted_proxies.contains(c.0.ip()));
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|_| from_proxy)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<Uuid>().ok())
        .unwrap_or_else(Uuid::now_v7)
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(X_REQUEST_ID, v.clone());
        let mut resp = next.run(req).await;
        resp.headers_mut().insert(X_REQUEST_ID, v);
        return resp;
    }
    next.run(req).await
}

fn span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let rid = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    tracing::info_span!("request", method = %req.method(), route = %route, request_id = %rid)
}

/// A bounded `method` label: the methods the API knows, else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("pii_vault_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("pii_vault_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_declares_the_anonymous_posts() {
        let (_, doc) = routes();
        let anonymous = Anonymous::of(&doc);
        let mut posts: Vec<&str> = anonymous
            .0
            .iter()
            .filter(|(m, _)| m == Method::POST)
            .map(|(_, p)| p.as_str())
            .collect();
        posts.sort_unstable();
        assert_eq!(posts, ["/v1/requests", "/v1/token"]);
        assert!(anonymous.allows(&Method::GET, "/.well-known/jwks.json"));
        assert!(!anonymous.allows(&Method::POST, "/v1/customers"));
        assert!(!anonymous.allows(&Method::GET, "/v1/requests"));
    }
}
