//! The command line: help, policy check, production key rule, configuration
//! errors, and the user commands run beside an in-process vault.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestVault, backends, fresh_pg_database, on_each_backend, vault_cmd};

fn pv(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pii-vault"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn policies() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["policy", "check", "--help"],
        vec!["clients", "add", "--help"],
        vec!["clients", "disable", "--help"],
        vec!["clients", "list", "--help"],
        vec!["clients", "rotate-secret", "--help"],
        vec!["users", "list", "--help"],
        vec!["backup", "--help"],
        vec!["users", "add", "--help"],
        vec!["users", "disable", "--help"],
        vec!["users", "set-password", "--help"],
        vec!["bench", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "rewrap", "--help"],
        vec!["keys", "retire", "--help"],
        vec!["keys", "rotate-root", "--help"],
        vec!["keys", "rotate-signing", "--help"],
        vec!["keys", "status", "--help"],
        vec!["audit", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "export", "--help"],
        vec!["audit", "public-key", "--help"],
        vec!["import", "--help"],
        vec!["sweep", "--help"],
    ] {
        let out = pv(dir.path()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn policy_check_accepts_the_default_and_names_file_entry_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = pv(dir.path())
        .args(["policy", "check"])
        .arg(policies())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let mut text = std::fs::read_to_string(policies().join("default.toml")).unwrap();
    // The phone field names a purpose the policy does not declare.
    assert!(text.contains("\"support.callback\", \"marketing.sms\"]"));
    text = text.replacen(
        "\"support.callback\", \"marketing.sms\"]",
        "\"support.callback\", \"marketing.fax\"]",
        1,
    );
    std::fs::write(bad.join("default.toml"), text).unwrap();
    let out = pv(dir.path())
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("default.toml"), "{err}");
    assert!(err.contains("marketing.fax"), "{err}");
    assert!(err.contains("fields.phone"), "{err}");
}

#[test]
fn policy_check_warns_on_a_health_category_without_the_special_category_flag() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped policy flags its health field: no warning.
    let out = pv(dir.path())
        .args(["policy", "check"])
        .arg(policies())
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("warning"), "{err}");

    let unflagged = dir.path().join("unflagged");
    std::fs::create_dir(&unflagged).unwrap();
    let text = std::fs::read_to_string(policies().join("default.toml")).unwrap();
    let flag = "category = \"user.health\"\npurposes = [\"support\"]\nsensitive = true\nspecial_category = true\n";
    assert!(text.contains(flag));
    let text = text.replacen(
        flag,
        "category = \"user.health\"\npurposes = [\"support\"]\nsensitive = true\n",
        1,
    );
    std::fs::write(unflagged.join("default.toml"), text).unwrap();
    let out = pv(dir.path())
        .args(["policy", "check"])
        .arg(&unflagged)
        .output()
        .unwrap();
    // A warning, not an error: the policy is still valid.
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    let w = warnings[0];
    assert!(w.contains("default.toml"), "{w}");
    assert!(w.contains("fields.accessibility_needs"), "{w}");
    assert!(w.contains("user.health"), "{w}");
    assert!(w.contains("special_category = true"), "{w}");
}

/// The benchmark's vault keeps everything of its run in the run's own
/// temporary directory, also on PostgreSQL: nothing is left in the working
/// directory, and a second run on a fresh database is not locked out by the
/// first run's tombstone log (an erasure writes one).
#[tokio::test]
async fn bench_runs_leave_nothing_behind_and_a_second_run_on_a_fresh_database_works() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        for run in 0..2 {
            let mut c = pv(dir.path());
            c.args([
                "bench",
                "--customers",
                "100",
                "--connections",
                "2",
                "--duration",
                "1",
                "--scenarios",
                "read,erase",
                "--json",
                "--policy-dir",
            ])
            .arg(policies());
            if backend == Backend::Postgres {
                c.args(["--database-url", &fresh_pg_database().await]);
            }
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{backend:?} run {run}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            for r in report["results"].as_array().unwrap() {
                assert!(
                    r["requests"].as_u64().unwrap() > 0,
                    "{backend:?} run {run}: {r}"
                );
                assert_eq!(r["errors"], json!({}), "{backend:?} run {run}: {r}");
            }
            let left: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(left.is_empty(), "{backend:?} run {run} left {left:?}");
        }
    }
}

