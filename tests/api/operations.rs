//! Operating the vault: `pii-vault backup` taken while serving and restored
//! after an erasure, and the shape of JSON answers on the wire.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use sqlx::Connection;

use crate::erasure::stored_key;
use crate::helpers::*;

#[tokio::test]
async fn a_backup_taken_while_serving_restores_with_the_erasure_since_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("vault.db");
    let db = format!("sqlite://{}", db_path.display());
    let vault = spawn_vault(dir.path(), &db, "warn");
    let helpdesk = client_token(&vault.base, &add_client(dir.path(), &db, "helpdesk")).await;
    let dpo = client_token(&vault.base, &add_client(dir.path(), &db, "dpo")).await;
    let http = http();
    let created: Value = http
        .post(format!("{}/v1/customers?purpose=support", vault.base))
        .bearer_auth(&helpdesk)
        .json(
            &json!({"fields": {"email": {"value": "grace@example.com", "purposes": ["support"]}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let cid: Uuid = id.parse().unwrap();

    // The copy, taken while the vault serves.
    let backup = dir.path().join("backups/vault-before.db");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let mut c = vault_cmd(dir.path(), &db, "warn");
    c.args(["backup", "--output", backup.to_str().unwrap()]);
    let out = run_ok(c).await;
    assert!(out.contains("backup written"), "{out}");
    assert!(
        out.contains("vault.tombstones"),
        "names what it leaves out: {out}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let backup_url = format!("sqlite://{}", backup.display());
    assert!(
        stored_key(&backup_url, cid).await.1.is_some(),
        "the copy holds the customer"
    );

    // Never over an existing file.
    let before = std::fs::read(&backup).unwrap();
    let mut c = vault_cmd(dir.path(), &db, "warn");
    c.args(["backup", "--output", backup.to_str().unwrap()]);
    let again = output(c).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&backup).unwrap(), before);

    // The customer is erased after the backup.
    let r = http
        .delete(format!("{}/v1/customers/{id}", vault.base))
        .bearer_auth(&dpo)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(vault);

    // Restore: the copy replaces the database (the tombstone log stays).
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(db_path.with_extension(ext));
    }
    std::fs::copy(&backup, &db_path).unwrap();
    assert!(stored_key(&db, cid).await.1.is_some());
    let vault = spawn_vault(dir.path(), &db, "warn");
    // By the time it serves, the customer is erased again.
    let r = http
        .get(format!("{}/v1/customers/{id}?purpose=support", vault.base))
        .bearer_auth(&helpdesk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(stored_key(&db, cid).await, (None, None));
    let mut c = sqlx::SqliteConnection::connect(&db).await.unwrap();
    let reapplied: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE customer_id = $1 AND action = 'erasure.reapplied'",
    )
    .bind(&id)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(reapplied, 1, "the erasure is applied again, and audited");
    drop(c);
    drop(vault);
}

#[tokio::test]
async fn backup_on_postgresql_explains_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = vault_cmd(dir.path(), "postgres://nobody@127.0.0.1:1/none", "warn");
    c.args(["backup", "--output", "x.db"]);
    let out = output(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
    assert!(!dir.path().join("x.db").exists());
}

#[tokio::test]
async fn json_answers_end_with_a_newline() {
    on_each_backend(|v| async move {
        let token = v.token("helpdesk").await;
        for (path, bearer, status) in [
            ("/v1/policy", true, StatusCode::OK),
            (
                "/v1/customers/not-a-uuid?purpose=support",
                true,
                StatusCode::BAD_REQUEST,
            ),
            ("/v1/policy", false, StatusCode::UNAUTHORIZED),
            ("/no-such-endpoint", false, StatusCode::NOT_FOUND),
        ] {
            let mut req = v.http.get(v.url(path));
            if bearer {
                req = req.bearer_auth(&token);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), status, "{path}");
            let length = r.content_length();
            let body = r.text().await.unwrap();
            assert!(body.ends_with("}\n"), "{path}: {body:?}");
            assert!(!body.ends_with("\n\n"), "{path}");
            if let Some(n) = length {
                assert_eq!(n as usize, body.len(), "{path}: content-length");
            }
            serde_json::from_str::<Value>(&body).unwrap();
        }
    })
    .await;
}
