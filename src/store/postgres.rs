//! PostgreSQL backend: the production store. Several vault processes may
//! share one database; the audit head row is locked inside every append
//! transaction (`FOR UPDATE`), so their events form one chain.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::{DatabaseUrl, StoreError, StoreResult};

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const SQL: super::sql::DialectSql = super::sql::POSTGRES_SQL;
    const LOCK_HEAD: &'static str = "SELECT seq, hash, at FROM audit_head WHERE id = 1 FOR UPDATE";
    /// A transaction serializes with the other writers only by locking the
    /// head row (`LOCK_HEAD`), so every write transaction reads it first.
    const BEGIN_SERIALIZES: bool = false;

    /// The settings of every connection the store opens to `url`: those of
    /// the URL, with PostgreSQL's JIT compilation off. The vault's queries
    /// are point lookups by key; where the planner overestimates their cost
    /// (tables never analyzed, e.g. right after a bulk import with
    /// autovacuum off), JIT compiled every profile read for about 0.2 s,
    /// longer than the read itself by three orders of magnitude.
    fn connect_options(url: &DatabaseUrl) -> StoreResult<PgConnectOptions> {
        let opts: PgConnectOptions = url
            .expose()
            .parse()
            .map_err(|e| StoreError::Config(format!("invalid database URL {url}: {e}")))?;
        Ok(opts.options([("jit", "off")]))
    }

    pub async fn open(url: &DatabaseUrl) -> StoreResult<Self> {
        let opts = Self::connect_options(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A connection whose transaction could not be rolled back (SQLite
            // rolls back by itself on "disk full", so the ROLLBACK sqlx sends
            // on drop fails and the connection still counts a transaction)
            // would refuse every later BEGIN: close it and open a fresh one.
            .before_acquire(|conn, _| {
                let clean = !sqlx::Connection::is_in_transaction(conn);
                Box::pin(async move { Ok(clean) })
            })
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Every read goes through the pool (a read is a round trip to the
    /// database process either way).
    fn direct_reads(&self) -> Option<&super::sqlite_direct::DirectReads> {
        None
    }

    /// No copy of a record is kept: every read asks the database.
    fn record_cache(&self) -> Option<&super::record_cache::RecordCache> {
        None
    }

    /// Every batch goes through `commit_attempt` (the head row is locked
    /// first in every write transaction).
    async fn commit_direct(
        &self,
        _units: &[super::Unit],
        _at: i64,
        _known: Option<&super::ChainHead>,
    ) -> StoreResult<Option<super::sql::CommitAttempt>> {
        Ok(None)
    }
}

super::sql::impl_store!(PgStore, Postgres, "postgres");

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;

    /// Connects as the store does to the PostgreSQL server `DATABASE_URL`
    /// names (skipped without one) and reads the settings back.
    #[tokio::test]
    async fn the_stores_connections_run_without_jit_and_keep_the_urls_settings() {
        let Some(url) = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        else {
            return;
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = DatabaseUrl::new(format!("{url}{sep}application_name=pii-vault-options"));
        let opts = PgStore::connect_options(&url).unwrap();
        let mut conn = sqlx::PgConnection::connect_with(&opts).await.unwrap();
        let jit: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let name: String = sqlx::query_scalar("SHOW application_name")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        assert_eq!((jit.as_str(), name.as_str()), ("off", "pii-vault-options"));
    }
}