/// The benchmark's JSON report carries the `baseline` scenario (a plain
/// SQLite read of the same customers) and each read's ratio to it. What
/// is checked is the report's shape, never a figure.
#[test]
fn bench_reports_the_baseline_and_the_ratio_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = pv(dir.path())
        .args([
            "bench",
            "--customers",
            "20",
            "--connections",
            "2",
            "--duration",
            "1",
            "--scenarios",
            "baseline,read,read-field,search,create",
            "--json",
            "--policy-dir",
        ])
        .arg(policies())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["baseline", "read", "read-field", "search", "create"]
    );
    let baseline = &results[0];
    assert!(baseline["requests"].as_u64().unwrap() > 0, "{baseline}");
    assert!(
        baseline["errors"].as_object().unwrap().is_empty(),
        "{baseline}"
    );
    assert!(baseline["server_cpu_us_per_req"].is_number(), "{baseline}");
    assert!(baseline.get("ratio_to_baseline").is_none(), "{baseline}");
    let base_rate = baseline["requests_per_sec"].as_f64().unwrap();
    for r in &results[1..4] {
        let ratio = r["ratio_to_baseline"].as_f64();
        let rate = r["requests_per_sec"].as_f64().unwrap();
        assert_eq!(ratio, Some(rate / base_rate), "{r}");
    }
    assert!(results[4].get("ratio_to_baseline").is_none());
}

#[test]
fn production_refuses_to_start_without_an_explicit_root_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = pv(dir.path())
        .args(["serve", "--production"])
        .env("PII_VAULT_POLICY_DIR", policies())
        .env("PII_VAULT_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--production needs an explicitly configured root key")
    );
    assert!(
        !dir.path().join("data/root.key").exists(),
        "no development key was created"
    );
}

#[test]
fn unknown_keys_in_the_file_are_rejected_and_unknown_variables_only_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    // A stray variable (a typo, or one a CI script exports): a warning
    // naming it, never its value; the command runs.
    let out = pv(dir.path())
        .args(["migrate"])
        .env("PII_VAULT_POLICY_DIR", policies())
        .env("PII_VAULT_LISTEN_ADRESS", "value-not-shown")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("PII_VAULT_LISTEN_ADRESS"), "{stderr}");
    assert!(!stderr.contains("value-not-shown"), "{stderr}");
    // The same typo in the settings file stops the command, named.
    let file = dir.path().join("pii-vault.toml");
    std::fs::write(&file, "listen_adress = \"x\"\n").unwrap();
    let out = pv(dir.path())
        .args(["migrate"])
        .env("PII_VAULT_POLICY_DIR", policies())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_adress"));
}

