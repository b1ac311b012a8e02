//! The key operations: rotate the KEK, rotate the root key, retire a KEK
//! version, rotate the signing key, and the status an operator reads to see
//! when an old version can be retired.

use crate::audit::{Action, Decision};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Actor, Committer, KeyError, META_RETIRED_ROOTS, refresh};
use crate::answer::Answer;
use crate::audit::CommitError;
use crate::clock::{Clock, rfc3339};
use crate::config::Settings;
use crate::crypto::{self, RootKey, SIGNING_KEY_LABEL, SigningKey};
use crate::store::{KekState, KeyUse, Mutation, SigningKeyRow, SigningKeyState, Store, Unit};
use crate::vault::{Keys, META_INDEX_SECRET, META_ROOT_FINGERPRINT};

/// The change that stores the edge's answer (`result`), committed with the
/// operation (see [`crate::answer`]).
fn recorded<T>(answer: &Answer<'_, T>, result: &T) -> Result<Option<Mutation>, KeyError> {
    answer
        .record(result)
        .map_err(|e| KeyError::Crypto(format!("the answer cannot be recorded: {e}")))
}

/// How long a replaced KEK version must stay loadable before it may be
/// retired: two keyring polls and a second, so that every serving process
/// has stopped wrapping new data keys with it.
pub fn retire_grace_micros(settings: &Settings) -> i64 {
    let secs = settings
        .keyring_poll_secs
        .saturating_mul(2)
        .saturating_add(1);
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000)
}

/// A new active KEK version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rotated {
    /// The new active version.
    pub version: i64,
    /// The version it replaced; its data keys are rewrapped in the background.
    pub previous: i64,
}

/// Adds a KEK version and makes it active in one transaction. This process
/// wraps new data keys with it at once; other processes within one keyring
/// poll. The background rewrap (or `pii-vault keys rewrap`) then moves the
/// existing data keys.
pub async fn rotate(
    keys: &Keys,
    store: &dyn Store,
    committer: &Committer<'_>,
    clock: &dyn Clock,
    actor: &Actor,
    answer: &Answer<'_, Rotated>,
) -> Result<Rotated, KeyError> {
    let root = keys.root.load_full();
    for _ in 0..3 {
        let states = store.kek_states().await?;
        let previous = states
            .iter()
            .find(|s| s.active)
            .map(|s| s.version)
            .ok_or(KeyError::Crypto("the keyring has no active version".into()))?;
        let version = states.iter().map(|s| s.version).max().unwrap_or(0) + 1;
        let (kek, wrapped) = crypto::new_kek(&root, version)?;
        let result = Rotated { version, previous };
        let mut mutations = vec![Mutation::RotateKek {
            version,
            wrapped,
            previous,
            root_fingerprint: root.fingerprint().into_bytes(),
            at: clock.now_micros(),
        }];
        mutations.extend(recorded(answer, &result)?);
        let unit = Unit {
            mutations,
            events: vec![
                actor
                    .event(Action::KeysRotate, Decision::Allowed)
                    .reason("kek_version", &version.to_string())
                    .reason("previous_version", &previous.to_string()),
            ],
        };
        match committer.commit(unit).await {
            Ok(_) => {
                let current = keys.keyring();
                if let Ok(next) = current.with_kek(kek, version) {
                    keys.keyring.store(Arc::new(next));
                }
                keys.rotation.request_reload();
                keys.rotation.rewrap_wake.notify_one();
                metrics::gauge!("pii_vault_keys_active_version").set(version as f64);
                tracing::info!(
                    kek_version = version,
                    previous_version = previous,
                    "KEK rotated"
                );
                return Ok(result);
            }
            Err(CommitError::Conflict(what)) if what == "root_key_changed" => {
                return Err(KeyError::RootChanged);
            }
            // Another process rotated at the same moment: read again.
            Err(CommitError::Conflict(_)) => continue,
            Err(CommitError::NotFound | CommitError::Unavailable) => {
                return Err(KeyError::Unavailable);
            }
        }
    }
    Err(KeyError::Concurrent)
}

