//! `pii-vault bench`: a reproducible load benchmark over keep-alive HTTP.
//!
//! It starts a vault (or targets a running one), seeds customers, obtains
//! tokens, then runs each scenario for a fixed time with C connections and
//! reports requests per second, latency percentiles, errors by status and
//! the server's peak resident memory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};

use super::Exit;
use crate::telemetry;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark a running vault at this URL instead of starting one.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// With --target: `role=client_id:secret` (helpdesk required; dpo for erase, admin for rewrap).
    #[arg(long = "credentials", value_name = "ROLE=ID:SECRET")]
    credentials: Vec<String>,
    /// Database for the vault the benchmark starts (default: SQLite in a temporary directory).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Policy directory for the vault the benchmark starts.
    #[arg(long, default_value = "./policies")]
    policy_dir: PathBuf,
    /// Customers to seed before measuring.
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Comma-separated scenarios: baseline, read, read-field, create, search, mixed, erase, export, rewrap.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,read,read-field,create,search,mixed,erase,export,rewrap"
    )]
    scenarios: Vec<String>,
    /// PID of a targeted server, for its memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `pii-vault bench`: runs the benchmark and prints the report as a table
/// (or JSON). Needs no settings: a vault it starts gets its own.
pub fn command(args: BenchArgs) -> Exit {
    telemetry::init_tracing("text");
    let json = args.json;
    let opts = Options {
        target: args.target,
        credentials: args.credentials,
        database_url: args.database_url,
        policy_dir: args.policy_dir,
        customers: args.customers,
        connections: args.connections.max(1),
        duration: Duration::from_secs(args.duration.max(1)),
        scenarios: args.scenarios,
        server_pid: args.server_pid,
    };
    let printed = super::block_on(run(opts)).and_then(|report| {
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", table(&report));
        }
        Ok(())
    });
    match printed {
        Ok(()) => Exit::Success,
        Err(e) => {
            eprintln!("pii-vault bench: {e:#}");
            Exit::Failure
        }
    }
}

pub const SCENARIOS: &[&str] = &[
    "baseline",
    "read",
    "read-field",
    "create",
    "search",
    "mixed",
    "erase",
    "export",
    "rewrap",
];

