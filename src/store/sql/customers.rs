//! Customers, their values (ciphertext, purposes, blind-index entries) and
//! consent events: the record read, and the writes.
//!
//! Once a customer's erasure has begun (`erased_at` set), no value,
//! blind-index entry or consent event is stored for it: the inserts carry
//! the condition themselves, so the check and the write are one statement
//! in the unit's transaction. The erasure's own writes (re-encrypting kept
//! values, cutting their purposes) only change rows that exist.

use crate::store::{ConsentEvent, CustomerRecord, CustomerRow, FieldRow, StoreError, ValuePurpose};

/// What [`DialectSql::record`](super::DialectSql::record) returns: the
/// customer's columns, then its values (with their purposes), consent
/// events and objections as JSON arrays (`NULL` or `[]` when there are none).
#[derive(sqlx::FromRow)]
pub(in crate::store) struct RecordRow {
    #[sqlx(flatten)]
    customer: CustomerRow,
    fields: Option<String>,
    consents: Option<String>,
    objections: Option<String>,
}

#[derive(serde::Deserialize)]
struct FieldOut {
    field: String,
    /// Hex (either case).
    ciphertext: String,
    collected_by: String,
    channel: Option<String>,
    notice_version: Option<String>,
    collected_at: i64,
    purposes: Option<Vec<PurposeOut>>,
}

#[derive(serde::Deserialize)]
struct PurposeOut {
    purpose: String,
    collected_at: i64,
    expires_at: i64,
}

#[derive(serde::Deserialize)]
struct ConsentOut {
    /// Hex of the 16 bytes (SQLite) or the hyphenated form (PostgreSQL).
    id: String,
    purpose: String,
    action: String,
    notice_version: String,
    notice_text_sha256: String,
    language: String,
    jurisdiction: String,
    channel: String,
    captured_by: String,
    at: i64,
    /// Absent in rows read by an older query shape: not explicit.
    #[serde(default)]
    explicit: bool,
}

fn unreadable(what: &str) -> StoreError {
    StoreError::Database(format!("stored customer record unreadable ({what})"))
}

fn json_array<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str::<Option<Vec<T>>>(&t)
            .map(Option::unwrap_or_default)
            .map_err(|_| unreadable(what)),
    }
}

impl FieldOut {
    fn into_row(self) -> Result<FieldRow, StoreError> {
        Ok(FieldRow {
            ciphertext: hex::decode(&self.ciphertext).map_err(|_| unreadable("ciphertext"))?,
            field: self.field,
            collected_by: self.collected_by,
            channel: self.channel,
            notice_version: self.notice_version,
            collected_at: self.collected_at,
            purposes: self
                .purposes
                .unwrap_or_default()
                .into_iter()
                .map(|p| ValuePurpose {
                    purpose: p.purpose,
                    collected_at: p.collected_at,
                    expires_at: p.expires_at,
                })
                .collect(),
        })
    }
}

impl ConsentOut {
    fn into_event(self, customer_id: uuid::Uuid) -> Result<ConsentEvent, StoreError> {
        Ok(ConsentEvent {
            id: uuid::Uuid::try_parse(&self.id).map_err(|_| unreadable("consent id"))?,
            customer_id,
            purpose: self.purpose,
            action: self.action,
            notice_version: self.notice_version,
            notice_text_sha256: self.notice_text_sha256,
            language: self.language,
            jurisdiction: self.jurisdiction,
            channel: self.channel,
            captured_by: self.captured_by,
            at: self.at,
            explicit: self.explicit,
        })
    }
}

impl TryFrom<RecordRow> for CustomerRecord {
    type Error = StoreError;

