//! `Idempotency-Key` on every POST: a retry with the same key and the same
//! request (method, path, query string, body) gets the first answer and has
//! no second effect; the same key with a different request gets 422
//! `idempotency_key_reused`.
//!
//! Design (a middleware, so every POST route has it):
//! - **Scope.** Keys belong to a caller: a staff principal (its id), the
//!   holder of a request token (a keyed digest of the token), another
//!   `Authorization` (a keyed digest of the header), or, with none, the
//!   caller's address (keyed). A stranger cannot replay another's answer.
//! - **Claim first.** Before the request runs, a record (scope, key, keyed
//!   fingerprint) is inserted; the primary key lets one request win. A
//!   concurrent request with the same key waits for the first answer and
//!   replays it, so two simultaneous requests have one effect.
//! - **What is kept.** A 2xx answer is stored sealed under the vault's
//!   active KEK (AES-GCM, bound to the scope and key): request tokens and
//!   personal values in answers are never in the database in plain text.
//!   POSTs without effect (lookups, tokens, introspection) keep only the
//!   fingerprint and always run again.
//! - **Answer and effect in one unit.** Each handler of a POST with an
//!   effect hands its service an [`Answer`] ([`Keyed::answer`]): the service
//!   stores the sealed answer in the database unit that has the effect, so
//!   no crash can leave the effect without the answer (a retry would repeat
//!   it). When the service carries on after that unit (a request carried
//!   out after its approval), the layer stores the final answer afterwards.
//!   An error answer frees the claim for a retry, unless an answer was
//!   stored with an effect: that answer stays, and the retry replays it.
//!   [`seal`] is the one way an answer is sealed, by handlers and the layer.
//! - **Erasure and expiry.** A record names the customer its request
//!   concerned (path, `Location`, or `customer_id` in the answer); erasure
//!   deletes it. Records expire after `idempotency_ttl_hours`.
//! - **Abandoned claims.** A claim still running after
//!   `request_timeout_secs` (plus a margin) belongs to a request that can no
//!   longer be running (the timeout ends it): it is taken over.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::Anonymous;
use super::error::ServiceError;
use crate::actor::Actor;
use crate::answer::Answer;
use crate::audit::CommitError;
use crate::error::ErrorKind;
use crate::state::AppState;
use crate::store::{IdempotencyRow, IdempotencyState, Mutation, Unit};

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// POST routes without effect: only the fingerprint is kept.
const EFFECT_FREE: &[&str] = &["/v1/customers/search", "/v1/token", "/v1/token/introspect"];

/// How often a request waiting for the first answer looks again.
const POLL: Duration = Duration::from_millis(25);

/// The caller resolved by the middleware, for the handler's extractor.
#[derive(Clone)]
pub struct Resolved(pub Actor);

/// A claimed key, in the request's extensions for the handler ([`Keyed`]).
#[derive(Clone)]
pub struct Claim {
    scope: String,
    key: String,
    /// The request's path (the customer it concerns, see [`subject`]).
    path: String,
    /// Keyed digest of the scope, the key and the request's fingerprint:
    /// the seed of the ids a batch gives its new customers, so that a
    /// retry of this request gives them again.
    ids: [u8; 32],
    /// The last answer sealed for the claim (plain), so that the layer does
    /// not store the same answer again.
    sealed: Arc<Mutex<Option<Zeroizing<Vec<u8>>>>>,
}

/// The claim of the request's `Idempotency-Key`, if it has one: an
/// extractor for the handlers of POSTs with an effect.
pub struct Keyed(Option<Claim>);

impl<S: Send + Sync> FromRequestParts<S> for Keyed {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Keyed(parts.extensions.get::<Claim>().cloned()))
    }
}

impl Keyed {
    /// No key: the caller is a page of this edge (a form is not retried
    /// under a key), so there is no answer to store.
    pub fn none() -> Self {
        Keyed(None)
    }

    /// The ids of a batch's new customers: derived from the claim, so that
    /// a retry of the same request (after a crash that kept the customers
    /// but not the answer) gives the same customers the same ids.
    pub fn new_ids(&self) -> crate::customers::NewIds {
        match &self.0 {
            None => crate::customers::NewIds::Fresh,
            Some(claim) => crate::customers::NewIds::Derived(claim.ids),
        }
    }

