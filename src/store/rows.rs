//! The rows the store reads and writes: plain data, no behaviour beyond
//! conversions. Rows read from a table derive [`sqlx::FromRow`] and are read
//! by column name.

use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KekRow {
    pub version: i64,
    pub wrapped: Option<Vec<u8>>,
    pub active: bool,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub kek_version: i64,
    pub sealed: Vec<u8>,
    pub public_key: Vec<u8>,
    pub active: bool,
    pub created_at: i64,
}

/// A KEK version's life cycle, without its key material.
#[derive(Debug, Clone, sqlx::FromRow)]
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

/// Live (not erased) data keys wrapped by one KEK version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct KekUsage {
    pub kek_version: i64,
    pub data_keys: i64,
}

/// A customer's wrapped data key (key rotation rewraps it).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DataKeyRow {
    pub customer_id: Uuid,
    pub wrapped_dek: Vec<u8>,
}

/// Which KEK version wraps a customer's data key, and whether the data key
/// still exists (it is destroyed by a completed erasure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct CustomerKeyRow {
    pub kek_version: Option<i64>,
    pub has_data_key: bool,
}

/// What a signing key signs: audit checkpoints (`signing_keys`, published
/// at `/v1/audit/public-key`) or access tokens (`token_signing_keys`,
/// published at `/.well-known/jwks.json`). Each is rotated on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    Checkpoint,
    Token,
}

/// A signing key with when it stopped signing (never its private key bytes
/// beyond the sealed form).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyState {
    #[sqlx(flatten)]
    pub row: SigningKeyRow,
    /// When another key replaced it; `None` while active.
    pub retired_at: Option<i64>,
    /// Its tokens are refused even before they expire (replaced after a
    /// suspected leak).
    pub tokens_revoked: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
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

/// A client or user as `clients list` / `users list` show it: never its
/// credential.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct PrincipalListing {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    /// When it was created (µs).
    pub created_at: i64,
    /// When its secret or password was last replaced (µs); `None` if never.
    pub changed_at: Option<i64>,
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

#[derive(Debug, Clone, sqlx::FromRow)]
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
    /// The data version: moves on with every change to what a profile
    /// shows (the strong `ETag` of its reads).
    pub version: i64,
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
    /// A grant the customer confirmed explicitly for special-category data
    /// (GDPR Art. 9(2)(a)); always false for a withdrawal.
    #[serde(default)]
    pub explicit: bool,
}

/// A staff console session, found by the SHA-256 of its id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsoleSessionRow {
    pub user_id: Uuid,
    /// Sign-in (µs).
    pub created_at: i64,
    /// The last request made with it (µs).
    pub last_seen_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdempotencyRow {
    pub request_hash: Vec<u8>,
    /// [`IdempotencyState`] as stored.
    pub state: i64,
    pub status: Option<i64>,
    pub kek_version: Option<i64>,
    /// The answer, sealed under KEK `kek_version`.
    pub body: Option<Vec<u8>>,
    pub created_at: i64,
}

/// Where an idempotency record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyState {
    /// Claimed: the first request is running.
    Running = 0,
    /// The first answer is stored (sealed).
    Answered = 1,
    /// A POST without effect: only its fingerprint is kept, a retry runs again.
    Fingerprint = 2,
}

impl IdempotencyState {
    pub fn of(stored: i64) -> Option<Self> {
        match stored {
            0 => Some(Self::Running),
            1 => Some(Self::Answered),
            2 => Some(Self::Fingerprint),
            _ => None,
        }
    }
}

/// Everything the access decision needs about one customer, read at once.
#[derive(Debug, Clone)]
pub struct CustomerRecord {
    pub customer: CustomerRow,
    pub fields: Vec<FieldRow>,
    pub consents: Vec<ConsentEvent>,
    pub objections: Vec<String>,
}

/// Where an erasure job stands. Stored as `running`, `partial` and `erased`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureJobStatus {
    /// Begun, not yet at its last step.
    Running,
    /// Finished with values kept (a legal hold or a legal obligation).
    Partial,
    /// Finished: nothing kept, the data key destroyed.
    Erased,
}

impl ErasureJobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureJobStatus::Running => "running",
            ErasureJobStatus::Partial => "partial",
            ErasureJobStatus::Erased => "erased",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ErasureJobStatus::Running,
            ErasureJobStatus::Partial,
            ErasureJobStatus::Erased,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A stored value that names no known variant.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {value:?} in the database")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl TryFrom<String> for ErasureJobStatus {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, UnknownValue> {
        ErasureJobStatus::parse(&s).ok_or(UnknownValue {
            what: "erasure job status",
            value: s,
        })
    }
}

/// An erasure job (`requests::erasure`): no personal value, only ids,
/// names, bases and times.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ErasureJobRow {
    pub customer_id: Uuid,
    pub receipt_id: Uuid,
    pub request_id: Option<String>,
    pub actor: String,
    pub role: String,
    #[sqlx(try_from = "String")]
    pub status: ErasureJobStatus,
    pub step: i64,
    pub force_full: bool,
    /// JSON list of the values kept and why.
    pub retained: String,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A tombstone: the customer id, how far it was erased, and when.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

/// The head of the audit chain: the last event's seq and hash and the time
/// stamped on it (the next events are never stamped earlier).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: i64,
}

impl ChainHead {
    /// The head the next events link on from, stamped `at` but never
    /// earlier than this head's time.
    pub fn linking_at(&self, at: i64) -> ChainHead {
        ChainHead {
            at: at.max(self.at),
            ..self.clone()
        }
    }
}

/// A signed checkpoint of the audit chain head.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: i64,
    pub kid: String,
    pub signature: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::ErasureJobStatus;

    #[test]
    fn erasure_job_statuses_keep_their_stored_names() {
        for (status, name) in [
            (ErasureJobStatus::Running, "running"),
            (ErasureJobStatus::Partial, "partial"),
            (ErasureJobStatus::Erased, "erased"),
        ] {
            assert_eq!(status.as_str(), name);
            assert_eq!(
                ErasureJobStatus::try_from(name.to_owned()).ok(),
                Some(status)
            );
        }
        assert!(ErasureJobStatus::try_from("done".to_owned()).is_err());
    }
}
