//! `POST /v1/token`: client credentials for machines, passwords for people.
//! The same answer, in similar time, whether or not the name exists;
//! repeated failures for one name are throttled (429).

use crate::audit::{Action, Decision};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{Body, RequestId};
use crate::audit::EventDraft;
use crate::crypto;
use crate::error::ErrorKind;
use crate::state::AppState;
use crate::store::{PrincipalKind, PrincipalRow, Unit};

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

/// Issue an access token.
#[utoipa::path(post, path = "/v1/token", tag = "tokens", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn issue_token(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    Body(req): Body<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let (kind, throttle_key) = match &req {
        TokenRequest::ClientCredentials { client_id, .. } => {
            (PrincipalKind::Client, format!("client:{client_id}"))
        }
        TokenRequest::Password { username, .. } => {
            (PrincipalKind::User, format!("user:{username}"))
        }
    };
    let kind_name = match kind {
        PrincipalKind::Client => "client",
        PrincipalKind::User => "user",
    };
    if let Some(wait) = state.throttle.check(&throttle_key) {
        let ev = EventDraft::new(
            "anonymous",
            "none",
            Action::TokenIssue,
            Decision::Denied,
            &request_id,
        )
        .reason("error", "too_many_attempts")
        .reason("kind", kind_name);
        state.sequencer.commit(Unit::event(ev)).await?;
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
            verify_password(row, password.clone()).await?
        }
    };
    let Some(principal) = principal.filter(|p| !p.disabled) else {
        state.throttle.failure(&throttle_key);
        let ev = EventDraft::new(
            "anonymous",
            "none",
            Action::TokenIssue,
            Decision::Denied,
            &request_id,
        )
        .reason("error", "invalid_credentials")
        .reason("kind", kind_name);
        state.sequencer.commit(Unit::event(ev)).await?;
        return Err(ServiceError::new(
            ErrorKind::Unauthenticated,
            "invalid_credentials",
        ));
    };
    state.throttle.success(&throttle_key);
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
    let ev = EventDraft::new(
        &principal.id.to_string(),
        &principal.role,
        Action::TokenIssue,
        Decision::Allowed,
        &request_id,
    )
    .reason("jti", &claims.jti)
    .reason("kind", kind_name);
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: lifetime,
    }))
}

/// argon2id off the async threads; unknown users are verified against a
/// dummy hash so the answer takes as long.
async fn verify_password(
    row: Option<PrincipalRow>,
    password: String,
) -> ApiResult<Option<PrincipalRow>> {
    tokio::task::spawn_blocking(move || match row {
        Some(r) if crypto::verify_password(&r.credential, &password) => Some(r),
        Some(_) => None,
        None => {
            crypto::dummy_verify(&password);
            None
        }
    })
    .await
    .map_err(ServiceError::internal)
}
