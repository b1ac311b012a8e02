//! HTTP standards: `Idempotency-Key` on every POST, CORS, `ETag` and
//! `If-Match`, problem documents, metrics, HTTP/2, request ids.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::*;

/// The stored answer bodies of the idempotency records, as bytes.
async fn stored_answers(v: &TestVault) -> Vec<Vec<u8>> {
    let sql = "SELECT body FROM idempotency_keys WHERE body IS NOT NULL";
    if v.database_url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&v.database_url)
            .await
            .unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&v.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
    }
}

/// Idempotency records that name `customer`.
async fn records_naming(v: &TestVault, customer: &str) -> i64 {
    let id: uuid::Uuid = customer.parse().unwrap();
    let sql = "SELECT COUNT(*) FROM idempotency_keys WHERE customer_id = $1";
    if v.database_url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&v.database_url)
            .await
            .unwrap();
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&v.database_url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_retried_consent_is_recorded_once_and_a_changed_one_is_refused() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let path = format!("/v1/customers/{id}/consents");
        let grant = consent("marketing.email", "grant");
        let (s1, b1, h1) = post_keyed(&v, &t, &path, "consent-1", &grant).await;
        assert_eq!(s1, StatusCode::CREATED, "{b1}");
        assert!(h1.get("idempotent-replayed").is_none());
        let (s2, b2, h2) = post_keyed(&v, &t, &path, "consent-1", &grant).await;
        assert_eq!(s2, StatusCode::CREATED, "{b2}");
        assert_eq!(b1, b2, "the first answer, replayed");
        assert_eq!(h2["idempotent-replayed"], "true");
        let (_, all) = v.get(&t, &path).await;
        assert_eq!(all["events"].as_array().unwrap().len(), 1, "{all}");
        // The same key with another body, or another query string: 422.
        let withdraw = consent("marketing.email", "withdraw");
        let (s, b, _) = post_keyed(&v, &t, &path, "consent-1", &withdraw).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["code"], "idempotency_key_reused");
        let other_query = format!("{path}?purpose=support");
        let (s, b, _) = post_keyed(&v, &t, &other_query, "consent-1", &grant).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["code"], "idempotency_key_reused");
        let (_, all) = v.get(&t, &path).await;
        assert_eq!(all["events"].as_array().unwrap().len(), 1, "{all}");
    })
    .await;
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    on_each_backend(|v| async move {
        let a = v.token("helpdesk").await;
        let b = v.token("helpdesk").await;
        let body = ada();
        let (s, first, _) =
            post_keyed(&v, &a, "/v1/customers?purpose=support", "shared", &body).await;
        assert_eq!(s, StatusCode::CREATED, "{first}");
        // Another caller with the same key and body gets no replay of the
        // first caller's answer: its request runs (here: the external id
        // is taken).
        let (s, other, h) =
            post_keyed(&v, &b, "/v1/customers?purpose=support", "shared", &body).await;
        assert_eq!(s, StatusCode::CONFLICT, "{other}");
        assert_eq!(other["code"], "external_id_taken");
        assert!(h.get("idempotent-replayed").is_none());
    })
    .await;
}

#[tokio::test]
async fn a_retried_intake_sends_one_code_and_its_token_is_not_stored_in_plain_text() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        let mut body = ada();
        body["fields"]["email"]["value"] = json!("grace@example.com");
        v.create(&helpdesk, &body).await;
        let filing = json!({"kind": "access", "regulation": "gdpr",
                            "identifier": {"field": "email", "value": "grace@example.com"}});
        let (s1, r1, _) = post_keyed(&v, "", "/v1/requests", "intake-1", &filing).await;
        assert_eq!(s1, StatusCode::ACCEPTED, "{r1}");
        let (s2, r2, h2) = post_keyed(&v, "", "/v1/requests", "intake-1", &filing).await;
        assert_eq!(s2, StatusCode::ACCEPTED, "{r2}");
        assert_eq!(h2["idempotent-replayed"], "true");
        assert_eq!(r1["id"], r2["id"], "one request");
        assert_eq!(r1["request_token"], r2["request_token"]);
        let (st, out) = v.get(&notifier, "/v1/outbox").await;
        assert_eq!(st, StatusCode::OK, "{out}");
        let codes = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "verification_code")
            .count();
        assert_eq!(codes, 1, "one verification code: {out}");
        let token = r1["request_token"].as_str().unwrap();
        let request_id = r1["id"].as_str().unwrap();
        let answers = stored_answers(&v).await;
        assert!(!answers.is_empty());
        for a in &answers {
            assert!(!contains(a, token), "request token stored in plain text");
            assert!(!contains(a, request_id), "answer stored in plain text");
        }
    })
    .await;
}

