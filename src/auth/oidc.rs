//! External OpenID Connect identity providers (`[[identity_providers]]`).
//!
//! A bearer token whose `iss` names a configured provider is verified here;
//! every other token goes to the vault's own verification unchanged. A
//! provider's token is accepted when:
//!
//! - its signature verifies under a key of the provider's JWKS, found by the
//!   header's `kid`. The algorithm is pinned by the key's type (RSA: RS256,
//!   EC P-256: ES256, OKP Ed25519: EdDSA) and the header's `alg` must be
//!   that one: `none`, `HS*` and any other algorithm are refused whatever
//!   the key, so a public key can never serve as an HMAC secret;
//! - `iss` is the configured issuer, `aud` (a string or an array) holds the
//!   configured audience, `exp` is present and not past, `nbf` (when
//!   present) has come, both with [`JWT_LEEWAY_SECS`] of clock skew;
//! - `sub` is present.
//!
//! The role is the first value of the `role_claim` claim (a string or an
//! array of strings) that the provider's `roles` table maps; a valid token
//! without one is refused with 403 `role_not_mapped`. The caller's actor id
//! is `oidc:<issuer>#<sub>`.
//!
//! Keys are cached per provider. An unknown `kid`, or a cache older than
//! [`JWKS_MAX_AGE_SECS`], makes the vault fetch the JWKS again, at most once
//! per [`JWKS_REFETCH_SECS`] per provider whatever the callers send, so
//! tokens with made-up key ids cannot make the vault flood the provider.
//! The JWKS location comes from the settings or, lazily on the provider's
//! first token, from its discovery document, whose `issuer` must be the
//! configured one. When no key could be fetched yet the caller gets 503
//! `identity_provider_unavailable` and the log says why.
//!
//! Signatures are verified with `ring` directly (the vault's one crypto
//! library); outgoing HTTPS is reqwest on rustls with ring's provider.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::actor::Actor;
use crate::config::IdentityProvider;
use crate::crypto::JWT_LEEWAY_SECS;
use crate::crypto::jwt::MAX_TOKEN_LEN;
use crate::error::{ServiceError, ServiceResult};
use crate::policy::Policy;

/// Least seconds between two fetches of one provider's keys (or discovery).
pub const JWKS_REFETCH_SECS: i64 = 60;
/// A provider's keys are fetched again when the cached set is older than
/// this (so a key the provider removed stops working), seconds.
pub const JWKS_MAX_AGE_SECS: i64 = 3_600;
/// Timeout of one fetch of discovery or keys.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Discovery documents and key sets larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Longest accepted issuer and `sub` (the actor id holds both and stays
/// within the audit query's 200 characters).
const MAX_ISSUER_LEN: usize = 96;
const MAX_SUBJECT_LEN: usize = 96;
/// The actor id prefix of callers signed in by a provider.
pub const ACTOR_PREFIX: &str = "oidc:";

/// Checks the `[[identity_providers]]` settings on their own (the roles are
/// checked against the policy by [`IdentityProviders::new`]).
pub fn validate_settings(providers: &[IdentityProvider]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for p in providers {
        let at = |what: &str| format!("identity_providers (issuer {:?}): {what}", p.issuer);
        if p.issuer.is_empty() || p.issuer.len() > MAX_ISSUER_LEN {
            return Err(at(&format!("issuer must be 1–{MAX_ISSUER_LEN} characters")));
        }
        check_url(&p.issuer).map_err(|e| at(&format!("issuer {e}")))?;
        if let Some(uri) = &p.jwks_uri {
            check_url(uri).map_err(|e| at(&format!("jwks_uri {e}")))?;
        }
        if !seen.insert(p.issuer.as_str()) {
            return Err(at("the issuer is listed twice"));
        }
        if p.audience.trim().is_empty() {
            return Err(at("audience must not be empty"));
        }
        if p.role_claim.trim().is_empty() {
            return Err(at("role_claim must not be empty"));
        }
        if p.roles.is_empty() {
            return Err(at(
                "roles must map at least one claim value to a vault role",
            ));
        }
    }
    Ok(())
}

/// `https://`, or `http://` to a loopback address (a provider on the same
/// machine, or a test); no credentials, query or fragment.
fn check_url(raw: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(raw).map_err(|_| "is not a URL".to_owned())?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    let host = url.host_str().ok_or_else(|| "has no host".to_owned())?;
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("must be https:// (http:// only on a loopback address)".into()),
    }
}

