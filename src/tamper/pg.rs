//! The chained logs in a second PostgreSQL database (`tombstone_database_url`):
//! one table, `tamper_log (log, n, line)`, one row per line. Every vault
//! process sees the same logs, and restoring the vault's own database does
//! not roll them back. Appends take a transaction-scoped advisory lock per
//! log, so the processes' entries form one chain.
//!
//! Its own pool, its own static SQL and its own migrations
//! (`migrations/tamper/`); nothing here goes through the vault's store.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::LogError;
use crate::store::DatabaseUrl;

const SELECT_ALL: &str = "SELECT n, line FROM tamper_log WHERE log = $1 ORDER BY n";
const SELECT_TAIL: &str = "SELECT n, line FROM tamper_log WHERE log = $1 ORDER BY n DESC LIMIT $2";
const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
const INSERT: &str = "INSERT INTO tamper_log (log, n, line) VALUES ($1, $2, $3)";
const DELETE_ALL: &str = "DELETE FROM tamper_log WHERE log = $1";
/// Whether the database holds the vault's own tables.
const IS_VAULT_DATABASE: &str = "SELECT to_regclass('vault_meta') IS NOT NULL";

#[derive(Debug, sqlx::FromRow)]
struct LineRow {
    n: i64,
    line: String,
}

/// The pool of the tombstone database.
#[derive(Clone)]
pub struct PgLogs {
    pool: PgPool,
}

fn io(e: sqlx::Error) -> std::io::Error {
    std::io::Error::other(e)
}

/// The advisory lock key of a log: "pii-vault" in ASCII, then the log.
fn lock_key(log: &str) -> i64 {
    match log {
        "tombstones" => 0x7069_692d_7661_0001,
        _ => 0x7069_692d_7661_0002,
    }
}

impl PgLogs {
    /// Connects and runs the migrations. Refuses the vault's own database.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, String> {
        let opts: PgConnectOptions = url
            .expose()
            .parse()
            .map_err(|e| format!("invalid tombstone_database_url {url}: {e}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(|e| format!("cannot connect to the tombstone database {url}: {e}"))?;
        let is_vault: bool = sqlx::query_scalar(IS_VAULT_DATABASE)
            .fetch_one(&pool)
            .await
            .map_err(|e| format!("cannot read the tombstone database {url}: {e}"))?;
        if is_vault {
            return Err(format!(
                "tombstone_database_url ({url}) names the vault's own database: it must be a \
                 second database, so that restoring the vault's database does not roll the \
                 tombstones and the audit witness back"
            ));
        }
        sqlx::migrate!("./migrations/tamper")
            .run(&pool)
            .await
            .map_err(|e| format!("cannot migrate the tombstone database {url}: {e}"))?;
        Ok(PgLogs { pool })
    }

    pub async fn read_all(&self, log: &str) -> std::io::Result<Vec<String>> {
        let rows: Vec<LineRow> = sqlx::query_as(SELECT_ALL)
            .bind(log)
            .fetch_all(&self.pool)
            .await
            .map_err(io)?;
        Ok(rows.into_iter().map(|r| r.line).collect())
    }

    /// The last `max` lines and the row number of the first of them.
    pub async fn read_tail(&self, log: &str, max: usize) -> std::io::Result<(u64, Vec<String>)> {
        let mut rows: Vec<LineRow> = sqlx::query_as(SELECT_TAIL)
            .bind(log)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(io)?;
        rows.reverse();
        let first = rows.first().map(|r| r.n.max(1) as u64).unwrap_or(1);
        Ok((first, rows.into_iter().map(|r| r.line).collect()))
    }

    /// Appends what `make` returns given the last line, in one transaction
    /// under the log's advisory lock.
    pub async fn append(
        &self,
        log: &str,
        make: impl FnOnce(Option<&str>) -> Result<Vec<String>, LogError>,
    ) -> Result<(), LogError> {
        let mut tx = self.pool.begin().await.map_err(io)?;
        sqlx::query(LOCK)
            .bind(lock_key(log))
            .execute(&mut *tx)
            .await
            .map_err(io)?;
        let last: Option<LineRow> = sqlx::query_as(SELECT_TAIL)
            .bind(log)
            .bind(1i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(io)?;
        let lines = make(last.as_ref().map(|r| r.line.as_str()))?;
        let mut n = last.map(|r| r.n).unwrap_or(0);
        for line in lines {
            n += 1;
            sqlx::query(INSERT)
                .bind(log)
                .bind(n)
                .bind(line)
                .execute(&mut *tx)
                .await
                .map_err(io)?;
        }
        tx.commit().await.map_err(io)?;
        Ok(())
    }

    /// Replaces every line of `log`, in one transaction.
    pub async fn replace(&self, log: &str, lines: &[String]) -> std::io::Result<()> {
        let mut tx = self.pool.begin().await.map_err(io)?;
        sqlx::query(LOCK)
            .bind(lock_key(log))
            .execute(&mut *tx)
            .await
            .map_err(io)?;
        sqlx::query(DELETE_ALL)
            .bind(log)
            .execute(&mut *tx)
            .await
            .map_err(io)?;
        for (i, line) in lines.iter().enumerate() {
            sqlx::query(INSERT)
                .bind(log)
                .bind(i as i64 + 1)
                .bind(line)
                .execute(&mut *tx)
                .await
                .map_err(io)?;
        }
        tx.commit().await.map_err(io)
    }
}
