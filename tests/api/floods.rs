//! Floods of unauthenticated work: huge names at `/v1/token`, concurrent
//! anonymous filings and password grants, one source filing too often.
//! Every flood is bounded in memory and in answer codes, never in time.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Memory-measuring tests run one at a time: `VmHWM` is the process's.
static MEASURE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `/proc/self/status` figure in bytes (`VmRSS`, `VmHWM`).
fn proc_status(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Resets the process's peak resident set (`VmHWM`) to its current size.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

const MB: u64 = 1024 * 1024;

async fn post_json(v: &TestVault, path: &str, body: &Value) -> (StatusCode, Option<String>, Value) {
    let resp = v.http.post(v.url(path)).json(body).send().await.unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|h| h.to_str().unwrap().to_owned());
    let (s, b) = split(resp).await;
    (s, retry, b)
}

fn filing(email: &str) -> Value {
    json!({"kind": "erasure", "regulation": "gdpr",
           "identifier": {"field": "email", "value": email}})
}

/// 120 concurrent token requests with 900 kB client ids, three times over
/// (new ids each time):
/// every one is 400 naming the field (never echoing it), and the server
/// keeps nothing of them.
#[tokio::test]
async fn floods_token_names_over_256_bytes_are_refused_and_kept_nowhere() {
    let _one = MEASURE.lock().await;
    let v = TestVault::start(Backend::Sqlite).await;
    let mut after_first = 0;
    for wave in 0..3 {
        let calls = (0..120).map(|i| {
            let id = format!("{wave}{i:03}{}", "c".repeat(900 * 1024));
            let body =
                json!({"grant_type": "client_credentials", "client_id": id, "client_secret": "x"});
            let v = &v;
            async move { post_json(v, "/v1/token", &body).await }
        });
        for (s, _, b) in join_all(calls).await {
            assert_eq!(
                s,
                StatusCode::BAD_REQUEST,
                "{}",
                &b.to_string()[..200.min(b.to_string().len())]
            );
            assert_eq!(b["code"], "invalid_request");
            assert_eq!(b["field"], "client_id");
            assert!(
                !b.to_string().contains("cccccccc"),
                "the value is not echoed"
            );
        }
        if wave == 0 {
            after_first = proc_status("VmRSS");
        }
    }
    let growth = proc_status("VmRSS").saturating_sub(after_first);
    eprintln!(
        "token flood: VmRSS grew {} MB over two more waves",
        growth / MB
    );
    assert!(growth < 150 * MB, "VmRSS grew {} MB", growth / MB);

    // Usernames too, before any lookup (and before any password hashing).
    let calls = (0..8).map(|i| {
        let name = format!("{i}{}", "u".repeat(300 * 1024));
        let body = json!({"grant_type": "password", "username": name, "password": "x"});
        let v = &v;
        async move { post_json(v, "/v1/token", &body).await }
    });
    for (s, _, b) in join_all(calls).await {
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "invalid_request");
        assert_eq!(b["field"], "username");
        assert!(!b.to_string().contains("uuuuuuuu"));
    }
    assert!(v.state.throttle.is_empty(), "refused before the throttle");
    assert_eq!(v.state.password_work.peak(), 0, "and before any hashing");

    // 256 bytes is still a name (refused for being wrong, not for its size),
    // and 120 of them take 120 of the throttle's fixed entries.
    let calls = (0..120).map(|i| {
        let id = format!("{i:03}{}", "c".repeat(253));
        let body =
            json!({"grant_type": "client_credentials", "client_id": id, "client_secret": "x"});
        let v = &v;
        async move { post_json(v, "/v1/token", &body).await }
    });
    for (s, _, b) in join_all(calls).await {
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    let throttle = &v.state.throttle;
    eprintln!(
        "token flood: throttle holds {} of {} entries",
        throttle.len(),
        throttle.capacity()
    );
    assert_eq!(throttle.len(), 120);
    assert!(throttle.capacity() <= 65_536);
}

