//! Token attacks, table-driven: every forged, stale, misdirected or revoked
//! credential is refused (401 `unauthenticated`, or 403 where the credential
//! is genuine but not for this call) on every staff endpoint probed, and
//! the refusal never echoes the token.

use base64::Engine;
use pii_vault::store::{Mutation, Unit};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_secs(v: &TestVault) -> i64 {
    use pii_vault::clock::Clock;
    v.clock.now_micros() / 1_000_000
}

/// Claims of a genuine token for `sub`, valid now for 15 minutes.
fn claims(v: &TestVault, sub: &str, role: &str) -> Value {
    let now = now_secs(v);
    json!({
        "sub": sub, "role": role, "kind": "client",
        "iss": v.state.settings.issuer(), "aud": "pii-vault",
        "iat": now, "nbf": now, "exp": now + 900,
        "jti": b64url(Uuid::now_v7().as_bytes()),
    })
}

/// A token with `header` and `payload`, signed with the vault's own signing
/// key: everything but what the case changes is genuine.
fn signed(v: &TestVault, header: &Value, payload: &Value) -> String {
    let msg = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes())
    );
    let sig = v.state.keys.tokens().signing_key().sign(msg.as_bytes());
    format!("{msg}.{}", b64url(&sig))
}

fn eddsa_header(v: &TestVault) -> Value {
    let kid = v.state.keys.tokens().signing_key().kid().to_owned();
    json!({"typ": "JWT", "alg": "EdDSA", "kid": kid})
}

/// Runs `f` on `payload` and re-signs: a correctly signed token whose claims
/// were changed.
fn with_claims(v: &TestVault, sub: &str, role: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut p = claims(v, sub, role);
    f(&mut p);
    signed(v, &eddsa_header(v), &p)
}

