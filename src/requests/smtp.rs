//! Email delivery of the outbox by the vault itself (`outbox_smtp_url`):
//! verification codes, request outcomes, filings on the customer's behalf,
//! extensions and the notice before a restriction is lifted go to the
//! customer's email address on file, written in the request's language
//! ([`super::mail`]); notices to recipients (GDPR Art. 19) go, in English,
//! to the `notice_email` the policy gives the recipient's role.
//!
//! What the vault cannot send by email stays in the outbox for the
//! company's notifier (`GET /v1/outbox`) or the webhook: messages to a
//! customer whose contact on file is a phone number (`channel` `sms`), and
//! notices to a recipient without a `notice_email`. A notice addressed by
//! email whose role has lost its `notice_email` (a policy changed since) is
//! not dropped: it is tried again later and stays visible to the notifier.
//!
//! Like the webhook, the sender coordinates with other processes through
//! the database only: each attempt is claimed by a guarded update (and the
//! disclosure audited) before the message leaves, so two processes never
//! send the same attempt; success acknowledges the message (its payload is
//! deleted); a failure schedules the next attempt with exponential backoff,
//! persisted with the attempt count, so a restart neither loses nor repeats
//! a message. Failures are logged as short codes (`smtp_451`, `timeout`,
//! `tls`, `unreachable`): never the address, the code or the server's text,
//! which may quote the address.
//!
//! TLS is rustls on ring (the provider [`crate::install_tls_provider`]
//! installs); the server's certificate is checked against the system's CA
//! store (rustls-platform-verifier) plus the certificates of
//! `outbox_smtp_ca_file` (a private CA).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::background::{Claimed, claim, dropped_event, open_due, retry_later};
use super::flow;
use super::mail;
use super::outbox::{self, Delivery};
use crate::actor::Actor;
use crate::config::{Settings, SmtpEndpoint, SmtpSecurity};
use crate::crypto::Dek;
use crate::language::Language;
use crate::state::{AppState, Inner};
use crate::store::{OutboxRow, RequestMutation as RM, Unit};

const POLL: Duration = Duration::from_secs(1);
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages taken per pass.
const BATCH: i64 = 20;

/// The SMTP connection (pooled) and the sender address.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").finish_non_exhaustive()
    }
}

impl Mailer {
    /// The mailer `outbox_smtp_url` describes; `None` when it is not set.
    /// Fails on an unusable setting or an unreadable password file.
    pub fn from_settings(settings: &Settings) -> Result<Option<Mailer>, String> {
        let Some(url) = &settings.outbox_smtp_url else {
            return Ok(None);
        };
        let endpoint = SmtpEndpoint::parse(url.expose_secret())?;
        let password = match &settings.outbox_smtp_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| {
                        format!(
                            "cannot read outbox_smtp_password_file {}: {e}",
                            path.display()
                        )
                    })?,
            ),
            None => endpoint
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
        };
        let from = settings
            .outbox_smtp_from
            .as_deref()
            .and_then(|f| f.parse::<Mailbox>().ok())
            .ok_or("outbox_smtp_from must be the sender's address")?;
        let extra_roots = match &settings.outbox_smtp_ca_file {
            Some(path) => Some(ca_certificates(path)?),
            None => None,
        };
        let transport = transport(&endpoint, password, extra_roots.as_ref())?;
        Ok(Some(Mailer { transport, from }))
    }
}

/// The certificates of `outbox_smtp_ca_file` (PEM, one or more).
fn ca_certificates(path: &std::path::Path) -> Result<Certificate, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read outbox_smtp_ca_file {}: {e}", path.display()))?;
    let holds_one = pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----");
    Certificate::from_pem(&pem)
        .ok()
        .filter(|_| holds_one)
        .ok_or_else(|| {
            format!(
                "outbox_smtp_ca_file {} holds no PEM certificate",
                path.display()
            )
        })
}

fn transport(
    endpoint: &SmtpEndpoint,
    password: Option<String>,
    extra_roots: Option<&Certificate>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    crate::install_tls_provider();
    let tls_params = || {
        let mut builder = TlsParameters::builder(endpoint.host.clone());
        if let Some(roots) = extra_roots {
            builder = builder.add_root_certificate(roots.clone());
        }
        builder
            .build_rustls()
            .map_err(|_| "cannot set up TLS for outbox_smtp_url".to_owned())
    };
    let tls = match endpoint.security {
        SmtpSecurity::Tls => Tls::Wrapper(tls_params()?),
        SmtpSecurity::StartTls => Tls::Required(tls_params()?),
        SmtpSecurity::Plain => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host)
        .port(endpoint.port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(user) = &endpoint.user {
        builder = builder.credentials(Credentials::new(user.clone(), password.unwrap_or_default()));
    }
    Ok(builder.build())
}

/// Delivers due email messages until the state is dropped.
pub async fn smtp_loop(weak: Weak<Inner>, mailer: Mailer) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = super::outbox::woken() => {}
        }
        let Some(state) = AppState::upgrade(&weak) else {
            return;
        };
        deliver_due(&state, &mailer).await;
    }
}

/// Why one attempt failed, as recorded and logged: never the server's text.
fn failure(e: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = e.status() {
        format!("smtp_{code}")
    } else if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_tls() || tls_in_chain(e) {
        "tls".to_owned()
    } else {
        "unreachable".to_owned()
    }
}

