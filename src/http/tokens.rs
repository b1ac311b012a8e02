//! `POST /v1/token` (RFC 6749): client credentials for machines, passwords
//! for people, in a JSON or an `application/x-www-form-urlencoded` body.
//! Clients authenticate by HTTP Basic (`client_secret_basic`, id and secret
//! form-urlencoded first, RFC 6749 §2.3.1) or in the body
//! (`client_secret_post`). `scope` is accepted and ignored: the role decides
//! what a token allows.
//!
//! The same answer, in similar time, whether or not the name exists;
//! repeated failures for one name are throttled (429). Names over 256 bytes
//! are refused (400) before any lookup; every password verification (and
//! the dummy one for an unknown name) waits for the one limiter of password
//! work, 503 `unavailable` when it is full. Errors carry RFC 6749's `error`
//! beside `code`.

use crate::audit::{Action, Decision};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{Client, RequestId, safe_data_error};
use crate::actor::{Actor, ClientAddr};
use crate::audit::EventDraft;
use crate::crypto;
use crate::error::ErrorKind;
use crate::state::AppState;
use crate::store::{PrincipalKind, PrincipalRow, Unit};
use zeroize::Zeroizing;

/// A token request, as JSON (unknown members refused) or as a form (unknown
/// parameters ignored, RFC 6749 §3.2).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `client_credentials` (machine clients) or `password` (people).
    pub grant_type: String,
    /// `client_credentials` with `client_secret_post`; with HTTP Basic it
    /// may be repeated here and must then be the same.
    pub client_id: Option<String>,
    /// `client_credentials` with `client_secret_post`.
    pub client_secret: Option<String>,
    /// `password` grant.
    pub username: Option<String>,
    /// `password` grant.
    pub password: Option<String>,
    /// Accepted and ignored: the caller's role decides what the token allows.
    pub scope: Option<String>,
}

/// The form body of a token request (same parameters as [`TokenRequest`]).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenForm {
    pub grant_type: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub scope: Option<String>,
}

impl From<TokenForm> for TokenRequest {
    fn from(f: TokenForm) -> Self {
        TokenRequest {
            grant_type: f.grant_type,
            client_id: f.client_id,
            client_secret: f.client_secret,
            username: f.username,
            password: f.password,
            scope: f.scope,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// Longer client ids and usernames are refused (400) before any lookup.
pub const MAX_NAME_BYTES: usize = 256;

/// Who asks for a token, once the request is read.
enum Grant {
    Client {
        id: String,
        secret: Zeroizing<String>,
        /// The credentials came by HTTP Basic.
        basic: bool,
    },
    Password {
        username: String,
        password: Zeroizing<String>,
    },
}

impl Grant {
    fn kind(&self) -> PrincipalKind {
        match self {
            Grant::Client { .. } => PrincipalKind::Client,
            Grant::Password { .. } => PrincipalKind::User,
        }
    }
    fn name(&self) -> &str {
        match self {
            Grant::Client { id, .. } => id,
            Grant::Password { username, .. } => username,
        }
    }
    /// The refusal of wrong credentials (RFC 6749 §5.2: `invalid_client`
    /// for a client, with a Basic challenge when Basic was used;
    /// `invalid_grant` for a password).
    fn refuse(&self, e: ServiceError) -> ServiceError {
        match self {
            Grant::Client { basic: true, .. } => e.oauth("invalid_client").basic_challenge(),
            Grant::Client { .. } => e.oauth("invalid_client"),
            Grant::Password { .. } => e.oauth("invalid_grant"),
        }
    }
}

fn bad(detail: impl Into<String>) -> ServiceError {
    ServiceError::invalid_request(detail).oauth("invalid_request")
}

/// The body as a [`TokenRequest`], by its content type.
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<TokenRequest, ServiceError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "application/json" => serde_json::from_slice::<TokenRequest>(body)
            .map_err(|e| bad(safe_data_error(&e.to_string()))),
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes::<TokenForm>(body)
            .map(TokenRequest::from)
            .map_err(|e| bad(safe_data_error(&e.to_string()))),
        _ => Err(
            ServiceError::new(ErrorKind::UnsupportedMediaType, "unsupported_media_type")
                .detail("send the body as application/json or application/x-www-form-urlencoded")
                .oauth("invalid_request"),
        ),
    }
}

/// Decodes one form-urlencoded component of Basic credentials.
fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// `Authorization: Basic` client credentials (RFC 6749 §2.3.1), when sent.
/// Other schemes are no client authentication and are ignored here.
pub fn basic_credentials(
    headers: &HeaderMap,
) -> Result<Option<(String, Zeroizing<String>)>, ServiceError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        ServiceError::new(ErrorKind::Unauthenticated, "invalid_credentials")
            .detail("the Basic credentials could not be read")
            .oauth("invalid_client")
            .basic_challenge()
    };
    let Some((scheme, rest)) = value.to_str().ok().and_then(|v| v.trim().split_once(' ')) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let raw = Zeroizing::new(STANDARD.decode(rest.trim()).map_err(|_| malformed())?);
    let text = std::str::from_utf8(&raw).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let id = form_decode(id).ok_or_else(malformed)?;
    let secret = Zeroizing::new(form_decode(secret).ok_or_else(malformed)?);
    Ok(Some((id, secret)))
}

