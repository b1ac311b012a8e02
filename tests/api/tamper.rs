//! Tamper evidence outside the database (DESIGN.md §8): the audit witness
//! catches a trail cut back in a stopped vault's database; a public-key row
//! in the database does not make a forged checkpoint verify;
//! `audit verify --since` catches a new export that does not extend the
//! previous one; a forged, altered or removed tombstone entry is detected
//! and never acted on; on PostgreSQL the tombstones live in a second
//! database every process shares, and `serve --production` requires it.
//!
//! Written against the library and the command line as they stood before
//! the witness existed, so that each test compiles there and fails: the
//! new setting is set through serde (`set_tombstone_database`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pii_vault::config::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

use crate::erasure::{delete, fetch, stored_key};
use crate::helpers::*;
use crate::pages::{CSP, PageClient};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `tombstone_database_url = url`.
fn set_tombstone_database(s: &mut Settings, url: &str) {
    s.tombstone_database_url = Some(url.into());
}

/// Drops a test database (and its connections).
async fn drop_pg(url: &str) {
    let admin = std::env::var("DATABASE_URL").unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await
    .unwrap();
}

/// A copy of a PostgreSQL database (the "backup"), taken with no vault
/// connected to it.
async fn pg_copy(url: &str) -> String {
    let (base, name) = url.rsplit_once('/').unwrap();
    let admin = std::env::var("DATABASE_URL").unwrap();
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    let copy = format!("{name}_backup");
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

/// The real binary's `audit verify` (no settings, no database).
fn offline_verify(args: &[&Path]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pii-vault"));
    c.env_clear()
        .args(["audit", "verify", "--public-key"])
        .arg(args[0]);
    if args.len() == 3 {
        c.arg("--since").arg(args[1]);
    }
    let out = c.arg(args[args.len() - 1]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn export_to(v: &TestVault, token: &str, query: &str, path: &Path) {
    let resp = v
        .http
        .get(v.url(&format!("/v1/audit/export{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    std::fs::write(path, resp.bytes().await.unwrap()).unwrap();
}

/// The last event's seq in an export file.
fn last_event_seq(path: &Path) -> i64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "event")
        .map(|l| l["seq"].as_i64().unwrap())
        .max()
        .unwrap()
}

/// Some traffic: `n` customers created and each read twice.
async fn traffic(v: &TestVault, n: usize) {
    let t = v.token("helpdesk").await;
    for _ in 0..n {
        let id = v.create(&t, &ada()).await;
        for _ in 0..2 {
            let (s, _) = v
                .get(&t, &format!("/v1/customers/{id}?purpose=support"))
                .await;
            assert_eq!(s, StatusCode::OK);
        }
    }
}

async fn readyz(v: &TestVault) -> (StatusCode, Value) {
    split(v.http.get(v.url("/readyz")).send().await.unwrap()).await
}

/// Runs SQL on a (stopped) vault's database.
async fn exec(backend: Backend, url: &str, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
}

/// Cuts the stored trail back to `seq`: later events and checkpoints
/// deleted, the chain head row set to the event at `seq`.
async fn cut_trail(backend: Backend, url: &str, seq: i64) {
    exec(
        backend,
        url,
        &format!(
            "DELETE FROM audit_events WHERE seq > {seq}; \
         DELETE FROM audit_checkpoints WHERE seq > {seq}; \
         UPDATE audit_head SET seq = {seq}, \
           hash = (SELECT hash FROM audit_events WHERE seq = {seq}), \
           at = (SELECT at FROM audit_events WHERE seq = {seq}) WHERE id = 1;"
        ),
    )
    .await;
}

/// A blob literal for either backend.
fn blob(backend: Backend, bytes: &[u8]) -> String {
    match backend {
        Backend::Sqlite => format!("X'{}'", hex::encode(bytes)),
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(bytes)),
    }
}

// ---------------------------------------------------------------------------
// The audit witness
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_trail_cut_back_in_a_stopped_vaults_database_is_not_ready_and_does_not_verify() {
    for backend in backends() {
        let v = TestVault::start(backend).await;
        let auditor = v.token("auditor").await;
        traffic(&v, 12).await;
        // The export signs (and witnesses) a checkpoint of the head.
        export_to(&v, &auditor, "", &v.dir.path().join("before.ndjson")).await;
        let head = v.audit().await.last().unwrap().seq;
        assert!(head >= 40, "{head}");
        let cut = head / 3;
        let (ready, _) = readyz(&v).await;
        assert_eq!(ready, StatusCode::OK);

        // Cut with the vault stopped: the trail is consistent on its own.
        let (dir, url) = v.stop().await;
        cut_trail(backend, &url, cut).await;
        let v = TestVault::start_with(backend, dir, url).await;

        let (s, body) = readyz(&v).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{backend:?}: {body}");
        assert_eq!(body["checks"]["audit_witness"], false, "{body}");
        let problems = body["problems"].to_string();
        assert!(problems.contains("cut back"), "{problems}");

        let auditor = v.token("auditor").await;
        let (s, r) = v.get(&auditor, "/v1/audit/verify").await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["ok"], false, "{backend:?}: {r}");
        // The head moved on since the restart (policy.load, token.issue):
        // the trail ends there, short of the witnessed checkpoint.
        let head = r["head_seq"].as_i64().unwrap();
        assert!(
            head > cut && head < r["witness"]["seq"].as_i64().unwrap(),
            "{r}"
        );
        assert_eq!(r["first_bad_seq"], head + 1, "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains("witnessed outside the database") && reason.contains("cut back"),
            "{reason}"
        );
        assert_eq!(r["witness"]["extended"], false, "{r}");
        // Nothing signs the cut head: an export goes out without a fresh
        // checkpoint and does not verify offline either.
        let (_, keys) = v.get(&auditor, "/v1/audit/public-key").await;
        let key = v.dir.path().join("vault.pub");
        std::fs::write(&key, keys["key_file"].as_str().unwrap()).unwrap();
        let after = v.dir.path().join("after.ndjson");
        export_to(&v, &auditor, "", &after).await;
        let (code, out) = offline_verify(&[&key, &after]);
        assert_eq!(code, 1, "{out}");
        let before = v.dir.path().join("before.ndjson");
        let (code, out) = offline_verify(&[&key, &before, &after]);
        assert_eq!(code, 1, "{out}");

        if backend == Backend::Sqlite {
            // The real binary on the same files reports it as a metric too.
            let p = spawn_vault(v.dir.path(), &v.database_url, "warn");
            let metrics = reqwest::get(format!("{}/metrics", p.base))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                metrics.contains("pii_vault_audit_witness_mismatch 1"),
                "{metrics}"
            );
            let logs = p.logs.lock().unwrap().join("\n");
            assert!(
                logs.contains("ERROR") && logs.contains("witnessed"),
                "{logs}"
            );
        }

        // An operator who restored the database on purpose accepts the
        // rolled-back trail; the rollback is witnessed and audited.
        let mut c = vault_cmd(v.dir.path(), &v.database_url, "warn");
        c.args(["audit", "accept-rollback"]);
        let out = run_ok(c).await;
        assert!(out.contains("accepted"), "{out}");
        let (s, body) = readyz(&v).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (_, r) = v.get(&auditor, "/v1/audit/verify").await;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["witness"]["extended"], true, "{r}");
        assert!(
            v.audit()
                .await
                .iter()
                .any(|e| e.draft.action == "audit.rollback_accepted")
        );
        let (_, url) = v.stop().await;
        if backend == Backend::Postgres {
            drop_pg(&url).await;
        }
    }
}