/// A refused TLS handshake (e.g. a certificate no trusted root vouches for)
/// reaches lettre as an I/O error around a rustls error.
fn tls_in_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// One pass: every email message due for an attempt is opened, claimed,
/// written in its request's language and sent; success acknowledges it,
/// failure schedules the next attempt.
pub async fn deliver_due(state: &AppState, mailer: &Mailer) {
    let now = state.clock.now_micros();
    let rows = match state.store.outbox_due_by_email(now, true, BATCH).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, "outbox poll (smtp)");
            return;
        }
    };
    let mut deks: HashMap<Uuid, Option<Arc<Dek>>> = HashMap::new();
    let actor = Actor::system();
    for row in rows {
        let Some(delivery) = open_due(state, &actor, &row, &mut deks, now).await else {
            continue;
        };
        let message = match compose(state, mailer, &row, &delivery).await {
            Ok(m) => m,
            Err(Unsendable::Never(reason)) => {
                drop_message(state, &actor, &row, reason, now).await;
                continue;
            }
            Err(Unsendable::NoNoticeEmail) => {
                postpone(state, &row, now).await;
                continue;
            }
        };
        let Some(claimed) = claim(state, &actor, &row, &delivery, now).await else {
            continue;
        };
        send(state, mailer, &actor, &row, &claimed, message).await;
    }
}

async fn send(
    state: &AppState,
    mailer: &Mailer,
    actor: &Actor,
    row: &OutboxRow,
    claimed: &Claimed,
    message: Message,
) {
    match mailer.transport.send(message).await {
        Ok(_) => {
            if let Err(e) = flow::acknowledge(state, actor, row, "smtp").await {
                tracing::warn!(code = e.code, "outbox smtp: acknowledgement not stored");
            }
        }
        Err(e) => retry_later(state, row, claimed, failure(&e), "smtp").await,
    }
}

/// The language of the request a message is about (English without one,
/// and for a recipient: a company's system, not the customer).
async fn language_of(state: &AppState, row: &OutboxRow) -> Language {
    let Some(id) = row.request_id else {
        return Language::En;
    };
    if row.kind == outbox::RECIPIENT_NOTICE {
        return Language::En;
    }
    match state.store.request_row(id).await {
        Ok(Some(r)) => r
            .language
            .as_deref()
            .and_then(Language::parse)
            .unwrap_or_default(),
        _ => Language::En,
    }
}

/// Why a message addressed by email is not sent now.
enum Unsendable {
    /// It can never be sent by email (named in the audit trail): dropped.
    Never(&'static str),
    /// A notice to a recipient whose role the policy no longer gives a
    /// `notice_email`: left for the notifier, tried again later.
    NoNoticeEmail,
}

/// The email of a message.
async fn compose(
    state: &AppState,
    mailer: &Mailer,
    row: &OutboxRow,
    delivery: &Delivery,
) -> Result<Message, Unsendable> {
    let lang = language_of(state, row).await;
    let text = mail::render(&row.kind, lang, &delivery.body)
        .ok_or(Unsendable::Never("no_email_template"))?;
    let Some(address) = delivery.to.get("address").and_then(|a| a.as_str()) else {
        return Err(if row.kind == outbox::RECIPIENT_NOTICE {
            Unsendable::NoNoticeEmail
        } else {
            Unsendable::Never("invalid_address")
        });
    };
    let to = address
        .parse::<Mailbox>()
        .map_err(|_| Unsendable::Never("invalid_address"))?;
    Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(text.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(text.body)
        .map_err(|_| Unsendable::Never("invalid_message"))
}

/// Leaves a message for the notifier and tries it again after the backoff
/// (a guarded update, like a claim; nothing left the vault, so nothing is
/// audited).
async fn postpone(state: &AppState, row: &OutboxRow, now: i64) {
    tracing::warn!(message = %row.id, kind = %row.kind, "outbox smtp: the recipient's role has no notice_email; the message waits for the notifier");
    let retry_at =
        now + i64::try_from(outbox::backoff(row.attempts).as_micros()).unwrap_or(i64::MAX / 2);
    let unit = Unit {
        mutations: vec![
            RM::ClaimOutbox {
                id: row.id,
                expected_next: row.next_attempt_at,
                next_attempt_at: retry_at,
                attempts: row.attempts + 1,
                last_error: Some("no_notice_email".into()),
            }
            .into(),
        ],
        events: Vec::new(),
    };
    let _ = state.sequencer.commit(unit).await;
}

/// A message that can never be sent by email is dropped, and that audited.
async fn drop_message(
    state: &AppState,
    actor: &Actor,
    row: &OutboxRow,
    reason: &'static str,
    now: i64,
) {
    tracing::warn!(message = %row.id, reason, "outbox smtp: message cannot be sent by email; dropped");
    let unit = Unit {
        mutations: vec![
            RM::DropOutbox {
                id: row.id,
                at: now,
                reason: reason.into(),
            }
            .into(),
        ],
        events: vec![dropped_event(actor, row).reason("reason", reason)],
    };
    let _ = state.sequencer.commit(unit).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with_ca(ca: &std::path::Path) -> Settings {
        Settings {
            outbox_smtp_url: Some("smtps://mail.example.com".into()),
            outbox_smtp_from: Some("privacy@example.com".into()),
            outbox_smtp_ca_file: Some(ca.to_owned()),
            ..Settings::default()
        }
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_or_holds_no_certificate_stops_the_mailer() {
        crate::install_tls_provider();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = Mailer::from_settings(&settings_with_ca(&missing)).unwrap_err();
        assert!(err.contains("cannot read outbox_smtp_ca_file"), "{err}");
        for text in [
            "",
            "not a certificate\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let file = dir.path().join("ca.pem");
            std::fs::write(&file, text).unwrap();
            let err = Mailer::from_settings(&settings_with_ca(&file)).unwrap_err();
            assert!(err.contains("holds no PEM certificate"), "{text:?}: {err}");
        }
    }
}
