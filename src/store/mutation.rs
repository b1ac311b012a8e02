//! Writes: every change to the vault is a [`Mutation`] inside a [`Unit`],
//! applied by [`Store::commit_batch`](super::Store::commit_batch).

use uuid::Uuid;

use super::StoreError;
use super::requests::RequestMutation;
use super::rows::{
    CheckpointRow, ConsentEvent, ErasureJobStatus, IdempotencyState, KeyUse, LegalHoldRow,
    SigningKeyRow, ValuePurpose,
};
use crate::audit::{EventDraft, StoredEvent};

/// The `Conflict` of [`Mutation::ExpectCustomerVersion`].
pub const VERSION_MISMATCH: &str = "customer_version_mismatch";

/// The `Conflict` of [`Mutation::ExpectRecordStamp`].
pub const RECORD_CHANGED: &str = "customer_record_changed";

/// One change to the vault. Applied only inside
/// [`Store::commit_batch`](super::Store::commit_batch).
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
    /// The first token-signing key of a new vault.
    InsertTokenKey(SigningKeyRow),
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
        key_use: KeyUse,
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
        key_use: KeyUse,
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
    /// Replaces a client's secret (its SHA-256); tokens issued before `at`
    /// are refused.
    SetClientSecret {
        id: Uuid,
        secret_sha256: String,
        at: i64,
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
    /// NotFound when the customer does not exist or its erasure has begun
    /// (checked by the insert itself, in the unit's transaction).
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
    /// Appends a consent event. NotFound when the customer does not exist
    /// or its erasure has begun.
    AppendConsent(ConsentEvent),
    /// Requests, request tokens, exports, the outbox, disclosures and
    /// subject state (`store/requests.rs`).
    Requests(RequestMutation),
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
    /// Ends an erasure job (or, from `Partial`, finishes it). `Erased`
    /// deletes every value, consent and objection left and destroys the data
    /// key; `Partial` only records what was kept. Writes the tombstone.
    /// NotFound when the job is not in a state this step may leave; Conflict
    /// for `Running` (not an end).
    FinishErasure {
        customer_id: Uuid,
        status: ErasureJobStatus,
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
    /// `If-Match`: the customer's data version must be one of `versions`
    /// (`,`-separated, with a leading and a trailing `,`); checked and moved
    /// on in the unit's transaction. `Conflict(VERSION_MISMATCH)` otherwise.
    ExpectCustomerVersion {
        customer_id: Uuid,
        versions: String,
    },
    /// Conflict([`RECORD_CHANGED`]) unless the customer exists and its
    /// record stamp is still `stamp` (no row of its record has changed
    /// since a copy was read at that stamp). Changes nothing. SQLite only:
    /// the store that hands out a [`RecordStamp`](super::RecordStamp).
    ExpectRecordStamp {
        customer_id: Uuid,
        stamp: i64,
    },
    /// Deletes a value (and its index entries) once no purpose is left.
    DeleteFieldIfUnused {
        customer_id: Uuid,
        field: String,
    },
    /// Claims a caller's `Idempotency-Key` for a request (fingerprint
    /// `request_hash`) in `state` (running, or fingerprint-only); a record of
    /// the key created before `expired_before` is replaced first.
    /// `Conflict` when the key is held.
    ClaimIdempotency {
        principal: String,
        key: String,
        request_hash: Vec<u8>,
        state: IdempotencyState,
        expired_before: i64,
        at: i64,
    },
    /// Stores the first answer (sealed under KEK `kek_version`) of a claimed
    /// key. `customer_id`: the customer the request concerned (erasure
    /// deletes the record with the customer).
    AnswerIdempotency {
        principal: String,
        key: String,
        status: i64,
        kek_version: i64,
        body: Vec<u8>,
        customer_id: Option<Uuid>,
    },
    /// Frees a claimed key whose request produced no answer to keep.
    ReleaseIdempotency {
        principal: String,
        key: String,
    },
    /// Deletes every idempotency record created before `before`.
    PruneIdempotency {
        before: i64,
    },
    /// Frees the claims still running that were made before `before` (a
    /// serving process starting: their requests died with a crash).
    ReleaseStaleIdempotency {
        before: i64,
    },
    /// Starts a console session (`id_hash`: SHA-256, hex, of its id).
    InsertConsoleSession {
        id_hash: String,
        user_id: Uuid,
        at: i64,
    },
    /// Records that a console session was used at `at`.
    TouchConsoleSession {
        id_hash: String,
        at: i64,
    },
    /// Ends a console session (no error when it is already gone).
    DeleteConsoleSession {
        id_hash: String,
    },
    /// Deletes the console sessions unused since `idle_before` or started
    /// before `started_before`.
    PruneConsoleSessions {
        idle_before: i64,
        started_before: i64,
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
    /// Which customer's record rows (see [`super::record_cache`]) this
    /// changes. Every kind of mutation is named here, so that a new one is
    /// placed on purpose.
    pub fn record_change(&self) -> super::record_cache::RecordChange {
        use super::record_cache::RecordChange as C;
        match self {
            Mutation::RewrapDek { customer_id, .. }
            | Mutation::PutField { customer_id, .. }
            | Mutation::DeleteField { customer_id, .. }
            | Mutation::BeginErasure { customer_id, .. }
            | Mutation::DeleteConsents { customer_id, .. }
            | Mutation::AdvanceErasure { customer_id, .. }
            | Mutation::ReplaceCiphertext { customer_id, .. }
            | Mutation::SetValuePurposes { customer_id, .. }
            | Mutation::RekeyCustomer { customer_id, .. }
            | Mutation::FinishErasure { customer_id, .. }
            | Mutation::UpdateRetained { customer_id, .. }
            | Mutation::ExpirePurpose { customer_id, .. }
            | Mutation::ExpectCustomerVersion { customer_id, .. }
            | Mutation::DeleteFieldIfUnused { customer_id, .. } => C::Customer(*customer_id),
            Mutation::AppendConsent(c) => C::Customer(c.customer_id),
            Mutation::Requests(r) => r.record_change(),
            // A new customer has no copy yet; the rest are not record rows.
            Mutation::InsertCustomer { .. }
            | Mutation::ExpectRecordStamp { .. }
            | Mutation::SetMeta { .. }
            | Mutation::InsertKek { .. }
            | Mutation::InsertSigningKey(_)
            | Mutation::InsertTokenKey(_)
            | Mutation::RotateKek { .. }
            | Mutation::RewrapKek { .. }
            | Mutation::ReplaceMeta { .. }
            | Mutation::ExpectKekCount { .. }
            | Mutation::RewrapSigningKey { .. }
            | Mutation::RetireKek { .. }
            | Mutation::RotateSigningKey { .. }
            | Mutation::InsertClient { .. }
            | Mutation::SetClientDisabled { .. }
            | Mutation::SetClientSecret { .. }
            | Mutation::InsertUser { .. }
            | Mutation::SetUserDisabled { .. }
            | Mutation::SetUserPassword { .. }
            | Mutation::InsertLegalHold(_)
            | Mutation::ReleaseLegalHold { .. }
            | Mutation::ClaimIdempotency { .. }
            | Mutation::AnswerIdempotency { .. }
            | Mutation::ReleaseIdempotency { .. }
            | Mutation::PruneIdempotency { .. }
            | Mutation::ReleaseStaleIdempotency { .. }
            | Mutation::InsertConsoleSession { .. }
            | Mutation::TouchConsoleSession { .. }
            | Mutation::DeleteConsoleSession { .. }
            | Mutation::PruneConsoleSessions { .. }
            | Mutation::InsertCheckpoint(_)
            | Mutation::PruneAudit { .. } => C::None,
        }
    }

    /// Whether applying this may disable a principal or change its role
    /// (callers cached from before it must be looked up again).
    pub fn changes_principal(&self) -> bool {
        matches!(
            self,
            Mutation::SetClientDisabled { .. }
                | Mutation::SetClientSecret { .. }
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

    /// The customers `ms` create (`InsertCustomer`): they have no earlier
    /// values to replace.
    pub fn created_customers(ms: &[Mutation]) -> Vec<Uuid> {
        ms.iter()
            .filter_map(|m| match m {
                Mutation::InsertCustomer { id, .. } => Some(*id),
                _ => None,
            })
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
