//! SQLite backend: the embedded default. WAL journal, `synchronous=FULL`
//! (an acknowledged commit survives power loss), foreign keys on, and
//! `secure_delete` so replaced or erased ciphertext is overwritten in the file.
//! Temporary storage (statement journals, sorts) stays in memory.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::sql::CommitAttempt;
use super::sqlite_direct::{DirectReads, DirectUnit, DirectWriter};
use super::{ChainHead, DatabaseUrl, StoreError, StoreResult, Unit};

pub struct SqliteStore {
    /// Reads: a few connections, about one per core. SQLite runs each
    /// statement on its connection's worker thread, so more connections
    /// than cores only add thread switches.
    pool: SqlitePool,
    /// Writes: one connection. SQLite admits one writer at a time anyway
    /// (`BEGIN IMMEDIATE`); with a connection of its own the group commit
    /// never waits for a read's pool slot and reads never queue behind it.
    writer: SqlitePool,
    /// The hot reads (a customer's record, a blind-index lookup) on
    /// connections of their own, each read in one call (see
    /// `sqlite_direct`); `None` for a database without a file.
    direct: Option<DirectReads>,
    /// Commits the batches of profile reads, searches, creates and updates
    /// in one call each (see `sqlite_direct`); `None` for a database
    /// without a file.
    direct_writer: Option<DirectWriter>,
}

impl SqliteStore {
    const SQL: super::sql::DialectSql = super::sql::SQLITE_SQL;
    /// Locks the head row: `BEGIN IMMEDIATE` already holds the write lock.
    const LOCK_HEAD: &'static str = "SELECT seq, hash, at FROM audit_head WHERE id = 1";
    /// `BEGIN IMMEDIATE` serializes writers (of every process) by itself, so
    /// a write transaction need not lock the head row first: a chain head
    /// remembered from this store's last commit is checked when the head
    /// moves instead (see `Store::commit_batch_after`).
    const BEGIN_SERIALIZES: bool = true;

    pub async fn open(url: &DatabaseUrl) -> StoreResult<Self> {
        if let Some(path) = url.sqlite_path()
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::from_str(url.expose())
            .map_err(|e| StoreError::Config(format!("invalid database URL {url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("secure_delete", "ON")
            // A commit batch's multi-row statements need a statement journal
            // larger than SQLite keeps in memory by default; as a temporary
            // file it cost every commit an open, writes, a close and an
            // unlink on the writer, the serial stage of every audited read.
            .pragma("temp_store", "MEMORY");
        // The writer first: it creates the file and runs the migrations.
        let writer = pool_options(1).connect_with(opts.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let readers = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
        let pool = pool_options(readers as u32).connect_with(opts).await?;
        let (direct, direct_writer) = match url.sqlite_path() {
            Some(path) => {
                restrict_permissions(&path);
                let reads = DirectReads::open(&path, readers)?;
                super::record_cache::expire_in_background(reads.copies_handle());
                (Some(reads), Some(DirectWriter::open(&path)?))
            }
            None => (None, None),
        };
        Ok(SqliteStore {
            pool,
            writer,
            direct,
            direct_writer,
        })
    }

    /// A batch linked on from `known` whose every unit the
    /// [`DirectWriter`] takes goes to it, in one call; `Ok(None)`: not such
    /// a batch (or no head known), use the writer.
    async fn commit_direct(
        &self,
        units: &[Unit],
        at: i64,
        known: Option<&ChainHead>,
    ) -> StoreResult<Option<CommitAttempt>> {
        let (Some(writer), Some(known)) = (&self.direct_writer, known) else {
            return Ok(None);
        };
        let mut direct = Vec::with_capacity(units.len());
        for unit in units {
            match DirectUnit::of(unit)? {
                Some(d) => direct.push(d),
                None => return Ok(None),
            }
        }
        Ok(Some(writer.commit(direct, known.clone(), at).await?))
    }

    fn direct_reads(&self) -> Option<&DirectReads> {
        self.direct.as_ref()
    }

    fn record_cache(&self) -> Option<&super::record_cache::RecordCache> {
        self.direct.as_ref().map(DirectReads::copies)
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn pool_options(connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(connections)
        // A connection whose transaction could not be rolled back (SQLite
        // rolls back by itself on "disk full", so the ROLLBACK sqlx sends
        // on drop fails and the connection still counts a transaction)
        // would refuse every later BEGIN: close it and open a fresh one.
        .before_acquire(|conn, _| {
            let clean = !sqlx::Connection::is_in_transaction(conn);
            Box::pin(async move { Ok(clean) })
        })
        .acquire_timeout(Duration::from_secs(5))
}

/// The database file is readable by its owner only.
fn restrict_permissions(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for p in [
        path.to_path_buf(),
        path.with_extension("db-wal"),
        path.with_extension("db-shm"),
    ] {
        if p.exists()
            && let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(file = %p.display(), error = %e, "cannot restrict permissions");
        }
    }
}

super::sql::impl_store!(SqliteStore, Sqlite, "sqlite");

/// Copies the SQLite database at `url` to `output` with `VACUUM INTO`: a
/// consistent snapshot (one read transaction) taken while other processes
/// keep writing. Refuses to overwrite `output`; the copy is written beside
/// it under a temporary name, synced, made readable by its owner only and
/// then linked into place. Returns the copy's size in bytes.
pub async fn backup_into(url: &DatabaseUrl, output: &std::path::Path) -> StoreResult<u64> {
    use sqlx::Connection;
    let config = StoreError::Config;
    if output.exists() {
        return Err(config(format!(
            "{} already exists; a backup never overwrites a file",
            output.display()
        )));
    }
    let name = output
        .file_name()
        .ok_or_else(|| config(format!("{} names no file", output.display())))?;
    let partial = output.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let opts = SqliteConnectOptions::from_str(url.expose())
        .map_err(|e| config(format!("invalid database URL {url}: {e}")))?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
    let target = partial.to_string_lossy().into_owned();
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(&target)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    let finish = || -> std::io::Result<u64> {
        copied.map_err(|e| std::io::Error::other(StoreError::from(e).to_string()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
        let file = std::fs::File::open(&partial)?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        // `hard_link` fails when `output` appeared meanwhile: never overwrite.
        std::fs::hard_link(&partial, output)?;
        Ok(bytes)
    };
    let result = finish();
    let _ = std::fs::remove_file(&partial);
    result.map_err(|e| StoreError::Database(format!("backup to {}: {e}", output.display())))
}