/// The root key was replaced.
#[derive(Debug, Clone, Serialize)]
pub struct RootRotated {
    /// Fingerprint of the new root key.
    pub fingerprint: String,
    pub previous_fingerprint: String,
    /// KEK versions rewrapped (retired versions hold nothing to rewrap).
    pub kek_versions: usize,
}

/// Rewraps every KEK and the blind-index secret from `old` to `new` and
/// records the new root key's fingerprint, in ONE transaction. From then on
/// only `new` opens the vault. No data key and no value changes.
pub async fn rotate_root(
    store: &dyn Store,
    clock: &dyn Clock,
    old: &RootKey,
    new: &RootKey,
    actor: &Actor,
) -> Result<RootRotated, KeyError> {
    if old.fingerprint() == new.fingerprint() {
        return Err(KeyError::SameRoot);
    }
    let stored = store
        .get_meta(META_ROOT_FINGERPRINT)
        .await?
        .unwrap_or_default();
    if stored != old.fingerprint().as_bytes() {
        return Err(KeyError::RootChanged);
    }
    let mut mutations = vec![Mutation::ReplaceMeta {
        name: META_ROOT_FINGERPRINT.into(),
        expected: Some(stored),
        value: new.fingerprint().into_bytes(),
    }];
    let mut count = 0usize;
    for row in store.keks().await? {
        let Some(wrapped) = row.wrapped else { continue };
        let rewrapped = crypto::rewrap_kek(old, new, row.version, &wrapped)?;
        mutations.push(Mutation::RewrapKek {
            version: row.version,
            expected: wrapped,
            wrapped: rewrapped,
        });
        count += 1;
    }
    mutations.push(Mutation::ExpectKekCount {
        count: i64::try_from(count).unwrap_or(i64::MAX),
    });
    let index = store
        .get_meta(META_INDEX_SECRET)
        .await?
        .ok_or(KeyError::Crypto("the blind-index secret is missing".into()))?;
    mutations.push(Mutation::ReplaceMeta {
        name: META_INDEX_SECRET.into(),
        value: crypto::rewrap_index_secret(old, new, &index)?,
        expected: Some(index),
    });
    let retired = store.get_meta(META_RETIRED_ROOTS).await?;
    let mut list = retired
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    list.push_str(&format!(
        "{} {}\n",
        old.fingerprint(),
        rfc3339(clock.now_micros())
    ));
    mutations.push(Mutation::ReplaceMeta {
        name: META_RETIRED_ROOTS.into(),
        expected: retired,
        value: list.into_bytes(),
    });
    let unit = Unit {
        mutations,
        events: vec![
            actor
                .event(Action::KeysRotateRoot, Decision::Allowed)
                .reason("root_fingerprint", &new.fingerprint())
                .reason("previous_root_fingerprint", &old.fingerprint())
                .reason("kek_versions", &count.to_string()),
        ],
    };
    match crate::audit::sequencer::commit_now(store, clock, unit).await {
        Ok(_) => Ok(RootRotated {
            fingerprint: new.fingerprint(),
            previous_fingerprint: old.fingerprint(),
            kek_versions: count,
        }),
        Err(CommitError::Conflict(_)) => Err(KeyError::Concurrent),
        Err(_) => Err(KeyError::Unavailable),
    }
}

/// A retired KEK version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Retired {
    pub version: i64,
    /// RFC 3339; the version's key material was destroyed then.
    pub retired_at: String,
}

