//! Opening a vault: the root key, the store, the keyring and the signing key.
//! Every command goes through here, so `serve` and the command-line tools
//! agree on the database and the keys.

use crate::audit::{Action, Decision};
use std::sync::Arc;

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::audit::EventDraft;
use crate::audit::sequencer::commit_now;
use crate::clock::Clock;
use crate::config::{RootKeySource, Settings, read_key_file, write_key_file};
use crate::crypto::{self, IndexKeys, Keyring, RootKey, SigningKey, TokenKeys};
use crate::store::{KeyUse, Mutation, SigningKeyRow, Store, Unit};

/// Actor recorded for what the vault does by itself.
pub const SYSTEM_ACTOR: &str = "system";

pub const META_ROOT_FINGERPRINT: &str = "root_fingerprint";
pub const META_INDEX_SECRET: &str = "index_secret";
const SIGNING_LABEL: &str = "signing-key";

/// The unwrapped key material a running vault uses.
pub struct Keys {
    /// Swapped atomically when a new KEK version becomes active.
    pub keyring: ArcSwap<Keyring>,
    pub index: IndexKeys,
    /// Signs and verifies access tokens (`token_signing_keys`).
    pub tokens: ArcSwap<TokenKeys>,
    /// Signs audit checkpoints (`signing_keys`); verifies no tokens.
    pub checkpoint: ArcSwap<TokenKeys>,
    /// The root key, kept to unwrap KEK versions added while serving.
    pub root: ArcSwap<RootKey>,
    /// Keyring polling and rewrap state of this process.
    pub rotation: crate::keys::Rotation,
}

impl Keys {
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }
    pub fn tokens(&self) -> Arc<TokenKeys> {
        self.tokens.load_full()
    }
    /// The key that signs audit checkpoints, and the public keys of the
    /// earlier ones.
    pub fn checkpoint(&self) -> Arc<TokenKeys> {
        self.checkpoint.load_full()
    }
    /// The holder of the keys of `key_use`.
    pub fn signing(&self, key_use: KeyUse) -> &ArcSwap<TokenKeys> {
        match key_use {
            KeyUse::Token => &self.tokens,
            KeyUse::Checkpoint => &self.checkpoint,
        }
    }
}

/// How the root key was found; `serve` warns loudly about a development key.
pub enum RootKeyOrigin {
    Configured,
    DevelopmentFile {
        path: std::path::PathBuf,
        created: bool,
    },
}

/// Resolves the root key. Without a configured key, a development key file
/// beside the SQLite database is used, and created when `create` is true
/// (`serve` and `migrate`); `production` refuses that fallback.
pub fn root_key(
    settings: &Settings,
    production: bool,
    create: bool,
) -> Result<(RootKey, RootKeyOrigin), String> {
    let parse = |s: &SecretString, from: &str| {
        RootKey::from_base64(s.expose_secret())
            .map_err(|_| format!("the root key from {from} is not base64 of 32 bytes"))
    };
    match settings.root_key_source()? {
        RootKeySource::Value(s) => Ok((
            parse(&s, "PII_VAULT_MASTER_KEY")?,
            RootKeyOrigin::Configured,
        )),
        RootKeySource::File(p) => {
            let s = read_key_file(&p)?;
            Ok((
                parse(&s, &p.display().to_string())?,
                RootKeyOrigin::Configured,
            ))
        }
        _ if production => Err(
            "--production needs an explicitly configured root key: set PII_VAULT_MASTER_KEY_FILE \
             (or PII_VAULT_MASTER_KEY) to a 32-byte base64 key"
                .into(),
        ),
        RootKeySource::DevFile(path) => {
            if path.exists() {
                let s = read_key_file(&path)?;
                let key = parse(&s, &path.display().to_string())?;
                return Ok((
                    key,
                    RootKeyOrigin::DevelopmentFile {
                        path,
                        created: false,
                    },
                ));
            }
            if !create {
                return Err(format!(
                    "no root key configured and no development key at {}: run `pii-vault serve` \
                     or `pii-vault migrate` once, or set PII_VAULT_MASTER_KEY_FILE",
                    path.display()
                ));
            }
            let (key, b64) = RootKey::generate().map_err(|e| e.to_string())?;
            write_key_file(&path, &SecretString::from(b64))?;
            Ok((
                key,
                RootKeyOrigin::DevelopmentFile {
                    path,
                    created: true,
                },
            ))
        }
        RootKeySource::Missing => Err(
            "no root key configured: set PII_VAULT_MASTER_KEY_FILE (or PII_VAULT_MASTER_KEY) \
             to a 32-byte base64 key"
                .into(),
        ),
    }
}

