//! Erasure (R26–R31): `DELETE /v1/customers/{id}`, partial erasure under a
//! legal hold or a legal obligation, holds and their release, the job
//! finished after a SIGKILL, and a restored older backup erased again.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

use crate::helpers::*;
use pii_vault::clock::Clock;

/// Rows of `sql` (one `$1` = the customer id), read straight from the
/// vault's database, either backend.
pub async fn fetch<T>(url: &str, sql: &'static str, id: Uuid) -> Vec<T>
where
    T: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(sql)
            .bind(id)
            .fetch_all(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(sql)
            .bind(id)
            .fetch_all(&mut c)
            .await
            .unwrap()
    }
}

pub async fn stored_key(url: &str, id: Uuid) -> (Option<i64>, Option<Vec<u8>>) {
    fetch(
        url,
        "SELECT kek_version, wrapped_dek FROM customers WHERE id = $1",
        id,
    )
    .await
    .pop()
    .expect("customer row")
}

pub async fn ciphertexts(url: &str, id: Uuid) -> Vec<(String, Vec<u8>)> {
    fetch(
        url,
        "SELECT field, ciphertext FROM field_values WHERE customer_id = $1 ORDER BY field",
        id,
    )
    .await
}

pub async fn counts(url: &str, id: Uuid) -> (i64, i64, i64, i64) {
    fetch(
        url,
        "SELECT (SELECT COUNT(*) FROM field_values WHERE customer_id = $1), \
         (SELECT COUNT(*) FROM value_purposes WHERE customer_id = $1), \
         (SELECT COUNT(*) FROM blind_index WHERE customer_id = $1), \
         (SELECT COUNT(*) FROM consent_events WHERE customer_id = $1)",
        id,
    )
    .await
    .pop()
    .unwrap()
}

/// R27: no data key of this customer opens any of `old` ciphertexts.
pub fn undecryptable(
    v: &TestVault,
    id: Uuid,
    key: &(Option<i64>, Option<Vec<u8>>),
    old: &[(String, Vec<u8>)],
) -> bool {
    let (Some(version), Some(wrapped)) = key else {
        return true;
    };
    let Ok(dek) = v.state.keys.keyring().unwrap_dek(id, *version, wrapped) else {
        return true;
    };
    old.iter()
        .all(|(field, ct)| dek.decrypt_field(id, field, ct).is_err())
}

pub async fn delete(v: &TestVault, token: &str, path: &str) -> (StatusCode, Value) {
    v.send(reqwest::Method::DELETE, token, path, &json!({}))
        .await
}

fn hold_body(id: &str, fields: &[&str]) -> Value {
    json!({"customer_id": id, "fields": fields, "reason": "Case 2026-117 (invoice dispute)",
           "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"})
}

fn customer_with_consent() -> Value {
    json!({
        "external_id": format!("zd-{}", Uuid::now_v7().simple()),
        "channel": "chat", "notice_version": "2026-01",
        "fields": {
            "email": {"value": "ada@example.com", "purposes": ["support", "marketing.email"]},
            "phone": {"value": "+39 333 123 4567", "purposes": ["support.callback"]},
            "support_note": {"value": "prefers mornings", "purposes": ["support"]}
        },
        "consents": [{"purpose": "marketing.email", "notice_version": "2026-01",
                      "notice_text_sha256": NOTICE_SHA, "language": "it", "jurisdiction": "EU"}]
    })
}