/// A provider's public key, with the one algorithm it verifies.
#[derive(Clone)]
enum VerifyKey {
    /// RS256: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// ES256: the uncompressed P-256 point (`04 || x || y`).
    P256(Vec<u8>),
    /// EdDSA: the 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl VerifyKey {
    fn alg(&self) -> &'static str {
        match self {
            VerifyKey::Rsa { .. } => "RS256",
            VerifyKey::P256(_) => "ES256",
            VerifyKey::Ed25519(_) => "EdDSA",
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            VerifyKey::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
            VerifyKey::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            VerifyKey::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(msg, sig)
                .is_ok(),
        }
    }
}

/// One JWK, as far as the vault reads it.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

fn b64(s: Option<&String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s?.as_bytes()).ok()
}

/// The key's id and key, or `None` for a key the vault does not use (no
/// `kid`, not for signatures, a type or curve it does not take, an `alg`
/// other than the one its type pins, malformed).
fn parse_jwk(v: Value) -> Option<(String, VerifyKey)> {
    let jwk: Jwk = serde_json::from_value(v).ok()?;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let (n, e) = (b64(jwk.n.as_ref())?, b64(jwk.e.as_ref())?);
            VerifyKey::Rsa { n, e }
        }
        ("EC", Some("P-256")) => {
            let (x, y) = (b64(jwk.x.as_ref())?, b64(jwk.y.as_ref())?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            VerifyKey::P256([&[4u8][..], &x, &y].concat())
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64(jwk.x.as_ref())?;
            (x.len() == 32).then_some(())?;
            VerifyKey::Ed25519(x)
        }
        _ => return None,
    };
    if jwk.alg.as_deref().is_some_and(|a| a != key.alg()) {
        return None;
    }
    Some((jwk.kid?, key))
}

/// A provider's keys by `kid`, and when they were fetched.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, VerifyKey>,
    /// Seconds (vault clock); `None` before the first successful fetch.
    fetched_at: Option<i64>,
}

/// When the last fetch was tried, and the JWKS location once known.
#[derive(Default)]
struct FetchState {
    attempted_at: Option<i64>,
    jwks_uri: Option<String>,
}

struct Provider {
    settings: IdentityProvider,
    keys: RwLock<Arc<KeySet>>,
    fetch: tokio::sync::Mutex<FetchState>,
}

/// The configured identity providers and their cached keys.
#[derive(Default)]
pub struct IdentityProviders {
    providers: Vec<Provider>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for IdentityProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self
            .providers
            .iter()
            .map(|p| p.settings.issuer.as_str())
            .collect();
        f.debug_struct("IdentityProviders")
            .field("issuers", &issuers)
            .finish()
    }
}

/// The parts of a token, decoded but not yet trusted.
struct Parsed<'t> {
    alg: String,
    kid: Option<String>,
    signed: &'t str,
    signature: Vec<u8>,
    claims: Map<String, Value>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

/// Splits and decodes `token`; `None` when it is not a compact JWS with a
/// JSON object as payload.
fn parse(token: &str) -> Option<Parsed<'_>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (signed, sig) = token.rsplit_once('.')?;
    let (header, payload) = signed.split_once('.')?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.crit.is_some() {
        return None;
    }
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(Parsed {
        alg: header.alg,
        kid: header.kid,
        signed,
        signature: URL_SAFE_NO_PAD.decode(sig).ok()?,
        claims,
    })
}

fn unauthenticated(why: &'static str) -> ServiceError {
    tracing::debug!(reason = why, "identity provider token refused");
    ServiceError::unauthenticated()
}

fn unavailable() -> ServiceError {
    let mut e = ServiceError::new(
        crate::error::ErrorKind::Unavailable,
        "identity_provider_unavailable",
    )
    .detail("the identity provider's signing keys could not be fetched; retry later");
    e.retry_after = Some(u64::try_from(JWKS_REFETCH_SECS).unwrap_or(60));
    e
}