#[test]
fn version_names_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = pv(dir.path()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let commit = text
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.starts_with(concat!("pii-vault ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        // Built from this checkout: its commit (or a later one of it, when
        // the binary predates a commit made since).
        Some(_) => assert!(
            commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{text}"
        ),
        None => assert_eq!(commit, "unknown", "{text}"),
    }
}

#[tokio::test]
async fn import_warns_like_serve_when_it_creates_a_development_key() {
    let source = TestVault::start(crate::helpers::Backend::Sqlite).await;
    let helpdesk = source.token("helpdesk").await;
    let dpo = source.token("dpo").await;
    let id = source.create(&helpdesk, &crate::helpers::ada()).await;
    let (s, package) = source
        .get(&dpo, &format!("/v1/customers/{id}/export?kind=portability"))
        .await;
    assert_eq!(s, StatusCode::OK);
    // A fresh directory with no key configured: import creates one.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ada-export.json");
    std::fs::write(&file, serde_json::to_vec(&package).unwrap()).unwrap();
    let mut c = pv(dir.path());
    c.args(["import", file.to_str().unwrap()])
        .env("PII_VAULT_POLICY_DIR", policies());
    let out = crate::helpers::output(c).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(dir.path().join("data/root.key").exists());
    assert!(
        stderr.contains("created a DEVELOPMENT root key"),
        "{stderr}"
    );
}

/// `pii-vault clients ARGS` against `v`'s database.
async fn clients(v: &TestVault, args: &[&str]) -> std::process::Output {
    let mut c = vault_cmd(v.dir.path(), &v.database_url, "warn");
    c.arg("clients").args(args);
    crate::helpers::output(c).await
}

/// Exchanges client credentials for a token: the status and the body.
async fn client_credentials(v: &TestVault, id: &str, secret: &str) -> (StatusCode, Value) {
    let r = v
        .http
        .post(v.url("/v1/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .send()
        .await
        .unwrap();
    crate::helpers::split(r).await
}

#[tokio::test]
async fn clients_list_rotate_secret_and_disable_by_name() {
    on_each_backend(|v| async move {
        let (id, old_secret) = v.client("helpdesk").await;
        let name = format!("helpdesk-{id}");
        let (s, b) = client_credentials(&v, &id, &old_secret).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let old_token = b["access_token"].as_str().unwrap().to_owned();
        assert_eq!(v.get(&old_token, "/v1/policy").await.0, StatusCode::OK);

        // Listed by name with id and role; never a secret.
        let listed = assert_ok(&clients(&v, &["list", "--json"]).await);
        let rows: Value = serde_json::from_str(&listed).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{listed}"));
        assert_eq!(row["name"], name.as_str());
        assert_eq!(row["role"], "helpdesk");
        assert_eq!(row["disabled"], false);
        assert!(!listed.contains(&old_secret));
        let table = assert_ok(&clients(&v, &["list"]).await);
        assert!(
            table.contains(&name) && table.contains("enabled"),
            "{table}"
        );

        // A new secret, printed once; the old one and its tokens stop working.
        let rotated = assert_ok(&clients(&v, &["rotate-secret", &name, "--json"]).await);
        let creds: Value = serde_json::from_str(&rotated).unwrap();
        assert_eq!(creds["client_id"], id.as_str());
        let new_secret = creds["client_secret"].as_str().unwrap().to_owned();
        assert_ne!(new_secret, old_secret);
        assert!(
            refused_within_a_second_and_a_half(&v, &old_token).await,
            "a token issued with the old secret still works"
        );
        let (s, _) = client_credentials(&v, &id, &old_secret).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "the old secret still works");
        let (s, b) = client_credentials(&v, &id, &new_secret).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let new_token = b["access_token"].as_str().unwrap().to_owned();
        assert_eq!(v.get(&new_token, "/v1/policy").await.0, StatusCode::OK);

        // Disabled by name: its tokens stop working, the list says so.
        let out = assert_ok(&clients(&v, &["disable", &name]).await);
        assert!(out.contains(&id), "{out}");
        assert!(refused_within_a_second_and_a_half(&v, &new_token).await);
        let rows: Value =
            serde_json::from_str(&assert_ok(&clients(&v, &["list", "--json"]).await)).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .cloned();
        assert_eq!(row.unwrap()["disabled"], true);

        let out = clients(&v, &["disable", "nobody"]).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no client with id or name \"nobody\"")
        );
        let out = clients(
            &v,
            &["rotate-secret", "00000000-0000-0000-0000-000000000000"],
        )
        .await;
        assert_eq!(out.status.code(), Some(1));

        let audit = v.audit().await;
        let rotations = events(&audit, "client.rotate_secret");
        assert_eq!(rotations.len(), 1);
        assert_eq!(rotations[0]["reasons"]["client_id"], id.as_str());
        let all = serde_json::to_string(&audit).unwrap();
        assert!(!all.contains(&new_secret) && !all.contains(&old_secret));
    })
    .await;
}

#[tokio::test]
async fn users_list_shows_each_user_and_never_a_password() {
    on_each_backend(|v| async move {
        let password = "correct horse battery";
        assert_ok(
            &users(
                &v,
                &["users", "add", "--username", "fay", "--role", "auditor"],
                &format!("{password}\n"),
            )
            .await,
        );
        let out = assert_ok(&users(&v, &["users", "list", "--json"], "").await);
        let rows: Value = serde_json::from_str(&out).unwrap();
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{out}");
        assert_eq!(rows[0]["name"], "fay");
        assert_eq!(rows[0]["role"], "auditor");
        assert_eq!(rows[0]["disabled"], false);
        assert!(!out.contains("argon2") && !out.contains(password));
        let table = assert_ok(&users(&v, &["users", "list"], "").await);
        assert!(
            table.contains("fay") && table.contains("auditor"),
            "{table}"
        );
    })
    .await;
}

