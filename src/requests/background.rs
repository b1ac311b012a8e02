//! Background work of the request life cycle in a serving process:
//! request upkeep (deny requests never verified once due, resume verified
//! requests whose carrying out was interrupted) and, when
//! `outbox_webhook_url` is set, webhook delivery of the outbox.
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
/// certificate at all).
pub fn start_background(state: &AppState) -> Result<(), String> {
    let webhook = match state.settings.outbox_webhook_url.clone() {
        Some(url) => Some((webhook_client(&state.settings)?, url)),
        None => None,
    };
    tokio::spawn(housekeeping_loop(state.downgrade()));
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
/// a 2xx acknowledges it, anything else schedules the next attempt.
pub async fn deliver_due(state: &AppState, client: &reqwest::Client, url: &str) {
    let now = state.clock.now_micros();
    let rows = match state.store.outbox_due(now, 20).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, "outbox poll");
            return;
        }
    };
    let mut deks: HashMap<Uuid, Option<Arc<Dek>>> = HashMap::new();
    for row in rows {
        let dek = customer_dek(state, &row, &mut deks).await;
        let actor = crate::actor::Actor::system();
        let delivery = match outbox::open_message(&row, dek.as_deref()) {
            Ok(d) => d,
            Err(OpenError::Delivered) => continue,
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
                    events: vec![dropped_event(&actor, &row)],
                };
                let _ = state.sequencer.commit(unit).await;
                continue;
            }
        };
        // The attempt is claimed (and the disclosure audited) before the
        // payload leaves the vault.
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
        if state.sequencer.commit(claim).await.is_err() {
            continue; // another process claimed it, or the audit trail is down
        }
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
        let retry_at = state.clock.now_micros()
            + i64::try_from(outbox::backoff(attempts - 1).as_micros()).unwrap_or(i64::MAX / 2);
        tracing::warn!(message = %row.id, attempt = attempts, error = %error, "outbox webhook delivery failed; will retry");
        let retry = Unit {
            mutations: vec![
                RM::ClaimOutbox {
                    id: row.id,
                    expected_next: lease,
                    next_attempt_at: retry_at,
                    attempts,
                    last_error: Some(error),
                }
                .into(),
            ],
            events: Vec::new(),
        };
        let _ = state.sequencer.commit(retry).await;
    }
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