/// Destroys KEK `version`'s key material. Refused while it is active, was
/// active less than [`retire_grace_micros`] ago, or still wraps a data key
/// or the signing key; the last check is repeated inside the transaction.
#[allow(clippy::too_many_arguments)]
pub async fn retire(
    keys: Option<&Keys>,
    store: &dyn Store,
    committer: &Committer<'_>,
    clock: &dyn Clock,
    settings: &Settings,
    version: i64,
    actor: &Actor,
    answer: &Answer<'_, Retired>,
) -> Result<Retired, KeyError> {
    let states = store.kek_states().await?;
    let state = states
        .iter()
        .find(|s| s.version == version)
        .ok_or(KeyError::UnknownVersion(version))?;
    if state.active {
        return Err(KeyError::Active(version));
    }
    if !state.has_material {
        return Err(KeyError::AlreadyRetired(version));
    }
    let in_use = usage(store, version).await?;
    if in_use.0 > 0 || in_use.1 > 0 {
        return Err(KeyError::InUse {
            version,
            data_keys: in_use.0,
            signing_keys: in_use.1,
        });
    }
    let now = clock.now_micros();
    if let Some(from) = retirable_from(&states, state, settings)
        && now < from
    {
        return Err(KeyError::RecentlyActive {
            version,
            from: rfc3339(from),
        });
    }
    let result = Retired {
        version,
        retired_at: rfc3339(now),
    };
    let mut mutations = vec![Mutation::RetireKek { version, at: now }];
    mutations.extend(recorded(answer, &result)?);
    let unit = Unit {
        mutations,
        events: vec![
            actor
                .event(Action::KeysRetire, Decision::Allowed)
                .reason("kek_version", &version.to_string()),
        ],
    };
    match committer.commit(unit).await {
        Ok(_) => {}
        Err(CommitError::NotFound) => return Err(KeyError::UnknownVersion(version)),
        Err(CommitError::Conflict(what)) => {
            return Err(match what.as_str() {
                "kek_active" => KeyError::Active(version),
                "kek_retired" => KeyError::AlreadyRetired(version),
                _ => {
                    let (data_keys, signing_keys) = usage(store, version).await?;
                    KeyError::InUse {
                        version,
                        data_keys,
                        signing_keys,
                    }
                }
            });
        }
        Err(CommitError::Unavailable) => return Err(KeyError::Unavailable),
    }
    tracing::info!(kek_version = version, "KEK version retired");
    if let Some(keys) = keys {
        keys.rotation.request_reload();
    }
    Ok(result)
}

/// (live data keys, sealed signing keys) under `version`.
async fn usage(store: &dyn Store, version: i64) -> Result<(i64, i64), KeyError> {
    let data = store
        .kek_usage()
        .await?
        .into_iter()
        .find(|u| u.kek_version == version)
        .map(|u| u.data_keys)
        .unwrap_or(0);
    let signing = super::all_signing_keys(store)
        .await?
        .iter()
        .filter(|(_, s)| s.row.kek_version == version && !s.row.sealed.is_empty())
        .count();
    Ok((data, i64::try_from(signing).unwrap_or(i64::MAX)))
}

/// When a replaced version may be retired at the earliest (µs), `None` for
/// the active version.
fn retirable_from(states: &[KekState], state: &KekState, settings: &Settings) -> Option<i64> {
    if state.active {
        return None;
    }
    let replaced_at = state.deactivated_at.or_else(|| {
        states
            .iter()
            .filter(|s| s.version > state.version)
            .map(|s| s.created_at)
            .min()
    })?;
    Some(replaced_at.saturating_add(retire_grace_micros(settings)))
}

/// A new signing key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SigningRotated {
    /// Key id of the new signing key.
    pub kid: String,
    /// Raw Ed25519 public key, base64url without padding.
    pub public_key: String,
    /// The key it replaced: still published, and accepted for tokens until
    /// those have expired.
    pub previous_kid: String,
}

