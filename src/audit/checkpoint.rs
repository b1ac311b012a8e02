//! Signed checkpoints of the audit chain head, and the public keys that
//! verify them.
//!
//! Every `audit_checkpoint_every_events` events or
//! `audit_checkpoint_every_secs` seconds the vault signs the chain head
//! (sequence number, hash, time) with its Ed25519 key. A checkpoint fixes
//! everything up to its event: rewriting any earlier event, even with every
//! later hash recomputed, no longer matches the signed hash. An export ends
//! with a checkpoint signed when it was made, so a removed tail is seen
//! offline too.
//!
//! The signed message is the UTF-8 text
//! `"pii-vault checkpoint v1\n{seq}\n{hash}\n{at}"`: `seq` in decimal,
//! `hash` as 64 lowercase hex digits, `at` exactly as the checkpoint's
//! RFC 3339 time is written (`2026-11-22T17:36:15.123456Z`).
//!
//! Public key file (`pii-vault audit public-key`, `GET /v1/audit/public-key`):
//! one key per line, `KID BASE64-PUBLIC-KEY`, optionally followed by words
//! such as `current`; blank lines and lines starting with `#` are ignored.
//! Several lines are allowed, so checkpoints signed before a key rotation
//! still verify.
//!
//! **The witness.** A checkpoint counts only once it is also appended,
//! durably, to the audit witness outside the database
//! (`crate::tamper::witness`; [`witness_checkpoint`]), and only if the
//! trail in the database still extends the last witnessed checkpoint. At
//! start-up, in `/readyz` ([`witness_state`]) and in `GET /v1/audit/verify`
//! the trail must extend it: the database has an event at that seq with
//! that hash, and its head is at or beyond it. A trail cut back or rewritten
//! behind the vault's back does not.
//!
//! **Which keys are trusted** ([`trusted_keys`]): the signing key whose
//! private half this process holds (opened from the keyring), and the keys
//! the witness records — entries MAC'd under a key derived from the root
//! key, written by a process that held the private half. A public-key row in
//! the database is never enough.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::crypto::{SigningKey, verify_ed25519};
use crate::state::AppState;
use crate::store::{AuditFilter, CheckpointRow, Mutation, Store, StoreError, StoreResult, Unit};
use crate::tamper::chain::Head;
use crate::tamper::witness::{self as witness_log, Point, WitnessRecord};
use crate::tamper::{LogError, Tamper};

/// The `vault_meta` row that records the witness log's head (`"{n} {mac}"`).
pub const META_WITNESS_HEAD: &str = "audit_witness_head";

/// The first line of every signed checkpoint message.
pub const MESSAGE_CONTEXT: &str = "pii-vault checkpoint v1";

/// The exact bytes a checkpoint's signature covers.
pub fn message(seq: i64, hash_hex: &str, at: &str) -> String {
    format!("{MESSAGE_CONTEXT}\n{seq}\n{hash_hex}\n{at}")
}

/// A checkpoint as published: in exports, `GET /v1/audit/verify`, and the
/// auditor's tools.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Checkpoint {
    /// Sequence number of the event (or chain head) it covers.
    pub seq: i64,
    /// Hash of that event, hex.
    pub hash: String,
    /// When it was signed, RFC 3339 UTC.
    pub at: String,
    /// Key id of the signing key.
    pub kid: String,
    /// Ed25519 signature of the message, base64.
    pub signature: String,
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint at seq {seq}: signed by unknown key {kid}")]
    UnknownKey { seq: i64, kid: String },
    #[error("checkpoint at seq {seq}: signature does not verify")]
    BadSignature { seq: i64 },
}

impl Checkpoint {
    pub fn from_row(row: &CheckpointRow) -> Self {
        Checkpoint {
            seq: row.seq,
            hash: hex::encode(&row.hash),
            at: rfc3339(row.at),
            kid: row.kid.clone(),
            signature: STANDARD.encode(&row.signature),
        }
    }

    /// The message its signature covers.
    pub fn message(&self) -> String {
        message(self.seq, &self.hash, &self.at)
    }

