//! The outbox: messages the vault wants delivered — verification codes,
//! request outcomes, the notice before a restriction is lifted, and notices
//! to recipients (GDPR Art. 19). Each message is addressed when it is made:
//! to the customer's email or phone on file (`channel` `email` or `sms`), or
//! to a recipient role, by email when the policy gives the role a
//! `notice_email`. With `outbox_smtp_url` the vault emails every message
//! addressed by email itself ([`super::smtp`]); everything else — and every
//! message when it sends no email — waits for a notifier client, which
//! drains `GET /v1/outbox` and acknowledges each message, or is POSTed to a
//! webhook (`outbox_webhook_url`) by a background task.
//!
//! **Where personal values live.** A message to the customer must carry the
//! address on file and, for a verification, the code: the outbox is the one
//! place outside `field_values` where such values are stored, and only until
//! delivery. Their payload is sealed under *the customer's own data key*
//! (AES-256-GCM, the AAD naming the customer and `outbox:<message id>`, so a
//! payload moved to another message or customer does not open), not under a
//! vault-wide key, because:
//! - erasure destroys that key, so an erased customer's address or code does
//!   not survive in the outbox nor in any backup of it (R27); a message that
//!   can no longer be opened is dropped, never sent;
//! - key rotation only rewraps data keys, so pending messages stay readable
//!   without rewriting them;
//! - the payload is opened only when the notifier reads it (or the webhook
//!   sends it), and that read is audited; on acknowledgement the payload is
//!   deleted (set to NULL), leaving only ids, kind and times.
//!
//! Notices to recipients hold no personal value (customer id, request kind
//! and id, field names) and are stored as plain JSON.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::clock::rfc3339;
use crate::crypto::{CryptoError, Dek};
use crate::policy::{FieldType, Policy};
use crate::store::{CustomerRecord, Mutation, Store, StoreResult};
use crate::store::{DisclosureRow, OutboxRow, RequestMutation};

pub const VERIFICATION_CODE: &str = "verification_code";
pub const REQUEST_OUTCOME: &str = "request_outcome";
/// To the customer: staff filed a request on their behalf (with its token).
pub const REQUEST_FILED: &str = "request_filed";
pub const REQUEST_EXTENDED: &str = "request_extended";
pub const RESTRICTION_LIFT_NOTICE: &str = "restriction_lift_notice";
pub const RECIPIENT_NOTICE: &str = "recipient_notice";
/// The channel of a message that goes by email.
pub const EMAIL: &str = "email";

/// The address a message to the customer goes to: a value on file.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    /// The field it comes from (`email`, `phone`, …).
    pub field: String,
    /// `email` or `sms`.
    pub channel: String,
    pub address: String,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("field", &self.field)
            .field("channel", &self.channel)
            .field("address", &"[redacted]")
            .finish()
    }
}

/// What a sealed payload holds.
#[derive(Serialize, Deserialize)]
struct SealedPayload {
    to: Contact,
    body: Value,
}

/// The label a payload is sealed under (the "field" of the AAD).
fn seal_label(id: Uuid) -> String {
    format!("outbox:{id}")
}

/// A message to the customer at `to`, its payload sealed under the
/// customer's data key.
pub fn customer_message(
    dek: &Dek,
    customer: Uuid,
    kind: &str,
    request: Option<Uuid>,
    to: &Contact,
    body: Value,
    now: i64,
) -> Result<Mutation, CryptoError> {
    let id = Uuid::now_v7();
    let plain = Zeroizing::new(
        serde_json::to_vec(&SealedPayload {
            to: to.clone(),
            body,
        })
        .map_err(|_| CryptoError::EncryptionFailed)?,
    );
    let sealed = dek.encrypt_field(customer, &seal_label(id), &plain)?;
    Ok(RequestMutation::InsertOutbox(Box::new(OutboxRow {
        id,
        kind: kind.to_owned(),
        customer_id: Some(customer),
        request_id: request,
        recipient_role: None,
        recipient_client: None,
        sealed: true,
        payload: Some(sealed),
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        delivered_at: None,
        last_error: None,
        channel: Some(to.channel.clone()),
    }))
    .into())
}