async fn client_token(v: &TestVault, id: &str, secret: &str) -> String {
    let (s, b) = split(
        v.http
            .post(v.url("/v1/token"))
            .json(&json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["access_token"].as_str().unwrap().to_owned()
}

struct Probe {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn probe(method: Method, path: impl Into<String>, body: Option<Value>) -> Probe {
    Probe {
        method,
        path: path.into(),
        body,
    }
}

async fn call(v: &TestVault, token: &str, p: &Probe) -> (StatusCode, Value, String) {
    let mut req = v
        .http
        .request(p.method.clone(), v.url(&p.path))
        .bearer_auth(token);
    if let Some(b) = &p.body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body, text)
}

#[tokio::test]
async fn every_forged_stale_or_misdirected_token_is_refused() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let customer = v.create(&helpdesk, &ada()).await;

        // The genuine principal every forgery below claims to be.
        let (hid, hsecret) = v.client("helpdesk").await;
        let genuine = client_token(&v, &hid, &hsecret).await;
        let parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
        let payload = parts[1].clone();

        // A client that is disabled after getting its token.
        let (did, dsecret) = v.client("helpdesk").await;
        let disabled = client_token(&v, &did, &dsecret).await;
        v.state
            .sequencer
            .commit(Unit {
                mutations: vec![Mutation::SetClientDisabled {
                    id: did.parse().unwrap(),
                    disabled: true,
                }],
                events: vec![],
            })
            .await
            .unwrap();

        // A customer's request token, from filing without any token.
        let (s, filed) = split(
            v.http
                .post(v.url("/v1/requests"))
                .json(&json!({"kind": "access", "regulation": "gdpr",
                              "identifier": {"field": "email", "value": "ada@example.com"}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{filed}");
        let request_token = filed["request_token"].as_str().unwrap().to_owned();
        let own_request = filed["id"].as_str().unwrap().to_owned();
        let dpo = v.token("dpo").await;
        let (s, other) = v
            .post(
                &dpo,
                "/v1/requests",
                &json!({"kind": "access", "regulation": "gdpr", "customer_id": customer,
                        "verified_by": "id_document_checked"}),
            )
            .await;
        assert!(s.is_success(), "{other}");
        let other_request = other["id"].as_str().unwrap().to_owned();

        let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&parts[2])
            .unwrap();
        sig[7] ^= 0x20;
        let public_key = v.state.keys.tokens().signing_key().public_key();
        let hs256_header = b64url(br#"{"typ":"JWT","alg":"HS256"}"#);
        let hs256_msg = format!("{hs256_header}.{payload}");
        let hs256 = |key: &[u8]| {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            format!(
                "{hs256_msg}.{}",
                b64url(ring::hmac::sign(&k, hs256_msg.as_bytes()).as_ref())
            )
        };
        let kid = v.state.keys.tokens().signing_key().kid().to_owned();
        let now = now_secs(&v);
        let unknown_principal = Uuid::now_v7().to_string();

        // (case, token, expected status)
        let cases: Vec<(&str, String, StatusCode)> = vec![
            (
                "alg none",
                format!("{}.{payload}.", b64url(br#"{"typ":"JWT","alg":"none"}"#)),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "alg none with the kid",
                format!(
                    "{}.{payload}.{}",
                    b64url(
                        json!({"typ": "JWT", "alg": "none", "kid": kid})
                            .to_string()
                            .as_bytes()
                    ),
                    parts[2]
                ),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "HS256 keyed with the raw public key",
                hs256(&public_key),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "HS256 keyed with the base64 public key",
                hs256(
                    base64::engine::general_purpose::STANDARD
                        .encode(public_key)
                        .as_bytes(),
                ),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "forged signature",
                format!("{}.{payload}.{}", parts[0], b64url(&sig)),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "signature of another token",
                {
                    let other = client_token(&v, &hid, &hsecret).await;
                    let o: Vec<&str> = other.split('.').collect();
                    format!("{}.{payload}.{}", parts[0], o[2])
                },
                StatusCode::UNAUTHORIZED,
            ),
            (
                "no signature",
                format!("{}.{payload}", parts[0]),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "unknown kid",
                signed(
                    &v,
                    &json!({"typ": "JWT", "alg": "EdDSA", "kid": "k-unknown"}),
                    &claims(&v, &hid, "helpdesk"),
                ),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "no kid",
                signed(
                    &v,
                    &json!({"typ": "JWT", "alg": "EdDSA"}),
                    &claims(&v, &hid, "helpdesk"),
                ),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "wrong iss",
                with_claims(&v, &hid, "helpdesk", |c| {
                    c["iss"] = json!("https://evil.example")
                }),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "wrong aud",
                with_claims(&v, &hid, "helpdesk", |c| {
                    c["aud"] = json!("another-service")
                }),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "aud as a list with the right one and another",
                with_claims(&v, &hid, "helpdesk", |c| {
                    c["aud"] = json!(["x", "pii-vault"])
                }),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "expired",
                with_claims(&v, &hid, "helpdesk", |c| {
                    c["iat"] = json!(now - 7200);
                    c["nbf"] = json!(now - 7200);
                    c["exp"] = json!(now - 3600);
                }),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "nbf in the future",
                with_claims(&v, &hid, "helpdesk", |c| {
                    c["nbf"] = json!(now + 3600);
                    c["exp"] = json!(now + 7200);
                }),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "missing exp",
                with_claims(&v, &hid, "helpdesk", |c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "unknown principal",
                with_claims(&v, &unknown_principal, "dpo", |_| {}),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "client id claimed as a user",
                with_claims(&v, &hid, "helpdesk", |c| c["kind"] = json!("user")),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "unknown principal kind",
                with_claims(&v, &hid, "helpdesk", |c| c["kind"] = json!("customer")),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "token of a disabled client",
                disabled,
                StatusCode::UNAUTHORIZED,
            ),
            (
                "garbage",
                "not.a.token".to_owned(),
                StatusCode::UNAUTHORIZED,
            ),
            ("empty", String::new(), StatusCode::UNAUTHORIZED),
            (
                "customer's request token",
                request_token.clone(),
                StatusCode::UNAUTHORIZED,
            ),
        ];

        let staff_probes = || {
            vec![
                probe(Method::GET, "/v1/policy", None),
                probe(
                    Method::GET,
                    format!("/v1/customers/{customer}?purpose=support"),
                    None,
                ),
                probe(
                    Method::POST,
                    "/v1/customers/search?purpose=support",
                    Some(json!({"field": "email", "value": "ada@example.com"})),
                ),
                probe(
                    Method::PATCH,
                    format!("/v1/customers/{customer}?purpose=support"),
                    Some(json!({"fields": {"email": {"value": "eve@example.com"}}})),
                ),
                probe(Method::GET, "/v1/audit", None),
                probe(Method::GET, "/v1/requests", None),
                probe(
                    Method::POST,
                    format!("/v1/requests/{own_request}/approve"),
                    Some(json!({})),
                ),
                probe(Method::GET, "/v1/outbox", None),
                probe(Method::GET, "/v1/keys", None),
            ]
        };

        let mut checked = 0;
        for (case, token, expected) in &cases {
            for p in staff_probes() {
                let (s, b, text) = call(&v, token, &p).await;
                assert_eq!(s, *expected, "{case}: {} {} answered {b}", p.method, p.path);
                assert_eq!(
                    b["code"], "unauthenticated",
                    "{case}: {} {}",
                    p.method, p.path
                );
                if token.len() > 8 {
                    assert!(
                        !text.contains(token.as_str()),
                        "{case}: the body echoes the token"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= cases.len() * 9);

        // Genuine, but not for this call: a signed token whose role claim
        // says `dpo` for a helpdesk client gets the helpdesk's rights (the
        // role comes from the client record, not the token).
        let escalated = with_claims(&v, &hid, "dpo", |_| {});
        let (s, b) = v.get(&escalated, "/v1/audit").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(b["code"], "capability_required");
        // A request token opens its own request only.
        let (s, b) = v
            .get(&request_token, &format!("/v1/requests/{other_request}"))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(b["code"], "token_not_for_request");
        let (s, _) = v
            .get(&request_token, &format!("/v1/requests/{own_request}"))
            .await;
        assert_eq!(
            s,
            StatusCode::OK,
            "the request token itself works where it should"
        );

        // The genuine token still works: the table's refusals are about the
        // changes, not a broken fixture.
        for p in staff_probes().into_iter().take(2) {
            let (s, b, _) = call(&v, &genuine, &p).await;
            assert_eq!(s, StatusCode::OK, "{} {}: {b}", p.method, p.path);
        }
        let correctly_resigned = with_claims(&v, &hid, "helpdesk", |_| {});
        assert_eq!(
            v.get(&correctly_resigned, "/v1/policy").await.0,
            StatusCode::OK
        );

        // No refusal above wrote a personal value anywhere: the PATCH never ran.
        let (s, c) = v
            .get(
                &helpdesk,
                &format!("/v1/customers/{customer}?purpose=support"),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(c["fields"]["email"], "ada@example.com", "{c}");
    })
    .await;
}
