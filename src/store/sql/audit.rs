//! The audit trail: events, the chain head, checkpoints and pruning — the
//! reads' statements and the writes.

use crate::audit::{EventDraft, StoredEvent};

/// Moves the head from (`$4`, `$5`) to (`$1`, `$2`, `$3`): changes no row if
/// the head is no longer (`$4`, `$5`), i.e. another writer moved it.
pub(in crate::store) const MOVE_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2, at = $3 \
     WHERE id = 1 AND seq = $4 AND hash = $5";
pub(in crate::store) const HEAD: &str = "SELECT seq, hash, at FROM audit_head WHERE id = 1";
pub(in crate::store) const EVENTS: &str = "SELECT seq, at, actor, role, action, purpose, \
     customer_id, fields, decision, reasons, request_id, prev_hash, hash FROM audit_events \
     WHERE seq > $1 \
     AND ($2 IS NULL OR customer_id = $2) \
     AND ($3 IS NULL OR actor = $3) \
     AND ($4 IS NULL OR action = $4) \
     AND ($5 IS NULL OR purpose = $5) \
     AND ($6 IS NULL OR decision = $6) \
     AND ($7 IS NULL OR at >= $7) \
     AND ($8 IS NULL OR at < $8) \
     ORDER BY seq LIMIT $9";
pub(in crate::store) const CHECKPOINTS: &str = "SELECT seq, hash, at, kid, signature \
     FROM audit_checkpoints WHERE seq >= $1 AND seq <= $2 ORDER BY seq";
pub(in crate::store) const CHECKPOINT_AT_OR_BEFORE: &str = "SELECT seq, hash, at, kid, \
     signature FROM audit_checkpoints WHERE seq <= $1 ORDER BY seq DESC LIMIT 1";
pub(in crate::store) const PRUNE_POINT: &str = "SELECT c.seq FROM audit_checkpoints c \
     JOIN audit_events e ON e.seq = c.seq WHERE e.at < $1 ORDER BY c.seq DESC LIMIT 1";

/// An `audit_events` row: `fields` and `reasons` are JSON texts.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct EventRecord {
    seq: i64,
    at: i64,
    actor: String,
    role: String,
    action: String,
    purpose: Option<String>,
    customer_id: Option<String>,
    fields: String,
    decision: String,
    reasons: String,
    request_id: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl From<EventRecord> for StoredEvent {
    fn from(r: EventRecord) -> Self {
        StoredEvent {
            seq: r.seq,
            at: r.at,
            draft: EventDraft {
                actor: r.actor,
                role: r.role,
                action: r.action,
                purpose: r.purpose,
                customer_id: r.customer_id,
                fields: serde_json::from_str(&r.fields).unwrap_or_default(),
                decision: r.decision,
                reasons: serde_json::from_str(&r.reasons).unwrap_or_default(),
                request_id: r.request_id,
            },
            prev_hash: hex::encode(r.prev_hash),
            hash: hex::encode(r.hash),
        }
    }
}

/// Generates the audit writes of a backend (see `impl_store!`):
/// `insert_events`, `apply_audit`, `insert_checkpoint`, `prune_audit`.
macro_rules! audit_writes {
    ($store:ty, $db:ty) => {
        /// Inserts the events linked so far (one statement) after moving
        /// the head from `from` to the last of them, `to`. `Ok(false)`:
        /// the head is no longer `from` (another writer moved it), nothing
        /// was inserted and the transaction must be rolled back.
        async fn insert_events(
            tx: &mut sqlx::Transaction<'static, $db>,
            pending: &mut $crate::store::sql::encode::PendingEvents,
            from: &mut $crate::store::ChainHead,
            to: &$crate::store::ChainHead,
        ) -> Result<bool, $crate::store::StoreError> {
            let Some(rows) = pending.take() else {
                return Ok(true);
            };
            let moved = sqlx::query($crate::store::sql::audit::MOVE_HEAD)
                .bind(to.seq)
                .bind(&to.hash)
                .bind(to.at)
                .bind(from.seq)
                .bind(&from.hash)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if moved == 0 {
                return Ok(false);
            }
            sqlx::query(<$store>::SQL.events)
                .bind(rows)
                .execute(&mut **tx)
                .await?;
            *from = to.clone();
            Ok(true)
        }

        /// Checkpoints and pruning.
        async fn apply_audit(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            match m {
                $crate::store::Mutation::InsertCheckpoint(c) => insert_checkpoint(tx, c).await,
                $crate::store::Mutation::PruneAudit {
                    through_seq,
                    before,
                } => prune_audit(tx, *through_seq, *before).await,
                _ => Err($crate::store::sql::misrouted("audit")),
            }
        }

        /// `Mutation::InsertCheckpoint`.
        async fn insert_checkpoint(
            tx: &mut sqlx::Transaction<'static, $db>,
            c: &$crate::store::CheckpointRow,
        ) -> Result<(), $crate::store::StoreError> {
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
            Ok(())
        }

        /// `Mutation::PruneAudit`.
        async fn prune_audit(
            tx: &mut sqlx::Transaction<'static, $db>,
            through_seq: i64,
            before: i64,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::StoreError;
            let anchor: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints WHERE seq = $1")
                    .bind(through_seq)
                    .fetch_one(&mut **tx)
                    .await?;
            if anchor == 0 {
                return Err(StoreError::NotFound);
            }
            let young: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit_events WHERE seq <= $1 AND at >= $2",
            )
            .bind(through_seq)
            .bind(before)
            .fetch_one(&mut **tx)
            .await?;
            if young > 0 {
                return Err(StoreError::Conflict("audit_retention".into()));
            }
            sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
                .bind(through_seq)
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1")
                .bind(through_seq)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    };
}

pub(in crate::store) use audit_writes;