impl IdentityProviders {
    /// The providers of `settings`, each role checked against `policy`.
    /// Builds the HTTPS client (rustls on ring) only when there is one.
    pub fn new(settings: &[IdentityProvider], policy: &Policy) -> Result<Self, String> {
        validate_settings(settings)?;
        for p in settings {
            for (value, role) in &p.roles {
                if policy.role(role).is_none() {
                    return Err(format!(
                        "identity_providers (issuer {:?}): roles maps {value:?} to {role:?}, \
                         which is not a role of the policy",
                        p.issuer
                    ));
                }
            }
        }
        if settings.is_empty() {
            return Ok(Self::default());
        }
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the identity providers' HTTPS client: {e}"))?;
        let providers = settings
            .iter()
            .map(|s| Provider {
                settings: s.clone(),
                keys: RwLock::default(),
                fetch: tokio::sync::Mutex::new(FetchState {
                    attempted_at: None,
                    jwks_uri: s.jwks_uri.clone(),
                }),
            })
            .collect();
        Ok(IdentityProviders {
            providers,
            http: Some(http),
        })
    }

    /// Whether `token` claims to come from a configured provider (its `iss`,
    /// read before anything is verified, only picks the verification).
    pub fn claims_issuer(&self, token: &str) -> bool {
        !self.providers.is_empty() && self.provider_of(token).is_some()
    }

    fn provider_of(&self, token: &str) -> Option<&Provider> {
        let payload = token.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let iss = serde_json::from_slice::<Iss>(&bytes).ok()?.iss?;
        self.providers.iter().find(|p| p.settings.issuer == iss)
    }

    /// Verifies a provider's token at `now` (seconds) and returns the
    /// caller. 401 for anything wrong with the token, 403
    /// `role_not_mapped` (with the caller, role empty, for the refusal
    /// audit) for a valid token without a mapped role.
    pub async fn verify(
        &self,
        token: &str,
        now: i64,
        request_id: String,
    ) -> Result<Actor, (ServiceError, Option<Actor>)> {
        let no_actor = |e| (e, None);
        let provider = self
            .provider_of(token)
            .ok_or_else(|| unauthenticated("unknown issuer"))
            .map_err(no_actor)?;
        let t = parse(token)
            .ok_or_else(|| unauthenticated("malformed token"))
            .map_err(no_actor)?;
        let kid = t
            .kid
            .as_deref()
            .ok_or_else(|| unauthenticated("missing key id"))
            .map_err(no_actor)?;
        let key = self.key(provider, kid, now).await.map_err(no_actor)?;
        if t.alg != key.alg() {
            return Err(no_actor(unauthenticated("algorithm not allowed")));
        }
        if !key.verify(t.signed.as_bytes(), &t.signature) {
            return Err(no_actor(unauthenticated("bad signature")));
        }
        let sub = check_claims(&provider.settings, &t.claims, now).map_err(no_actor)?;
        let id = format!("{ACTOR_PREFIX}{}#{sub}", provider.settings.issuer);
        match mapped_role(&provider.settings, &t.claims) {
            Some(role) => Ok(Actor::external(id, role, request_id)),
            None => Err((
                ServiceError::insufficient_scope("role_not_mapped").detail(
                    "the token is valid but none of its role claim's values maps to a vault role",
                ),
                Some(Actor::external(id, String::new(), request_id)),
            )),
        }
    }

    /// The key `kid` of `provider`, fetching the key set again when it is
    /// unknown or the set is old, at most once per [`JWKS_REFETCH_SECS`].
    async fn key(&self, provider: &Provider, kid: &str, now: i64) -> ServiceResult<VerifyKey> {
        let fresh = |set: &KeySet| {
            set.fetched_at
                .is_some_and(|at| now - at < JWKS_MAX_AGE_SECS)
        };
        let cached = provider.snapshot();
        if fresh(&cached)
            && let Some(k) = cached.keys.get(kid)
        {
            return Ok(k.clone());
        }
        let mut fetch = provider.fetch.lock().await;
        // Another caller may have fetched while this one waited.
        let cached = provider.snapshot();
        let due = fetch
            .attempted_at
            .is_none_or(|at| now - at >= JWKS_REFETCH_SECS);
        let cached = if due && !(fresh(&cached) && cached.keys.contains_key(kid)) {
            fetch.attempted_at = Some(now);
            match self.fetch_keys(provider, &mut fetch).await {
                Ok(keys) => {
                    let set = Arc::new(KeySet {
                        keys,
                        fetched_at: Some(now),
                    });
                    *provider.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&set);
                    set
                }
                Err(why) => {
                    tracing::warn!(
                        issuer = %provider.settings.issuer,
                        error = %why,
                        "cannot fetch the identity provider's keys"
                    );
                    cached
                }
            }
        } else {
            cached
        };
        drop(fetch);
        if cached.fetched_at.is_none() {
            return Err(unavailable());
        }
        cached
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthenticated("unknown key id"))
    }

    /// Discovery (once, when the JWKS location is not known yet), then the
    /// key set.
    async fn fetch_keys(
        &self,
        provider: &Provider,
        fetch: &mut FetchState,
    ) -> Result<HashMap<String, VerifyKey>, String> {
        let http = self.http.as_ref().ok_or("no HTTPS client")?;
        let jwks_uri = match &fetch.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = discover(http, &provider.settings.issuer).await?;
                fetch.jwks_uri = Some(uri.clone());
                uri
            }
        };
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<Value>,
        }
        let jwks: Jwks = get_json(http, &jwks_uri).await?;
        Ok(jwks.keys.into_iter().filter_map(parse_jwk).collect())
    }
}

