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

/// How an [`SmtpServer`] protects its sessions.
#[derive(Clone, Copy, PartialEq)]
enum ServerTls {
    /// No TLS (the vault reaches it with `?tls=none`, loopback only).
    None,
    /// STARTTLS offered and required, with the given certificate.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Smtps,
}

/// An SMTP server on 127.0.0.1 (killed when dropped).
struct SmtpServer {
    port: u16,
    tls: ServerTls,
    out: PathBuf,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl SmtpServer {
    async fn start(fail_first: u32) -> SmtpServer {
        SmtpServer::start_tls(fail_first, ServerTls::None, None).await
    }

    /// A server presenting `pki`'s server certificate (signed by its CA).
    async fn start_tls(
        fail_first: u32,
        tls: ServerTls,
        pki: Option<&crate::requests::TestPki>,
    ) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("recorder.py"), HANDLER).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cmd = tokio::process::Command::new("python3");
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"));
        if let Some(pki) = pki {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert, &pki.cert_pem).unwrap();
            std::fs::write(&key, &pki.key_pem).unwrap();
            let (cert_flag, key_flag) = match tls {
                ServerTls::StartTls => ("--tlscert", "--tlskey"),
                ServerTls::Smtps => ("--smtpscert", "--smtpskey"),
                ServerTls::None => panic!("a certificate without TLS"),
            };
            cmd.arg(cert_flag).arg(cert).arg(key_flag).arg(key);
        }
        let child = cmd
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
            tls,
            out,
            _dir: dir,
            _child: child,
        }
    }

    fn url(&self) -> String {
        match self.tls {
            ServerTls::None => format!("smtp://127.0.0.1:{}?tls=none", self.port),
            ServerTls::StartTls => format!("smtp://127.0.0.1:{}", self.port),
            ServerTls::Smtps => format!("smtps://127.0.0.1:{}", self.port),
        }
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
    smtp_vault_trusting(backend, url, None).await
}

/// A vault emailing through `url`, trusting the CA certificate `ca_pem`
/// (written to `outbox_smtp_ca_file`) beside the system's CA store.
async fn smtp_vault_trusting(backend: Backend, url: &str, ca_pem: Option<&str>) -> TestVault {
    let url = url.to_owned();
    let ca_pem = ca_pem.map(str::to_owned);
    TestVault::start_adjusted(backend, move |s, dir| {
        s.outbox_smtp_url = Some(url.into());
        s.outbox_smtp_from = Some("Privacy <privacy@vault.example>".into());
        if let Some(pem) = ca_pem {
            let file = dir.join("smtp-ca.pem");
            std::fs::write(&file, pem).unwrap();
            s.outbox_smtp_ca_file = Some(file);
        }
    })
    .await
}

/// The shipped policy plus a recipient role, `crm_partner` (reads for
/// marketing), whose notices go by email to privacy@partner.example.
fn partner_policy(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml");
    std::fs::copy(shipped, policies.join("default.toml")).unwrap();
    std::fs::write(
        policies.join("partner.toml"),
        "[roles.crm_partner]\nread = [\"marketing\"]\nrecipient = true\n\
         notice_email = \"privacy@partner.example\"\n",
    )
    .unwrap();
    policies
}

/// Ada, her email collected for support and email marketing, with consent.
fn ada_for_marketing() -> Value {
    json!({
        "channel": "chat", "notice_version": "2026-01",
        "fields": {"email": {"value": "ada@example.com", "purposes": ["support", "marketing.email"]}},
        "consents": [{"purpose": "marketing.email", "notice_version": "2026-01",
                      "notice_text_sha256": NOTICE_SHA, "language": "it", "jurisdiction": "EU"}]
    })
}

/// Ada's email disclosed to both recipients (the partner and the marketing
/// tool), then Ada erased by the DPO: one notice to each recipient.
async fn disclose_then_erase(v: &TestVault) -> String {
    let helpdesk = v.token("helpdesk").await;
    let id = v.create(&helpdesk, &ada_for_marketing()).await;
    for role in ["crm_partner", "marketing_tool"] {
        let t = v.token(role).await;
        let (st, b) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=marketing.email"))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["fields"]["email"], "ada@example.com", "{b}");
    }
    let dpo = v.token("dpo").await;
    let (st, b) = v
        .send(
            reqwest::Method::DELETE,
            &dpo,
            &format!("/v1/customers/{id}"),
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    id
}

fn notice_to<'m>(messages: &'m [Value], role: &str) -> Option<&'m Value> {
    messages
        .iter()
        .find(|m| m["kind"] == "recipient_notice" && m["to"]["recipient_role"] == role)
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

