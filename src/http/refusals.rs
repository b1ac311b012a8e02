//! Every refusal is an audit event.
//!
//! Services record the refusals they decide with their own detail (a
//! purpose denied with its reason, a value withheld, a customer not found)
//! and mark the error as audited. This middleware is the net under them:
//! any other refusal of an authenticated caller (a capability missing, a
//! request token used for another request, a malformed body, a state that
//! does not allow the step) is recorded here, with the action of the route,
//! the caller from the authentication extractor, the error code and, when
//! the path names one, the customer or request id. If the event cannot be
//! stored, the caller gets 503 instead of the refusal.
//!
//! Not recorded: 401 (no caller to name), 429 (a flood of refusals would
//! flood the trail; the rate limiter is the control), 413 and 415 (the body
//! was never read: a transport refusal, before any use case), 5xx (not
//! refusals).

use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::actor::Actor;
use crate::audit::{Action, Decision, EventDraft};
use crate::error::ServiceError;
use crate::state::AppState;
use crate::store::Unit;

/// Where the authentication extractor leaves the caller, for this
/// middleware to name after the handler ran.
#[derive(Clone, Default)]
pub struct ActorSlot(Arc<Mutex<Option<Actor>>>);

impl ActorSlot {
    pub fn set(&self, actor: &Actor) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(actor.clone());
    }

    fn take(&self) -> Option<Actor> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The service recorded this refusal itself.
#[derive(Clone, Copy)]
pub struct Audited;

/// The stable code of an error answer.
#[derive(Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Records the refusals no service recorded.
pub async fn audit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let slot = ActorSlot::default();
    req.extensions_mut().insert(slot.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    if !is_refusal(status) || resp.extensions().get::<Audited>().is_some() {
        return resp;
    }
    let (Some(route), Some(actor)) = (route, slot.take()) else {
        return resp;
    };
    let Some(action) = route_action(&method, &route) else {
        return resp;
    };
    let code = resp
        .extensions()
        .get::<ErrorCode>()
        .map_or("refused", |c| c.0);
    let about = match path_id(&route, &path) {
        Some(id) if route.starts_with("/v1/customers/") => About::Customer(id),
        Some(id) if route.starts_with("/v1/requests/") => About::Request(id),
        _ => About::Nothing,
    };
    let ev = refusal_event(&actor, action, status, code, about);
    match state.sequencer.commit(Unit::event(ev)).await {
        Ok(_) => resp,
        Err(e) => ServiceError::from(e).into_response(),
    }
}

/// What a refused call was about, as its event names it.
#[derive(Debug, Clone, Copy)]
pub enum About {
    Nothing,
    Customer(Uuid),
    Request(Uuid),
}

/// The event of `actor`'s `action` refused with `status` and error `code`.
fn refusal_event(
    actor: &Actor,
    action: Action,
    status: StatusCode,
    code: &str,
    about: About,
) -> EventDraft {
    let decision = match status {
        StatusCode::FORBIDDEN => Decision::Denied,
        StatusCode::NOT_FOUND => Decision::NotFound,
        _ => Decision::Invalid,
    };
    let ev = actor.event(action, decision).reason("error", code);
    match about {
        About::Nothing => ev,
        About::Customer(id) => ev.customer(id),
        About::Request(id) => ev.reason("request", &id.to_string()),
    }
}

/// Records `e` as the refusal of `actor`'s `action`, as this middleware
/// does for the API, for an edge that calls a service without it (the
/// console's pages): unless the service recorded it already, or it is no
/// refusal of a caller (see the module documentation).
pub async fn record(
    state: &AppState,
    actor: &Actor,
    action: Action,
    about: About,
    e: &ServiceError,
) -> Result<(), ServiceError> {
    let status = super::error::status_of(e.kind);
    if e.audited || !is_refusal(status) {
        return Ok(());
    }
    let ev = refusal_event(actor, action, status, e.code, about);
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(())
}

fn is_refusal(status: StatusCode) -> bool {
    status.is_client_error()
        && !matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::TOO_MANY_REQUESTS
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNSUPPORTED_MEDIA_TYPE
        )
}

/// The `{id}` of a path, when it is a UUID (nothing else is recorded).
fn path_id(route: &str, path: &str) -> Option<Uuid> {
    let at = route.split('/').position(|s| s == "{id}")?;
    path.split('/').nth(at)?.parse().ok()
}

