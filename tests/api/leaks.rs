//! Canary values must appear in no log line (at RUST_LOG=trace), no error
//! body, no audit event and not in the database file (R36, R39).
//! Runs the real binary so the logs are exactly what an operator would see.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const CANARIES: &[&str] = &[
    "canary.quokka@example.com",
    "+41791234987",
    "Quokka Canarysson",
    "Via Canarina 77",
    "canary-note-kakapo",
    "CH93-CANARY-4711",
];

#[tokio::test]
async fn canaries_reach_no_log_error_body_audit_event_or_database_file() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("vault.db").display()),
            Backend::Postgres => fresh_pg_database().await,
        };
        let server = spawn_vault(dir.path(), &db, "trace");
        let creds = add_client(dir.path(), &db, "helpdesk");
        let http = crate::helpers::http();
        let url = |p: &str| format!("{}{}", server.base, p);
        let token = client_token(&server.base, &creds).await;

        let mut bodies = Vec::new();
        let call = |resp: reqwest::Response| async move { resp.text().await.unwrap() };
        let body = json!({"external_id": "zd-canary", "channel": "chat", "fields": {
            "email": {"value": CANARIES[0], "purposes": ["support"]},
            "phone": {"value": CANARIES[1], "purposes": ["support.callback"]},
            "name": {"value": CANARIES[2], "purposes": ["support"]},
            "address": {"value": CANARIES[3], "purposes": ["support"]},
            "support_note": {"value": CANARIES[4], "purposes": ["support"]}}});
        let created: Value = http
            .post(url("/v1/customers?purpose=support"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        // Reads (allowed values leave in bodies by design; they are not collected).
        http.get(url(&format!("/v1/customers/{id}?purpose=support.callback")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        http.post(url("/v1/customers/search?purpose=support"))
            .bearer_auth(&token)
            .json(&json!({"field": "email", "value": CANARIES[0]}))
            .send()
            .await
            .unwrap();
        // Error paths, each carrying a canary.
        let bad = [
            json!({"fields": {"phone": {"value": format!("{}x", CANARIES[1]), "purposes": ["support"]}}}),
            json!({"fields": {"email": {"value": CANARIES[0], "purposes": ["support"]}}, "nickname": CANARIES[2]}),
            json!({"fields": {"national_id": {"value": CANARIES[5], "purposes": ["marketing"]}}}),
            json!({"fields": {"email": {"value": 41791234987u64, "purposes": ["support"]}}}),
            json!({"fields": {"favourite_bird": {"value": CANARIES[4], "purposes": ["support"]}}}),
        ];
        for b in &bad {
            bodies.push(
                call(
                    http.post(url("/v1/customers?purpose=support"))
                        .bearer_auth(&token)
                        .json(b)
                        .send()
                        .await
                        .unwrap(),
                )
                .await,
            );
        }
        bodies.push(
            call(
                http.post(url("/v1/customers/search?purpose=support"))
                    .bearer_auth(&token)
                    .json(&json!({"field": "email", "value": "not-an-email-canary-kakapo"}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await,
        );
        bodies.push(call(http.post(url("/v1/token")).json(&json!({"grant_type": "password", "username": "u", "password": CANARIES[4]})).send().await.unwrap()).await);
        bodies.push(
            call(
                http.get(url(&format!(
                    "/v1/customers/{id}/fields/phone?purpose=marketing.sms"
                )))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
            )
            .await,
        );

        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(http);
        let logs = server.logs.lock().unwrap().join("\n");
        assert!(logs.lines().count() > 20, "trace logging produced output");
        let audit = audit_dump(&db).await;
        let secret = creds["client_secret"].as_str().unwrap();
        let mut needles: Vec<String> = CANARIES.iter().map(|c| c.to_lowercase()).collect();
        needles.extend([
            "canary-kakapo".into(),
            "quokka".into(),
            secret.to_lowercase(),
            token.to_lowercase(),
        ]);
        for n in &needles {
            assert!(
                !logs.to_lowercase().contains(n),
                "{backend:?}: {n} appears in the logs"
            );
            assert!(
                !audit.to_lowercase().contains(n),
                "{backend:?}: {n} appears in the audit trail"
            );
            for b in &bodies {
                assert!(
                    !b.to_lowercase().contains(n),
                    "{backend:?}: {n} appears in an error body: {b}"
                );
            }
        }
        drop(server);
        if backend == Backend::Sqlite {
            // R36: neither the database file nor its WAL holds a value in clear.
            let mut files = 0;
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let p = entry.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if !name.starts_with("vault.db") {
                    continue;
                }
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                let text = String::from_utf8_lossy(&bytes).to_lowercase();
                for n in CANARIES.iter().map(|c| c.to_lowercase()).chain([
                    "+41791234987".into(),
                    "canary.quokka".into(),
                    "kakapo".into(),
                ]) {
                    assert!(!text.contains(&n), "{n} found in clear in {name}");
                }
            }
            assert!(files >= 1);
        }
    }
}

async fn audit_dump(db: &str) -> String {
    use sqlx::Connection;
    let rows: Vec<(String, String, String, String)> = if db.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(db).await.unwrap();
        sqlx::query_as("SELECT actor || ' ' || action || ' ' || COALESCE(purpose, '') || ' ' || COALESCE(customer_id, ''), fields, reasons, request_id FROM audit_events")
            .fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(db).await.unwrap();
        sqlx::query_as("SELECT actor || ' ' || action || ' ' || COALESCE(purpose, '') || ' ' || COALESCE(customer_id, ''), fields, reasons, request_id FROM audit_events")
            .fetch_all(&mut c).await.unwrap()
    };
    assert!(rows.len() > 5);
    format!("{rows:?}")
}
