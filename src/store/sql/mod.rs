//! The body of both [`Store`](super::Store) implementations. Every statement
//! is valid in SQLite and in PostgreSQL; each backend type provides
//! `begin_write()`, `LOCK_HEAD` and its [`DialectSql`] (what differs between
//! the dialects). All SQL is static text with bound parameters.
//!
//! The SQL is split by area, one module each: [`keys`], [`principals`],
//! [`customers`] (values and consents), [`erasure`], [`holds`], [`audit`]
//! and [`requests`]. Each holds its reads' statements, the named rows they
//! are read into, and a macro generating its writes for a backend;
//! `impl_store!` puts them together: the reads, `commit_batch`, and the
//! dispatcher `apply` that hands each [`Mutation`](super::Mutation) to its
//! area. [`encode`] builds the JSON arrays of the multi-row inserts.

pub(super) mod audit;
pub(super) mod customers;
pub(super) mod encode;
pub(super) mod erasure;
pub(super) mod holds;
pub(super) mod keys;
pub(super) mod principals;
pub(super) mod requests;

use super::StoreError;

/// The statements whose text differs between the dialects.
///
/// `record` reads a whole customer (values with purposes, consent events,
/// objections) as one row, the nested parts as JSON arrays: one statement
/// and one row per read.
///
/// The others insert many rows at once. Rows travel as one JSON array
/// bound to one parameter (static SQL; `json_each` in SQLite,
/// `jsonb_array_elements` in PostgreSQL), so a batch of audit events or the
/// values of a new customer cost one statement instead of one per row: for
/// SQLite every statement is a hand-off to the connection's worker thread,
/// for PostgreSQL a network round trip. Bytes travel as hex.
pub(super) struct DialectSql {
    /// `$1`: customer id; one [`customers::RecordRow`] or none.
    pub record: &'static str,
    /// `$1`: array of audit events (`encode::PendingEvents`).
    pub events: &'static str,
    /// `$1`: customer id; `$2`: array of values (`encode::field_rows`).
    /// Inserts nothing unless the customer exists and its erasure has not
    /// begun.
    pub values: &'static str,
    /// `$1`: customer id; `$2`: array of value purposes.
    pub purposes: &'static str,
    /// `$1`: customer id; `$2`: array of blind-index digests.
    pub digests: &'static str,
    /// `$1`: array of rewrapped data keys (`encode::rewrap_rows`); a row is
    /// changed only while still wrapped by its `from` version (as
    /// [`Mutation::RewrapDek`](super::Mutation::RewrapDek)).
    pub rewraps: &'static str,
    /// Copies the database keeps of deleted rows outside its tables that a
    /// statement can remove: SQLite's write-ahead log, checkpointed into
    /// the file (where `secure_delete` has zeroed them) and truncated.
    /// PostgreSQL has no such statement (see docs/ERASURE.md).
    pub purge_logs: Option<&'static str>,
    /// Whether customers carry a record stamp (`customers.record_stamp`,
    /// moved on by triggers).
    pub record_stamps: bool,
}

