//! While the tombstone log is broken (a forged, altered, removed or
//! reordered entry: `crate::tamper`), the vault serves no customer data:
//! every route answers 503 except health, readiness and metrics, the
//! OpenAPI document, token issuance and the auditor's routes (the API's and
//! the console's, with its sign-in), so operators and auditors can look.
//! The privacy center and the console's other pages answer 503 as an HTML
//! page in the browser's language, never as problem JSON. An operator resolves the log
//! (`pii-vault tombstones verify`, `… repair`) and restarts the vault.
//!
//! A trail that does not extend the audit witness only makes the vault not
//! ready (`/readyz` 503): a load balancer stops sending it traffic, and
//! `GET /v1/audit/verify` says why.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ServiceError;
use super::pages::{self, Page};
use crate::state::AppState;

/// Refuses every other route while the tombstone log is broken.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.tamper.health().tombstones().is_none() || open_while_blocked(req.uri().path()) {
        return next.run(req).await;
    }
    if !pages::is_page(req.uri().path()) {
        return ServiceError::unavailable().into_response();
    }
    let (mut parts, _) = req.into_parts();
    let mut resp = match Page::from_request_parts(&mut parts, &state).await {
        Ok(page) => page.error(StatusCode::SERVICE_UNAVAILABLE, "common-error-unavailable"),
        Err(resp) => resp,
    };
    pages::secure(&mut resp);
    resp
}

/// The routes that stay open while the tombstone log is broken.
fn open_while_blocked(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/readyz"
            | "/metrics"
            | "/openapi.json"
            | "/problems"
            | "/console"
            | "/console/"
            | "/console/sign-out"
            | "/static/pages.css"
    ) || ["/v1/token", "/v1/audit", "/.well-known", "/console/audit"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_health_tokens_and_the_audit_routes_stay_open() {
        for open in [
            "/readyz",
            "/v1/token",
            "/v1/audit",
            "/v1/audit/verify",
            "/.well-known/jwks.json",
            "/console/",
            "/console/audit/verify",
            "/static/pages.css",
        ] {
            assert!(open_while_blocked(open), "{open}");
        }
        for closed in [
            "/v1/customers/x",
            "/v1/customers/x/access-log",
            "/v1/requests",
            "/v1/auditx",
            "/v1/keys",
            "/v1/legal-holds",
            "/privacy/",
            "/privacy/request",
            "/console/requests",
            "/console/holds",
            "/console/auditx",
        ] {
            assert!(!open_while_blocked(closed), "{closed}");
        }
    }
}
