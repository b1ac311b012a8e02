//! `POST /v1/token`: client credentials for machines, passwords for people.
//! The same answer, in similar time, whether or not the name exists;
//! repeated failures for one name are throttled (429). Names over 256 bytes
//! are refused (400) before any lookup; every password verification (and
//! the dummy one for an unknown name) waits for the one limiter of password
//! work, 503 `unavailable` when it is full.

use crate::audit::{Action, Decision};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{Body, Client, RequestId};
use crate::actor::Actor;
use crate::audit::EventDraft;
use crate::crypto;
use crate::error::ErrorKind;
use crate::state::AppState;
use crate::store::{PrincipalKind, Unit};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "grant_type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenRequest {
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    Password {
        username: String,
        password: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
}

/// Longer client ids and usernames are refused (400) before any lookup.
pub const MAX_NAME_BYTES: usize = 256;

/// Issue an access token.
#[utoipa::path(post, path = "/v1/token", tag = "tokens", request_body = TokenRequest,
    responses((status = 200, description = "A bearer token", body = TokenResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn issue_token(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    Client(addr): Client,
    Body(req): Body<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let (kind, name, field) = match &req {
        TokenRequest::ClientCredentials { client_id, .. } => {
            (PrincipalKind::Client, client_id, "client_id")
        }
        TokenRequest::Password { username, .. } => (PrincipalKind::User, username, "username"),
    };
    if name.len() > MAX_NAME_BYTES {
        return Err(ServiceError::invalid_request(format!(
            "{field} is longer than {MAX_NAME_BYTES} bytes"
        ))
        .field(field));
    }
    let kind_name = match kind {
        PrincipalKind::Client => "client",
        PrincipalKind::User => "user",
    };
    // A refused caller is nobody yet: its address is recorded hashed.
    let refused = |error: &str| {
        let ev = EventDraft::new(
            "anonymous",
            "none",
            Action::TokenIssue,
            Decision::Denied,
            &request_id,
        )
        .reason("error", error)
        .reason("kind", kind_name);
        match &addr {
            Some(a) => a.mark(ev, false),
            None => ev,
        }
    };
    if let Some(wait) = state.throttle.check(kind, name) {
        state
            .sequencer
            .commit(Unit::event(refused("too_many_attempts")))
            .await?;
        return Err(ServiceError::too_many("too_many_attempts", wait)
            .detail("too many failed attempts; try again later"));
    }
    let principal = match &req {
        TokenRequest::ClientCredentials {
            client_id,
            client_secret,
        } => {
            let row = match client_id.parse::<Uuid>() {
                Ok(id) => state.store.principal(PrincipalKind::Client, id).await?,
                Err(_) => None,
            };
            let presented = crypto::sha256_hex(client_secret);
            row.filter(|r| crypto::constant_time_eq(r.credential.as_bytes(), presented.as_bytes()))
        }
        TokenRequest::Password { username, password } => {
            let row = state.store.user_by_name(username).await?;
            // Unknown users are verified against a dummy hash, so the answer
            // takes as long; both through the one limiter of password work.
            let phc = row.as_ref().map(|r| r.credential.clone());
            let right = state
                .password_work
                .verify_or_dummy(phc, Zeroizing::new(password.clone()))
                .await?;
            row.filter(|_| right)
        }
    };
    let Some(principal) = principal.filter(|p| !p.disabled) else {
        state.throttle.failure(kind, name);
        state
            .sequencer
            .commit(Unit::event(refused("invalid_credentials")))
            .await?;
        return Err(ServiceError::new(
            ErrorKind::Unauthenticated,
            "invalid_credentials",
        ));
    };
    state.throttle.success(kind, name);
    let now = state.clock.now_micros() / 1_000_000;
    let lifetime = state.settings.token_lifetime_secs;
    let (token, claims) = state
        .keys
        .tokens()
        .issue(
            &principal.id.to_string(),
            &principal.role,
            kind_name,
            now,
            lifetime,
        )
        .map_err(ServiceError::internal)?;
    let actor = Actor::staff(
        kind,
        principal.id.to_string(),
        principal.role.clone(),
        request_id.clone(),
    )
    .from_addr(addr.clone());
    let ev = actor
        .event(Action::TokenIssue, Decision::Allowed)
        .reason("jti", &claims.jti)
        .reason("kind", kind_name);
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: lifetime,
    }))
}