/// 120 concurrent anonymous filings: each is answered 202, 429 or 503 (the
/// refusals with Retry-After), and the peak memory stays bounded.
#[tokio::test]
async fn floods_concurrent_anonymous_filings_are_bounded() {
    let _one = MEASURE.lock().await;
    // One source, its limit off: the limiter of password work is the bound.
    let v =
        TestVault::start_adjusted(Backend::Sqlite, |s, _| s.intake_per_source_per_hour = 0).await;
    let before = proc_status("VmRSS");
    reset_peak();
    let calls = (0..120).map(|i| {
        let body = filing(&format!("flood{i}@example.com"));
        let v = &v;
        async move { post_json(v, "/v1/requests", &body).await }
    });
    let answers = join_all(calls).await;
    let peak = proc_status("VmHWM").saturating_sub(before);
    let mut by_status = std::collections::BTreeMap::new();
    for (s, retry, b) in &answers {
        *by_status.entry(s.as_u16()).or_insert(0) += 1;
        match *s {
            StatusCode::ACCEPTED => {}
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry.is_some(), "{s} without Retry-After: {b}");
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    let work = &v.state.password_work;
    eprintln!(
        "anonymous filing flood: answers {by_status:?}, VmHWM {} MB above the start, \
         at most {} hashes at once (limit {})",
        peak / MB,
        work.peak(),
        work.max_concurrent()
    );
    assert!(peak < 200 * MB, "VmHWM grew {} MB", peak / MB);
    assert!(work.peak() >= 1 && work.peak() <= work.max_concurrent());
    assert!(work.max_concurrent() <= 4);
    assert!(by_status.contains_key(&202), "some are filed");
}

/// 120 concurrent password grants for names that do not exist (each a
/// dummy argon2 verification): 401, 429 or 503, and bounded memory.
#[tokio::test]
async fn floods_concurrent_password_grants_for_unknown_names_are_bounded() {
    let _one = MEASURE.lock().await;
    let v = TestVault::start(Backend::Sqlite).await;
    let before = proc_status("VmRSS");
    reset_peak();
    let calls = (0..120).map(|i| {
        let body = json!({"grant_type": "password", "username": format!("nobody{i}"), "password": "guess"});
        let v = &v;
        async move { post_json(v, "/v1/token", &body).await }
    });
    let answers = join_all(calls).await;
    let peak = proc_status("VmHWM").saturating_sub(before);
    let mut by_status = std::collections::BTreeMap::new();
    for (s, retry, b) in &answers {
        *by_status.entry(s.as_u16()).or_insert(0) += 1;
        match *s {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry.is_some(), "{s} without Retry-After: {b}");
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    let work = &v.state.password_work;
    eprintln!(
        "password grant flood: answers {by_status:?}, VmHWM {} MB above the start, \
         at most {} hashes at once (limit {})",
        peak / MB,
        work.peak(),
        work.max_concurrent()
    );
    assert!(peak < 200 * MB, "VmHWM grew {} MB", peak / MB);
    assert!(work.peak() >= 1 && work.peak() <= work.max_concurrent());
}

async fn file_from(
    v: &TestVault,
    forwarded_for: Option<&str>,
    i: usize,
) -> (StatusCode, Option<String>, Value) {
    let mut req = v
        .http
        .post(v.url("/v1/requests"))
        .json(&filing(&format!("s{i}@example.com")));
    if let Some(addr) = forwarded_for {
        req = req.header("X-Forwarded-For", addr);
    }
    let resp = req.send().await.unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|h| h.to_str().unwrap().to_owned());
    let (s, b) = split(resp).await;
    (s, retry, b)
}

fn limited((s, retry, b): (StatusCode, Option<String>, Value)) {
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["code"], "rate_limited");
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!(secs >= 1);
}

