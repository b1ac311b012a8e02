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

/// A KEK version's life cycle, without its key material.
#[derive(Debug, Clone)]
pub struct KekState {
    pub version: i64,
    /// False once retired (the wrapped key was destroyed).
    pub has_material: bool,
    pub active: bool,
    pub created_at: i64,
    /// When another version replaced it as the active one.
    pub deactivated_at: Option<i64>,
    pub retired_at: Option<i64>,
    /// Live data keys it wrapped when it was replaced.
    pub rewrap_total: Option<i64>,
}

/// A signing key with when it stopped signing (never its private key bytes
/// beyond the sealed form).
#[derive(Debug, Clone)]
pub struct SigningKeyState {
    pub row: SigningKeyRow,
    /// When another key replaced it; `None` while active.
    pub retired_at: Option<i64>,
    /// Its tokens are refused even before they expire (replaced after a
    /// suspected leak).
    pub tokens_revoked: bool,
}

#[derive(Debug, Clone)]
pub struct PrincipalRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    /// SHA-256 (hex) of a client secret, or an argon2id PHC string for a user.
    pub credential: String,
    pub disabled: bool,
    /// When a user's password was last reset (µs); tokens issued before it
    /// are refused. Always `None` for a client.
    pub password_changed_at: Option<i64>,
}

