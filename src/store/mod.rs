//! Storage: one [`Store`] trait, a SQLite and a PostgreSQL implementation.
//!
//! Both implementations are generated from one body of SQL (`sql/`, one
//! module per area): the statements are written in the common subset of
//! the two dialects (`$N` placeholders, `ON CONFLICT`, `RETURNING`,
//! savepoints), and each backend supplies only what really differs — how a
//! write transaction starts and how the audit chain head is locked. Writing
//! every statement twice would be two chances to get the same rule wrong.
//!
//! Every change to the vault goes through [`Store::commit_batch`]: a batch of
//! [`Unit`]s, each a list of [`Mutation`]s plus the audit events that record
//! them, applied in one transaction with one savepoint per unit. A unit's
//! changes and its events commit together or not at all (fail-closed audit),
//! and many units share one commit (group commit). Write transactions are
//! serialized (SQLite `BEGIN IMMEDIATE`, the PostgreSQL chain head locked
//! first), so a check and the write it guards see the same database. On
//! SQLite the serving process's batches need not read the head first: they
//! link on from the head the previous commit left, and the head moves only
//! if it is still that one ([`Store::commit_batch_after`]).
//!
//! The store is a port: its rows (`rows.rs`, `requests.rs`) are plain typed
//! structs, read by column name, and it imports nothing of the services or
//! the edge (`crate::requests`, `crate::http`, axum); `tests/api/layering.rs`
//! keeps it so.

mod mutation;
mod postgres;
pub mod record_cache;
mod requests;
mod rows;
mod sql;
mod sqlite;
mod sqlite_direct;

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use crate::audit::StoredEvent;

pub use mutation::{Mutation, RECORD_CHANGED, Unit, UnitOutcome, VERSION_MISMATCH};
pub use postgres::PgStore;
pub use record_cache::RecordStamp;
pub use requests::{
    DisclosureRow, ExportRow, OutboxRow, RequestFilter, RequestMutation, RequestRow, RequestStore,
};
pub use rows::{
    AuditFilter, ChainHead, CheckpointRow, ConsentEvent, ConsoleSessionRow, CustomerKeyRow,
    CustomerRecord, CustomerRow, DataKeyRow, ErasureJobRow, ErasureJobStatus, FieldRow,
    IdempotencyRow, IdempotencyState, KekRow, KekState, KekUsage, KeyUse, LegalHoldRow,
    PrincipalKind, PrincipalListing, PrincipalRow, SigningKeyRow, SigningKeyState, TombstoneRow,
    UnknownValue, ValuePurpose,
};
pub use sqlite::{SqliteStore, backup_into as backup_sqlite};

/// Errors at the storage boundary, normalised across backends.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness or foreign-key constraint refused the change.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row the change needs does not exist.
    #[error("not found")]
    NotFound,
    /// The database could not be reached or refused the statement.
    #[error("database error: {0}")]
    Database(String),
    /// The database URL or configuration is not usable.
    #[error("{0}")]
    Config(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) => match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation => StoreError::Conflict(
                    db.constraint()
                        .map(str::to_owned)
                        .unwrap_or_else(|| db.message().to_owned()),
                ),
                _ => StoreError::Database(db.message().to_owned()),
            },
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A database URL whose `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }
    /// The file behind a `sqlite://` URL, if it names one.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        let rest = self
            .0
            .strip_prefix("sqlite://")
            .or_else(|| self.0.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            None
        } else {
            Some(std::path::PathBuf::from(path))
        }
    }
    fn redacted(&self) -> String {
        // scheme://user:password@host/... -> scheme://user:***@host/...
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let Some((userinfo, host)) = rest.rsplit_once('@') else {
            return self.0.clone();
        };
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Opens the backend that the URL's scheme names and runs its migrations.
pub async fn open(url: &DatabaseUrl) -> StoreResult<std::sync::Arc<dyn Store>> {
    let u = url.expose();
    if u.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if u.starts_with("postgres://") || u.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database URL scheme in {url}: use sqlite:// or postgres://"
        )))
    }
}

