//! Consent ledger: R6–R8.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn r6_consent_event_records_every_fact() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let (s, ev) = v
            .post(
                &t,
                &format!("/v1/customers/{id}/consents"),
                &consent("marketing.email", "grant"),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{ev}");
        let (s, all) = v.get(&t, &format!("/v1/customers/{id}/consents")).await;
        assert_eq!(s, StatusCode::OK);
        let e = &all["events"][0];
        assert_eq!(e["customer_id"], id.as_str());
        assert_eq!(e["purpose"], "marketing.email");
        assert_eq!(e["action"], "grant");
        assert_eq!(e["notice_version"], "2026-01");
        assert_eq!(e["notice_text_sha256"], NOTICE_SHA);
        assert_eq!(e["language"], "it");
        assert_eq!(e["jurisdiction"], "EU");
        assert_eq!(e["channel"], "web");
        assert!(e["captured_by"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(e["at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            all["current"],
            json!([{"purpose": "marketing.email", "status": "granted", "since": e["at"],
                     "explicit": false}])
        );
    })
    .await;
}

#[tokio::test]
async fn r7_consent_history_is_append_only() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let path = format!("/v1/customers/{id}/consents");
        v.post(&t, &path, &consent("marketing.email", "grant"))
            .await;
        for m in [Method::PUT, Method::PATCH, Method::DELETE] {
            let (s, b) = v.send(m.clone(), &t, &path, &json!({})).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m}: {b}");
        }
        v.post(&t, &path, &consent("marketing.email", "withdraw"))
            .await;
        let (_, all) = v.get(&t, &path).await;
        let actions: Vec<_> = all["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].clone())
            .collect();
        assert_eq!(actions, vec![json!("grant"), json!("withdraw")]);
    })
    .await;
}

#[tokio::test]
async fn r8_withdrawal_takes_effect_at_once_and_history_stays() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let marketing = v.token("marketing_tool").await;
        let mut body = ada();
        body["fields"]["email"]["purposes"] = json!(["support", "marketing.email"]);
        body["consents"] = json!([{"purpose": "marketing", "notice_version": "2026-01",
            "notice_text_sha256": NOTICE_SHA, "language": "it", "jurisdiction": "EU"}]);
        let id = v.create(&t, &body).await;
        // A consent to marketing covers marketing.email.
        let (_, p) = v
            .get(
                &marketing,
                &format!("/v1/customers/{id}?purpose=marketing.email"),
            )
            .await;
        assert_eq!(p["fields"]["email"], "ada@example.com");
        let before: Vec<i64> = v.audit().await.iter().map(|e| e.seq).collect();

        let (s, _) = v
            .post(
                &t,
                &format!("/v1/customers/{id}/consents"),
                &consent("marketing", "withdraw"),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (_, p) = v
            .get(
                &marketing,
                &format!("/v1/customers/{id}?purpose=marketing.email"),
            )
            .await;
        assert!(p["fields"].get("email").is_none());
        assert!(
            p["withheld"]
                .as_array()
                .unwrap()
                .contains(&json!({"field": "email", "reason": "no_consent"}))
        );
        let (s, b) = v
            .get(
                &marketing,
                &format!("/v1/customers/{id}/fields/email?purpose=marketing.email"),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(b["code"], "no_consent");

        let after: Vec<i64> = v.audit().await.iter().map(|e| e.seq).collect();
        assert!(
            before.iter().all(|s| after.contains(s)),
            "earlier audit events stay"
        );
        let withdrawals = v
            .audit()
            .await
            .iter()
            .filter(|e| e.draft.action == "consent.withdraw")
            .count();
        assert_eq!(withdrawals, 1);
    })
    .await;
}

#[tokio::test]
async fn consent_calls_need_the_consents_capability_and_valid_facts() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let m = v.token("marketing_tool").await;
        let (s, b) = v
            .post(
                &m,
                &format!("/v1/customers/{id}/consents"),
                &consent("marketing", "grant"),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(b["code"], "capability_required");
        let mut bad = consent("marketing", "grant");
        bad["notice_text_sha256"] = json!("abc");
        let (s, b) = v
            .post(&t, &format!("/v1/customers/{id}/consents"), &bad)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["field"], "notice_text_sha256");
        let (s, b) = v
            .post(
                &t,
                &format!("/v1/customers/{id}/consents"),
                &consent("astrology", "grant"),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "unknown_purpose");
    })
    .await;
}