#[tokio::test]
async fn r26_r27_r31_r32_delete_erases_values_index_consents_and_the_data_key() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v.create(&helpdesk, &customer_with_consent()).await;
        let cid: Uuid = id.parse().unwrap();
        let before = ciphertexts(&v.database_url, cid).await;
        assert_eq!(before.len(), 3);
        let (_, _, index, consents) = counts(&v.database_url, cid).await;
        assert!(index >= 2 && consents == 1);

        // A recipient was given the e-mail (a disclosure).
        let marketing = v.token("marketing_tool").await;
        let (s, _) = v
            .get(
                &marketing,
                &format!("/v1/customers/{id}?purpose=marketing.email"),
            )
            .await;
        assert_eq!(s, StatusCode::OK);

        // Only the erase capability may erase.
        let (s, body) = delete(&v, &helpdesk, &format!("/v1/customers/{id}")).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("capability_required"))
        );

        let (s, receipt) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["status"], "erased");
        assert_eq!(receipt["retained"], json!([]));
        assert_eq!(receipt["customer_id"], id);
        let receipt_id = receipt["receipt_id"].as_str().unwrap().to_owned();

        // R26: the profile is 404 for every purpose, a search finds nothing.
        for purpose in ["support", "support.callback"] {
            let (s, b) = v
                .get(&helpdesk, &format!("/v1/customers/{id}?purpose={purpose}"))
                .await;
            assert_eq!(
                (s, b["code"].as_str()),
                (StatusCode::NOT_FOUND, Some("customer_not_found"))
            );
        }
        let (s, found) = v
            .post(
                &helpdesk,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ada@example.com"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(found["customers"], json!([]));
        let (s, _) = v.get(&dpo, &format!("/v1/customers/{id}/consents")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // R26: the export holds only the receipt.
        let (s, export) = v
            .get(&dpo, &format!("/v1/customers/{id}/export?kind=access"))
            .await;
        assert_eq!(s, StatusCode::OK, "{export}");
        assert_eq!(export["erasure"]["receipt_id"], receipt_id.as_str());
        for gone in [
            "data",
            "consents",
            "recipients",
            "access_log",
            "processing_purposes",
        ] {
            assert!(
                export.get(gone).is_none(),
                "{gone} in an erased customer's export"
            );
        }
        assert_eq!(export["subject"], json!({"id": id}));

        // R27: values, index entries, consent payloads and the key are gone;
        // the old ciphertext opens with nothing the vault still has.
        assert_eq!(counts(&v.database_url, cid).await, (0, 0, 0, 0));
        let key = stored_key(&v.database_url, cid).await;
        assert_eq!(key, (None, None));
        assert!(undecryptable(&v, cid, &key, &before));

        // R26: the audit trail keeps a non-personal record of the erasure.
        let events = v.audit().await;
        let erase = events
            .iter()
            .find(|e| {
                e.draft.action == "customer.erase"
                    && e.draft.customer_id.as_deref() == Some(id.as_str())
                    && e.draft.decision != "denied"
            })
            .expect("customer.erase event");
        assert_eq!(erase.draft.decision, "erased");
        assert_eq!(erase.draft.reasons["receipt_id"], receipt_id);
        let dump = format!("{events:?}").to_lowercase();
        for value in ["ada@example.com", "393331234567", "prefers mornings"] {
            assert!(!dump.contains(value), "{value} in the audit trail");
        }

        // R31: the tombstone holds the id, the state, the time and where it
        // came from only (and its place in the authenticated chain).
        let tombstones = std::fs::read_to_string(v.dir.path().join("vault.tombstones")).unwrap();
        let line: Value = serde_json::from_str(tombstones.lines().last().unwrap()).unwrap();
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["entry", "mac", "n", "prev"], "{line}");
        let entry = &line["entry"];
        assert_eq!(entry["customer_id"], id);
        assert_eq!(entry["status"], "erased");
        assert_eq!(entry["origin"], "erasure");
        assert_eq!(entry.as_object().unwrap().len(), 4, "{line}");
        assert!(!tombstones.contains("ada@") && !tombstones.contains("zd-"));

        // R32: the recipient gets one notice of the erasure, with no value.
        let notifier = v.token("notifier").await;
        let (s, outbox) = v.get(&notifier, "/v1/outbox").await;
        assert_eq!(s, StatusCode::OK, "{outbox}");
        let notices: Vec<&Value> = outbox["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "recipient_notice" && m["customer_id"] == id.as_str())
            .collect();
        assert_eq!(notices.len(), 1, "{outbox}");
        assert_eq!(notices[0]["to"]["recipient_role"], "marketing_tool");
        assert_eq!(notices[0]["body"]["notice"], "erasure");
        assert!(!notices[0].to_string().contains("ada@"));

        // Idempotent: the same receipt again; unknown ids are 404.
        let (s, again) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(
            (s, again["receipt_id"].as_str()),
            (StatusCode::OK, Some(receipt_id.as_str()))
        );
        let (s, b) = delete(&v, &dpo, &format!("/v1/customers/{}", Uuid::now_v7())).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("customer_not_found"))
        );
        let (s, b) = delete(&v, &dpo, "/v1/customers/not-a-uuid").await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_id"))
        );
    })
    .await;
}