    /// Checks the signature with the key named by `kid`.
    pub fn verify(&self, keys: &PublicKeys) -> Result<(), CheckpointError> {
        let key = keys
            .get(&self.kid)
            .ok_or_else(|| CheckpointError::UnknownKey {
                seq: self.seq,
                kid: self.kid.clone(),
            })?;
        let sig = STANDARD
            .decode(self.signature.as_bytes())
            .map_err(|_| CheckpointError::BadSignature { seq: self.seq })?;
        if verify_ed25519(key, self.message().as_bytes(), &sig) {
            Ok(())
        } else {
            Err(CheckpointError::BadSignature { seq: self.seq })
        }
    }
}

/// Signs (seq, hash) at time `at` (microseconds) with `key`.
pub fn sign(key: &SigningKey, seq: i64, hash: &[u8], at: i64) -> CheckpointRow {
    let msg = message(seq, &hex::encode(hash), &rfc3339(at));
    CheckpointRow {
        seq,
        hash: hash.to_vec(),
        at,
        kid: key.kid().to_owned(),
        signature: key.sign(msg.as_bytes()),
    }
}

/// Reads the chain head and signs it; `None` while the chain is empty. The
/// row is to be stored with [`Mutation::InsertCheckpoint`].
pub async fn sign_head(
    store: &dyn Store,
    key: &SigningKey,
    now: i64,
) -> StoreResult<Option<CheckpointRow>> {
    let crate::store::ChainHead { seq, hash, .. } = store.audit_head().await?;
    Ok((seq > 0).then(|| sign(key, seq, &hash, now)))
}

/// Ed25519 public keys by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicKeys(BTreeMap<String, [u8; 32]>);

impl PublicKeys {
    pub fn insert(&mut self, kid: impl Into<String>, key: [u8; 32]) {
        self.0.insert(kid.into(), key);
    }

    pub fn get(&self, kid: &str) -> Option<&[u8; 32]> {
        self.0.get(kid)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Parses a public key file (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = PublicKeys::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(kid), Some(encoded)) = (words.next(), words.next()) else {
                return Err(format!("line {}: expected `KID BASE64-PUBLIC-KEY`", i + 1));
            };
            let bytes = if encoded.len() == 64 {
                hex::decode(encoded).ok()
            } else {
                STANDARD.decode(encoded.as_bytes()).ok()
            }
            .ok_or_else(|| format!("line {}: the key is neither base64 nor hex", i + 1))?;
            let key = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| format!("line {}: an Ed25519 public key has 32 bytes", i + 1))?;
            keys.insert(kid, key);
        }
        if keys.is_empty() {
            return Err("the file holds no public key".into());
        }
        Ok(keys)
    }
}

/// One published checkpoint-signing key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PublishedKey {
    pub kid: String,
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The raw 32-byte public key, base64.
    pub public_key: String,
    /// The same key, hex.
    pub public_key_hex: String,
    /// Whether new checkpoints are signed with it.
    pub current: bool,
}

/// The checkpoint-signing keys verification trusts, current first: `held`,
/// the key whose private half this process holds, then the keys the witness
/// records (`witnessed`). Public-key rows of the database are not used.
pub fn trusted_keys(held: &SigningKey, witnessed: &[(String, [u8; 32])]) -> Vec<PublishedKey> {
    let publish = |kid: &str, key: &[u8; 32], current: bool| PublishedKey {
        kid: kid.to_owned(),
        algorithm: "Ed25519".into(),
        public_key: STANDARD.encode(key),
        public_key_hex: hex::encode(key),
        current,
    };
    let mut out = vec![publish(held.kid(), &held.public_key(), true)];
    let mut others: Vec<&(String, [u8; 32])> =
        witnessed.iter().filter(|(k, _)| k != held.kid()).collect();
    others.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(others.into_iter().map(|(k, key)| publish(k, key, false)));
    out
}

/// The public key file for `keys`.
pub fn key_file(keys: &[PublishedKey]) -> String {
    let mut out =
        String::from("# pii-vault audit checkpoint public keys (Ed25519): KID BASE64-PUBLIC-KEY\n");
    for k in keys {
        out.push_str(&k.kid);
        out.push(' ');
        out.push_str(&k.public_key);
        if k.current {
            out.push_str(" current");
        }
        out.push('\n');
    }
    out
}

/// The keys of [`trusted_keys`] as a verifier's key set.
pub fn to_public_keys(keys: &[PublishedKey]) -> PublicKeys {
    let mut out = PublicKeys::default();
    for k in keys {
        if let Ok(bytes) = STANDARD.decode(k.public_key.as_bytes())
            && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            out.insert(k.kid.clone(), key);
        }
    }
    out
}

