//! The audit trail an outside auditor relies on: tampering is detected by
//! `GET /v1/audit/verify` and by `pii-vault audit verify` on an export; two
//! vault processes on one PostgreSQL keep one chain; the auditor's API
//! filters, pages, refuses and records; pruning keeps the trail verifiable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `pii-vault audit verify --public-key KEY EXPORT` (no database, no
/// settings): exit code and standard output.
fn offline_verify(key: &Path, export: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pii-vault"))
        .env_clear()
        .args(["audit", "verify", "--public-key"])
        .arg(key)
        .arg(export)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn raw_get(v: &TestVault, token: &str, path: &str) -> reqwest::Response {
    v.http
        .get(v.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Downloads an export into `dir` and returns its path.
async fn export_to(v: &TestVault, token: &str, query: &str, name: &str) -> PathBuf {
    let resp = raw_get(v, token, &format!("/v1/audit/export{query}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let body = resp.bytes().await.unwrap();
    let path = v.dir.path().join(name);
    std::fs::write(&path, &body).unwrap();
    path
}

/// Fetches the public key file from the API into `dir`.
async fn key_file(v: &TestVault, token: &str) -> PathBuf {
    let (s, keys) = v.get(token, "/v1/audit/public-key").await;
    assert_eq!(s, StatusCode::OK, "{keys}");
    let path = v.dir.path().join("vault.pub");
    std::fs::write(&path, keys["key_file"].as_str().unwrap()).unwrap();
    path
}

async fn verify_api(v: &TestVault, token: &str) -> Value {
    let (s, r) = v.get(token, "/v1/audit/verify").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r
}

/// Every event the auditor's API returns for `query`, following the cursor.
async fn all_events(v: &TestVault, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0i64;
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let (s, page) = v
            .get(
                token,
                &format!("/v1/audit?{query}{sep}after_seq={after}&limit=1000"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        out.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_after_seq"].as_i64() {
            Some(n) => after = n,
            None => return out,
        }
    }
}

/// A helpdesk creates a customer and reads it a few times; returns the
/// sequence numbers of the read events.
async fn activity(v: &TestVault, auditor: &str) -> Vec<i64> {
    let t = v.token("helpdesk").await;
    let id = v.create(&t, &ada()).await;
    for i in 0..8 {
        let path = if i % 2 == 0 {
            format!("/v1/customers/{id}?purpose=support")
        } else {
            format!("/v1/customers/{id}/fields/phone?purpose=support.callback")
        };
        let (s, _) = v.get(&t, &path).await;
        assert_eq!(s, StatusCode::OK);
    }
    let reads = all_events(v, auditor, &format!("customer_id={id}")).await;
    let seqs: Vec<i64> = reads
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("customer.read"))
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 8);
    seqs
}

// ---------------------------------------------------------------------------
// Tamper evidence
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Tamper {
    Change,
    Delete,
    Swap,
    Truncate,
}

/// Tampers with the stored trail, then checks that the API and the offline
/// command both name the expected first bad sequence number.
async fn tamper_is_detected(tamper: Tamper) {
    on_each_backend(|v| async move {
        let auditor = v.token("auditor").await;
        let reads = activity(&v, &auditor).await;
        // A checkpoint in the middle of the trail, as the checkpointer writes.
        export_to(&v, &auditor, "", "before.ndjson").await;
        let key = key_file(&v, &auditor).await;
        let intact = verify_api(&v, &auditor).await;
        assert_eq!(intact["ok"], true, "{intact}");

        let expected = match tamper {
            Tamper::Change => {
                let k = reads[3];
                v.exec(&format!(
                    "UPDATE audit_events SET purpose = 'marketing' WHERE seq = {k}"
                ))
                .await;
                k
            }
            Tamper::Delete => {
                let k = reads[4];
                v.exec(&format!("DELETE FROM audit_events WHERE seq = {k}"))
                    .await;
                k
            }
            Tamper::Swap => {
                let (i, j) = (reads[1], reads[5]);
                v.exec(&format!(
                    "UPDATE audit_events SET seq = -1 WHERE seq = {i}; \
                     UPDATE audit_events SET seq = {i} WHERE seq = {j}; \
                     UPDATE audit_events SET seq = {j} WHERE seq = -1;"
                ))
                .await;
                i
            }
            Tamper::Truncate => {
                let m = reads[2];
                v.exec(&format!("DELETE FROM audit_events WHERE seq > {m}"))
                    .await;
                m + 1
            }
        };

        let r = verify_api(&v, &auditor).await;
        assert_eq!(r["ok"], false, "{tamper:?}: {r}");
        assert_eq!(r["first_bad_seq"], expected, "{tamper:?}: {r}");
        assert!(!r["reason"].as_str().unwrap().is_empty());

        let file = export_to(&v, &auditor, "", "after.ndjson").await;
        let (code, out) = offline_verify(&key, &file);
        assert_eq!(code, 1, "{tamper:?}: {out}");
        assert!(
            out.contains(&format!("first bad event: seq {expected} (")),
            "{tamper:?}: {out}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_changed_event_is_detected_by_the_api_and_offline() {
    tamper_is_detected(Tamper::Change).await;
}

#[tokio::test]
async fn a_deleted_event_is_detected_by_the_api_and_offline() {
    tamper_is_detected(Tamper::Delete).await;
}

#[tokio::test]
async fn swapped_events_are_detected_by_the_api_and_offline() {
    tamper_is_detected(Tamper::Swap).await;
}

#[tokio::test]
async fn a_truncated_tail_is_detected_by_the_api_and_offline() {
    tamper_is_detected(Tamper::Truncate).await;
}

#[tokio::test]
async fn an_intact_trail_verifies_online_and_offline_in_full_and_in_part() {
    on_each_backend(|v| async move {
        let auditor = v.token("auditor").await;
        activity(&v, &auditor).await;
        let first = export_to(&v, &auditor, "", "full.ndjson").await;
        let key = key_file(&v, &auditor).await;
        let (code, out) = offline_verify(&key, &first);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("ok: "), "{out}");

        // The export ends with a checkpoint of the head signed for it.
        let text = std::fs::read_to_string(&first).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let last_event = lines.iter().rfind(|l| l["type"] == "event").unwrap();
        let last_cp = lines.last().unwrap();
        assert_eq!(last_cp["type"], "checkpoint");
        assert_eq!(last_cp["seq"], last_event["seq"]);
        assert_eq!(last_cp["hash"], last_event["hash"]);
        assert_eq!(lines[0]["seq"], 1, "a full export starts at the genesis");
        for field in [
            "seq",
            "at",
            "actor",
            "role",
            "action",
            "purpose",
            "customer_id",
            "fields",
            "decision",
            "reasons",
            "request_id",
            "prev_hash",
            "hash",
        ] {
            assert!(lines[0].get(field).is_some(), "{field} in {}", lines[0]);
        }
        let cp_seq = last_cp["seq"].as_i64().unwrap();

        // Later events, then a partial export after a seq past the first
        // checkpoint: it starts at that checkpoint and verifies on its own.
        activity(&v, &auditor).await;
        let part = export_to(
            &v,
            &auditor,
            &format!("?after_seq={}", cp_seq + 3),
            "part.ndjson",
        )
        .await;
        let text = std::fs::read_to_string(&part).unwrap();
        let part_lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let start = part_lines[0]["seq"].as_i64().unwrap() - 1;
        assert!((cp_seq..=cp_seq + 3).contains(&start), "{start} {cp_seq}");
        assert!(
            part_lines
                .iter()
                .any(|l| l["type"] == "checkpoint" && l["seq"] == start),
            "the export starts just after a signed checkpoint"
        );
        let (code, out) = offline_verify(&key, &part);
        assert_eq!(code, 0, "{out}");

        let r = verify_api(&v, &auditor).await;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["events"], r["head_seq"]);
        assert!(r["checkpoint"]["seq"].as_i64().unwrap() > cp_seq);
        assert!(r["checkpoints"].as_i64().unwrap() >= 2, "{r}");
        assert_eq!(r["head"].as_str().unwrap().len(), 64);

        // A line removed from the file, or the file cut short, is caught
        // offline even though the database is intact.
        let full = std::fs::read_to_string(&first).unwrap();
        let kept: Vec<&str> = full.lines().filter(|l| !l.contains("\"seq\":5,")).collect();
        std::fs::write(&first, kept.join("\n")).unwrap();
        let (code, out) = offline_verify(&key, &first);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("first bad event: seq 5 ("), "{out}");
        let events_only: Vec<&str> = full
            .lines()
            .filter(|l| l.starts_with("{\"type\":\"event\""))
            .collect();
        std::fs::write(&first, events_only.join("\n")).unwrap();
        let (code, out) = offline_verify(&key, &first);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("not covered by a signed checkpoint"), "{out}");

        // A key that did not sign the trail does not verify it.
        let other = v.dir.path().join("other.pub");
        std::fs::write(
            &other,
            format!(
                "{} {}\n",
                last_cp["kid"].as_str().unwrap(),
                "A".repeat(43) + "="
            ),
        )
        .unwrap();
        let (code, out) = offline_verify(&other, &part);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("first bad event: seq "), "{out}");
    })
    .await;
}

// ---------------------------------------------------------------------------
// Completeness under load, and two processes on one PostgreSQL
// ---------------------------------------------------------------------------

#[tokio::test]
async fn after_a_load_of_reads_the_trail_holds_exactly_one_event_per_read() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let auditor = v.token("auditor").await;
        let id = v.create(&t, &ada()).await;
        const N: usize = 150;
        let reads = (0..N).map(|i| {
            let (v, t, id) = (&v, &t, &id);
            async move {
                let path = if i % 3 == 0 {
                    format!("/v1/customers/{id}/fields/email?purpose=support")
                } else {
                    format!("/v1/customers/{id}?purpose=support")
                };
                let r = raw_get(v, t, &path).await;
                assert_eq!(r.status(), StatusCode::OK);
                r.headers()["x-request-id"].to_str().unwrap().to_owned()
            }
        });
        let rids = futures::future::join_all(reads).await;
        let profile = all_events(&v, &auditor, "action=customer.read").await;
        let field = all_events(&v, &auditor, "action=customer.read_field").await;
        assert_eq!(profile.len() + field.len(), N);
        assert_eq!(field.len(), N.div_ceil(3));
        let mut per_request: HashMap<String, usize> = HashMap::new();
        for e in profile.iter().chain(&field) {
            *per_request
                .entry(e["request_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        for rid in &rids {
            assert_eq!(per_request.get(rid), Some(&1), "request {rid}");
        }
        assert_eq!(verify_api(&v, &auditor).await["ok"], true);
    })
    .await;
}