#[tokio::test]
async fn r28_partial_erasure_keeps_held_and_legal_obligation_values_for_their_purpose_only() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let billing = v.token("billing_system").await;
        let id = v
            .create(
                &helpdesk,
                &json!({
                    "channel": "chat",
                    "fields": {
                        "email": {"value": "ada@example.com", "purposes": ["support", "billing"]},
                        "phone": {"value": "+39 333 123 4567", "purposes": ["support.callback"]},
                        "name": {"value": "Ada Lovelace", "purposes": ["support"]},
                        "address": {"value": "1 Analytical Row", "purposes": ["support"]}
                    }
                }),
            )
            .await;
        let cid: Uuid = id.parse().unwrap();
        let before = ciphertexts(&v.database_url, cid).await;

        let (s, hold) = v
            .post(&dpo, "/v1/legal-holds", &hold_body(&id, &["name"]))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{hold}");
        assert_eq!(hold["purpose"], "legal.claims");
        assert_eq!(hold["active"], true);

        let (s, receipt) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["status"], "partially_erased");
        let retained = receipt["retained"].as_array().unwrap();
        assert_eq!(retained.len(), 2, "{receipt}");
        let email = retained.iter().find(|r| r["field"] == "email").unwrap();
        assert_eq!(
            (email["purpose"].as_str(), email["basis"].as_str()),
            (Some("billing"), Some("legal_obligation"))
        );
        assert!(
            email["until"].as_str().unwrap() > "2035",
            "10 years of billing retention"
        );
        let name = retained.iter().find(|r| r["field"] == "name").unwrap();
        assert_eq!(
            (
                name["purpose"].as_str(),
                name["basis"].as_str(),
                name["until"].as_str()
            ),
            (
                Some("legal.claims"),
                Some("legal_claims"),
                Some("2099-01-01T00:00:00.000000Z")
            )
        );

        // Readable only for the kept purposes.
        let (s, b) = v
            .get(&helpdesk, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("customer_not_found"))
        );
        let (s, b) = v
            .get(
                &helpdesk,
                &format!("/v1/customers/{id}?purpose=support.callback"),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        let (s, profile) = v
            .get(&billing, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        assert_eq!(s, StatusCode::OK, "{profile}");
        assert_eq!(profile["fields"], json!({"email": "ada@example.com"}));
        let (s, f) = v
            .get(
                &billing,
                &format!("/v1/customers/{id}/fields/email?purpose=billing"),
            )
            .await;
        assert_eq!(
            (s, f["value"].as_str()),
            (StatusCode::OK, Some("ada@example.com"))
        );
        let (s, profile) = v
            .get(&dpo, &format!("/v1/customers/{id}?purpose=legal.claims"))
            .await;
        assert_eq!(s, StatusCode::OK, "{profile}");
        assert_eq!(profile["fields"], json!({"name": "Ada Lovelace"}));
        // No change to a partially erased customer, and no search finds it.
        let (s, _) = v
            .patch(
                &billing,
                &format!("/v1/customers/{id}?purpose=billing"),
                &json!({"fields": {"email": {"value": "x@example.com"}}}),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (_, found) = v
            .post(
                &billing,
                "/v1/customers/search?purpose=billing",
                &json!({"field": "email", "value": "ada@example.com"}),
            )
            .await;
        assert_eq!(found["customers"], json!([]));

        // Only the kept values remain, re-encrypted under a fresh key: the key
        // that protected the erased values is gone.
        let after = ciphertexts(&v.database_url, cid).await;
        assert_eq!(
            after.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
            vec!["email", "name"]
        );
        let key = stored_key(&v.database_url, cid).await;
        assert!(key.1.is_some());
        assert!(
            undecryptable(&v, cid, &key, &before),
            "the old ciphertext opens with the current key"
        );
        assert!(!undecryptable(&v, cid, &key, &after));

        // A second DELETE returns the same receipt.
        let (s, again) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(
            (s, &again["receipt_id"]),
            (StatusCode::OK, &receipt["receipt_id"])
        );

        // The export holds the kept values and the receipt.
        let (_, export) = v.get(&dpo, &format!("/v1/customers/{id}/export")).await;
        assert_eq!(export["erasure"]["status"], "partially_erased");
        let fields: Vec<&str> = export["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, vec!["email", "name"]);
    })
    .await;
}

#[tokio::test]
async fn r29_releasing_the_hold_lets_the_pending_erasure_finish() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v
            .create(
                &helpdesk,
                &json!({"fields": {
                "name": {"value": "Ada Lovelace", "purposes": ["support"]},
                "phone": {"value": "+39 333 123 4567", "purposes": ["support.callback"]}}}),
            )
            .await;
        let cid: Uuid = id.parse().unwrap();
        let (_, hold) = v
            .post(&dpo, "/v1/legal-holds", &hold_body(&id, &["name"]))
            .await;
        let hold_id = hold["id"].as_str().unwrap().to_owned();
        let (_, receipt) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(receipt["status"], "partially_erased");
        assert_eq!(ciphertexts(&v.database_url, cid).await.len(), 1);

        let (s, list) = v
            .get(&dpo, &format!("/v1/legal-holds?customer_id={id}"))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(list["holds"].as_array().unwrap().len(), 1);
        assert_eq!(
            list["holds"][0]["reason"],
            "Case 2026-117 (invoice dispute)"
        );
        let (_, active) = v.get(&dpo, "/v1/legal-holds").await;
        assert!(
            active["holds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["id"] == hold_id.as_str())
        );

        let (s, released) = delete(&v, &dpo, &format!("/v1/legal-holds/{hold_id}")).await;
        assert_eq!(s, StatusCode::OK, "{released}");
        assert_eq!(released["hold"]["active"], false);
        assert_eq!(released["erasure"]["status"], "erased");
        assert_eq!(released["erasure"]["receipt_id"], receipt["receipt_id"]);
        assert!(released["erasure"]["completed_at"].is_string());

        // Finished: nothing left, the data key destroyed.
        assert_eq!(counts(&v.database_url, cid).await, (0, 0, 0, 0));
        assert_eq!(stored_key(&v.database_url, cid).await, (None, None));
        let (s, _) = v
            .get(&dpo, &format!("/v1/customers/{id}?purpose=legal.claims"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (_, again) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(again["status"], "erased");
        let events = v.audit().await;
        assert!(
            events
                .iter()
                .any(|e| e.draft.action == "legal_hold.release")
        );
        assert!(events.iter().any(|e| e.draft.action == "customer.erase"
            && e.draft.decision == "erased"
            && e.draft.reasons.get("trigger").map(String::as_str) == Some("hold_released")));

        // A released hold cannot be released again; bad holds are refused.
        let (s, b) = delete(&v, &dpo, &format!("/v1/legal-holds/{hold_id}")).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::CONFLICT, Some("hold_released"))
        );
        let (s, b) = delete(&v, &dpo, &format!("/v1/legal-holds/{}", Uuid::now_v7())).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("hold_not_found"))
        );
        let (s, b) = v
            .post(&dpo, "/v1/legal-holds", &hold_body(&id, &["name"]))
            .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("customer_not_found"))
        );
        let other = v.create(&helpdesk, &ada()).await;
        let (s, b) = v
            .post(&dpo, "/v1/legal-holds", &hold_body(&other, &["shoe_size"]))
            .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("unknown_field"))
        );
        let mut past = hold_body(&other, &["email"]);
        past["review_at"] = json!("2001-01-01T00:00:00Z");
        let (s, b) = v.post(&dpo, "/v1/legal-holds", &past).await;
        assert_eq!(
            (s, b["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("review_at"))
        );
        let (s, b) = v
            .post(&helpdesk, "/v1/legal-holds", &hold_body(&other, &["email"]))
            .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("capability_required"))
        );
    })
    .await;
}

