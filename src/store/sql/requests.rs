//! Data subject requests, request tokens, stored exports, the outbox,
//! disclosures and subject state: the SQL behind
//! [`RequestStore`](crate::store::RequestStore) and
//! [`RequestMutation`](crate::store::RequestMutation).

use crate::store::DisclosureRow;

/// `SELECT <every request column> FROM requests <tail>`, as one literal.
macro_rules! select_requests {
    ($tail:literal) => {
        concat!(
            "SELECT id, kind, regulation, channel, customer_id, identifier_field, status, \
             filed_by, received_at, due_at, extended_at, extension_reason, verified_at, \
             verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
             approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, \
             changes, result, merged_into, language, version FROM requests ",
            $tail
        )
    };
}

pub(in crate::store) const REQUEST: &str = select_requests!("WHERE id = $1");
pub(in crate::store) const OPEN_REQUESTS_OF: &str = select_requests!(
    "WHERE customer_id = $1 AND status IN ('received', 'verifying', 'verified', \
     'awaiting_approval') ORDER BY received_at, id"
);
pub(in crate::store) const REQUESTS_OF: &str =
    select_requests!("WHERE customer_id = $1 ORDER BY received_at, id");
pub(in crate::store) const LIST_REQUESTS: &str = select_requests!(
    "WHERE ($1 IS NULL OR status = $1) \
     AND ($2 IS NULL OR kind = $2) \
     AND ($3 = FALSE OR (due_at < $4 \
          AND status IN ('received', 'verifying', 'verified', 'awaiting_approval'))) \
     AND ($5 IS NULL OR id > $5) \
     ORDER BY id LIMIT $6"
);
pub(in crate::store) const REQUESTS_RECEIVED: &str =
    select_requests!("WHERE received_at >= $1 AND received_at < $2 ORDER BY received_at, id");
pub(in crate::store) const REQUESTS_WITH_STATUS: &str =
    select_requests!("WHERE status = $1 ORDER BY due_at, id LIMIT $2");
pub(in crate::store) const REQUEST_FOR_TOKEN: &str =
    "SELECT request_id FROM request_tokens WHERE token_sha256 = $1";
pub(in crate::store) const REQUEST_EXPORT: &str = "SELECT request_id, customer_id, ciphertext, \
     created_at FROM request_exports WHERE request_id = $1";

/// `SELECT <every outbox column> FROM outbox <tail>`, as one literal.
macro_rules! select_outbox {
    ($tail:literal) => {
        concat!(
            "SELECT id, kind, customer_id, request_id, recipient_role, recipient_client, \
             sealed, payload, created_at, attempts, next_attempt_at, delivered_at, last_error, \
             channel FROM outbox ",
            $tail
        )
    };
}

pub(in crate::store) const OUTBOX_MESSAGE: &str = select_outbox!("WHERE id = $1");
pub(in crate::store) const OUTBOX_PENDING: &str =
    select_outbox!("WHERE delivered_at IS NULL ORDER BY created_at, id LIMIT $1");
pub(in crate::store) const OUTBOX_DUE: &str = select_outbox!(
    "WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
);
/// Due messages to the customer's email (`$2` true) or all others.
pub(in crate::store) const OUTBOX_DUE_BY_EMAIL: &str = select_outbox!(
    "WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
     AND (CASE WHEN channel = 'email' THEN TRUE ELSE FALSE END) = $2 \
     ORDER BY next_attempt_at, id LIMIT $3"
);
pub(in crate::store) const DISCLOSURES: &str = "SELECT customer_id, recipient_role, client_id, \
     purpose, fields, at FROM disclosures WHERE customer_id = $1 ORDER BY at";

/// A `disclosures` row: `fields` is the JSON list of field names.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct DisclosureRecord {
    customer_id: uuid::Uuid,
    recipient_role: String,
    client_id: String,
    purpose: String,
    fields: String,
    at: i64,
}

impl From<DisclosureRecord> for DisclosureRow {
    fn from(r: DisclosureRecord) -> Self {
        DisclosureRow {
            customer_id: r.customer_id,
            recipient_role: r.recipient_role,
            client_id: r.client_id,
            purpose: r.purpose,
            fields: serde_json::from_str(&r.fields).unwrap_or_default(),
            at: r.at,
        }
    }
}

