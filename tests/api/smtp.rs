//! Email delivery of the outbox (`outbox_smtp_url`) and the language of a
//! request.
//!
//! The delivery tests run a real SMTP server on loopback: aiosmtpd (PyPI)
//! with a handler that refuses the first N messages (451) and writes the
//! others, decoded, to a directory. They need `python3 -m aiosmtpd`, so
//! they are `#[ignore]`d and run by `.ci/smtp.sh`
//! (`cargo test --test api -- --ignored smtp::`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// An aiosmtpd handler: refuses the first `fail_first` messages with 451,
/// then writes each message (recipients, subject, decoded text) to
/// `<out>/<n>.eml`.
const HANDLER: &str = r#"
import email, email.policy, os

class Recorder:
    def __init__(self, out, fail_first):
        self.out, self.fail, self.n = out, int(fail_first), 0

    async def handle_DATA(self, server, session, envelope):
        if self.fail > 0:
            self.fail -= 1
            return '451 4.3.0 Try again later'
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        tmp = os.path.join(self.out, '.tmp')
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write('To: ' + ','.join(envelope.rcpt_tos) + '\n')
            f.write('Subject: ' + str(msg['subject']) + '\n\n')
            f.write(msg.get_content())
        os.rename(tmp, os.path.join(self.out, '%d.eml' % self.n))
        self.n += 1
        return '250 OK'

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(*args)
"#;