#[tokio::test]
async fn r28_r35_kept_billing_value_goes_when_its_retention_runs_out() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v.create(&helpdesk, &ada()).await;
        let cid: Uuid = id.parse().unwrap();
        let (_, receipt) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(receipt["status"], "partially_erased");
        v.clock.advance_days(3660 + 5);
        let ctx = pii_vault::requests::erasure::Ctx::from_state(&v.state);
        let report = pii_vault::retention::sweep(&ctx, v.clock.now_micros(), |_| {})
            .await
            .unwrap();
        assert_eq!(report.erasures_settled, 1);
        assert_eq!(stored_key(&v.database_url, cid).await, (None, None));
        assert_eq!(counts(&v.database_url, cid).await, (0, 0, 0, 0));
        let dpo = v.token("dpo").await;
        let (_, again) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(again["status"], "erased");
    })
    .await;
}

#[tokio::test]
async fn r30_r31_a_restored_older_backup_is_erased_again_before_it_serves() {
    for backend in backends() {
        let v = TestVault::start(backend).await;
        let helpdesk = v.token("helpdesk").await;
        let id = v.create(&helpdesk, &customer_with_consent()).await;
        let cid: Uuid = id.parse().unwrap();
        let kept = v.create(&helpdesk, &ada()).await;

        // The backup, taken before the erasure: SQLite copies its file
        // (VACUUM INTO, a consistent snapshot); PostgreSQL copies the
        // database (CREATE DATABASE … TEMPLATE, while the vault is stopped).
        let (v, pg_backup) = match backend {
            Backend::Sqlite => {
                let file = v.dir.path().join("backup.db");
                v.exec(&format!("VACUUM INTO '{}'", file.display())).await;
                (v, None)
            }
            Backend::Postgres => {
                let (dir, url) = v.stop().await;
                let backup = pg_copy(&url).await;
                (TestVault::start_with(backend, dir, url).await, Some(backup))
            }
        };
        let dpo = v.token("dpo").await;
        let (s, _) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(s, StatusCode::OK);
        let (dir, _) = v.stop().await;

        // Restore the older copy and start on it.
        let url = match pg_backup {
            Some(url) => url,
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(dir.path().join(format!("vault.db{suffix}")));
                }
                std::fs::copy(dir.path().join("backup.db"), dir.path().join("vault.db")).unwrap();
                format!("sqlite://{}", dir.path().join("vault.db").display())
            }
        };
        check_restored(
            TestVault::start_with(backend, dir, url).await,
            &id,
            cid,
            &kept,
        )
        .await;
    }
}