#[derive(Debug, Clone)]
pub struct Options {
    /// A running vault; when absent the benchmark starts its own.
    pub target: Option<String>,
    /// `role=client_id:secret` credentials for a targeted vault.
    pub credentials: Vec<String>,
    /// Database for a vault the benchmark starts (default: SQLite in a temp dir).
    pub database_url: Option<String>,
    pub policy_dir: PathBuf,
    pub customers: usize,
    pub connections: usize,
    pub duration: Duration,
    pub scenarios: Vec<String>,
    /// PID of a targeted server, for its memory figures.
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
    pub server_peak_rss_mb: Option<f64>,
    /// Server CPU time (user + system, all threads) per successful request,
    /// in microseconds: steadier than requests/s on a shared machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_req: Option<f64>,
    /// For `rewrap`: data keys rewrapped per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items_per_sec: Option<f64>,
    /// For the reads and the search: requests/s divided by the `baseline`
    /// scenario's (a plain read of the same customers) in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ScenarioResult {
    /// A result with nothing measured yet.
    fn empty(scenario: &str) -> Self {
        ScenarioResult {
            scenario: scenario.to_owned(),
            requests: 0,
            seconds: 0.0,
            requests_per_sec: 0.0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            errors: BTreeMap::new(),
            server_peak_rss_mb: None,
            server_cpu_us_per_req: None,
            items_per_sec: None,
            ratio_to_baseline: None,
            note: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: String,
    pub customers: usize,
    pub connections: usize,
    pub duration_secs: f64,
    pub machine: Machine,
    pub seed_per_sec: f64,
    pub results: Vec<ScenarioResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu,
    }
}

/// A vault process the benchmark started.
struct Spawned {
    child: Child,
    env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Target {
    base: String,
    pid: Option<u32>,
    /// Role to `(client_id, secret)`: tokens expire (15 minutes by
    /// default, shorter than seeding a million customers), so they are
    /// issued afresh before each scenario and when seeding meets a 401.
    credentials: BTreeMap<String, (String, String)>,
    backend: String,
    _spawned: Option<Spawned>,
}

impl Target {
    /// A fresh token for every role the benchmark has credentials for.
    async fn tokens(&self, http: &reqwest::Client) -> anyhow::Result<BTreeMap<String, String>> {
        let mut tokens = BTreeMap::new();
        for (role, (id, secret)) in &self.credentials {
            tokens.insert(role.clone(), token(http, &self.base, id, secret).await?);
        }
        Ok(tokens)
    }
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the pii-vault executable")
}

fn cli(env: &[(String, String)], args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(exe()?)
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .context("cannot run pii-vault")?;
    if !out.status.success() {
        bail!(
            "pii-vault {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("unexpected output")
}

fn start_server(opts: &Options) -> anyhow::Result<(Spawned, String, String)> {
    let dir = tempfile::tempdir()?;
    let db = opts
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("vault.db").display()));
    let backend = if db.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let (_, key) = crate::crypto::RootKey::generate()?;
    let env: Vec<(String, String)> = vec![
        ("PII_VAULT_DATABASE_URL".into(), db),
        ("PII_VAULT_LISTEN".into(), "127.0.0.1:0".into()),
        (
            "PII_VAULT_POLICY_DIR".into(),
            std::path::absolute(&opts.policy_dir)?.display().to_string(),
        ),
        ("PII_VAULT_MASTER_KEY".into(), key),
        // The tamper-evidence files belong to this run's database: beside a
        // PostgreSQL database they would default to ./data, where the next
        // run's fresh database would not match them (and lock the vault).
        (
            "PII_VAULT_TOMBSTONE_FILE".into(),
            dir.path().join("vault.tombstones").display().to_string(),
        ),
        (
            "PII_VAULT_AUDIT_WITNESS_FILE".into(),
            dir.path().join("vault.witness").display().to_string(),
        ),
        ("RUST_LOG".into(), "warn".into()),
        // The benchmark measures what the server can do, not the per-client
        // rate limit (which would answer most requests with a cheap 429).
        ("PII_VAULT_RATE_LIMIT_PER_SEC".into(), "0".into()),
    ];
    let child = Command::new(exe()?)
        .arg("serve")
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start pii-vault serve")?;
    let (spawned, addr) = listening(child, env, dir, Duration::from_secs(120))?;
    Ok((spawned, format!("http://{addr}"), backend.to_owned()))
}

/// Starts the baseline server (`pii-vault bench-baseline`) holding
/// `customers` customers in a fresh SQLite file; returns it and its URL.
fn start_baseline(customers: usize) -> anyhow::Result<(Spawned, String)> {
    let dir = tempfile::tempdir()?;
    let child = Command::new(exe()?)
        .arg("bench-baseline")
        .arg("--database")
        .arg(dir.path().join("baseline.db"))
        .arg("--customers")
        .arg(customers.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start pii-vault bench-baseline")?;
    // Seeding a million plain rows takes a while before it listens.
    let (spawned, addr) = listening(child, Vec::new(), dir, Duration::from_secs(600))?;
    Ok((spawned, format!("http://{addr}")))
}

/// Waits until `child` says on stderr where it listens (or exits first).
fn listening(
    mut child: Child,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    wait: Duration,
) -> anyhow::Result<(Spawned, String)> {
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut last = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(Ok(addr.trim().to_owned()));
                    sent = true;
                } else {
                    last.push(line);
                }
            }
        }
        if !sent {
            // The server exited before listening: pass on what it said.
            let _ = tx.send(Err(last.join("\n")));
        }
    });
    let spawned = Spawned {
        child,
        env,
        _dir: Some(dir),
    };
    let addr = rx
        .recv_timeout(wait)
        .map_err(|_| anyhow!("the server did not start within {wait:?}"))?
        .map_err(|said| anyhow!("the server did not start:\n{said}"))?;
    Ok((spawned, addr))
}