/// A message whose payload holds no personal value (stored as plain JSON),
/// e.g. a notice to a recipient: `recipient` is its (role, client id);
/// `channel` is `email` when it goes by email.
pub fn outbox_message(
    kind: &str,
    customer: Option<Uuid>,
    request: Option<Uuid>,
    recipient: Option<(&str, &str)>,
    channel: Option<&str>,
    body: &Value,
    now: i64,
) -> Mutation {
    RequestMutation::InsertOutbox(Box::new(OutboxRow {
        id: Uuid::now_v7(),
        kind: kind.to_owned(),
        customer_id: customer,
        request_id: request,
        recipient_role: recipient.map(|(r, _)| r.to_owned()),
        recipient_client: recipient.map(|(_, c)| c.to_owned()),
        sealed: false,
        payload: Some(serde_json::to_vec(body).unwrap_or_default()),
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        delivered_at: None,
        last_error: None,
        channel: channel.map(str::to_owned),
    }))
    .into()
}

/// The distinct recipients (role, client id) the customer's values were
/// disclosed to, in the order of their first disclosure.
pub fn recipients_of(disclosures: &[DisclosureRow]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for d in disclosures {
        let key = (d.recipient_role.clone(), d.client_id.clone());
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// One notice per recipient the customer's data was disclosed to, telling
/// it of a rectification, erasure or restriction (GDPR Art. 19, R32). The
/// notice holds no personal value: the customer id, the kind, the request
/// id and, for a rectification, the names of the changed fields. It goes
/// by email when the policy gives the recipient's role a `notice_email`.
pub async fn recipient_notices(
    store: &dyn Store,
    policy: &Policy,
    customer: Uuid,
    kind: &str,
    request: Option<Uuid>,
    fields: &[String],
    now: i64,
) -> StoreResult<Vec<Mutation>> {
    let disclosures = store.disclosures(customer).await?;
    Ok(recipients_of(&disclosures)
        .iter()
        .map(|(role, client)| {
            let body = json!({
                "notice": kind,
                "customer_id": customer,
                "request_id": request,
                "fields": fields,
                "message": notice_text(kind),
            });
            let by_email = policy.role(role).is_some_and(|r| r.notice_email.is_some());
            outbox_message(
                RECIPIENT_NOTICE,
                Some(customer),
                request,
                Some((role, client)),
                by_email.then_some(EMAIL),
                &body,
                now,
            )
        })
        .collect())
}

fn notice_text(kind: &str) -> &'static str {
    match kind {
        "rectification" => {
            "The customer's data you received was rectified: read it again from the vault and replace your copy (GDPR Art. 16, 19)."
        }
        "erasure" => {
            "The customer's data was erased: delete every copy you hold (GDPR Art. 17, 19; CCPA §1798.105(c))."
        }
        "restriction" => {
            "Processing of the customer's data is restricted: store it, do not otherwise use it (GDPR Art. 18, 19)."
        }
        _ => "The customer's data changed.",
    }
}

/// The record of one disclosure, for a read by a recipient role that
/// returned `fields` (nothing is recorded when nothing was disclosed).
pub fn disclosure(
    role: &crate::policy::Role,
    client_id: &str,
    customer: Uuid,
    purpose: &str,
    fields: Vec<String>,
    now: i64,
) -> Option<Mutation> {
    if !role.recipient || fields.is_empty() {
        return None;
    }
    Some(
        RequestMutation::RecordDisclosure(DisclosureRow {
            customer_id: customer,
            recipient_role: role.name.clone(),
            client_id: client_id.to_owned(),
            purpose: purpose.to_owned(),
            fields,
            at: now,
        })
        .into(),
    )
}

/// The contact on file a message to the customer goes to: the `preferred`
/// field when it holds an email or phone value, else the first email-typed
/// field, else the first phone-typed one. `None`: nothing to write to.
pub fn contact_on_file(
    policy: &Policy,
    record: &CustomerRecord,
    dek: &Dek,
    preferred: Option<&str>,
) -> Option<Contact> {
    let channel_of = |field: &str| {
        policy.field(field).and_then(|d| match d.ty {
            FieldType::Email => Some("email"),
            FieldType::Phone => Some("sms"),
            _ => None,
        })
    };
    let mut candidates: Vec<&str> = Vec::new();
    if let Some(p) = preferred {
        candidates.push(p);
    }
    for wanted in ["email", "sms"] {
        for row in &record.fields {
            if channel_of(&row.field) == Some(wanted) {
                candidates.push(&row.field);
            }
        }
    }
    for field in candidates {
        let Some(channel) = channel_of(field) else {
            continue;
        };
        let Some(row) = record.fields.iter().find(|f| f.field == field) else {
            continue;
        };
        let Ok(plain) = dek.decrypt_field(record.customer.id, &row.field, &row.ciphertext) else {
            continue;
        };
        let Ok(address) = String::from_utf8(plain.to_vec()) else {
            continue;
        };
        return Some(Contact {
            field: row.field.clone(),
            channel: channel.to_owned(),
            address,
        });
    }
    None
}

/// A message as handed to the notifier or the webhook.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub kind: String,
    pub created_at: String,
    pub customer_id: Option<Uuid>,
    pub request_id: Option<Uuid>,
    /// Where to deliver: `{"field": …, "channel": "email" | "sms",
    /// "address": …}` for the customer; `{"recipient_role": …, "client_id":
    /// …}` for a recipient, with `"channel": "email", "address": …` when the
    /// policy gives its role a `notice_email`.
    #[schema(value_type = Object)]
    pub to: Value,
    #[schema(value_type = Object)]
    pub body: Value,
    /// Earlier delivery attempts (webhook, SMTP).
    pub attempts: i64,
}

