//! Audit events for every call: R38, R39, R42, one event per read, and the chain.

use pii_vault::audit::chain;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn r38_events_carry_actor_role_action_purpose_customer_fields_outcome_and_request_id() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let resp = v
            .http
            .get(v.url(&format!("/v1/customers/{id}?purpose=support.callback")))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(resp.status(), StatusCode::OK);
        let events = v.audit().await;
        let read = events
            .iter()
            .find(|e| e.draft.request_id == rid)
            .expect("read event");
        assert_eq!(read.draft.action, "customer.read");
        assert_eq!(read.draft.role, "helpdesk");
        assert!(!read.draft.actor.is_empty());
        assert_eq!(read.draft.purpose.as_deref(), Some("support.callback"));
        assert_eq!(read.draft.customer_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            read.draft.fields,
            vec!["email".to_owned(), "phone".to_owned()]
        );
        assert_eq!(read.draft.decision, "allowed");
        let create = events
            .iter()
            .find(|e| e.draft.action == "customer.create")
            .unwrap();
        assert_eq!(
            create.draft.fields,
            vec!["email".to_owned(), "phone".to_owned()]
        );
        assert!(
            events
                .iter()
                .any(|e| e.draft.action == "token.issue" && e.draft.decision == "allowed")
        );
        assert!(events.iter().any(|e| e.draft.action == "policy.load"));
        assert!(events.iter().any(|e| e.draft.action == "keys.init"));
    })
    .await;
}

#[tokio::test]
async fn every_successful_read_has_exactly_one_event_and_the_chain_verifies() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let mut rids = Vec::new();
        let paths = [
            format!("/v1/customers/{id}?purpose=support"),
            format!("/v1/customers/{id}/fields/phone?purpose=support.callback"),
            format!("/v1/customers/{id}/consents"),
        ];
        for i in 0..30 {
            let resp = v
                .http
                .get(v.url(&paths[i % 3]))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            rids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
        }
        // Concurrent reads are batched by the sequencer; each still gets one event.
        let reads = (0..40).map(|_| {
            let v = &v;
            let t = &t;
            let id = &id;
            async move {
                let r = v
                    .http
                    .get(v.url(&format!("/v1/customers/{id}?purpose=support")))
                    .bearer_auth(t)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                r.headers()["x-request-id"].to_str().unwrap().to_owned()
            }
        });
        rids.extend(futures::future::join_all(reads).await);
        let events = v.audit().await;
        for rid in &rids {
            let n = events.iter().filter(|e| &e.draft.request_id == rid).count();
            assert_eq!(n, 1, "request {rid} has {n} events");
        }
        let reads = events
            .iter()
            .filter(|e| e.draft.action.starts_with("customer.read"))
            .count();
        // 10 profile reads and 10 field reads in the loop, 40 concurrent reads.
        assert_eq!(reads, 60);
        let consent_reads = events
            .iter()
            .filter(|e| e.draft.action == "consent.read")
            .count();
        assert_eq!(consent_reads, 10);
        let (last, _) =
            chain::verify((0, hex::encode(chain::GENESIS)), &events).expect("chain verifies");
        assert_eq!(last, events.len() as i64);
    })
    .await;
}

#[tokio::test]
async fn r39_no_personal_value_secret_or_token_in_any_event() {
    on_each_backend(|v| async move {
        let (cid, secret) = v.client("helpdesk").await;
        let resp = v.http.post(v.url("/v1/token"))
            .json(&json!({"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}))
            .send().await.unwrap();
        let token = resp.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        let body = json!({"fields": {
            "email": {"value": "canary.r39@example.com", "purposes": ["support"]},
            "name": {"value": "Canary Rthirtynine", "purposes": ["support"]}}});
        let id = v.create(&token, &body).await;
        v.get(&token, &format!("/v1/customers/{id}?purpose=support")).await;
        v.post(&token, "/v1/customers/search?purpose=support", &json!({"field": "email", "value": "canary.r39@example.com"})).await;
        v.http.post(v.url("/v1/token"))
            .json(&json!({"grant_type": "client_credentials", "client_id": cid, "client_secret": "wrong-secret-canary"}))
            .send().await.unwrap();
        let all = serde_json::to_string(&v.audit().await).unwrap().to_lowercase();
        for needle in ["canary.r39", "rthirtynine", &secret.to_lowercase(), &token.to_lowercase(), "wrong-secret-canary"] {
            assert!(!all.contains(needle), "{needle} found in the audit trail");
        }
        assert!(v.audit().await.iter().any(|e| e.draft.action == "token.issue" && e.draft.decision == "denied"));
    })
    .await;
}

async fn install_failing_trigger(v: &TestVault) {
    match v.backend {
        Backend::Sqlite => v.exec("CREATE TRIGGER audit_fail BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'simulated disk full'); END;").await,
        Backend::Postgres => v.exec(
            "CREATE FUNCTION audit_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'simulated disk full'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER audit_fail BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_fail();").await,
    }
}

#[tokio::test]
async fn r42_when_the_event_cannot_be_stored_no_data_leaves_and_nothing_changes() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let events_before = v.audit().await.len();
        install_failing_trigger(&v).await;

        let (s, b) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=support.callback"))
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b["code"], "unavailable");
        assert!(
            !b.to_string().contains("ada@example.com")
                && !b.to_string().contains("1234567")
                && !b.to_string().contains("123 4567"),
            "{b}"
        );
        assert!(
            !b.to_string().contains("simulated"),
            "no internal detail: {b}"
        );
        let (s, _) = v
            .get(
                &t,
                &format!("/v1/customers/{id}/fields/phone?purpose=support.callback"),
            )
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        let mut other = ada();
        other["external_id"] = json!("zd-during-outage");
        other["fields"]["email"]["value"] = json!("outage@example.com");
        let (s, _) = v.post(&t, "/v1/customers?purpose=support", &other).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        let (s, _) = v
            .patch(
                &t,
                &format!("/v1/customers/{id}?purpose=support"),
                &json!({"fields": {"phone": null}}),
            )
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);

        match v.backend {
            Backend::Sqlite => v.exec("DROP TRIGGER audit_fail").await,
            Backend::Postgres => v.exec("DROP TRIGGER audit_fail ON audit_events").await,
        }
        // Recovery without a restart; nothing of the refused writes exists.
        let (s, p) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=support.callback"))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            p["fields"]["phone"], "+393331234567",
            "the refused PATCH changed nothing"
        );
        let (_, found) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "outage@example.com"}),
            )
            .await;
        assert_eq!(
            found["customers"],
            json!([]),
            "the refused create stored nothing"
        );
        let events = v.audit().await;
        assert_eq!(
            events.len(),
            events_before + 2,
            "only the two post-recovery reads were added"
        );
        chain::verify((0, hex::encode(chain::GENESIS)), &events).expect("chain verifies");
    })
    .await;
}