/// The action a route performs, as the audit trail names it. `None` for
/// routes that refuse no authenticated caller (public ones, and those any
/// role may call).
pub fn route_action(method: &Method, route: &str) -> Option<Action> {
    use Action as A;
    let m = method.as_str();
    Some(match (m, route) {
        ("POST", "/v1/customers") => A::CustomerCreate,
        ("POST", "/v1/customers/batch") => A::CustomerCreate,
        ("POST", "/v1/customers/search") => A::CustomerSearch,
        ("GET", "/v1/customers/{id}") => A::CustomerRead,
        ("PATCH", "/v1/customers/{id}") => A::CustomerUpdate,
        ("DELETE", "/v1/customers/{id}") => A::CustomerErase,
        ("GET", "/v1/customers/{id}/fields/{field}") => A::CustomerReadField,
        ("GET", "/v1/customers/{id}/export") => A::CustomerExport,
        ("POST", "/v1/customers/{id}/consents") => A::ConsentRecord,
        ("GET", "/v1/customers/{id}/consents") => A::ConsentRead,
        ("GET", "/v1/customers/{id}/access-log") => A::AccessLogRead,
        ("POST", "/v1/legal-holds") => A::LegalHoldCreate,
        ("GET", "/v1/legal-holds") => A::LegalHoldList,
        ("DELETE", "/v1/legal-holds/{id}") => A::LegalHoldRelease,
        ("GET", "/v1/audit") => A::AuditQuery,
        ("GET", "/v1/audit/export") => A::AuditExport,
        ("GET", "/v1/audit/verify") => A::AuditVerify,
        ("GET", "/v1/audit/public-key") => A::AuditPublicKey,
        ("POST", "/v1/requests") => A::RequestReceived,
        ("GET", "/v1/requests") => A::RequestList,
        ("GET", "/v1/requests/metrics") => A::RequestMetrics,
        ("GET", "/v1/requests/{id}") => A::RequestRead,
        ("POST", "/v1/requests/{id}/verify") => A::RequestVerificationFailed,
        ("POST", "/v1/requests/{id}/approve") => A::RequestApproved,
        ("POST", "/v1/requests/{id}/deny") => A::RequestDenied,
        ("POST", "/v1/requests/{id}/extend") => A::RequestExtended,
        ("GET", "/v1/requests/{id}/export") => A::RequestExported,
        ("GET", "/v1/outbox") => A::OutboxRead,
        ("POST", "/v1/outbox/{id}/ack") => A::OutboxAcknowledged,
        ("GET", "/v1/keys") => A::KeysRead,
        ("POST", "/v1/keys/rotate") => A::KeysRotate,
        ("POST", "/v1/keys/{version}/retire") => A::KeysRetire,
        ("POST", "/v1/keys/signing/rotate") => A::KeysRotateSigning,
        ("POST", "/v1/token/introspect") => A::TokenIntrospect,
        ("POST", "/v1/keys/token-signing/rotate") => A::KeysRotateTokenSigning,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes that refuse no authenticated caller.
    const NEVER_REFUSE: &[&str] = &[
        "POST /v1/token",
        "GET /.well-known/oauth-authorization-server",
        "GET /.well-known/jwks.json",
        "GET /v1/policy",
        "GET /v1/processing-activities",
        "GET /v1/schemas/export.json",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /problems",
    ];

    #[test]
    fn every_route_that_can_refuse_a_caller_names_its_action() {
        let (_, doc) = crate::http::routes();
        let mut missing = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (m, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ] {
                let name = format!("{m} {path}");
                if op.is_some()
                    && !NEVER_REFUSE.contains(&name.as_str())
                    && route_action(&m, path).is_none()
                {
                    missing.push(name);
                }
            }
        }
        assert!(missing.is_empty(), "routes without an action: {missing:?}");
    }

    #[test]
    fn only_uuids_in_the_id_segment_are_recorded() {
        let id = Uuid::now_v7();
        assert_eq!(
            path_id("/v1/customers/{id}", &format!("/v1/customers/{id}")),
            Some(id)
        );
        assert_eq!(
            path_id("/v1/customers/{id}", "/v1/customers/ada@example.com"),
            None
        );
        assert_eq!(path_id("/v1/customers", "/v1/customers"), None);
    }
}