impl Delivery {
    /// A notice to a recipient that goes by email, with the address the
    /// policy names for the recipient's role (`notice_email`); a role the
    /// policy no longer gives one keeps the message without an address.
    pub fn addressed(mut self, policy: &Policy) -> Delivery {
        let email = self.to.get("channel").and_then(Value::as_str) == Some(EMAIL);
        if email && self.to.get("address").is_none() {
            let role = self.to.get("recipient_role").and_then(Value::as_str);
            if let Some(address) = role
                .and_then(|r| policy.role(r))
                .and_then(|r| r.notice_email.as_deref())
            {
                self.to["address"] = json!(address);
            }
        }
        self
    }

    /// The field of the customer's address this delivery discloses, if any.
    pub fn contact_field(&self) -> Option<String> {
        self.to
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// Why a message cannot be handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Already delivered (payload gone).
    Delivered,
    /// Sealed for a customer whose data key is gone (erased): it will never
    /// be deliverable.
    Undeliverable,
}

/// Opens a message for delivery. `dek` is the customer's data key when the
/// message is sealed (the caller loads it; `None` when it is gone).
pub fn open_message(row: &OutboxRow, dek: Option<&Dek>) -> Result<Delivery, OpenError> {
    let Some(payload) = row.payload.as_ref() else {
        return Err(OpenError::Delivered);
    };
    let (to, body) = if row.sealed {
        let (Some(dek), Some(customer)) = (dek, row.customer_id) else {
            return Err(OpenError::Undeliverable);
        };
        let plain = dek
            .decrypt_field(customer, &seal_label(row.id), payload)
            .map_err(|_| OpenError::Undeliverable)?;
        let p: SealedPayload =
            serde_json::from_slice(&plain).map_err(|_| OpenError::Undeliverable)?;
        (
            json!({"field": p.to.field, "channel": p.to.channel, "address": p.to.address}),
            p.body,
        )
    } else {
        let body: Value = serde_json::from_slice(payload).map_err(|_| OpenError::Undeliverable)?;
        let mut to =
            json!({"recipient_role": row.recipient_role, "client_id": row.recipient_client});
        if let Some(channel) = &row.channel {
            to["channel"] = json!(channel);
        }
        (to, body)
    };
    Ok(Delivery {
        id: row.id,
        kind: row.kind.clone(),
        created_at: rfc3339(row.created_at),
        customer_id: row.customer_id,
        request_id: row.request_id,
        to,
        body,
        attempts: row.attempts,
    })
}

static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Tells this process's webhook sender that a message is waiting (other
/// processes find it at their next poll).
pub fn wake() {
    WAKE.notify_one();
}

/// Resolves at the next [`wake`].
pub async fn woken() {
    WAKE.notified().await;
}

/// The id of the message an [`outbox_message`] or [`customer_message`]
/// mutation inserts.
pub fn message_id(m: &Mutation) -> Option<Uuid> {
    match m {
        Mutation::Requests(RequestMutation::InsertOutbox(r)) => Some(r.id),
        _ => None,
    }
}

/// Delay before webhook attempt `attempts + 1`: 2, 4, 8 … seconds, at most
/// one hour.
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    let secs = 2u64.saturating_pow(exp.saturating_add(1)).min(3600);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> Contact {
        Contact {
            field: "email".into(),
            channel: "email".into(),
            address: "ada@example.com".into(),
        }
    }