pub(super) const SQLITE_SQL: DialectSql = DialectSql {
    record: "SELECT c.id, c.external_id, c.created_at, c.kek_version, c.wrapped_dek, \
         c.restricted, c.opted_out_sale, c.limit_sensitive, c.erased_at, c.version, \
         (SELECT json_group_array(json_object('field', v.field, \
             'ciphertext', hex(v.ciphertext), 'collected_by', v.collected_by, \
             'channel', v.channel, 'notice_version', v.notice_version, \
             'collected_at', v.collected_at, \
             'purposes', json((SELECT json_group_array(json_object('purpose', p.purpose, \
                 'collected_at', p.collected_at, 'expires_at', p.expires_at) \
                 ORDER BY p.purpose) \
                 FROM value_purposes p \
                 WHERE p.customer_id = v.customer_id AND p.field = v.field))) \
             ORDER BY v.field) \
          FROM field_values v WHERE v.customer_id = c.id) AS fields, \
         (SELECT json_group_array(json_object('id', hex(e.id), 'purpose', e.purpose, \
             'action', e.action, 'notice_version', e.notice_version, \
             'notice_text_sha256', e.notice_text_sha256, 'language', e.language, \
             'jurisdiction', e.jurisdiction, 'channel', e.channel, \
             'captured_by', e.captured_by, 'at', e.at, \
             'explicit', json(CASE WHEN e.explicit THEN 'true' ELSE 'false' END)) \
             ORDER BY e.at, e.id) \
          FROM consent_events e WHERE e.customer_id = c.id) AS consents, \
         (SELECT json_group_array(o.purpose ORDER BY o.purpose) \
          FROM objections o WHERE o.customer_id = c.id) AS objections \
         FROM customers c WHERE c.id = $1",
    events: "INSERT INTO audit_events (seq, at, actor, role, action, purpose, customer_id, \
         fields, decision, reasons, request_id, prev_hash, hash) \
         SELECT value->>'seq', value->>'at', value->>'actor', value->>'role', value->>'action', \
         value->>'purpose', value->>'customer_id', value->>'fields', value->>'decision', \
         value->>'reasons', value->>'request_id', unhex(value->>'prev_hash'), \
         unhex(value->>'hash') FROM json_each($1)",
    values: "INSERT INTO field_values (customer_id, field, ciphertext, collected_by, channel, \
         notice_version, collected_at) \
         SELECT $1, value->>'field', unhex(value->>'ciphertext'), value->>'collected_by', \
         value->>'channel', value->>'notice_version', value->>'at' FROM json_each($2) \
         WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1 AND erased_at IS NULL)",
    purposes: "INSERT INTO value_purposes (customer_id, field, purpose, collected_at, expires_at) \
         SELECT $1, value->>'field', value->>'purpose', value->>'collected_at', \
         value->>'expires_at' FROM json_each($2)",
    digests: "INSERT INTO blind_index (field, digest, customer_id) \
         SELECT value->>'field', unhex(value->>'digest'), $1 FROM json_each($2)",
    rewraps: "UPDATE customers SET kek_version = j.value->>'to', \
         wrapped_dek = unhex(j.value->>'dek') \
         FROM json_each($1) AS j \
         WHERE customers.id = unhex(j.value->>'id') \
         AND customers.kek_version = j.value->>'from' AND customers.wrapped_dek IS NOT NULL",
    purge_logs: Some("PRAGMA wal_checkpoint(TRUNCATE)"),
    record_stamps: true,
};

pub(super) const POSTGRES_SQL: DialectSql = DialectSql {
    record: "SELECT c.id, c.external_id, c.created_at, c.kek_version, c.wrapped_dek, \
         c.restricted, c.opted_out_sale, c.limit_sensitive, c.erased_at, c.version, \
         (SELECT json_agg(json_build_object('field', v.field, \
             'ciphertext', encode(v.ciphertext, 'hex'), 'collected_by', v.collected_by, \
             'channel', v.channel, 'notice_version', v.notice_version, \
             'collected_at', v.collected_at, \
             'purposes', (SELECT json_agg(json_build_object('purpose', p.purpose, \
                 'collected_at', p.collected_at, 'expires_at', p.expires_at) \
                 ORDER BY p.purpose) \
                 FROM value_purposes p \
                 WHERE p.customer_id = v.customer_id AND p.field = v.field)) \
             ORDER BY v.field)::text \
          FROM field_values v WHERE v.customer_id = c.id) AS fields, \
         (SELECT json_agg(json_build_object('id', e.id, 'purpose', e.purpose, \
             'action', e.action, 'notice_version', e.notice_version, \
             'notice_text_sha256', e.notice_text_sha256, 'language', e.language, \
             'jurisdiction', e.jurisdiction, 'channel', e.channel, \
             'captured_by', e.captured_by, 'at', e.at, 'explicit', e.explicit) \
             ORDER BY e.at, e.id)::text \
          FROM consent_events e WHERE e.customer_id = c.id) AS consents, \
         (SELECT json_agg(o.purpose ORDER BY o.purpose)::text \
          FROM objections o WHERE o.customer_id = c.id) AS objections \
         FROM customers c WHERE c.id = $1",
    events: "INSERT INTO audit_events (seq, at, actor, role, action, purpose, customer_id, \
         fields, decision, reasons, request_id, prev_hash, hash) \
         SELECT (e->>'seq')::bigint, (e->>'at')::bigint, e->>'actor', e->>'role', e->>'action', \
         e->>'purpose', e->>'customer_id', e->>'fields', e->>'decision', e->>'reasons', \
         e->>'request_id', decode(e->>'prev_hash', 'hex'), decode(e->>'hash', 'hex') \
         FROM jsonb_array_elements($1::jsonb) AS e",
    values: "INSERT INTO field_values (customer_id, field, ciphertext, collected_by, channel, \
         notice_version, collected_at) \
         SELECT $1, e->>'field', decode(e->>'ciphertext', 'hex'), e->>'collected_by', \
         e->>'channel', e->>'notice_version', (e->>'at')::bigint \
         FROM jsonb_array_elements($2::jsonb) AS e \
         WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1 AND erased_at IS NULL)",
    purposes: "INSERT INTO value_purposes (customer_id, field, purpose, collected_at, expires_at) \
         SELECT $1, e->>'field', e->>'purpose', (e->>'collected_at')::bigint, \
         (e->>'expires_at')::bigint FROM jsonb_array_elements($2::jsonb) AS e",
    digests: "INSERT INTO blind_index (field, digest, customer_id) \
         SELECT e->>'field', decode(e->>'digest', 'hex'), $1 \
         FROM jsonb_array_elements($2::jsonb) AS e",
    rewraps: "UPDATE customers AS c SET kek_version = (e->>'to')::bigint, \
         wrapped_dek = decode(e->>'dek', 'hex') \
         FROM jsonb_array_elements($1::jsonb) AS e \
         WHERE c.id = (e->>'id')::uuid \
         AND c.kek_version = (e->>'from')::bigint AND c.wrapped_dek IS NOT NULL",
    purge_logs: None,
    record_stamps: false,
};