async fn token(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
) -> anyhow::Result<String> {
    let resp: Value = http
        .post(format!("{base}/v1/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    resp["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no access_token"))
}

async fn connect(opts: &Options, http: &reqwest::Client) -> anyhow::Result<Target> {
    let roles = ["helpdesk", "dpo", "admin"];
    if let Some(base) = &opts.target {
        let mut credentials = BTreeMap::new();
        for c in &opts.credentials {
            let (role, rest) = c
                .split_once('=')
                .ok_or_else(|| anyhow!("--credentials takes role=client_id:secret"))?;
            let (id, secret) = rest
                .split_once(':')
                .ok_or_else(|| anyhow!("--credentials takes role=client_id:secret"))?;
            // Refuse wrong credentials now, not after seeding.
            token(http, base, id, secret).await?;
            credentials.insert(role.to_owned(), (id.to_owned(), secret.to_owned()));
        }
        if !credentials.contains_key("helpdesk") {
            bail!("a targeted vault needs --credentials helpdesk=ID:SECRET");
        }
        return Ok(Target {
            base: base.trim_end_matches('/').to_owned(),
            pid: opts.server_pid,
            credentials,
            backend: "target".into(),
            _spawned: None,
        });
    }
    let (spawned, base, backend) = start_server(opts)?;
    let mut credentials = BTreeMap::new();
    for role in roles {
        let name = format!("bench-{role}");
        let creds = cli(
            &spawned.env,
            &["clients", "add", "--name", &name, "--role", role, "--json"],
        )?;
        let id = creds["client_id"].as_str().unwrap_or_default();
        let secret = creds["client_secret"].as_str().unwrap_or_default();
        credentials.insert(role.to_owned(), (id.to_owned(), secret.to_owned()));
    }
    Ok(Target {
        base,
        pid: Some(spawned.child.id()),
        credentials,
        backend,
        _spawned: Some(spawned),
    })
}

/// The 5 fields every benchmark customer has (the vault's and the baseline's).
pub const FIELDS: [&str; 5] = ["email", "phone", "name", "address", "support_note"];

/// Customer `i`'s values of [`FIELDS`], in that order.
pub fn customer_values(i: u64) -> [(&'static str, String); 5] {
    [
        ("email", format!("bench-{i}@example.com")),
        ("phone", format!("+4179{:07}", i % 10_000_000)),
        ("name", format!("Customer {i}")),
        ("address", format!("{i} Bench Street, Zurich")),
        ("support_note", "prefers email".to_owned()),
    ]
}

/// The id of customer `i` in the baseline server.
pub fn baseline_id(i: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x0190_0000_0000_7000, 0x8000_0000_0000_0000 | i)
}

fn customer_body(i: u64) -> Value {
    let purposes = |field: &str| match field {
        "email" | "address" => json!(["support", "billing"]),
        "phone" => json!(["support", "support.callback"]),
        _ => json!(["support"]),
    };
    let fields: serde_json::Map<String, Value> = customer_values(i)
        .into_iter()
        .map(|(field, value)| {
            (
                field.to_owned(),
                json!({"value": value, "purposes": purposes(field)}),
            )
        })
        .collect();
    json!({
        "external_id": format!("bench-{i}"),
        "channel": "web",
        "notice_version": "2026-01",
        "fields": fields,
        "consents": [{"purpose": "marketing.email", "notice_version": "2026-01",
                      "notice_text_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                      "language": "en", "jurisdiction": "EU"}]
    })
}

/// xorshift64*: cheap, deterministic per worker.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn rss_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time the process has used (user + system, all threads), in
/// microseconds. `/proc` counts it in USER_HZ ticks, 100 per second on Linux.
fn cpu_us(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let mut f = after.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// Samples the server's RSS while a scenario runs; returns the peak in MB.
fn sample_rss(
    pid: Option<u32>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Option<f64>> {
    std::thread::spawn(move || {
        let pid = pid?;
        let mut peak = 0u64;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_kb(pid, "VmRSS:").unwrap_or(0));
            std::thread::sleep(Duration::from_millis(50));
        }
        peak = peak.max(rss_kb(pid, "VmRSS:").unwrap_or(0));
        Some(peak as f64 / 1024.0)
    })
}

#[derive(Clone, Copy)]
enum Op {
    /// The baseline server's plain read.
    Baseline,
    Read,
    ReadField,
    Create,
    Search,
    Update,
    Erase,
    Export,
}

struct Shared {
    base: String,
    http: reqwest::Client,
    /// Role to its current token (renewed before each scenario).
    tokens: std::sync::RwLock<BTreeMap<String, String>>,
    ids: Vec<String>,
    seeded: u64,
    next_new: AtomicU64,
    next_erase: AtomicU64,
}

impl Shared {
    /// The current token of `role` (the helpdesk's when there is none).
    fn token(&self, role: &str) -> String {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(role)
            .or_else(|| tokens.get("helpdesk"))
            .cloned()
            .unwrap_or_default()
    }
}

async fn one(s: &Shared, op: Op, rng: &mut Rng) -> Result<(), String> {
    let base = &s.base;
    let mut pick = || {
        let i = rng.below(s.ids.len());
        (i, &s.ids[i])
    };
    let req = match op {
        Op::Baseline => {
            let (_, id) = pick();
            s.http.get(format!("{base}/v1/customers/{id}"))
        }
        Op::Read => {
            let (_, id) = pick();
            s.http
                .get(format!("{base}/v1/customers/{id}?purpose=support"))
                .bearer_auth(s.token("helpdesk"))
        }
        Op::ReadField => {
            let (_, id) = pick();
            s.http
                .get(format!(
                    "{base}/v1/customers/{id}/fields/phone?purpose=support.callback"
                ))
                .bearer_auth(s.token("helpdesk"))
        }
        Op::Search => {
            let (i, _) = pick();
            s.http
                .post(format!("{base}/v1/customers/search?purpose=support"))
                .bearer_auth(s.token("helpdesk"))
                .json(&json!({"field": "email", "value": format!("bench-{i}@example.com")}))
        }
        Op::Create => {
            let i = s.seeded + s.next_new.fetch_add(1, Ordering::Relaxed) + 1_000_000_000;
            s.http
                .post(format!("{base}/v1/customers?purpose=support"))
                .bearer_auth(s.token("helpdesk"))
                .json(&customer_body(i))
        }
        Op::Update => {
            let (_, id) = pick();
            s.http
                .patch(format!("{base}/v1/customers/{id}?purpose=support"))
                .bearer_auth(s.token("helpdesk"))
                .json(&json!({"fields": {"support_note": {"value": format!("note {}", rng.next() % 1000)}}}))
        }
        Op::Export => {
            // The first seeded customer, given 1,000 audit events beforehand.
            s.http
                .get(format!(
                    "{base}/v1/customers/{}/export?kind=access",
                    s.ids[0]
                ))
                .bearer_auth(s.token("dpo"))
        }
        Op::Erase => {
            let n = s.next_erase.fetch_add(1, Ordering::Relaxed) as usize;
            let Some(id) = s.ids.get(s.ids.len().saturating_sub(1 + n)) else {
                return Err("exhausted".into());
            };
            s.http
                .delete(format!("{base}/v1/customers/{id}"))
                .bearer_auth(s.token("dpo"))
        }
    };
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            let _ = r.bytes().await;
            Ok(())
        }
        Ok(r) => Err(r.status().as_u16().to_string()),
        Err(e) if e.is_timeout() => Err("timeout".into()),
        Err(_) => Err("connection".into()),
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

async fn run_load(
    shared: Arc<Shared>,
    name: &str,
    connections: usize,
    duration: Duration,
    pid: Option<u32>,
    choose: fn(&mut Rng) -> Op,
) -> ScenarioResult {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let cpu_before = pid.and_then(cpu_us);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for w in 0..connections {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
            let mut lat = Vec::with_capacity(4096);
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while Instant::now() < deadline {
                let op = choose(&mut rng);
                let t = Instant::now();
                match one(&shared, op, &mut rng).await {
                    Ok(()) => lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    Err(e) if e == "exhausted" => break,
                    Err(e) => *errors.entry(e).or_default() += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let rss = sampler.join().ok().flatten();
    let cpu = pid
        .and_then(cpu_us)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    lat.sort_unstable();
    let ok = lat.len() as u64;
    ScenarioResult {
        scenario: name.to_owned(),
        requests: ok + errors.values().sum::<u64>(),
        seconds,
        requests_per_sec: ok as f64 / seconds.max(1e-9),
        p50_ms: percentile(&lat, 0.50),
        p95_ms: percentile(&lat, 0.95),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0),
        errors,
        server_peak_rss_mb: rss,
        server_cpu_us_per_req: cpu.filter(|_| ok > 0).map(|us| us as f64 / ok as f64),
        items_per_sec: None,
        ratio_to_baseline: None,
        note: None,
    }
}

/// Rotates the KEK through the API and times the background rewrap of every
/// data key (polling `GET /v1/keys` until no data key is left on an older version).
async fn rewrap(s: &Shared, admin: Option<&String>, pid: Option<u32>) -> ScenarioResult {
    let mut r = ScenarioResult::empty("rewrap");
    let Some(admin) = admin else {
        r.note = Some("needs admin credentials".into());
        return r;
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let started = Instant::now();
    let rotated = s
        .http
        .post(format!("{}/v1/keys/rotate", s.base))
        .bearer_auth(admin)
        .json(&json!({}))
        .send()
        .await;
    match rotated {
        Ok(resp) if resp.status().is_success() => {}
        Ok(resp) => {
            r.errors.insert(resp.status().as_u16().to_string(), 1);
            stop.store(true, Ordering::Relaxed);
            return r;
        }
        Err(_) => {
            r.errors.insert("connection".into(), 1);
            stop.store(true, Ordering::Relaxed);
            return r;
        }
    }
    let mut total: Option<i64> = None;
    let deadline = started + Duration::from_secs(600);
    loop {
        let status: Value = match s
            .http
            .get(format!("{}/v1/keys", s.base))
            .bearer_auth(admin)
            .send()
            .await
        {
            Ok(resp) => resp.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        let pending = status["rewrap"]["pending"].as_i64().unwrap_or(-1);
        if total.is_none() && pending > 0 {
            total = Some(pending);
        }
        if status["rewrap"]["complete"].as_bool() == Some(true) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.seconds = started.elapsed().as_secs_f64();
    let keys = total.unwrap_or(s.ids.len() as i64).max(0) as f64;
    r.requests = keys as u64;
    r.items_per_sec = Some(keys / r.seconds.max(1e-9));
    r.note = Some(format!(
        "{keys:.0} data keys rewrapped after one rotation (keys/s)"
    ));
    stop.store(true, Ordering::Relaxed);
    r.server_peak_rss_mb = sampler.join().ok().flatten();
    r
}

/// Reads the first seeded customer `n` times so its access log is long.
async fn give_audit_events(s: &Shared, n: usize) {
    let mut done = 0;
    while done < n {
        let batch = (n - done).min(32);
        let reads = (0..batch).map(|_| {
            s.http
                .get(format!(
                    "{}/v1/customers/{}?purpose=support",
                    s.base, s.ids[0]
                ))
                .bearer_auth(s.token("helpdesk"))
                .send()
        });
        for r in futures_util::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
        {
            let _ = r.bytes().await;
        }
        done += batch;
    }
}

/// What the seeding tasks share.
struct Seeder {
    http: reqwest::Client,
    base: String,
    /// The helpdesk's `(client_id, secret)`.
    credentials: (String, String),
    /// The helpdesk's token: the first task that meets a 401 renews it.
    helpdesk: tokio::sync::RwLock<String>,
    /// Customers to create.
    n: u64,
    /// The number of the next customer to create.
    next: AtomicU64,
    /// Customers created.
    done: AtomicU64,
}

/// Customers per `POST /v1/customers/batch` while seeding.
const SEED_BATCH: u64 = 250;
/// Batches in flight at once while seeding.
const SEED_CONCURRENCY: usize = 4;

impl Seeder {
    /// One creator: takes the next [`SEED_BATCH`] customer numbers until
    /// `n` are taken. Returns `(number, id)` of the customers it created.
    async fn work(self: Arc<Self>) -> anyhow::Result<Vec<(u64, String)>> {
        let mut ids = Vec::new();
        loop {
            let first = self.next.fetch_add(SEED_BATCH, Ordering::Relaxed);
            if first >= self.n {
                break;
            }
            let numbers = first..(first + SEED_BATCH).min(self.n);
            let created = self.create(numbers.clone()).await?;
            self.done.fetch_add(created.len() as u64, Ordering::Relaxed);
            ids.extend(numbers.zip(created));
        }
        Ok(ids)
    }

    /// Creates customers `numbers` in one batch, renewing the token once
    /// when it has expired. Returns their ids in order; any customer the
    /// vault refused fails the seeding.
    async fn create(&self, numbers: std::ops::Range<u64>) -> anyhow::Result<Vec<String>> {
        let body: Vec<Value> = numbers.clone().map(customer_body).collect();
        for _attempt in 0..2 {
            let bearer = self.helpdesk.read().await.clone();
            let r = self
                .http
                .post(format!("{}/v1/customers/batch?purpose=support", self.base))
                .bearer_auth(&bearer)
                .json(&body)
                .send()
                .await;
            if matches!(&r, Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED) {
                // The token expired: one task renews it, then retry.
                let mut t = self.helpdesk.write().await;
                if *t == bearer {
                    let (id, secret) = &self.credentials;
                    *t = token(&self.http, &self.base, id, secret).await?;
                }
                continue;
            }
            return match r {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.unwrap_or_default();
                    let results = v["results"].as_array().cloned().unwrap_or_default();
                    if results.len() != body.len() {
                        bail!(
                            "seeding failed: {} results for {} customers",
                            results.len(),
                            body.len()
                        );
                    }
                    results
                        .iter()
                        .zip(numbers)
                        .map(|(r, i)| match r["id"].as_str() {
                            Some(id) => Ok(id.to_owned()),
                            None => Err(anyhow!(
                                "seeding failed: customer {i}: HTTP {} {}",
                                r["status"],
                                r["problem"]["code"]
                            )),
                        })
                        .collect()
                }
                Ok(r) => Err(anyhow!("seeding failed: HTTP {}", r.status())),
                Err(e) => Err(anyhow!("seeding failed: {e}")),
            };
        }
        Err(anyhow!("seeding failed: HTTP 401 after a fresh token"))
    }

    /// Prints the progress every second until every customer is created.
    async fn progress(self: Arc<Self>, started: Instant) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let d = self.done.load(Ordering::Relaxed);
            let rate = d as f64 / started.elapsed().as_secs_f64();
            eprint!("\rseeding customers: {d}/{} ({rate:.0}/s)   ", self.n);
            if d >= self.n {
                break;
            }
        }
    }
}

/// Seeds `n` customers through `POST /v1/customers/batch` (the same
/// checks, encryption and audit as single creates) with up to
/// [`SEED_CONCURRENCY`] batches in flight, printing progress on stderr.
/// Returns their ids in creation order and the customers created per second.
async fn seed(
    target: &Target,
    http: &reqwest::Client,
    n: usize,
    c: usize,
) -> anyhow::Result<(Vec<String>, f64)> {
    let (id, secret) = target
        .credentials
        .get("helpdesk")
        .cloned()
        .ok_or_else(|| anyhow!("no helpdesk credentials"))?;
    let helpdesk = token(http, &target.base, &id, &secret).await?;
    let seeder = Arc::new(Seeder {
        http: http.clone(),
        base: target.base.clone(),
        credentials: (id, secret),
        helpdesk: tokio::sync::RwLock::new(helpdesk),
        n: n as u64,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..c.clamp(1, SEED_CONCURRENCY))
        .map(|_| tokio::spawn(seeder.clone().work()))
        .collect();
    let progress = tokio::spawn(seeder.clone().progress(started));
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    progress.abort();
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("\rseeded {n} customers ({rate:.0}/s)                 ");
    all.sort_by_key(|(i, _)| *i);
    Ok((all.into_iter().map(|(_, id)| id).collect(), rate))
}

/// Connects to (or starts) the vault, seeds it, runs each scenario in turn
/// with fresh tokens and returns the report.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    for s in &opts.scenarios {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!("unknown scenario {s:?} (known: {})", SCENARIOS.join(", "));
        }
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.connections.max(1) * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let target = connect(&opts, &http).await?;
    let (ids, seed_rate) = seed(&target, &http, opts.customers, opts.connections).await?;
    if ids.is_empty() {
        bail!("no customers were seeded");
    }
    let shared = Arc::new(Shared {
        base: target.base.clone(),
        http: http.clone(),
        tokens: std::sync::RwLock::new(BTreeMap::new()),
        ids,
        seeded: opts.customers as u64,
        next_new: AtomicU64::new(0),
        next_erase: AtomicU64::new(0),
    });
    let mut results = Vec::new();
    for name in &opts.scenarios {
        if name == "baseline" {
            eprintln!(
                "running baseline (a plain SQLite read of {} customers) for {:?} with {} connections…",
                shared.ids.len(),
                opts.duration,
                opts.connections
            );
            results.push(baseline(&shared, &opts).await?);
            continue;
        }
        let fresh = target.tokens(&http).await?;
        let admin = fresh.get("admin").cloned();
        *shared.tokens.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        eprintln!(
            "running {name} for {:?} with {} connections…",
            opts.duration, opts.connections
        );
        results.push(scenario(name, &shared, &opts, target.pid, admin.as_ref()).await);
    }
    with_ratios(&mut results);
    Ok(Report {
        backend: target.backend.clone(),
        customers: opts.customers,
        connections: opts.connections,
        duration_secs: opts.duration.as_secs_f64(),
        machine: machine(),
        seed_per_sec: seed_rate,
        results,
    })
}

/// The scenarios compared with the baseline (`ratio_to_baseline`).
pub const COMPARED: &[&str] = &["read", "read-field", "search"];

/// Sets `ratio_to_baseline` of the [`COMPARED`] scenarios when the run
/// has a baseline that served requests.
pub fn with_ratios(results: &mut [ScenarioResult]) {
    let Some(base) = results
        .iter()
        .find(|r| r.scenario == "baseline")
        .map(|r| r.requests_per_sec)
        .filter(|rate| *rate > 0.0)
    else {
        return;
    };
    for r in results.iter_mut() {
        if COMPARED.contains(&r.scenario.as_str()) {
            r.ratio_to_baseline = Some(r.requests_per_sec / base);
        }
    }
}

/// The `baseline` scenario: the same reads against a plain axum + sqlx
/// SQLite server holding the same number of customers (`pii-vault
/// bench-baseline`), started for this scenario only.
async fn baseline(s: &Shared, opts: &Options) -> anyhow::Result<ScenarioResult> {
    let n = s.ids.len();
    let (server, base) = tokio::task::spawn_blocking(move || start_baseline(n)).await??;
    let shared = Arc::new(Shared {
        base,
        http: s.http.clone(),
        tokens: std::sync::RwLock::new(BTreeMap::new()),
        ids: (0..n as u64).map(|i| baseline_id(i).to_string()).collect(),
        seeded: 0,
        next_new: AtomicU64::new(0),
        next_erase: AtomicU64::new(0),
    });
    let mut r = run_load(
        shared,
        "baseline",
        opts.connections,
        opts.duration,
        Some(server.child.id()),
        |_| Op::Baseline,
    )
    .await;
    r.note = Some("plain axum + sqlx SQLite read by id: no auth, crypto or audit".into());
    drop(server);
    Ok(r)
}

/// Runs the scenario `name` (one of [`SCENARIOS`]) once.
async fn scenario(
    name: &str,
    shared: &Arc<Shared>,
    opts: &Options,
    pid: Option<u32>,
    admin: Option<&String>,
) -> ScenarioResult {
    // The concurrent scenarios differ only in the operation they repeat.
    let load = |choose: fn(&mut Rng) -> Op| {
        run_load(
            shared.clone(),
            name,
            opts.connections,
            opts.duration,
            pid,
            choose,
        )
    };
    match name {
        "read" => load(|_| Op::Read).await,
        "read-field" => load(|_| Op::ReadField).await,
        "create" => load(|_| Op::Create).await,
        "search" => load(|_| Op::Search).await,
        "mixed" => {
            load(|rng| match rng.below(100) {
                0..80 => Op::Read,
                80..95 => Op::Update,
                _ => Op::Create,
            })
            .await
        }
        "export" => {
            give_audit_events(shared, 1_000).await;
            let mut r = run_load(shared.clone(), name, 1, opts.duration, pid, |_| Op::Export).await;
            r.note =
                Some("sequential exports (latency) of a customer with 1,000+ audit events".into());
            r
        }
        "rewrap" => rewrap(shared, admin, pid).await,
        "erase" => {
            // Erasure latency, one at a time, on the most recently seeded customers.
            let mut r = run_load(shared.clone(), name, 1, opts.duration, pid, |_| Op::Erase).await;
            r.note = Some("sequential erasures (latency), newest seeded customers".into());
            r
        }
        other => ScenarioResult::empty(other),
    }
}

/// The report as a table.
pub fn table(r: &Report) -> String {
    let mut out = format!(
        "pii-vault bench — backend {}, {} customers, {} connections, {:.0} s per scenario\n\
         machine: {} cores, {}\nseeding: {:.0} customers/s\n\n",
        r.backend,
        r.customers,
        r.connections,
        r.duration_secs,
        r.machine.cores,
        r.machine.cpu,
        r.seed_per_sec
    );
    out.push_str(&format!(
        "{:<11} {:>9} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11}  {}\n",
        "scenario",
        "requests",
        "req/s",
        "× base",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "RSS MB",
        "CPU µs/req",
        "errors"
    ));
    for s in &r.results {
        let errors = if s.errors.is_empty() {
            "-".to_owned()
        } else {
            s.errors
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let rss = s
            .server_peak_rss_mb
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "-".into());
        let cpu = s
            .server_cpu_us_per_req
            .map(|c| format!("{c:.0}"))
            .unwrap_or_else(|| "-".into());
        let rate = match s.items_per_sec {
            Some(i) => format!("{i:.0}/s*"),
            None => format!("{:.0}", s.requests_per_sec),
        };
        let ratio = s
            .ratio_to_baseline
            .map(|r| format!("{r:.2}"))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<11} {:>9} {:>10} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>11}  {}{}\n",
            s.scenario,
            s.requests,
            rate,
            ratio,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.max_ms,
            rss,
            cpu,
            errors,
            s.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(scenario: &str, rate: f64) -> ScenarioResult {
        let mut r = ScenarioResult::empty(scenario);
        r.requests_per_sec = rate;
        r.requests = rate as u64;
        r
    }

    fn report(results: Vec<ScenarioResult>) -> Report {
        Report {
            backend: "sqlite".into(),
            customers: 10,
            connections: 2,
            duration_secs: 1.0,
            machine: machine(),
            seed_per_sec: 1.0,
            results,
        }
    }

    #[test]
    fn reads_and_search_are_compared_with_the_baseline_of_the_same_run() {
        let mut results = vec![
            result("baseline", 8_000.0),
            result("read", 4_000.0),
            result("read-field", 2_000.0),
            result("create", 1_000.0),
            result("search", 6_000.0),
        ];
        with_ratios(&mut results);
        let ratio = |name: &str| {
            results
                .iter()
                .find(|r| r.scenario == name)
                .and_then(|r| r.ratio_to_baseline)
        };
        assert_eq!(ratio("read"), Some(0.5));
        assert_eq!(ratio("read-field"), Some(0.25));
        assert_eq!(ratio("search"), Some(0.75));
        assert_eq!(ratio("create"), None);
        assert_eq!(ratio("baseline"), None);

        let json = serde_json::to_value(report(results.clone())).unwrap();
        assert_eq!(json["results"][0]["scenario"], "baseline");
        assert_eq!(json["results"][1]["ratio_to_baseline"], 0.5);
        assert!(json["results"][3].get("ratio_to_baseline").is_none());

        let table = table(&report(results));
        assert!(table.contains("× base"), "{table}");
        let read = table.lines().find(|l| l.starts_with("read ")).unwrap();
        assert!(read.contains(" 0.50 "), "{read}");
    }

    #[test]
    fn without_a_baseline_nothing_is_compared() {
        let mut results = vec![result("read", 4_000.0)];
        with_ratios(&mut results);
        assert_eq!(results[0].ratio_to_baseline, None);
        let mut idle = vec![result("baseline", 0.0), result("read", 4_000.0)];
        with_ratios(&mut idle);
        assert_eq!(idle[1].ratio_to_baseline, None);
    }

    #[test]
    fn the_baseline_holds_the_vaults_customers_under_distinct_ids() {
        assert_ne!(baseline_id(0), baseline_id(1));
        assert_eq!(
            customer_values(7)[0],
            ("email", "bench-7@example.com".to_owned())
        );
        let body = customer_body(7);
        for (field, value) in customer_values(7) {
            assert_eq!(body["fields"][field]["value"], value.as_str());
        }
    }
}