    fn row_of(m: Mutation) -> OutboxRow {
        match m {
            Mutation::Requests(RequestMutation::InsertOutbox(r)) => *r,
            _ => panic!("not an outbox message"),
        }
    }

    #[test]
    fn customer_payloads_are_sealed_for_that_message_and_customer() {
        let dek = Dek::generate().unwrap();
        let customer = Uuid::now_v7();
        let row = row_of(
            customer_message(
                &dek,
                customer,
                VERIFICATION_CODE,
                None,
                &contact(),
                json!({"code": "12345678"}),
                7,
            )
            .unwrap(),
        );
        let stored = row.payload.clone().unwrap();
        let text = String::from_utf8_lossy(&stored);
        assert!(!text.contains("ada@example.com") && !text.contains("12345678"));
        let d = open_message(&row, Some(&dek)).unwrap();
        assert_eq!(d.to["address"], "ada@example.com");
        assert_eq!(d.body["code"], "12345678");
        assert_eq!(d.contact_field().as_deref(), Some("email"));
        // Another data key (the customer erased and gone) opens nothing.
        let other = Dek::generate().unwrap();
        assert_eq!(
            open_message(&row, Some(&other)).unwrap_err(),
            OpenError::Undeliverable
        );
        assert_eq!(
            open_message(&row, None).unwrap_err(),
            OpenError::Undeliverable
        );
        // Moved to another message id: does not open.
        let mut moved = row.clone();
        moved.id = Uuid::now_v7();
        assert!(open_message(&moved, Some(&dek)).is_err());
        let mut done = row;
        done.payload = None;
        assert_eq!(
            open_message(&done, Some(&dek)).unwrap_err(),
            OpenError::Delivered
        );
        assert!(!format!("{:?}", contact()).contains("ada@"));
    }

    #[test]
    fn recipients_are_listed_once_each() {
        let c = Uuid::now_v7();
        let d = |role: &str, client: &str, at| DisclosureRow {
            customer_id: c,
            recipient_role: role.into(),
            client_id: client.into(),
            purpose: "marketing".into(),
            fields: vec!["email".into()],
            at,
        };
        let r = recipients_of(&[
            d("marketing_tool", "a", 1),
            d("billing_system", "b", 2),
            d("marketing_tool", "a", 3),
        ]);
        assert_eq!(
            r,
            vec![
                ("marketing_tool".to_owned(), "a".to_owned()),
                ("billing_system".to_owned(), "b".to_owned())
            ]
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(1), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(64));
        assert_eq!(backoff(30), Duration::from_secs(3600));
        assert_eq!(backoff(-3), Duration::from_secs(2));
    }
}