#[tokio::test]
async fn a_public_key_row_in_the_database_does_not_make_a_forged_checkpoint_verify() {
    use pii_vault::audit::checkpoint;
    use pii_vault::crypto::SigningKey;
    for backend in backends() {
        let v = TestVault::start(backend).await;
        let auditor = v.token("auditor").await;
        traffic(&v, 3).await;
        export_to(&v, &auditor, "", &v.dir.path().join("e.ndjson")).await;
        let (_, r) = v.get(&auditor, "/v1/audit/verify").await;
        assert_eq!(r["ok"], true, "{r}");

        // Someone with write access to the database adds a key of their own
        // and a checkpoint it signed (over the right hash, even).
        let (forged, _) = SigningKey::generate().unwrap();
        let events = v.audit().await;
        let signed: Vec<i64> = v
            .state
            .store
            .audit_checkpoints(0, i64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        // An event in the middle: the checkpointer only ever signs the head.
        let target = events[events.len() / 2..]
            .iter()
            .find(|e| !signed.contains(&e.seq))
            .unwrap();
        let row = checkpoint::sign(
            &forged,
            target.seq,
            &hex::decode(&target.hash).unwrap(),
            1_700_000_000_000_000,
        );
        v.exec(&format!(
            "INSERT INTO signing_keys (kid, kek_version, sealed, public_key, active, created_at) \
             VALUES ('{}', 1, {}, {}, false, 0); \
             INSERT INTO audit_checkpoints (seq, hash, at, kid, signature) VALUES ({}, {}, {}, '{}', {});",
            forged.kid(),
            blob(backend, b""),
            blob(backend, &forged.public_key()),
            row.seq,
            blob(backend, &row.hash),
            row.at,
            row.kid,
            blob(backend, &row.signature),
        ))
        .await;

        let (_, r) = v.get(&auditor, "/v1/audit/verify").await;
        assert_eq!(r["ok"], false, "{backend:?}: {r}");
        assert_eq!(r["first_bad_seq"], row.seq, "{r}");
        assert!(r["reason"].as_str().unwrap().contains("unknown key"), "{r}");
        let (_, keys) = v.get(&auditor, "/v1/audit/public-key").await;
        assert!(
            !keys.to_string().contains(forged.kid()),
            "the database's row is not published: {keys}"
        );

        // Nor after a restart.
        let (dir, url) = v.stop().await;
        let v = TestVault::start_with(backend, dir, url).await;
        let auditor = v.token("auditor").await;
        let (_, r) = v.get(&auditor, "/v1/audit/verify").await;
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["first_bad_seq"], row.seq, "{r}");
        let (_, url) = v.stop().await;
        if backend == Backend::Postgres {
            drop_pg(&url).await;
        }
    }
}