/// One try at a commit batch: the outcomes and the head it left, or `None`
/// when the chain head was no longer the one the batch linked from (nothing
/// was stored).
pub(super) type CommitAttempt = Option<(Vec<super::UnitOutcome>, super::ChainHead)>;

/// The error of an area's write function handed a mutation of another area
/// (a bug in the dispatcher): fails the whole batch.
pub(super) fn misrouted(area: &str) -> StoreError {
    StoreError::Database(format!("mutation routed to the wrong area ({area})"))
}

/// NotFound unless the statement changed a row.
pub(super) fn must_change(rows: u64) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Generates `impl Store for $store` (and `impl RequestStore`) where
/// `$store` has a `pool: Pool<$db>`, an inherent `async fn begin_write(&self)`,
/// an inherent `fn direct_reads(&self)` (the SQLite reads that bypass the
/// pool, see `sqlite_direct`), an inherent `async fn
/// commit_direct(&self, units, at, known)` (a batch committed without the
/// pool: `Ok(None)` when not taken, else a [`CommitAttempt`]),
/// a `LOCK_HEAD` constant, a `BEGIN_SERIALIZES` constant (whether
/// `begin_write` alone serializes the writers) and a `SQL` constant (its
/// dialect's [`DialectSql`]).
macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal) => {
        $crate::store::sql::keys::key_writes!($store, $db);
        $crate::store::sql::principals::principal_writes!($store, $db);
        $crate::store::sql::customers::customer_writes!($store, $db);
        $crate::store::sql::erasure::erasure_writes!($store, $db);
        $crate::store::sql::holds::hold_writes!($store, $db);
        $crate::store::sql::audit::audit_writes!($store, $db);
        $crate::store::sql::requests::impl_request_store!($store, $db);

        /// One try at a batch (see `commit_batch_after`) in one write
        /// transaction, linking from `known` or, without it, from the head
        /// read (and locked) first. `Ok(None)`: the head was no longer
        /// `known`; the transaction was rolled back and nothing is stored.
        async fn commit_attempt(
            store: &$store,
            units: &[$crate::store::Unit],
            at: i64,
            known: Option<$crate::store::ChainHead>,
        ) -> $crate::store::StoreResult<$crate::store::sql::CommitAttempt> {
            use $crate::store::{ChainHead, StoreError};
            let mut tx = store.begin_write().await?;
            let mut stored_head: ChainHead = match known {
                Some(head) => head,
                None => {
                    sqlx::query_as(<$store>::LOCK_HEAD)
                        .fetch_one(&mut *tx)
                        .await?
                }
            };
            let mut head = stored_head.linking_at(at);
            let mut outcomes = Vec::with_capacity(units.len());
            // Events are linked as their units succeed and inserted together
            // (one statement) as the head moves, at the end of the batch or
            // before a unit that reads the trail.
            let mut pending = $crate::store::sql::encode::PendingEvents::default();
            for unit in units {
                if unit
                    .mutations
                    .iter()
                    .any($crate::store::Mutation::reads_audit)
                    && !insert_events(&mut tx, &mut pending, &mut stored_head, &head).await?
                {
                    tx.rollback().await?;
                    return Ok(None);
                }
                // Units with changes get a savepoint so that one refused
                // change does not undo the rest of the batch.
                let guarded = !unit.mutations.is_empty();
                if guarded {
                    sqlx::query("SAVEPOINT unit").execute(&mut *tx).await?;
                }
                match apply_unit(&mut tx, &unit.mutations).await {
                    Ok(()) => {
                        let stored = pending.link(&unit.events, &mut head)?;
                        if guarded {
                            sqlx::query("RELEASE SAVEPOINT unit")
                                .execute(&mut *tx)
                                .await?;
                        }
                        outcomes.push(Ok(stored));
                    }
                    Err(e @ (StoreError::Conflict(_) | StoreError::NotFound)) if guarded => {
                        sqlx::query("ROLLBACK TO SAVEPOINT unit")
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("RELEASE SAVEPOINT unit")
                            .execute(&mut *tx)
                            .await?;
                        outcomes.push(Err(e));
                    }
                    Err(e) => return Err(e),
                }
            }
            if !insert_events(&mut tx, &mut pending, &mut stored_head, &head).await? {
                tx.rollback().await?;
                return Ok(None);
            }
            tx.commit().await?;
            Ok(Some((outcomes, stored_head)))
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            #[tracing::instrument(level = "debug", skip_all, fields(units = units.len()))]
            async fn commit_batch_after(
                &self,
                units: &[$crate::store::Unit],
                at: i64,
                known: Option<&$crate::store::ChainHead>,
            ) -> $crate::store::StoreResult<(
                Vec<$crate::store::UnitOutcome>,
                $crate::store::ChainHead,
            )> {
                let known = known.filter(|_| <$store>::BEGIN_SERIALIZES).cloned();
                let rerun = known.is_some();
                let attempt = match self.commit_direct(units, at, known.as_ref()).await? {
                    Some(attempt) => attempt,
                    None => commit_attempt(self, units, at, known).await?,
                };
                let committed = |done| {
                    if let Some(copies) = self.record_cache() {
                        copies.committed(units);
                    }
                    Ok(done)
                };
                if let Some(done) = attempt {
                    return committed(done);
                }
                if rerun {
                    // Another writer appended since this store's last
                    // commit: run the batch again from the stored head.
                    metrics::counter!("pii_vault_audit_head_reloads_total").increment(1);
                    if let Some(done) = commit_attempt(self, units, at, None).await? {
                        return committed(done);
                    }
                }
                Err($crate::store::StoreError::Database(
                    "the audit chain head moved under a locked write".into(),
                ))
            }

            async fn purge_logs(&self) -> $crate::store::StoreResult<bool> {
                let Some(sql) = <$store>::SQL.purge_logs else {
                    return Ok(true);
                };
                // (busy, log frames, checkpointed frames): busy = 1 while a
                // reader still needs the log, then nothing was truncated.
                let (busy, _, _): (i64, i64, i64) =
                    sqlx::query_as(sql).fetch_one(&self.pool).await?;
                Ok(busy == 0)
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn get_meta(&self, name: &str) -> $crate::store::StoreResult<Option<Vec<u8>>> {
                Ok(
                    sqlx::query_scalar("SELECT value FROM vault_meta WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn keks(&self) -> $crate::store::StoreResult<Vec<$crate::store::KekRow>> {
                Ok(sqlx::query_as($crate::store::sql::keys::KEKS)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn signing_keys(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SigningKeyRow>> {
                Ok(sqlx::query_as($crate::store::sql::keys::SIGNING_KEYS)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn kek_states(&self) -> $crate::store::StoreResult<Vec<$crate::store::KekState>> {
                Ok(sqlx::query_as($crate::store::sql::keys::KEK_STATES)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn signing_key_states(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SigningKeyState>> {
                Ok(sqlx::query_as($crate::store::sql::keys::SIGNING_KEY_STATES)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn token_key_states(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SigningKeyState>> {
                Ok(sqlx::query_as($crate::store::sql::keys::TOKEN_KEY_STATES)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn kek_usage(&self) -> $crate::store::StoreResult<Vec<$crate::store::KekUsage>> {
                Ok(sqlx::query_as($crate::store::sql::keys::KEK_USAGE)
                    .fetch_all(&self.pool)
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn dek_batch(
                &self,
                kek_version: i64,
                after: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::DataKeyRow>> {
                Ok(sqlx::query_as($crate::store::sql::keys::DEK_BATCH)
                    .bind(kek_version)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn customer_key(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::CustomerKeyRow>> {
                Ok(sqlx::query_as($crate::store::sql::keys::CUSTOMER_KEY)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn principal(
                &self,
                kind: $crate::store::PrincipalKind,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                let sql = match kind {
                    $crate::store::PrincipalKind::Client => $crate::store::sql::principals::CLIENT,
                    $crate::store::PrincipalKind::User => $crate::store::sql::principals::USER,
                };
                Ok(sqlx::query_as(sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn user_by_name(
                &self,
                username: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                Ok(sqlx::query_as($crate::store::sql::principals::USER_BY_NAME)
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn client_by_name(
                &self,
                name: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                Ok(
                    sqlx::query_as($crate::store::sql::principals::CLIENT_BY_NAME)
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn principals(
                &self,
                kind: $crate::store::PrincipalKind,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PrincipalListing>> {
                let sql = match kind {
                    $crate::store::PrincipalKind::Client => $crate::store::sql::principals::CLIENTS,
                    $crate::store::PrincipalKind::User => $crate::store::sql::principals::USERS,
                };
                Ok(sqlx::query_as(sql).fetch_all(&self.pool).await?)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn customer_record(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::CustomerRecord>> {
                if let Some(direct) = self.direct_reads() {
                    return direct.customer_record(id).await;
                }
                let row: Option<$crate::store::sql::customers::RecordRow> =
                    sqlx::query_as(Self::SQL.record)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(TryInto::try_into).transpose()
            }

            fn record_copy(
                &self,
                id: uuid::Uuid,
            ) -> Option<($crate::store::CustomerRecord, $crate::store::RecordStamp)> {
                self.record_cache()?.get(id)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn find_by_blind_index(
                &self,
                field: &str,
                digest: &[u8],
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                if let Some(direct) = self.direct_reads() {
                    return direct.find_by_blind_index(field, digest).await;
                }
                Ok(
                    sqlx::query_scalar($crate::store::sql::customers::FIND_BY_BLIND_INDEX)
                        .bind(field)
                        .bind(digest)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn idempotency(
                &self,
                principal: &str,
                key: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::IdempotencyRow>> {
                Ok(sqlx::query_as($crate::store::sql::principals::IDEMPOTENCY)
                    .bind(principal)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn console_session(
                &self,
                id_hash: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::ConsoleSessionRow>> {
                Ok(
                    sqlx::query_as($crate::store::sql::principals::CONSOLE_SESSION)
                        .bind(id_hash)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn erasure_job(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::ErasureJobRow>> {
                Ok(sqlx::query_as($crate::store::sql::erasure::ERASURE_JOB)
                    .bind(customer)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn erasure_jobs_with_status(
                &self,
                status: $crate::store::ErasureJobStatus,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(
                    sqlx::query_scalar($crate::store::sql::erasure::JOBS_WITH_STATUS)
                        .bind(status.as_str())
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn tombstones(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::TombstoneRow>> {
                Ok(sqlx::query_as($crate::store::sql::erasure::TOMBSTONES)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn legal_hold(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::LegalHoldRow>> {
                let row: Option<$crate::store::sql::holds::HoldRecord> =
                    sqlx::query_as($crate::store::sql::holds::HOLD_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn legal_holds(
                &self,
                customer: Option<uuid::Uuid>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::LegalHoldRow>> {
                let rows: Vec<$crate::store::sql::holds::HoldRecord> = match customer {
                    Some(c) => {
                        sqlx::query_as($crate::store::sql::holds::HOLDS_OF_CUSTOMER)
                            .bind(c)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => {
                        sqlx::query_as($crate::store::sql::holds::HOLDS_ACTIVE)
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn customers_with_expired_purposes(
                &self,
                now: i64,
                after: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(
                    sqlx::query_scalar($crate::store::sql::customers::EXPIRED_PURPOSES)
                        .bind(now)
                        .bind(after)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn customer_count(&self) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM customers")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn audit_events(
                &self,
                f: &$crate::store::AuditFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::audit::StoredEvent>> {
                let rows: Vec<$crate::store::sql::audit::EventRecord> =
                    sqlx::query_as($crate::store::sql::audit::EVENTS)
                        .bind(f.after_seq)
                        .bind(&f.customer_id)
                        .bind(&f.actor)
                        .bind(&f.action)
                        .bind(&f.purpose)
                        .bind(&f.decision)
                        .bind(f.from)
                        .bind(f.to)
                        .bind(f.limit)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn audit_head(&self) -> $crate::store::StoreResult<$crate::store::ChainHead> {
                Ok(sqlx::query_as($crate::store::sql::audit::HEAD)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn audit_checkpoints(
                &self,
                from_seq: i64,
                through_seq: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::CheckpointRow>> {
                Ok(sqlx::query_as($crate::store::sql::audit::CHECKPOINTS)
                    .bind(from_seq)
                    .bind(through_seq)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn audit_checkpoint_at_or_before(
                &self,
                seq: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::CheckpointRow>> {
                Ok(
                    sqlx::query_as($crate::store::sql::audit::CHECKPOINT_AT_OR_BEFORE)
                        .bind(seq)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn audit_prune_point(
                &self,
                before: i64,
            ) -> $crate::store::StoreResult<Option<i64>> {
                Ok(sqlx::query_scalar($crate::store::sql::audit::PRUNE_POINT)
                    .bind(before)
                    .fetch_optional(&self.pool)
                    .await?)
            }
        }

        /// Applies a unit's mutations in order. Consecutive values of one
        /// customer go in together, and so do consecutive data-key rewraps.
        async fn apply_unit(
            tx: &mut sqlx::Transaction<'static, $db>,
            mutations: &[$crate::store::Mutation],
        ) -> Result<(), $crate::store::StoreError> {
            // Customers this unit creates have no earlier values to replace.
            let fresh = $crate::store::Mutation::created_customers(mutations);
            let mut rest = mutations;
            while !rest.is_empty() {
                let puts = $crate::store::Mutation::put_field_run(rest);
                let rewraps = $crate::store::Mutation::rewrap_run(rest);
                if !puts.is_empty() {
                    put_fields(tx, &puts, &fresh).await?;
                } else if !rewraps.is_empty() {
                    rewrap_deks(tx, &rewraps).await?;
                } else {
                    apply(tx, &rest[0], &fresh).await?;
                }
                rest = &rest[puts.len().max(rewraps.len()).max(1)..];
            }
            Ok(())
        }

        /// Applies one mutation inside the batch transaction: hands it to
        /// its area's function.
        async fn apply(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
            fresh: &[uuid::Uuid],
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::Mutation as M;
            match m {
                M::SetMeta { .. }
                | M::ReplaceMeta { .. }
                | M::InsertKek { .. }
                | M::RotateKek { .. }
                | M::RewrapKek { .. }
                | M::ExpectKekCount { .. }
                | M::RetireKek { .. }
                | M::RewrapDek { .. }
                | M::InsertSigningKey(_)
                | M::InsertTokenKey(_)
                | M::RewrapSigningKey { .. }
                | M::RotateSigningKey { .. } => apply_keys(tx, m).await,
                M::InsertClient { .. }
                | M::SetClientDisabled { .. }
                | M::SetClientSecret { .. }
                | M::InsertUser { .. }
                | M::SetUserDisabled { .. }
                | M::SetUserPassword { .. }
                | M::ClaimIdempotency { .. }
                | M::AnswerIdempotency { .. }
                | M::ReleaseIdempotency { .. }
                | M::PruneIdempotency { .. }
                | M::ReleaseStaleIdempotency { .. }
                | M::InsertConsoleSession { .. }
                | M::TouchConsoleSession { .. }
                | M::DeleteConsoleSession { .. }
                | M::PruneConsoleSessions { .. } => apply_principals(tx, m).await,
                M::InsertCustomer { .. }
                | M::PutField { .. }
                | M::DeleteField { .. }
                | M::AppendConsent(_)
                | M::ReplaceCiphertext { .. }
                | M::SetValuePurposes { .. }
                | M::ExpirePurpose { .. }
                | M::DeleteFieldIfUnused { .. }
                | M::ExpectCustomerVersion { .. }
                | M::ExpectRecordStamp { .. } => apply_customers(tx, m, fresh).await,
                M::BeginErasure { .. }
                | M::DeleteConsents { .. }
                | M::AdvanceErasure { .. }
                | M::RekeyCustomer { .. }
                | M::FinishErasure { .. }
                | M::UpdateRetained { .. } => apply_erasure(tx, m).await,
                M::InsertLegalHold(_) | M::ReleaseLegalHold { .. } => apply_holds(tx, m).await,
                M::InsertCheckpoint(_) | M::PruneAudit { .. } => apply_audit(tx, m).await,
                M::Requests(r) => apply_requests(tx, r).await,
            }
        }
    };
}

pub(super) use impl_store;
