//! Tokens: client credentials, passwords, throttling, forged and stale tokens.

use base64::Engine;
use pii_vault::store::{Mutation, PrincipalKind, Unit};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

async fn token_request(v: &TestVault, body: Value) -> (StatusCode, Value) {
    let r = v
        .http
        .post(v.url("/v1/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    split(r).await
}

#[tokio::test]
async fn client_credentials_and_failures_answer_alike() {
    on_each_backend(|v| async move {
        let (id, secret) = v.client("helpdesk").await;
        let (s, b) = token_request(&v, json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret})).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["token_type"], "Bearer");
        assert_eq!(b["expires_in"], 900);

        let (s1, b1) = token_request(&v, json!({"grant_type": "client_credentials", "client_id": id, "client_secret": "nope"})).await;
        let (s2, b2) = token_request(&v, json!({"grant_type": "client_credentials", "client_id": Uuid::now_v7().to_string(), "client_secret": "nope"})).await;
        // `instance` names each request; everything else must match.
        let (mut b1, mut b2) = (b1, b2);
        for b in [&mut b1, &mut b2] {
            b.as_object_mut().map(|o| o.remove("instance"));
        }
        assert_eq!((s1, s2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
        assert_eq!(b1, b2, "same answer whether or not the client exists");
        assert_eq!(b1["code"], "invalid_credentials");
    })
    .await;
}

#[tokio::test]
async fn password_grant_and_throttling() {
    on_each_backend(|v| async move {
        let hash = pii_vault::crypto::hash_password("correct horse battery").unwrap();
        let id = Uuid::now_v7();
        v.state
            .sequencer
            .commit(Unit {
                mutations: vec![Mutation::InsertUser { id, username: "dana".into(), role: "dpo".into(), password_hash: hash, at: 0 }],
                events: vec![],
            })
            .await
            .unwrap();
        let ok = json!({"grant_type": "password", "username": "dana", "password": "correct horse battery"});
        let bad = json!({"grant_type": "password", "username": "dana", "password": "wrong"});
        let (s, _) = token_request(&v, ok.clone()).await;
        assert_eq!(s, StatusCode::OK);
        let (s, b) = token_request(&v, json!({"grant_type": "password", "username": "nobody", "password": "wrong"})).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
        // The test policy allows 3 failures per name.
        for _ in 0..3 {
            let (s, _) = token_request(&v, bad.clone()).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED);
        }
        let r = v.http.post(v.url("/v1/token")).json(&ok).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
        assert!(r.headers().contains_key("retry-after"));
        let (_, b) = split(r).await;
        assert_eq!(b["code"], "too_many_attempts");
        // Another name is not affected.
        let (id2, secret2) = v.client("helpdesk").await;
        let (s, _) = token_request(&v, json!({"grant_type": "client_credentials", "client_id": id2, "client_secret": secret2})).await;
        assert_eq!(s, StatusCode::OK);
        let failures = v.audit().await.iter().filter(|e| e.draft.action == "token.issue" && e.draft.decision == "denied").count();
        assert_eq!(failures, 5, "every failed login is audited");
    })
    .await;
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn forged_stale_and_revoked_tokens_are_refused() {
    on_each_backend(|v| async move {
        let (id, secret) = v.client("helpdesk").await;
        let (_, b) = token_request(
            &v,
            json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .await;
        let token = b["access_token"].as_str().unwrap().to_owned();
        let path = "/v1/policy";
        assert_eq!(v.get(&token, path).await.0, StatusCode::OK);

        let parts: Vec<&str> = token.split('.').collect();
        let payload = parts[1];
        let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        sig[0] ^= 1;
        let forged = format!("{}.{}.{}", parts[0], payload, b64url(&sig));
        let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), payload);
        let hs256 = format!(
            "{}.{}.{}",
            b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
            payload,
            b64url(&[0u8; 32])
        );
        for (name, t) in [
            ("forged", forged),
            ("alg none", none),
            ("hs256", hs256),
            ("garbage", "abc".to_owned()),
        ] {
            let (s, b) = v.get(&t, path).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{name}");
            assert_eq!(b["code"], "unauthenticated", "{name}");
        }
        let r = v.http.get(v.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // Disabling the client invalidates its tokens at once.
        let cid: Uuid = id.parse().unwrap();
        v.state
            .sequencer
            .commit(Unit {
                mutations: vec![Mutation::SetClientDisabled {
                    id: cid,
                    disabled: true,
                }],
                events: vec![],
            })
            .await
            .unwrap();
        assert!(
            v.state
                .store
                .principal(PrincipalKind::Client, cid)
                .await
                .unwrap()
                .unwrap()
                .disabled
        );
        assert_eq!(v.get(&token, path).await.0, StatusCode::UNAUTHORIZED);
        let (s, _) = token_request(
            &v,
            json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Tokens expire after 15 minutes.
        let fresh = v.token("helpdesk").await;
        assert_eq!(v.get(&fresh, path).await.0, StatusCode::OK);
        v.clock.advance_days(1);
        assert_eq!(v.get(&fresh, path).await.0, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn roles_without_the_right_get_403() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let id = v.create(&helpdesk, &ada()).await;
        let auditor = v.token("auditor").await;
        let (s, b) = v
            .get(&auditor, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(b["code"], "purpose_not_permitted");
        let (s, b) = v
            .get(&auditor, &format!("/v1/customers/{id}/consents"))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(b["code"], "capability_required");
    })
    .await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    on_each_backend(|v| async move {
        let r = v.http.get(v.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = v.http.get(v.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (s, doc) = split(v.http.get(v.url("/openapi.json")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        for p in [
            "/v1/token",
            "/v1/customers",
            "/v1/customers/{id}",
            "/v1/customers/{id}/fields/{field}",
            "/v1/customers/search",
            "/v1/customers/{id}/consents",
            "/v1/policy",
        ] {
            assert!(
                doc["paths"].get(p).is_some(),
                "{p} missing from /openapi.json"
            );
        }
        let t = v.token("helpdesk").await;
        let (s, policy) = v.get(&t, "/v1/policy").await;
        assert_eq!(s, StatusCode::OK);
        assert!(policy["purposes"].get("support.callback").is_some());
        let (s, ropa) = v.get(&t, "/v1/processing-activities").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            ropa["activities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["purpose"] == "billing" && a["legal_basis"] == "legal_obligation")
        );
        let r = v.http.get(v.url("/metrics")).send().await.unwrap();
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("pii_vault_http_requests_total")
        );
    })
    .await;
}
