//! Erasure jobs and tombstones: the reads' statements and the writes of
//! each step (`crate::requests::erasure` drives them). Job statuses are
//! stored as [`ErasureJobStatus::as_str`](crate::store::ErasureJobStatus::as_str)
//! names (`running`, `partial`, `erased`).

pub(in crate::store) const ERASURE_JOB: &str = "SELECT customer_id, receipt_id, request_id, \
     actor, role, status, step, force_full, retained, started_at, updated_at, finished_at \
     FROM erasure_jobs WHERE customer_id = $1";
pub(in crate::store) const JOBS_WITH_STATUS: &str =
    "SELECT customer_id FROM erasure_jobs WHERE status = $1 ORDER BY customer_id";
pub(in crate::store) const TOMBSTONES: &str =
    "SELECT customer_id, status, erased_at FROM tombstones ORDER BY customer_id";

/// Ends a job with nothing kept (also from `partial`).
pub(in crate::store) const FINISH_ERASED: &str = "UPDATE erasure_jobs SET status = 'erased', \
     step = 4, retained = $2, updated_at = $3, finished_at = $3 \
     WHERE customer_id = $1 AND status <> 'erased'";
/// Ends a running job with values kept.
pub(in crate::store) const FINISH_PARTIAL: &str = "UPDATE erasure_jobs SET status = 'partial', \
     step = 4, retained = $2, updated_at = $3 WHERE customer_id = $1 AND status = 'running'";

/// Generates the erasure writes of a backend (see `impl_store!`):
/// `apply_erasure`, `begin_erasure`, `finish_erasure`.
macro_rules! erasure_writes {
    ($store:ty, $db:ty) => {
        /// The steps of an erasure job.
        async fn apply_erasure(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::{Mutation as M, StoreError};
            match m {
                M::BeginErasure { .. } => begin_erasure(tx, m).await?,
                M::DeleteConsents { customer_id } => {
                    for sql in [
                        "DELETE FROM consent_events WHERE customer_id = $1",
                        "DELETE FROM objections WHERE customer_id = $1",
                        "DELETE FROM idempotency_keys WHERE customer_id = $1",
                    ] {
                        sqlx::query(sql).bind(customer_id).execute(&mut **tx).await?;
                    }
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
                        return Err(StoreError::NotFound);
                    }
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
                        return Err(StoreError::NotFound);
                    }
                    sqlx::query("DELETE FROM blind_index WHERE customer_id = $1")
                        .bind(customer_id)
                        .execute(&mut **tx)
                        .await?;
                }
                M::FinishErasure { .. } => finish_erasure(tx, m).await?,
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
                        return Err(StoreError::NotFound);
                    }
                }
                _ => return Err($crate::store::sql::misrouted("erasure")),
            }
            Ok(())
        }

        /// `Mutation::BeginErasure`: the customer marked erased (from this
        /// commit on, nothing more is stored for it) and the job row.
        async fn begin_erasure(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            let $crate::store::Mutation::BeginErasure {
                customer_id,
                receipt_id,
                request_id,
                actor,
                role,
                force_full,
                at,
            } = m
            else {
                return Err($crate::store::sql::misrouted("begin_erasure"));
            };
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
            Ok(())
        }

        /// `Mutation::FinishErasure`.
        async fn finish_erasure(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::{ErasureJobStatus, StoreError};
            let $crate::store::Mutation::FinishErasure { customer_id, status, retained, erased_at, at } =
                m
            else {
                return Err($crate::store::sql::misrouted("finish_erasure"));
            };
            let (guard, tombstone) = match status {
                ErasureJobStatus::Erased => ($crate::store::sql::erasure::FINISH_ERASED, "erased"),
                ErasureJobStatus::Partial => {
                    ($crate::store::sql::erasure::FINISH_PARTIAL, "partially_erased")
                }
                ErasureJobStatus::Running => {
                    return Err(StoreError::Conflict("erasure_not_ended".into()));
                }
            };
            let r = sqlx::query(guard)
                .bind(customer_id)
                .bind(retained)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            if *status == ErasureJobStatus::Erased {
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
            }
            sqlx::query(
                "INSERT INTO tombstones (customer_id, status, erased_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (customer_id) DO UPDATE SET status = excluded.status",
            )
            .bind(customer_id)
            .bind(tombstone)
            .bind(erased_at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
    };
}

pub(in crate::store) use erasure_writes;
