//! Storage of requests, request tokens, stored exports, the outbox and the
//! record of disclosures: the rows, the reads ([`RequestStore`], a
//! supertrait of [`Store`](crate::store::Store), so every store has them)
//! and the writes ([`RequestMutation`], carried by
//! `Mutation::Requests` inside a unit like every other change).
//!
//! As for the rest of the store, the SQL is written once, in the common
//! subset of SQLite and PostgreSQL, and `impl_request_store!` generates it
//! for both backends (invoked next to `impl_store!`).

use async_trait::async_trait;
use uuid::Uuid;

use super::lifecycle::Request;
use crate::store::StoreResult;

/// A stored export package (sealed under the customer's data key).
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub request_id: Uuid,
    pub customer_id: Uuid,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

/// One outbox message.
#[derive(Debug, Clone)]
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
    InsertRequest(Box<Request>),
    /// Writes the request as given, only if its stored version is still
    /// `row.version` (then version + 1); NotFound otherwise (a concurrent
    /// change won, nothing of the unit is applied).
    UpdateRequest(Box<Request>),
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

impl From<RequestMutation> for crate::store::Mutation {
    fn from(m: RequestMutation) -> Self {
        crate::store::Mutation::Requests(m)
    }
}

/// The reads of requests, the outbox and disclosures.
#[async_trait]
pub trait RequestStore: Send + Sync {
    async fn request(&self, id: Uuid) -> StoreResult<Option<Request>>;
    /// The request a token (its SHA-256) belongs to.
    async fn request_for_token(&self, token_sha256: &str) -> StoreResult<Option<Uuid>>;
    /// Open requests of the customer, oldest first.
    async fn open_requests_of(&self, customer: Uuid) -> StoreResult<Vec<Request>>;
    /// Every request of the customer, oldest first.
    async fn requests_of(&self, customer: Uuid) -> StoreResult<Vec<Request>>;
    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<Request>>;
    /// Requests received in `[from, to)`.
    async fn requests_received(&self, from: i64, to: i64) -> StoreResult<Vec<Request>>;
    /// Requests with status `status`, oldest first (background work).
    async fn requests_with_status(&self, status: &str, limit: i64) -> StoreResult<Vec<Request>>;
    async fn request_export(&self, request: Uuid) -> StoreResult<Option<ExportRow>>;
    async fn outbox_message(&self, id: Uuid) -> StoreResult<Option<OutboxRow>>;
    /// Undelivered messages, oldest first.
    async fn outbox_pending(&self, limit: i64) -> StoreResult<Vec<OutboxRow>>;
    /// Undelivered messages whose next attempt is due at `now`.
    async fn outbox_due(&self, now: i64, limit: i64) -> StoreResult<Vec<OutboxRow>>;
    /// Every disclosure of the customer's values to a recipient, oldest first.
    async fn disclosures(&self, customer: Uuid) -> StoreResult<Vec<DisclosureRow>>;
}