async fn check_restored(v: TestVault, id: &str, cid: Uuid, kept: &str) {
    // By the time the vault serves, the customer is erased again.
    let key = stored_key(&v.database_url, cid).await;
    assert_eq!(
        key,
        (None, None),
        "{:?}: the restored customer still has its key",
        v.backend
    );
    assert_eq!(counts(&v.database_url, cid).await, (0, 0, 0, 0));
    let helpdesk = v.token("helpdesk").await;
    let (s, _) = v
        .get(&helpdesk, &format!("/v1/customers/{id}?purpose=support"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The other customer of the backup is untouched.
    let (s, other) = v
        .get(&helpdesk, &format!("/v1/customers/{kept}?purpose=support"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(other["fields"]["email"], "ada@example.com");
    let events = v.audit().await;
    assert!(events.iter().any(
        |e| e.draft.action == "erasure.reapplied" && e.draft.customer_id.as_deref() == Some(id)
    ));
    // R31: the file that made this possible holds no personal value.
    let file = std::fs::read_to_string(v.dir.path().join("vault.tombstones")).unwrap();
    for line in file.lines() {
        let t: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = t["entry"].as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["customer_id", "erased_at", "origin", "status"]);
    }
    assert!(!file.contains("ada@") && !file.contains("+39"));
}

async fn pg_copy(url: &str) -> String {
    let (base, name) = url.rsplit_once('/').unwrap();
    let admin = std::env::var("DATABASE_URL").unwrap();
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    let copy = format!("{name}_backup");
    drop_at_test_end(&copy);
    for _ in 0..50 {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(name)
            .execute(&mut c)
            .await
            .unwrap();
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {copy} TEMPLATE {name}"
        )))
        .execute(&mut c)
        .await;
        if r.is_ok() {
            return format!("{base}/{copy}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot copy the database");
}

// ---------------------------------------------------------------------------
// The real binary, killed in the middle of an erasure
// ---------------------------------------------------------------------------

/// The real binary with a test-only pause between an erasure job's steps.
fn start(dir: &std::path::Path, db: &str, pause_ms: u64) -> Proc {
    let mut cmd = vault_cmd(dir, db, "info");
    cmd.env("PII_VAULT_TEST_ERASURE_PAUSE_MS", pause_ms.to_string());
    serve(cmd)
}

async fn job_state(url: &str, id: Uuid) -> Option<(String, i64)> {
    fetch(
        url,
        "SELECT status, step FROM erasure_jobs WHERE customer_id = $1",
        id,
    )
    .await
    .pop()
}

#[tokio::test]
async fn r27_an_erasure_killed_half_way_is_finished_at_the_next_start() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("vault.db").display()),
            Backend::Postgres => fresh_pg_database().await,
        };
        // Test-only pause between the job's steps, so there is a "middle".
        let server = start(dir.path(), &db, 3_000);
        let (hd, dp) = (
            add_client(dir.path(), &db, "helpdesk"),
            add_client(dir.path(), &db, "dpo"),
        );
        let http = crate::helpers::http();
        let helpdesk = client_token(&server.base, &hd).await;
        let dpo = client_token(&server.base, &dp).await;
        let created: Value = http
            .post(format!("{}/v1/customers?purpose=support", server.base))
            .bearer_auth(&helpdesk)
            .json(&customer_with_consent())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let cid: Uuid = id.parse().unwrap();
        let before = ciphertexts(&db, cid).await;
        assert_eq!(before.len(), 3);

        let erase = {
            let (http, url, dpo) = (
                http.clone(),
                format!("{}/v1/customers/{id}", server.base),
                dpo.clone(),
            );
            tokio::spawn(async move { http.delete(url).bearer_auth(dpo).send().await })
        };
        // Wait until the consents are gone but the values not yet, then kill.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if job_state(&db, cid).await.is_some_and(|(_, step)| step == 2) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the erasure did not reach its second step"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut server = server;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        assert!(
            erase.await.unwrap().is_err(),
            "the DELETE never got an answer"
        );
        // The middle: the job is running, the values and the key are still there.
        assert_eq!(job_state(&db, cid).await, Some(("running".into(), 2)));
        assert_eq!(ciphertexts(&db, cid).await.len(), 3);
        assert!(stored_key(&db, cid).await.1.is_some());
        assert!(!server.logs.lock().unwrap().is_empty());
        drop(server);

        // The next start finishes the job before it serves.
        let server = start(dir.path(), &db, 0);
        assert_eq!(
            job_state(&db, cid).await.map(|j| j.0),
            Some("erased".into())
        );
        let (s, body) = crate::helpers::split(
            http.get(format!("{}/v1/customers/{id}?purpose=support", server.base))
                .bearer_auth(&helpdesk)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("customer_not_found"))
        );
        let export: Value = http
            .get(format!("{}/v1/customers/{id}/export", server.base))
            .bearer_auth(&dpo)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(export["erasure"]["status"], "erased", "{export}");
        assert!(export.get("data").is_none() && export.get("consents").is_none());
        // The stored ciphertext can no longer be decrypted: it is gone, and
        // so is the only key that opened it.
        assert!(ciphertexts(&db, cid).await.is_empty());
        assert_eq!(stored_key(&db, cid).await, (None, None));
        drop(server);
    }
}