#[tokio::test]
async fn audit_verify_since_fails_when_the_new_export_does_not_extend_the_previous_one() {
    for backend in backends() {
        let v = TestVault::start(backend).await;
        let auditor = v.token("auditor").await;
        traffic(&v, 8).await;
        let dir = v.dir.path().to_path_buf();
        let (old, key) = (dir.join("old.ndjson"), dir.join("vault.pub"));
        export_to(&v, &auditor, "", &old).await;
        let (_, keys) = v.get(&auditor, "/v1/audit/public-key").await;
        std::fs::write(&key, keys["key_file"].as_str().unwrap()).unwrap();
        let old_end = last_event_seq(&old);

        // Later exports, full and incremental, extend it.
        traffic(&v, 2).await;
        let new = dir.join("new.ndjson");
        export_to(&v, &auditor, "", &new).await;
        let (code, out) = offline_verify(&[&key, &old, &new]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("extends the previous export"), "{out}");
        let part = dir.join("part.ndjson");
        export_to(&v, &auditor, &format!("?after_seq={old_end}"), &part).await;
        let (code, out) = offline_verify(&[&key, &old, &part]);
        assert_eq!(code, 0, "{out}");
        // Without --since, as before.
        assert_eq!(offline_verify(&[&key, &new]).0, 0);

        // The trail is cut back before the old export's end, and the
        // witness removed with it (whoever can write both): the vault signs
        // the cut trail, and its export verifies on its own.
        let (vdir, url) = v.stop().await;
        cut_trail(backend, &url, old_end / 2).await;
        exec(
            backend,
            &url,
            "DELETE FROM vault_meta WHERE name = 'audit_witness_head'",
        )
        .await;
        let _ = std::fs::remove_file(vdir.path().join("vault.witness"));
        let v = TestVault::start_with(backend, vdir, url).await;
        let auditor = v.token("auditor").await;
        traffic(&v, 1).await;
        let cut = v.dir.path().join("cut.ndjson");
        export_to(&v, &auditor, "", &cut).await;
        let (code, out) = offline_verify(&[&key, &cut]);
        assert_eq!(code, 0, "the cut export verifies on its own: {out}");
        let (code, out) = offline_verify(&[&key, &old, &cut]);
        assert_eq!(code, 1, "{backend:?}: {out}");
        assert!(out.contains("does not extend the previous export"), "{out}");
        assert!(out.contains(&format!("seq {old_end}")), "{out}");
        // An unreadable previous export is exit 2.
        let (code, _) = offline_verify(&[&key, &dir.join("missing.ndjson"), &cut]);
        assert_eq!(code, 2);
        let (_, url) = v.stop().await;
        if backend == Backend::Postgres {
            drop_pg(&url).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The tombstone log
// ---------------------------------------------------------------------------

/// Where a test vault's tombstone log is: its file, or the rows of the
/// tombstone database.
struct TombstoneLog {
    file: PathBuf,
    database: Option<String>,
}

impl TombstoneLog {
    async fn read(&self) -> Vec<String> {
        match &self.database {
            None => std::fs::read_to_string(&self.file)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect(),
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(
                    "SELECT line FROM tamper_log WHERE log = 'tombstones' ORDER BY n",
                )
                .fetch_all(&mut c)
                .await
                .unwrap()
            }
        }
    }

    async fn write(&self, lines: &[String]) {
        match &self.database {
            None => {
                let mut text = lines.join("\n");
                text.push('\n');
                std::fs::write(&self.file, text).unwrap();
            }
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("DELETE FROM tamper_log WHERE log = 'tombstones'")
                    .execute(&mut c)
                    .await
                    .unwrap();
                for (i, l) in lines.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO tamper_log (log, n, line) VALUES ('tombstones', $1, $2)",
                    )
                    .bind(i as i64 + 1)
                    .bind(l)
                    .execute(&mut c)
                    .await
                    .unwrap();
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    Untouched,
    /// An entry in the log's format for the held customer, with a made-up MAC.
    Forge,
    /// A line in the old, unauthenticated format (the reproduction).
    ForgeUnauthenticated,
    /// The first entry's customer id changed to the held customer's.
    Alter,
    /// The first entry removed.
    DeleteFirst,
    /// The last entry removed.
    DeleteLast,
}

/// Two customers erased, a third under a legal hold; the vault stopped,
/// its tombstone log tampered with, restarted: the held customer is never
/// erased, `/readyz` says why, customer data is not served, and
/// `pii-vault tombstones verify` names the problem.
async fn tombstones_after(tamper: Tamper, expected: &str) {
    for backend in backends() {
        let tombstone_db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_pg_database().await),
        };
        let adjust = |s: &mut Settings, _: &Path| {
            if let Some(u) = &tombstone_db {
                set_tombstone_database(s, u);
            }
        };
        let v = TestVault::start_adjusted(backend, adjust).await;
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let a = v.create(&helpdesk, &ada()).await;
        let b = v.create(&helpdesk, &ada()).await;
        let held = v.create(&helpdesk, &ada()).await;
        let (s, hold) = v
            .post(
                &dpo,
                "/v1/legal-holds",
                &json!({"customer_id": held, "fields": ["email"], "reason": "Case 2026-117",
                        "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{hold}");
        for id in [&a, &b] {
            let (s, r) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{r}");
        }
        let (dir, url) = v.stop().await;

        let log = TombstoneLog {
            file: dir.path().join("vault.tombstones"),
            database: tombstone_db.clone(),
        };
        let mut lines = log.read().await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains(&a) && lines[1].contains(&b));
        let erased_at = "2026-11-22T17:36:15.123456Z";
        match tamper {
            Tamper::Untouched => {}
            Tamper::Forge => {
                let last: Value = serde_json::from_str(&lines[1]).unwrap();
                let prev = last["mac"].as_str().unwrap_or("00").to_owned();
                lines.push(
                    json!({"n": 3, "entry": {"customer_id": held, "status": "erased",
                           "erased_at": erased_at, "origin": "erasure"},
                           "prev": prev, "mac": "ab".repeat(32)})
                    .to_string(),
                );
            }
            Tamper::ForgeUnauthenticated => lines.push(
                json!({"customer_id": held, "status": "erased", "erased_at": erased_at})
                    .to_string(),
            ),
            Tamper::Alter => lines[0] = lines[0].replace(&a, &held),
            Tamper::DeleteFirst => {
                lines.remove(0);
            }
            Tamper::DeleteLast => {
                lines.pop();
            }
        }
        log.write(&lines).await;

        let adjust = |s: &mut Settings, _: &Path| {
            if let Some(u) = &tombstone_db {
                set_tombstone_database(s, u);
            }
        };
        let v = TestVault::start_with_adjusted(backend, dir, url.clone(), adjust).await;
        let held_id: Uuid = held.parse().unwrap();
        // Never acted on: the held customer keeps its data key and values.
        assert!(
            stored_key(&url, held_id).await.1.is_some(),
            "{backend:?} {tamper:?}: the customer under a legal hold was erased"
        );
        let values: Vec<(String,)> = fetch(
            &url,
            "SELECT field FROM field_values WHERE customer_id = $1",
            held_id,
        )
        .await;
        assert_eq!(values.len(), 2, "{values:?}");
        assert!(
            !v.audit()
                .await
                .iter()
                .any(|e| e.draft.action == "erasure.reapplied"),
            "{backend:?} {tamper:?}"
        );

        let (s, body) = readyz(&v).await;
        let mut cmd = vault_cmd(v.dir.path(), &url, "warn");
        if let Some(u) = &tombstone_db {
            cmd.env("PII_VAULT_TOMBSTONE_DATABASE_URL", u);
        }
        cmd.args(["tombstones", "verify"]);
        let out = output(cmd).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let helpdesk = v.token("helpdesk").await;
        let (read, _) = v
            .get(&helpdesk, &format!("/v1/customers/{held}?purpose=support"))
            .await;
        if tamper == Tamper::Untouched {
            assert_eq!(s, StatusCode::OK, "{body}");
            assert!(out.status.success(), "{stdout}");
            assert!(stdout.contains("ok: 2 entries"), "{stdout}");
            assert_eq!(read, StatusCode::OK);
        } else {
            assert_eq!(
                s,
                StatusCode::SERVICE_UNAVAILABLE,
                "{backend:?} {tamper:?}: {body}"
            );
            assert_eq!(body["checks"]["tombstones"], false, "{body}");
            assert!(
                body["problems"].to_string().contains("tombstone log"),
                "{body}"
            );
            assert_eq!(out.status.code(), Some(1), "{stdout}");
            assert!(
                stdout.contains(expected),
                "{backend:?} {tamper:?}: expected {expected:?} in {stdout}"
            );
            assert_eq!(
                read,
                StatusCode::SERVICE_UNAVAILABLE,
                "no customer data is served"
            );
            pages_while_blocked(&v).await;
            if backend == Backend::Sqlite && tamper == Tamper::Forge {
                let p = spawn_vault(v.dir.path(), &url, "warn");
                let metrics = reqwest::get(format!("{}/metrics", p.base))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert!(
                    metrics.contains("pii_vault_tombstone_log_broken 1"),
                    "{metrics}"
                );
            }
        }
        let v = if tamper == Tamper::Untouched {
            v
        } else {
            repaired(v, backend, tombstone_db.as_deref(), &held).await
        };
        let (_, url) = v.stop().await;
        if backend == Backend::Postgres {
            drop_pg(&url).await;
        }
        if let Some(u) = &tombstone_db {
            drop_pg(u).await;
        }
    }
}

/// While the log is broken the privacy center says so as a page in the
/// browser's language (never problem JSON), and the console's sign-in
/// stays open so auditors can look.
async fn pages_while_blocked(v: &TestVault) {
    let mut browser = PageClient::new(&v.base);
    browser
        .headers
        .push(("accept-language", "it-IT,it;q=0.9".into()));
    for path in ["/privacy/", "/privacy/request", "/console/requests"] {
        let a = browser.get(path).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(
            a.header("content-type").starts_with("text/html"),
            "{path}: {}",
            a.header("content-type")
        );
        assert!(a.body.contains("data-error-status=\"503\""), "{path}");
        assert!(a.body.contains("<html lang=\"it\""), "{path}");
        assert_eq!(a.header("content-security-policy"), CSP, "{path}");
    }
    let sign_in = browser.get("/console/").await;
    assert_eq!(sign_in.status, StatusCode::OK);
    assert!(sign_in.body.contains("name=\"username\""));
    assert_eq!(
        browser.get("/static/pages.css").await.status,
        StatusCode::OK
    );
}

/// The operator's resolution: with the vault stopped, `tombstones repair`
/// keeps the authentic entries; the next start adds back from the database
/// what a removed entry held, and serves again.
async fn repaired(
    v: TestVault,
    backend: Backend,
    tombstone_db: Option<&str>,
    held: &str,
) -> TestVault {
    let (dir, url) = v.stop().await;
    let cli = |args: &[&str]| {
        let mut c = vault_cmd(dir.path(), &url, "warn");
        if let Some(u) = tombstone_db {
            c.env("PII_VAULT_TOMBSTONE_DATABASE_URL", u);
        }
        c.args(args);
        c
    };
    let out = run_ok(cli(&["tombstones", "repair"])).await;
    assert!(out.contains("repaired: kept"), "{out}");
    let tombstone_db = tombstone_db.map(str::to_owned);
    let adjust = |s: &mut Settings, _: &Path| {
        if let Some(u) = &tombstone_db {
            set_tombstone_database(s, u);
        }
    };
    let v = TestVault::start_with_adjusted(backend, dir, url.clone(), adjust).await;
    let (s, body) = readyz(&v).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let mut c = vault_cmd(v.dir.path(), &url, "warn");
    if let Some(u) = &tombstone_db {
        c.env("PII_VAULT_TOMBSTONE_DATABASE_URL", u);
    }
    c.args(["tombstones", "verify"]);
    let out = output(c).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok: 2 entries"),
        "both erasures are in the log again: {stdout}"
    );
    let helpdesk = v.token("helpdesk").await;
    let (s, _) = v
        .get(&helpdesk, &format!("/v1/customers/{held}?purpose=support"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v.audit()
            .await
            .iter()
            .any(|e| e.draft.action == "tombstones.repair")
    );
    v
}

#[tokio::test]
async fn an_untouched_tombstone_log_verifies() {
    tombstones_after(Tamper::Untouched, "").await;
}

#[tokio::test]
async fn a_forged_tombstone_entry_is_detected_and_not_acted_on() {
    tombstones_after(Tamper::Forge, "its MAC does not verify").await;
}

#[tokio::test]
async fn an_unauthenticated_tombstone_line_is_detected_and_not_acted_on() {
    tombstones_after(Tamper::ForgeUnauthenticated, "not authenticated").await;
}

#[tokio::test]
async fn an_altered_tombstone_entry_is_detected_and_not_acted_on() {
    tombstones_after(Tamper::Alter, "its MAC does not verify").await;
}

#[tokio::test]
async fn a_removed_first_tombstone_entry_is_detected() {
    tombstones_after(Tamper::DeleteFirst, "removed from its beginning").await;
}

#[tokio::test]
async fn a_removed_last_tombstone_entry_is_detected() {
    tombstones_after(Tamper::DeleteLast, "removed from its end").await;
}

// ---------------------------------------------------------------------------
// PostgreSQL: one tombstone database for every process
// ---------------------------------------------------------------------------

/// `pii-vault serve` (with `args`) on `db` and the tombstone database
/// `tombstones`; waits for "listening on", or for the process to exit.
fn start(dir: &Path, db: &str, tombstones: Option<&str>, args: &[&str]) -> Result<Proc, String> {
    let mut c = vault_cmd(dir, db, "warn");
    if let Some(t) = tombstones {
        c.env("PII_VAULT_TOMBSTONE_DATABASE_URL", t);
    }
    let mut child = c
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let l = std::sync::Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let _ = tx.send(format!("http://{}", addr.trim()));
            }
            l.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(base) => Ok(Proc { child, base, logs }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(logs.lock().unwrap().join("\n"))
        }
    }
}

