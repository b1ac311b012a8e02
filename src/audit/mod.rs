//! The audit trail: event model, hash chain, and the sequencer that appends.
//!
//! An event never holds a personal value, a token or a secret: only who
//! (actor id and role), what (action, field names, decision and reason
//! codes), for which purpose, about which customer id, and the request id.
//! Events form a hash chain: each event's hash covers its canonical form,
//! which includes the previous event's hash, so changing, removing or
//! reordering any event breaks every hash after it.

pub mod chain;
pub mod sequencer;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use sequencer::{CommitError, Sequencer};

/// An event before it is placed in the chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventDraft {
    pub actor: String,
    pub role: String,
    pub action: String,
    pub purpose: Option<String>,
    pub customer_id: Option<String>,
    pub fields: Vec<String>,
    pub decision: String,
    /// Field name (or "error") to a stable reason code.
    pub reasons: BTreeMap<String, String>,
    pub request_id: String,
}

impl EventDraft {
    pub fn new(actor: &str, role: &str, action: &str, decision: &str, request_id: &str) -> Self {
        EventDraft {
            actor: actor.to_owned(),
            role: role.to_owned(),
            action: action.to_owned(),
            decision: decision.to_owned(),
            request_id: request_id.to_owned(),
            ..EventDraft::default()
        }
    }
    pub fn purpose(mut self, purpose: Option<&str>) -> Self {
        self.purpose = purpose.map(str::to_owned);
        self
    }
    pub fn customer(mut self, id: impl ToString) -> Self {
        self.customer_id = Some(id.to_string());
        self
    }
    pub fn fields<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }
    pub fn reason(mut self, key: &str, code: &str) -> Self {
        self.reasons.insert(key.to_owned(), code.to_owned());
        self
    }
}

/// An event in the chain, as stored and exported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    /// Microseconds since the Unix epoch, UTC.
    pub at: i64,
    #[serde(flatten)]
    pub draft: EventDraft,
    /// Hex of the previous event's hash (64 zeros for the first event).
    pub prev_hash: String,
    pub hash: String,
}
