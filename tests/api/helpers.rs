//! Test harness: a real vault server on 127.0.0.1:0 speaking HTTP, on
//! SQLite always and on PostgreSQL when `DATABASE_URL` names one (a fresh
//! database per test).

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pii_vault::clock::{Clock, SystemClock};
use pii_vault::config::Settings;
use pii_vault::state::AppState;
use pii_vault::store::{Mutation, Unit};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

/// The system clock plus an offset that tests can move forward.
#[derive(Default)]
pub struct TestClock {
    offset: AtomicI64,
}

impl TestClock {
    pub fn advance_days(&self, days: i64) {
        self.offset
            .fetch_add(days * 86_400_000_000, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: i64) {
        self.offset.fetch_add(secs * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_micros(&self) -> i64 {
        SystemClock.now_micros() + self.offset.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestVault {
    pub backend: Backend,
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<TestClock>,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// An HTTP client. The vault's reqwest has TLS on ring without a default
/// provider: a client built before [`pii_vault::install_tls_provider`]
/// panics, so tests build theirs here (`layering.rs` checks it).
pub fn http() -> reqwest::Client {
    http_builder().build().expect("HTTP client")
}

/// [`http`]'s builder, for clients with their own timeouts.
pub fn http_builder() -> reqwest::ClientBuilder {
    pii_vault::install_tls_provider();
    reqwest::Client::builder()
}

/// The backends this run covers.
pub fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Sqlite];
    if std::env::var("DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        b.push(Backend::Postgres);
    }
    b
}

/// Runs a scenario once per backend.
pub async fn on_each_backend<F, Fut>(scenario: F)
where
    F: Fn(TestVault) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        let v = TestVault::start(backend).await;
        scenario(v).await;
    }
}

pub fn root_key_b64() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(3));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The PostgreSQL databases this test thread created. The test harness runs
/// each test on its own thread, so when the thread ends (the test passed or
/// panicked) they are dropped: a run leaves no `pii_vault_test_*` behind.
#[derive(Default)]
struct TestDatabases {
    admin: Option<String>,
    names: Vec<String>,
}

impl Drop for TestDatabases {
    fn drop(&mut self) {
        let (Some(admin), names) = (self.admin.take(), std::mem::take(&mut self.names)) else {
            return;
        };
        if names.is_empty() {
            return;
        }
        // A thread of its own: this runs while the test thread (and its
        // runtime) is being torn down.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
                    return;
                };
                for name in names {
                    // FORCE ends connections a stopped server or a killed
                    // child process may have left open.
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await
                    {
                        eprintln!("could not drop test database {name}: {e}");
                    }
                }
            });
        });
        let _ = dropper.join();
    }
}

thread_local! {
    static TEST_DATABASES: std::cell::RefCell<TestDatabases> =
        std::cell::RefCell::new(TestDatabases::default());
}

/// Drops the PostgreSQL database `name` (on `DATABASE_URL`'s server) when
/// this test ends, pass or fail.
pub fn drop_at_test_end(name: &str) {
    let Ok(admin) = std::env::var("DATABASE_URL") else {
        return;
    };
    TEST_DATABASES.with(|t| {
        let mut t = t.borrow_mut();
        t.admin.get_or_insert(admin);
        t.names.push(name.to_owned());
    });
}