#[tokio::test]
async fn tombstones_written_by_one_process_are_seen_by_another_on_postgres() {
    if !backends().contains(&Backend::Postgres) {
        eprintln!("tombstones on PostgreSQL: skipped, DATABASE_URL is not PostgreSQL");
        return;
    }
    let main = fresh_pg_database().await;
    let tombstones = fresh_pg_database().await;
    let (da, dbb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(da.path(), &main, Some(&tombstones), &[]).unwrap();
    let b = start(dbb.path(), &main, Some(&tombstones), &[]).unwrap();
    let helpdesk = client_token(&a.base, &add_client(da.path(), &main, "helpdesk")).await;
    let dpo = client_token(&a.base, &add_client(da.path(), &main, "dpo")).await;
    let http = crate::helpers::http();
    let created: Value = http
        .post(format!("{}/v1/customers?purpose=support", a.base))
        .bearer_auth(&helpdesk)
        .json(&json!({"fields": {"email": {"value": "x@example.com", "purposes": ["support"]}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let r = http
        .get(format!("{}/v1/customers/{id}?purpose=support", b.base))
        .bearer_auth(&helpdesk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop((a, b));

    // A backup of the vault's database, taken before the erasure.
    let backup = pg_copy(&main).await;
    let a = start(da.path(), &main, Some(&tombstones), &[]).unwrap();
    let r = http
        .delete(format!("{}/v1/customers/{id}", a.base))
        .bearer_auth(&dpo)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(a);

    // The other process starts on the restored backup: it sees the
    // tombstone the first one wrote and erases the customer again.
    let b = start(dbb.path(), &backup, Some(&tombstones), &[]).unwrap();
    let cid: Uuid = id.parse().unwrap();
    assert_eq!(stored_key(&backup, cid).await, (None, None));
    let reapplied: Vec<(String,)> = fetch(
        &backup,
        "SELECT action FROM audit_events WHERE customer_id = $1::text AND action = 'erasure.reapplied'",
        cid,
    )
    .await;
    assert_eq!(reapplied.len(), 1);
    let r = http
        .get(format!("{}/v1/customers/{id}?purpose=support", b.base))
        .bearer_auth(&helpdesk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Nothing went to a file of either host.
    for d in [da.path(), dbb.path()] {
        assert!(!d.join("vault.tombstones").exists());
        assert!(!d.join("vault.witness").exists());
    }
    let mut c = sqlx::PgConnection::connect(&tombstones).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tamper_log WHERE log = 'tombstones'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(
        rows, 2,
        "the erasure, and the erasure again on the restored backup"
    );
    drop(c);
    drop(b);
    for db in [&main, &backup, &tombstones] {
        drop_pg(db).await;
    }
}

#[tokio::test]
async fn serve_production_on_postgres_needs_a_tombstone_database() {
    if !backends().contains(&Backend::Postgres) {
        eprintln!("serve --production: skipped, DATABASE_URL is not PostgreSQL");
        return;
    }
    let main = fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let refused = start(dir.path(), &main, None, &["--production"]);
    let logs = match refused {
        Ok(p) => {
            drop(p);
            panic!("serve --production started without tombstone_database_url");
        }
        Err(logs) => logs,
    };
    assert!(logs.contains("tombstone_database_url"), "{logs}");
    let tombstones = fresh_pg_database().await;
    let started = Instant::now();
    let p = start(dir.path(), &main, Some(&tombstones), &["--production"]).unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    drop(p);
    for db in [&main, &tombstones] {
        drop_pg(db).await;
    }
}
