//! The audit trail: event model, hash chain, and the sequencer that appends.
//!
//! An event never holds a personal value, a token or a secret: only who
//! (actor id and role), what (action, field names, decision and reason
//! codes), for which purpose, about which customer id, and the request id.
//! Events form a hash chain: each event's hash covers its canonical form,
//! which includes the previous event's hash, so changing, removing or
//! reordering any event breaks every hash after it.

pub mod chain;
pub mod checkpoint;
pub mod cli;
pub mod export;
pub mod metrics;
pub mod query;
pub mod retention;
pub mod sequencer;
pub mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use sequencer::{CommitError, Sequencer};

/// Every action the vault records, in one place. The auditor's query
/// (`GET /v1/audit?action=`) accepts exactly these and answers 400
/// `invalid_filter` for anything else. A module that records a new action
/// adds it here (a unit test checks that the actions written in `src/` are
/// listed).
pub const ACTIONS: &[&str] = &[
    // Customers and their data
    "customer.create",
    "customer.read",
    "customer.read_field",
    "customer.search",
    "customer.update",
    "customer.rectify",
    "customer.export",
    "customer.import",
    "customer.erase",
    // Consent
    "consent.grant",
    "consent.withdraw",
    "consent.read",
    // Data subject requests and the subject's choices
    "request.received",
    "request.merged",
    "request.code_sent",
    "request.code_withheld",
    "request.verified",
    "request.verification_failed",
    "request.approved",
    "request.denied",
    "request.extended",
    "request.completed",
    "request.exported",
    "request.read",
    "request.list",
    "request.metrics",
    "request.lift_notice_queued",
    "subject.restricted",
    "subject.restriction_lifted",
    "subject.objection",
    "subject.objection_withdrawn",
    "subject.opt_out_sale",
    "subject.opt_in_sale",
    "subject.limit_sensitive",
    "subject.unlimit_sensitive",
    // Erasure, legal holds, retention
    "erasure.started",
    "erasure.values_deleted",
    "erasure.consents_deleted",
    "erasure.retained_reduced",
    "erasure.reapplied",
    "legal_hold.create",
    "legal_hold.release",
    "legal_hold.list",
    "retention.expired",
    "retention.purpose_removed",
    // Outbox
    "outbox.read",
    "outbox.send",
    "outbox.acknowledged",
    "outbox.dropped",
    // Authentication and principals
    "token.issue",
    "client.create",
    "client.disable",
    "user.create",
    // Keys and policy
    "keys.init",
    "keys.read",
    "keys.rotate",
    "keys.rotate_root",
    "keys.rotate_signing",
    "keys.retire",
    "keys.rewrap",
    "policy.load",
    // The audit trail itself
    "audit.query",
    "audit.export",
    "audit.verify",
    "audit.public_key",
    "audit.prune",
    "access_log.read",
];

/// Whether `action` is one of [`ACTIONS`].
pub fn is_known_action(action: &str) -> bool {
    ACTIONS.contains(&action)
}

/// Starts the audit trail's background jobs in a serving process: signed
/// checkpoints and retention. They end once the state is dropped.
pub fn start_background(state: &crate::state::AppState) {
    tokio::spawn(checkpoint::run_checkpointer(state.downgrade()));
    tokio::spawn(retention::run_pruner(state.downgrade()));
}

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