/// Whether a new checkpoint is due: there are events past the last one, and
/// either `every_events` of them or `every_secs` seconds since it.
pub fn due(
    head_seq: i64,
    last: Option<(i64, i64)>,
    now: i64,
    every_events: i64,
    every_secs: u64,
) -> bool {
    match last {
        None => head_seq > 0,
        Some((seq, at)) => {
            let every_micros = i64::try_from(every_secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000);
            head_seq > seq
                && (head_seq - seq >= every_events || now.saturating_sub(at) >= every_micros)
        }
    }
}

/// Signs the head now, witnesses it and stores it through the sequencer.
/// `Ok(None)` when the chain is empty.
pub async fn checkpoint_now(state: &AppState) -> anyhow::Result<Option<Checkpoint>> {
    let signer = state.keys.checkpoint();
    let Some(row) = sign_head(
        state.store.as_ref(),
        signer.signing_key(),
        state.clock.now_micros(),
    )
    .await?
    else {
        return Ok(None);
    };
    let mutations = witness_checkpoint(
        &state.tamper,
        state.store.as_ref(),
        signer.signing_key(),
        &row,
    )
    .await?;
    state
        .sequencer
        .commit(Unit {
            mutations,
            events: Vec::new(),
        })
        .await?;
    // A checkpoint already stored at that seq (another process) is kept.
    let stored = state
        .store
        .audit_checkpoints(row.seq, row.seq)
        .await?
        .into_iter()
        .next()
        .unwrap_or(row);
    Ok(Some(Checkpoint::from_row(&stored)))
}

/// One round of the checkpointer: signs the head when a checkpoint is due.
pub async fn checkpoint_if_due(state: &AppState) -> anyhow::Result<Option<Checkpoint>> {
    let head = state.store.audit_head().await?.seq;
    let last = state
        .store
        .audit_checkpoint_at_or_before(i64::MAX)
        .await?
        .map(|c| (c.seq, c.at));
    if !due(
        head,
        last,
        state.clock.now_micros(),
        state.settings.audit_checkpoint_every_events,
        state.settings.audit_checkpoint_every_secs,
    ) {
        return Ok(None);
    }
    checkpoint_now(state).await
}

/// Checks once a second whether a checkpoint is due, until the state is
/// dropped. Several vault processes may run it on one database; a checkpoint
/// at a seq already covered is not stored twice.
pub async fn run_checkpointer(weak: std::sync::Weak<crate::state::Inner>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet_until = tokio::time::Instant::now();
    loop {
        interval.tick().await;
        if tokio::time::Instant::now() < quiet_until {
            continue;
        }
        let Some(state) = AppState::upgrade(&weak) else {
            return;
        };
        if let Err(e) = checkpoint_if_due(&state).await {
            if e.downcast_ref::<WitnessError>()
                .is_some_and(|w| matches!(w, WitnessError::Mismatch(_)))
            {
                // Reported (log, metric, /readyz) when it was found; the head
                // is not signed until an operator resolves it.
                quiet_until = tokio::time::Instant::now() + Duration::from_secs(10);
                continue;
            }
            tracing::warn!(error = %e, "audit checkpoint not written; retrying");
        }
    }
}

// ---------------------------------------------------------------------------
// The witness
// ---------------------------------------------------------------------------

/// What the witness says about the trail in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessState {
    /// No witness (an in-memory database).
    Off,
    /// Nothing witnessed yet.
    Empty,
    /// The trail in the database extends the last witnessed checkpoint.
    Extended(Point),
    /// It does not, or the witness log itself is broken: why.
    Mismatch(String),
}

impl WitnessState {
    pub fn problem(&self) -> Option<String> {
        match self {
            WitnessState::Mismatch(why) => Some(why.clone()),
            _ => None,
        }
    }
}

