//! The command line: help, policy check, production key rule, configuration errors.

use std::process::Command;

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
        vec!["users", "add", "--help"],
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
fn unknown_configuration_keys_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = pv(dir.path())
        .args(["migrate"])
        .env("PII_VAULT_POLICY_DIR", policies())
        .env("PII_VAULT_LISTEN_ADRESS", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_adress"));
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
