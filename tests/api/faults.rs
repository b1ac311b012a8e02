//! Crash during writes: 8 concurrent writers create customers (with an
//! `Idempotency-Key`) and rectify them while the real server is SIGKILLed
//! at pseudo-random moments and restarted on the same database and root
//! key, over 20 cycles. Writers retry every unacknowledged request (the
//! same key and body) until it is acknowledged. Afterwards: every
//! acknowledged write reads back with its acknowledged value, no record is
//! torn, every retried create had exactly one effect, every acknowledged
//! write has its audit event, and the audit chain verifies.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const WRITERS: usize = 8;
const CYCLES: usize = 20;

pub(crate) fn vault_cmd(dir: &std::path::Path, db: &str, rust_log: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pii-vault"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", rust_log)
        .env("PII_VAULT_DATABASE_URL", db)
        .env("PII_VAULT_LISTEN", "127.0.0.1:0")
        .env(
            "PII_VAULT_POLICY_DIR",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        )
        .env("PII_VAULT_MASTER_KEY", root_key_b64())
        .env(
            "PII_VAULT_TOMBSTONE_FILE",
            dir.join("vault.tombstones").display().to_string(),
        );
    c
}

/// A running `pii-vault serve`; every line it printed is in `logs`.
pub(crate) struct Proc {
    pub child: Child,
    pub base: String,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server and waits for its "listening on" line.
pub(crate) fn spawn_vault(dir: &std::path::Path, db: &str, rust_log: &str) -> Proc {
    let mut child = vault_cmd(dir, db, rust_log)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pii-vault");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let (logs, tx) = (Arc::clone(&logs), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(format!("http://{}", addr.trim()));
                }
                logs.lock().unwrap().push(line);
            }
        });
    }
    drop(tx);
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(base) => Proc { child, base, logs },
        Err(_) => {
            let _ = child.kill();
            panic!("server did not start: {:?}", logs.lock().unwrap());
        }
    }
}

/// A deterministic pseudo-random sequence (xorshift), so a failing run can
/// be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default)]
struct Ledger {
    /// external_id → (customer id, request ids of every attempt).
    created: HashMap<String, (String, Vec<String>)>,
    /// customer id → the acknowledged email.
    email: HashMap<String, String>,
    /// Request ids of acknowledged updates.
    updated: Vec<(String, String)>,
    /// Anything a writer saw that must not happen.
    violations: Vec<String>,
}

struct Shared {
    base: RwLock<String>,
    token: String,
    stop: AtomicBool,
    acked: AtomicUsize,
    ledger: Mutex<Ledger>,
}

enum Outcome {
    Ack(Value),
    Retry,
    Wrong(StatusCode, Value),
}

/// One attempt of a write; connection failures and 503 mean "retry".
async fn attempt(
    http: &reqwest::Client,
    shared: &Shared,
    method: reqwest::Method,
    path: &str,
    body: &Value,
    idem: Option<&str>,
    request_id: &str,
) -> Outcome {
    let base = shared.base.read().unwrap().clone();
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(&shared.token)
        .header("x-request-id", request_id)
        .json(body);
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    let Ok(resp) = req.send().await else {
        return Outcome::Retry;
    };
    let status = resp.status();
    let Ok(text) = resp.text().await else {
        return Outcome::Retry;
    };
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Outcome::Ack(v)
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        Outcome::Retry
    } else {
        Outcome::Wrong(status, v)
    }
}