    fn try_from(r: RecordRow) -> Result<Self, StoreError> {
        let id = r.customer.id;
        let fields = json_array::<FieldOut>(r.fields, "values")?
            .into_iter()
            .map(FieldOut::into_row)
            .collect::<Result<Vec<_>, _>>()?;
        let consents = json_array::<ConsentOut>(r.consents, "consents")?
            .into_iter()
            .map(|c| c.into_event(id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CustomerRecord {
            customer: r.customer,
            fields,
            consents,
            objections: json_array(r.objections, "objections")?,
        })
    }
}

pub(in crate::store) const FIND_BY_BLIND_INDEX: &str = "SELECT customer_id FROM blind_index \
     WHERE field = $1 AND digest = $2 ORDER BY customer_id LIMIT 100";
/// The customer writes that both SQLite paths make (the sqlx writer here,
/// the direct writer in `sqlite_direct`), with their parameters in order of
/// first use.
pub(in crate::store) const INSERT_CUSTOMER: &str = "INSERT INTO customers \
     (id, external_id, created_at, kek_version, wrapped_dek) VALUES ($1, $2, $3, $4, $5)";
pub(in crate::store) const DELETE_VALUE: &str =
    "DELETE FROM field_values WHERE customer_id = $1 AND field = $2";
/// One statement: in PostgreSQL the row lock makes a concurrent writer
/// wait, then see the moved version.
pub(in crate::store) const EXPECT_VERSION: &str = "UPDATE customers SET version = version + 1 \
     WHERE id = $1 AND erased_at IS NULL AND $2 LIKE ('%,' || version || ',%')";
/// SQLite only (`migrations/sqlite/0017_record_stamps.sql`).
pub(in crate::store) const RECORD_STAMP_IS: &str =
    "SELECT 1 FROM customers WHERE id = $1 AND record_stamp = $2";
/// Stored only while the customer exists and its erasure has not begun.
pub(in crate::store) const INSERT_CONSENT: &str = "INSERT INTO consent_events \
     (id, customer_id, purpose, action, notice_version, notice_text_sha256, language, \
     jurisdiction, channel, captured_by, at, explicit) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
     WHERE EXISTS (SELECT 1 FROM customers WHERE id = $2 AND erased_at IS NULL)";
pub(in crate::store) const EXPIRED_PURPOSES: &str = "SELECT DISTINCT customer_id \
     FROM value_purposes WHERE expires_at <= $1 AND customer_id > $2 \
     ORDER BY customer_id LIMIT $3";

/// Generates the customer writes of a backend (see `impl_store!`):
/// `apply_customers`, `put_fields`, `append_consent`.
macro_rules! customer_writes {
    ($store:ty, $db:ty) => {
        /// Customers, values and consent events.
        async fn apply_customers(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
            fresh: &[uuid::Uuid],
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::{Mutation as M, StoreError};
            match m {
                M::InsertCustomer { id, external_id, kek_version, wrapped_dek, at } => {
                    sqlx::query($crate::store::sql::customers::INSERT_CUSTOMER)
                    .bind(id)
                    .bind(external_id)
                    .bind(at)
                    .bind(kek_version)
                    .bind(wrapped_dek)
                    .execute(&mut **tx)
                    .await?;
                }
                M::PutField { .. } => put_fields(tx, &[m], fresh).await?,
                M::DeleteField { customer_id, field } => {
                    sqlx::query($crate::store::sql::customers::DELETE_VALUE)
                        .bind(customer_id)
                        .bind(field)
                        .execute(&mut **tx)
                        .await?;
                }
                M::AppendConsent(c) => append_consent(tx, c).await?,
                M::ExpectRecordStamp { customer_id, stamp } => {
                    // Without stamps (PostgreSQL) no copy was handed out:
                    // nothing can be checked, so the unit is refused.
                    let found: Option<i64> = if <$store>::SQL.record_stamps {
                        sqlx::query_scalar($crate::store::sql::customers::RECORD_STAMP_IS)
                            .bind(customer_id)
                            .bind(stamp)
                            .fetch_optional(&mut **tx)
                            .await?
                    } else {
                        None
                    };
                    if found.is_none() {
                        return Err(StoreError::Conflict(
                            $crate::store::mutation::RECORD_CHANGED.into(),
                        ));
                    }
                }
                M::ExpectCustomerVersion {
                    customer_id,
                    versions,
                } => {
                    let r = sqlx::query($crate::store::sql::customers::EXPECT_VERSION)
                    .bind(customer_id)
                    .bind(versions)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Conflict(
                            $crate::store::mutation::VERSION_MISMATCH.into(),
                        ));
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
                        return Err(StoreError::NotFound);
                    }
                }
                M::SetValuePurposes { customer_id, field, purposes } => {
                    sqlx::query("DELETE FROM value_purposes WHERE customer_id = $1 AND field = $2")
                        .bind(customer_id)
                        .bind(field)
                        .execute(&mut **tx)
                        .await?;
                    if let Some(rows) = $crate::store::sql::encode::purpose_rows(field, purposes)? {
                        sqlx::query(<$store>::SQL.purposes)
                            .bind(customer_id)
                            .bind(rows)
                            .execute(&mut **tx)
                            .await?;
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
                _ => return Err($crate::store::sql::misrouted("customers")),
            }
            Ok(())
        }

        /// Stores some values of one customer (consecutive `PutField`s of a
        /// unit) with their purposes and blind index entries: three
        /// statements however many values, plus one `DELETE` per replaced
        /// value of a customer not created in this unit. NotFound (nothing
        /// stored) when the customer does not exist or its erasure has begun.
        async fn put_fields(
            tx: &mut sqlx::Transaction<'static, $db>,
            puts: &[&$crate::store::Mutation],
            fresh: &[uuid::Uuid],
        ) -> Result<(), $crate::store::StoreError> {
            let Some($crate::store::Mutation::PutField { customer_id, .. }) = puts.first() else {
                return Ok(());
            };
            // Replacing a value removes the old ciphertext, its purposes and
            // its index entries (ON DELETE CASCADE). A customer created in
            // this unit has none: one statement fewer per value.
            if !fresh.contains(customer_id) {
                for m in puts {
                    if let $crate::store::Mutation::PutField { field, .. } = m {
                        sqlx::query($crate::store::sql::customers::DELETE_VALUE)
                            .bind(customer_id)
                            .bind(field)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
            }
            let rows = $crate::store::sql::encode::field_rows(puts)?;
            let stored = sqlx::query(<$store>::SQL.values)
                .bind(customer_id)
                .bind(rows.values)
                .execute(&mut **tx)
                .await?;
            // Refused for an unknown customer or one whose erasure has begun:
            // nothing of the unit is stored (its savepoint is rolled back).
            if stored.rows_affected() == 0 {
                return Err($crate::store::StoreError::NotFound);
            }
            if let Some(purposes) = rows.purposes {
                sqlx::query(<$store>::SQL.purposes)
                    .bind(customer_id)
                    .bind(purposes)
                    .execute(&mut **tx)
                    .await?;
            }
            if let Some(digests) = rows.digests {
                sqlx::query(<$store>::SQL.digests)
                    .bind(customer_id)
                    .bind(digests)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        /// Appends a consent event; NotFound when the customer does not
        /// exist or its erasure has begun.
        async fn append_consent(
            tx: &mut sqlx::Transaction<'static, $db>,
            c: &$crate::store::ConsentEvent,
        ) -> Result<(), $crate::store::StoreError> {
            let r = sqlx::query($crate::store::sql::customers::INSERT_CONSENT)
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
            .bind(c.explicit)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err($crate::store::StoreError::NotFound);
            }
            Ok(())
        }
    };
}

pub(in crate::store) use customer_writes;