#[tokio::test]
async fn a_command_appending_between_two_commits_of_the_server_keeps_one_chain() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let auditor = v.token("auditor").await;
        let id = v.create(&helpdesk, &ada()).await;
        let path = format!("/v1/customers/{id}?purpose=support");
        let read = || async {
            let r = raw_get(&v, &helpdesk, &path).await;
            assert_eq!(r.status(), StatusCode::OK);
            r.headers()["x-request-id"].to_str().unwrap().to_owned()
        };
        // The server commits (its sequencer now knows the chain head) ...
        let mut rids = vec![read().await];
        // ... two command-line processes append to the same database ...
        let mut added = Vec::new();
        for name in ["cli-one", "cli-two"] {
            let mut c = vault_cmd(v.dir.path(), &v.database_url, "warn");
            c.args([
                "clients", "add", "--name", name, "--role", "helpdesk", "--json",
            ]);
            let out = output(c).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let creds: Value = serde_json::from_slice(&out.stdout).unwrap();
            added.push(creds["client_id"].as_str().unwrap().to_owned());
        }
        // ... and the server commits again, twice.
        rids.push(read().await);
        rids.push(read().await);

        let verify = verify_api(&v, &auditor).await;
        assert_eq!(verify["ok"], true, "{verify}");
        assert_eq!(verify["events"], verify["head_seq"], "no gap from seq 1");
        let audit = v.audit().await;
        let seqs: Vec<i64> = audit.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
        for pair in audit.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash, "event {}", pair[1].seq);
        }
        for rid in &rids {
            let n = audit.iter().filter(|e| &e.draft.request_id == rid).count();
            assert_eq!(n, 1, "request {rid}");
        }
        let created: Vec<&String> = audit
            .iter()
            .filter(|e| e.draft.action == "client.create")
            .filter_map(|e| e.draft.reasons.get("client_id"))
            .collect();
        for client in &added {
            assert_eq!(
                created.iter().filter(|c| **c == client).count(),
                1,
                "client {client}: {created:?}"
            );
        }
        // The last read follows the commands' events in the chain.
        let last_read = audit
            .iter()
            .find(|e| e.draft.request_id == rids[1])
            .unwrap();
        let last_cli = audit
            .iter()
            .filter(|e| e.draft.action == "client.create")
            .map(|e| e.seq)
            .max()
            .unwrap();
        assert!(last_read.seq > last_cli);
    })
    .await;
}

