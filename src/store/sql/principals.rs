//! Principals (machine clients and users) and the idempotency keys of their
//! requests: the reads' statements and the writes.

pub(in crate::store) const CLIENT: &str = "SELECT id, name, role, secret_sha256 AS credential, \
     disabled, secret_changed_at AS password_changed_at FROM clients WHERE id = $1";
pub(in crate::store) const USER: &str = "SELECT id, username AS name, role, \
     password_hash AS credential, disabled, password_changed_at FROM users WHERE id = $1";
pub(in crate::store) const CLIENT_BY_NAME: &str = "SELECT id, name, role, \
     secret_sha256 AS credential, disabled, secret_changed_at AS password_changed_at \
     FROM clients WHERE name = $1";
pub(in crate::store) const CLIENTS: &str = "SELECT id, name, role, disabled, created_at, \
     secret_changed_at AS changed_at FROM clients ORDER BY name";
pub(in crate::store) const USERS: &str = "SELECT id, username AS name, role, disabled, created_at, \
     password_changed_at AS changed_at FROM users ORDER BY username";
pub(in crate::store) const USER_BY_NAME: &str = "SELECT id, username AS name, role, \
     password_hash AS credential, disabled, password_changed_at FROM users WHERE username = $1";
pub(in crate::store) const CONSOLE_SESSION: &str =
    "SELECT user_id, created_at, last_seen_at FROM console_sessions WHERE id_hash = $1";
pub(in crate::store) const IDEMPOTENCY: &str = "SELECT request_hash, state, status, kek_version, body, created_at \
     FROM idempotency_keys WHERE principal = $1 AND key = $2";

/// Generates the principal writes of a backend (see `impl_store!`):
/// `apply_principals`.
macro_rules! principal_writes {
    ($store:ty, $db:ty) => {
        /// Clients, users and idempotency keys.
        async fn apply_principals(
            tx: &mut sqlx::Transaction<'static, $db>,
            m: &$crate::store::Mutation,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::{Mutation as M, StoreError};
            match m {
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
                        return Err(StoreError::NotFound);
                    }
                }
                M::SetClientSecret { id, secret_sha256, at } => {
                    let r = sqlx::query(
                        "UPDATE clients SET secret_sha256 = $2, secret_changed_at = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(secret_sha256)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
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
                M::SetUserDisabled { id, disabled } => {
                    let r = sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
                        .bind(id)
                        .bind(disabled)
                        .execute(&mut **tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                    // A disabled user's console sessions end with it.
                    if *disabled {
                        sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                M::SetUserPassword { id, password_hash, at } => {
                    let r = sqlx::query(
                        "UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(password_hash)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                M::ClaimIdempotency {
                    principal,
                    key,
                    request_hash,
                    state,
                    expired_before,
                    at,
                } => {
                    sqlx::query(
                        "DELETE FROM idempotency_keys \
                         WHERE principal = $1 AND key = $2 AND created_at < $3",
                    )
                    .bind(principal)
                    .bind(key)
                    .bind(expired_before)
                    .execute(&mut **tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO idempotency_keys (principal, key, request_hash, state, \
                         created_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(principal)
                    .bind(key)
                    .bind(request_hash)
                    .bind(*state as i64)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::AnswerIdempotency {
                    principal,
                    key,
                    status,
                    kek_version,
                    body,
                    customer_id,
                } => {
                    sqlx::query(
                        "UPDATE idempotency_keys SET state = $3, status = $4, kek_version = $5, \
                         body = $6, customer_id = $7 WHERE principal = $1 AND key = $2",
                    )
                    .bind(principal)
                    .bind(key)
                    .bind($crate::store::IdempotencyState::Answered as i64)
                    .bind(status)
                    .bind(kek_version)
                    .bind(body)
                    .bind(customer_id)
                    .execute(&mut **tx)
                    .await?;
                }
                M::ReleaseIdempotency { principal, key } => {
                    sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2")
                        .bind(principal)
                        .bind(key)
                        .execute(&mut **tx)
                        .await?;
                }
                M::PruneIdempotency { before } => {
                    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                        .bind(before)
                        .execute(&mut **tx)
                        .await?;
                }
                M::ReleaseStaleIdempotency { before } => {
                    sqlx::query("DELETE FROM idempotency_keys WHERE state = $1 AND created_at < $2")
                        .bind($crate::store::IdempotencyState::Running as i64)
                        .bind(before)
                        .execute(&mut **tx)
                        .await?;
                }
                M::InsertConsoleSession { id_hash, user_id, at } => {
                    sqlx::query(
                        "INSERT INTO console_sessions (id_hash, user_id, created_at, last_seen_at) \
                         VALUES ($1, $2, $3, $3)",
                    )
                    .bind(id_hash)
                    .bind(user_id)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::TouchConsoleSession { id_hash, at } => {
                    sqlx::query(
                        "UPDATE console_sessions SET last_seen_at = $2 \
                         WHERE id_hash = $1 AND last_seen_at < $2",
                    )
                    .bind(id_hash)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                }
                M::DeleteConsoleSession { id_hash } => {
                    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
                        .bind(id_hash)
                        .execute(&mut **tx)
                        .await?;
                }
                M::PruneConsoleSessions { idle_before, started_before } => {
                    sqlx::query(
                        "DELETE FROM console_sessions WHERE last_seen_at < $1 OR created_at < $2",
                    )
                    .bind(idle_before)
                    .bind(started_before)
                    .execute(&mut **tx)
                    .await?;
                }
                _ => return Err($crate::store::sql::misrouted("principals")),
            }
            Ok(())
        }
    };
}

pub(in crate::store) use principal_writes;
