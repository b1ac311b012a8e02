//! Extractors: our JSON body (errors in our shape, never echoing values),
//! the authenticated caller, where the call comes from, the request id and
//! the purpose parameter.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ServiceError;
use crate::actor::{Actor, ClientAddr};
use crate::auth::cache::{CachedCaller, token_digest};
use crate::state::AppState;
use crate::store::PrincipalKind;

/// A JSON body. Malformed JSON, unknown fields and wrong types are 400
/// `invalid_request`; a missing or wrong content type 415; too large 413.
/// The detail never repeats a value from the body.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ServiceError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ServiceError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ServiceError::new(
            crate::error::ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
        )
        .detail("send the body as application/json"),
        JsonRejection::JsonSyntaxError(e) => {
            ServiceError::invalid_request(format!("malformed JSON: {}", position(&e.body_text())))
        }
        JsonRejection::JsonDataError(e) => {
            ServiceError::invalid_request(safe_data_error(&e.body_text()))
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ServiceError::new(
            crate::error::ErrorKind::PayloadTooLarge,
            "payload_too_large",
        )
        .detail("the request body is larger than the vault accepts"),
        _ => ServiceError::invalid_request("the request body could not be read"),
    }
}

/// serde's messages may quote the offending value ("invalid type: string
/// \"ada@…\""); keep only what names a field, and the position.
pub(super) fn safe_data_error(text: &str) -> String {
    let msg = text.rsplit(": ").next().unwrap_or(text);
    for prefix in [
        "unknown field",
        "missing field",
        "unknown variant",
        "duplicate field",
    ] {
        if let Some(start) = text.find(prefix) {
            let rest = &text[start..];
            let end = rest
                .find(", expected")
                .or_else(|| rest.find(" at line"))
                .unwrap_or(rest.len());
            let kept = &rest[..end];
            if prefix == "unknown variant" {
                return format!("unknown variant {}", position(msg));
            }
            return format!("{kept} {}", position(msg)).trim_end().to_owned();
        }
    }
    format!("a value has the wrong type or shape {}", position(msg))
        .trim_end()
        .to_owned()
}

fn position(text: &str) -> String {
    match text.find(" at line ") {
        Some(i) => text[i + 1..].to_owned(),
        None => String::new(),
    }
}

/// The request id (also returned as `x-request-id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        Ok(RequestId(id))
    }
}

/// Where the call comes from: the socket's peer, or the client a trusted
/// proxy names (`crate::auth::client_addr`). `None` when the server was
/// started without connection info.
pub fn client_addr(parts: &Parts, state: &AppState) -> Option<ClientAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let ip = if state.trusted_proxies.is_empty() {
        peer
    } else {
        // A line that is not text counts as garbage: it stops the walk.
        let lines = |name: axum::http::HeaderName| -> Vec<&str> {
            parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or(""))
                .collect()
        };
        let xff = lines(axum::http::HeaderName::from_static("x-forwarded-for"));
        let forwarded = lines(axum::http::header::FORWARDED);
        state.trusted_proxies.client(peer, &xff, &forwarded)
    };
    Some(ClientAddr::new(ip, &state.keys.index))
}