/// Generates `impl RequestStore for $store` and the request writes
/// (`apply_requests`, `insert_request`, `update_request`, `apply_outbox`,
/// `apply_subject_state`) for a backend with a `pool: Pool<$db>`; invoked
/// by `impl_store!`.
macro_rules! impl_request_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::RequestStore for $store {
            async fn request_row(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::RequestRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::REQUEST)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn request_for_token(
                &self,
                token_sha256: &str,
            ) -> $crate::store::StoreResult<Option<uuid::Uuid>> {
                Ok(sqlx::query_scalar($crate::store::sql::requests::REQUEST_FOR_TOKEN)
                    .bind(token_sha256)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn open_request_rows_of(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::RequestRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::OPEN_REQUESTS_OF)
                    .bind(customer)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn request_rows_of(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::RequestRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::REQUESTS_OF)
                    .bind(customer)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn list_request_rows(
                &self,
                f: &$crate::store::RequestFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::store::RequestRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::LIST_REQUESTS)
                    .bind(&f.status)
                    .bind(&f.kind)
                    .bind(f.overdue)
                    .bind(f.now)
                    .bind(f.after)
                    .bind(f.limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn request_rows_received(
                &self,
                from: i64,
                to: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::RequestRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::REQUESTS_RECEIVED)
                    .bind(from)
                    .bind(to)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn request_rows_with_status(
                &self,
                status: &str,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::RequestRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::REQUESTS_WITH_STATUS)
                    .bind(status)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn request_export(
                &self,
                request: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::ExportRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::REQUEST_EXPORT)
                    .bind(request)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn outbox_message(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::OutboxRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::OUTBOX_MESSAGE)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn outbox_pending(
                &self,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::OutboxRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::OUTBOX_PENDING)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn outbox_due(
                &self,
                now: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::OutboxRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::OUTBOX_DUE)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn outbox_due_by_email(
                &self,
                now: i64,
                email: bool,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::OutboxRow>> {
                Ok(sqlx::query_as($crate::store::sql::requests::OUTBOX_DUE_BY_EMAIL)
                    .bind(now)
                    .bind(email)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn disclosures(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::DisclosureRow>> {
                let rows: Vec<$crate::store::sql::requests::DisclosureRecord> =
                    sqlx::query_as($crate::store::sql::requests::DISCLOSURES)
                        .bind(customer)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }

        /// Applies one request mutation inside the batch transaction.
        async fn apply_requests(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::RequestMutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::RequestMutation as R;
            match m {
                R::InsertRequest(r) => insert_request(tx, r).await,
                R::UpdateRequest(r) => update_request(tx, r).await,
                R::InsertToken { token_sha256, request_id, at } => {
                    sqlx::query(
                        "INSERT INTO request_tokens (token_sha256, request_id, created_at) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(token_sha256)
                    .bind(request_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
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
                    Ok(())
                }
                R::InsertOutbox(_)
                | R::ClaimOutbox { .. }
                | R::AckOutbox { .. }
                | R::DropOutbox { .. }
                | R::DropCustomerOutbox { .. }
                | R::RecordDisclosure(_) => apply_outbox(tx, m).await,
                R::SetRestricted { .. }
                | R::SetOptedOutSale { .. }
                | R::SetLimitSensitive { .. }
                | R::AddObjection { .. }
                | R::RemoveObjection { .. } => apply_subject_state(tx, m).await,
            }
        }

        /// `RequestMutation::InsertRequest`.
        async fn insert_request(
            tx: &mut sqlx::Transaction<'static, $db>,
            r: &$crate::store::RequestRow,
        ) -> Result<(), $crate::store::StoreError> {
            sqlx::query(
                "INSERT INTO requests (id, kind, regulation, channel, customer_id, \
                 identifier_field, status, filed_by, received_at, due_at, extended_at, extension_reason, \
                 verified_at, verification_method, verified_by, code_hash, code_expires_at, code_attempts, \
                 approved_at, approved_by, responded_at, denial_reason, denial_note, purpose, lift, changes, \
                 result, merged_into, language, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, \
                 $27, $28, $29, 0)",
            )
            .bind(r.id)
            .bind(&r.kind)
            .bind(&r.regulation)
            .bind(&r.channel)
            .bind(r.customer_id)
            .bind(&r.identifier_field)
            .bind(&r.status)
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
            .bind(&r.denial_reason)
            .bind(&r.denial_note)
            .bind(&r.purpose)
            .bind(r.lift)
            .bind(&r.changes)
            .bind(&r.result)
            .bind(r.merged_into)
            .bind(&r.language)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// `RequestMutation::UpdateRequest`: NotFound unless the stored
        /// version is still `r.version`.
        async fn update_request(
            tx: &mut sqlx::Transaction<'static, $db>,
            r: &$crate::store::RequestRow,
        ) -> Result<(), $crate::store::StoreError> {
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
            .bind(&r.status)
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
            .bind(&r.denial_reason)
            .bind(&r.denial_note)
            .bind(&r.changes)
            .bind(&r.result)
            .bind(r.merged_into)
            .execute(&mut **tx)
            .await?;
            $crate::store::sql::must_change(done.rows_affected())
        }

        /// The outbox and the record of disclosures.
        async fn apply_outbox(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::RequestMutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::RequestMutation as R;
            use $crate::store::sql::must_change;
            match m {
                R::InsertOutbox(o) => {
                    sqlx::query(
                        "INSERT INTO outbox (id, kind, customer_id, request_id, recipient_role, \
                         recipient_client, sealed, payload, created_at, attempts, next_attempt_at, \
                         delivered_at, last_error, channel) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
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
                    .bind(&o.channel)
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
                        "UPDATE outbox SET delivered_at = $2, payload = NULL, \
                         last_error = 'customer_erased' \
                         WHERE customer_id = $1 AND sealed = TRUE AND delivered_at IS NULL",
                    )
                    .bind(customer_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                R::RecordDisclosure(d) => {
                    sqlx::query(
                        "INSERT INTO disclosures (customer_id, recipient_role, client_id, purpose, \
                         fields, at) VALUES ($1, $2, $3, $4, $5, $6)",
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
                _ => return Err($crate::store::sql::misrouted("outbox")),
            }
            Ok(())
        }

        /// Subject state: restriction, opt-out, limit, objections. NotFound
        /// for a customer that does not exist or whose erasure has begun.
        async fn apply_subject_state(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::RequestMutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::RequestMutation as R;
            use $crate::store::sql::must_change;
            match m {
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
                    let live: Option<uuid::Uuid> = sqlx::query_scalar(
                        "SELECT id FROM customers WHERE id = $1 AND erased_at IS NULL",
                    )
                    .bind(customer_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if live.is_none() {
                        return Err($crate::store::StoreError::NotFound);
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
                _ => return Err($crate::store::sql::misrouted("subject state")),
            }
            Ok(())
        }
    };
}

pub(in crate::store) use impl_request_store;