/// Generates a new Ed25519 signing key, sealed under the active KEK, and
/// makes it the one that signs audit checkpoints (`KeyUse::Checkpoint`) or
/// access tokens (`KeyUse::Token`); the other key is left alone. The
/// previous key's private half is destroyed; its public key stays
/// published. A token key's tokens are accepted until they expire, or
/// refused at once with `revoke_previous` (suspected leak: every client
/// logs in again).
#[allow(clippy::too_many_arguments)]
pub async fn rotate_signing(
    key_use: KeyUse,
    keys: &Keys,
    store: &dyn Store,
    committer: &Committer<'_>,
    clock: &dyn Clock,
    settings: &Settings,
    revoke_previous: bool,
    actor: &Actor,
    answer: &Answer<'_, SigningRotated>,
) -> Result<SigningRotated, KeyError> {
    for _ in 0..3 {
        let states = store.key_states(key_use).await?;
        let previous = states
            .iter()
            .rev()
            .find(|s| s.row.active)
            .map(|s| s.row.kid.clone())
            .ok_or(KeyError::Crypto("no active signing key".into()))?;
        let (signing, pkcs8) = SigningKey::generate()?;
        let keyring = keys.keyring();
        let (kek_version, sealed) = keyring.seal(SIGNING_KEY_LABEL, &pkcs8)?;
        let now = clock.now_micros();
        let kid = signing.kid().to_owned();
        let result = SigningRotated {
            public_key: URL_SAFE_NO_PAD.encode(signing.public_key()),
            kid: kid.clone(),
            previous_kid: previous.clone(),
        };
        let mut mutations = vec![Mutation::RotateSigningKey {
            key_use,
            key: SigningKeyRow {
                kid: kid.clone(),
                kek_version,
                sealed,
                public_key: signing.public_key().to_vec(),
                active: true,
                created_at: now,
            },
            previous_kid: previous.clone(),
            revoke_previous,
            at: now,
        }];
        mutations.extend(recorded(answer, &result)?);
        let unit = Unit {
            mutations,
            events: vec![rotation_event(
                actor,
                key_use,
                &result,
                kek_version,
                revoke_previous,
            )],
        };
        match committer.commit(unit).await {
            Ok(_) => {
                if let Err(e) = refresh::refresh_tokens(keys, store, settings, clock).await {
                    tracing::warn!(error = %e, "signing key rotated; token keys reload on the next poll");
                    keys.rotation.request_reload();
                }
                tracing::info!(kid = %kid, previous_kid = %previous, "signing key rotated");
                return Ok(result);
            }
            Err(CommitError::Conflict(what)) if what == "kek_retired" => {
                // This process's keyring was stale: reload and try again.
                refresh::refresh(keys, store, settings, clock)
                    .await
                    .map_err(|_| KeyError::Unavailable)?;
            }
            Err(CommitError::Conflict(_)) => continue,
            Err(_) => return Err(KeyError::Unavailable),
        }
    }
    Err(KeyError::Concurrent)
}

/// The audit event of a signing-key rotation: key ids and the KEK version,
/// never key material.
fn rotation_event(
    actor: &Actor,
    key_use: KeyUse,
    result: &SigningRotated,
    kek_version: i64,
    revoke_previous: bool,
) -> crate::audit::EventDraft {
    let ev = match key_use {
        KeyUse::Checkpoint => actor.event(Action::KeysRotateSigning, Decision::Allowed),
        KeyUse::Token => actor
            .event(Action::KeysRotateTokenSigning, Decision::Allowed)
            .reason(
                "previous_tokens",
                if revoke_previous {
                    "revoked"
                } else {
                    "accepted_until_expiry"
                },
            ),
    };
    ev.reason("kid", &result.kid)
        .reason("previous_kid", &result.previous_kid)
        .reason("kek_version", &kek_version.to_string())
}

/// One KEK version as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KekInfo {
    pub version: i64,
    pub active: bool,
    pub created_at: String,
    /// When another version replaced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<String>,
    /// Its key material was destroyed.
    pub retired: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// Live data keys it wraps.
    pub data_keys: i64,
    /// Signing keys sealed under it.
    pub signing_keys: i64,
    /// `keys retire` would succeed now.
    pub retirable: bool,
    /// The earliest time it may be retired, once nothing uses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retirable_from: Option<String>,
}

/// Rewrap progress of one older KEK version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RewrapVersion {
    pub version: i64,
    /// Data keys it wrapped when it was replaced (or since, if more).
    pub total: i64,
    /// Moved to a newer version (or erased) since.
    pub done: i64,
    pub remaining: i64,
}

