//! Storage: one [`Store`] trait, a SQLite and a PostgreSQL implementation.
//!
//! Both implementations are generated from one body of SQL (`sql.rs`): the
//! statements are written in the common subset of the two dialects (`$N`
//! placeholders, `ON CONFLICT`, `RETURNING`, savepoints), and each backend
//! supplies only what really differs — how a write transaction starts and
//! how the audit chain head is locked. Writing every statement twice would
//! be two chances to get the same rule wrong.
//!
//! Every change to the vault goes through [`Store::commit_batch`]: a batch of
//! [`Unit`]s, each a list of [`Mutation`]s plus the audit events that record
//! them, applied in one transaction with one savepoint per unit. A unit's
//! changes and its events commit together or not at all (fail-closed audit),
//! and many units share one commit (group commit).

mod postgres;
mod sql;
mod sqlite;

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use crate::audit::{EventDraft, StoredEvent};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

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

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct KekRow {
    pub version: i64,
    pub wrapped: Option<Vec<u8>>,
    pub active: bool,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub kek_version: i64,
    pub sealed: Vec<u8>,
    pub public_key: Vec<u8>,
    pub active: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct PrincipalRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    /// SHA-256 (hex) of a client secret, or an argon2id PHC string for a user.
    pub credential: String,
    pub disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    Client,
    User,
}

#[derive(Debug, Clone)]
pub struct CustomerRow {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub created_at: i64,
    pub kek_version: Option<i64>,
    pub wrapped_dek: Option<Vec<u8>>,
    pub restricted: bool,
    pub opted_out_sale: bool,
    pub limit_sensitive: bool,
    pub erased_at: Option<i64>,
}

/// One purpose a value was collected for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuePurpose {
    pub purpose: String,
    pub collected_at: i64,
    pub expires_at: i64,
}

/// One stored (encrypted) field value with its purposes.
#[derive(Debug, Clone)]
pub struct FieldRow {
    pub field: String,
    pub ciphertext: Vec<u8>,
    pub collected_by: String,
    pub channel: Option<String>,
    pub notice_version: Option<String>,
    pub collected_at: i64,
    pub purposes: Vec<ValuePurpose>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ConsentEvent {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub purpose: String,
    pub action: String,
    pub notice_version: String,
    pub notice_text_sha256: String,
    pub language: String,
    pub jurisdiction: String,
    pub channel: String,
    pub captured_by: String,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct IdempotencyRow {
    pub request_hash: Vec<u8>,
    pub status: i64,
    pub body: String,
}

/// Everything the access decision needs about one customer, read at once.
#[derive(Debug, Clone)]
pub struct CustomerRecord {
    pub customer: CustomerRow,
    pub fields: Vec<FieldRow>,
    pub consents: Vec<ConsentEvent>,
    pub objections: Vec<String>,
}

/// Filters of the auditor's query.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub customer_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub purpose: Option<String>,
    pub decision: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub after_seq: i64,
    pub limit: i64,
}

// ---------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------

/// One change to the vault. Applied only inside [`Store::commit_batch`].
#[derive(Debug, Clone)]
pub enum Mutation {
    SetMeta {
        name: String,
        value: Vec<u8>,
    },
    InsertKek {
        version: i64,
        wrapped: Vec<u8>,
        active: bool,
        at: i64,
    },
    InsertSigningKey(SigningKeyRow),
    InsertClient {
        id: Uuid,
        name: String,
        role: String,
        secret_sha256: String,
        at: i64,
    },
    SetClientDisabled {
        id: Uuid,
        disabled: bool,
    },
    InsertUser {
        id: Uuid,
        username: String,
        role: String,
        password_hash: String,
        at: i64,
    },
    InsertCustomer {
        id: Uuid,
        external_id: Option<String>,
        kek_version: i64,
        wrapped_dek: Vec<u8>,
        at: i64,
    },
    /// Stores (or replaces) one encrypted value, its purposes and blind index.
    PutField {
        customer_id: Uuid,
        field: String,
        ciphertext: Vec<u8>,
        collected_by: String,
        channel: Option<String>,
        notice_version: Option<String>,
        at: i64,
        purposes: Vec<ValuePurpose>,
        blind_index: Option<Vec<u8>>,
    },
    /// Removes one value, its purposes and blind index entries.
    DeleteField {
        customer_id: Uuid,
        field: String,
    },
    AppendConsent(ConsentEvent),
    SaveIdempotency {
        principal: String,
        key: String,
        request_hash: Vec<u8>,
        status: i64,
        body: String,
        at: i64,
    },
}

/// A unit of work: changes plus the audit events that record them.
#[derive(Debug, Clone, Default)]
pub struct Unit {
    pub mutations: Vec<Mutation>,
    pub events: Vec<EventDraft>,
}

impl Unit {
    pub fn event(event: EventDraft) -> Self {
        Unit {
            mutations: Vec::new(),
            events: vec![event],
        }
    }
}

/// The outcome of one unit inside a committed batch.
pub type UnitOutcome = Result<Vec<StoredEvent>, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;

    /// Applies a batch of units in one transaction, one savepoint per unit.
    /// The outer `Err` means nothing was committed (database unavailable);
    /// an inner `Err` means that unit alone was rolled back. `at` is the time
    /// stamped on the events (never earlier than the chain head's).
    async fn commit_batch(&self, units: &[Unit], at: i64) -> StoreResult<Vec<UnitOutcome>>;

    async fn ping(&self) -> StoreResult<()>;

    // Keys and meta
    async fn get_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn keks(&self) -> StoreResult<Vec<KekRow>>;
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>>;

    // Principals
    async fn principal(&self, kind: PrincipalKind, id: Uuid) -> StoreResult<Option<PrincipalRow>>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<PrincipalRow>>;
    async fn client_by_name(&self, name: &str) -> StoreResult<Option<PrincipalRow>>;

    // Customers
    async fn customer_record(&self, id: Uuid) -> StoreResult<Option<CustomerRecord>>;
    async fn find_by_blind_index(&self, field: &str, digest: &[u8]) -> StoreResult<Vec<Uuid>>;
    async fn idempotency(&self, principal: &str, key: &str) -> StoreResult<Option<IdempotencyRow>>;

    // Audit
    async fn audit_events(&self, filter: &AuditFilter) -> StoreResult<Vec<StoredEvent>>;
    async fn audit_head(&self) -> StoreResult<(i64, Vec<u8>)>;
}