// ---------------------------------------------------------------------------
// Erasure wins races with writes
// ---------------------------------------------------------------------------

/// A customer with nothing a legal obligation or a hold keeps: its erasure
/// is complete.
fn support_only_customer() -> Value {
    json!({
        "external_id": format!("zd-{}", Uuid::now_v7().simple()),
        "channel": "chat", "notice_version": "2026-01",
        "fields": {
            "email": {"value": "ada@example.com", "purposes": ["support"]},
            "phone": {"value": "+39 333 123 4567", "purposes": ["support.callback"]}
        }
    })
}

/// The marker ciphertext, blind-index digest and consent id the refused
/// writes carry, so the test can look for them in the database.
const MARKER: &[u8] = b"written after the erasure began";

/// The writes a `PATCH`, a consent and an objection make, each its own unit,
/// as a request that read the customer before its erasure began commits them.
fn late_writes(customer: Uuid, consent_id: Uuid, at: i64) -> Vec<pii_vault::store::Unit> {
    use pii_vault::store::Unit;
    let value = stored_value(
        customer,
        "email",
        MARKER.to_vec(),
        Some(MARKER.to_vec()),
        at,
    );
    vec![
        Unit {
            mutations: vec![value],
            events: vec![],
        },
        Unit {
            mutations: vec![stored_grant(consent_id, customer, at)],
            events: vec![],
        },
        Unit {
            mutations: vec![
                pii_vault::store::RequestMutation::AddObjection {
                    customer_id: customer,
                    purpose: "analytics".into(),
                    at,
                }
                .into(),
            ],
            events: vec![],
        },
    ]
}

/// Whether the database holds anything of [`late_writes`] for `id`.
async fn late_writes_stored(url: &str, id: Uuid, consent_id: Uuid) -> Vec<&'static str> {
    let mut found = Vec::new();
    if ciphertexts(url, id).await.iter().any(|(_, c)| c == MARKER) {
        found.push("value");
    }
    let digests: Vec<(Vec<u8>,)> = fetch(
        url,
        "SELECT digest FROM blind_index WHERE customer_id = $1",
        id,
    )
    .await;
    if digests.iter().any(|(d,)| d == MARKER) {
        found.push("blind-index entry");
    }
    let consents: Vec<(Uuid,)> = fetch(
        url,
        "SELECT id FROM consent_events WHERE customer_id = $1",
        id,
    )
    .await;
    if consents.iter().any(|(c,)| *c == consent_id) {
        found.push("consent event");
    }
    let objections: Vec<(String,)> = fetch(
        url,
        "SELECT purpose FROM objections WHERE customer_id = $1",
        id,
    )
    .await;
    if !objections.is_empty() {
        found.push("objection");
    }
    found
}