impl PrincipalRow {
    /// Whether a token of this principal issued at `iat` (seconds) is still
    /// good: the principal is enabled and its password was not reset after
    /// that second began. A token issued in the same second as a reset is
    /// refused too (`iat` has one-second granularity).
    pub fn accepts_token_issued_at(&self, iat: i64) -> bool {
        !self.disabled
            && self
                .password_changed_at
                .is_none_or(|changed| iat.saturating_mul(1_000_000) >= changed)
    }
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

/// An erasure job (`requests::erasure`): no personal value, only ids,
/// names, bases and times.
#[derive(Debug, Clone)]
pub struct ErasureJobRow {
    pub customer_id: Uuid,
    pub receipt_id: Uuid,
    pub request_id: Option<String>,
    pub actor: String,
    pub role: String,
    /// `running`, `partial` (values kept by a hold or a legal obligation) or `erased`.
    pub status: String,
    pub step: i64,
    pub force_full: bool,
    /// JSON list of the values kept and why.
    pub retained: String,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A tombstone: the customer id, how far it was erased, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TombstoneRow {
    pub customer_id: Uuid,
    /// `erased` or `partially_erased`.
    pub status: String,
    pub erased_at: i64,
}

/// A legal hold. `reason` is stored sealed under the keyring.
#[derive(Debug, Clone)]
pub struct LegalHoldRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub fields: Vec<String>,
    pub reason: String,
    pub basis: String,
    pub purpose: Option<String>,
    pub review_at: i64,
    pub created_by: String,
    pub created_at: i64,
    pub released_at: Option<i64>,
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

/// A signed checkpoint of the audit chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: i64,
    pub kid: String,
    pub signature: Vec<u8>,
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
    /// Adds KEK `version` as the active one and deactivates `previous`, in
    /// one step. Conflict when `previous` is no longer active, `version`
    /// exists, or the root key fingerprint is no longer `root_fingerprint`
    /// (the new KEK would be wrapped by a replaced root key).
    RotateKek {
        version: i64,
        wrapped: Vec<u8>,
        previous: i64,
        root_fingerprint: Vec<u8>,
        at: i64,
    },
    /// Replaces the wrapped form of KEK `version` (root key change).
    /// Conflict unless it is still `expected`.
    RewrapKek {
        version: i64,
        expected: Vec<u8>,
        wrapped: Vec<u8>,
    },
    /// Sets a `vault_meta` value. With `expected`, Conflict unless the stored
    /// value is still that; without, inserts or replaces.
    ReplaceMeta {
        name: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
    /// Conflict unless exactly `count` KEK versions hold key material (no
    /// version was added since the keyring was read).
    ExpectKekCount {
        count: i64,
    },
    /// Stores a customer's DEK rewrapped under KEK `kek_version`, only if it
    /// is still wrapped by `from_version` (a concurrent erasure or rewrap
    /// wins; the row is then left alone, not an error).
    RewrapDek {
        customer_id: Uuid,
        from_version: i64,
        kek_version: i64,
        wrapped_dek: Vec<u8>,
    },
    /// Same for a sealed signing key.
    RewrapSigningKey {
        kid: String,
        from_version: i64,
        kek_version: i64,
        sealed: Vec<u8>,
    },
    /// Destroys KEK `version`'s key material. NotFound for an unknown
    /// version; Conflict (`kek_active`, `kek_retired`, `kek_in_use`) while it
    /// is active, already retired, or still wraps a data key or signing key.
    RetireKek {
        version: i64,
        at: i64,
    },
    /// Makes `key` the signing key; `previous_kid` stops signing, its private
    /// key is destroyed and its public key kept (its tokens refused at once
    /// with `revoke_previous`). Conflict when `previous_kid` is no longer the
    /// active key, or `key` is sealed under a retired KEK version.
    RotateSigningKey {
        key: SigningKeyRow,
        previous_kid: String,
        revoke_previous: bool,
        at: i64,
    },
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
    SetUserDisabled {
        id: Uuid,
        disabled: bool,
    },
    /// Replaces a user's password hash; tokens issued before `at` stop working.
    SetUserPassword {
        id: Uuid,
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
    /// Requests, request tokens, exports, the outbox, disclosures and
    /// subject state (`crate::requests::store`).
    Requests(crate::requests::store::RequestMutation),
    /// Starts the erasure job of a customer (step 1): the job row, and the
    /// customer marked erased so that no read serves it from now on.
    /// Conflict when a job exists; NotFound when the customer does not.
    BeginErasure {
        customer_id: Uuid,
        receipt_id: Uuid,
        request_id: Option<String>,
        actor: String,
        role: String,
        force_full: bool,
        at: i64,
    },
    /// Deletes every consent event and objection of a customer.
    DeleteConsents {
        customer_id: Uuid,
    },
    /// Moves a running erasure job from `from_step` to `to_step` (NotFound
    /// when it is no longer there: another process advanced it).
    AdvanceErasure {
        customer_id: Uuid,
        from_step: i64,
        to_step: i64,
        retained: Option<String>,
        at: i64,
    },
    /// Replaces a stored value's ciphertext (re-encryption, same plaintext).
    ReplaceCiphertext {
        customer_id: Uuid,
        field: String,
        ciphertext: Vec<u8>,
    },
    /// Replaces the purposes of a stored value.
    SetValuePurposes {
        customer_id: Uuid,
        field: String,
        purposes: Vec<ValuePurpose>,
    },
    /// Stores a new wrapped data key for a customer and drops the customer's
    /// blind-index entries (an erased customer is found by no search).
    RekeyCustomer {
        customer_id: Uuid,
        kek_version: i64,
        wrapped_dek: Vec<u8>,
    },
    /// Ends an erasure job (or, from `partial`, finishes it). `erased`
    /// deletes every value, consent and objection left and destroys the data
    /// key; `partial` only records what was kept. Writes the tombstone.
    /// NotFound when the job is not in a state this step may leave.
    FinishErasure {
        customer_id: Uuid,
        status: String,
        retained: String,
        erased_at: i64,
        at: i64,
    },
    /// Replaces the kept-values list of a partially erased customer.
    UpdateRetained {
        customer_id: Uuid,
        retained: String,
        at: i64,
    },
    InsertLegalHold(LegalHoldRow),
    /// NotFound when no active hold has this id.
    ReleaseLegalHold {
        id: Uuid,
        at: i64,
    },
    /// Removes one purpose from a value if its retention ended by `now`.
    ExpirePurpose {
        customer_id: Uuid,
        field: String,
        purpose: String,
        now: i64,
    },
    /// Deletes a value (and its index entries) once no purpose is left.
    DeleteFieldIfUnused {
        customer_id: Uuid,
        field: String,
    },
    SaveIdempotency {
        principal: String,
        key: String,
        request_hash: Vec<u8>,
        status: i64,
        body: String,
        at: i64,
    },
    /// Stores a signed checkpoint. It must cover an existing event's
    /// (seq, hash) or the chain head row; a checkpoint already stored at that
    /// seq is kept (NotFound when it covers nothing).
    InsertCheckpoint(CheckpointRow),
    /// Deletes the audit events up to and including `through_seq` (all older
    /// than `before`) and the checkpoints before it; the checkpoint at
    /// `through_seq` must exist and is kept as the chain's new anchor.
    PruneAudit {
        through_seq: i64,
        before: i64,
    },
}

impl Mutation {
    /// Whether applying this may disable a principal or change its role
    /// (callers cached from before it must be looked up again).
    pub fn changes_principal(&self) -> bool {
        matches!(
            self,
            Mutation::SetClientDisabled { .. }
                | Mutation::SetUserDisabled { .. }
                | Mutation::SetUserPassword { .. }
        )
    }

    /// Whether applying this reads or removes audit events, so the events
    /// linked earlier in the batch must be inserted first.
    pub fn reads_audit(&self) -> bool {
        matches!(
            self,
            Mutation::InsertCheckpoint(_) | Mutation::PruneAudit { .. }
        )
    }

    /// The leading `RewrapDek`s of `ms`.
    pub fn rewrap_run(ms: &[Mutation]) -> Vec<&Mutation> {
        ms.iter()
            .take_while(|m| matches!(m, Mutation::RewrapDek { .. }))
            .collect()
    }

    /// The leading `PutField`s of `ms` that are for the same customer (none
    /// when `ms` does not start with one).
    pub fn put_field_run(ms: &[Mutation]) -> Vec<&Mutation> {
        let Some(Mutation::PutField { customer_id, .. }) = ms.first() else {
            return Vec::new();
        };
        ms.iter()
            .take_while(
                |m| matches!(m, Mutation::PutField { customer_id: c, .. } if c == customer_id),
            )
            .collect()
    }
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
pub trait Store: crate::requests::store::RequestStore + Send + Sync + 'static {
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
    /// Every KEK version's life cycle, ascending.
    async fn kek_states(&self) -> StoreResult<Vec<KekState>>;
    /// Every signing key with when it was replaced, oldest first.
    async fn signing_key_states(&self) -> StoreResult<Vec<SigningKeyState>>;
    /// Live (not erased) data keys per KEK version, ascending by version.
    async fn kek_usage(&self) -> StoreResult<Vec<(i64, i64)>>;
    /// Up to `limit` live data keys wrapped by `kek_version` with an id
    /// greater than `after`, by id: (customer id, wrapped DEK).
    async fn dek_batch(
        &self,
        kek_version: i64,
        after: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<(Uuid, Vec<u8>)>>;
    /// A customer's KEK version and whether its data key still exists.
    async fn customer_key(&self, id: Uuid) -> StoreResult<Option<(Option<i64>, bool)>>;

    // Principals
    async fn principal(&self, kind: PrincipalKind, id: Uuid) -> StoreResult<Option<PrincipalRow>>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<PrincipalRow>>;
    async fn client_by_name(&self, name: &str) -> StoreResult<Option<PrincipalRow>>;

    // Customers
    async fn customer_record(&self, id: Uuid) -> StoreResult<Option<CustomerRecord>>;
    async fn find_by_blind_index(&self, field: &str, digest: &[u8]) -> StoreResult<Vec<Uuid>>;
    async fn idempotency(&self, principal: &str, key: &str) -> StoreResult<Option<IdempotencyRow>>;

    // Erasure, legal holds, retention
    async fn erasure_job(&self, customer: Uuid) -> StoreResult<Option<ErasureJobRow>>;
    /// Customers whose erasure job has `status`, by id.
    async fn erasure_jobs_with_status(&self, status: &str) -> StoreResult<Vec<Uuid>>;
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
    async fn audit_head(&self) -> StoreResult<(i64, Vec<u8>)>;
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