/// Why a checkpoint was not witnessed.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The trail in the database does not extend the last witnessed
    /// checkpoint: nothing is signed until an operator resolves it.
    #[error("{0}")]
    Mismatch(String),
    #[error("the audit witness cannot be written: {0}")]
    Log(#[from] LogError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

async fn recorded_witness_head(tamper: &Tamper, store: &dyn Store) -> StoreResult<Option<Head>> {
    if !tamper.anchored() {
        return Ok(None);
    }
    Ok(store
        .get_meta(META_WITNESS_HEAD)
        .await?
        .and_then(|b| Head::decode(&b)))
}

/// The cheap check (start-up, `/readyz`, before every checkpoint): the
/// witness's last entries verify and match the head the database recorded,
/// and the trail in the database extends the last witnessed checkpoint.
pub async fn witness_state(tamper: &Tamper, store: &dyn Store) -> StoreResult<WitnessState> {
    let log = tamper.witness();
    if !log.enabled() {
        return Ok(WitnessState::Off);
    }
    let tail = match log.check_tail().await {
        Ok(t) => t,
        Err(e) => {
            return Ok(WitnessState::Mismatch(format!(
                "the audit witness {} cannot be read: {e}",
                log.location()
            )));
        }
    };
    if let Some(p) = tail.problems.first() {
        return Ok(WitnessState::Mismatch(format!(
            "the audit witness {} is broken: {p}",
            log.location()
        )));
    }
    if let Some(recorded) = recorded_witness_head(tamper, store).await? {
        let last = tail.entries.last().map(|e| e.n).unwrap_or(0);
        let same = tail.entries.iter().find(|e| e.n == recorded.n);
        if last < recorded.n || same.is_some_and(|e| e.mac != recorded.mac) {
            return Ok(WitnessState::Mismatch(format!(
                "the audit witness {} ends at entry {last}, but the vault's database recorded \
                 entry {}: the witness was cut back or replaced",
                log.location(),
                recorded.n
            )));
        }
    }
    let Some(point) = witness_log::last_point(&tail.entries) else {
        return Ok(WitnessState::Empty);
    };
    Ok(match extends(store, &point).await? {
        None => WitnessState::Extended(point),
        Some(why) => WitnessState::Mismatch(why),
    })
}

/// `None` when the trail in the database extends `point`, else why not.
async fn extends(store: &dyn Store, point: &Point) -> StoreResult<Option<String>> {
    let head = store.audit_head().await?.seq;
    if head < point.seq {
        return Ok(Some(format!(
            "the last checkpoint witnessed outside the database is at seq {} but the trail in \
             the database ends at seq {head}: it was cut back",
            point.seq
        )));
    }
    let page = |after_seq: i64| AuditFilter {
        after_seq,
        limit: 1,
        ..AuditFilter::default()
    };
    let at = store.audit_events(&page(point.seq - 1)).await?;
    if let Some(e) = at.first().filter(|e| e.seq == point.seq) {
        return Ok((e.hash != point.hash).then(|| {
            format!(
                "the event at seq {} is not the one witnessed outside the database (another \
                 hash): the trail was rewritten",
                point.seq
            )
        }));
    }
    // Pruned through the witnessed checkpoint: its kept row anchors the trail.
    let kept = store.audit_checkpoints(point.seq, point.seq).await?;
    let first = store.audit_events(&page(0)).await?.first().map(|e| e.seq);
    let pruned = kept
        .first()
        .is_some_and(|c| hex::encode(&c.hash) == point.hash)
        && first.is_none_or(|f| f > point.seq);
    Ok((!pruned).then(|| {
        format!(
            "the event at seq {}, witnessed outside the database, is missing from it",
            point.seq
        )
    }))
}

/// Witnesses a freshly signed checkpoint: checks that the trail in the
/// database still extends the last witnessed checkpoint, then appends the
/// checkpoint (after its key, the first time the key signs one) to the
/// witness and makes it durable. Returns the mutations that store the
/// checkpoint (and the witness's new head) in the database.
pub async fn witness_checkpoint(
    tamper: &Tamper,
    store: &dyn Store,
    key: &SigningKey,
    row: &CheckpointRow,
) -> Result<Vec<Mutation>, WitnessError> {
    let mut mutations = vec![Mutation::InsertCheckpoint(row.clone())];
    let log = tamper.witness();
    if !log.enabled() {
        return Ok(mutations);
    }
    if let WitnessState::Mismatch(why) = witness_state(tamper, store).await? {
        tamper.health().set_witness(Some(why.clone()));
        return Err(WitnessError::Mismatch(why));
    }
    let cp = Checkpoint::from_row(row);
    let known = match tamper.witnessed_key(&cp.kid) {
        Some(known) => known,
        None => {
            let all = log.check().await.map_err(LogError::Io)?;
            tamper.note_witnessed_keys(witness_log::keys(&all.entries).into_iter().map(|k| k.0));
            tamper.witnessed_key(&cp.kid).unwrap_or(false)
        }
    };
    let mut records = Vec::new();
    if !known {
        records.push(WitnessRecord::Key {
            kid: key.kid().to_owned(),
            public_key: STANDARD.encode(key.public_key()),
            at: cp.at.clone(),
            origin: witness_log::HELD.into(),
        });
    }
    records.push(WitnessRecord::Checkpoint {
        seq: cp.seq,
        hash: cp.hash,
        at: cp.at,
        kid: cp.kid.clone(),
        signature: cp.signature,
    });
    let head = log.append(records).await?;
    tamper.note_witnessed_keys([cp.kid]);
    if tamper.anchored()
        && let Some(h) = head
    {
        mutations.push(witness_head_mutation(&h));
    }
    Ok(mutations)
}

fn witness_head_mutation(head: &Head) -> Mutation {
    Mutation::ReplaceMeta {
        name: META_WITNESS_HEAD.into(),
        expected: None,
        value: head.encode(),
    }
}

/// The whole witness, as `GET /v1/audit/verify` and the public-key
/// endpoints read it.
#[derive(Debug, Clone, Default)]
pub struct WitnessView {
    /// The point the trail must extend.
    pub point: Option<Point>,
    /// The keys the witness records.
    pub keys: Vec<(String, [u8; 32])>,
    /// What is wrong with the witness log itself.
    pub problem: Option<String>,
}

/// Reads and checks the whole witness (read it before the chain head, so a
/// checkpoint witnessed meanwhile is never ahead of the head read).
pub async fn read_witness(tamper: &Tamper, store: &dyn Store) -> StoreResult<WitnessView> {
    let log = tamper.witness();
    if !log.enabled() {
        return Ok(WitnessView::default());
    }
    let mut checked = match log.check().await {
        Ok(c) => c,
        Err(e) => {
            return Ok(WitnessView {
                problem: Some(format!(
                    "the audit witness {} cannot be read: {e}",
                    log.location()
                )),
                ..WitnessView::default()
            });
        }
    };
    if let Some(recorded) = recorded_witness_head(tamper, store).await? {
        checked.check_recorded(&recorded);
    }
    Ok(WitnessView {
        point: witness_log::last_point(&checked.entries),
        keys: witness_log::keys(&checked.entries),
        problem: checked
            .problems
            .first()
            .map(|p| format!("the audit witness {} is broken: {p}", log.location())),
    })
}

/// At start-up: starts the witness if it was never written (recording the
/// signing key this process holds and, once, the older public keys the
/// database lists: trust on first use, with a warning), then checks the
/// trail against it. A mismatch is reported (log, metric, `/readyz`); the
/// vault still starts, so that operators and auditors can look.
pub async fn start_witness(state: &AppState) -> anyhow::Result<()> {
    let tamper = &state.tamper;
    let store = state.store.as_ref();
    let log = tamper.witness();
    if !log.enabled() {
        return Ok(());
    }
    let all = log.check().await?;
    tamper.note_witnessed_keys(witness_log::keys(&all.entries).into_iter().map(|k| k.0));
    let recorded = recorded_witness_head(tamper, store).await?;
    if all.lines == 0 && recorded.is_none() {
        let signer = state.keys.checkpoint();
        let held = signer.signing_key();
        let at = rfc3339(state.clock.now_micros());
        let key = |kid: &str, public: &[u8], origin: &str| WitnessRecord::Key {
            kid: kid.to_owned(),
            public_key: STANDARD.encode(public),
            at: at.clone(),
            origin: origin.to_owned(),
        };
        let mut records = vec![key(held.kid(), &held.public_key(), witness_log::HELD)];
        let mut adopted = Vec::new();
        for row in store.signing_keys().await? {
            if row.kid != held.kid() && row.public_key.len() == 32 {
                records.push(key(&row.kid, &row.public_key, witness_log::ADOPTED));
                adopted.push(row.kid);
            }
        }
        if !adopted.is_empty() {
            tracing::warn!(
                keys = ?adopted,
                "the audit witness starts: the older checkpoint-signing public keys the database                  lists are trusted from now on, once (later public-key rows never are)"
            );
        }
        let kids: Vec<String> = records
            .iter()
            .filter_map(|r| match r {
                WitnessRecord::Key { kid, .. } => Some(kid.clone()),
                _ => None,
            })
            .collect();
        if let Some(head) = log.append(records).await?
            && tamper.anchored()
        {
            state
                .sequencer
                .commit(Unit {
                    mutations: vec![witness_head_mutation(&head)],
                    events: Vec::new(),
                })
                .await?;
        }
        tamper.note_witnessed_keys(kids);
    }
    let now = witness_state(tamper, store).await?;
    tamper.health().set_witness(now.problem());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoint_verifies_with_its_key_only() {
        let (key, _) = SigningKey::generate().unwrap();
        let row = sign(&key, 42, &[7u8; 32], 1_700_000_000_123_456);
        let cp = Checkpoint::from_row(&row);
        assert_eq!(
            cp.message(),
            format!(
                "pii-vault checkpoint v1\n42\n{}\n2023-11-14T22:13:20.123456Z",
                "07".repeat(32)
            )
        );
        let mut keys = PublicKeys::default();
        keys.insert(key.kid(), key.public_key());
        assert_eq!(cp.verify(&keys), Ok(()));

        let mut moved = cp.clone();
        moved.seq = 41;
        assert_eq!(
            moved.verify(&keys),
            Err(CheckpointError::BadSignature { seq: 41 })
        );
        let mut rehashed = cp.clone();
        rehashed.hash = "08".repeat(32);
        assert!(rehashed.verify(&keys).is_err());
        let mut later = cp.clone();
        later.at = "2023-11-14T22:13:21.123456Z".into();
        assert!(later.verify(&keys).is_err());

        let (other, _) = SigningKey::generate().unwrap();
        let mut wrong = PublicKeys::default();
        wrong.insert(key.kid(), other.public_key());
        assert!(matches!(
            cp.verify(&wrong),
            Err(CheckpointError::BadSignature { .. })
        ));
        assert!(matches!(
            cp.verify(&PublicKeys::default()),
            Err(CheckpointError::UnknownKey { .. })
        ));
    }

    #[test]
    fn key_file_round_trips_and_accepts_several_keys() {
        let (a, _) = SigningKey::generate().unwrap();
        let (b, _) = SigningKey::generate().unwrap();
        let published = vec![
            PublishedKey {
                kid: a.kid().into(),
                algorithm: "Ed25519".into(),
                public_key: STANDARD.encode(a.public_key()),
                public_key_hex: hex::encode(a.public_key()),
                current: true,
            },
            PublishedKey {
                kid: b.kid().into(),
                algorithm: "Ed25519".into(),
                public_key: STANDARD.encode(b.public_key()),
                public_key_hex: hex::encode(b.public_key()),
                current: false,
            },
        ];
        let text = key_file(&published);
        let keys = PublicKeys::parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get(a.kid()), Some(&a.public_key()));
        assert_eq!(keys, to_public_keys(&published));
        let hex_line = format!("{} {}\n", b.kid(), hex::encode(b.public_key()));
        assert_eq!(
            PublicKeys::parse(&hex_line).unwrap().get(b.kid()),
            Some(&b.public_key())
        );
        assert!(PublicKeys::parse("# nothing\n\n").is_err());
        assert!(
            PublicKeys::parse("kid-only\n")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            PublicKeys::parse("k AAAA\n")
                .unwrap_err()
                .contains("32 bytes")
        );
    }

    #[test]
    fn checkpoints_are_due_by_count_or_time_but_only_with_new_events() {
        let s = 1_000_000;
        assert!(!due(0, None, 0, 1000, 60));
        assert!(due(1, None, 0, 1000, 60));
        assert!(!due(10, Some((10, 0)), 3600 * s, 1000, 60), "nothing new");
        assert!(!due(500, Some((10, 0)), 59 * s, 1000, 60));
        assert!(due(500, Some((10, 0)), 60 * s, 1000, 60));
        assert!(due(1010, Some((10, 0)), s, 1000, 60));
        assert!(!due(1009, Some((10, 0)), s, 1000, 60));
    }
}
