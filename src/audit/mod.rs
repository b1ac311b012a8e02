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
pub mod export;
pub mod metrics;
pub mod query;
pub mod retention;
pub mod sequencer;
pub mod service;
pub mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use sequencer::{CommitError, Committer, Sequencer};

macro_rules! actions {
    ($($variant:ident => $name:literal,)*) => {
        /// Every action the vault records, in one place. The auditor's query
        /// (`GET /v1/audit?action=`) accepts exactly these names and answers
        /// 400 `invalid_filter` for anything else.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($variant,)*
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The name recorded in the trail.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<Action> {
                match name {
                    $($name => Some(Action::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    CustomerCreate => "customer.create",
    CustomerRead => "customer.read",
    CustomerReadField => "customer.read_field",
    CustomerSearch => "customer.search",
    CustomerUpdate => "customer.update",
    CustomerRectify => "customer.rectify",
    CustomerExport => "customer.export",
    CustomerImport => "customer.import",
    CustomerErase => "customer.erase",
    ConsentGrant => "consent.grant",
    ConsentWithdraw => "consent.withdraw",
    ConsentRead => "consent.read",
    ConsentRecord => "consent.record",
    RequestReceived => "request.received",
    RequestMerged => "request.merged",
    RequestCodeSent => "request.code_sent",
    RequestCodeWithheld => "request.code_withheld",
    RequestVerified => "request.verified",
    RequestVerificationFailed => "request.verification_failed",
    RequestApproved => "request.approved",
    RequestDenied => "request.denied",
    RequestExtended => "request.extended",
    RequestCompleted => "request.completed",
    RequestExported => "request.exported",
    RequestRead => "request.read",
    RequestList => "request.list",
    RequestMetrics => "request.metrics",
    RequestLiftNoticeQueued => "request.lift_notice_queued",
    SubjectRestricted => "subject.restricted",
    SubjectRestrictionLifted => "subject.restriction_lifted",
    SubjectObjection => "subject.objection",
    SubjectObjectionWithdrawn => "subject.objection_withdrawn",
    SubjectOptOutSale => "subject.opt_out_sale",
    SubjectOptInSale => "subject.opt_in_sale",
    SubjectLimitSensitive => "subject.limit_sensitive",
    SubjectUnlimitSensitive => "subject.unlimit_sensitive",
    ErasureStarted => "erasure.started",
    ErasureValuesDeleted => "erasure.values_deleted",
    ErasureConsentsDeleted => "erasure.consents_deleted",
    ErasureRetainedReduced => "erasure.retained_reduced",
    ErasureReapplied => "erasure.reapplied",
    LegalHoldCreate => "legal_hold.create",
    LegalHoldRelease => "legal_hold.release",
    LegalHoldList => "legal_hold.list",
    RetentionExpired => "retention.expired",
    RetentionPurposeRemoved => "retention.purpose_removed",
    OutboxRead => "outbox.read",
    OutboxSend => "outbox.send",
    OutboxAcknowledged => "outbox.acknowledged",
    OutboxDropped => "outbox.dropped",
    TokenIssue => "token.issue",
    TokenIntrospect => "token.introspect",
    ClientCreate => "client.create",
    ClientDisable => "client.disable",
    ClientRotateSecret => "client.rotate_secret",
    UserCreate => "user.create",
    UserDisable => "user.disable",
    UserSetPassword => "user.set_password",
    KeysInit => "keys.init",
    KeysRead => "keys.read",
    KeysRotate => "keys.rotate",
    KeysRotateRoot => "keys.rotate_root",
    KeysRotateSigning => "keys.rotate_signing",
    KeysRotateTokenSigning => "keys.rotate_token_signing",
    KeysRetire => "keys.retire",
    KeysRewrap => "keys.rewrap",
    PolicyLoad => "policy.load",
    AuditQuery => "audit.query",
    AuditExport => "audit.export",
    AuditVerify => "audit.verify",
    AuditPublicKey => "audit.public_key",
    AuditPrune => "audit.prune",
    AuditRollbackAccepted => "audit.rollback_accepted",
    TombstonesRepair => "tombstones.repair",
    AccessLogRead => "access_log.read",
    ConsoleSignIn => "console.sign_in",
    ConsoleSignOut => "console.sign_out",
}

impl Action {
    /// A read of a customer's values (whole profile or one field): what a
    /// partially erased customer may still be served for a kept purpose.
    pub fn is_customer_read(self) -> bool {
        matches!(self, Action::CustomerRead | Action::CustomerReadField)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `action` names one of the recorded [`Action`]s.
pub fn is_known_action(action: &str) -> bool {
    Action::parse(action).is_some()
}

macro_rules! decisions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The outcome an audit event records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Decision {
            $($(#[$doc])* $variant,)*
        }

        impl Decision {
            pub const ALL: &'static [Decision] = &[$(Decision::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Decision::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<Decision> {
                match name {
                    $($name => Some(Decision::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

decisions! {
    Allowed => "allowed",
    /// Refused: the caller may not do this (purpose, capability, scope).
    Denied => "denied",
    /// A read that served nothing: every value withheld by the decision.
    Withheld => "withheld",
    NotFound => "not_found",
    /// Refused: the input was malformed or breaks a rule.
    Invalid => "invalid",
    Completed => "completed",
    PartiallyCompleted => "partially_completed",
    Erased => "erased",
    Deleted => "deleted",
    PartiallyErased => "partially_erased",
    AlreadyErased => "already_erased",
    Undeliverable => "undeliverable",
    Failed => "failed",
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub fn new(
        actor: &str,
        role: &str,
        action: Action,
        decision: Decision,
        request_id: &str,
    ) -> Self {
        EventDraft {
            actor: actor.to_owned(),
            role: role.to_owned(),
            action: action.as_str().to_owned(),
            decision: decision.as_str().to_owned(),
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