/// An SMTP server on 127.0.0.1 (killed when dropped).
struct SmtpServer {
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl SmtpServer {
    async fn start(fail_first: u32) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("recorder.py"), HANDLER).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "recorder.Recorder"])
            .arg(&out)
            .arg(fail_first.to_string())
            .env("PYTHONPATH", dir.path())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        SmtpServer {
            port,
            out,
            _dir: dir,
            _child: child,
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    fn received(&self) -> Vec<String> {
        received_in(&self.out)
    }

    /// The `n`th message (from 0), waiting for it up to 30 s.
    async fn message(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(m) = self.received().get(n) {
                return m.clone();
            }
            assert!(Instant::now() < deadline, "message {n} never arrived");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn received_in(out: &Path) -> Vec<String> {
    let mut names: Vec<(u32, PathBuf)> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let n = p.file_stem()?.to_str()?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|(_, p)| std::fs::read_to_string(p).unwrap())
        .collect()
}

async fn smtp_vault(backend: Backend, url: &str) -> TestVault {
    let url = url.to_owned();
    TestVault::start_adjusted(backend, move |s, _| {
        s.outbox_smtp_url = Some(url.into());
        s.outbox_smtp_from = Some("Privacy <privacy@vault.example>".into());
    })
    .await
}

/// Files an erasure request for ada@example.com as the customer would,
/// with `language` in the body and `accept` as `Accept-Language`.
async fn file(v: &TestVault, language: Option<&str>, accept: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({"kind": "erasure", "regulation": "gdpr",
        "identifier": {"field": "email", "value": "ada@example.com"}});
    if let Some(l) = language {
        body["language"] = json!(l);
    }
    let mut req = v.http.post(v.url("/v1/requests")).json(&body);
    if let Some(a) = accept {
        req = req.header("Accept-Language", a);
    }
    split(req.send().await.unwrap()).await
}

async fn status(v: &TestVault, r: &Value) -> Value {
    let resp = v
        .http
        .get(v.url(&format!("/v1/requests/{}", r["id"].as_str().unwrap())))
        .bearer_auth(r["request_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let (st, b) = split(resp).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b
}

async fn verify(v: &TestVault, r: &Value, code: &str) -> (StatusCode, Value) {
    let resp = v
        .http
        .post(v.url(&format!(
            "/v1/requests/{}/verify",
            r["id"].as_str().unwrap()
        )))
        .bearer_auth(r["request_token"].as_str().unwrap())
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    split(resp).await
}

/// The code on the line of `mail` that holds `marker`.
fn code_in(mail: &str, marker: &str) -> String {
    let line = mail
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} in {mail}"));
    let code: String = line
        .split_once(marker)
        .map(|(_, after)| after.chars().filter(char::is_ascii_digit).collect())
        .unwrap_or_default();
    assert_eq!(code.len(), 8, "{line}");
    code
}

async fn pending(v: &TestVault, notifier: &str) -> Vec<Value> {
    let (st, b) = v.get(notifier, "/v1/outbox").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_request_language_comes_from_the_body_then_accept_language() {
    for backend in backends() {
        let v = TestVault::start(backend).await;
        let helpdesk = v.token("helpdesk").await;
        v.create(&helpdesk, &ada()).await;
        for (language, accept, wanted) in [
            (Some("it"), Some("zh-CN"), "it"),
            (None, Some("fr-FR, it-IT;q=0.8, en;q=0.5"), "it"),
            (None, Some("zh-Hans-CN,zh;q=0.9"), "zh-Hans"),
            (Some("zh-Hans"), None, "zh-Hans"),
            (None, Some("de-DE"), "en"),
            (None, None, "en"),
        ] {
            let (st, r) = file(&v, language, accept).await;
            assert_eq!(st, StatusCode::ACCEPTED, "{r}");
            assert_eq!(
                status(&v, &r).await["language"],
                wanted,
                "{language:?} {accept:?}"
            );
        }
        for bad in ["fr", "IT", "zh", ""] {
            let (st, b) = file(&v, Some(bad), None).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {b}");
            assert_eq!(b["code"], "invalid_request", "{b}");
        }
    }
}

#[tokio::test]
#[ignore = "needs python3 -m aiosmtpd; run by .ci/smtp.sh"]
async fn smtp_codes_arrive_by_email_in_the_request_language_after_a_refusal() {
    for backend in backends() {
        // The server refuses the first message (451): it is retried.
        let server = SmtpServer::start(1).await;
        let v = smtp_vault(backend, &server.url()).await;
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;
        let (st, it) = file(&v, Some("it"), None).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{it}");
        let mail = server.message(0).await;
        assert!(mail.starts_with("To: ada@example.com\n"), "{mail}");
        assert!(
            mail.contains("Subject: La tua richiesta sulla privacy: codice di verifica"),
            "{mail}"
        );
        assert!(mail.contains("Il tuo codice di verifica è: "), "{mail}");
        assert!(mail.contains(it["id"].as_str().unwrap()), "{mail}");
        // Acknowledged: nothing waits for a notifier.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pending(&v, &notifier).await.is_empty() {
            assert!(Instant::now() < deadline, "never acknowledged");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sends: Vec<_> = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.action == "outbox.send" && e.draft.decision == "allowed")
            .collect();
        assert!(sends.len() >= 2, "the refused attempt was retried");
        // The code in the email verifies the request.
        let (st, b) = verify(&v, &it, &code_in(&mail, "codice di verifica è:")).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        // Another request, in Chinese from Accept-Language.
        let (st, zh) = file(&v, None, Some("zh-CN,zh;q=0.9,en;q=0.5")).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{zh}");
        let mail = server.message(1).await;
        assert!(mail.contains("Subject: 您的隐私请求：验证码"), "{mail}");
        assert!(mail.contains("您的验证码是："), "{mail}");
        let (st, b) = verify(&v, &zh, &code_in(&mail, "您的验证码是：")).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        // The address and the code never reach the audit trail.
        for e in v.audit().await {
            let shown = serde_json::to_string(&e.draft.reasons).unwrap();
            assert!(!shown.contains("ada@example.com"), "{shown}");
        }
    }
}

#[tokio::test]
#[ignore = "needs python3 -m aiosmtpd; run by .ci/smtp.sh"]
async fn smtp_a_refusing_server_gets_retries_and_no_acknowledgement() {
    for backend in backends() {
        let server = SmtpServer::start(u32::MAX).await;
        let v = smtp_vault(backend, &server.url()).await;
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;
        let (st, r) = file(&v, Some("en"), None).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        // A second attempt comes after the backoff; the first one failed.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempts = v
                .audit()
                .await
                .into_iter()
                .filter(|e| e.draft.action == "outbox.send" && e.draft.decision == "allowed")
                .count();
            if attempts >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "no retry after a refusal");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(server.received().is_empty());
        // Not acknowledged: the message still waits, with its attempts.
        let waiting = pending(&v, &notifier).await;
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert_eq!(waiting[0]["request_id"], r["id"]);
        assert!(waiting[0]["attempts"].as_i64().unwrap() >= 1, "{waiting:?}");
        let acks = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.action == "outbox.acknowledged")
            .count();
        assert_eq!(acks, 0);
    }
}
