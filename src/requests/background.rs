//! Background work of the request life cycle in a serving process:
//! request upkeep (deny requests never verified once due, resume verified
//! requests whose carrying out was interrupted) and, when
//! `outbox_webhook_url` is set, webhook delivery of the outbox, and when
//! `outbox_smtp_url` is set, email delivery of the messages to customers
//! ([`super::smtp`]).
//!
//! The tasks hold only a weak handle on the state, so they end with it; they
//! coordinate with other processes through the database (a delivery attempt
//! is claimed by a guarded update), never through process memory. A webhook
//! that is down delays its messages (exponential backoff) and nothing else:
//! no request ever waits for it.
//!
//! The webhook may be `https://`: TLS is rustls on ring (the provider
//! [`crate::install_tls_provider`] installs), the server's certificate is
//! checked against the system's CA store (rustls-platform-verifier, which
//! on Linux reads it through rustls-native-certs) plus the certificates in
//! `outbox_webhook_ca_file`. Redirects are not followed: a payload holding
//! an address or a code goes to the configured URL or nowhere.

use crate::audit::{Action, Decision};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use uuid::Uuid;

use super::flow;
use super::outbox::{self, OpenError};
use crate::config::Settings;
use crate::crypto::Dek;
use crate::customers::unwrap_dek;
use crate::state::{AppState, Inner};
use crate::store::{OutboxRow, RequestMutation as RM, Unit};

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
const WEBHOOK_POLL: Duration = Duration::from_secs(1);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// A claimed attempt not finished within this is tried again.
const CLAIM_LEASE_US: i64 = 60_000_000;

/// Starts the request life cycle's background tasks. Fails when the
/// webhook's HTTP client cannot be built (an unreadable CA file, no trusted
/// certificate at all) or the SMTP settings are unusable (an unreadable
/// password file).
pub fn start_background(state: &AppState) -> Result<(), String> {
    let webhook = match state.settings.outbox_webhook_url.clone() {
        Some(url) => Some((webhook_client(&state.settings)?, url)),
        None => None,
    };
    let mailer = super::smtp::Mailer::from_settings(&state.settings)?;
    tokio::spawn(housekeeping_loop(state.downgrade()));
    if let Some(mailer) = mailer {
        tokio::spawn(super::smtp::smtp_loop(state.downgrade(), mailer));
    }
    if let Some((client, url)) = webhook {
        tokio::spawn(webhook_loop(state.downgrade(), client, url));
    }
    Ok(())
}

/// The client the outbox is POSTed with: a 10 s timeout, no redirects,
/// TLS on ring trusting the system's CA store and the certificates of
/// `outbox_webhook_ca_file` (PEM, one or more).
pub fn webhook_client(settings: &Settings) -> Result<reqwest::Client, String> {
    crate::install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &settings.outbox_webhook_ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read outbox_webhook_ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| {
                format!(
                    "outbox_webhook_ca_file {} holds no PEM certificate",
                    path.display()
                )
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the outbox webhook's HTTPS client: {e}"))
}

async fn housekeeping_loop(weak: Weak<Inner>) {
    loop {
        tokio::time::sleep(HOUSEKEEPING_EVERY).await;
        let Some(state) = AppState::upgrade(&weak) else {
            return;
        };
        if let Err(e) = flow::housekeeping(&state).await {
            tracing::warn!(code = e.code, "request housekeeping failed");
        }
    }
}

async fn webhook_loop(weak: Weak<Inner>, client: reqwest::Client, url: String) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(WEBHOOK_POLL) => {}
            () = outbox::woken() => {}
        }
        let Some(state) = AppState::upgrade(&weak) else {
            return;
        };
        deliver_due(&state, &client, &url).await;
    }
}

/// One pass: every message due for an attempt is claimed, opened, POSTed;
/// a 2xx acknowledges it, anything else schedules the next attempt. With
/// SMTP delivery on, the messages to a customer's email are left to it.
pub async fn deliver_due(state: &AppState, client: &reqwest::Client, url: &str) {
    let now = state.clock.now_micros();
    let rows = if state.settings.outbox_smtp_url.is_some() {
        state.store.outbox_due_by_email(now, false, 20).await
    } else {
        state.store.outbox_due(now, 20).await
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, "outbox poll");
            return;
        }
    };
    let mut deks: HashMap<Uuid, Option<Arc<Dek>>> = HashMap::new();
    let actor = crate::actor::Actor::system();
    for row in rows {
        let Some(delivery) = open_due(state, &actor, &row, &mut deks, now).await else {
            continue;
        };
        let Some(claimed) = claim(state, &actor, &row, &delivery, now).await else {
            continue;
        };
        let outcome = client.post(url).json(&delivery).send().await;
        let error = match outcome {
            Ok(resp) if resp.status().is_success() => {
                if let Err(e) = flow::acknowledge(state, &actor, &row, "webhook").await {
                    tracing::warn!(code = e.code, "outbox webhook: acknowledgement not stored");
                }
                continue;
            }
            Ok(resp) => format!("http_{}", resp.status().as_u16()),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            // No answer, or a refused TLS handshake (an untrusted certificate).
            Err(_) => "unreachable".to_owned(),
        };
        retry_later(state, &row, &claimed, error, "webhook").await;
    }
}