    /// The [`Answer`] a service records with its effect: what it answers,
    /// turned into the handler's reply by `reply` and sealed. The handler
    /// builds its own response with the same `reply`.
    pub fn answer<'a, T: ?Sized>(
        &'a self,
        state: &'a AppState,
        reply: impl Fn(&T) -> Result<Reply, ServiceError> + Send + Sync + 'a,
    ) -> Answer<'a, T> {
        match &self.0 {
            None => Answer::none(),
            Some(claim) => Answer::new(move |value: &T| {
                let r = reply(value)?;
                seal(state, claim, r.status, &r.headers, &r.body).map(Some)
            }),
        }
    }
}

/// A handler's answer, built once for the response and for the stored
/// answer alike.
pub struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    /// `status` with `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(
        status: StatusCode,
        value: &T,
    ) -> Result<Self, ServiceError> {
        let body = serde_json::to_vec(value).map_err(ServiceError::internal)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(Reply {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    /// With a `Location` header.
    pub fn location(mut self, location: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(location) {
            self.headers.insert(header::LOCATION, v);
        }
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// What a stored answer holds (sealed).
#[derive(Serialize, Deserialize)]
struct Stored {
    status: u16,
    headers: Vec<(String, String)>,
    /// Base64.
    body: String,
}

/// What the middleware needs: the vault, and the routes of the route table
/// that take no credentials.
#[derive(Clone)]
pub struct Layer {
    pub state: AppState,
    pub anonymous: Arc<Anonymous>,
}

/// The middleware (inside the refusal audit, outside the handlers).
pub async fn layer(State(layer): State<Layer>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(HEADER) {
        return next.run(req).await;
    }
    // Without credentials only a route the route table declares anonymous
    // (the customer's intake, the token endpoint) may proceed; any other
    // route answers its 401 before a key is looked at.
    let anonymous = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| layer.anonymous.allows(req.method(), route.as_str()));
    if !req.headers().contains_key(header::AUTHORIZATION) && !anonymous {
        return next.run(req).await;
    }
    match run(&layer.state, req, next).await {
        Ok(resp) | Err(resp) => resp,
    }
}

async fn run(state: &AppState, req: Request, next: Next) -> Result<Response, Response> {
    let key = valid_key(req.headers()).map_err(IntoResponse::into_response)?;
    let (mut parts, body) = req.into_parts();
    let scope = scope(state, &mut parts)
        .await
        .map_err(|e| e.into_response())?;
    let body = axum::body::to_bytes(body, state.settings.max_body_bytes)
        .await
        .map_err(|_| {
            ServiceError::new(ErrorKind::PayloadTooLarge, "payload_too_large")
                .detail("the request body is larger than the vault accepts")
                .into_response()
        })?;
    let hash = fingerprint(state, &parts, &body);
    let effect_free = EFFECT_FREE.contains(&parts.uri.path());
    let ids = {
        let mut seed = Vec::with_capacity(scope.len() + key.len() + hash.len() + 2);
        for part in [scope.as_bytes(), key.as_bytes(), &hash] {
            seed.extend_from_slice(part);
            seed.push(0);
        }
        state.keys.index.keyed_digest("idempotency-ids", &seed)
    };
    let claim = Claim {
        scope,
        key,
        path: parts.uri.path().to_owned(),
        ids,
        sealed: Arc::default(),
    };
    let replay = claim_or_replay(state, &claim, &hash, effect_free)
        .await
        .map_err(IntoResponse::into_response)?;
    let mut req = Request::from_parts(parts, Body::from(body));
    if !effect_free {
        req.extensions_mut().insert(claim.clone());
    }
    match replay {
        Some(Outcome::Replay(resp)) => Ok(resp),
        Some(Outcome::RunAgain) => Ok(next.run(req).await),
        None if effect_free => Ok(next.run(req).await),
        None => {
            let resp = next.run(req).await;
            Ok(keep(state, &claim, resp).await)
        }
    }
}

enum Outcome {
    Replay(Response),
    RunAgain,
}

/// 400 unless the key is 1–255 visible ASCII characters.
fn valid_key(headers: &HeaderMap) -> Result<String, ServiceError> {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| {
            ServiceError::invalid_request("Idempotency-Key must be 1–255 visible ASCII characters")
        })
}

/// Whose keys these are (see the module comment).
async fn scope(state: &AppState, parts: &mut Parts) -> Result<String, ServiceError> {
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let Some(auth) = auth else {
        let addr = super::extract::client_addr(parts, state)
            .map(|a| a.hmac().to_owned())
            .unwrap_or_default();
        return Ok(format!("anonymous:{addr}"));
    };
    let text = String::from_utf8_lossy(&auth);
    let bearer = text
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("bearer "))
        .map(|_| text[7..].trim());
    match bearer {
        Some(t) if !t.starts_with(crate::requests::flow::TOKEN_PREFIX) => {
            let actor = Actor::from_request_parts(parts, state).await?;
            let scope = format!("staff:{}", actor.id);
            parts.extensions.insert(Resolved(actor));
            Ok(scope)
        }
        _ => {
            let digest = state.keys.index.keyed_digest("idempotency-scope", &auth);
            Ok(format!("credential:{}", hex::encode(digest)))
        }
    }
}

/// Keyed: a plain hash of a body that holds personal values would let
/// anyone with the database confirm a guessed value.
fn fingerprint(state: &AppState, parts: &Parts, body: &Bytes) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + 128);
    for part in [
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
    ] {
        bytes.extend_from_slice(part.as_bytes());
        bytes.push(0);
    }
    bytes.extend_from_slice(body);
    state
        .keys
        .index
        .keyed_digest("idempotency", &bytes)
        .to_vec()
}