/// Sends until acknowledged; returns the body and every request id used.
async fn until_acked(
    http: &reqwest::Client,
    shared: &Shared,
    method: reqwest::Method,
    path: &str,
    body: &Value,
    idem: Option<&str>,
) -> Result<(Value, Vec<String>), String> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rid = Uuid::now_v7().to_string();
        ids.push(rid.clone());
        match attempt(http, shared, method.clone(), path, body, idem, &rid).await {
            Outcome::Ack(v) => return Ok((v, ids)),
            Outcome::Retry => {
                if Instant::now() > deadline {
                    return Err(format!("{method} {path} never acknowledged"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Outcome::Wrong(s, v) => {
                return Err(format!(
                    "{method} {path} (attempt {}) answered {s}: {v}",
                    ids.len()
                ));
            }
        }
    }
}

async fn writer(w: usize, shared: Arc<Shared>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut i = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let external_id = format!("crash-w{w}-{i}");
        let email = format!("w{w}.n{i}@example.com");
        let body = json!({
            "external_id": external_id, "channel": "api", "notice_version": "2026-01",
            "fields": {
                "email": {"value": email, "purposes": ["support"]},
                "name": {"value": format!("Writer {w} Number {i}"), "purposes": ["support"]},
                "phone": {"value": format!("+39 333 {:07}", w * 100_000 + i), "purposes": ["support.callback"]}
            }
        });
        let idem = format!("create-{external_id}");
        let (created, ids) = match until_acked(
            &http,
            &shared,
            reqwest::Method::POST,
            "/v1/customers?purpose=support",
            &body,
            Some(&idem),
        )
        .await
        {
            Ok(x) => x,
            Err(e) => {
                shared.ledger.lock().unwrap().violations.push(e);
                return;
            }
        };
        let Some(id) = created["id"].as_str().map(str::to_owned) else {
            shared
                .ledger
                .lock()
                .unwrap()
                .violations
                .push(format!("create acknowledged without an id: {created}"));
            return;
        };
        {
            let mut l = shared.ledger.lock().unwrap();
            l.created.insert(external_id.clone(), (id.clone(), ids));
            l.email.insert(id.clone(), email.clone());
        }
        shared.acked.fetch_add(1, Ordering::SeqCst);

        // Rectify it twice; each acknowledged value must be the one read back.
        for round in 1..=2 {
            let new_email = format!("w{w}.n{i}.v{round}@example.com");
            let patch = json!({"fields": {"email": {"value": new_email}}});
            match until_acked(
                &http,
                &shared,
                reqwest::Method::PATCH,
                &format!("/v1/customers/{id}?purpose=support"),
                &patch,
                None,
            )
            .await
            {
                Ok((_, ids)) => {
                    let mut l = shared.ledger.lock().unwrap();
                    l.email.insert(id.clone(), new_email);
                    l.updated
                        .push((id.clone(), ids.last().cloned().unwrap_or_default()));
                }
                Err(e) => {
                    shared.ledger.lock().unwrap().violations.push(e);
                    return;
                }
            }
            shared.acked.fetch_add(1, Ordering::SeqCst);
        }
        i += 1;
    }
}

pub(crate) async fn client_token(base: &str, creds: &Value) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/v1/token"))
        .json(&json!({"grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": creds["client_secret"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_owned()
}

pub(crate) fn add_client(dir: &std::path::Path, db: &str, role: &str) -> Value {
    let out = vault_cmd(dir, db, "warn")
        .args(["clients", "add", "--name", role, "--role", role, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn stored_external_ids(backend: Backend, db: &str) -> Vec<String> {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(db).await.unwrap();
            sqlx::query_scalar("SELECT external_id FROM customers")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(db).await.unwrap();
            sqlx::query_scalar("SELECT external_id FROM customers")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
    }
}

async fn crash_cycles(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("vault.db").display()),
        Backend::Postgres => fresh_pg_database().await,
    };
    let mut server = spawn_vault(dir.path(), &db, "warn");
    let base = server.base.clone();
    let helpdesk = add_client(dir.path(), &db, "helpdesk");
    let auditor = add_client(dir.path(), &db, "auditor");
    let shared = Arc::new(Shared {
        base: RwLock::new(base.clone()),
        token: client_token(&base, &helpdesk).await,
        stop: AtomicBool::new(false),
        acked: AtomicUsize::new(0),
        ledger: Mutex::new(Ledger::default()),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(w, Arc::clone(&shared))))
        .collect();

    let mut rng = Rng(0x5eed_c0ff_ee15_0007);
    let mut acked_before_kill = Vec::new();
    for _cycle in 0..CYCLES {
        // Run 150–900 ms, then SIGKILL (Child::kill sends SIGKILL).
        let run_ms = 150 + rng.next() % 750;
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        acked_before_kill.push(shared.acked.load(Ordering::SeqCst));
        // Down for 0–200 ms: writers see refused connections meanwhile.
        tokio::time::sleep(Duration::from_millis(rng.next() % 200)).await;
        server = tokio::task::block_in_place(|| spawn_vault(dir.path(), &db, "warn"));
        *shared.base.write().unwrap() = server.base.clone();
    }
    // Let the writers finish what they have in flight on a live server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let base = shared.base.read().unwrap().clone();
    let ledger = std::mem::take(&mut *shared.ledger.lock().unwrap());
    assert!(
        ledger.violations.is_empty(),
        "{backend:?}: {:#?}",
        ledger.violations
    );
    let progressed = acked_before_kill.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(
        progressed >= CYCLES / 2,
        "{backend:?}: writes were acknowledged in too few cycles to mean anything: {acked_before_kill:?}"
    );
    assert!(
        ledger.created.len() >= WRITERS * 2,
        "{backend:?}: {}",
        ledger.created.len()
    );

    // Exactly one customer per acknowledged create, none that was never
    // acknowledged, and none twice.
    let stored = stored_external_ids(backend, &db).await;
    let stored_set: HashSet<&String> = stored.iter().collect();
    assert_eq!(
        stored.len(),
        stored_set.len(),
        "{backend:?}: duplicate rows"
    );
    let acked_set: HashSet<&String> = ledger.created.keys().collect();
    assert_eq!(
        stored_set, acked_set,
        "{backend:?}: stored ≠ acknowledged creates"
    );

    // Every acknowledged write reads back with its acknowledged value, and
    // every record decrypts whole (no torn record).
    let http = reqwest::Client::new();
    for (ext, (id, _)) in &ledger.created {
        let (s, c) = split(
            http.get(format!("{base}/v1/customers/{id}?purpose=support.callback"))
                .bearer_auth(&shared.token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{backend:?} {ext}: {c}");
        assert_eq!(c["external_id"], json!(ext), "{backend:?}: {c}");
        assert_eq!(
            c["fields"]["email"],
            json!(ledger.email[id]),
            "{backend:?} {ext}: the acknowledged value"
        );
        for f in ["name", "phone"] {
            assert!(
                c["fields"][f].as_str().is_some_and(|v| !v.is_empty()),
                "{backend:?} {ext}: {f} is missing or does not decrypt: {c}"
            );
        }
    }

    // The audit trail: one create event per customer, from one of the
    // attempts that carried its key; an event for every acknowledged update;
    // and the chain verifies.
    let store = pii_vault::store::open(&pii_vault::store::DatabaseUrl::new(db.clone()))
        .await
        .unwrap();
    let events = store
        .audit_events(&pii_vault::store::AuditFilter {
            limit: 10_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut creates: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut by_request: HashSet<(&str, &str)> = HashSet::new();
    for e in &events {
        if e.draft.decision != "allowed" {
            continue;
        }
        by_request.insert((e.draft.action.as_str(), e.draft.request_id.as_str()));
        if e.draft.action == "customer.create"
            && let Some(c) = &e.draft.customer_id
        {
            creates
                .entry(c.as_str())
                .or_default()
                .push(e.draft.request_id.as_str());
        }
    }
    for (ext, (id, attempts)) in &ledger.created {
        let evs = creates.get(id.as_str()).cloned().unwrap_or_default();
        assert_eq!(evs.len(), 1, "{backend:?} {ext}: create events {evs:?}");
        assert!(
            attempts.iter().any(|a| a == evs[0]),
            "{backend:?} {ext}: the create event is from another request"
        );
    }
    for (id, rid) in &ledger.updated {
        assert!(
            by_request.contains(&("customer.update", rid.as_str())),
            "{backend:?}: acknowledged update of {id} ({rid}) has no audit event"
        );
    }
    pii_vault::audit::chain::verify((0, hex::encode(pii_vault::audit::chain::GENESIS)), &events)
        .unwrap_or_else(|e| panic!("{backend:?}: chain broken at {}", e.seq()));

    let auditor_token = client_token(&base, &auditor).await;
    let (s, report) = split(
        http.get(format!("{base}/v1/audit/verify"))
            .bearer_auth(&auditor_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["ok"], true, "{backend:?}: {report}");

    drop(server);
    let retried = ledger.created.values().filter(|(_, a)| a.len() > 1).count();
    eprintln!(
        "{backend:?}: {CYCLES} SIGKILL cycles survived, {} customers created ({retried} after a retry), {} updates, {} audit events",
        ledger.created.len(),
        ledger.updated.len(),
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    for backend in backends() {
        crash_cycles(backend).await;
    }
}