/// Loads the keys, creating the keyring, blind-index secret and signing key
/// on first use. Refuses a root key that does not match the keyring.
pub async fn open_keys(
    store: &dyn Store,
    clock: &dyn Clock,
    root: RootKey,
    settings: &Settings,
) -> Result<Keys, String> {
    let db = |e: crate::store::StoreError| format!("cannot read the keyring: {e}");
    if store
        .get_meta(META_ROOT_FINGERPRINT)
        .await
        .map_err(db)?
        .is_none()
    {
        bootstrap(store, clock, &root).await?;
    }
    let fingerprint = store
        .get_meta(META_ROOT_FINGERPRINT)
        .await
        .map_err(db)?
        .unwrap_or_default();
    if fingerprint != root.fingerprint().as_bytes() {
        let replaced = store
            .get_meta(crate::keys::META_RETIRED_ROOTS)
            .await
            .map_err(db)?
            .unwrap_or_default();
        if String::from_utf8_lossy(&replaced)
            .lines()
            .any(|l| l.split(' ').next() == Some(root.fingerprint().as_str()))
        {
            return Err(
                "the configured root key was replaced by `pii-vault keys rotate-root` and no longer \
                 opens this vault: configure the new root key"
                    .into(),
            );
        }
        return Err(
            "the configured root key does not match this vault's keyring (wrong key, or the \
             root key was rotated)"
                .into(),
        );
    }
    let mut keks = Vec::new();
    let mut active = None;
    for row in store.keks().await.map_err(db)? {
        let Some(wrapped) = row.wrapped else { continue };
        let kek = crypto::unwrap_kek(&root, row.version, &wrapped).map_err(|_| {
            format!(
                "KEK version {} cannot be unwrapped with the root key",
                row.version
            )
        })?;
        if row.active {
            active = Some(row.version);
        }
        keks.push(kek);
    }
    let active = active.ok_or("the keyring has no active KEK version")?;
    let keyring = Keyring::new(keks, active).map_err(|e| e.to_string())?;

    let index_wrapped = store
        .get_meta(META_INDEX_SECRET)
        .await
        .map_err(db)?
        .ok_or("the blind-index secret is missing")?;
    let index = crypto::unwrap_index_secret(&root, &index_wrapped)
        .map_err(|_| "the blind-index secret cannot be unwrapped".to_owned())?;

    separate_token_key(store, clock, &keyring).await?;
    let now = clock.now_micros();
    let load = |key_use| crate::keys::refresh::load_keys(key_use, store, &keyring, settings, now);
    let (tokens, token_config) = load(KeyUse::Token).await?;
    let (checkpoint, checkpoint_config) = load(KeyUse::Checkpoint).await?;
    let rotation = crate::keys::Rotation::default();
    for (key_use, config) in [
        (KeyUse::Token, token_config),
        (KeyUse::Checkpoint, checkpoint_config),
    ] {
        *rotation
            .config(key_use)
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(config);
    }
    Ok(Keys {
        keyring: ArcSwap::from_pointee(keyring),
        index,
        tokens: ArcSwap::from_pointee(tokens),
        checkpoint: ArcSwap::from_pointee(checkpoint),
        root: ArcSwap::from_pointee(root),
        rotation,
    })
}