/// Reads the grant and the client authentication; refuses requests that are
/// incomplete, ambiguous or of another grant type.
fn grant(req: TokenRequest, basic: Option<(String, Zeroizing<String>)>) -> ApiResult<Grant> {
    let grant = match req.grant_type.as_str() {
        "client_credentials" => match basic {
            Some(_) if req.client_secret.is_some() => {
                return Err(bad(
                    "authenticate the client one way: HTTP Basic or client_secret, not both",
                ));
            }
            Some((id, _)) if req.client_id.as_ref().is_some_and(|c| *c != id) => {
                return Err(bad("client_id differs from the HTTP Basic user").field("client_id"));
            }
            Some((id, secret)) => Grant::Client {
                id,
                secret,
                basic: true,
            },
            None => Grant::Client {
                id: req
                    .client_id
                    .ok_or_else(|| bad("client_id is missing").field("client_id"))?,
                secret: Zeroizing::new(
                    req.client_secret
                        .ok_or_else(|| bad("client_secret is missing").field("client_secret"))?,
                ),
                basic: false,
            },
        },
        "password" => Grant::Password {
            username: req
                .username
                .ok_or_else(|| bad("username is missing").field("username"))?,
            password: Zeroizing::new(
                req.password
                    .ok_or_else(|| bad("password is missing").field("password"))?,
            ),
        },
        _ => {
            return Err(ServiceError::bad_request("unsupported_grant_type")
                .detail("grant_type must be client_credentials or password")
                .field("grant_type")
                .oauth("unsupported_grant_type"));
        }
    };
    if grant.name().len() > MAX_NAME_BYTES {
        let field = match grant {
            Grant::Client { .. } => "client_id",
            Grant::Password { .. } => "username",
        };
        return Err(bad(format!("{field} is longer than {MAX_NAME_BYTES} bytes")).field(field));
    }
    Ok(grant)
}

/// The principal the credentials prove, if they do (disabled ones do not).
async fn authenticate(state: &AppState, grant: &Grant) -> ApiResult<Option<PrincipalRow>> {
    let principal = match grant {
        Grant::Client { id, secret, .. } => {
            let row = match id.parse::<Uuid>() {
                Ok(id) => state.store.principal(PrincipalKind::Client, id).await?,
                Err(_) => None,
            };
            let presented = crypto::sha256_hex(secret.as_str());
            row.filter(|r| crypto::constant_time_eq(r.credential.as_bytes(), presented.as_bytes()))
        }
        // Unknown users are verified against a dummy hash, so the answer
        // takes as long; both through the one limiter of password work (the
        // console's sign-in uses the same check).
        Grant::Password { username, password } => {
            crate::auth::session::verify_user(state, username, password.clone()).await?
        }
    };
    Ok(principal.filter(|p| !p.disabled))
}

fn kind_name(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::Client => "client",
        PrincipalKind::User => "user",
    }
}