/// The background rewrap.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RewrapStatus {
    /// Every live data key is wrapped by the active version.
    pub complete: bool,
    /// Live data keys still wrapped by an older version.
    pub pending: i64,
    pub versions: Vec<RewrapVersion>,
    /// A rewrap pass is running in the process that answered.
    pub running_here: bool,
    /// Data keys that process rewrapped since it started.
    pub rewrapped_here: u64,
    /// Data keys that process could not unwrap (left on their version).
    pub failed_here: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_batch_at: Option<String>,
}

/// A signing key (public facts only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyInfo {
    pub kid: String,
    /// Raw Ed25519 public key, base64url without padding.
    pub public_key: String,
    /// Signs new checkpoints (in `signing_keys`) or new tokens (in
    /// `token_signing_keys`).
    pub active: bool,
    /// A token-signing key whose tokens are still accepted (always `false`
    /// for a checkpoint key).
    pub accepted_for_tokens: bool,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// KEK version its private key is sealed under; absent once the private
    /// key was destroyed (after it was replaced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kek_version: Option<i64>,
}

/// One customer's data key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerKey {
    pub customer_id: String,
    /// `active` (the data key exists) or `destroyed` (erased: crypto-shredded).
    pub data_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kek_version: Option<i64>,
}

/// The key status: KEK versions, rewrap progress, signing keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyStatus {
    pub active_version: i64,
    /// Fingerprint of the root key in the keyring (not secret: a truncated hash).
    pub root_fingerprint: String,
    /// The process that answered holds that root key.
    pub root_key_current: bool,
    pub versions: Vec<KekInfo>,
    pub rewrap: RewrapStatus,
    /// The keys that sign audit checkpoints (`/v1/audit/public-key`).
    pub signing_keys: Vec<SigningKeyInfo>,
    /// The keys that sign access tokens (`/.well-known/jwks.json`).
    pub token_signing_keys: Vec<SigningKeyInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerKey>,
}

/// Reads the key status; with `customer`, that customer's data key too
/// (`Ok(None)` when the customer does not exist). Updates the gauges.
pub async fn status(
    keys: &Keys,
    store: &dyn Store,
    clock: &dyn Clock,
    settings: &Settings,
    customer: Option<Uuid>,
) -> Result<Option<KeyStatus>, KeyError> {
    let customer = match customer {
        None => None,
        Some(id) => match store.customer_key(id).await? {
            None => return Ok(None),
            Some(key) => Some(CustomerKey {
                customer_id: id.to_string(),
                data_key: if key.has_data_key {
                    "active"
                } else {
                    "destroyed"
                }
                .into(),
                kek_version: key.kek_version.filter(|_| key.has_data_key),
            }),
        },
    };
    let states = store.kek_states().await?;
    let usage = store.kek_usage().await?;
    let signing = super::all_signing_keys(store).await?;
    let now = clock.now_micros();
    let active_version = states
        .iter()
        .find(|s| s.active)
        .map(|s| s.version)
        .unwrap_or_default();
    let data_keys = |v: i64| {
        usage
            .iter()
            .find(|u| u.kek_version == v)
            .map(|u| u.data_keys)
            .unwrap_or(0)
    };
    let sealed_under = |v: i64| {
        let n = signing
            .iter()
            .filter(|(_, s)| s.row.kek_version == v && !s.row.sealed.is_empty())
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    };
    let mut versions = Vec::new();
    let mut rewrap_versions = Vec::new();
    for s in &states {
        let (dk, sk) = (data_keys(s.version), sealed_under(s.version));
        let from = retirable_from(&states, s, settings);
        let retirable =
            !s.active && s.has_material && dk == 0 && sk == 0 && from.is_some_and(|f| f <= now);
        versions.push(KekInfo {
            version: s.version,
            active: s.active,
            created_at: rfc3339(s.created_at),
            deactivated_at: s.deactivated_at.map(rfc3339),
            retired: !s.has_material,
            retired_at: s.retired_at.map(rfc3339),
            data_keys: dk,
            signing_keys: sk,
            retirable,
            retirable_from: if s.has_material {
                from.map(rfc3339)
            } else {
                None
            },
        });
        if !s.active && s.has_material {
            let total = s.rewrap_total.unwrap_or(dk).max(dk);
            rewrap_versions.push(RewrapVersion {
                version: s.version,
                total,
                done: total - dk,
                remaining: dk,
            });
        }
        let label = s.version.to_string();
        metrics::gauge!("pii_vault_keys_data_keys", "kek_version" => label).set(dk as f64);
    }
    // Data keys that name a version newer than the loaded active one, or one
    // without a keyring row, are counted as pending too.
    let pending = usage
        .iter()
        .filter(|u| u.kek_version != active_version)
        .map(|u| u.data_keys)
        .sum::<i64>();
    refresh::set_rewrap_gauges(&rewrap_versions);
    metrics::gauge!("pii_vault_keys_active_version").set(active_version as f64);
    let progress = keys.rotation.progress();
    let fingerprint = store
        .get_meta(META_ROOT_FINGERPRINT)
        .await?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(Some(KeyStatus {
        active_version,
        root_key_current: keys.root.load().fingerprint() == fingerprint,
        root_fingerprint: fingerprint,
        versions,
        rewrap: RewrapStatus {
            complete: pending == 0,
            pending,
            versions: rewrap_versions,
            running_here: progress.running,
            rewrapped_here: progress.rewrapped,
            failed_here: progress.failed,
            last_batch_at: progress.last_batch_at.map(rfc3339),
        },
        signing_keys: signing
            .iter()
            .filter(|(u, _)| *u == KeyUse::Checkpoint)
            .map(|(u, s)| signing_info(*u, s, now, settings))
            .collect(),
        token_signing_keys: signing
            .iter()
            .filter(|(u, _)| *u == KeyUse::Token)
            .map(|(u, s)| signing_info(*u, s, now, settings))
            .collect(),
        customer,
    }))
}