/// A vault from before token-signing keys of their own started with a copy
/// of its checkpoint keys (migration 0008). While the two active keys are
/// the same key, a fresh token-signing key replaces the copy; tokens it
/// signed stay valid until they expire. Another process doing the same at
/// the same time wins, and this one keeps its key.
async fn separate_token_key(
    store: &dyn Store,
    clock: &dyn Clock,
    keyring: &Keyring,
) -> Result<(), String> {
    let db = |e: crate::store::StoreError| format!("cannot read the signing keys: {e}");
    let active = |states: Vec<crate::store::SigningKeyState>| {
        states
            .into_iter()
            .rev()
            .find(|s| s.row.active)
            .map(|s| s.row.kid)
    };
    let token = active(store.token_key_states().await.map_err(db)?);
    let checkpoint = active(store.signing_key_states().await.map_err(db)?);
    let Some(previous) = token.filter(|t| Some(t) == checkpoint.as_ref()) else {
        return Ok(());
    };
    let (signing, pkcs8) = SigningKey::generate().map_err(|e| e.to_string())?;
    let (kek_version, sealed) = keyring
        .seal(SIGNING_LABEL, &pkcs8)
        .map_err(|e| e.to_string())?;
    let now = clock.now_micros();
    let unit = Unit {
        mutations: vec![Mutation::RotateSigningKey {
            key_use: KeyUse::Token,
            key: SigningKeyRow {
                kid: signing.kid().to_owned(),
                kek_version,
                sealed,
                public_key: signing.public_key().to_vec(),
                active: true,
                created_at: now,
            },
            previous_kid: previous.clone(),
            revoke_previous: false,
            at: now,
        }],
        events: vec![
            EventDraft::new(
                SYSTEM_ACTOR,
                SYSTEM_ACTOR,
                Action::KeysRotateTokenSigning,
                Decision::Allowed,
                &Uuid::now_v7().to_string(),
            )
            .reason("kid", signing.kid())
            .reason("previous_kid", &previous)
            .reason("kek_version", &kek_version.to_string())
            .reason("previous_tokens", "accepted_until_expiry"),
        ],
    };
    match commit_now(store, clock, unit).await {
        Ok(_) | Err(crate::audit::CommitError::Conflict(_)) => Ok(()),
        Err(e) => Err(format!("cannot create the token-signing key: {e}")),
    }
}

async fn bootstrap(store: &dyn Store, clock: &dyn Clock, root: &RootKey) -> Result<(), String> {
    let now = clock.now_micros();
    let (kek, wrapped_kek) = crypto::new_kek(root, 1).map_err(|e| e.to_string())?;
    let keyring = Keyring::new(vec![kek], 1).map_err(|e| e.to_string())?;
    let (_, wrapped_index) = crypto::new_index_secret(root).map_err(|e| e.to_string())?;
    let (signing, pkcs8) = SigningKey::generate().map_err(|e| e.to_string())?;
    let (kek_version, sealed) = keyring
        .seal(SIGNING_LABEL, &pkcs8)
        .map_err(|e| e.to_string())?;
    let (token, token_pkcs8) = SigningKey::generate().map_err(|e| e.to_string())?;
    let (token_kek_version, token_sealed) = keyring
        .seal(SIGNING_LABEL, &token_pkcs8)
        .map_err(|e| e.to_string())?;
    let unit = Unit {
        mutations: vec![
            Mutation::SetMeta {
                name: META_ROOT_FINGERPRINT.into(),
                value: root.fingerprint().into_bytes(),
            },
            Mutation::SetMeta {
                name: META_INDEX_SECRET.into(),
                value: wrapped_index,
            },
            Mutation::InsertKek {
                version: 1,
                wrapped: wrapped_kek,
                active: true,
                at: now,
            },
            Mutation::InsertSigningKey(SigningKeyRow {
                kid: signing.kid().to_owned(),
                kek_version,
                sealed,
                public_key: signing.public_key().to_vec(),
                active: true,
                created_at: now,
            }),
            Mutation::InsertTokenKey(SigningKeyRow {
                kid: token.kid().to_owned(),
                kek_version: token_kek_version,
                sealed: token_sealed,
                public_key: token.public_key().to_vec(),
                active: true,
                created_at: now,
            }),
        ],
        events: vec![
            EventDraft::new(
                SYSTEM_ACTOR,
                SYSTEM_ACTOR,
                Action::KeysInit,
                Decision::Allowed,
                &Uuid::now_v7().to_string(),
            )
            .reason("kek_version", "1")
            .reason("signing_kid", signing.kid())
            .reason("token_signing_kid", token.kid()),
        ],
    };
    match commit_now(store, clock, unit).await {
        Ok(_) => Ok(()),
        // Another process created the keyring first: use theirs.
        Err(crate::audit::CommitError::Conflict(_)) => Ok(()),
        Err(e) => Err(format!("cannot create the keyring: {e}")),
    }
}
