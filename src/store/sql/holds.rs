//! Legal holds: the reads' statements and the writes.

use crate::store::LegalHoldRow;

pub(in crate::store) const HOLD_BY_ID: &str = "SELECT id, customer_id, fields, reason, basis, \
     purpose, review_at, created_by, created_at, released_at FROM legal_holds WHERE id = $1";
pub(in crate::store) const HOLDS_OF_CUSTOMER: &str = "SELECT id, customer_id, fields, reason, \
     basis, purpose, review_at, created_by, created_at, released_at FROM legal_holds \
     WHERE customer_id = $1 ORDER BY review_at, id";
pub(in crate::store) const HOLDS_ACTIVE: &str = "SELECT id, customer_id, fields, reason, basis, \
     purpose, review_at, created_by, created_at, released_at FROM legal_holds \
     WHERE released_at IS NULL ORDER BY review_at, id";

/// A `legal_holds` row: `fields` is the JSON list of field names.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct HoldRecord {
    id: uuid::Uuid,
    customer_id: uuid::Uuid,
    fields: String,
    reason: String,
    basis: String,
    purpose: Option<String>,
    review_at: i64,
    created_by: String,
    created_at: i64,
    released_at: Option<i64>,
}

impl From<HoldRecord> for LegalHoldRow {
    fn from(r: HoldRecord) -> Self {
        LegalHoldRow {
            id: r.id,
            customer_id: r.customer_id,
            fields: serde_json::from_str(&r.fields).unwrap_or_default(),
            reason: r.reason,
            basis: r.basis,
            purpose: r.purpose,
            review_at: r.review_at,
            created_by: r.created_by,
            created_at: r.created_at,
            released_at: r.released_at,
        }
    }
}

/// Generates the legal-hold writes of a backend (see `impl_store!`):
/// `apply_holds`.
macro_rules! hold_writes {
    ($store:ty, $db:ty) => {
        /// Legal holds placed and released.
        async fn apply_holds(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::{Mutation as M, StoreError};
            match m {
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
                        return Err(StoreError::NotFound);
                    }
                }
                _ => return Err($crate::store::sql::misrouted("holds")),
            }
            Ok(())
        }
    };
}

pub(in crate::store) use hold_writes;