/// [`client_addr`] as an extractor, for calls without a staff caller.
pub struct Client(pub Option<ClientAddr>);

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(client_addr(parts, state)))
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ServiceError> {
        // Already authenticated (and counted) by the idempotency layer.
        if let Some(resolved) = parts.extensions.get::<super::idempotency::Resolved>() {
            return Ok(resolved.0.clone());
        }
        let token = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            // No credentials at all: a challenge without an error (RFC 6750 §3.1).
            None => return Err(ServiceError::unauthenticated()),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(bearer_token)
                .ok_or_else(ServiceError::invalid_token)?,
        };
        let token = token.to_owned();
        let token = token.as_str();
        let now_secs = state.clock.now_micros() / 1_000_000;
        let request_id = RequestId::from_request_parts(parts, state)
            .await
            .map(|r| r.0)
            .unwrap_or_default();
        // Read the epoch before the principal: see auth_cache.rs.
        let epoch = state.sequencer.principal_epoch();
        let keys = state.keys.tokens();
        let keys_id = std::sync::Arc::as_ptr(&keys) as usize;
        let digest = token_digest(token);
        if let Some(c) = state.auth_cache.get(&digest, epoch, keys_id, now_secs) {
            rate_limited(state, &c.id)?;
            let actor = Actor::staff(c.kind, c.id, c.role, request_id);
            return Ok(noted(parts, actor.from_addr(client_addr(parts, state))));
        }
        if state.identity_providers.claims_issuer(token) {
            return external(parts, state, token, now_secs, request_id).await;
        }
        let claims = keys
            .verify(token, now_secs)
            .map_err(|_| ServiceError::invalid_token())?;
        let kind = match claims.kind.as_str() {
            "client" => PrincipalKind::Client,
            "user" => PrincipalKind::User,
            _ => return Err(ServiceError::invalid_token()),
        };
        let id: Uuid = claims
            .sub
            .parse()
            .map_err(|_| ServiceError::invalid_token())?;
        // The principal is looked up on every call: disabling a client or a
        // user, changing its role or resetting its password takes effect at
        // once (within the cache's TTL when done by another process).
        let principal = state
            .store
            .principal(kind, id)
            .await?
            .filter(|p| p.accepts_token_issued_at(claims.iat))
            .ok_or_else(ServiceError::invalid_token)?;
        state.auth_cache.put(
            digest,
            CachedCaller {
                id: principal.id.to_string(),
                kind,
                role: principal.role.clone(),
                exp: claims.exp,
                nbf: claims.nbf,
            },
            epoch,
            keys_id,
        );
        rate_limited(state, &principal.id.to_string())?;
        let actor = Actor::staff(kind, principal.id.to_string(), principal.role, request_id);
        Ok(noted(parts, actor.from_addr(client_addr(parts, state))))
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// matched without regard to case (RFC 9110 §11.1). `None` for another
/// scheme or an empty token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A caller signed in by an external identity provider (`auth::oidc`),
/// rate-limited and noted for the refusal audit like any other.
async fn external(
    parts: &Parts,
    state: &AppState,
    token: &str,
    now_secs: i64,
    request_id: String,
) -> Result<Actor, ServiceError> {
    let addr = client_addr(parts, state);
    match state
        .identity_providers
        .verify(token, now_secs, request_id)
        .await
    {
        Ok(actor) => {
            rate_limited(state, &actor.id)?;
            Ok(noted(parts, actor.from_addr(addr)))
        }
        Err((e, Some(actor))) => {
            rate_limited(state, &actor.id)?;
            noted(parts, actor.from_addr(addr));
            Err(e)
        }
        Err((e, None)) => Err(e),
    }
}

/// Leaves the caller where the refusal audit finds it (`refusals.rs`).
pub fn noted(parts: &Parts, actor: Actor) -> Actor {
    if let Some(slot) = parts.extensions.get::<super::refusals::ActorSlot>() {
        slot.set(&actor);
    }
    actor
}

/// 429 `rate_limited` once `principal` has used up its bucket
/// (`rate_limit.rs`).
fn rate_limited(state: &AppState, principal: &str) -> Result<(), ServiceError> {
    state.rate_limit.check(principal).map_err(|wait| {
        ServiceError::too_many("rate_limited", wait)
            .detail("too many requests from this caller; retry after the indicated time")
    })
}

/// `?purpose=` on calls that read or write personal data.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PurposeQuery {
    /// The purpose of this use of personal data, e.g. `support.callback`.
    /// Required: without it the answer is 400 `purpose_required` (the
    /// service says so, which is why the field itself is optional here).
    #[param(required = true, value_type = String, example = "support.callback")]
    pub purpose: Option<String>,
}

/// Parses a path id, 400 `invalid_id` when it is not a UUID.
pub fn parse_id(raw: &str) -> Result<Uuid, ServiceError> {
    raw.parse()
        .map_err(|_| ServiceError::bad_request("invalid_id").detail("the id is not a UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "BeArEr  abc "] {
            assert_eq!(bearer_token(v), Some("abc"), "{v}");
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer_token(v), None, "{v}");
        }
    }

    #[test]
    fn data_errors_do_not_repeat_values() {
        let t = "Failed to deserialize the JSON body into the target type: fields.email.value: invalid type: string \"ada@example.com\", expected u32 at line 1 column 40";
        let s = safe_data_error(t);
        assert!(!s.contains("ada@example.com"), "{s}");
        assert!(s.contains("line 1 column 40"), "{s}");
        let u = "Failed to deserialize the JSON body into the target type: unknown field `emial`, expected one of `a`, `b` at line 1 column 9";
        assert_eq!(
            safe_data_error(u),
            "unknown field `emial` at line 1 column 9"
        );
        let v = "Failed to deserialize: action: unknown variant `+393331234567`, expected `grant` or `withdraw` at line 1 column 9";
        assert!(
            !safe_data_error(v).contains("3933"),
            "{}",
            safe_data_error(v)
        );
    }
}
