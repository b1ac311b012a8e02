//! The body of both [`Store`](super::Store) implementations. Every statement
//! here is valid in SQLite and in PostgreSQL; each backend type provides
//! `begin_write()` and `LOCK_HEAD` (what differs between the dialects).
//! All SQL is static text with bound parameters.

/// A customer with every value and each value's purposes, in one statement
/// (a customer without values yields one row with NULL value columns).
pub(super) const CUSTOMER_VALUES: &str = "SELECT c.id, c.external_id, c.created_at, \
     c.kek_version, c.wrapped_dek, c.restricted, c.opted_out_sale, c.limit_sensitive, \
     c.erased_at, v.field, v.ciphertext, v.collected_by, v.channel, v.notice_version, \
     v.collected_at AS value_collected_at, p.purpose, p.collected_at AS purpose_collected_at, \
     p.expires_at \
     FROM customers c \
     LEFT JOIN field_values v ON v.customer_id = c.id \
     LEFT JOIN value_purposes p ON p.customer_id = v.customer_id AND p.field = v.field \
     WHERE c.id = $1 ORDER BY v.field, p.purpose";
/// The consent ledger and the objections of a customer, in one statement.
pub(super) const SUBJECT_EVENTS: &str = "SELECT 'consent' AS kind, id, purpose, action, \
     notice_version, notice_text_sha256, language, jurisdiction, channel, captured_by, at \
     FROM consent_events WHERE customer_id = $1 \
     UNION ALL \
     SELECT 'objection', NULL, purpose, NULL, NULL, NULL, NULL, NULL, NULL, NULL, at \
     FROM objections WHERE customer_id = $1 \
     ORDER BY at, id";
pub(super) const INSERT_EVENT: &str = "INSERT INTO audit_events (seq, at, actor, role, action, \
     purpose, customer_id, fields, decision, reasons, request_id, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
pub(super) const UPDATE_HEAD: &str =
    "UPDATE audit_head SET seq = $1, hash = $2, at = $3 WHERE id = 1";
pub(super) const AUDIT_QUERY: &str = "SELECT seq, at, actor, role, action, purpose, customer_id, \
     fields, decision, reasons, request_id, prev_hash, hash FROM audit_events \
     WHERE seq > $1 \
     AND ($2 IS NULL OR customer_id = $2) \
     AND ($3 IS NULL OR actor = $3) \
     AND ($4 IS NULL OR action = $4) \
     AND ($5 IS NULL OR purpose = $5) \
     AND ($6 IS NULL OR decision = $6) \
     AND ($7 IS NULL OR at >= $7) \
     AND ($8 IS NULL OR at < $8) \
     ORDER BY seq LIMIT $9";

pub(super) type EventRow = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
);

pub(super) fn event_from_row(r: EventRow) -> crate::audit::StoredEvent {
    let (seq, at, actor, role, action, purpose, customer_id, fields, decision, reasons, rid, p, h) =
        r;
    crate::audit::StoredEvent {
        seq,
        at,
        draft: crate::audit::EventDraft {
            actor,
            role,
            action,
            purpose,
            customer_id,
            fields: serde_json::from_str(&fields).unwrap_or_default(),
            decision,
            reasons: serde_json::from_str(&reasons).unwrap_or_default(),
            request_id: rid,
        },
        prev_hash: hex::encode(p),
        hash: hex::encode(h),
    }
}

pub(super) type CheckpointTuple = (i64, Vec<u8>, i64, String, Vec<u8>);