/// A message due for an attempt, opened; `None` when there is nothing to
/// send: delivered meanwhile, or sealed for a customer whose key is gone
/// (then it is dropped, and the drop audited).
pub(crate) async fn open_due(
    state: &AppState,
    actor: &crate::actor::Actor,
    row: &OutboxRow,
    deks: &mut HashMap<Uuid, Option<Arc<Dek>>>,
    now: i64,
) -> Option<outbox::Delivery> {
    let dek = customer_dek(state, row, deks).await;
    match outbox::open_message(row, dek.as_deref()) {
        Ok(d) => Some(d.addressed(&state.policy)),
        Err(OpenError::Delivered) => None,
        Err(OpenError::Undeliverable) => {
            let unit = Unit {
                mutations: vec![
                    RM::DropOutbox {
                        id: row.id,
                        at: now,
                        reason: "undeliverable".into(),
                    }
                    .into(),
                ],
                events: vec![dropped_event(actor, row)],
            };
            let _ = state.sequencer.commit(unit).await;
            None
        }
    }
}

/// An attempt this process claimed: nobody else tries the message before
/// `lease` (unless this process dies, when the lease runs out).
pub(crate) struct Claimed {
    pub attempts: i64,
    pub lease: i64,
}

/// Claims the next attempt at a message (a guarded update: it fails when
/// another process claimed it first) and audits the disclosure, in one
/// unit, before the payload leaves the vault. `None`: not ours to send.
pub(crate) async fn claim(
    state: &AppState,
    actor: &crate::actor::Actor,
    row: &OutboxRow,
    delivery: &outbox::Delivery,
    now: i64,
) -> Option<Claimed> {
    let attempts = row.attempts + 1;
    let lease = now + CLAIM_LEASE_US;
    let mut send = actor
        .event(Action::OutboxSend, Decision::Allowed)
        .reason("message", &row.id.to_string())
        .reason("kind", &row.kind)
        .reason("attempt", &attempts.to_string());
    if let Some(c) = row.customer_id {
        send = send.customer(c);
    }
    if let Some(f) = delivery.contact_field() {
        send = send.fields([f]);
    }
    let claim = Unit {
        mutations: vec![
            RM::ClaimOutbox {
                id: row.id,
                expected_next: row.next_attempt_at,
                next_attempt_at: lease,
                attempts,
                last_error: row.last_error.clone(),
            }
            .into(),
        ],
        events: vec![send],
    };
    // An error: another process claimed it, or the audit trail is down.
    state.sequencer.commit(claim).await.ok()?;
    Some(Claimed { attempts, lease })
}

/// Schedules the next attempt after a failed one (exponential backoff),
/// recording why it failed: a short code, never an address or a code.
pub(crate) async fn retry_later(
    state: &AppState,
    row: &OutboxRow,
    claimed: &Claimed,
    error: String,
    via: &str,
) {
    let retry_at = state.clock.now_micros()
        + i64::try_from(outbox::backoff(claimed.attempts - 1).as_micros()).unwrap_or(i64::MAX / 2);
    tracing::warn!(message = %row.id, attempt = claimed.attempts, error = %error, via, "outbox delivery failed; will retry");
    let retry = Unit {
        mutations: vec![
            RM::ClaimOutbox {
                id: row.id,
                expected_next: claimed.lease,
                next_attempt_at: retry_at,
                attempts: claimed.attempts,
                last_error: Some(error),
            }
            .into(),
        ],
        events: Vec::new(),
    };
    let _ = state.sequencer.commit(retry).await;
}

/// The data key that seals a message's payload, once per customer per pass.
pub(crate) async fn customer_dek(
    state: &AppState,
    row: &OutboxRow,
    cache: &mut HashMap<Uuid, Option<Arc<Dek>>>,
) -> Option<Arc<Dek>> {
    if !row.sealed {
        return None;
    }
    let customer = row.customer_id?;
    if let Some(k) = cache.get(&customer) {
        return k.clone();
    }
    let dek = match state.store.customer_record(customer).await {
        Ok(Some(record)) if record.customer.wrapped_dek.is_some() => {
            unwrap_dek(state, &record).ok().map(Arc::new)
        }
        _ => None,
    };
    cache.insert(customer, dek.clone());
    dek
}

pub(crate) fn dropped_event(
    actor: &crate::actor::Actor,
    row: &OutboxRow,
) -> crate::audit::EventDraft {
    let mut e = actor
        .event(Action::OutboxDropped, Decision::Undeliverable)
        .reason("message", &row.id.to_string())
        .reason("kind", &row.kind);
    if let Some(c) = row.customer_id {
        e = e.customer(c);
    }
    e
}
