//! OAuth 2.0 as stock clients speak it: form bodies and HTTP Basic client
//! authentication at the token endpoint (RFC 6749), bearer challenges
//! (RFC 6750), introspection (RFC 7662), server metadata (RFC 8414), the
//! JWKS, and a token-signing key apart from the checkpoint key.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use pii_vault::store::{Mutation, PrincipalKind, Unit};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestVault, backends, on_each_backend, split};

const FORM: &str = "application/x-www-form-urlencoded";

/// `Authorization: Basic` with id and secret form-urlencoded first
/// (RFC 6749 §2.3.1), every byte escaped as a strict client may do.
fn basic(id: &str, secret: &str) -> String {
    let esc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", esc(id), esc(secret)))
    )
}

async fn form_post(
    v: &TestVault,
    path: &str,
    auth: Option<&str>,
    params: &[(&str, &str)],
) -> (StatusCode, Value, Option<String>) {
    let mut req = v
        .http
        .post(v.url(path))
        .header(CONTENT_TYPE, FORM)
        .body(serde_urlencoded::to_string(params).unwrap());
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, a);
    }
    let resp = req.send().await.unwrap();
    let challenge = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|h| h.to_str().unwrap().to_owned());
    let (s, b) = split(resp).await;
    (s, b, challenge)
}

async fn get_with(v: &TestVault, path: &str, auth: &str) -> (StatusCode, Value, Option<String>) {
    let resp = v
        .http
        .get(v.url(path))
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .unwrap();
    let challenge = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|h| h.to_str().unwrap().to_owned());
    let (s, b) = split(resp).await;
    (s, b, challenge)
}