#[tokio::test]
async fn a_recipient_notice_names_its_notice_email_to_the_notifier() {
    // No SMTP: the notifier delivers every notice, and is told where the
    // policy wants each one sent.
    for backend in backends() {
        let v =
            TestVault::start_adjusted(backend, |s, dir| s.policy_dir = partner_policy(dir)).await;
        let id = disclose_then_erase(&v).await;
        let notifier = v.token("notifier").await;
        let waiting = pending(&v, &notifier).await;
        let partner = notice_to(&waiting, "crm_partner").expect("a notice to the partner");
        assert_eq!(partner["to"]["channel"], "email", "{partner}");
        assert_eq!(
            partner["to"]["address"], "privacy@partner.example",
            "{partner}"
        );
        assert_eq!(partner["body"]["notice"], "erasure", "{partner}");
        assert_eq!(partner["customer_id"], id.as_str());
        let tool = notice_to(&waiting, "marketing_tool").expect("a notice to the marketing tool");
        assert!(tool["to"].get("channel").is_none(), "{tool}");
        assert!(tool["to"].get("address").is_none(), "{tool}");
    }
}

#[tokio::test]
#[ignore = "needs python3 -m aiosmtpd; run by .ci/smtp.sh"]
async fn smtp_recipient_notices_go_to_their_notice_email_and_sms_waits_for_the_notifier() {
    for backend in backends() {
        let server = SmtpServer::start(0).await;
        let url = server.url();
        let v = TestVault::start_adjusted(backend, move |s, dir| {
            s.policy_dir = partner_policy(dir);
            s.outbox_smtp_url = Some(url.into());
            s.outbox_smtp_from = Some("Privacy <privacy@vault.example>".into());
        })
        .await;
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        // A customer known by phone only files first: the vault cannot
        // send a text message, so the code waits for the notifier.
        v.create(
            &helpdesk,
            &json!({"fields": {"phone": {"value": "+39 333 765 4321", "purposes": ["support.callback"]}}}),
        )
        .await;
        let (st, by_phone) = split(
            v.http
                .post(v.url("/v1/requests"))
                .json(&json!({"kind": "access", "regulation": "gdpr",
                    "identifier": {"field": "phone", "value": "+39 333 765 4321"}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{by_phone}");
        let id = disclose_then_erase(&v).await;
        // The partner's notice arrives by email, in English, with no value.
        let mail = server.message(0).await;
        assert!(mail.starts_with("To: privacy@partner.example\n"), "{mail}");
        assert!(
            mail.contains("Subject: Notice about personal data you received (GDPR Art. 19)"),
            "{mail}"
        );
        assert!(
            mail.contains("The customer's data was erased: delete every copy you hold"),
            "{mail}"
        );
        assert!(mail.contains(&format!("Customer: {id}")), "{mail}");
        assert!(!mail.contains("ada@example.com"), "{mail}");
        // …and is acknowledged.
        let deadline = Instant::now() + Duration::from_secs(10);
        while notice_to(&pending(&v, &notifier).await, "crm_partner").is_some() {
            assert!(Instant::now() < deadline, "never acknowledged");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // What the vault cannot send itself waits, undropped: the code for
        // the phone, and the notice to a recipient without a notice_email.
        let waiting = pending(&v, &notifier).await;
        let code = waiting
            .iter()
            .find(|m| m["kind"] == "verification_code" && m["request_id"] == by_phone["id"])
            .unwrap_or_else(|| panic!("the code for the phone waits: {waiting:?}"));
        assert_eq!(code["to"]["channel"], "sms", "{code}");
        assert_eq!(code["to"]["address"], "+393337654321", "{code}");
        assert_eq!(code["attempts"], 0, "{code}");
        assert!(
            notice_to(&waiting, "marketing_tool").is_some(),
            "{waiting:?}"
        );
        assert_eq!(
            server.received().len(),
            1,
            "only the partner's notice went by email"
        );
        assert!(
            !v.audit()
                .await
                .iter()
                .any(|e| e.draft.action == "outbox.dropped"),
            "nothing was dropped"
        );
        // The company's notifier delivers it as before.
        let (st, b) = v
            .post(
                &notifier,
                &format!("/v1/outbox/{}/ack", code["id"].as_str().unwrap()),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
}

/// Files a request for Ada (created first) and waits until the vault's
/// first attempt to email its code has failed; the failure's code.
async fn first_failure(v: &TestVault) -> String {
    let helpdesk = v.token("helpdesk").await;
    let notifier = v.token("notifier").await;
    v.create(&helpdesk, &ada()).await;
    let (st, r) = file(v, Some("en"), None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    let waiting = pending(v, &notifier).await;
    let id: uuid::Uuid = waiting[0]["id"].as_str().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = v.state.store.outbox_message(id).await.unwrap().unwrap();
        if let Some(error) = row.last_error {
            assert!(row.delivered_at.is_none());
            return error;
        }
        assert!(Instant::now() < deadline, "no attempt failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs python3 -m aiosmtpd; run by .ci/smtp.sh"]
async fn smtp_a_private_ca_is_trusted_only_when_outbox_smtp_ca_file_names_it() {
    pii_vault::install_tls_provider();
    let pki = crate::requests::test_pki("mail");
    for backend in backends() {
        // STARTTLS to a server whose certificate a private CA signed.
        let server = SmtpServer::start_tls(0, ServerTls::StartTls, Some(&pki)).await;
        // Without the CA the handshake is refused: nothing is sent.
        let v = smtp_vault(backend, &server.url()).await;
        assert_eq!(first_failure(&v).await, "tls");
        drop(v);
        assert!(server.received().is_empty());
        // With it the code arrives, and verifies.
        let v = smtp_vault_trusting(backend, &server.url(), Some(&pki.ca_pem)).await;
        v.create(&v.token("helpdesk").await, &ada()).await;
        let (st, r) = file(&v, Some("en"), None).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        let mail = server.message(0).await;
        assert!(mail.starts_with("To: ada@example.com\n"), "{mail}");
        let (st, b) = verify(&v, &r, &code_in(&mail, "verification code is:")).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        drop(v);
        // SMTPS (TLS from the first byte) trusts the same file.
        let server = SmtpServer::start_tls(0, ServerTls::Smtps, Some(&pki)).await;
        let v = smtp_vault(backend, &server.url()).await;
        assert_eq!(first_failure(&v).await, "tls");
        drop(v);
        let v = smtp_vault_trusting(backend, &server.url(), Some(&pki.ca_pem)).await;
        v.create(&v.token("helpdesk").await, &ada()).await;
        let (st, _) = file(&v, Some("it"), None).await;
        assert_eq!(st, StatusCode::ACCEPTED);
        let mail = server.message(0).await;
        assert!(mail.contains("Il tuo codice di verifica è: "), "{mail}");
    }
}

/// POSTs `body` to the vault at `base` with `token` (a bearer, if any).
async fn post_to(base: &str, token: Option<&str>, path: &str, body: &Value) -> (StatusCode, Value) {
    let mut req = http().post(format!("{base}{path}")).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    split(req.send().await.unwrap()).await
}

#[tokio::test]
#[ignore = "needs python3 -m aiosmtpd; run by .ci/smtp.sh"]
async fn smtp_outcomes_arrive_in_words_of_the_language_and_no_log_line_holds_an_address_or_a_code()
{
    for backend in backends() {
        // The server refuses the first message: the retry path runs too.
        let server = SmtpServer::start(1).await;
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("vault.db").display()),
            Backend::Postgres => fresh_pg_database().await,
        };
        let mut cmd = vault_cmd(dir.path(), &db, "trace");
        cmd.env("PII_VAULT_OUTBOX_SMTP_URL", server.url()).env(
            "PII_VAULT_OUTBOX_SMTP_FROM",
            "Privacy <privacy@vault.example>",
        );
        let vault = serve(cmd);
        let base = vault.base.clone();
        let helpdesk = client_token(&base, &add_client(dir.path(), &db, "helpdesk")).await;
        let dpo = client_token(&base, &add_client(dir.path(), &db, "dpo")).await;
        let (st, b) = post_to(
            &base,
            Some(&helpdesk),
            "/v1/customers?purpose=support",
            &ada(),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        let mut codes = Vec::new();
        let file_and_verify = |kind: &'static str, language: &'static str, n: usize| {
            let (base, server) = (base.clone(), &server);
            async move {
                let (st, r) = post_to(
                    &base,
                    None,
                    "/v1/requests",
                    &json!({"kind": kind,
                    "regulation": "gdpr", "language": language,
                    "identifier": {"field": "email", "value": "ada@example.com"}}),
                )
                .await;
                assert_eq!(st, StatusCode::ACCEPTED, "{r}");
                let mail = server.message(n).await;
                let marker = if language == "it" {
                    "codice di verifica è:"
                } else {
                    "您的验证码是："
                };
                let code = code_in(&mail, marker);
                let rid = r["id"].as_str().unwrap();
                let resp = http()
                    .post(format!("{base}/v1/requests/{rid}/verify"))
                    .bearer_auth(r["request_token"].as_str().unwrap())
                    .json(&json!({"code": code}))
                    .send()
                    .await
                    .unwrap();
                let (st, b) = split(resp).await;
                assert_eq!(st, StatusCode::OK, "{b}");
                (r, code)
            }
        };
        // An access request in Italian completes once verified: the outcome
        // comes by email, in Italian words.
        let (_, code) = file_and_verify("access", "it", 0).await;
        codes.push(code);
        let outcome = server.message(1).await;
        assert!(outcome.starts_with("To: ada@example.com\n"), "{outcome}");
        assert!(outcome.contains("tipo: accesso ai dati"), "{outcome}");
        assert!(outcome.contains("nuovo stato: completata"), "{outcome}");
        // An erasure in Chinese, denied by the DPO: status and reason in
        // Chinese words.
        let (r, code) = file_and_verify("erasure", "zh-Hans", 2).await;
        codes.push(code);
        let rid = r["id"].as_str().unwrap();
        let (st, b) = post_to(
            &base,
            Some(&dpo),
            &format!("/v1/requests/{rid}/deny"),
            &json!({"reason": "legal_obligation"}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let outcome = server.message(3).await;
        assert!(outcome.contains("类型：删除"), "{outcome}");
        assert!(outcome.contains("新的状态：已拒绝"), "{outcome}");
        assert!(
            outcome.contains("原因：法律要求我们保留这些数据"),
            "{outcome}"
        );
        for api_name in ["erasure", "denied", "legal_obligation"] {
            assert!(!outcome.contains(api_name), "{api_name}: {outcome}");
        }
        // Four messages went out (one after a refusal), and the vault at
        // RUST_LOG=trace logged neither the address nor a code.
        assert_eq!(server.received().len(), 4);
        let logs = vault.logs.lock().unwrap().join("\n");
        assert!(
            logs.contains("outbox delivery failed; will retry"),
            "the refusal is logged"
        );
        assert!(
            !logs.contains("ada@example.com"),
            "the address in a log line"
        );
        for code in &codes {
            assert!(!logs.contains(code.as_str()), "a code in a log line");
        }
    }
}

#[tokio::test]
async fn a_notice_whose_role_lost_its_notice_email_waits_for_the_notifier() {
    for backend in backends() {
        // The notice is addressed by email while the policy names one…
        let v =
            TestVault::start_adjusted(backend, |s, dir| s.policy_dir = partner_policy(dir)).await;
        disclose_then_erase(&v).await;
        let (dir, url) = v.stop().await;
        // …and the vault restarts, sending email, under a policy without it.
        let v = TestVault::start_with_adjusted(backend, dir, url, |s, dir| {
            let policies = partner_policy(dir);
            std::fs::write(
                policies.join("partner.toml"),
                "[roles.crm_partner]\nread = [\"marketing\"]\nrecipient = true\n",
            )
            .unwrap();
            s.policy_dir = policies;
            // Never reached: nothing is sent to it.
            s.outbox_smtp_url = Some("smtp://127.0.0.1:9?tls=none".into());
            s.outbox_smtp_from = Some("Privacy <privacy@vault.example>".into());
        })
        .await;
        let notifier = v.token("notifier").await;
        let waiting = pending(&v, &notifier).await;
        let notice = notice_to(&waiting, "crm_partner").expect("the notice waits");
        assert_eq!(notice["to"]["channel"], "email", "{notice}");
        assert!(notice["to"].get("address").is_none(), "{notice}");
        let id: uuid::Uuid = notice["id"].as_str().unwrap().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let row = v.state.store.outbox_message(id).await.unwrap().unwrap();
            if let Some(error) = row.last_error {
                assert_eq!(error, "no_notice_email");
                assert!(row.delivered_at.is_none() && row.payload.is_some());
                break;
            }
            assert!(Instant::now() < deadline, "the sender never looked at it");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Not dropped, nothing sent: still the notifier's to deliver.
        let events = v.audit().await;
        assert!(!events.iter().any(|e| e.draft.action == "outbox.dropped"));
        assert!(!events.iter().any(|e| e.draft.action == "outbox.send"));
        let (st, b) = v
            .post(&notifier, &format!("/v1/outbox/{id}/ack"), &json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
}