#[tokio::test]
async fn simultaneous_requests_with_one_key_have_one_effect() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v.create(&t, &ada()).await;
        let hold = json!({"customer_id": id, "fields": ["email"], "reason": "Case 2026-117",
                          "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"});
        let sends = (0..4).map(|_| post_keyed(&v, &dpo, "/v1/legal-holds", "hold-1", &hold));
        let answers = futures::future::join_all(sends).await;
        for (s, b, _) in &answers {
            assert_eq!(*s, StatusCode::CREATED, "{b}");
            assert_eq!(b["id"], answers[0].1["id"], "one hold, replayed");
        }
        let (st, list) = v
            .get(&dpo, &format!("/v1/legal-holds?customer_id={id}"))
            .await;
        assert_eq!(st, StatusCode::OK, "{list}");
        assert_eq!(list["holds"].as_array().unwrap().len(), 1, "{list}");
        // The record names the customer, and the erasure deletes it.
        assert_eq!(records_naming(&v, &id).await, 1);
        let (st, _) = v
            .send(
                Method::DELETE,
                &dpo,
                &format!("/v1/customers/{id}"),
                &Value::Null,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(records_naming(&v, &id).await, 0);
        let (_, _, h) = post_keyed(&v, &dpo, "/v1/legal-holds", "hold-1", &hold).await;
        assert!(
            h.get("idempotent-replayed").is_none(),
            "replayed after erasure"
        );
    })
    .await;
}

#[tokio::test]
async fn profile_reads_carry_an_etag_and_stale_writes_get_412() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v.create(&t, &ada()).await;
        let path = format!("/v1/customers/{id}?purpose=support");
        let etag_of = |path: String| {
            let v = &v;
            let t = t.clone();
            async move {
                let r = v.http.get(v.url(&path)).bearer_auth(&t).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                r.headers()["etag"].to_str().unwrap().to_owned()
            }
        };
        let first = etag_of(path.clone()).await;
        assert!(first.starts_with('"') && !first.starts_with("W/"), "{first}");
        let field = etag_of(format!("/v1/customers/{id}/fields/email?purpose=support")).await;
        assert_eq!(field, first, "one version for the customer's data");
        let patch = |tag: &'static str, body: Value| {
            let v = &v;
            let t = t.clone();
            let path = path.clone();
            let tag = if tag == "FIRST" { first.clone() } else { tag.to_owned() };
            async move {
                let r = v
                    .http
                    .patch(v.url(&path))
                    .bearer_auth(&t)
                    .header("If-Match", tag)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                split(r).await
            }
        };
        let change = |note: &str| json!({"fields": {"support_note": {"value": note, "purposes": ["support"]}}});
        // The first agent writes with the ETag it read: allowed.
        let (s, b) = patch("FIRST", change("first agent")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let second = etag_of(path.clone()).await;
        assert_ne!(second, first, "the version moved on");
        // The second agent still holds the first ETag: 412, nothing written.
        let (s, b) = patch("FIRST", change("second agent")).await;
        assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
        assert_eq!(b["code"], "precondition_failed");
        let (_, note) = v
            .get(&t, &format!("/v1/customers/{id}/fields/support_note?purpose=support"))
            .await;
        assert_eq!(note["value"], "first agent");
        // `*` proceeds.
        let (s, b) = patch("*", change("anyone")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        // DELETE with a stale ETag: 412, the customer is still there.
        let customer_url = v.url(&format!("/v1/customers/{id}"));
        let del = |tag: String| {
            let v = &v;
            let dpo = dpo.clone();
            let url = customer_url.clone();
            async move {
                let r = v
                    .http
                    .delete(url)
                    .bearer_auth(&dpo)
                    .header("If-Match", tag)
                    .send()
                    .await
                    .unwrap();
                split(r).await
            }
        };
        let (s, b) = del(second.clone()).await;
        assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
        assert_eq!(b["code"], "precondition_failed");
        let current = etag_of(path.clone()).await;
        let (s, b) = del(current).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, _) = v.get(&t, &path).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn concurrent_conditional_writes_with_one_etag_let_one_through() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let path = format!("/v1/customers/{id}?purpose=support");
        let r = v.http.get(v.url(&path)).bearer_auth(&t).send().await.unwrap();
        let tag = r.headers()["etag"].to_str().unwrap().to_owned();
        let writes = (0..4).map(|i| {
            v.http
                .patch(v.url(&path))
                .bearer_auth(&t)
                .header("If-Match", tag.clone())
                .json(&json!({"fields": {"support_note": {"value": format!("agent {i}"), "purposes": ["support"]}}}))
                .send()
        });
        let results = futures::future::join_all(writes).await;
        let statuses: Vec<StatusCode> = results.iter().map(|r| r.as_ref().unwrap().status()).collect();
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let stale = statuses
            .iter()
            .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
            .count();
        assert_eq!((ok, stale), (1, 3), "{statuses:?}");
    })
    .await;
}