/// A fresh PostgreSQL database named after a new UUID, dropped when the
/// test ends, pass or fail.
pub async fn fresh_pg_database() -> String {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let name = format!("pii_vault_test_{}", Uuid::now_v7().simple());
    drop_at_test_end(&name);
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

impl TestVault {
    pub async fn start(backend: Backend) -> TestVault {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("vault.db").display()),
            Backend::Postgres => fresh_pg_database().await,
        };
        Self::start_with(backend, dir, database_url).await
    }

    pub async fn start_with(
        backend: Backend,
        dir: tempfile::TempDir,
        database_url: String,
    ) -> TestVault {
        Self::start_with_adjusted(backend, dir, database_url, |_, _| {}).await
    }

    /// A fresh vault whose settings `adjust` changes first (policy
    /// directory, webhook URL, …).
    pub async fn start_adjusted(
        backend: Backend,
        adjust: impl FnOnce(&mut Settings, &std::path::Path),
    ) -> TestVault {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("vault.db").display()),
            Backend::Postgres => fresh_pg_database().await,
        };
        Self::start_with_adjusted(backend, dir, database_url, adjust).await
    }

    pub async fn start_with_adjusted(
        backend: Backend,
        dir: tempfile::TempDir,
        database_url: String,
        adjust: impl FnOnce(&mut Settings, &std::path::Path),
    ) -> TestVault {
        let mut settings = settings(&database_url);
        // Each test vault keeps its tombstone file in its own directory.
        settings.tombstone_file = Some(dir.path().join("vault.tombstones"));
        adjust(&mut settings, dir.path());
        let clock = Arc::new(TestClock::default());
        let (state, _) = pii_vault::build_state(settings, clock.clone(), false)
            .await
            .expect("vault starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_state = state.clone();
        let server = tokio::spawn(async move {
            let _ = pii_vault::serve(listener, server_state, async {
                let _ = rx.await;
            })
            .await;
        });
        TestVault {
            backend,
            base: format!("http://{addr}"),
            http: http(),
            state,
            clock,
            database_url,
            dir,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stops the server and hands back its directory and database.
    pub async fn stop(mut self) -> (tempfile::TempDir, String) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (dir, self.database_url.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a client with `role` and returns (client_id, secret).
    pub async fn client(&self, role: &str) -> (String, String) {
        let id = Uuid::now_v7();
        let secret = pii_vault::crypto::generate_secret().expect("secret");
        let unit = Unit {
            mutations: vec![Mutation::InsertClient {
                id,
                name: format!("{role}-{id}"),
                role: role.into(),
                secret_sha256: pii_vault::crypto::sha256_hex(&secret),
                at: self.clock.now_micros(),
            }],
            events: vec![],
        };
        self.state
            .sequencer
            .commit(unit)
            .await
            .expect("client created");
        (id.to_string(), secret)
    }

    /// A bearer token for a new client with `role`.
    pub async fn token(&self, role: &str) -> String {
        let (id, secret) = self.client(role).await;
        let resp = self
            .http
            .post(self.url("/v1/token"))
            .json(&json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}))
            .send()
            .await
            .expect("token request");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<Value>().await.expect("json")["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        split(resp).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        split(resp).await
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, token, path, body).await
    }

    pub async fn patch(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, token, path, body).await
    }

    /// Creates a customer through the API as a helpdesk and returns its id.
    pub async fn create(&self, token: &str, body: &Value) -> String {
        let (status, v) = self
            .post(token, "/v1/customers?purpose=support", body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Every audit event, in order.
    pub async fn audit(&self) -> Vec<pii_vault::audit::StoredEvent> {
        let filter = pii_vault::store::AuditFilter {
            limit: 1_000_000,
            ..Default::default()
        };
        self.state
            .store
            .audit_events(&filter)
            .await
            .expect("audit events")
    }

    /// Runs SQL directly on the vault's database (fault injection).
    pub async fn exec(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.database_url)
                    .await
                    .expect("connect");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .expect("exec");
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.database_url)
                    .await
                    .expect("connect");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .expect("exec");
            }
        }
    }
}