#[async_trait]
pub trait Store: RequestStore + Send + Sync + 'static {
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;

    /// Applies a batch of units in one transaction, one savepoint per unit.
    /// The outer `Err` means nothing was committed (database unavailable);
    /// an inner `Err` means that unit alone was rolled back. `at` is the time
    /// stamped on the events (never earlier than the chain head's).
    async fn commit_batch(&self, units: &[Unit], at: i64) -> StoreResult<Vec<UnitOutcome>> {
        Ok(self.commit_batch_after(units, at, None).await?.0)
    }

    /// [`Store::commit_batch`] linking on from `known`, the head this
    /// store's previous commit left (`None`: read it). Returns the head this
    /// commit leaves. Where the backend's write transaction serializes every
    /// writer by itself (SQLite), `known` spares reading the head: the head
    /// moves only if it is still `known`, and if another writer (a
    /// command-line tool, another process) moved it meanwhile the whole
    /// batch is rolled back and run again from the stored head. Either way
    /// the events extend the one chain in the database.
    async fn commit_batch_after(
        &self,
        units: &[Unit],
        at: i64,
        known: Option<&ChainHead>,
    ) -> StoreResult<(Vec<UnitOutcome>, ChainHead)>;

    async fn ping(&self) -> StoreResult<()>;

    /// Removes what the database keeps of deleted rows outside its tables,
    /// where it can: on SQLite the write-ahead log is checkpointed and
    /// truncated, so an erased customer's data key and ciphertext are in no
    /// `vault.db*` file. `Ok(false)`: a reader held the log; try again.
    /// On PostgreSQL nothing is done here (dead tuples until vacuum, WAL
    /// segments and archives: see docs/ERASURE.md).
    async fn purge_logs(&self) -> StoreResult<bool>;

    // Keys and meta
    async fn get_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn keks(&self) -> StoreResult<Vec<KekRow>>;
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>>;
    /// Every KEK version's life cycle, ascending.
    async fn kek_states(&self) -> StoreResult<Vec<KekState>>;
    /// Every checkpoint-signing key with when it was replaced, oldest first.
    async fn signing_key_states(&self) -> StoreResult<Vec<SigningKeyState>>;
    /// Every token-signing key with when it was replaced, oldest first.
    async fn token_key_states(&self) -> StoreResult<Vec<SigningKeyState>>;
    /// The signing keys of one use (`signing_key_states` or
    /// `token_key_states`).
    async fn key_states(&self, key_use: KeyUse) -> StoreResult<Vec<SigningKeyState>> {
        match key_use {
            KeyUse::Checkpoint => self.signing_key_states().await,
            KeyUse::Token => self.token_key_states().await,
        }
    }
    /// Live (not erased) data keys per KEK version, ascending by version.
    async fn kek_usage(&self) -> StoreResult<Vec<KekUsage>>;
    /// Up to `limit` live data keys wrapped by `kek_version` with a customer
    /// id greater than `after`, by id.
    async fn dek_batch(
        &self,
        kek_version: i64,
        after: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<DataKeyRow>>;
    /// A customer's KEK version and whether its data key still exists.
    async fn customer_key(&self, id: Uuid) -> StoreResult<Option<CustomerKeyRow>>;

    // Principals
    async fn principal(&self, kind: PrincipalKind, id: Uuid) -> StoreResult<Option<PrincipalRow>>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<PrincipalRow>>;
    async fn client_by_name(&self, name: &str) -> StoreResult<Option<PrincipalRow>>;
    /// Every client or every user, by name (no credential).
    async fn principals(&self, kind: PrincipalKind) -> StoreResult<Vec<PrincipalListing>>;

    // Customers
    async fn customer_record(&self, id: Uuid) -> StoreResult<Option<CustomerRecord>>;
    /// The store's in-memory copy of a customer's record (see
    /// [`record_cache`]), with the stamp a unit committed on the strength
    /// of it must check ([`RecordStamp::check`]); `None` when the store
    /// keeps no copy of it (PostgreSQL keeps none).
    fn record_copy(&self, id: Uuid) -> Option<(CustomerRecord, RecordStamp)>;
    async fn find_by_blind_index(&self, field: &str, digest: &[u8]) -> StoreResult<Vec<Uuid>>;
    async fn idempotency(&self, principal: &str, key: &str) -> StoreResult<Option<IdempotencyRow>>;
    /// The console session whose id hashes to `id_hash` (SHA-256, hex).
    async fn console_session(&self, id_hash: &str) -> StoreResult<Option<ConsoleSessionRow>>;

    // Erasure, legal holds, retention
    async fn erasure_job(&self, customer: Uuid) -> StoreResult<Option<ErasureJobRow>>;
    /// Customers whose erasure job has `status`, by id.
    async fn erasure_jobs_with_status(&self, status: ErasureJobStatus) -> StoreResult<Vec<Uuid>>;
    async fn tombstones(&self) -> StoreResult<Vec<TombstoneRow>>;
    async fn legal_hold(&self, id: Uuid) -> StoreResult<Option<LegalHoldRow>>;
    /// A customer's holds (active and released), or with `None` every
    /// active hold; by review date.
    async fn legal_holds(&self, customer: Option<Uuid>) -> StoreResult<Vec<LegalHoldRow>>;
    /// Up to `limit` customers, by id after `after`, with a value purpose
    /// whose retention ended by `now`.
    async fn customers_with_expired_purposes(
        &self,
        now: i64,
        after: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<Uuid>>;
    async fn customer_count(&self) -> StoreResult<i64>;

    // Audit
    async fn audit_events(&self, filter: &AuditFilter) -> StoreResult<Vec<StoredEvent>>;
    async fn audit_head(&self) -> StoreResult<ChainHead>;
    /// Checkpoints with `from_seq <= seq <= through_seq`, in order.
    async fn audit_checkpoints(
        &self,
        from_seq: i64,
        through_seq: i64,
    ) -> StoreResult<Vec<CheckpointRow>>;
    /// The checkpoint with the highest seq not above `seq`.
    async fn audit_checkpoint_at_or_before(&self, seq: i64) -> StoreResult<Option<CheckpointRow>>;
    /// The highest checkpoint seq whose event is older than `before`.
    async fn audit_prune_point(&self, before: i64) -> StoreResult<Option<i64>>;
}