async fn vault_with_cors(backend: Backend) -> TestVault {
    TestVault::start_adjusted(backend, |s, _| {
        s.cors_allowed_origins = vec!["https://helpdesk.example.com".into()];
    })
    .await
}

async fn preflight(v: &TestVault, origin: &str) -> HeaderMap {
    let r = v
        .http
        .request(Method::OPTIONS, v.url("/v1/customers?purpose=support"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "PATCH")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, idempotency-key, if-match",
        )
        .send()
        .await
        .unwrap();
    r.headers().clone()
}

#[tokio::test]
async fn cors_answers_listed_origins_only() {
    for backend in backends() {
        let v = vault_with_cors(backend).await;
        let h = preflight(&v, "https://helpdesk.example.com").await;
        assert_eq!(
            h["access-control-allow-origin"],
            "https://helpdesk.example.com"
        );
        let methods = h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_lowercase();
        for m in ["get", "post", "patch", "delete"] {
            assert!(methods.contains(m), "{methods}");
        }
        let allowed = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        for name in [
            "authorization",
            "content-type",
            "idempotency-key",
            "if-match",
        ] {
            assert!(allowed.contains(name), "{allowed}");
        }
        let t = v.token("helpdesk").await;
        let r = v
            .http
            .get(v.url("/healthz"))
            .bearer_auth(&t)
            .header("Origin", "https://helpdesk.example.com")
            .send()
            .await
            .unwrap();
        let exposed = r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        assert!(
            exposed.contains("etag") && exposed.contains("x-request-id"),
            "{exposed}"
        );
        let h = preflight(&v, "https://evil.example.net").await;
        assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
    }
    // Not configured: no CORS header at all.
    for backend in backends() {
        let v = TestVault::start(backend).await;
        let h = preflight(&v, "https://helpdesk.example.com").await;
        assert!(
            !h.keys().any(|k| k.as_str().starts_with("access-control-")),
            "{h:?}"
        );
    }
}

#[tokio::test]
async fn problems_name_their_page_their_request_and_a_detail() {
    let v = TestVault::start(Backend::Sqlite).await;
    let t = v.token("helpdesk").await;
    let r = v
        .http
        .get(v.url("/v1/customers/0190f6a0-0000-7000-8000-000000000000?purpose=support"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (s, p) = split(r).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(p["instance"], format!("urn:uuid:{rid}"));
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    // The type resolves on the vault, to a page naming the code.
    let page_url = v.url(p["type"].as_str().unwrap());
    let page = v.http.get(page_url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"customer_not_found\""), "{html}");
    // A framework rejection gets both too.
    let (s, p) = v.get(&t, "/no/such/route").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(p["instance"].as_str().unwrap().starts_with("urn:uuid:"));
    assert!(p["detail"].is_string(), "{p}");
}

#[tokio::test]
async fn metrics_are_described_bounded_and_histograms() {
    let v = TestVault::start(Backend::Sqlite).await;
    let r = v
        .http
        .request(Method::from_bytes(b"BREW").unwrap(), v.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let text = v
        .http
        .get(v.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# HELP pii_vault_http_requests_total"),
        "{text}"
    );
    assert!(
        // Present from start-up (the test binary's servers share one
        // recorder, so other tests' failures may have counted already).
        text.contains("\npii_vault_audit_append_failures_total "),
        "{text}"
    );
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(!text.contains("BREW"), "{text}");
    assert!(!text.contains("reason=\"127.0.0.1\""), "{text}");
    assert!(
        text.contains("pii_vault_http_request_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let v = TestVault::start(Backend::Sqlite).await;
    let h2 = http_builder().http2_prior_knowledge().build().unwrap();
    let r = h2.get(v.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn a_request_id_is_kept_only_from_a_trusted_proxy() {
    let sent = uuid::Uuid::now_v7().to_string();
    let ask = |v: &TestVault| {
        let req = v
            .http
            .get(v.url("/healthz"))
            .header("x-request-id", sent.clone());
        async move {
            let r = req.send().await.unwrap();
            r.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    let direct = TestVault::start(Backend::Sqlite).await;
    assert_ne!(ask(&direct).await, sent, "a caller's id is not believed");
    let proxied = TestVault::start_adjusted(Backend::Sqlite, |s, _| {
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    assert_eq!(ask(&proxied).await, sent, "the trusted proxy's id is kept");
    let r = proxied
        .http
        .get(proxied.url("/healthz"))
        .header("x-request-id", "not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "not-a-uuid");
}