/// One address files more than `intake_per_source_per_hour`: the next
/// filing is 429 `rate_limited` with Retry-After, before any hashing.
#[tokio::test]
async fn floods_one_source_is_limited_per_hour() {
    let v =
        TestVault::start_adjusted(Backend::Sqlite, |s, _| s.intake_per_source_per_hour = 3).await;
    for i in 0..3 {
        let (s, _, b) = file_from(&v, None, i).await;
        assert_eq!(s, StatusCode::ACCEPTED, "filing {i}: {b}");
    }
    limited(file_from(&v, None, 3).await);
    // Without trusted proxies the header is ignored: still 127.0.0.1.
    limited(file_from(&v, Some("203.0.113.7"), 4).await);
    // Staff are not limited by address.
    let helpdesk = v.token("helpdesk").await;
    let id = v.create(&helpdesk, &ada()).await;
    let (s, b) = v
        .post(
            &helpdesk,
            "/v1/requests",
            &json!({"kind": "access", "regulation": "gdpr", "customer_id": id}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

/// Behind a trusted proxy, the forwarded address is the source.
#[tokio::test]
async fn floods_behind_a_trusted_proxy_the_forwarded_address_counts() {
    let v = TestVault::start_adjusted(Backend::Sqlite, |s, _| {
        s.intake_per_source_per_hour = 2;
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    for i in 0..2 {
        let (s, _, b) = file_from(&v, Some("203.0.113.7"), i).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    }
    limited(file_from(&v, Some("203.0.113.7"), 2).await);
    // A spoofed address to the left of the proxy's is not believed.
    limited(file_from(&v, Some("198.51.100.1, 203.0.113.7"), 3).await);
    // Another forwarded address, and the proxy itself, are unaffected.
    let (s, _, b) = file_from(&v, Some("203.0.113.8"), 4).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, _, b) = file_from(&v, None, 5).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // The RFC 7239 header when there is no X-Forwarded-For.
    let resp = v
        .http
        .post(v.url("/v1/requests"))
        .header("Forwarded", "for=203.0.113.7;proto=https")
        .json(&filing("s6@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// A `trusted_proxies` entry that is not a network stops the vault at
/// start-up, naming the setting and the entry.
#[tokio::test]
async fn floods_bad_trusted_proxies_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vault.db").display());
    let mut settings = settings(&url);
    settings.tombstone_file = Some(dir.path().join("vault.tombstones"));
    settings.trusted_proxies = vec!["10.0.0.0/8".into(), "10.0.0.1/33".into()];
    let clock = std::sync::Arc::new(TestClock::default());
    let err = pii_vault::build_state(settings, clock, false)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("trusted_proxies") && err.contains("10.0.0.1/33"),
        "{err}"
    );
}

/// A staff read records the caller's address; an anonymous filing only a
/// keyed hash of it.
#[tokio::test]
async fn floods_audit_events_carry_the_client_address() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let id = v.create(&helpdesk, &ada()).await;
        let (s, _) = v
            .get(&helpdesk, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(s, StatusCode::OK);
        let events = v.audit().await;
        let read = events
            .iter()
            .rev()
            .find(|e| e.draft.action == "customer.read")
            .unwrap();
        assert_eq!(
            read.draft.reasons.get("client_addr").map(String::as_str),
            Some("127.0.0.1"),
            "{:?}",
            read.draft
        );

        let issued = events
            .iter()
            .rev()
            .find(|e| e.draft.action == "token.issue" && e.draft.decision == "allowed")
            .unwrap();
        assert_eq!(issued.draft.reasons["client_addr"], "127.0.0.1");
        let body = json!({"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"});
        let (s, _, _) = post_json(&v, "/v1/token", &body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        let (s, _, b) = post_json(&v, "/v1/requests", &filing("ada@example.com")).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        let request = b["id"].as_str().unwrap().to_owned();
        // The holder of the request token reads it: hashed too.
        let token = b["request_token"].as_str().unwrap();
        let (s, _) = v.get(token, &format!("/v1/requests/{request}")).await;
        assert_eq!(s, StatusCode::OK);
        let events = v.audit().await;
        let filed: Vec<_> = events
            .iter()
            .filter(|e| e.draft.reasons.get("request") == Some(&request))
            .collect();
        assert!(filed.iter().any(|e| e.draft.action == "request.received"));
        assert!(filed.iter().any(|e| e.draft.action == "request.read"));
        let denied = events
            .iter()
            .rev()
            .find(|e| e.draft.action == "token.issue" && e.draft.decision == "denied")
            .unwrap();
        let mut anonymous = filed;
        anonymous.push(denied);
        let hmacs: std::collections::BTreeSet<_> = anonymous
            .iter()
            .map(|e| e.draft.reasons.get("client_addr_hmac").cloned())
            .collect();
        assert_eq!(hmacs.len(), 1, "one address, one keyed hash: {hmacs:?}");
        for e in anonymous {
            let hmac = e
                .draft
                .reasons
                .get("client_addr_hmac")
                .unwrap_or_else(|| panic!("{:?}", e.draft));
            assert_eq!(hmac.len(), 64);
            assert!(hmac.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(!e.draft.reasons.contains_key("client_addr"));
            assert!(
                !serde_json::to_string(&e.draft)
                    .unwrap()
                    .contains("127.0.0.1")
            );
        }
    })
    .await;
}