impl Provider {
    fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The JWKS location from `{issuer}/.well-known/openid-configuration`,
/// whose `issuer` must be the configured one (OpenID Connect Discovery
/// §4.3) and whose `jwks_uri` must follow the same scheme rule.
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let d: Discovery = get_json(http, &url).await?;
    if d.issuer != issuer {
        return Err("the discovery document names another issuer".into());
    }
    check_url(&d.jwks_uri).map_err(|e| format!("the discovered jwks_uri {e}"))?;
    Ok(d.jwks_uri)
}

/// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`].
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let mut resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the expected JSON: {e}"))
}

/// Checks `iss`, `aud`, `exp`, `nbf` and returns `sub`.
fn check_claims(p: &IdentityProvider, c: &Map<String, Value>, now: i64) -> ServiceResult<String> {
    if c.get("iss").and_then(Value::as_str) != Some(p.issuer.as_str()) {
        return Err(unauthenticated("wrong issuer"));
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => *a == p.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&p.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(unauthenticated("wrong audience"));
    }
    let exp = c
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| unauthenticated("missing or malformed exp"))?;
    if now > exp.saturating_add(JWT_LEEWAY_SECS) {
        return Err(unauthenticated("expired"));
    }
    match c.get("nbf") {
        None => {}
        Some(v) => {
            let nbf = v.as_i64().ok_or_else(|| unauthenticated("malformed nbf"))?;
            if nbf > now.saturating_add(JWT_LEEWAY_SECS) {
                return Err(unauthenticated("not yet valid"));
            }
        }
    }
    let sub = c
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_LEN)
        .filter(|s| !s.chars().any(char::is_control))
        .ok_or_else(|| unauthenticated("missing or malformed sub"))?;
    Ok(sub.to_owned())
}