/// Once an erasure has begun, the store refuses (NotFound, in the unit's own
/// transaction) a value, a blind-index entry, a consent event or an
/// objection for the customer, whether the erasure is still running or
/// finished; the same writes for a live customer are stored.
#[tokio::test]
async fn r26_writes_committed_after_an_erasure_began_are_refused() {
    use pii_vault::store::{Mutation, StoreError, Unit};
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;

        // Control: the same writes for a live customer are stored.
        let live: Uuid = v
            .create(&helpdesk, &support_only_customer())
            .await
            .parse()
            .unwrap();
        let consent_id = Uuid::now_v7();
        let now = v.clock.now_micros();
        let outcomes = v
            .state
            .store
            .commit_batch(&late_writes(live, consent_id, now), now)
            .await
            .unwrap();
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(
            late_writes_stored(&v.database_url, live, consent_id).await,
            ["value", "blind-index entry", "consent event", "objection"]
        );

        for finished in [false, true] {
            let id = v.create(&helpdesk, &support_only_customer()).await;
            let cid: Uuid = id.parse().unwrap();
            let now = v.clock.now_micros();
            let begin = Unit {
                mutations: vec![Mutation::BeginErasure {
                    customer_id: cid,
                    receipt_id: Uuid::now_v7(),
                    request_id: None,
                    actor: "dpo".into(),
                    role: "dpo".into(),
                    force_full: false,
                    at: now,
                }],
                events: vec![],
            };
            let begun = v.state.store.commit_batch(&[begin], now).await.unwrap();
            assert!(begun[0].is_ok(), "{begun:?}");
            if finished {
                // The DELETE resumes the job begun above and finishes it.
                let (s, body) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
                assert_eq!(s, StatusCode::OK, "{body}");
                assert_eq!(body["status"], "erased", "{body}");
            }
            let consent_id = Uuid::now_v7();
            let now = v.clock.now_micros();
            let outcomes = v
                .state
                .store
                .commit_batch(&late_writes(cid, consent_id, now), now)
                .await
                .unwrap();
            for o in &outcomes {
                assert!(
                    matches!(o, Err(StoreError::NotFound)),
                    "finished={finished}: {outcomes:?}"
                );
            }
            assert_eq!(
                late_writes_stored(&v.database_url, cid, consent_id).await,
                Vec::<&str>::new(),
                "finished={finished}"
            );
            if finished {
                assert_eq!(counts(&v.database_url, cid).await, (0, 0, 0, 0));
            }
        }
    })
    .await;
}

/// PATCHes until one is refused (the erasure has begun); every status.
async fn patch_until_refused(v: &TestVault, token: &str, id: &str) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for i in 0..200 {
        let body = json!({"fields": {"email": {"value": format!("ada+{i}@example.com")}}});
        let (s, b) = v
            .patch(token, &format!("/v1/customers/{id}?purpose=support"), &body)
            .await;
        assert!(
            s == StatusCode::OK
                || (s == StatusCode::NOT_FOUND && b["code"] == "customer_not_found"),
            "{s} {b}"
        );
        statuses.push(s);
        if s == StatusCode::NOT_FOUND {
            break;
        }
    }
    statuses
}

/// Records consents until one is refused; every status.
async fn consent_until_refused(v: &TestVault, token: &str, id: &str) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for i in 0..200 {
        let action = if i % 2 == 0 { "grant" } else { "withdraw" };
        let (s, b) = v
            .post(
                token,
                &format!("/v1/customers/{id}/consents"),
                &consent("marketing.email", action),
            )
            .await;
        assert!(
            s == StatusCode::CREATED
                || (s == StatusCode::NOT_FOUND && b["code"] == "customer_not_found"),
            "{s} {b}"
        );
        statuses.push(s);
        if s == StatusCode::NOT_FOUND {
            break;
        }
    }
    statuses
}