#[tokio::test]
async fn two_processes_on_one_postgres_keep_one_unbroken_chain() {
    if !backends().contains(&Backend::Postgres) {
        eprintln!("two_processes_on_one_postgres: skipped, DATABASE_URL is not PostgreSQL");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_pg_database().await;
    let a = spawn_vault(dir.path(), &db, "warn");
    let b = spawn_vault(dir.path(), &db, "warn");
    let helpdesk = add_client(dir.path(), &db, "helpdesk");
    let auditor = add_client(dir.path(), &db, "auditor");
    let http = crate::helpers::http();
    let bases = [a.base.clone(), b.base.clone()];
    let helpdesk_token = client_token(&bases[0], &helpdesk).await;
    let auditor_token = client_token(&bases[1], &auditor).await;

    // 2 processes × 4 writers, each creating customers and reading them.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for (p, base) in bases.iter().enumerate() {
        for w in 0..4 {
            let (http, base, token, acked) = (
                http.clone(),
                base.clone(),
                helpdesk_token.clone(),
                Arc::clone(&acknowledged),
            );
            tasks.push(tokio::spawn(async move {
                for i in 0..8 {
                    let mut body = ada();
                    body["external_id"] = json!(format!("p{p}-w{w}-{i}-{}", uuid::Uuid::now_v7()));
                    let r = http
                        .post(format!("{base}/v1/customers?purpose=support"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                    assert_eq!(r.status(), StatusCode::CREATED);
                    acked.lock().unwrap().push(rid);
                    let id = r.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    for _ in 0..2 {
                        let r = http
                            .get(format!("{base}/v1/customers/{id}?purpose=support"))
                            .bearer_auth(&token)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), StatusCode::OK);
                        acked
                            .lock()
                            .unwrap()
                            .push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }

    let verify: Value = http
        .get(format!("{}/v1/audit/verify", bases[0]))
        .bearer_auth(&auditor_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["events"], verify["head_seq"], "no gap from seq 1");

    // Every acknowledged request has exactly one event in the one chain.
    let mut per_request: HashMap<String, usize> = HashMap::new();
    let mut after = 0i64;
    let mut seqs = Vec::new();
    loop {
        let page: Value = http
            .get(format!(
                "{}/v1/audit?after_seq={after}&limit=1000",
                bases[1]
            ))
            .bearer_auth(&auditor_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in page["events"].as_array().unwrap() {
            seqs.push(e["seq"].as_i64().unwrap());
            *per_request
                .entry(e["request_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        match page["next_after_seq"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert_eq!(acked.len(), 2 * 4 * 8 * 3);
    for rid in &acked {
        assert_eq!(per_request.get(rid), Some(&1), "request {rid}");
    }
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());

    // And the export of either process verifies offline.
    let export = http
        .get(format!("{}/v1/audit/export", bases[1]))
        .bearer_auth(&auditor_token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let file = dir.path().join("two.ndjson");
    std::fs::write(&file, &export).unwrap();
    let keys: Value = http
        .get(format!("{}/v1/audit/public-key", bases[0]))
        .bearer_auth(&auditor_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = dir.path().join("vault.pub");
    std::fs::write(&key, keys["key_file"].as_str().unwrap()).unwrap();
    let (code, out) = offline_verify(&key, &file);
    assert_eq!(code, 0, "{out}");
    drop((a, b));
}

// ---------------------------------------------------------------------------
// The auditor's API
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_auditor_queries_with_filters_and_pages() {
    on_each_backend(|v| async move {
        let (helpdesk_id, secret) = v.client("helpdesk").await;
        let t = {
            let r: Value = v
                .http
                .post(v.url("/v1/token"))
                .json(&json!({"grant_type": "client_credentials", "client_id": helpdesk_id, "client_secret": secret}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["access_token"].as_str().unwrap().to_owned()
        };
        let auditor = v.token("auditor").await;
        let id = v.create(&t, &ada()).await;
        let other = v.create(&t, &ada()).await;
        v.get(&t, &format!("/v1/customers/{id}?purpose=support")).await;
        v.get(&t, &format!("/v1/customers/{id}?purpose=support.callback")).await;
        let (s, _) = v.get(&t, &format!("/v1/customers/{id}?purpose=marketing")).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        v.get(&t, &format!("/v1/customers/{other}?purpose=support")).await;

        let (s, page) = v.get(&auditor, &format!("/v1/audit?customer_id={id}")).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let events = page["events"].as_array().unwrap();
        assert_eq!(page["next_after_seq"], Value::Null);
        let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(
            actions,
            ["customer.create", "customer.read", "customer.read", "customer.read"]
        );
        let read = &events[1];
        assert_eq!(read["actor"], helpdesk_id.as_str());
        assert_eq!(read["role"], "helpdesk");
        assert_eq!(read["purpose"], "support");
        assert_eq!(read["customer_id"], id.as_str());
        assert_eq!(read["decision"], "allowed");
        assert!(read["at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(read["prev_hash"].as_str().unwrap().len(), 64);
        assert!(read["fields"].as_array().unwrap().contains(&json!("email")));
        assert!(read["reasons"].is_object());
        assert_eq!(read["hash"].as_str().unwrap().len(), 64);

        let only = |q: &str| {
            let (v, auditor, q) = (&v, &auditor, q.to_owned());
            async move {
                let (s, page) = v.get(auditor, &format!("/v1/audit?{q}")).await;
                assert_eq!(s, StatusCode::OK, "{q}: {page}");
                page["events"].as_array().unwrap().clone()
            }
        };
        let by_actor = only(&format!("actor={helpdesk_id}")).await;
        assert!(by_actor.len() >= 6);
        assert!(by_actor.iter().all(|e| e["actor"] == helpdesk_id.as_str()));
        let by_action = only("action=customer.create").await;
        assert_eq!(by_action.len(), 2);
        let by_purpose = only("purpose=support.callback").await;
        assert_eq!(by_purpose.len(), 1);
        let denied = only(&format!("decision=denied&customer_id={id}")).await;
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0]["reasons"]["purpose"], "purpose_not_permitted");
        assert!(only("from=2999-01-01T00:00:00Z").await.is_empty());
        assert!(only("to=2001-01-01T00:00:00Z").await.is_empty());
        let window = only(&format!(
            "from=2001-01-01T00:00:00Z&to=2999-01-01T00:00:00%2B02:00&customer_id={id}"
        ))
        .await;
        // The customer's four events, and the auditor's earlier queries about
        // this customer (recorded with its id).
        assert_eq!(
            window
                .iter()
                .filter(|e| e["action"].as_str().unwrap().starts_with("customer."))
                .count(),
            4
        );
        assert!(
            window
                .iter()
                .any(|e| e["action"] == "audit.query" && e["role"] == "auditor")
        );

        // Paging: two at a time, following next_after_seq, gives the same list.
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let (s, page) = v
                .get(&auditor, &format!("/v1/audit?actor={helpdesk_id}&limit=2&after_seq={after}"))
                .await;
            assert_eq!(s, StatusCode::OK);
            let ev = page["events"].as_array().unwrap();
            assert!(ev.len() <= 2);
            paged.extend(ev.iter().cloned());
            match page["next_after_seq"].as_i64() {
                Some(n) => {
                    assert_eq!(n, ev.last().unwrap()["seq"]);
                    after = n;
                }
                None => break,
            }
        }
        assert_eq!(paged, by_actor);
        let (_, page) = v.get(&auditor, "/v1/audit?limit=0").await;
        assert_eq!(page["events"].as_array().unwrap().len(), 1, "limit is clamped to 1");
        let (_, page) = v.get(&auditor, "/v1/audit").await;
        assert!(page["events"].as_array().unwrap().len() <= 100);

        // Bad filters: 400 invalid_filter naming the parameter.
        for (q, field) in [
            ("from=yesterday", Some("from")),
            ("to=2026-02-30T00:00:00Z", Some("to")),
            ("action=customer.explode", Some("action")),
            ("action=drop%20table", Some("action")),
            ("customer_id=ada@example.com", Some("customer_id")),
            ("after_seq=-3", Some("after_seq")),
            ("limit=many", Some("limit")),
            ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", Some("from")),
            ("colour=blue", None),
        ] {
            let (s, p) = v.get(&auditor, &format!("/v1/audit?{q}")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
            assert_eq!(p["code"], "invalid_filter", "{q}");
            if let Some(f) = field {
                assert_eq!(p["field"], f, "{q}");
            }
            assert!(!p.to_string().contains("ada@example.com"));
        }
        let (s, p) = v.get(&auditor, "/v1/audit/export?after_seq=x").await;
        assert_eq!((s, p["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_filter")));
    })
    .await;
}

#[tokio::test]
async fn only_the_audit_capability_reads_the_trail_and_every_read_is_recorded() {
    on_each_backend(|v| async move {
        let auditor = v.token("auditor").await;
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v.create(&helpdesk, &ada()).await;
        let paths = [
            "/v1/audit".to_owned(),
            "/v1/audit/export".to_owned(),
            "/v1/audit/verify".to_owned(),
            "/v1/audit/public-key".to_owned(),
        ];
        for token in [&helpdesk, &dpo] {
            for p in &paths {
                let (s, b) = v.get(token, p).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
                assert_eq!(b["code"], "capability_required", "{p}");
            }
        }
        for p in &paths {
            let r = v.http.get(v.url(p)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{p}");
        }
        let denied = all_events(&v, &auditor, "action=audit.query&decision=denied").await;
        assert_eq!(denied.len(), 2, "each refusal is recorded");
        assert_eq!(denied[0]["reasons"]["capability"], "capability_required");

        // Each read by the auditor is an event carrying its request id.
        let expectations = [
            ("/v1/audit?action=customer.create", "audit.query"),
            ("/v1/audit/export", "audit.export"),
            ("/v1/audit/verify", "audit.verify"),
            ("/v1/audit/public-key", "audit.public_key"),
        ];
        for (path, action) in expectations {
            let r = v
                .http
                .get(v.url(path))
                .bearer_auth(&auditor)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            r.bytes().await.unwrap();
            let events = v.audit().await;
            let mine: Vec<_> = events
                .iter()
                .filter(|e| e.draft.request_id == rid)
                .collect();
            assert_eq!(mine.len(), 1, "{path}");
            assert_eq!(mine[0].draft.action, action);
            assert_eq!(mine[0].draft.role, "auditor");
            assert_eq!(mine[0].draft.decision, "allowed");
        }
        // The query records its validated filters, never free text.
        let q = all_events(&v, &auditor, "action=audit.query&decision=allowed").await;
        assert!(
            q.iter()
                .any(|e| e["reasons"]["filter.action"] == "customer.create")
        );
        let (s, _) = v.get(&auditor, "/v1/audit?actor=ada@example.com").await;
        assert_eq!(s, StatusCode::OK);
        let all = serde_json::to_string(&v.audit().await).unwrap();
        assert!(
            !all.contains("ada@example.com"),
            "a filter value reached the trail"
        );

        // No endpoint changes or deletes events.
        let before = v.audit().await;
        for p in paths
            .iter()
            .cloned()
            .chain([format!("/v1/customers/{id}/access-log")])
        {
            for m in [Method::PUT, Method::PATCH, Method::DELETE, Method::POST] {
                let (s, b) = v.send(m.clone(), &auditor, &p, &json!({"seq": 1})).await;
                assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
                assert_eq!(b["code"], "method_not_allowed", "{m} {p}");
            }
        }
        let after = v.audit().await;
        assert_eq!(
            after[..before.len()],
            before[..],
            "every event is unchanged"
        );
        assert_eq!(verify_api(&v, &auditor).await["ok"], true);
    })
    .await;
}

#[tokio::test]
async fn the_public_key_names_the_current_signing_key() {
    on_each_backend(|v| async move {
        let auditor = v.token("auditor").await;
        let (s, keys) = v.get(&auditor, "/v1/audit/public-key").await;
        assert_eq!(s, StatusCode::OK);
        let current = keys["current"].as_str().unwrap().to_owned();
        assert_eq!(current, v.state.keys.checkpoint().signing_key().kid());
        let first = &keys["keys"][0];
        assert_eq!(first["kid"], current.as_str());
        assert_eq!(first["current"], true);
        assert_eq!(first["algorithm"], "Ed25519");
        assert_eq!(first["public_key_hex"].as_str().unwrap().len(), 64);
        let parsed =
            pii_vault::audit::checkpoint::PublicKeys::parse(keys["key_file"].as_str().unwrap())
                .unwrap();
        assert_eq!(
            parsed.get(&current),
            Some(&v.state.keys.checkpoint().signing_key().public_key())
        );
        // The audit endpoints are in the published schema.
        let (_, doc) = split(v.http.get(v.url("/openapi.json")).send().await.unwrap()).await;
        for p in [
            "/v1/audit",
            "/v1/audit/export",
            "/v1/audit/verify",
            "/v1/audit/public-key",
            "/v1/customers/{id}/access-log",
        ] {
            assert!(doc["paths"][p]["get"].is_object(), "{p} missing");
        }
        // Checkpoints are signed with it.
        export_to(&v, &auditor, "", "e.ndjson").await;
        let r = verify_api(&v, &auditor).await;
        assert_eq!(r["checkpoint"]["kid"], current.as_str());
    })
    .await;
}

#[tokio::test]
async fn a_customers_access_log_shows_who_used_the_data_when_and_why() {
    on_each_backend(|v| async move {
        let (helpdesk_id, secret) = v.client("helpdesk").await;
        let r: Value = v
            .http
            .post(v.url("/v1/token"))
            .json(&json!({"grant_type": "client_credentials", "client_id": helpdesk_id, "client_secret": secret}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let t = r["access_token"].as_str().unwrap().to_owned();
        let dpo = v.token("dpo").await;
        let auditor = v.token("auditor").await;
        let id = v.create(&t, &ada()).await;
        v.get(&t, &format!("/v1/customers/{id}?purpose=support")).await;
        v.get(&t, &format!("/v1/customers/{id}/fields/phone?purpose=support.callback"))
            .await;
        let path = format!("/v1/customers/{id}/access-log");
        for _ in 0..2 {
            let (s, _) = v.get(&dpo, &path).await;
            assert_eq!(s, StatusCode::OK);
        }
        let (s, log) = v.get(&auditor, &path).await;
        assert_eq!(s, StatusCode::OK, "{log}");
        assert_eq!(log["customer_id"], id.as_str());
        let entries = log["entries"].as_array().unwrap();
        let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(
            actions,
            ["customer.create", "customer.read", "customer.read_field"],
            "reading the log is not an access to the data"
        );
        assert_eq!(entries[1]["actor"], helpdesk_id.as_str());
        assert_eq!(entries[1]["role"], "helpdesk");
        assert_eq!(entries[1]["purpose"], "support");
        assert_eq!(entries[2]["purpose"], "support.callback");
        assert_eq!(entries[2]["fields"], json!(["phone"]));
        assert!(entries[2]["at"].as_str().unwrap().ends_with('Z'));

        let (_, page) = v.get(&dpo, &format!("{path}?limit=2")).await;
        assert_eq!(page["entries"].as_array().unwrap().len(), 2);
        let next = page["next_after_seq"].as_i64().unwrap();
        let (_, rest) = v.get(&dpo, &format!("{path}?limit=2&after_seq={next}")).await;
        assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
        assert_eq!(rest["next_after_seq"], Value::Null);

        let (s, b) = v.get(&t, &path).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("capability_required")));
        let (s, b) = v
            .get(&dpo, &format!("/v1/customers/{}/access-log", uuid::Uuid::now_v7()))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("customer_not_found")));
        let (s, _) = v.get(&dpo, "/v1/customers/not-a-uuid/access-log").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // The reads of the log are themselves in the trail.
        let reads = all_events(&v, &auditor, "action=access_log.read").await;
        assert_eq!(
            reads.iter().filter(|e| e["decision"] == "allowed").count(),
            5
        );
        assert!(reads.iter().any(|e| e["decision"] == "denied"));
        assert!(reads.iter().any(|e| e["decision"] == "not_found"));
    })
    .await;
}

#[tokio::test]
async fn metrics_show_access_decisions_and_audit_lag() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        v.get(&t, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        v.get(&t, &format!("/v1/customers/{id}?purpose=marketing"))
            .await;
        let text = v
            .http
            .get(v.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let decisions: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("pii_vault_access_decisions_total{"))
            .collect();
        assert!(
            decisions
                .iter()
                .any(|l| l.contains("decision=\"allowed\"") && l.contains("reason=\"served\"")),
            "{decisions:?}"
        );
        assert!(
            decisions.iter().any(|l| l.contains("decision=\"denied\"")
                && l.contains("reason=\"purpose_not_permitted\"")),
            "{decisions:?}"
        );
        for name in [
            "pii_vault_audit_lag_seconds",
            "pii_vault_audit_queue_depth",
            "pii_vault_audit_batch_size",
            "pii_vault_audit_events_total",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Command line and retention
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_command_line_exports_publishes_the_key_and_verifies() {
    on_each_backend(|v| async move {
        let auditor = v.token("auditor").await;
        activity(&v, &auditor).await;
        let dir = v.dir.path();
        let run = |args: &[&str]| {
            let mut c = vault_cmd(dir, &v.database_url, "warn");
            c.args(args);
            run_ok(c)
        };
        run(&["audit", "public-key", "--output", "cli.pub"]).await;
        run(&["audit", "export", "--output", "cli.ndjson"]).await;
        let stdout_export = run(&["audit", "export"]).await;
        assert!(stdout_export.starts_with("{\"type\":\"event\""));
        let key = dir.join("cli.pub");
        let file = dir.join("cli.ndjson");
        let (code, out) = offline_verify(&key, &file);
        assert_eq!(code, 0, "{out}");
        assert!(
            std::fs::read_to_string(&key)
                .unwrap()
                .contains(v.state.keys.checkpoint().signing_key().kid())
        );
        let exports = all_events(&v, &auditor, "action=audit.export").await;
        assert_eq!(exports.len(), 2);
        assert_eq!(exports[0]["actor"], "cli");

        // One changed character in an event is caught.
        let text = std::fs::read_to_string(&file).unwrap();
        let changed = text.replacen(
            "\"purpose\":\"support.callback\"",
            "\"purpose\":\"support\"",
            1,
        );
        assert_ne!(changed, text);
        std::fs::write(&file, changed).unwrap();
        let (code, out) = offline_verify(&key, &file);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("first bad event: seq "), "{out}");
        let (code, _) = offline_verify(&dir.join("missing.pub"), &file);
        assert_eq!(code, 2);

        let out = run(&["audit", "checkpoint"]).await;
        assert!(out.contains("checkpoint at seq"), "{out}");
        let out = run(&["audit", "prune"]).await;
        assert!(out.contains("nothing to prune"), "{out}");
    })
    .await;
}

#[tokio::test]
async fn pruning_past_retention_keeps_the_trail_verifiable_from_a_checkpoint() {
    on_each_backend(|v| async move {
        let auditor = v.token("auditor").await;
        activity(&v, &auditor).await;
        export_to(&v, &auditor, "", "old.ndjson").await;
        let checkpointed = verify_api(&v, &auditor).await["checkpoint"]["seq"]
            .as_i64()
            .unwrap();
        assert_eq!(
            pii_vault::audit::retention::prune(&v.state).await.unwrap(),
            None,
            "nothing is older than the retention period"
        );

        v.clock.advance_days(2557 + 1);
        let auditor = v.token("auditor").await;
        activity(&v, &auditor).await;
        let plan = pii_vault::audit::retention::prune(&v.state)
            .await
            .unwrap()
            .expect("old events are pruned");
        assert!(plan.through_seq >= checkpointed, "{plan:?}");

        let remaining = all_events(&v, &auditor, "").await;
        assert_eq!(remaining[0]["seq"], plan.through_seq + 1);
        assert!(remaining.iter().any(|e| e["action"] == "audit.prune"
            && e["reasons"]["through_seq"].as_str() == Some(&plan.through_seq.to_string())));
        let r = verify_api(&v, &auditor).await;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["first_seq"], plan.through_seq + 1);

        let file = export_to(&v, &auditor, "", "pruned.ndjson").await;
        let key = key_file(&v, &auditor).await;
        let (code, out) = offline_verify(&key, &file);
        assert_eq!(code, 0, "{out}");

        // Deleting the anchoring checkpoint leaves a trail without a start.
        v.exec(&format!(
            "DELETE FROM audit_checkpoints WHERE seq = {}",
            plan.through_seq
        ))
        .await;
        let r = verify_api(&v, &auditor).await;
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["first_bad_seq"], 1);
    })
    .await;
}