/// The role of the first value of the role claim that `roles` maps.
fn mapped_role(p: &IdentityProvider, c: &Map<String, Value>) -> Option<String> {
    let values: Vec<&str> = match c.get(&p.role_claim)? {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    values.into_iter().find_map(|v| p.roles.get(v)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> IdentityProvider {
        IdentityProvider {
            issuer: "https://login.example.com/".into(),
            audience: "pii-vault".into(),
            jwks_uri: None,
            role_claim: "groups".into(),
            roles: [
                ("vault-helpdesk".to_owned(), "helpdesk".to_owned()),
                ("vault-dpo".to_owned(), "dpo".to_owned()),
            ]
            .into(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn https_is_required_except_on_loopback() {
        for ok in [
            "https://login.example.com/",
            "http://127.0.0.1:8080/",
            "http://[::1]:9000/realms/x",
            "http://localhost/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for refused in [
            "http://login.example.com/",
            "http://10.0.0.1/",
            "ftp://login.example.com/",
            "https://user:pw@login.example.com/",
            "https://login.example.com/?x=1",
            "login.example.com",
        ] {
            assert!(check_url(refused).is_err(), "{refused}");
        }
        let mut p = provider();
        p.jwks_uri = Some("http://keys.example.com/jwks".into());
        let err = validate_settings(&[p]).unwrap_err();
        assert!(err.contains("jwks_uri"), "{err}");
    }

    #[test]
    fn settings_need_an_audience_a_claim_roles_and_distinct_issuers() {
        assert_eq!(validate_settings(&[provider()]), Ok(()));
        let mut p = provider();
        p.audience = " ".into();
        assert!(validate_settings(&[p]).unwrap_err().contains("audience"));
        let mut p = provider();
        p.roles.clear();
        assert!(validate_settings(&[p]).unwrap_err().contains("roles"));
        let mut p = provider();
        p.issuer = format!("https://{}.example.com/", "x".repeat(90));
        assert!(validate_settings(&[p]).unwrap_err().contains("issuer"));
        let err = validate_settings(&[provider(), provider()]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn the_first_mapped_value_gives_the_role() {
        let p = provider();
        let c = claims(json!({"groups": ["staff", "vault-dpo", "vault-helpdesk"]}));
        assert_eq!(mapped_role(&p, &c).as_deref(), Some("dpo"));
        let c = claims(json!({"groups": "vault-helpdesk"}));
        assert_eq!(mapped_role(&p, &c).as_deref(), Some("helpdesk"));
        for none in [
            json!({"groups": ["staff"]}),
            json!({"groups": 7}),
            json!({"roles": ["vault-dpo"]}),
            json!({}),
        ] {
            assert_eq!(mapped_role(&p, &claims(none.clone())), None, "{none}");
        }
    }

    #[test]
    fn claims_are_checked_with_leeway() {
        let p = provider();
        let base =
            json!({"iss": p.issuer, "aud": "pii-vault", "sub": "s1", "exp": 1_000, "nbf": 900});
        assert_eq!(check_claims(&p, &claims(base.clone()), 950).unwrap(), "s1");
        let with = |k: &str, v: Value| {
            let mut c = claims(base.clone());
            c.insert(k.into(), v);
            c
        };
        let ok = |c: &Map<String, Value>, now| check_claims(&p, c, now).is_ok();
        assert!(ok(&with("aud", json!(["other", "pii-vault"])), 950));
        assert!(!ok(&with("aud", json!("other")), 950));
        assert!(!ok(&with("aud", json!(["other"])), 950));
        assert!(!ok(&with("iss", json!("https://evil.example.com/")), 950));
        assert!(ok(&claims(base.clone()), 1_000 + JWT_LEEWAY_SECS));
        assert!(!ok(&claims(base.clone()), 1_001 + JWT_LEEWAY_SECS));
        assert!(
            !ok(&with("exp", json!("99999999999")), 950),
            "a string is no exp"
        );
        assert!(ok(&claims(base.clone()), 900 - JWT_LEEWAY_SECS));
        assert!(!ok(&claims(base.clone()), 899 - JWT_LEEWAY_SECS));
        assert!(!ok(&with("sub", json!("")), 950));
        assert!(!ok(&with("sub", json!("a\nb")), 950));
        let mut no_exp = claims(base.clone());
        no_exp.remove("exp");
        assert!(!ok(&no_exp, 950));
        let mut no_nbf = claims(base);
        no_nbf.remove("nbf");
        assert!(ok(&no_nbf, 950));
    }

    #[test]
    fn the_key_type_pins_the_algorithm() {
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": URL_SAFE_NO_PAD.encode([7u8; 32])});
        assert_eq!(parse_jwk(ed.clone()).unwrap().1.alg(), "EdDSA");
        let mut wrong_alg = ed.clone();
        wrong_alg["alg"] = json!("HS256");
        assert!(parse_jwk(wrong_alg).is_none());
        let mut enc = ed.clone();
        enc["use"] = json!("enc");
        assert!(parse_jwk(enc).is_none());
        let mut no_kid = ed;
        no_kid.as_object_mut().unwrap().remove("kid");
        assert!(parse_jwk(no_kid).is_none());
        let oct = json!({"kty": "oct", "kid": "k", "k": "c2VjcmV0"});
        assert!(parse_jwk(oct).is_none());
        let p384 = json!({"kty": "EC", "crv": "P-384", "kid": "k", "x": "AA", "y": "AA"});
        assert!(parse_jwk(p384).is_none());
    }

    #[test]
    fn roles_must_exist_in_the_policy() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let policy = Policy::load_dir(&dir).unwrap();
        assert!(IdentityProviders::new(&[], &policy).is_ok());
        let mut p = provider();
        p.roles.insert("vault-root".into(), "superuser".into());
        let err = IdentityProviders::new(&[p], &policy).unwrap_err();
        assert!(
            err.contains("superuser") && err.contains("not a role"),
            "{err}"
        );
    }
}
