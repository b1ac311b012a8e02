//! Limits: oversized bodies, page sizes, and per-caller rate limiting (a
//! burst from one client is throttled with 429 without affecting others).

use pii_vault::audit::EventDraft;
use pii_vault::store::Unit;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn oversized_bodies_get_413_and_write_nothing() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let before = v.audit().await.len();
        let mut body = ada();
        body["fields"]["email"]["value"] = json!("a".repeat(2 * 1024 * 1024));
        let (s, b) = v.post(&t, "/v1/customers?purpose=support", &body).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
        assert_eq!(b["code"], "payload_too_large");
        assert!(
            !b.to_string().contains("aaaaaaaa"),
            "the body is not echoed"
        );
        let created = v.audit().await[before..]
            .iter()
            .filter(|e| e.draft.action == "customer.create")
            .count();
        assert_eq!(created, 0);
        // Just under the cap is read (and refused for what it says, not its size).
        let (s, b) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "x".repeat(900 * 1024)}),
            )
            .await;
        assert_ne!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
        assert!(s.is_client_error() || s.is_success(), "{s}");
    })
    .await;
}

#[tokio::test]
async fn page_sizes_are_clamped_or_refused() {
    on_each_backend(|v| async move {
        // 1 100 events straight into the trail: more than one page.
        let events = (0..1100)
            .map(|i| {
                EventDraft::new(
                    "limits-test",
                    "system",
                    pii_vault::audit::Action::PolicyLoad,
                    pii_vault::audit::Decision::Allowed,
                    &uuid::Uuid::now_v7().to_string(),
                )
                .reason("n", &i.to_string())
            })
            .collect();
        v.state
            .sequencer
            .commit(Unit {
                mutations: vec![],
                events,
            })
            .await
            .unwrap();
        let auditor = v.token("auditor").await;
        for (limit, expected) in [
            ("1000000", 1000),
            ("1001", 1000),
            ("0", 1),
            ("-5", 1),
            ("7", 7),
        ] {
            let (s, b) = v.get(&auditor, &format!("/v1/audit?limit={limit}")).await;
            assert_eq!(s, StatusCode::OK, "limit={limit}: {b}");
            assert_eq!(
                b["events"].as_array().unwrap().len(),
                expected,
                "limit={limit}"
            );
            assert!(
                b["next_after_seq"].is_number(),
                "limit={limit}: a next page is offered"
            );
        }
        let (s, b) = v.get(&auditor, "/v1/audit").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            b["events"].as_array().unwrap().len(),
            100,
            "the default page"
        );

        // Request listings and the outbox refuse a page size out of range
        // (400 naming `limit`) rather than answer an unbounded page.
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        for (token, path) in [(&dpo, "/v1/requests"), (&notifier, "/v1/outbox")] {
            for bad in ["0", "1001", "100000000"] {
                let (s, b) = v.get(token, &format!("{path}?limit={bad}")).await;
                assert_eq!(s, StatusCode::BAD_REQUEST, "{path}?limit={bad}: {b}");
                assert_eq!(b["field"], "limit", "{path}");
            }
            let (s, b) = v.get(token, &format!("{path}?limit=1000")).await;
            assert_eq!(s, StatusCode::OK, "{path}: {b}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_burst_from_one_client_is_throttled_without_affecting_others() {
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |s, _| {
            s.rate_limit_per_sec = 1;
            s.rate_limit_burst = 5;
        })
        .await;
        let noisy = v.token("helpdesk").await;
        let quiet = v.token("helpdesk").await;

        // 20 requests at once: the bucket holds 5 and refills one a second,
        // so most of them are refused.
        let calls = (0..20).map(|_| v.get(&noisy, "/v1/policy"));
        let answers = futures::future::join_all(calls).await;
        let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        let limited: Vec<_> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
            .collect();
        assert_eq!(ok + limited.len(), 20, "only 200 or 429");
        assert!(ok >= 5, "the burst is allowed: {ok}");
        assert!(
            limited.len() >= 10,
            "the rest is throttled: {}",
            limited.len()
        );
        for (_, b) in &limited {
            assert_eq!(b["code"], "rate_limited");
        }
        let r = v
            .http
            .get(v.url("/v1/policy"))
            .bearer_auth(&noisy)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=5).contains(&retry), "Retry-After {retry}");

        // Another client is not affected, and neither is getting a token.
        for _ in 0..5 {
            assert_eq!(v.get(&quiet, "/v1/policy").await.0, StatusCode::OK);
        }
        let fresh = v.token("auditor").await;
        assert_eq!(v.get(&fresh, "/v1/policy").await.0, StatusCode::OK);

        // After the advertised wait the noisy client is served again.
        tokio::time::sleep(std::time::Duration::from_secs(retry + 1)).await;
        assert_eq!(v.get(&noisy, "/v1/policy").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_default_limits_are_far_above_normal_use() {
    let s = pii_vault::config::Settings::default();
    assert!(s.rate_limit_per_sec >= 1000, "{}", s.rate_limit_per_sec);
    assert!(s.rate_limit_burst >= s.rate_limit_per_sec);
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let answers = futures::future::join_all((0..200).map(|_| v.get(&t, "/v1/policy"))).await;
        assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK));
    })
    .await;
}
