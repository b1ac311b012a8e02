//! OAuth 2.0 around the token endpoint: token introspection (RFC 7662),
//! authorization server metadata (RFC 8414) and the public JWKS of the
//! token-signing keys (RFC 7517).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiResult, Problem, ServiceError};
use super::extract::{RequestId, client_addr, noted, safe_data_error};
use super::tokens::basic_credentials;
use crate::actor::{Actor, ActorKind};
use crate::audit::{Action, Decision};
use crate::crypto;
use crate::error::ErrorKind;
use crate::state::AppState;
use crate::store::{PrincipalKind, Unit};
use zeroize::Zeroizing;

/// An introspection request as JSON (unknown members refused).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectRequest {
    /// The access token to look at.
    pub token: String,
    /// Accepted and ignored: the vault issues access tokens only.
    pub token_type_hint: Option<String>,
}

/// The form body of an introspection request (RFC 7662 §2.1).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct IntrospectForm {
    /// The access token to look at.
    pub token: String,
    /// Accepted and ignored: the vault issues access tokens only.
    pub token_type_hint: Option<String>,
}

/// RFC 7662 §2.2: `{"active": false}` alone, or the token's facts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    /// Client id or user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The principal's role now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `client` or `user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The client id, for a client's token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Always `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// The vault client asking: by HTTP Basic client credentials or by a
/// client's bearer token. A user's token is refused (403).
pub struct IntrospectingClient(pub Actor);

impl FromRequestParts<AppState> for IntrospectingClient {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ServiceError> {
        let Some((id, secret)) = basic_credentials(&parts.headers)? else {
            let actor = Actor::from_request_parts(parts, state).await?;
            if actor.kind != ActorKind::Client {
                return Err(ServiceError::insufficient_scope("client_required")
                    .detail("token introspection is for vault clients"));
            }
            return Ok(IntrospectingClient(actor));
        };
        let refused = || {
            ServiceError::new(ErrorKind::Unauthenticated, "invalid_credentials")
                .oauth("invalid_client")
                .basic_challenge()
        };
        if let Some(wait) = state.throttle.check(PrincipalKind::Client, &id) {
            return Err(ServiceError::too_many("too_many_attempts", wait)
                .detail("too many failed attempts; try again later")
                .oauth("invalid_client"));
        }
        let row = match id.parse::<Uuid>() {
            Ok(uuid) => state.store.principal(PrincipalKind::Client, uuid).await?,
            Err(_) => None,
        };
        let presented = crypto::sha256_hex(secret.as_str());
        let Some(row) = row
            .filter(|r| crypto::constant_time_eq(r.credential.as_bytes(), presented.as_bytes()))
            .filter(|r| !r.disabled)
        else {
            state.throttle.failure(PrincipalKind::Client, &id);
            return Err(refused());
        };
        state.throttle.success(PrincipalKind::Client, &id);
        let request_id = RequestId::from_request_parts(parts, state)
            .await
            .map(|r| r.0)
            .unwrap_or_default();
        let actor = Actor::staff(
            PrincipalKind::Client,
            row.id.to_string(),
            row.role,
            request_id,
        )
        .from_addr(client_addr(parts, state));
        Ok(IntrospectingClient(noted(parts, actor)))
    }
}

/// What the vault says about `token` now: valid signature and times, and a
/// principal that still exists, is enabled and has not reset its password
/// since the token was issued.
async fn look_at(state: &AppState, token: &str) -> ApiResult<Introspection> {
    let now = state.clock.now_micros() / 1_000_000;
    let Ok(claims) = state.keys.tokens().verify(token, now) else {
        return Ok(Introspection::default());
    };
    let kind = match claims.kind.as_str() {
        "client" => PrincipalKind::Client,
        "user" => PrincipalKind::User,
        _ => return Ok(Introspection::default()),
    };
    let Ok(id) = claims.sub.parse::<Uuid>() else {
        return Ok(Introspection::default());
    };
    let Some(principal) = state
        .store
        .principal(kind, id)
        .await?
        .filter(|p| p.accepts_token_issued_at(claims.iat))
    else {
        return Ok(Introspection::default());
    };
    Ok(Introspection {
        active: true,
        client_id: (kind == PrincipalKind::Client).then(|| claims.sub.clone()),
        sub: Some(claims.sub),
        role: Some(principal.role),
        kind: Some(claims.kind),
        token_type: Some("Bearer".into()),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        nbf: Some(claims.nbf),
        iss: Some(claims.iss),
        aud: Some(claims.aud),
        jti: Some(claims.jti),
    })
}