/// Twenty rounds of PATCHes and consents racing `DELETE`: afterwards the
/// erased customer has no value, blind-index entry or consent event; every
/// PATCH or consent was either stored before the erasure began (its audit
/// event comes before `erasure.started`) or answered 404.
#[tokio::test]
async fn r26_patches_and_consents_racing_an_erasure_leave_nothing_behind() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        for round in 0..20 {
            let id = v.create(&helpdesk, &support_only_customer()).await;
            let cid: Uuid = id.parse().unwrap();
            let path = format!("/v1/customers/{id}");
            let (patches, consents, (erased, receipt)) = tokio::join!(
                patch_until_refused(&v, &helpdesk, &id),
                consent_until_refused(&v, &helpdesk, &id),
                delete(&v, &dpo, &path),
            );
            assert_eq!(erased, StatusCode::OK, "round {round}: {receipt}");
            assert_eq!(receipt["status"], "erased", "round {round}: {receipt}");
            assert_eq!(
                patches.last(),
                Some(&StatusCode::NOT_FOUND),
                "round {round}"
            );
            assert_eq!(
                consents.last(),
                Some(&StatusCode::NOT_FOUND),
                "round {round}"
            );
            assert_eq!(
                counts(&v.database_url, cid).await,
                (0, 0, 0, 0),
                "round {round}: values, purposes, index entries, consent events"
            );
            let objections: Vec<(String,)> = fetch(
                &v.database_url,
                "SELECT purpose FROM objections WHERE customer_id = $1",
                cid,
            )
            .await;
            assert!(objections.is_empty(), "round {round}");

            // What was answered 200/201 was committed before the erasure began.
            let events: Vec<_> = v
                .audit()
                .await
                .into_iter()
                .filter(|e| e.draft.customer_id.as_deref() == Some(id.as_str()))
                .collect();
            let started = events
                .iter()
                .find(|e| e.draft.action == "erasure.started")
                .map(|e| e.seq)
                .expect("erasure.started");
            let writes: Vec<i64> = events
                .iter()
                .filter(|e| {
                    e.draft.decision == "allowed"
                        && ["customer.update", "consent.grant", "consent.withdraw"]
                            .contains(&e.draft.action.as_str())
                })
                .map(|e| e.seq)
                .collect();
            let answered = patches.iter().filter(|s| **s == StatusCode::OK).count()
                + consents
                    .iter()
                    .filter(|s| **s == StatusCode::CREATED)
                    .count();
            let trail: Vec<_> = events
                .iter()
                .map(|e| (e.seq, e.draft.action.as_str(), e.draft.decision.as_str()))
                .collect();
            assert_eq!(writes.len(), answered, "round {round}: {trail:?}");
            assert!(
                writes.iter().all(|w| *w < started),
                "round {round}: a write was stored after the erasure began: {trail:?}"
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Nothing left in the files
// ---------------------------------------------------------------------------

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// SQLite: once an erasure commits, neither the wrapped data key nor any
/// ciphertext of the customer is in any `vault.db*` file (the write-ahead
/// log is checkpointed and truncated; `secure_delete` zeroes the pages).
#[tokio::test]
async fn r26_after_an_erasure_no_database_file_holds_the_key_or_a_ciphertext() {
    let v = TestVault::start(Backend::Sqlite).await;
    let helpdesk = v.token("helpdesk").await;
    let dpo = v.token("dpo").await;
    // Another customer, so the files are not simply emptied.
    v.create(&helpdesk, &ada()).await;
    let mut body = ada();
    body["fields"]["email"]["purposes"] = json!(["support"]);
    let id = v.create(&helpdesk, &body).await;
    let cid: Uuid = id.parse().unwrap();
    let secrets: Vec<Vec<u8>> = {
        let mut s: Vec<Vec<u8>> = ciphertexts(&v.database_url, cid)
            .await
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        let keys: Vec<(Vec<u8>,)> = fetch(
            &v.database_url,
            "SELECT wrapped_dek FROM customers WHERE id = $1",
            cid,
        )
        .await;
        s.extend(keys.into_iter().map(|(k,)| k));
        s
    };
    assert_eq!(secrets.len(), 3, "two ciphertexts and the wrapped data key");
    let files = || {
        ["vault.db", "vault.db-wal", "vault.db-shm"]
            .map(|f| v.dir.path().join(f))
            .into_iter()
            .filter(|p| p.exists())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect::<Vec<_>>()
    };
    // Before: the bytes are there (so the search below can find them).
    let before = files();
    assert!(
        secrets
            .iter()
            .all(|s| before.iter().any(|(_, bytes)| contains(bytes, s))),
        "the search finds the stored bytes"
    );
    let (st, b) = v
        .send(
            reqwest::Method::DELETE,
            &dpo,
            &format!("/v1/customers/{id}"),
            &Value::Null,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "erased");
    for (name, bytes) in files() {
        for (i, s) in secrets.iter().enumerate() {
            assert!(
                !contains(&bytes, s),
                "{name} still holds secret #{i} of the erased customer"
            );
        }
    }
}