fn header_kid(token: &str) -> String {
    let head = token.split('.').next().unwrap();
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

const PROFILE: &str = "/v1/customers/00000000-0000-7000-8000-000000000000?purpose=support";

#[tokio::test]
async fn form_bodies_with_basic_or_post_client_authentication_get_tokens() {
    on_each_backend(|v| async move {
        let (id, secret) = v.client("helpdesk").await;
        // client_secret_basic, form body with a scope (ignored).
        let (s, b, _) = form_post(
            &v,
            "/v1/token",
            Some(&basic(&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", "anything")],
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["token_type"], "Bearer");
        assert_eq!(b["expires_in"], 900);
        let token = b["access_token"].as_str().unwrap().to_owned();
        let (s, _, _) = get_with(&v, PROFILE, &format!("Bearer {token}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "the token works");

        // client_secret_post in a form, and in JSON with a scope.
        let (s, b, _) = form_post(
            &v,
            "/v1/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let r = v
            .http
            .post(v.url("/v1/token"))
            .json(&json!({"grant_type": "client_credentials", "client_id": id,
                          "client_secret": secret, "scope": "read write"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Basic with a JSON body naming the same client.
        let r = v
            .http
            .post(v.url("/v1/token"))
            .header(AUTHORIZATION, basic(&id, &secret))
            .json(&json!({"grant_type": "client_credentials", "client_id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn token_errors_carry_the_oauth_error_beside_the_code() {
    on_each_backend(|v| async move {
        let (id, secret) = v.client("helpdesk").await;
        // Wrong secret by Basic: 401 invalid_client with a Basic challenge.
        let (s, b, ch) = form_post(
            &v,
            "/v1/token",
            Some(&basic(&id, "wrong")),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(b["code"], "invalid_credentials");
        assert_eq!(b["error"], "invalid_client");
        assert!(ch.unwrap().starts_with("Basic realm=\"pii-vault\""));
        // Wrong secret in the body: invalid_client, bearer challenge.
        let (s, b, ch) = form_post(
            &v,
            "/v1/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "wrong"),
            ],
        )
        .await;
        assert_eq!(
            (s, &b["error"]),
            (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
        );
        assert_eq!(ch.as_deref(), Some("Bearer realm=\"pii-vault\""));
        // Another grant type.
        let (s, b, _) = form_post(
            &v,
            "/v1/token",
            None,
            &[("grant_type", "authorization_code"), ("code", "x")],
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "unsupported_grant_type");
        assert_eq!(b["error"], "unsupported_grant_type");
        // No grant type; two client authentication methods at once.
        let (s, b, _) = form_post(&v, "/v1/token", None, &[("client_id", &id)]).await;
        assert_eq!(
            (s, &b["error"]),
            (StatusCode::BAD_REQUEST, &json!("invalid_request"))
        );
        assert_eq!(b["code"], "invalid_request");
        let (s, b, _) = form_post(
            &v,
            "/v1/token",
            Some(&basic(&id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
        )
        .await;
        assert_eq!(
            (s, &b["error"]),
            (StatusCode::BAD_REQUEST, &json!("invalid_request"))
        );
        // Neither JSON nor a form.
        let r = v
            .http
            .post(v.url("/v1/token"))
            .header(CONTENT_TYPE, "text/plain")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        let (s, b) = split(r).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(b["error"], "invalid_request");
    })
    .await;
}

#[tokio::test]
async fn password_grant_in_a_form_and_invalid_grant() {
    on_each_backend(|v| async move {
        let hash = pii_vault::crypto::hash_password("correct horse battery").unwrap();
        v.state
            .sequencer
            .commit(Unit {
                mutations: vec![Mutation::InsertUser {
                    id: Uuid::now_v7(),
                    username: "erin".into(),
                    role: "dpo".into(),
                    password_hash: hash,
                    at: 0,
                }],
                events: vec![],
            })
            .await
            .unwrap();
        let ok = [
            ("grant_type", "password"),
            ("username", "erin"),
            ("password", "correct horse battery"),
            ("scope", "openid"),
        ];
        let (s, b, _) = form_post(&v, "/v1/token", None, &ok).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let bad = [
            ("grant_type", "password"),
            ("username", "erin"),
            ("password", "wrong"),
        ];
        for _ in 0..3 {
            let (s, b, _) = form_post(&v, "/v1/token", None, &bad).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED);
            assert_eq!(b["code"], "invalid_credentials");
            assert_eq!(b["error"], "invalid_grant");
        }
        let (s, b, _) = form_post(&v, "/v1/token", None, &ok).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(b["code"], "too_many_attempts");
        assert_eq!(b["error"], "invalid_grant");
    })
    .await;
}

#[tokio::test]
async fn api_401s_carry_bearer_challenges_and_the_scheme_is_case_insensitive() {
    on_each_backend(|v| async move {
        let token = v.token("helpdesk").await;
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let (s, b, _) = get_with(&v, PROFILE, &format!("{scheme} {token}")).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{scheme}: {b}");
        }
        // No credentials: a challenge without an error (RFC 6750 §3.1).
        let r = v.http.get(v.url(PROFILE)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE].to_str().unwrap(),
            "Bearer realm=\"pii-vault\""
        );
        // A forged, an expired and a malformed token: invalid_token.
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        for bad in [
            format!("Bearer {forged}"),
            "Bearer not-a-jwt".into(),
            "Basic abc".into(),
        ] {
            let (s, b, ch) = get_with(&v, PROFILE, &bad).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED);
            assert_eq!(b["code"], "unauthenticated");
            assert_eq!(b["error"], "invalid_token");
            assert_eq!(
                ch.as_deref(),
                Some("Bearer realm=\"pii-vault\", error=\"invalid_token\"")
            );
        }
        v.clock.advance_days(1);
        let (s, _, ch) = get_with(&v, PROFILE, &format!("Bearer {token}")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(ch.unwrap().contains("error=\"invalid_token\""));
    })
    .await;
}

#[tokio::test]
async fn introspection_sees_a_disabled_client_at_once() {
    on_each_backend(|v| async move {
        let (rs_id, rs_secret) = v.client("helpdesk").await;
        let (id, secret) = v.client("helpdesk").await;
        let (_, b, _) = form_post(
            &v,
            "/v1/token",
            Some(&basic(&id, &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
        let token = b["access_token"].as_str().unwrap().to_owned();
        let rs = basic(&rs_id, &rs_secret);
        let (s, b, _) =
            form_post(&v, "/v1/token/introspect", Some(&rs), &[("token", &token)]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["active"], true);
        assert_eq!(b["sub"], id.as_str());
        assert_eq!(b["client_id"], id.as_str());
        assert_eq!(b["role"], "helpdesk");
        assert_eq!(b["token_type"], "Bearer");
        assert_eq!(b["iss"], v.state.settings.issuer().as_str());
        assert!(b["exp"].as_i64().unwrap() > b["iat"].as_i64().unwrap());
        // By the resource server's own bearer token too; garbage is inactive.
        let rs_token = v.token("helpdesk").await;
        let (s, b, _) = form_post(
            &v,
            "/v1/token/introspect",
            Some(&format!("Bearer {rs_token}")),
            &[("token", "garbage"), ("token_type_hint", "access_token")],
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b, json!({"active": false}));

        v.state
            .sequencer
            .commit(Unit {
                mutations: vec![Mutation::SetClientDisabled {
                    id: id.parse().unwrap(),
                    disabled: true,
                }],
                events: vec![],
            })
            .await
            .unwrap();
        let (s, b, _) =
            form_post(&v, "/v1/token/introspect", Some(&rs), &[("token", &token)]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b, json!({"active": false}));
        assert!(
            v.state
                .store
                .principal(PrincipalKind::Client, id.parse().unwrap())
                .await
                .unwrap()
                .unwrap()
                .disabled
        );
        let events = v.audit().await;
        assert!(events.iter().any(|e| e.draft.action == "token.introspect"
            && e.draft.decision == "allowed"
            && e.draft.reasons.get("active").map(String::as_str) == Some("false")));
    })
    .await;
}

#[tokio::test]
async fn introspection_is_for_authenticated_vault_clients() {
    on_each_backend(|v| async move {
        let token = v.token("helpdesk").await;
        let (rs_id, _) = v.client("helpdesk").await;
        let (s, b, ch) = form_post(&v, "/v1/token/introspect", None, &[("token", &token)]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        assert!(ch.unwrap().starts_with("Bearer"));
        let (s, b, ch) = form_post(
            &v,
            "/v1/token/introspect",
            Some(&basic(&rs_id, "wrong")),
            &[("token", &token)],
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(b["error"], "invalid_client");
        assert!(ch.unwrap().starts_with("Basic"));
        assert!(b.get("active").is_none(), "nothing said about the token");
        // A person's token does not make a resource server.
        let hash = pii_vault::crypto::hash_password("correct horse battery").unwrap();
        v.state
            .sequencer
            .commit(Unit {
                mutations: vec![Mutation::InsertUser {
                    id: Uuid::now_v7(),
                    username: "finn".into(),
                    role: "dpo".into(),
                    password_hash: hash,
                    at: 0,
                }],
                events: vec![],
            })
            .await
            .unwrap();
        let (_, b, _) = form_post(
            &v,
            "/v1/token",
            None,
            &[
                ("grant_type", "password"),
                ("username", "finn"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
        let user = b["access_token"].as_str().unwrap().to_owned();
        let (s, b, _) = form_post(
            &v,
            "/v1/token/introspect",
            Some(&format!("Bearer {user}")),
            &[("token", &token)],
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(b["code"], "client_required");
    })
    .await;
}

#[tokio::test]
async fn discovery_names_the_endpoints_under_the_public_url() {
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |s, _| {
            s.public_url = Some("https://vault.example.com/".into());
        })
        .await;
        let r = v
            .http
            .get(v.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap();
        let (s, m) = split(r).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(m["issuer"], "https://vault.example.com");
        assert_eq!(m["token_endpoint"], "https://vault.example.com/v1/token");
        assert_eq!(
            m["jwks_uri"],
            "https://vault.example.com/.well-known/jwks.json"
        );
        assert_eq!(
            m["introspection_endpoint"],
            "https://vault.example.com/v1/token/introspect"
        );
        assert_eq!(
            m["grant_types_supported"],
            json!(["client_credentials", "password"])
        );
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
    }
    // Without public_url: http:// and the listen address.
    on_each_backend(|v| async move {
        let (_, m) = split(
            v.http
                .get(v.url("/.well-known/oauth-authorization-server"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let expected = format!("http://{}", v.state.settings.listen);
        assert_eq!(m["issuer"], expected.as_str());
    })
    .await;
}

async fn jwks(v: &TestVault) -> Vec<Value> {
    let r = v
        .http
        .get(v.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let (s, b) = split(r).await;
    assert_eq!(s, StatusCode::OK);
    b["keys"].as_array().unwrap().clone()
}

/// Verifies a token's EdDSA signature with a published JWK, as a resource
/// server would.
fn verifies_with(token: &str, jwk: &Value) -> bool {
    let (msg, sig) = token.rsplit_once('.').unwrap();
    let public = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(msg.as_bytes(), &sig)
        .is_ok()
}

#[tokio::test]
async fn the_jwks_publishes_the_token_key_rotated_apart_from_the_checkpoint_key() {
    on_each_backend(|v| async move {
        let admin = v.token("admin").await;
        let old = v.token("helpdesk").await;
        let old_kid = header_kid(&old);
        let checkpoint_kid = v.state.keys.checkpoint().signing_key().kid().to_owned();
        assert_ne!(old_kid, checkpoint_kid, "tokens have a key of their own");
        let keys = jwks(&v).await;
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["kid"], old_kid.as_str());
        assert_eq!(
            (
                &keys[0]["kty"],
                &keys[0]["crv"],
                &keys[0]["alg"],
                &keys[0]["use"]
            ),
            (
                &json!("OKP"),
                &json!("Ed25519"),
                &json!("EdDSA"),
                &json!("sig")
            )
        );
        assert!(verifies_with(&old, &keys[0]));

        let (s, r) = v
            .post(&admin, "/v1/keys/token-signing/rotate", &json!({}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(r["previous_kid"], old_kid.as_str());
        let new = v.token("helpdesk").await;
        assert_eq!(header_kid(&new), r["kid"].as_str().unwrap());
        let keys = jwks(&v).await;
        let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, vec![r["kid"].as_str().unwrap(), old_kid.as_str()]);
        assert!(verifies_with(&new, &keys[0]) && verifies_with(&old, &keys[1]));
        // The old token keeps working until it expires; checkpoints are
        // still signed by the checkpoint key.
        let (s, _) = v.get(&old, PROFILE).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(
            v.state.keys.checkpoint().signing_key().kid(),
            checkpoint_kid
        );
        let (_, pk) = v.get(&admin, "/v1/audit/public-key").await;
        assert!(!pk.to_string().contains(r["kid"].as_str().unwrap()), "{pk}");

        // Rotating the checkpoint key leaves tokens alone.
        let (s, c) = v.post(&admin, "/v1/keys/signing/rotate", &json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        assert_eq!(c["previous_kid"], checkpoint_kid.as_str());
        assert_eq!(
            header_kid(&v.token("helpdesk").await),
            r["kid"].as_str().unwrap()
        );
        assert_eq!(jwks(&v).await.len(), 2);
        let (s, _) = v
            .post(
                &admin,
                "/v1/keys/signing/rotate?revoke_previous=true",
                &json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // A suspected leak: the previous token key's tokens stop at once and
        // leave the JWKS.
        let (s, _) = v
            .post(
                &admin,
                "/v1/keys/token-signing/rotate?revoke_previous=true",
                &json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = v.get(&new, PROFILE).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let kids: Vec<String> = jwks(&v)
            .await
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        assert!(!kids.contains(&r["kid"].as_str().unwrap().to_owned()));
        let events = v.audit().await;
        assert!(events.iter().any(
            |e| e.draft.action == "keys.rotate_token_signing" && e.draft.decision == "allowed"
        ));
    })
    .await;
}

#[tokio::test]
async fn an_upgraded_vault_gets_its_own_token_key_and_keeps_earlier_tokens() {
    on_each_backend(|v| async move {
        let (id, _) = v.client("helpdesk").await;
        // What the previous version issued: a token signed by the one key
        // that also signed checkpoints.
        let now = v.state.clock.now_micros() / 1_000_000;
        let (earlier, _) = v
            .state
            .keys
            .checkpoint()
            .issue(&id, "helpdesk", "client", now, 900)
            .unwrap();
        let shared_kid = v.state.keys.checkpoint().signing_key().kid().to_owned();
        // The state migration 0008 leaves an existing vault in: its token
        // keys are a copy of its signing keys.
        v.exec(
            "DELETE FROM token_signing_keys; \
             INSERT INTO token_signing_keys \
             (kid, kek_version, sealed, public_key, active, created_at, retired_at, tokens_revoked) \
             SELECT kid, kek_version, sealed, public_key, active, created_at, retired_at, \
             tokens_revoked FROM signing_keys",
        )
        .await;
        let backend = v.backend;
        let (dir, url) = v.stop().await;
        let v = TestVault::start_with(backend, dir, url).await;
        let token_kid = v.state.keys.tokens().signing_key().kid().to_owned();
        assert_ne!(token_kid, shared_kid, "a fresh token-signing key at start-up");
        assert_eq!(v.state.keys.checkpoint().signing_key().kid(), shared_kid);
        let (s, b) = v.get(&earlier, PROFILE).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "the earlier token still works: {b}");
        let kids: Vec<String> = jwks(&v).await.iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kids, vec![token_kid.clone(), shared_kid.clone()]);
        assert_eq!(header_kid(&v.token("helpdesk").await), token_kid);
        // A restart changes nothing more.
        let backend = v.backend;
        let (dir, url) = v.stop().await;
        let v = TestVault::start_with(backend, dir, url).await;
        assert_eq!(v.state.keys.tokens().signing_key().kid(), token_kid);
        let events = v.audit().await;
        assert_eq!(
            events
                .iter()
                .filter(|e| e.draft.action == "keys.rotate_token_signing"
                    && e.draft.decision == "allowed")
                .count(),
            1
        );
    })
    .await;
}

/// The `WWW-Authenticate` of an answer, if any.
fn challenge_of(h: &reqwest::header::HeaderMap) -> Option<String> {
    h.get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_refused_request_token_gets_an_invalid_token_challenge() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        v.create(&helpdesk, &crate::helpers::ada()).await;
        // An opt-out needs no verification: it completes at once, and its
        // token expires `request_token_ttl_days` later.
        let filing = json!({"kind": "opt_out_sale", "regulation": "ccpa",
                            "identifier": {"field": "email", "value": "ada@example.com"}});
        let r = v
            .http
            .post(v.url("/v1/requests"))
            .json(&filing)
            .send()
            .await
            .unwrap();
        let (s, filed) = split(r).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{filed}");
        let id = filed["id"].as_str().unwrap().to_owned();
        let token = filed["request_token"].as_str().unwrap().to_owned();
        let path = format!("/v1/requests/{id}");
        let (s, b, _) = get_with(&v, &path, &format!("Bearer {token}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");

        let expected = Some("Bearer realm=\"pii-vault\", error=\"invalid_token\"");
        // An unknown request token, on a read and on a POST.
        let unknown = "Bearer pvr_0000000000000000000000000000000000000000000";
        let (s, b, ch) = get_with(&v, &path, unknown).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(b["error"], "invalid_token", "{b}");
        assert_eq!(ch.as_deref(), expected);
        let r = v
            .http
            .post(v.url(&format!("{path}/verify")))
            .header(AUTHORIZATION, unknown)
            .json(&json!({"code": "123456"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge_of(r.headers()).as_deref(), expected);
        // An expired one.
        let days = i64::from(v.state.settings.request_token_ttl_days) + 1;
        v.clock.advance_days(days);
        let (s, b, ch) = get_with(&v, &path, &format!("Bearer {token}")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(b["error"], "invalid_token", "{b}");
        assert_eq!(ch.as_deref(), expected);
    })
    .await;
}

#[tokio::test]
async fn a_role_refusal_carries_an_insufficient_scope_challenge() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let marketing = v.token("marketing_tool").await;
        let id = v.create(&helpdesk, &crate::helpers::ada()).await;
        let expected = Some("Bearer realm=\"pii-vault\", error=\"insufficient_scope\"");
        // A capability the role lacks: on a POST, a GET and an admin call.
        let hold = json!({"customer_id": id, "fields": ["email"], "reason": "Case 1",
                          "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"});
        let r = v
            .http
            .post(v.url("/v1/legal-holds"))
            .bearer_auth(&helpdesk)
            .json(&hold)
            .send()
            .await
            .unwrap();
        let ch = challenge_of(r.headers());
        let (s, b) = split(r).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(b["code"], "capability_required");
        assert_eq!(b["error"], "insufficient_scope", "{b}");
        assert_eq!(ch.as_deref(), expected);
        for path in ["/v1/keys", "/v1/audit"] {
            let (s, b, ch) = get_with(&v, path, &format!("Bearer {helpdesk}")).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {b}");
            assert_eq!(ch.as_deref(), expected, "{path}");
        }
        // A purpose the role may not read for.
        let (s, b, ch) = get_with(
            &v,
            &format!("/v1/customers/{id}?purpose=support"),
            &format!("Bearer {marketing}"),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(b["code"], "purpose_not_permitted");
        assert_eq!(ch.as_deref(), expected);
        // A value withheld because of how it was collected is not a matter
        // of the caller's privileges: no challenge.
        let (s, b, ch) = get_with(
            &v,
            &format!("/v1/customers/{id}/fields/phone?purpose=marketing.sms"),
            &format!("Bearer {marketing}"),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(b["code"], "not_collected_for_purpose");
        assert_eq!(ch, None);
        assert!(b.get("error").is_none(), "{b}");
    })
    .await;
}

/// The claims of a JWT, not verified.
fn claims(token: &str) -> Value {
    let body = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
}

/// The metadata's `issuer`, a fresh token's `iss`, and whether the token
/// works on the API (a missing profile: 404, not 401).
async fn issuers(base: &str, client_id: &str, secret: &str) -> (Value, Value, StatusCode) {
    let http = crate::helpers::http();
    let meta: Value = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token: Value = http
        .post(format!("{base}/v1/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": client_id,
                      "client_secret": secret}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap();
    let used = http
        .get(format!("{base}{PROFILE}"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status();
    (meta["issuer"].clone(), claims(access)["iss"].clone(), used)
}

#[tokio::test]
async fn a_tokens_iss_is_the_metadata_issuer_in_every_configuration() {
    // In process: the defaults, and a public URL.
    for public_url in [None, Some("https://vault.example.com/")] {
        for backend in backends() {
            let v = TestVault::start_adjusted(backend, |s, _| {
                s.public_url = public_url.map(str::to_owned);
            })
            .await;
            let (id, secret) = v.client("helpdesk").await;
            let (issuer, iss, used) = issuers(&v.base, &id, &secret).await;
            assert!(issuer.is_string(), "{issuer}");
            assert_eq!(iss, issuer, "public_url {public_url:?}");
            assert_eq!(used, StatusCode::NOT_FOUND, "public_url {public_url:?}");
            if public_url.is_some() {
                assert_eq!(issuer, "https://vault.example.com");
            }
        }
    }
    // The binary, configured through the environment: an explicit issuer,
    // alone or beside the public URL it names.
    for env in [
        vec![("PII_VAULT_TOKEN_ISSUER", "https://id.example.com/vault")],
        vec![
            ("PII_VAULT_PUBLIC_URL", "https://vault.example.com"),
            ("PII_VAULT_TOKEN_ISSUER", "https://vault.example.com/"),
        ],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("vault.db").display());
        let mut cmd = crate::helpers::vault_cmd(dir.path(), &db, "warn");
        for (k, val) in &env {
            cmd.env(k, val);
        }
        let vault = crate::helpers::serve(cmd);
        let creds = crate::helpers::add_client(dir.path(), &db, "helpdesk");
        let (issuer, iss, used) = issuers(
            &vault.base,
            creds["client_id"].as_str().unwrap(),
            creds["client_secret"].as_str().unwrap(),
        )
        .await;
        assert_eq!(iss, issuer, "{env:?}");
        assert_eq!(used, StatusCode::NOT_FOUND, "{env:?}");
        let expected = if env.len() == 1 {
            "https://id.example.com/vault"
        } else {
            "https://vault.example.com"
        };
        assert_eq!(issuer, expected, "{env:?}");
    }
}