/// Claims the key (`None`: this request runs and its answer is kept), or
/// says what to do instead.
async fn claim_or_replay(
    state: &AppState,
    claim: &Claim,
    hash: &[u8],
    effect_free: bool,
) -> Result<Option<Outcome>, ServiceError> {
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = state.clock.now_micros();
        let mut expired_before = expired_before(state, now);
        let row = state.store.idempotency(&claim.scope, &claim.key).await?;
        if let Some(row) = row.as_ref().filter(|r| r.created_at >= expired_before) {
            if row.request_hash != hash {
                return Err(reused());
            }
            match IdempotencyState::of(row.state) {
                Some(IdempotencyState::Answered) => {
                    return Ok(Some(Outcome::Replay(replay(state, claim, row)?)));
                }
                Some(IdempotencyState::Fingerprint) => return Ok(Some(Outcome::RunAgain)),
                _ if abandoned(state, row, now) => expired_before = row.created_at + 1,
                _ => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ServiceError::conflict("idempotency_key_in_use")
                            .detail("a request with this Idempotency-Key is still running"));
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
        }
        let state_kind = if effect_free {
            IdempotencyState::Fingerprint
        } else {
            IdempotencyState::Running
        };
        let unit = Unit {
            mutations: vec![Mutation::ClaimIdempotency {
                principal: claim.scope.clone(),
                key: claim.key.clone(),
                request_hash: hash.to_vec(),
                state: state_kind,
                expired_before,
                at: now,
            }],
            events: vec![],
        };
        match state.sequencer.commit(unit).await {
            Ok(_) => return Ok(None),
            // Another request claimed it first: look again.
            Err(CommitError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn reused() -> ServiceError {
    ServiceError::new(ErrorKind::Unprocessable, "idempotency_key_reused")
        .detail("this Idempotency-Key was used with a different request")
}

/// A running claim older than any request can run.
fn abandoned(state: &AppState, row: &IdempotencyRow, now: i64) -> bool {
    let limit = i64::try_from(state.settings.request_timeout_secs)
        .unwrap_or(i64::MAX / 2_000_000)
        .saturating_add(5)
        .saturating_mul(1_000_000);
    row.created_at < now.saturating_sub(limit)
}

fn label(claim: &Claim) -> String {
    format!("idempotency\0{}\0{}", claim.scope, claim.key)
}

/// The stored first answer.
fn replay(state: &AppState, claim: &Claim, row: &IdempotencyRow) -> Result<Response, ServiceError> {
    let (Some(kek), Some(sealed)) = (row.kek_version, row.body.as_ref()) else {
        return Err(ServiceError::internal(
            "idempotency record without an answer",
        ));
    };
    let plain = state
        .keys
        .keyring()
        .open(&label(claim), kek, sealed)
        .map_err(ServiceError::internal)?;
    let stored: Stored = serde_json::from_slice(&plain).map_err(ServiceError::internal)?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(&stored.body)
        .map_err(ServiceError::internal)?;
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, body).into_response();
    for (name, value) in &stored.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(resp)
}

/// Keeps a 2xx answer (sealed) under the claim, unless the handler stored
/// that very answer with its effect. Frees the claim after an error answer,
/// unless an answer was stored with an effect (see the module comment).
async fn keep(state: &AppState, claim: &Claim, resp: Response) -> Response {
    if !resp.status().is_success() {
        let answered = state
            .store
            .idempotency(&claim.scope, &claim.key)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| IdempotencyState::of(r.state) == Some(IdempotencyState::Answered));
        if !answered {
            let release = Unit {
                mutations: vec![Mutation::ReleaseIdempotency {
                    principal: claim.scope.clone(),
                    key: claim.key.clone(),
                }],
                events: vec![],
            };
            if let Err(e) = state.sequencer.commit(release).await {
                tracing::warn!(error = %e, "idempotency claim not released");
            }
        }
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        // The effect happened: keep the claim (see below).
        return ServiceError::internal("answer body unreadable").into_response();
    };
    let unchanged = stored(parts.status, &parts.headers, &body)
        .ok()
        .zip(claim.sealed.lock().ok().and_then(|s| s.clone()))
        .is_some_and(|(now, sealed)| *now == *sealed);
    if !unchanged {
        let saved = match seal(state, claim, parts.status, &parts.headers, &body) {
            Ok(m) => state
                .sequencer
                .commit(Unit {
                    mutations: vec![m],
                    events: vec![],
                })
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = saved {
            // The effect happened: keep the claim (a retry waits, then
            // takes it over) rather than free the key for a second effect.
            tracing::error!(error = %e, "idempotency answer not stored");
        }
    }
    Response::from_parts(parts, Body::from(body))
}

/// The headers a stored answer keeps.
const KEPT: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];

/// An answer as it is stored (before sealing).
fn stored(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
    let stored = Stored {
        status: status.as_u16(),
        headers: KEPT
            .iter()
            .filter_map(|h| {
                let v = headers.get(h)?.to_str().ok()?;
                Some((h.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
        body: base64::engine::general_purpose::STANDARD.encode(body),
    };
    serde_json::to_vec(&stored)
        .map(Zeroizing::new)
        .map_err(ServiceError::internal)
}

/// The change that stores an answer (sealed) under the claim, naming the
/// customer the request concerned: the one way an answer is sealed, by a
/// handler (in its service's unit, through [`Keyed::answer`]) or by the
/// layer.
pub fn seal(
    state: &AppState,
    claim: &Claim,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Mutation, ServiceError> {
    let plain = stored(status, headers, body)?;
    let (kek_version, sealed) = state
        .keys
        .keyring()
        .seal(&label(claim), &plain)
        .map_err(ServiceError::internal)?;
    let customer = subject(&claim.path, headers, body);
    if let Ok(mut last) = claim.sealed.lock() {
        *last = Some(plain);
    }
    Ok(Mutation::AnswerIdempotency {
        principal: claim.scope.clone(),
        key: claim.key.clone(),
        status: i64::from(status.as_u16()),
        kek_version,
        body: sealed,
        customer_id: customer,
    })
}

/// The customer a request concerned: in its path, its answer's
/// `Location`, or its answer's `customer_id`.
fn subject(path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Uuid> {
    let in_path = |p: &str| {
        p.strip_prefix("/v1/customers/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|id| id.parse::<Uuid>().ok())
    };
    in_path(path)
        .or_else(|| {
            headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(in_path)
        })
        .or_else(|| {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()?
                .get("customer_id")?
                .as_str()?
                .parse()
                .ok()
        })
}

/// Records created before this time (µs) have expired.
pub fn expired_before(state: &AppState, now: i64) -> i64 {
    now.saturating_sub(
        i64::from(state.settings.idempotency_ttl_hours).saturating_mul(3_600_000_000),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_comes_from_the_path_the_location_or_the_answer() {
        let id = Uuid::now_v7();
        let none = HeaderMap::new();
        assert_eq!(
            subject(&format!("/v1/customers/{id}/consents"), &none, b""),
            Some(id)
        );
        let mut loc = HeaderMap::new();
        loc.insert(
            header::LOCATION,
            HeaderValue::from_str(&format!("/v1/customers/{id}")).unwrap(),
        );
        assert_eq!(subject("/v1/customers", &loc, b"{}"), Some(id));
        let body = format!("{{\"customer_id\": \"{id}\"}}");
        assert_eq!(subject("/v1/legal-holds", &none, body.as_bytes()), Some(id));
        assert_eq!(subject("/v1/requests", &none, b"{\"id\": \"x\"}"), None);
    }
}
