//! Storage of data subject requests, request tokens, stored exports, the
//! outbox and the record of disclosures: the rows, the reads
//! ([`RequestStore`], a supertrait of [`Store`](super::Store), so every
//! store has them) and the writes ([`RequestMutation`], carried by
//! `Mutation::Requests` inside a unit like every other change).
//!
//! The store knows requests only as [`RequestRow`]s (plain columns); the
//! life cycle (`crate::requests::lifecycle::Request`, its kinds and
//! statuses) converts to and from them on its side. The SQL is in
//! `sql/requests.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;

/// One data subject request as stored: the `requests` table's columns.
/// `kind`, `regulation`, `status` and `denial_reason` hold the life cycle's
/// names for them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RequestRow {
    pub id: Uuid,
    pub kind: String,
    pub regulation: String,
    pub channel: String,
    pub customer_id: Option<Uuid>,
    pub identifier_field: Option<String>,
    pub status: String,
    pub filed_by: String,
    pub received_at: i64,
    pub due_at: i64,
    pub extended_at: Option<i64>,
    pub extension_reason: Option<String>,
    pub verified_at: Option<i64>,
    pub verification_method: Option<String>,
    pub verified_by: Option<String>,
    pub code_hash: Option<String>,
    pub code_expires_at: Option<i64>,
    pub code_attempts: i64,
    pub approved_at: Option<i64>,
    pub approved_by: Option<String>,
    pub responded_at: Option<i64>,
    pub denial_reason: Option<String>,
    pub denial_note: Option<String>,
    pub purpose: Option<String>,
    pub lift: bool,
    pub changes: Option<Vec<u8>>,
    pub result: Option<String>,
    pub merged_into: Option<Uuid>,
    /// `en`, `it`, `zh-Hans`; `None` (requests filed before languages): `en`.
    pub language: Option<String>,
    pub version: i64,
}

/// A stored export package (sealed under the customer's data key).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportRow {
    pub request_id: Uuid,
    pub customer_id: Uuid,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

/// One outbox message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: Uuid,
    /// `verification_code`, `request_outcome`, `restriction_lift_notice`,
    /// `recipient_notice`.
    pub kind: String,
    /// The customer concerned (whose data key seals the payload).
    pub customer_id: Option<Uuid>,
    pub request_id: Option<Uuid>,
    /// For notices to a recipient: its role and client id.
    pub recipient_role: Option<String>,
    pub recipient_client: Option<String>,
    /// The payload is sealed under the customer's data key.
    pub sealed: bool,
    /// JSON (sealed or not); `None` once delivered.
    pub payload: Option<Vec<u8>>,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
    /// A message to the customer: the channel of the address it goes to
    /// (`email`, `sms`); `None` for notices to recipients.
    pub channel: Option<String>,
}

/// One disclosure of a customer's values to a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureRow {
    pub customer_id: Uuid,
    pub recipient_role: String,
    pub client_id: String,
    pub purpose: String,
    pub fields: Vec<String>,
    pub at: i64,
}

/// Filters of `GET /v1/requests`.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
    /// Only open requests past their deadline at `now`.
    pub overdue: bool,
    pub now: i64,
    /// Requests with an id greater than this (paging).
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// Changes to requests, the outbox, disclosures and subject state.
#[derive(Debug, Clone)]
pub enum RequestMutation {
    InsertRequest(Box<RequestRow>),
    /// Writes the request as given, only if its stored version is still
    /// `row.version` (then version + 1); NotFound otherwise (a concurrent
    /// change won, nothing of the unit is applied).
    UpdateRequest(Box<RequestRow>),
    InsertToken {
        token_sha256: String,
        request_id: Uuid,
        at: i64,
    },
    PutExport(ExportRow),
    InsertOutbox(Box<OutboxRow>),
    /// Claims a message for a delivery attempt: only if `next_attempt_at`
    /// is still `expected_next` (so two processes never send it twice).
    ClaimOutbox {
        id: Uuid,
        expected_next: i64,
        next_attempt_at: i64,
        attempts: i64,
        last_error: Option<String>,
    },
    /// Delivered: the payload is blanked. NotFound when already delivered.
    AckOutbox {
        id: Uuid,
        at: i64,
    },
    /// Gives up on one message (it can never be delivered): the payload is
    /// blanked and `reason` recorded. NotFound when already delivered.
    DropOutbox {
        id: Uuid,
        at: i64,
        reason: String,
    },
    /// Blanks every undelivered payload sealed for `customer_id` (erasure).
    DropCustomerOutbox {
        customer_id: Uuid,
        at: i64,
    },
    RecordDisclosure(DisclosureRow),
    /// Subject state; NotFound when the customer is gone or erased.
    SetRestricted {
        customer_id: Uuid,
        value: bool,
    },
    SetOptedOutSale {
        customer_id: Uuid,
        value: bool,
    },
    SetLimitSensitive {
        customer_id: Uuid,
        value: bool,
    },
    /// NotFound when the customer does not exist or its erasure has begun.
    AddObjection {
        customer_id: Uuid,
        purpose: String,
        at: i64,
    },
    RemoveObjection {
        customer_id: Uuid,
        purpose: String,
    },
}