pub(super) fn checkpoint_from_row(r: CheckpointTuple) -> super::CheckpointRow {
    let (seq, hash, at, kid, signature) = r;
    super::CheckpointRow {
        seq,
        hash,
        at,
        kid,
        signature,
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CustomerValueRow {
    id: uuid::Uuid,
    external_id: Option<String>,
    created_at: i64,
    kek_version: Option<i64>,
    wrapped_dek: Option<Vec<u8>>,
    restricted: bool,
    opted_out_sale: bool,
    limit_sensitive: bool,
    erased_at: Option<i64>,
    field: Option<String>,
    ciphertext: Option<Vec<u8>>,
    collected_by: Option<String>,
    channel: Option<String>,
    notice_version: Option<String>,
    value_collected_at: Option<i64>,
    purpose: Option<String>,
    purpose_collected_at: Option<i64>,
    expires_at: Option<i64>,
}

/// Folds the customer/value/purpose join into the customer and one
/// [`FieldRow`](super::FieldRow) per field.
pub(super) fn customer_from_rows(
    rows: Vec<CustomerValueRow>,
) -> Option<(super::CustomerRow, Vec<super::FieldRow>)> {
    let first = rows.first()?;
    let customer = super::CustomerRow {
        id: first.id,
        external_id: first.external_id.clone(),
        created_at: first.created_at,
        kek_version: first.kek_version,
        wrapped_dek: first.wrapped_dek.clone(),
        restricted: first.restricted,
        opted_out_sale: first.opted_out_sale,
        limit_sensitive: first.limit_sensitive,
        erased_at: first.erased_at,
    };
    let mut fields: Vec<super::FieldRow> = Vec::new();
    for r in rows {
        let (Some(field), Some(ciphertext), Some(collected_by), Some(collected_at)) =
            (r.field, r.ciphertext, r.collected_by, r.value_collected_at)
        else {
            continue;
        };
        if fields.last().map(|f| f.field != field).unwrap_or(true) {
            fields.push(super::FieldRow {
                field,
                ciphertext,
                collected_by,
                channel: r.channel,
                notice_version: r.notice_version,
                collected_at,
                purposes: Vec::new(),
            });
        }
        if let (Some(purpose), Some(collected_at), Some(expires_at), Some(last)) = (
            r.purpose,
            r.purpose_collected_at,
            r.expires_at,
            fields.last_mut(),
        ) {
            last.purposes.push(super::ValuePurpose {
                purpose,
                collected_at,
                expires_at,
            });
        }
    }
    Some((customer, fields))
}

pub(super) type SubjectEventRow = (
    String,
    Option<uuid::Uuid>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// Splits the union of consent events and objections.
pub(super) fn subject_events(
    customer_id: uuid::Uuid,
    rows: Vec<SubjectEventRow>,
) -> (Vec<super::ConsentEvent>, Vec<String>) {
    let mut consents = Vec::new();
    let mut objections = Vec::new();
    for (kind, id, purpose, action, nv, sha, language, jurisdiction, channel, by, at) in rows {
        if kind == "objection" {
            objections.push(purpose);
            continue;
        }
        consents.push(super::ConsentEvent {
            id: id.unwrap_or_default(),
            customer_id,
            purpose,
            action: action.unwrap_or_default(),
            notice_version: nv.unwrap_or_default(),
            notice_text_sha256: sha.unwrap_or_default(),
            language: language.unwrap_or_default(),
            jurisdiction: jurisdiction.unwrap_or_default(),
            channel: channel.unwrap_or_default(),
            captured_by: by.unwrap_or_default(),
            at,
        });
    }
    objections.sort();
    (consents, objections)
}

pub(super) const ERASURE_JOB: &str = "SELECT customer_id, receipt_id, request_id, actor, role, \
     status, step, force_full, retained, started_at, updated_at, finished_at \
     FROM erasure_jobs WHERE customer_id = $1";

pub(super) type ErasureJobTuple = (
    uuid::Uuid,
    uuid::Uuid,
    Option<String>,
    String,
    String,
    String,
    i64,
    bool,
    String,
    i64,
    i64,
    Option<i64>,
);

pub(super) fn erasure_job_from_row(r: ErasureJobTuple) -> super::ErasureJobRow {
    let (
        customer_id,
        receipt_id,
        request_id,
        actor,
        role,
        status,
        step,
        force_full,
        retained,
        s,
        u,
        f,
    ) = r;
    super::ErasureJobRow {
        customer_id,
        receipt_id,
        request_id,
        actor,
        role,
        status,
        step,
        force_full,
        retained,
        started_at: s,
        updated_at: u,
        finished_at: f,
    }
}

pub(super) const HOLD_BY_ID: &str = "SELECT id, customer_id, fields, reason, basis, purpose, \
     review_at, created_by, created_at, released_at FROM legal_holds WHERE id = $1";
pub(super) const HOLDS_OF_CUSTOMER: &str = "SELECT id, customer_id, fields, reason, basis, \
     purpose, review_at, created_by, created_at, released_at FROM legal_holds \
     WHERE customer_id = $1 ORDER BY review_at, id";
pub(super) const HOLDS_ACTIVE: &str = "SELECT id, customer_id, fields, reason, basis, purpose, \
     review_at, created_by, created_at, released_at FROM legal_holds \
     WHERE released_at IS NULL ORDER BY review_at, id";

pub(super) type HoldTuple = (
    uuid::Uuid,
    uuid::Uuid,
    String,
    String,
    String,
    Option<String>,
    i64,
    String,
    i64,
    Option<i64>,
);

pub(super) fn hold_from_row(r: HoldTuple) -> super::LegalHoldRow {
    let (id, customer_id, fields, reason, basis, purpose, review_at, by, at, released_at) = r;
    super::LegalHoldRow {
        id,
        customer_id,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        reason,
        basis,
        purpose,
        review_at,
        created_by: by,
        created_at: at,
        released_at,
    }
}

/// Generates `impl Store for $store` where `$store` has a `pool: Pool<$db>`,
/// an inherent `async fn begin_write(&self)` and a `LOCK_HEAD` constant.
macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            #[tracing::instrument(level = "debug", skip_all, fields(units = units.len()))]
            async fn commit_batch(
                &self,
                units: &[$crate::store::Unit],
                at: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::UnitOutcome>> {
                use $crate::store::StoreError;
                let mut tx = self.begin_write().await?;
                let (head_seq, head_hash, head_at): (i64, Vec<u8>, i64) =
                    sqlx::query_as(Self::LOCK_HEAD).fetch_one(&mut *tx).await?;
                let at = at.max(head_at);
                let (mut seq, mut hash) = (head_seq, head_hash);
                let mut outcomes = Vec::with_capacity(units.len());
                for unit in units {
                    // Units with changes get a savepoint so that one refused
                    // change does not undo the rest of the batch.
                    let guarded = !unit.mutations.is_empty();
                    if guarded {
                        sqlx::query("SAVEPOINT unit").execute(&mut *tx).await?;
                    }
                    // Customers this unit creates have no earlier values to replace.
                    let fresh: Vec<uuid::Uuid> = unit
                        .mutations
                        .iter()
                        .filter_map(|m| match m {
                            $crate::store::Mutation::InsertCustomer { id, .. } => Some(*id),
                            _ => None,
                        })
                        .collect();
                    let mut result: Result<(), StoreError> = Ok(());
                    for m in &unit.mutations {
                        result = apply(&mut tx, m, &fresh).await;
                        if result.is_err() {
                            break;
                        }
                    }
                    match result {
                        Ok(()) => {
                            let mut stored = Vec::with_capacity(unit.events.len());
                            for draft in &unit.events {
                                let e = $crate::audit::chain::link(seq, &hash, at, draft);
                                let prev = hex::decode(&e.prev_hash).unwrap_or_default();
                                let this = hex::decode(&e.hash).unwrap_or_default();
                                sqlx::query($crate::store::sql::INSERT_EVENT)
                                    .bind(e.seq)
                                    .bind(e.at)
                                    .bind(&e.draft.actor)
                                    .bind(&e.draft.role)
                                    .bind(&e.draft.action)
                                    .bind(&e.draft.purpose)
                                    .bind(&e.draft.customer_id)
                                    .bind(serde_json::to_string(&e.draft.fields).unwrap_or_default())
                                    .bind(&e.draft.decision)
                                    .bind(serde_json::to_string(&e.draft.reasons).unwrap_or_default())
                                    .bind(&e.draft.request_id)
                                    .bind(prev)
                                    .bind(&this)
                                    .execute(&mut *tx)
                                    .await?;
                                seq = e.seq;
                                hash = this;
                                stored.push(e);
                            }
                            if guarded {
                                sqlx::query("RELEASE SAVEPOINT unit").execute(&mut *tx).await?;
                            }
                            outcomes.push(Ok(stored));
                        }
                        Err(e @ (StoreError::Conflict(_) | StoreError::NotFound)) if guarded => {
                            sqlx::query("ROLLBACK TO SAVEPOINT unit").execute(&mut *tx).await?;
                            sqlx::query("RELEASE SAVEPOINT unit").execute(&mut *tx).await?;
                            outcomes.push(Err(e));
                        }
                        Err(e) => return Err(e),
                    }
                }
                if seq != head_seq {
                    sqlx::query($crate::store::sql::UPDATE_HEAD)
                        .bind(seq)
                        .bind(&hash)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(outcomes)
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn get_meta(&self, name: &str) -> $crate::store::StoreResult<Option<Vec<u8>>> {
                Ok(sqlx::query_scalar("SELECT value FROM vault_meta WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn keks(&self) -> $crate::store::StoreResult<Vec<$crate::store::KekRow>> {
                let rows: Vec<(i64, Option<Vec<u8>>, bool, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT version, wrapped, active, created_at, retired_at FROM keyring ORDER BY version",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(version, wrapped, active, created_at, retired_at)| {
                        $crate::store::KekRow { version, wrapped, active, created_at, retired_at }
                    })
                    .collect())
            }

            async fn signing_keys(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SigningKeyRow>> {
                let rows: Vec<(String, i64, Vec<u8>, Vec<u8>, bool, i64)> = sqlx::query_as(
                    "SELECT kid, kek_version, sealed, public_key, active, created_at \
                     FROM signing_keys ORDER BY created_at",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(kid, kek_version, sealed, public_key, active, created_at)| {
                        $crate::store::SigningKeyRow {
                            kid,
                            kek_version,
                            sealed,
                            public_key,
                            active,
                            created_at,
                        }
                    })
                    .collect())
            }

            async fn kek_states(&self) -> $crate::store::StoreResult<Vec<$crate::store::KekState>> {
                type Row = (i64, Option<Vec<u8>>, bool, i64, Option<i64>, Option<i64>, Option<i64>);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT version, wrapped, active, created_at, deactivated_at, retired_at, rewrap_total \
                     FROM keyring ORDER BY version",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(version, wrapped, active, created_at, deactivated_at, retired_at, rewrap_total)| {
                        $crate::store::KekState {
                            version,
                            has_material: wrapped.is_some(),
                            active,
                            created_at,
                            deactivated_at,
                            retired_at,
                            rewrap_total,
                        }
                    })
                    .collect())
            }

            async fn signing_key_states(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SigningKeyState>> {
                type Row = (String, i64, Vec<u8>, Vec<u8>, bool, i64, Option<i64>, bool);
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT kid, kek_version, sealed, public_key, active, created_at, retired_at, \
                     tokens_revoked FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(kid, kek_version, sealed, public_key, active, created_at, retired_at, tokens_revoked)| {
                        $crate::store::SigningKeyState {
                            row: $crate::store::SigningKeyRow {
                                kid,
                                kek_version,
                                sealed,
                                public_key,
                                active,
                                created_at,
                            },
                            retired_at,
                            tokens_revoked,
                        }
                    })
                    .collect())
            }

            async fn kek_usage(&self) -> $crate::store::StoreResult<Vec<(i64, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT kek_version, COUNT(*) FROM customers \
                     WHERE wrapped_dek IS NOT NULL AND kek_version IS NOT NULL \
                     GROUP BY kek_version ORDER BY kek_version",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn dek_batch(
                &self,
                kek_version: i64,
                after: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, Vec<u8>)>> {
                Ok(sqlx::query_as(
                    "SELECT id, wrapped_dek FROM customers \
                     WHERE kek_version = $1 AND wrapped_dek IS NOT NULL AND id > $2 \
                     ORDER BY id LIMIT $3",
                )
                .bind(kek_version)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn customer_key(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<(Option<i64>, bool)>> {
                let row: Option<(Option<i64>, Option<Vec<u8>>)> =
                    sqlx::query_as("SELECT kek_version, wrapped_dek FROM customers WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(v, w)| (v, w.is_some())))
            }

            async fn principal(
                &self,
                kind: $crate::store::PrincipalKind,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                let sql = match kind {
                    $crate::store::PrincipalKind::Client => {
                        "SELECT id, name, role, secret_sha256, disabled FROM clients WHERE id = $1"
                    }
                    $crate::store::PrincipalKind::User => {
                        "SELECT id, username, role, password_hash, disabled FROM users WHERE id = $1"
                    }
                };
                let row: Option<(uuid::Uuid, String, String, String, bool)> =
                    sqlx::query_as(sql).bind(id).fetch_optional(&self.pool).await?;
                Ok(row.map(|(id, name, role, credential, disabled)| {
                    $crate::store::PrincipalRow { id, name, role, credential, disabled }
                }))
            }

            async fn user_by_name(
                &self,
                username: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                let row: Option<(uuid::Uuid, String, String, String, bool)> = sqlx::query_as(
                    "SELECT id, username, role, password_hash, disabled FROM users WHERE username = $1",
                )
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id, name, role, credential, disabled)| {
                    $crate::store::PrincipalRow { id, name, role, credential, disabled }
                }))
            }

            async fn client_by_name(
                &self,
                name: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::PrincipalRow>> {
                let row: Option<(uuid::Uuid, String, String, String, bool)> = sqlx::query_as(
                    "SELECT id, name, role, secret_sha256, disabled FROM clients WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id, name, role, credential, disabled)| {
                    $crate::store::PrincipalRow { id, name, role, credential, disabled }
                }))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn customer_record(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::CustomerRecord>> {
                // Two statements on one connection: every statement is a
                // round trip to the database (for SQLite, to its worker thread).
                let mut conn = self.pool.acquire().await?;
                let rows: Vec<$crate::store::sql::CustomerValueRow> =
                    sqlx::query_as($crate::store::sql::CUSTOMER_VALUES)
                        .bind(id)
                        .fetch_all(&mut *conn)
                        .await?;
                let Some((customer, fields)) = $crate::store::sql::customer_from_rows(rows) else {
                    return Ok(None);
                };
                let events: Vec<$crate::store::sql::SubjectEventRow> =
                    sqlx::query_as($crate::store::sql::SUBJECT_EVENTS)
                        .bind(id)
                        .fetch_all(&mut *conn)
                        .await?;
                let (consents, objections) = $crate::store::sql::subject_events(id, events);
                Ok(Some($crate::store::CustomerRecord {
                    customer,
                    fields,
                    consents,
                    objections,
                }))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn find_by_blind_index(
                &self,
                field: &str,
                digest: &[u8],
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(sqlx::query_scalar(
                    "SELECT customer_id FROM blind_index WHERE field = $1 AND digest = $2 ORDER BY customer_id LIMIT 100",
                )
                .bind(field)
                .bind(digest)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn idempotency(
                &self,
                principal: &str,
                key: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::IdempotencyRow>> {
                let row: Option<(Vec<u8>, i64, String)> = sqlx::query_as(
                    "SELECT request_hash, status, body FROM idempotency_keys WHERE principal = $1 AND key = $2",
                )
                .bind(principal)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(request_hash, status, body)| $crate::store::IdempotencyRow {
                    request_hash,
                    status,
                    body,
                }))
            }

            async fn erasure_job(
                &self,
                customer: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::ErasureJobRow>> {
                let row: Option<$crate::store::sql::ErasureJobTuple> =
                    sqlx::query_as($crate::store::sql::ERASURE_JOB)
                        .bind(customer)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map($crate::store::sql::erasure_job_from_row))
            }

            async fn erasure_jobs_with_status(
                &self,
                status: &str,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(sqlx::query_scalar(
                    "SELECT customer_id FROM erasure_jobs WHERE status = $1 ORDER BY customer_id",
                )
                .bind(status)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn tombstones(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::TombstoneRow>> {
                let rows: Vec<(uuid::Uuid, String, i64)> = sqlx::query_as(
                    "SELECT customer_id, status, erased_at FROM tombstones ORDER BY customer_id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(customer_id, status, erased_at)| $crate::store::TombstoneRow {
                        customer_id,
                        status,
                        erased_at,
                    })
                    .collect())
            }

            async fn legal_hold(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::LegalHoldRow>> {
                let row: Option<$crate::store::sql::HoldTuple> =
                    sqlx::query_as($crate::store::sql::HOLD_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map($crate::store::sql::hold_from_row))
            }

            async fn legal_holds(
                &self,
                customer: Option<uuid::Uuid>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::LegalHoldRow>> {
                let rows: Vec<$crate::store::sql::HoldTuple> = match customer {
                    Some(c) => {
                        sqlx::query_as($crate::store::sql::HOLDS_OF_CUSTOMER)
                            .bind(c)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => {
                        sqlx::query_as($crate::store::sql::HOLDS_ACTIVE)
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                Ok(rows.into_iter().map($crate::store::sql::hold_from_row).collect())
            }

            async fn customers_with_expired_purposes(
                &self,
                now: i64,
                after: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT customer_id FROM value_purposes \
                     WHERE expires_at <= $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3",
                )
                .bind(now)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
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
                let rows: Vec<$crate::store::sql::EventRow> =
                    sqlx::query_as($crate::store::sql::AUDIT_QUERY)
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
                Ok(rows.into_iter().map($crate::store::sql::event_from_row).collect())
            }

            async fn audit_head(&self) -> $crate::store::StoreResult<(i64, Vec<u8>)> {
                Ok(sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn audit_checkpoints(
                &self,
                from_seq: i64,
                through_seq: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::CheckpointRow>> {
                let rows: Vec<$crate::store::sql::CheckpointTuple> = sqlx::query_as(
                    "SELECT seq, hash, at, kid, signature FROM audit_checkpoints \
                     WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
                )
                .bind(from_seq)
                .bind(through_seq)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map($crate::store::sql::checkpoint_from_row).collect())
            }

            async fn audit_checkpoint_at_or_before(
                &self,
                seq: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::CheckpointRow>> {
                let row: Option<$crate::store::sql::CheckpointTuple> = sqlx::query_as(
                    "SELECT seq, hash, at, kid, signature FROM audit_checkpoints \
                     WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map($crate::store::sql::checkpoint_from_row))
            }

            async fn audit_prune_point(
                &self,
                before: i64,
            ) -> $crate::store::StoreResult<Option<i64>> {
                Ok(sqlx::query_scalar(
                    "SELECT c.seq FROM audit_checkpoints c JOIN audit_events e ON e.seq = c.seq \
                     WHERE e.at < $1 ORDER BY c.seq DESC LIMIT 1",
                )
                .bind(before)
                .fetch_optional(&self.pool)
                .await?)
            }
        }

        /// Records the purposes one value was collected for.
        async fn insert_value_purposes(
            tx: &mut sqlx::Transaction<'static, $db>,
            customer_id: &uuid::Uuid,
            field: &str,
            purposes: &[$crate::store::ValuePurpose],
        ) -> Result<(), $crate::store::StoreError> {
            for p in purposes {
                sqlx::query(
                    "INSERT INTO value_purposes (customer_id, field, purpose, collected_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(customer_id)
                .bind(field)
                .bind(&p.purpose)
                .bind(p.collected_at)
                .bind(p.expires_at)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// Applies one mutation inside the batch transaction.
        async fn apply(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
            fresh: &[uuid::Uuid],
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::Mutation as M;
            match m {
                M::SetMeta { name, value } => {
                    sqlx::query("INSERT INTO vault_meta (name, value) VALUES ($1, $2)")
                        .bind(name)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                }
                M::InsertKek { version, wrapped, active, at } => {
                    sqlx::query(
                        "INSERT INTO keyring (version, wrapped, active, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(version)
                    .bind(wrapped)
                    .bind(active)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::InsertSigningKey(k) => {
                    sqlx::query(
                        "INSERT INTO signing_keys (kid, kek_version, sealed, public_key, active, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&k.kid)
                    .bind(k.kek_version)
                    .bind(&k.sealed)
                    .bind(&k.public_key)
                    .bind(k.active)
                    .bind(k.created_at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RotateKek { version, wrapped, previous, root_fingerprint, at } => {
                    let same_root: Option<String> = sqlx::query_scalar(
                        "SELECT name FROM vault_meta WHERE name = $1 AND value = $2",
                    )
                    .bind("root_fingerprint")
                    .bind(root_fingerprint)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if same_root.is_none() {
                        return Err($crate::store::StoreError::Conflict("root_key_changed".into()));
                    }
                    let r = sqlx::query(
                        "UPDATE keyring SET active = $2, deactivated_at = $3, rewrap_total = \
                         (SELECT COUNT(*) FROM customers WHERE kek_version = $1 AND wrapped_dek IS NOT NULL) \
                         WHERE version = $1 AND active",
                    )
                    .bind(previous)
                    .bind(false)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict("kek_not_active".into()));
                    }
                    sqlx::query(
                        "INSERT INTO keyring (version, wrapped, active, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(version)
                    .bind(wrapped)
                    .bind(true)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RewrapKek { version, expected, wrapped } => {
                    let r = sqlx::query(
                        "UPDATE keyring SET wrapped = $3 WHERE version = $1 AND wrapped = $2",
                    )
                    .bind(version)
                    .bind(expected)
                    .bind(wrapped)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict("kek_changed".into()));
                    }
                }
                M::ReplaceMeta { name, expected: Some(expected), value } => {
                    let r = sqlx::query("UPDATE vault_meta SET value = $3 WHERE name = $1 AND value = $2")
                        .bind(name)
                        .bind(expected)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict("meta_changed".into()));
                    }
                }
                M::ReplaceMeta { name, expected: None, value } => {
                    sqlx::query(
                        "INSERT INTO vault_meta (name, value) VALUES ($1, $2) \
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    )
                    .bind(name)
                    .bind(value)
                    .execute(&mut **tx)
                    .await?;
                }
                M::ExpectKekCount { count } => {
                    let n: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM keyring WHERE wrapped IS NOT NULL")
                            .fetch_one(&mut **tx)
                            .await?;
                    if n != *count {
                        return Err($crate::store::StoreError::Conflict("keyring_changed".into()));
                    }
                }
                M::RewrapDek { customer_id, from_version, kek_version, wrapped_dek } => {
                    sqlx::query(
                        "UPDATE customers SET kek_version = $3, wrapped_dek = $4 \
                         WHERE id = $1 AND kek_version = $2 AND wrapped_dek IS NOT NULL",
                    )
                    .bind(customer_id)
                    .bind(from_version)
                    .bind(kek_version)
                    .bind(wrapped_dek)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RewrapSigningKey { kid, from_version, kek_version, sealed } => {
                    sqlx::query(
                        "UPDATE signing_keys SET kek_version = $3, sealed = $4 \
                         WHERE kid = $1 AND kek_version = $2",
                    )
                    .bind(kid)
                    .bind(from_version)
                    .bind(kek_version)
                    .bind(sealed)
                    .execute(&mut **tx)
                    .await?;
                }
                M::RetireKek { version, at } => {
                    let row: Option<(bool, Option<Vec<u8>>)> =
                        sqlx::query_as("SELECT active, wrapped FROM keyring WHERE version = $1")
                            .bind(version)
                            .fetch_optional(&mut **tx)
                            .await?;
                    match row {
                        None => return Err($crate::store::StoreError::NotFound),
                        Some((true, _)) => {
                            return Err($crate::store::StoreError::Conflict("kek_active".into()));
                        }
                        Some((_, None)) => {
                            return Err($crate::store::StoreError::Conflict("kek_retired".into()));
                        }
                        Some((false, Some(_))) => {}
                    }
                    let r = sqlx::query(
                        "UPDATE keyring SET wrapped = NULL, retired_at = $2 \
                         WHERE version = $1 AND NOT active AND wrapped IS NOT NULL \
                         AND NOT EXISTS (SELECT 1 FROM customers \
                             WHERE kek_version = $1 AND wrapped_dek IS NOT NULL) \
                         AND NOT EXISTS (SELECT 1 FROM signing_keys \
                             WHERE kek_version = $1 AND length(sealed) > 0)",
                    )
                    .bind(version)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict("kek_in_use".into()));
                    }
                }
                M::RotateSigningKey { key, previous_kid, revoke_previous, at } => {
                    let live: Option<i64> = sqlx::query_scalar(
                        "SELECT version FROM keyring WHERE version = $1 AND wrapped IS NOT NULL",
                    )
                    .bind(key.kek_version)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if live.is_none() {
                        return Err($crate::store::StoreError::Conflict("kek_retired".into()));
                    }
                    let r = sqlx::query(
                        "UPDATE signing_keys SET active = $2, retired_at = $3, sealed = $4, \
                         tokens_revoked = $5 WHERE kid = $1 AND active",
                    )
                    .bind(previous_kid)
                    .bind(false)
                    .bind(at)
                    .bind(Vec::<u8>::new())
                    .bind(revoke_previous)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Conflict(
                            "signing_key_not_active".into(),
                        ));
                    }
                    sqlx::query(
                        "INSERT INTO signing_keys (kid, kek_version, sealed, public_key, active, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&key.kid)
                    .bind(key.kek_version)
                    .bind(&key.sealed)
                    .bind(&key.public_key)
                    .bind(true)
                    .bind(key.created_at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::InsertClient { id, name, role, secret_sha256, at } => {
                    sqlx::query(
                        "INSERT INTO clients (id, name, role, secret_sha256, disabled, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(role)
                    .bind(secret_sha256)
                    .bind(false)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::SetClientDisabled { id, disabled } => {
                    let r = sqlx::query("UPDATE clients SET disabled = $2 WHERE id = $1")
                        .bind(id)
                        .bind(disabled)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::InsertUser { id, username, role, password_hash, at } => {
                    sqlx::query(
                        "INSERT INTO users (id, username, role, password_hash, disabled, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(id)
                    .bind(username)
                    .bind(role)
                    .bind(password_hash)
                    .bind(false)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::InsertCustomer { id, external_id, kek_version, wrapped_dek, at } => {
                    sqlx::query(
                        "INSERT INTO customers (id, external_id, created_at, kek_version, wrapped_dek) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(external_id)
                    .bind(at)
                    .bind(kek_version)
                    .bind(wrapped_dek)
                    .execute(&mut **tx)
                    .await?;
                }
                M::PutField {
                    customer_id,
                    field,
                    ciphertext,
                    collected_by,
                    channel,
                    notice_version,
                    at,
                    purposes,
                    blind_index,
                } => {
                    // Replacing a value removes the old ciphertext, its purposes
                    // and its index entries (ON DELETE CASCADE). A customer
                    // created in this unit has none: one statement fewer each.
                    if !fresh.contains(customer_id) {
                        sqlx::query("DELETE FROM field_values WHERE customer_id = $1 AND field = $2")
                            .bind(customer_id)
                            .bind(field)
                            .execute(&mut **tx)
                            .await?;
                    }
                    sqlx::query(
                        "INSERT INTO field_values (customer_id, field, ciphertext, collected_by, channel, notice_version, collected_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(customer_id)
                    .bind(field)
                    .bind(ciphertext)
                    .bind(collected_by)
                    .bind(channel)
                    .bind(notice_version)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    insert_value_purposes(tx, customer_id, field, purposes).await?;
                    if let Some(digest) = blind_index {
                        sqlx::query(
                            "INSERT INTO blind_index (field, digest, customer_id) VALUES ($1, $2, $3)",
                        )
                        .bind(field)
                        .bind(digest)
                        .bind(customer_id)
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                M::DeleteField { customer_id, field } => {
                    sqlx::query("DELETE FROM field_values WHERE customer_id = $1 AND field = $2")
                        .bind(customer_id)
                        .bind(field)
                        .execute(&mut **tx)
                        .await?;
                }
                M::BeginErasure { customer_id, receipt_id, request_id, actor, role, force_full, at } => {
                    let r = sqlx::query(
                        "UPDATE customers SET erased_at = COALESCE(erased_at, $2), external_id = NULL \
                         WHERE id = $1",
                    )
                    .bind(customer_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    sqlx::query(
                        "INSERT INTO erasure_jobs (customer_id, receipt_id, request_id, actor, role, \
                         status, step, force_full, retained, started_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'running', 1, $6, '[]', $7, $7)",
                    )
                    .bind(customer_id)
                    .bind(receipt_id)
                    .bind(request_id)
                    .bind(actor)
                    .bind(role)
                    .bind(force_full)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::DeleteConsents { customer_id } => {
                    sqlx::query("DELETE FROM consent_events WHERE customer_id = $1")
                        .bind(customer_id)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("DELETE FROM objections WHERE customer_id = $1")
                        .bind(customer_id)
                        .execute(&mut **tx)
                        .await?;
                }
                M::AdvanceErasure { customer_id, from_step, to_step, retained, at } => {
                    let r = sqlx::query(
                        "UPDATE erasure_jobs SET step = $3, retained = COALESCE($4, retained), \
                         updated_at = $5 WHERE customer_id = $1 AND status = 'running' AND step = $2",
                    )
                    .bind(customer_id)
                    .bind(from_step)
                    .bind(to_step)
                    .bind(retained)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::ReplaceCiphertext { customer_id, field, ciphertext } => {
                    let r = sqlx::query(
                        "UPDATE field_values SET ciphertext = $3 WHERE customer_id = $1 AND field = $2",
                    )
                    .bind(customer_id)
                    .bind(field)
                    .bind(ciphertext)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::SetValuePurposes { customer_id, field, purposes } => {
                    sqlx::query("DELETE FROM value_purposes WHERE customer_id = $1 AND field = $2")
                        .bind(customer_id)
                        .bind(field)
                        .execute(&mut **tx)
                        .await?;
                    insert_value_purposes(tx, customer_id, field, purposes).await?;
                }
                M::RekeyCustomer { customer_id, kek_version, wrapped_dek } => {
                    let r = sqlx::query(
                        "UPDATE customers SET kek_version = $2, wrapped_dek = $3 \
                         WHERE id = $1 AND wrapped_dek IS NOT NULL",
                    )
                    .bind(customer_id)
                    .bind(kek_version)
                    .bind(wrapped_dek)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    sqlx::query("DELETE FROM blind_index WHERE customer_id = $1")
                        .bind(customer_id)
                        .execute(&mut **tx)
                        .await?;
                }
                M::FinishErasure { customer_id, status, retained, erased_at, at } => {
                    let guard = if status == "erased" {
                        "UPDATE erasure_jobs SET status = 'erased', step = 4, retained = $2, \
                         updated_at = $3, finished_at = $3 WHERE customer_id = $1 AND status <> 'erased'"
                    } else {
                        "UPDATE erasure_jobs SET status = 'partial', step = 4, retained = $2, \
                         updated_at = $3 WHERE customer_id = $1 AND status = 'running'"
                    };
                    let r = sqlx::query(guard)
                        .bind(customer_id)
                        .bind(retained)
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    let tombstone = if status == "erased" {
                        for sql in [
                            "DELETE FROM field_values WHERE customer_id = $1",
                            "DELETE FROM blind_index WHERE customer_id = $1",
                            "DELETE FROM consent_events WHERE customer_id = $1",
                            "DELETE FROM objections WHERE customer_id = $1",
                        ] {
                            sqlx::query(sql).bind(customer_id).execute(&mut **tx).await?;
                        }
                        sqlx::query(
                            "UPDATE customers SET wrapped_dek = NULL, kek_version = NULL, \
                             external_id = NULL, erased_at = COALESCE(erased_at, $2) WHERE id = $1",
                        )
                        .bind(customer_id)
                        .bind(erased_at)
                        .execute(&mut **tx)
                        .await?;
                        "erased"
                    } else {
                        "partially_erased"
                    };
                    sqlx::query(
                        "INSERT INTO tombstones (customer_id, status, erased_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (customer_id) DO UPDATE SET status = excluded.status",
                    )
                    .bind(customer_id)
                    .bind(tombstone)
                    .bind(erased_at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::UpdateRetained { customer_id, retained, at } => {
                    let r = sqlx::query(
                        "UPDATE erasure_jobs SET retained = $2, updated_at = $3 \
                         WHERE customer_id = $1 AND status = 'partial'",
                    )
                    .bind(customer_id)
                    .bind(retained)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::InsertLegalHold(h) => {
                    sqlx::query(
                        "INSERT INTO legal_holds (id, customer_id, fields, reason, basis, purpose, \
                         review_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(h.id)
                    .bind(h.customer_id)
                    .bind(serde_json::to_string(&h.fields).unwrap_or_default())
                    .bind(&h.reason)
                    .bind(&h.basis)
                    .bind(&h.purpose)
                    .bind(h.review_at)
                    .bind(&h.created_by)
                    .bind(h.created_at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::ReleaseLegalHold { id, at } => {
                    let r = sqlx::query(
                        "UPDATE legal_holds SET released_at = $2 WHERE id = $1 AND released_at IS NULL",
                    )
                    .bind(id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::ExpirePurpose { customer_id, field, purpose, now } => {
                    sqlx::query(
                        "DELETE FROM value_purposes WHERE customer_id = $1 AND field = $2 \
                         AND purpose = $3 AND expires_at <= $4",
                    )
                    .bind(customer_id)
                    .bind(field)
                    .bind(purpose)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                M::DeleteFieldIfUnused { customer_id, field } => {
                    sqlx::query(
                        "DELETE FROM field_values WHERE customer_id = $1 AND field = $2 \
                         AND NOT EXISTS (SELECT 1 FROM value_purposes p \
                         WHERE p.customer_id = $1 AND p.field = $2)",
                    )
                    .bind(customer_id)
                    .bind(field)
                    .execute(&mut **tx)
                    .await?;
                }
                M::Requests(r) => apply_requests(tx, r).await?,
                M::AppendConsent(c) => {
                    sqlx::query(
                        "INSERT INTO consent_events (id, customer_id, purpose, action, notice_version, \
                         notice_text_sha256, language, jurisdiction, channel, captured_by, at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(c.id)
                    .bind(c.customer_id)
                    .bind(&c.purpose)
                    .bind(&c.action)
                    .bind(&c.notice_version)
                    .bind(&c.notice_text_sha256)
                    .bind(&c.language)
                    .bind(&c.jurisdiction)
                    .bind(&c.channel)
                    .bind(&c.captured_by)
                    .bind(c.at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::SaveIdempotency { principal, key, request_hash, status, body, at } => {
                    sqlx::query(
                        "INSERT INTO idempotency_keys (principal, key, request_hash, status, body, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(principal)
                    .bind(key)
                    .bind(request_hash)
                    .bind(status)
                    .bind(body)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::InsertCheckpoint(c) => {
                    let stored: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints WHERE seq = $1")
                            .bind(c.seq)
                            .fetch_one(&mut **tx)
                            .await?;
                    if stored > 0 {
                        return Ok(());
                    }
                    let events: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM audit_events WHERE seq = $1 AND hash = $2",
                    )
                    .bind(c.seq)
                    .bind(&c.hash)
                    .fetch_one(&mut **tx)
                    .await?;
                    let head: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM audit_head WHERE id = 1 AND seq = $1 AND hash = $2",
                    )
                    .bind(c.seq)
                    .bind(&c.hash)
                    .fetch_one(&mut **tx)
                    .await?;
                    if events + head == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    sqlx::query(
                        "INSERT INTO audit_checkpoints (seq, hash, at, kid, signature) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(c.seq)
                    .bind(&c.hash)
                    .bind(c.at)
                    .bind(&c.kid)
                    .bind(&c.signature)
                    .execute(&mut **tx)
                    .await?;
                }
                M::PruneAudit { through_seq, before } => {
                    let anchor: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints WHERE seq = $1")
                            .bind(through_seq)
                            .fetch_one(&mut **tx)
                            .await?;
                    if anchor == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    let young: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM audit_events WHERE seq <= $1 AND at >= $2",
                    )
                    .bind(through_seq)
                    .bind(before)
                    .fetch_one(&mut **tx)
                    .await?;
                    if young > 0 {
                        return Err($crate::store::StoreError::Conflict("audit_retention".into()));
                    }
                    sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                        .bind(through_seq)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1")
                        .bind(through_seq)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Ok(())
        }
    };
}

pub(super) use impl_store;