/// Issue an access token (RFC 6749 §4.4 client credentials, §4.3 password).
///
/// The body is JSON or `application/x-www-form-urlencoded`. Clients
/// authenticate by HTTP Basic (`client_secret_basic`) or with
/// `client_id`/`client_secret` in the body (`client_secret_post`); `scope`
/// is accepted and ignored. Errors carry RFC 6749's `error` beside `code`.
#[utoipa::path(post, path = "/v1/token", tag = "tokens", operation_id = "issue_token",
    request_body(content(
        (TokenRequest = "application/json"),
        (TokenForm = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "A bearer token", body = TokenResponse),
        (status = 400, description = "`invalid_request` or `unsupported_grant_type`", body = Problem),
        (status = 401, description = "`invalid_credentials` (`error`: `invalid_client` or `invalid_grant`)", body = Problem),
        (status = 413, description = "The body is too large", body = Problem),
        (status = 415, description = "Neither JSON nor a form", body = Problem),
        (status = 429, description = "`too_many_attempts`", body = Problem),
        (status = 503, description = "Try again shortly", body = Problem)),
    security((), ("basic" = [])))]
pub async fn issue_token(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    Client(addr): Client,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<TokenResponse>> {
    let req = parse_body(&headers, &body)?;
    let grant = grant(req, basic_credentials(&headers)?)?;
    let kind = grant.kind();
    let refused = |error: &str| refusal(&request_id, &addr, kind, error);
    if let Some(wait) = state.throttle.check(kind, grant.name()) {
        state
            .sequencer
            .commit(Unit::event(refused("too_many_attempts")))
            .await?;
        return Err(grant.refuse(
            ServiceError::too_many("too_many_attempts", wait)
                .detail("too many failed attempts; try again later"),
        ));
    }
    let Some(principal) = authenticate(&state, &grant).await? else {
        state.throttle.failure(kind, grant.name());
        state
            .sequencer
            .commit(Unit::event(refused("invalid_credentials")))
            .await?;
        return Err(grant.refuse(ServiceError::new(
            ErrorKind::Unauthenticated,
            "invalid_credentials",
        )));
    };
    state.throttle.success(kind, grant.name());
    issue(&state, kind, &principal, request_id, addr).await
}

/// A refused caller is nobody yet: its address is recorded hashed.
fn refusal(
    request_id: &str,
    addr: &Option<ClientAddr>,
    kind: PrincipalKind,
    error: &str,
) -> EventDraft {
    let ev = EventDraft::new(
        "anonymous",
        "none",
        Action::TokenIssue,
        Decision::Denied,
        request_id,
    )
    .reason("error", error)
    .reason("kind", kind_name(kind));
    match addr {
        Some(a) => a.mark(ev, false),
        None => ev,
    }
}

async fn issue(
    state: &AppState,
    kind: PrincipalKind,
    principal: &PrincipalRow,
    request_id: String,
    addr: Option<ClientAddr>,
) -> ApiResult<Json<TokenResponse>> {
    let now = state.clock.now_micros() / 1_000_000;
    let lifetime = state.settings.token_lifetime_secs;
    let (token, claims) = state
        .keys
        .tokens()
        .issue(
            &principal.id.to_string(),
            &principal.role,
            kind_name(kind),
            now,
            lifetime,
        )
        .map_err(ServiceError::internal)?;
    let actor = Actor::staff(
        kind,
        principal.id.to_string(),
        principal.role.clone(),
        request_id,
    )
    .from_addr(addr);
    let ev = actor
        .event(Action::TokenIssue, Decision::Allowed)
        .reason("jti", &claims.jti)
        .reason("kind", kind_name(kind));
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: lifetime,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(raw));
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let (id, secret) = basic_credentials(&basic("a%3Ab+c:s%2Bt+u%25"))
            .unwrap()
            .unwrap();
        assert_eq!(id, "a:b c");
        assert_eq!(secret.as_str(), "s+t u%");
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_none());
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert!(basic_credentials(&bearer).unwrap().is_none());
    }

    #[test]
    fn malformed_basic_credentials_are_invalid_client() {
        for raw in ["no-colon", "%FF:x"] {
            let e = basic_credentials(&basic(raw)).unwrap_err();
            assert_eq!(e.oauth_error, Some("invalid_client"));
            assert!(e.basic_challenge);
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "basic !!!".parse().unwrap());
        assert_eq!(
            basic_credentials(&h).unwrap_err().code,
            "invalid_credentials"
        );
    }
}