#[test]
fn a_command_and_serve_agree_on_the_database_and_the_development_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        pv(dir.path())
            .args(args)
            .env("PII_VAULT_POLICY_DIR", policies())
            .output()
            .unwrap()
    };
    let out = run(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let key = dir.path().join("data/root.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = run(&[
        "clients", "add", "--name", "hd", "--role", "helpdesk", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["client_id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(v["client_secret"].as_str().is_some_and(|s| s.len() >= 43));
    let out = run(&["clients", "add", "--name", "hd", "--role", "helpdesk"]);
    assert!(!out.status.success(), "names are unique");
    let out = run(&["clients", "add", "--name", "x", "--role", "astrologer"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not declared in the policy"));
    // A wrong root key is refused, not silently used.
    let out = pv(dir.path())
        .args(["migrate"])
        .env("PII_VAULT_POLICY_DIR", policies())
        .env("PII_VAULT_MASTER_KEY", crate::helpers::root_key_b64())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
}

/// Runs `c` with `input` on its standard input (on a blocking thread, see
/// `helpers::output`).
async fn with_stdin(mut c: Command, input: &str) -> std::process::Output {
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pii-vault");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// `pii-vault ARGS` against `v`'s database, `input` on standard input.
async fn users(v: &TestVault, args: &[&str], input: &str) -> std::process::Output {
    let mut c = vault_cmd(v.dir.path(), &v.database_url, "warn");
    c.args(args);
    with_stdin(c, input).await
}

fn assert_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn password_token(v: &TestVault, username: &str, password: &str) -> (StatusCode, Value) {
    let r = v
        .http
        .post(v.url("/v1/token"))
        .json(&json!({"grant_type": "password", "username": username, "password": password}))
        .send()
        .await
        .unwrap();
    crate::helpers::split(r).await
}

/// Calls `GET /v1/policy` with `token` until it answers 401, for at most
/// 1.5 s: the vault may reuse a verified caller for 1 s.
async fn refused_within_a_second_and_a_half(v: &TestVault, token: &str) -> bool {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(1500);
    for call in 1.. {
        let (s, _) = v.get(token, "/v1/policy").await;
        if s == StatusCode::UNAUTHORIZED {
            eprintln!(
                "401 at call {call}, {:?} after the command",
                start.elapsed()
            );
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn events(audit: &[pii_vault::audit::StoredEvent], action: &str) -> Vec<Value> {
    audit
        .iter()
        .filter(|e| e.draft.action == action)
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

#[tokio::test]
async fn users_disable_stops_the_users_tokens_within_a_second() {
    on_each_backend(|v| async move {
        let password = "correct horse battery";
        assert_ok(
            &users(
                &v,
                &["users", "add", "--username", "dana", "--role", "dpo"],
                &format!("{password}\n"),
            )
            .await,
        );
        let (s, b) = password_token(&v, "dana", password).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let token = b["access_token"].as_str().unwrap().to_owned();
        // Cached as a verified caller by this call.
        assert_eq!(v.get(&token, "/v1/policy").await.0, StatusCode::OK);

        let out = assert_ok(&users(&v, &["users", "disable", "dana"], "").await);
        assert!(out.contains("disabled"), "{out}");
        assert!(
            refused_within_a_second_and_a_half(&v, &token).await,
            "the disabled user's token still works"
        );
        let (s, _) = password_token(&v, "dana", password).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "no new token for a disabled user"
        );

        let audit = v.audit().await;
        let disabled = events(&audit, "user.disable");
        assert_eq!(disabled.len(), 1);
        assert_eq!(disabled[0]["actor"], "cli");
        let created = events(&audit, "user.create");
        assert_eq!(
            disabled[0]["reasons"]["user_id"],
            created[0]["reasons"]["user_id"]
        );

        let out = users(&v, &["users", "disable", "nobody"], "").await;
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no user named \"nobody\""));
    })
    .await;
}

#[tokio::test]
async fn users_set_password_refuses_the_old_password_and_earlier_tokens() {
    on_each_backend(|v| async move {
        let (old, new) = ("correct horse battery", "staple-9 tuba lantern");
        assert_ok(
            &users(
                &v,
                &["users", "add", "--username", "erin", "--role", "dpo"],
                &format!("{old}\n"),
            )
            .await,
        );
        let (s, b) = password_token(&v, "erin", old).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let before = b["access_token"].as_str().unwrap().to_owned();
        assert_eq!(v.get(&before, "/v1/policy").await.0, StatusCode::OK);

        // Empty, short, or on the command line: refused, nothing changes.
        let out = users(&v, &["users", "set-password", "erin"], "").await;
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no password given"));
        let out = users(&v, &["users", "set-password", "erin"], "short\n").await;
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
        let out = users(
            &v,
            &["users", "set-password", "erin", "--password", new],
            "",
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "no password option on the command line"
        );
        assert_eq!(password_token(&v, "erin", old).await.0, StatusCode::OK);

        let out =
            assert_ok(&users(&v, &["users", "set-password", "erin"], &format!("{new}\n")).await);
        assert!(out.contains("replaced"), "{out}");
        let (s, b) = password_token(&v, "erin", old).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
        );
        let (s, b) = password_token(&v, "erin", new).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let after = b["access_token"].as_str().unwrap().to_owned();
        assert!(
            refused_within_a_second_and_a_half(&v, &before).await,
            "a token issued before the reset still works"
        );
        assert_eq!(v.get(&after, "/v1/policy").await.0, StatusCode::OK);

        let audit = v.audit().await;
        assert_eq!(
            events(&audit, "user.set_password").len(),
            1,
            "only the reset that happened"
        );
        let all = serde_json::to_string(&audit).unwrap();
        assert!(
            !all.contains(new) && !all.contains(old),
            "no password in the audit trail"
        );

        let out = users(
            &v,
            &["users", "set-password", "nobody"],
            &format!("{new}\n"),
        )
        .await;
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no user named"));
    })
    .await;
}

#[test]
fn the_vaults_own_issuer_cannot_be_an_identity_providers() {
    let dir = tempfile::tempdir().unwrap();
    let provider = |issuer: &str| {
        format!(
            "[[identity_providers]]\nissuer = \"{issuer}\"\naudience = \"pii-vault\"\n\
             role_claim = \"groups\"\n[identity_providers.roles]\n\"vault-helpdesk\" = \"helpdesk\"\n"
        )
    };
    let migrate = |env: &[(&str, &str)]| {
        let mut c = pv(dir.path());
        c.args(["migrate"]).env("PII_VAULT_POLICY_DIR", policies());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = dir.path().join("pii-vault.toml");
    // The issuer derived from public_url (a trailing slash is the same
    // issuer), from token_issuer, or from the listen address.
    for (settings, env, names) in [
        (
            format!(
                "public_url = \"https://vault.example.com\"\n{}",
                provider("https://vault.example.com/")
            ),
            vec![],
            "public_url",
        ),
        (
            provider("https://id.example.com/vault"),
            vec![("PII_VAULT_TOKEN_ISSUER", "https://id.example.com/vault")],
            "token_issuer",
        ),
        (
            provider("http://127.0.0.1:8099"),
            vec![("PII_VAULT_LISTEN", "127.0.0.1:8099")],
            "listen",
        ),
    ] {
        std::fs::write(&file, settings).unwrap();
        let (status, stderr) = migrate(&env);
        assert!(!status.success(), "{names}: {stderr}");
        assert!(
            stderr.contains("identity_providers") && stderr.contains(names),
            "{names}: {stderr}"
        );
    }
    // Another provider is fine.
    std::fs::write(
        &file,
        format!(
            "public_url = \"https://vault.example.com\"\n{}",
            provider("https://login.example.com/")
        ),
    )
    .unwrap();
    let (status, stderr) = migrate(&[]);
    assert!(status.success(), "{stderr}");
    // A token issuer other than the public URL would not be the issuer the
    // metadata names.
    std::fs::write(&file, "public_url = \"https://vault.example.com\"\n").unwrap();
    let (status, stderr) = migrate(&[("PII_VAULT_TOKEN_ISSUER", "pii-vault")]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("token_issuer"), "{stderr}");
}
