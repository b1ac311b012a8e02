//! Leak scan over every route: the real binary at `RUST_LOG=trace`, seeded
//! canary values sent through customers, consents, data subject requests,
//! the outbox, legal holds, exports, erasure, the audit API and key
//! rotation, on success and error paths. Afterwards no canary appears in a
//! log line, an error body, an audit event, or (SQLite) the database files.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const CANARIES: &[&str] = &[
    "wombat.leakwell@example.com",
    "+41795550199",
    "Wombat Leakington",
    "Rue du Wombat 12",
    "takahe-note-wombat",
    "wombat.renamed@example.com",
];

struct Client {
    http: reqwest::Client,
    base: String,
    /// Bodies of every answer with status ≥ 400.
    errors: Vec<String>,
    /// (method path, status) of every call, for the coverage check.
    seen: Vec<(String, u16)>,
}

impl Client {
    async fn call(
        &mut self,
        method: Method,
        token: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        if status.as_u16() >= 400 {
            self.errors
                .push(format!("{method} {path} {status}: {text}"));
        }
        self.seen
            .push((format!("{method} {path}"), status.as_u16()));
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_reach_no_log_error_body_audit_event_or_database_file_on_any_route() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("vault.db").display()),
            Backend::Postgres => fresh_pg_database().await,
        };
        let server = spawn_vault(dir.path(), &db, "trace");
        let base = server.base.clone();
        let mut secrets = Vec::new();
        let mut tok = std::collections::HashMap::new();
        for role in ["helpdesk", "dpo", "auditor", "notifier", "admin"] {
            let creds = add_client(dir.path(), &db, role);
            secrets.push(creds["client_secret"].as_str().unwrap().to_owned());
            tok.insert(role, client_token(&base, &creds).await);
        }
        let (h, dpo, aud, notif, admin) = (
            tok["helpdesk"].clone(),
            tok["dpo"].clone(),
            tok["auditor"].clone(),
            tok["notifier"].clone(),
            tok["admin"].clone(),
        );
        let mut c = Client {
            http: crate::helpers::http(),
            base: base.clone(),
            errors: Vec::new(),
            seen: Vec::new(),
        };
        let (h, dpo, aud, notif, admin) = (
            Some(h.as_str()),
            Some(dpo.as_str()),
            Some(aud.as_str()),
            Some(notif.as_str()),
            Some(admin.as_str()),
        );

        // Customers.
        let body = json!({"external_id": "zd-leakscan", "channel": "chat", "notice_version": "2026-01", "fields": {
            "email": {"value": CANARIES[0], "purposes": ["support", "billing"]},
            "phone": {"value": CANARIES[1], "purposes": ["support.callback"]},
            "name": {"value": CANARIES[2], "purposes": ["support", "billing"]},
            "address": {"value": CANARIES[3], "purposes": ["support"]},
            "support_note": {"value": CANARIES[4], "purposes": ["support"]}}});
        let (s, created) = c
            .call(
                Method::POST,
                h,
                "/v1/customers?purpose=support",
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let (s, second) = c
            .call(
                Method::POST,
                h,
                "/v1/customers?purpose=support",
                Some(json!({"channel": "chat", "fields": {
            "email": {"value": "second.customer@example.com", "purposes": ["support"]}}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{second}");
        let id2 = second["id"].as_str().unwrap().to_owned();
        // A batch: one customer stored, two refused with a canary in each;
        // its per-customer problems are error bodies too.
        let (s, batch) = c
            .call(
                Method::POST,
                h,
                "/v1/customers/batch?purpose=support",
                Some(json!([
                    {"channel": "chat", "fields": {
                        "email": {"value": "batch.customer@example.com", "purposes": ["support"]}}},
                    {"fields": {"phone": {"value": format!("{}x", CANARIES[1]), "purposes": ["support"]}}},
                    {"fields": {"favourite_bird": {"value": CANARIES[4], "purposes": ["support"]}}},
                ])),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{batch}");
        assert_eq!(batch["results"][0]["status"], 201, "{batch}");
        assert_eq!(batch["results"][1]["status"], 400, "{batch}");
        c.errors.push(format!("POST /v1/customers/batch: {batch}"));
        c.call(Method::POST, h, "/v1/customers?purpose=support", Some(body))
            .await; // duplicate external_id
        c.call(
            Method::GET,
            h,
            &format!("/v1/customers/{id}?purpose=support.callback"),
            None,
        )
        .await;
        c.call(
            Method::GET,
            h,
            &format!("/v1/customers/{id}/fields/phone?purpose=support.callback"),
            None,
        )
        .await;
        c.call(
            Method::GET,
            h,
            &format!("/v1/customers/{id}/fields/phone?purpose=marketing.sms"),
            None,
        )
        .await;
        c.call(
            Method::POST,
            h,
            "/v1/customers/search?purpose=support",
            Some(json!({"field": "email", "value": CANARIES[0]})),
        )
        .await;
        c.call(
            Method::POST,
            h,
            "/v1/customers/search?purpose=support",
            Some(json!({"field": "email", "value": format!("{}@@", CANARIES[4])})),
        )
        .await;
        c.call(
            Method::POST,
            h,
            "/v1/customers/search?purpose=support",
            Some(json!({"field": "phone", "value": CANARIES[1]})),
        )
        .await;
        c.call(
            Method::PATCH,
            h,
            &format!("/v1/customers/{id}?purpose=support"),
            Some(json!({"fields": {"email": {"value": CANARIES[5]}}})),
        )
        .await;
        for bad in [
            json!({"fields": {"phone": {"value": format!("{}x", CANARIES[1])}}}),
            json!({"fields": {"email": {"value": CANARIES[0]}}, "nickname": CANARIES[2]}),
            json!({"fields": {"favourite_bird": {"value": CANARIES[4]}}}),
            json!({"fields": {"email": {"value": 41795550199u64}}}),
        ] {
            let (s, _) = c
                .call(
                    Method::PATCH,
                    h,
                    &format!("/v1/customers/{id}?purpose=support"),
                    Some(bad),
                )
                .await;
            assert!(s.is_client_error(), "{s}");
        }

        // Consents.
        c.call(
            Method::POST,
            h,
            &format!("/v1/customers/{id}/consents"),
            Some(consent("marketing.email", "grant")),
        )
        .await;
        c.call(
            Method::POST,
            h,
            &format!("/v1/customers/{id}/consents"),
            Some(json!({"purpose": CANARIES[4], "action": "grant"})),
        )
        .await;
        c.call(
            Method::GET,
            h,
            &format!("/v1/customers/{id}/consents"),
            None,
        )
        .await;

        // Data subject requests, filed by the customer and by staff, through
        // the outbox and every decision.
        let (s, filed) = c
            .call(
                Method::POST,
                None,
                "/v1/requests",
                Some(json!({"kind": "access", "regulation": "gdpr",
            "identifier": {"field": "email", "value": CANARIES[5]}})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{filed}");
        let rid = filed["id"].as_str().unwrap().to_owned();
        let rtoken = filed["request_token"].as_str().unwrap().to_owned();
        secrets.push(rtoken.clone());
        c.call(
            Method::POST,
            None,
            "/v1/requests",
            Some(json!({"kind": "access", "regulation": "gdpr",
            "identifier": {"field": "email", "value": format!("{}!!", CANARIES[2])}})),
        )
        .await;
        c.call(
            Method::POST,
            None,
            "/v1/requests",
            Some(json!({"kind": "rectification", "regulation": "gdpr",
            "identifier": {"field": "phone", "value": CANARIES[1]},
            "changes": {"name": CANARIES[2]}})),
        )
        .await;
        c.call(
            Method::POST,
            Some(&rtoken),
            &format!("/v1/requests/{rid}/verify"),
            Some(json!({"code": "00000000"})),
        )
        .await;
        let (_, outbox) = c.call(Method::GET, notif, "/v1/outbox", None).await;
        let msgs = outbox["messages"].as_array().cloned().unwrap_or_default();
        if let Some(code) = msgs
            .iter()
            .find(|m| m["request_id"] == json!(rid))
            .and_then(|m| m["body"]["code"].as_str())
        {
            secrets.push(code.to_owned());
            let (s, b) = c
                .call(
                    Method::POST,
                    Some(&rtoken),
                    &format!("/v1/requests/{rid}/verify"),
                    Some(json!({"code": code})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        for m in &msgs {
            if let Some(mid) = m["id"].as_str() {
                c.call(
                    Method::POST,
                    notif,
                    &format!("/v1/outbox/{mid}/ack"),
                    Some(json!({})),
                )
                .await;
            }
        }
        c.call(
            Method::GET,
            Some(&rtoken),
            &format!("/v1/requests/{rid}"),
            None,
        )
        .await;
        c.call(
            Method::GET,
            Some(&rtoken),
            &format!("/v1/requests/{rid}/export"),
            None,
        )
        .await;
        // Erasure requests need the DPO: one extended and denied (an invalid
        // reason carrying a canary first), one approved (erases `id2`).
        let mut staff_ids = Vec::new();
        for target in [&id, &id2] {
            let (s, staff) = c
                .call(
                    Method::POST,
                    dpo,
                    "/v1/requests",
                    Some(json!({"kind": "erasure", "regulation": "gdpr",
                        "customer_id": target, "verified_by": "id_document_checked"})),
                )
                .await;
            assert!(s.is_success(), "{staff}");
            staff_ids.push(staff["id"].as_str().unwrap().to_owned());
        }
        let (s, b) = c
            .call(
                Method::POST,
                dpo,
                &format!("/v1/requests/{}/extend", staff_ids[0]),
                Some(json!({"reason": "complex case"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, _) = c
            .call(
                Method::POST,
                dpo,
                &format!("/v1/requests/{}/deny", staff_ids[0]),
                Some(json!({"reason": CANARIES[4]})),
            )
            .await;
        assert!(s.is_client_error());
        let (s, b) = c
            .call(
                Method::POST,
                dpo,
                &format!("/v1/requests/{}/deny", staff_ids[0]),
                Some(json!({"reason": "legal_claims"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = c
            .call(
                Method::POST,
                dpo,
                &format!("/v1/requests/{}/approve", staff_ids[1]),
                Some(json!({})),
            )
            .await;
        assert!(s.is_success(), "{b}");
        c.call(Method::GET, dpo, "/v1/requests", None).await;
        c.call(Method::GET, dpo, "/v1/requests/metrics", None).await;

        // Legal holds, exports.
        let (_, hold) = c.call(Method::POST, dpo, "/v1/legal-holds", Some(json!({"customer_id": id, "fields": ["name"],
            "reason": "Case 2026-117", "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"}))).await;
        c.call(
            Method::POST,
            dpo,
            "/v1/legal-holds",
            Some(json!({"customer_id": id, "fields": ["shoe_size"],
            "reason": "x", "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
        c.call(
            Method::GET,
            dpo,
            &format!("/v1/legal-holds?customer_id={id}"),
            None,
        )
        .await;
        c.call(
            Method::GET,
            dpo,
            &format!("/v1/customers/{id}/export?kind=access"),
            None,
        )
        .await;
        c.call(
            Method::GET,
            dpo,
            &format!("/v1/customers/{id}/export?kind=portability"),
            None,
        )
        .await;
        c.call(Method::GET, None, "/v1/schemas/export.json", None)
            .await;
        if let Some(hid) = hold["id"].as_str() {
            c.call(Method::DELETE, dpo, &format!("/v1/legal-holds/{hid}"), None)
                .await;
        }

        // Keys.
        c.call(Method::GET, admin, "/v1/keys", None).await;
        c.call(Method::POST, admin, "/v1/keys/rotate", Some(json!({})))
            .await;
        c.call(
            Method::POST,
            admin,
            "/v1/keys/signing/rotate",
            Some(json!({})),
        )
        .await;
        c.call(Method::POST, admin, "/v1/keys/1/retire", Some(json!({})))
            .await;
        c.call(
            Method::POST,
            admin,
            "/v1/keys/token-signing/rotate",
            Some(json!({})),
        )
        .await;

        // OAuth 2.0 discovery, keys and introspection; the problem page.
        c.call(
            Method::GET,
            None,
            "/.well-known/oauth-authorization-server",
            None,
        )
        .await;
        c.call(Method::GET, None, "/.well-known/jwks.json", None)
            .await;
        c.call(
            Method::POST,
            admin,
            "/v1/token/introspect",
            Some(json!({"token": CANARIES[4]})),
        )
        .await;
        c.call(Method::GET, None, "/problems", None).await;

        // Erasure (after the key rotation: old data keys are rewrapped).
        let (s, b) = c
            .call(Method::DELETE, dpo, &format!("/v1/customers/{id2}"), None)
            .await;
        assert!(s.is_success() || s.is_client_error(), "{s} {b}");

        // The audit API.
        c.call(
            Method::GET,
            aud,
            &format!("/v1/customers/{id}/access-log"),
            None,
        )
        .await;
        c.call(Method::GET, aud, "/v1/audit?limit=1000", None).await;
        c.call(Method::GET, aud, "/v1/audit/export", None).await;
        c.call(Method::GET, aud, "/v1/audit/verify", None).await;
        c.call(Method::GET, aud, "/v1/audit/public-key", None).await;
        c.call(
            Method::GET,
            aud,
            &format!("/v1/audit?actor={}", CANARIES[4]),
            None,
        )
        .await;
        c.call(Method::GET, h, "/v1/policy", None).await;
        c.call(Method::GET, h, "/v1/processing-activities", None)
            .await;
        c.call(
            Method::POST,
            None,
            "/v1/token",
            Some(json!({"grant_type": "password", "username": "u", "password": CANARIES[4]})),
        )
        .await;

        // Every route of the OpenAPI document was called at least once.
        let (_, doc) = c.call(Method::GET, None, "/openapi.json", None).await;
        let called: Vec<String> = c
            .seen
            .iter()
            .map(|(p, _)| p.split('?').next().unwrap().to_owned())
            .collect();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let m = method.to_uppercase();
                let hit = called.iter().any(|c| {
                    let (cm, cp) = c.split_once(' ').unwrap();
                    cm == m && same_route(path, cp)
                });
                if !["/healthz", "/readyz", "/metrics"].contains(&path.as_str()) {
                    assert!(hit, "{m} {path} is not exercised by the leak scan");
                }
            }
        }

        eprintln!("{backend:?} leak scan calls: {:?}", c.seen);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let logs = server.logs.lock().unwrap().join("\n").to_lowercase();
        assert!(logs.lines().count() > 100, "trace logging produced output");
        let audit = dump(backend, &db, "SELECT actor || ' ' || action || ' ' || COALESCE(purpose, '') || ' ' || COALESCE(customer_id, '') || ' ' || fields || ' ' || reasons || ' ' || request_id FROM audit_events").await;
        let mut needles: Vec<String> = CANARIES.iter().map(|c| c.to_lowercase()).collect();
        needles.extend(["wombat".into(), "takahe".into(), "41795550199".into()]);
        needles.extend(secrets.iter().map(|s| s.to_lowercase()));
        needles.extend(tok.values().map(|t| t.to_lowercase()));
        for n in &needles {
            assert!(
                !logs.contains(n.as_str()),
                "{backend:?}: {n} appears in the logs"
            );
            assert!(
                !audit.contains(n.as_str()),
                "{backend:?}: {n} appears in the audit trail"
            );
            for b in &c.errors {
                assert!(
                    !b.to_lowercase().contains(n.as_str()),
                    "{backend:?}: {n} appears in an error body: {b}"
                );
            }
        }
        assert!(
            c.errors.len() >= 8,
            "the error paths ran: {}",
            c.errors.len()
        );
        drop(server);
        if backend == Backend::Sqlite {
            let mut files = 0;
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let p = entry.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if !name.starts_with("vault.") {
                    continue;
                }
                files += 1;
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).to_lowercase();
                for n in needles.iter().take(CANARIES.len() + 3) {
                    assert!(!text.contains(n.as_str()), "{n} found in clear in {name}");
                }
            }
            assert!(files >= 1);
        } else {
            // PostgreSQL: every text column of every table.
            for table in [
                "customers",
                "field_values",
                "blind_index",
                "consent_events",
                "requests",
                "outbox",
                "legal_holds",
                "idempotency_keys",
                "disclosures",
                "request_exports",
            ] {
                let sql = format!(
                    "SELECT COALESCE(string_agg(row_to_json(t)::text, ' '), '') FROM {table} t"
                );
                let rows = dump(backend, &db, &sql).await;
                for n in needles.iter().take(CANARIES.len() + 3) {
                    assert!(
                        !rows.contains(n.as_str()),
                        "{n} found in clear in table {table}"
                    );
                }
            }
        }
    }
}

/// Whether a called path matches an OpenAPI path template.
fn same_route(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
}

async fn dump(backend: Backend, db: &str, sql: &str) -> String {
    use sqlx::Connection;
    let rows: Vec<String> = match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(db).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(db).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
    };
    rows.join("\n").to_lowercase()
}
