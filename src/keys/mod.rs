//! Key rotation without downtime (DESIGN.md §3).
//!
//! - [`ops`]: rotate the KEK, rotate the root key, retire a KEK version,
//!   rotate the signing key, and the key status operators look at.
//! - [`rewrap`]: moves every data key (and the sealed signing key) from older
//!   KEK versions to the active one, in batches, resumable after a crash: the
//!   work still to do is exactly the rows that still name an older version.
//! - [`refresh`]: every serving process polls the keyring and swaps in a
//!   newly active version (and new signing keys) within seconds.
//!
//! Every operation is an audit event (`keys.rotate`, `keys.rotate_root`,
//! `keys.rewrap`, `keys.retire`, `keys.rotate_signing`) that names versions,
//! key ids and counts, never key material.

pub mod ops;
pub mod refresh;
pub mod rewrap;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use tokio::sync::Notify;

pub use ops::{KeyStatus, retire, rotate, rotate_root, rotate_signing, status};
pub use refresh::start_background;
pub use rewrap::{RewrapReport, run_pass};

/// `vault_meta` entry listing the fingerprints of replaced root keys, so that
/// starting with one of them is refused with a message that says so.
pub const META_RETIRED_ROOTS: &str = "retired_root_fingerprints";

/// Process-local state of the rotation machinery, kept in [`crate::vault::Keys`].
#[derive(Default)]
pub struct Rotation {
    /// Asks the keyring poller to reload now (e.g. a data key names a KEK
    /// version this process has not loaded yet).
    pub(crate) reload: Notify,
    /// Wakes the background rewrap (a rotation happened in this process).
    pub(crate) rewrap_wake: Notify,
    /// Set while the configured root key no longer matches the keyring; the
    /// warning is logged once per change.
    pub(crate) root_mismatch: AtomicBool,
    pub(crate) progress: Mutex<Progress>,
    /// What the current token keys were built from.
    pub(crate) token_config: Mutex<Option<refresh::TokenConfig>>,
    /// What the current checkpoint keys were built from.
    pub(crate) checkpoint_config: Mutex<Option<refresh::TokenConfig>>,
}

impl Rotation {
    /// Asks the keyring poller to reload at once.
    pub fn request_reload(&self) {
        self.reload.notify_one();
    }

    /// What the loaded keys of `key_use` were built from.
    pub(crate) fn config(
        &self,
        key_use: crate::store::KeyUse,
    ) -> &Mutex<Option<refresh::TokenConfig>> {
        match key_use {
            crate::store::KeyUse::Token => &self.token_config,
            crate::store::KeyUse::Checkpoint => &self.checkpoint_config,
        }
    }

    /// A copy of this process's rewrap progress.
    pub fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn update_progress(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The rewrap as seen by this process.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// A pass is running in this process.
    pub running: bool,
    /// Data keys rewrapped by this process since it started.
    pub rewrapped: u64,
    /// Data keys that could not be unwrapped (left where they are).
    pub failed: u64,
    /// When this process last committed a batch (µs).
    pub last_batch_at: Option<i64>,
    /// Per source version: (data keys at the start of the pass, done since).
    pub versions: BTreeMap<i64, (u64, u64)>,
}

pub use crate::actor::Actor;
pub use crate::audit::Committer;

/// Why a key operation was refused or failed. Messages name versions and key
/// ids, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("KEK version {0} does not exist")]
    UnknownVersion(i64),
    #[error("KEK version {0} is the active version: rotate first, then rewrap")]
    Active(i64),
    #[error("KEK version {0} is already retired")]
    AlreadyRetired(i64),
    #[error(
        "KEK version {version} still wraps {data_keys} data key(s) and {signing_keys} signing \
         key(s): let the rewrap finish (`pii-vault keys rewrap`) and retry"
    )]
    InUse {
        version: i64,
        data_keys: i64,
        signing_keys: i64,
    },
    #[error(
        "KEK version {version} was active until moments ago; it can be retired from {from}, \
         once every process has picked up the new version"
    )]
    RecentlyActive { version: i64, from: String },
    #[error(
        "the root key of this vault was replaced (`keys rotate-root`); this process still holds \
         the old one: restart it with the new root key"
    )]
    RootChanged,
    #[error("the new root key is the key already in use")]
    SameRoot,
    #[error("another key operation changed the keyring at the same time; try again")]
    Concurrent,
    #[error("key material cannot be used: {0}")]
    Crypto(String),
    #[error("the database or the audit trail is unavailable")]
    Unavailable,
}

/// Every sealed signing key, checkpoint keys and token keys, with its use.
pub(crate) async fn all_signing_keys(
    store: &dyn crate::store::Store,
) -> Result<Vec<(crate::store::KeyUse, crate::store::SigningKeyState)>, crate::store::StoreError> {
    use crate::store::KeyUse;
    let mut all = Vec::new();
    for key_use in [KeyUse::Checkpoint, KeyUse::Token] {
        all.extend(
            store
                .key_states(key_use)
                .await?
                .into_iter()
                .map(|s| (key_use, s)),
        );
    }
    Ok(all)
}

impl From<crate::store::StoreError> for KeyError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "key operation: database error");
        KeyError::Unavailable
    }
}

impl From<crate::crypto::CryptoError> for KeyError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        KeyError::Crypto(e.to_string())
    }
}