impl Drop for TestVault {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn settings(database_url: &str) -> Settings {
    Settings {
        database_url: database_url.into(),
        policy_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        master_key: Some(root_key_b64().into()),
        login_max_failures: 3,
        ..Settings::default()
    }
}

pub async fn split(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

pub const NOTICE_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The README's example customer: email for support and billing, phone for callbacks.
pub fn ada() -> Value {
    json!({
        "external_id": format!("zd-{}", Uuid::now_v7().simple()),
        "channel": "chat",
        "notice_version": "2026-01",
        "fields": {
            "email": {"value": "ada@example.com", "purposes": ["support", "billing"]},
            "phone": {"value": "+39 333 123 4567", "purposes": ["support.callback"]}
        }
    })
}

pub fn consent(purpose: &str, action: &str) -> Value {
    json!({
        "purpose": purpose, "action": action, "notice_version": "2026-01",
        "notice_text_sha256": NOTICE_SHA, "language": "it", "jurisdiction": "EU", "channel": "web"
    })
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// `pii-vault` in `dir` with a clean environment: database `db`, the test
/// root key, the shipped policy, any free port, the tombstone file in `dir`
/// (where the in-process test vaults keep theirs) and `RUST_LOG=rust_log`.
pub fn vault_cmd(dir: &std::path::Path, db: &str, rust_log: &str) -> Command {
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
pub struct Proc {
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

/// Runs `c` to the end on a blocking thread. Tests run on a current-thread
/// runtime that also drives the in-process test vault: waiting for a child
/// process on that thread would freeze the vault's tasks, together with any
/// SQLite write transaction one of them holds, and the child would find
/// the database locked.
pub async fn output(mut c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.output().expect("run pii-vault"))
        .await
        .expect("the command's thread")
}

/// [`output`], asserting success: the standard output.
pub async fn run_ok(c: Command) -> String {
    let out = output(c).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `pii-vault serve` as [`vault_cmd`] sets it up and waits for its
/// "listening on" line.
pub fn spawn_vault(dir: &std::path::Path, db: &str, rust_log: &str) -> Proc {
    serve(vault_cmd(dir, db, rust_log))
}

/// Starts `cmd serve` (a [`vault_cmd`], perhaps with more settings) and
/// waits for its "listening on" line.
pub fn serve(mut cmd: Command) -> Proc {
    let mut child = cmd
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

/// A token for client credentials as `pii-vault clients add --json` prints them.
pub async fn client_token(base: &str, creds: &Value) -> String {
    let r: Value = http()
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

/// `pii-vault clients add --name ROLE --role ROLE --json`: the credentials.
pub fn add_client(dir: &std::path::Path, db: &str, role: &str) -> Value {
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

/// POSTs `body` under the `Idempotency-Key` `key`; `token` may be empty (no
/// `Authorization`).
pub async fn post_keyed(
    v: &TestVault,
    token: &str,
    path: &str,
    key: &str,
    body: &serde_json::Value,
) -> (
    reqwest::StatusCode,
    serde_json::Value,
    reqwest::header::HeaderMap,
) {
    let mut req = v
        .http
        .post(v.url(path))
        .header("Idempotency-Key", key)
        .json(body);
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let headers = resp.headers().clone();
    let (s, b) = split(resp).await;
    (s, b, headers)
}

/// A `PutField` of `field` for the `support` purpose (collected at `at`),
/// as the store receives it: `ciphertext` and `blind_index` as given.
pub fn stored_value(
    customer: Uuid,
    field: &str,
    ciphertext: Vec<u8>,
    blind_index: Option<Vec<u8>>,
    at: i64,
) -> Mutation {
    Mutation::PutField {
        customer_id: customer,
        field: field.into(),
        ciphertext,
        collected_by: "helpdesk".into(),
        channel: Some("chat".into()),
        notice_version: Some("2026-01".into()),
        at,
        purposes: vec![pii_vault::store::ValuePurpose {
            purpose: "support".into(),
            collected_at: at,
            expires_at: at + 1_000_000,
        }],
        blind_index,
    }
}

/// A grant of `marketing.email` on the web, as the store receives it.
pub fn stored_grant(id: Uuid, customer: Uuid, at: i64) -> Mutation {
    Mutation::AppendConsent(pii_vault::store::ConsentEvent {
        id,
        customer_id: customer,
        purpose: "marketing.email".into(),
        action: "grant".into(),
        notice_version: "2026-01".into(),
        notice_text_sha256: NOTICE_SHA.into(),
        language: "it".into(),
        jurisdiction: "EU".into(),
        channel: "web".into(),
        captured_by: "helpdesk".into(),
        at,
        explicit: false,
    })
}