impl RequestMutation {
    /// Which customer's record rows this changes (the subject state:
    /// restriction, opt-outs, objections). Every kind is named here.
    pub fn record_change(&self) -> super::record_cache::RecordChange {
        use super::record_cache::RecordChange as C;
        match self {
            RequestMutation::SetRestricted { customer_id, .. }
            | RequestMutation::SetOptedOutSale { customer_id, .. }
            | RequestMutation::SetLimitSensitive { customer_id, .. }
            | RequestMutation::AddObjection { customer_id, .. }
            | RequestMutation::RemoveObjection { customer_id, .. } => C::Customer(*customer_id),
            RequestMutation::InsertRequest(_)
            | RequestMutation::UpdateRequest(_)
            | RequestMutation::InsertToken { .. }
            | RequestMutation::PutExport(_)
            | RequestMutation::InsertOutbox(_)
            | RequestMutation::ClaimOutbox { .. }
            | RequestMutation::AckOutbox { .. }
            | RequestMutation::DropOutbox { .. }
            | RequestMutation::DropCustomerOutbox { .. }
            | RequestMutation::RecordDisclosure(_) => C::None,
        }
    }
}

impl From<RequestMutation> for super::Mutation {
    fn from(m: RequestMutation) -> Self {
        super::Mutation::Requests(m)
    }
}

/// The reads of requests, the outbox and disclosures. The request reads
/// return rows; `crate::requests::StoredRequests` reads them as life-cycle
/// requests.
#[async_trait]
pub trait RequestStore: Send + Sync {
    async fn request_row(&self, id: Uuid) -> StoreResult<Option<RequestRow>>;
    /// The request a token (its SHA-256) belongs to.
    async fn request_for_token(&self, token_sha256: &str) -> StoreResult<Option<Uuid>>;
    /// Open requests of the customer, oldest first.
    async fn open_request_rows_of(&self, customer: Uuid) -> StoreResult<Vec<RequestRow>>;
    /// Every request of the customer, oldest first.
    async fn request_rows_of(&self, customer: Uuid) -> StoreResult<Vec<RequestRow>>;
    async fn list_request_rows(&self, filter: &RequestFilter) -> StoreResult<Vec<RequestRow>>;
    /// Requests received in `[from, to)`.
    async fn request_rows_received(&self, from: i64, to: i64) -> StoreResult<Vec<RequestRow>>;
    /// Requests with status `status`, by due date (background work).
    async fn request_rows_with_status(
        &self,
        status: &str,
        limit: i64,
    ) -> StoreResult<Vec<RequestRow>>;
    async fn request_export(&self, request: Uuid) -> StoreResult<Option<ExportRow>>;
    async fn outbox_message(&self, id: Uuid) -> StoreResult<Option<OutboxRow>>;
    /// Undelivered messages, oldest first.
    async fn outbox_pending(&self, limit: i64) -> StoreResult<Vec<OutboxRow>>;
    /// Undelivered messages whose next attempt is due at `now`.
    async fn outbox_due(&self, now: i64, limit: i64) -> StoreResult<Vec<OutboxRow>>;
    /// Like [`outbox_due`](Self::outbox_due), but only the messages to a
    /// customer's email (`email`) or only all the others (`!email`).
    async fn outbox_due_by_email(
        &self,
        now: i64,
        email: bool,
        limit: i64,
    ) -> StoreResult<Vec<OutboxRow>>;
    /// Every disclosure of the customer's values to a recipient, oldest first.
    async fn disclosures(&self, customer: Uuid) -> StoreResult<Vec<DisclosureRow>>;
}