fn signing_info(
    key_use: KeyUse,
    s: &SigningKeyState,
    now: i64,
    settings: &Settings,
) -> SigningKeyInfo {
    SigningKeyInfo {
        kid: s.row.kid.clone(),
        public_key: URL_SAFE_NO_PAD.encode(&s.row.public_key),
        active: s.row.active,
        accepted_for_tokens: key_use == KeyUse::Token
            && (s.row.active || refresh::still_accepted(s, now, settings)),
        created_at: rfc3339(s.row.created_at),
        retired_at: s.retired_at.map(rfc3339),
        kek_version: (!s.row.sealed.is_empty()).then_some(s.row.kek_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(version: i64, active: bool, created_at: i64, deactivated_at: Option<i64>) -> KekState {
        KekState {
            version,
            has_material: true,
            active,
            created_at,
            deactivated_at,
            retired_at: None,
            rewrap_total: None,
        }
    }

    #[test]
    fn grace_is_two_polls_and_a_second() {
        let settings = Settings {
            keyring_poll_secs: 2,
            ..Settings::default()
        };
        assert_eq!(retire_grace_micros(&settings), 5_000_000);
    }

    #[test]
    fn a_replaced_version_is_retirable_after_the_grace_period() {
        let settings = Settings::default();
        let grace = retire_grace_micros(&settings);
        let states = vec![kek(1, false, 0, Some(1_000)), kek(2, true, 1_000, None)];
        assert_eq!(
            retirable_from(&states, &states[0], &settings),
            Some(1_000 + grace)
        );
        assert_eq!(retirable_from(&states, &states[1], &settings), None);
        // Without a recorded deactivation, the next version's creation counts.
        let states = vec![kek(1, false, 0, None), kek(2, true, 7_000, None)];
        assert_eq!(
            retirable_from(&states, &states[0], &settings),
            Some(7_000 + grace)
        );
    }

    #[test]
    fn key_errors_name_versions_not_material() {
        let e = KeyError::InUse {
            version: 3,
            data_keys: 12,
            signing_keys: 1,
        };
        let text = e.to_string();
        assert!(
            text.contains("version 3") && text.contains("12 data key"),
            "{text}"
        );
    }
}