/// Generates `impl RequestStore for $store` and `apply_requests()` for a
/// backend type with a `pool: Pool<$db>`; invoke it in the backend's module.
macro_rules! impl_request_store {
    ($store:ty, $db:ty) => {
        fn request_from_row(
            r: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::requests::lifecycle::Request, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::requests::lifecycle::{DenialReason, Kind, Regulation, Status};
            let bad = |what: &str| $crate::store::StoreError::Database(format!("unknown {what} in requests"));
            let kind: String = r.try_get("kind")?;
            let regulation: String = r.try_get("regulation")?;
            let status: String = r.try_get("status")?;
            let denial: Option<String> = r.try_get("denial_reason")?;
            Ok($crate::requests::lifecycle::Request {
                id: r.try_get("id")?,
                kind: Kind::parse(&kind).ok_or_else(|| bad("kind"))?,
                regulation: Regulation::parse(&regulation).ok_or_else(|| bad("regulation"))?,
                channel: r.try_get("channel")?,
                customer_id: r.try_get("customer_id")?,
                identifier_field: r.try_get("identifier_field")?,
                status: Status::parse(&status).ok_or_else(|| bad("status"))?,
                filed_by: r.try_get("filed_by")?,
                received_at: r.try_get("received_at")?,
                due_at: r.try_get("due_at")?,
                extended_at: r.try_get("extended_at")?,
                extension_reason: r.try_get("extension_reason")?,
                verified_at: r.try_get("verified_at")?,
                verification_method: r.try_get("verification_method")?,
                verified_by: r.try_get("verified_by")?,
                code_hash: r.try_get("code_hash")?,
                code_expires_at: r.try_get("code_expires_at")?,
                code_attempts: r.try_get("code_attempts")?,
                approved_at: r.try_get("approved_at")?,
                approved_by: r.try_get("approved_by")?,
                responded_at: r.try_get("responded_at")?,
                denial_reason: match denial {
                    Some(d) => Some(DenialReason::parse(&d).ok_or_else(|| bad("denial reason"))?),
                    None => None,
                },
                denial_note: r.try_get("denial_note")?,
                purpose: r.try_get("purpose")?,
                lift: r.try_get("lift")?,
                changes: r.try_get("changes")?,
                result: r.try_get("result")?,
                merged_into: r.try_get("merged_into")?,
                version: r.try_get("version")?,
            })
        }

        fn outbox_from_row(
            r: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::requests::store::OutboxRow, $crate::store::StoreError> {
            use sqlx::Row as _;
            Ok($crate::requests::store::OutboxRow {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                customer_id: r.try_get("customer_id")?,
                request_id: r.try_get("request_id")?,
                recipient_role: r.try_get("recipient_role")?,
                recipient_client: r.try_get("recipient_client")?,
                sealed: r.try_get("sealed")?,
                payload: r.try_get("payload")?,
                created_at: r.try_get("created_at")?,
                attempts: r.try_get("attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                delivered_at: r.try_get("delivered_at")?,
                last_error: r.try_get("last_error")?,
            })
        }

        fn requests_from_rows(
            rows: Vec<<$db as sqlx::Database>::Row>,
        ) -> Result<Vec<$crate::requests::lifecycle::Request>, $crate::store::StoreError> {
            rows.iter().map(request_from_row).collect()
        }

        #[async_trait::async_trait]
        impl $crate::requests::store::RequestStore for $store {
            async fn request(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::requests::lifecycle::Request>> {
                let row = sqlx::query(
                    "SELECT id, kind, regulation, channel, customer_id, \
                     identifier_field, status, filed_by, received_at, due_at, extended_at, extension_reason, \
                     verified_at, verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
                     approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, changes, \
                     result, merged_into, version FROM requests WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(request_from_row).transpose()
            }

            async fn request_for_token(
                &self,
                token_sha256: &str,
            ) -> $crate::store::StoreResult<Option<uuid::Uuid>> {
                Ok(sqlx::query_scalar("SELECT request_id FROM request_tokens WHERE token_sha256 = $1")
                    .bind(token_sha256)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn open_requests_of(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::requests::lifecycle::Request>> {
                let rows = sqlx::query(
                    "SELECT id, kind, regulation, channel, customer_id, \
                     identifier_field, status, filed_by, received_at, due_at, extended_at, extension_reason, \
                     verified_at, verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
                     approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, changes, \
                     result, merged_into, version FROM requests WHERE customer_id = $1 \
                     AND status IN ('received', 'verifying', 'verified', 'awaiting_approval') \
                     ORDER BY received_at, id",
                )
                .bind(customer)
                .fetch_all(&self.pool)
                .await?;
                requests_from_rows(rows)
            }

            async fn requests_of(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::requests::lifecycle::Request>> {
                let rows = sqlx::query(
                    "SELECT id, kind, regulation, channel, customer_id, \
                     identifier_field, status, filed_by, received_at, due_at, extended_at, extension_reason, \
                     verified_at, verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
                     approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, changes, \
                     result, merged_into, version FROM requests WHERE customer_id = $1 \
                     ORDER BY received_at, id",
                )
                .bind(customer)
                .fetch_all(&self.pool)
                .await?;
                requests_from_rows(rows)
            }

            async fn list_requests(
                &self,
                f: &$crate::requests::store::RequestFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::requests::lifecycle::Request>> {
                let rows = sqlx::query(
                    "SELECT id, kind, regulation, channel, customer_id, \
                     identifier_field, status, filed_by, received_at, due_at, extended_at, extension_reason, \
                     verified_at, verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
                     approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, changes, \
                     result, merged_into, version FROM requests \
                     WHERE ($1 IS NULL OR status = $1) \
                     AND ($2 IS NULL OR kind = $2) \
                     AND ($3 = FALSE OR (due_at < $4 \
                          AND status IN ('received', 'verifying', 'verified', 'awaiting_approval'))) \
                     AND ($5 IS NULL OR id > $5) \
                     ORDER BY id LIMIT $6",
                )
                .bind(&f.status)
                .bind(&f.kind)
                .bind(f.overdue)
                .bind(f.now)
                .bind(f.after)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?;
                requests_from_rows(rows)
            }

            async fn requests_received(
                &self,
                from: i64,
                to: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::requests::lifecycle::Request>> {
                let rows = sqlx::query(
                    "SELECT id, kind, regulation, channel, customer_id, \
                     identifier_field, status, filed_by, received_at, due_at, extended_at, extension_reason, \
                     verified_at, verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
                     approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, changes, \
                     result, merged_into, version FROM requests \
                     WHERE received_at >= $1 AND received_at < $2 ORDER BY received_at, id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?;
                requests_from_rows(rows)
            }

            async fn requests_with_status(
                &self,
                status: &str,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::requests::lifecycle::Request>> {
                let rows = sqlx::query(
                    "SELECT id, kind, regulation, channel, customer_id, \
                     identifier_field, status, filed_by, received_at, due_at, extended_at, extension_reason, \
                     verified_at, verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
                     approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, changes, \
                     result, merged_into, version FROM requests \
                     WHERE status = $1 ORDER BY due_at, id LIMIT $2",
                )
                .bind(status)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                requests_from_rows(rows)
            }

            async fn request_export(
                &self,
                request: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::requests::store::ExportRow>> {
                let row: Option<(uuid::Uuid, uuid::Uuid, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT request_id, customer_id, ciphertext, created_at FROM request_exports WHERE request_id = $1",
                )
                .bind(request)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(request_id, customer_id, ciphertext, created_at)| {
                    $crate::requests::store::ExportRow { request_id, customer_id, ciphertext, created_at }
                }))
            }

            async fn outbox_message(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::requests::store::OutboxRow>> {
                let row = sqlx::query(
                    "SELECT id, kind, customer_id, request_id, recipient_role, recipient_client, sealed, \
                     payload, created_at, attempts, next_attempt_at, delivered_at, last_error \
                     FROM outbox WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(outbox_from_row).transpose()
            }

            async fn outbox_pending(
                &self,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::requests::store::OutboxRow>> {
                let rows = sqlx::query(
                    "SELECT id, kind, customer_id, request_id, recipient_role, recipient_client, sealed, \
                     payload, created_at, attempts, next_attempt_at, delivered_at, last_error \
                     FROM outbox WHERE delivered_at IS NULL ORDER BY created_at, id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(outbox_from_row).collect()
            }

            async fn outbox_due(
                &self,
                now: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::requests::store::OutboxRow>> {
                let rows = sqlx::query(
                    "SELECT id, kind, customer_id, request_id, recipient_role, recipient_client, sealed, \
                     payload, created_at, attempts, next_attempt_at, delivered_at, last_error \
                     FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
                     ORDER BY next_attempt_at, id LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(outbox_from_row).collect()
            }

            async fn disclosures(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::requests::store::DisclosureRow>> {
                let rows: Vec<(uuid::Uuid, String, String, String, String, i64)> = sqlx::query_as(
                    "SELECT customer_id, recipient_role, client_id, purpose, fields, at \
                     FROM disclosures WHERE customer_id = $1 ORDER BY at",
                )
                .bind(customer)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(customer_id, recipient_role, client_id, purpose, fields, at)| {
                        $crate::requests::store::DisclosureRow {
                            customer_id,
                            recipient_role,
                            client_id,
                            purpose,
                            fields: serde_json::from_str(&fields).unwrap_or_default(),
                            at,
                        }
                    })
                    .collect())
            }
        }

        /// Applies one request mutation inside the batch transaction.
        async fn apply_requests(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::requests::store::RequestMutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::requests::store::RequestMutation as R;
            use $crate::store::StoreError;
            let must_change = |n: u64| if n == 0 { Err(StoreError::NotFound) } else { Ok(()) };
            match m {
                R::InsertRequest(r) => {
                    sqlx::query(
                        "INSERT INTO requests (id, kind, regulation, channel, customer_id, \
                         identifier_field, status, filed_by, received_at, due_at, extended_at, extension_reason, \
                         verified_at, verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
                         approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, changes, \
                         result, merged_into, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                         $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, 0)",
                    )
                    .bind(r.id)
                    .bind(r.kind.as_str())
                    .bind(r.regulation.as_str())
                    .bind(&r.channel)
                    .bind(r.customer_id)
                    .bind(&r.identifier_field)
                    .bind(r.status.as_str())
                    .bind(&r.filed_by)
                    .bind(r.received_at)
                    .bind(r.due_at)
                    .bind(r.extended_at)
                    .bind(&r.extension_reason)
                    .bind(r.verified_at)
                    .bind(&r.verification_method)
                    .bind(&r.verified_by)
                    .bind(&r.code_hash)
                    .bind(r.code_expires_at)
                    .bind(r.code_attempts)
                    .bind(r.approved_at)
                    .bind(&r.approved_by)
                    .bind(r.responded_at)
                    .bind(r.denial_reason.map(|d| d.as_str()))
                    .bind(&r.denial_note)
                    .bind(&r.purpose)
                    .bind(r.lift)
                    .bind(&r.changes)
                    .bind(&r.result)
                    .bind(r.merged_into)
                    .execute(&mut **tx)
                    .await?;
                }
                R::UpdateRequest(r) => {
                    let done = sqlx::query(
                        "UPDATE requests SET customer_id = $3, status = $4, due_at = $5, extended_at = $6, \
                         extension_reason = $7, verified_at = $8, verification_method = $9, verified_by = $10, \
                         code_hash = $11, code_expires_at = $12, code_attempts = $13, approved_at = $14, \
                         approved_by = $15, responded_at = $16, denial_reason = $17, denial_note = $18, \
                         changes = $19, result = $20, merged_into = $21, version = version + 1 \
                         WHERE id = $1 AND version = $2",
                    )
                    .bind(r.id)
                    .bind(r.version)
                    .bind(r.customer_id)
                    .bind(r.status.as_str())
                    .bind(r.due_at)
                    .bind(r.extended_at)
                    .bind(&r.extension_reason)
                    .bind(r.verified_at)
                    .bind(&r.verification_method)
                    .bind(&r.verified_by)
                    .bind(&r.code_hash)
                    .bind(r.code_expires_at)
                    .bind(r.code_attempts)
                    .bind(r.approved_at)
                    .bind(&r.approved_by)
                    .bind(r.responded_at)
                    .bind(r.denial_reason.map(|d| d.as_str()))
                    .bind(&r.denial_note)
                    .bind(&r.changes)
                    .bind(&r.result)
                    .bind(r.merged_into)
                    .execute(&mut **tx)
                    .await?;
                    must_change(done.rows_affected())?;
                }
                R::InsertToken { token_sha256, request_id, at } => {
                    sqlx::query(
                        "INSERT INTO request_tokens (token_sha256, request_id, created_at) VALUES ($1, $2, $3)",
                    )
                    .bind(token_sha256)
                    .bind(request_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                R::PutExport(e) => {
                    sqlx::query("DELETE FROM request_exports WHERE request_id = $1")
                        .bind(e.request_id)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO request_exports (request_id, customer_id, ciphertext, created_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(e.request_id)
                    .bind(e.customer_id)
                    .bind(&e.ciphertext)
                    .bind(e.created_at)
                    .execute(&mut **tx)
                    .await?;
                }
                R::InsertOutbox(o) => {
                    sqlx::query(
                        "INSERT INTO outbox (id, kind, customer_id, request_id, recipient_role, recipient_client, \
                         sealed, payload, created_at, attempts, next_attempt_at, delivered_at, last_error) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    )
                    .bind(o.id)
                    .bind(&o.kind)
                    .bind(o.customer_id)
                    .bind(o.request_id)
                    .bind(&o.recipient_role)
                    .bind(&o.recipient_client)
                    .bind(o.sealed)
                    .bind(&o.payload)
                    .bind(o.created_at)
                    .bind(o.attempts)
                    .bind(o.next_attempt_at)
                    .bind(o.delivered_at)
                    .bind(&o.last_error)
                    .execute(&mut **tx)
                    .await?;
                }
                R::ClaimOutbox { id, expected_next, next_attempt_at, attempts, last_error } => {
                    let done = sqlx::query(
                        "UPDATE outbox SET next_attempt_at = $3, attempts = $4, last_error = $5 \
                         WHERE id = $1 AND next_attempt_at = $2 AND delivered_at IS NULL",
                    )
                    .bind(id)
                    .bind(expected_next)
                    .bind(next_attempt_at)
                    .bind(attempts)
                    .bind(last_error)
                    .execute(&mut **tx)
                    .await?;
                    must_change(done.rows_affected())?;
                }
                R::AckOutbox { id, at } => {
                    let done = sqlx::query(
                        "UPDATE outbox SET delivered_at = $2, payload = NULL, last_error = NULL \
                         WHERE id = $1 AND delivered_at IS NULL",
                    )
                    .bind(id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    must_change(done.rows_affected())?;
                }
                R::DropOutbox { id, at, reason } => {
                    let done = sqlx::query(
                        "UPDATE outbox SET delivered_at = $2, payload = NULL, last_error = $3 \
                         WHERE id = $1 AND delivered_at IS NULL",
                    )
                    .bind(id)
                    .bind(at)
                    .bind(reason)
                    .execute(&mut **tx)
                    .await?;
                    must_change(done.rows_affected())?;
                }
                R::DropCustomerOutbox { customer_id, at } => {
                    sqlx::query(
                        "UPDATE outbox SET delivered_at = $2, payload = NULL, last_error = 'customer_erased' \
                         WHERE customer_id = $1 AND sealed = TRUE AND delivered_at IS NULL",
                    )
                    .bind(customer_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                R::RecordDisclosure(d) => {
                    sqlx::query(
                        "INSERT INTO disclosures (customer_id, recipient_role, client_id, purpose, fields, at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(d.customer_id)
                    .bind(&d.recipient_role)
                    .bind(&d.client_id)
                    .bind(&d.purpose)
                    .bind(serde_json::to_string(&d.fields).unwrap_or_default())
                    .bind(d.at)
                    .execute(&mut **tx)
                    .await?;
                }
                R::SetRestricted { customer_id, value } => {
                    let done = sqlx::query(
                        "UPDATE customers SET restricted = $2 WHERE id = $1 AND erased_at IS NULL",
                    )
                    .bind(customer_id)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                    must_change(done.rows_affected())?;
                }
                R::SetOptedOutSale { customer_id, value } => {
                    let done = sqlx::query(
                        "UPDATE customers SET opted_out_sale = $2 WHERE id = $1 AND erased_at IS NULL",
                    )
                    .bind(customer_id)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                    must_change(done.rows_affected())?;
                }
                R::SetLimitSensitive { customer_id, value } => {
                    let done = sqlx::query(
                        "UPDATE customers SET limit_sensitive = $2 WHERE id = $1 AND erased_at IS NULL",
                    )
                    .bind(customer_id)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                    must_change(done.rows_affected())?;
                }
                R::AddObjection { customer_id, purpose, at } => {
                    // Refused (NotFound) once the customer's erasure has begun.
                    let live: Option<uuid::Uuid> = sqlx::query_scalar(
                        "SELECT id FROM customers WHERE id = $1 AND erased_at IS NULL",
                    )
                    .bind(customer_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if live.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    sqlx::query(
                        "INSERT INTO objections (customer_id, purpose, at) VALUES ($1, $2, $3) \
                         ON CONFLICT (customer_id, purpose) DO NOTHING",
                    )
                    .bind(customer_id)
                    .bind(purpose)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                R::RemoveObjection { customer_id, purpose } => {
                    sqlx::query("DELETE FROM objections WHERE customer_id = $1 AND purpose = $2")
                        .bind(customer_id)
                        .bind(purpose)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Ok(())
        }
    };
}

pub(crate) use impl_request_store;