/// The `token` parameter of a form (RFC 7662) or JSON body.
fn token_of(headers: &HeaderMap, body: &[u8]) -> ApiResult<Zeroizing<String>> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let bad =
        |e: String| ServiceError::invalid_request(safe_data_error(&e)).oauth("invalid_request");
    match essence.as_str() {
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes::<IntrospectForm>(body)
            .map(|f| Zeroizing::new(f.token))
            .map_err(|e| bad(e.to_string())),
        "application/json" => serde_json::from_slice::<IntrospectRequest>(body)
            .map(|r| Zeroizing::new(r.token))
            .map_err(|e| bad(e.to_string())),
        _ => Err(
            ServiceError::new(ErrorKind::UnsupportedMediaType, "unsupported_media_type")
                .detail("send the body as application/x-www-form-urlencoded")
                .oauth("invalid_request"),
        ),
    }
}

/// Introspect a vault access token (RFC 7662).
///
/// For resource servers that must see a disabled client or user at once.
/// The caller is a vault client, by HTTP Basic or its bearer token.
#[utoipa::path(post, path = "/v1/token/introspect", tag = "tokens",
    operation_id = "introspect_token",
    request_body(content(
        (IntrospectForm = "application/x-www-form-urlencoded"),
        (IntrospectRequest = "application/json"))),
    responses(
        (status = 200, description = "`active` and, for an active token, its facts", body = Introspection),
        (status = 400, description = "No `token` parameter", body = Problem),
        (status = 401, description = "The calling client is not authenticated", body = Problem),
        (status = 403, description = "The caller is not a vault client", body = Problem),
        (status = 415, description = "Not a form body", body = Problem),
        (status = 429, description = "Too many failed client authentications", body = Problem),
        (status = 503, description = "Try again shortly", body = Problem)),
    security(("basic" = []), ("bearer" = [])))]
pub async fn introspect(
    State(state): State<AppState>,
    IntrospectingClient(caller): IntrospectingClient,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Introspection>> {
    let token = token_of(&headers, &body)?;
    let answer = look_at(&state, &token).await?;
    let mut ev = caller
        .event(Action::TokenIntrospect, Decision::Allowed)
        .reason("active", if answer.active { "true" } else { "false" });
    if let (Some(sub), Some(kind)) = (&answer.sub, &answer.kind) {
        ev = ev.reason("token_sub", sub).reason("token_kind", kind);
    }
    state.sequencer.commit(Unit::event(ev)).await?;
    Ok(Json(answer))
}

/// RFC 8414 authorization server metadata.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerMetadata {
    /// The issuer: every vault token's `iss` (`public_url`, or
    /// `token_issuer`).
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// Empty: the vault has no authorization endpoint.
    pub response_types_supported: Vec<String>,
    pub service_documentation: String,
}

/// OAuth 2.0 authorization server metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "tokens",
    operation_id = "oauth_metadata",
    responses((status = 200, description = "Where the token, introspection and key endpoints are", body = ServerMetadata)),
    security(()))]
pub async fn metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    let base = state.settings.public_url();
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Json(ServerMetadata {
        issuer: state.settings.issuer(),
        token_endpoint: format!("{base}/v1/token"),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        introspection_endpoint: format!("{base}/v1/token/introspect"),
        grant_types_supported: strings(&["client_credentials", "password"]),
        token_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
        ]),
        introspection_endpoint_auth_methods_supported: strings(&["client_secret_basic"]),
        response_types_supported: Vec::new(),
        service_documentation: format!("{base}/openapi.json"),
    })
}

/// One public key (RFC 8037: Ed25519 as an `OKP` key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The raw public key, base64url without padding.
    pub x: String,
    /// The key id tokens name in their header.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// The token-signing keys (RFC 7517): the current key, and earlier keys
/// while tokens they signed may still be valid.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens", operation_id = "jwks",
    responses((status = 200, description = "The public keys that verify vault access tokens", body = JwkSet)),
    security(()))]
pub async fn jwks(State(state): State<AppState>) -> Json<JwkSet> {
    let tokens = state.keys.tokens();
    let keys = tokens
        .accepted_keys()
        .map(|(kid, key)| Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(key),
            kid: kid.clone(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        })
        .collect();
    Json(JwkSet { keys })
}
