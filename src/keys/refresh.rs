//! Keeping a serving process's keys current: every `keyring_poll_secs` (or
//! at once when asked) the keyring and the signing keys are read from the
//! database and swapped in when they changed; and the background rewrap.
//!
//! After `keys rotate-root` the configured root key of a running process no
//! longer matches the keyring. The process keeps serving with the KEKs it
//! holds; it re-reads its configured key (for example a replaced key file)
//! and carries on with it once it matches, and otherwise logs that it must
//! be restarted with the new key.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::ops::RewrapVersion;
use super::{Actor, Committer, rewrap};
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::{self, JWT_LEEWAY_SECS, Keyring, SIGNING_KEY_LABEL, SigningKey, TokenKeys};
use crate::state::{AppState, Inner};
use crate::store::{SigningKeyState, Store};
use crate::vault::{Keys, META_ROOT_FINGERPRINT};

/// What a [`TokenKeys`] was built from: the signing key, the older keys
/// still accepted for tokens, and those only published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    active: String,
    accepted: Vec<String>,
    published: Vec<String>,
}

/// Whether tokens signed by a replaced key may still be valid: it was
/// replaced less than a token lifetime (plus clock leeway) ago.
pub fn still_accepted(s: &SigningKeyState, now_micros: i64, settings: &Settings) -> bool {
    if s.row.active {
        return true;
    }
    if s.tokens_revoked {
        return false;
    }
    match s.retired_at {
        // Replaced before replacement times were recorded: keep accepting.
        None => true,
        Some(at) => {
            let window = settings
                .token_lifetime_secs
                .saturating_add(JWT_LEEWAY_SECS)
                .saturating_mul(1_000_000);
            now_micros < at.saturating_add(window)
        }
    }
}

/// Builds the token keys: the active signing key (opened with `keyring`),
/// the replaced keys whose tokens may still be valid, and every other
/// public key published for older checkpoints.
pub fn build_token_keys(
    states: &[SigningKeyState],
    keyring: &Keyring,
    settings: &Settings,
    now_micros: i64,
) -> Result<(TokenKeys, TokenConfig), String> {
    let current = states
        .iter()
        .rev()
        .find(|s| s.row.active)
        .ok_or("no active signing key")?;
    let pkcs8 = keyring
        .open(
            SIGNING_KEY_LABEL,
            current.row.kek_version,
            &current.row.sealed,
        )
        .map_err(|_| "the signing key cannot be opened".to_owned())?;
    let signing = SigningKey::from_pkcs8(&pkcs8).map_err(|e| e.to_string())?;
    let mut accepted = Vec::new();
    let mut published = Vec::new();
    for s in states.iter().filter(|s| s.row.kid != current.row.kid) {
        let Ok(key) = <[u8; 32]>::try_from(s.row.public_key.as_slice()) else {
            continue;
        };
        if still_accepted(s, now_micros, settings) {
            accepted.push((s.row.kid.clone(), key));
        } else {
            published.push((s.row.kid.clone(), key));
        }
    }
    let config = TokenConfig {
        active: current.row.kid.clone(),
        accepted: accepted.iter().map(|(k, _)| k.clone()).collect(),
        published: published.iter().map(|(k, _)| k.clone()).collect(),
    };
    let tokens = TokenKeys::new(
        signing,
        accepted,
        settings.token_issuer.clone(),
        settings.token_audience.clone(),
    )
    .with_published(published);
    Ok((tokens, config))
}

/// Reads the signing keys and builds the token keys (start-up).
pub async fn load_token_keys(
    store: &dyn Store,
    keyring: &Keyring,
    settings: &Settings,
    now_micros: i64,
) -> Result<(TokenKeys, TokenConfig), String> {
    let states = store
        .signing_key_states()
        .await
        .map_err(|e| format!("cannot read the signing keys: {e}"))?;
    build_token_keys(&states, keyring, settings, now_micros)
}

/// Reloads the keyring and the token keys when the database says otherwise
/// than this process's copy.
pub async fn refresh(
    keys: &Keys,
    store: &dyn Store,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<(), String> {
    let db = |e: crate::store::StoreError| format!("cannot read the keyring: {e}");
    let fingerprint = store
        .get_meta(META_ROOT_FINGERPRINT)
        .await
        .map_err(db)?
        .unwrap_or_default();
    if fingerprint != keys.root.load().fingerprint().as_bytes() {
        // The root key was rotated: the configured key may have been
        // replaced too (a new key file); otherwise keep what is loaded.
        match crate::vault::root_key(settings, false, false) {
            Ok((root, _)) if fingerprint == root.fingerprint().as_bytes() => {
                keys.root.store(Arc::new(root));
                keys.rotation.root_mismatch.store(false, Ordering::SeqCst);
                tracing::info!("picked up the new root key");
            }
            _ => {
                if !keys.rotation.root_mismatch.swap(true, Ordering::SeqCst) {
                    tracing::error!(
                        "the root key was rotated (`keys rotate-root`) and this process does not \
                         have the new one: it keeps serving with the keys it holds but cannot load \
                         new KEK versions; restart it with the new root key"
                    );
                }
                return Err("the configured root key no longer matches the keyring".into());
            }
        }
    }
    let rows = store.keks().await.map_err(db)?;
    let current = keys.keyring();
    let loaded: Vec<i64> = rows
        .iter()
        .filter(|r| r.wrapped.is_some())
        .map(|r| r.version)
        .collect();
    let active = rows.iter().find(|r| r.active).map(|r| r.version);
    if let Some(active) = active
        && (loaded != current.versions() || active != current.active_version())
    {
        let root = keys.root.load_full();
        let mut keks = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(wrapped) = &row.wrapped else {
                continue;
            };
            let kek = crypto::unwrap_kek(&root, row.version, wrapped).map_err(|_| {
                format!(
                    "KEK version {} cannot be unwrapped with the root key",
                    row.version
                )
            })?;
            keks.push(kek);
        }
        let keyring = Keyring::new(keks, active).map_err(|e| e.to_string())?;
        keys.keyring.store(Arc::new(keyring));
        metrics::gauge!("pii_vault_keys_active_version").set(active as f64);
        tracing::info!(
            active_version = active,
            versions = ?loaded,
            "keyring reloaded"
        );
        if active != current.active_version() {
            keys.rotation.rewrap_wake.notify_one();
        }
    }
    refresh_tokens(keys, store, settings, clock).await
}

/// Rebuilds the token keys when the signing keys, or which of them are
/// still accepted, changed.
pub async fn refresh_tokens(
    keys: &Keys,
    store: &dyn Store,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<(), String> {
    let states = store
        .signing_key_states()
        .await
        .map_err(|e| format!("cannot read the signing keys: {e}"))?;
    let keyring = keys.keyring();
    let now = clock.now_micros();
    let active = states.iter().rev().find(|s| s.row.active);
    let wanted = active.map(|a| {
        let others = states.iter().filter(|s| s.row.kid != a.row.kid);
        let (acc, publ): (Vec<_>, Vec<_>) = others.partition(|s| still_accepted(s, now, settings));
        TokenConfig {
            active: a.row.kid.clone(),
            accepted: acc.iter().map(|s| s.row.kid.clone()).collect(),
            published: publ.iter().map(|s| s.row.kid.clone()).collect(),
        }
    });
    let same = {
        let held = keys
            .rotation
            .token_config
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        held.is_some() && *held == wanted
    };
    if same || wanted.is_none() {
        return Ok(());
    }
    let (tokens, config) = build_token_keys(&states, &keyring, settings, now)?;
    let changed_kid = keys.tokens().signing_key().kid() != config.active;
    keys.tokens.store(Arc::new(tokens));
    *keys
        .rotation
        .token_config
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(config);
    if changed_kid {
        tracing::info!("signing key reloaded");
    }
    Ok(())
}

/// Sets the rewrap gauges from a status read.
pub fn set_rewrap_gauges(versions: &[RewrapVersion]) {
    for v in versions {
        let label = v.version.to_string();
        metrics::gauge!("pii_vault_keys_rewrap_total", "kek_version" => label.clone())
            .set(v.total as f64);
        metrics::gauge!("pii_vault_keys_rewrap_done", "kek_version" => label.clone())
            .set(v.done as f64);
        metrics::gauge!("pii_vault_keys_rewrap_remaining", "kek_version" => label)
            .set(v.remaining as f64);
    }
}

/// Sets the remaining-data-keys gauge of one version during a pass.
pub fn set_remaining_gauge(version: i64, remaining: u64) {
    metrics::gauge!("pii_vault_keys_rewrap_remaining", "kek_version" => version.to_string())
        .set(remaining as f64);
}

/// Starts the keyring poller and (unless `rewrap_background` is off) the
/// background rewrap. Both end once the state is dropped.
pub fn start_background(state: &AppState) {
    let poll = Duration::from_secs(state.settings.keyring_poll_secs.max(1));
    let keys = Arc::clone(&state.keys);
    tokio::spawn(poll_loop(state.downgrade(), Arc::clone(&keys), poll));
    if state.settings.rewrap_background {
        tokio::spawn(rewrap_loop(state.downgrade(), keys, poll));
    }
}

async fn poll_loop(weak: Weak<Inner>, keys: Arc<Keys>, poll: Duration) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = keys.rotation.reload.notified() => {}
        }
        let Some(state) = AppState::upgrade(&weak) else {
            return;
        };
        if let Err(e) = refresh(
            &state.keys,
            state.store.as_ref(),
            &state.settings,
            state.clock.as_ref(),
        )
        .await
        {
            tracing::debug!(error = %e, "keyring poll");
        }
        drop(state);
        // A burst of reload requests costs one reload, not one each.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rewrap_loop(weak: Weak<Inner>, keys: Arc<Keys>, poll: Duration) {
    let max_backoff = Duration::from_secs(60).max(poll);
    // At start-up look at once: a pass interrupted by a crash resumes now.
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = keys.rotation.rewrap_wake.notified() => {}
        }
        let Some(state) = AppState::upgrade(&weak) else {
            return;
        };
        match rewrap::has_work(&state.keys, state.store.as_ref()).await {
            Ok(true) => {}
            Ok(false) => {
                wait = poll;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "background rewrap: cannot check for work");
                wait = (wait * 2).min(max_backoff);
                continue;
            }
        }
        let committer = Committer::Sequencer(&state.sequencer);
        let pause = Duration::from_millis(state.settings.rewrap_pause_ms);
        let weak_for_check = weak.clone();
        // Our own upgraded handle counts once: stop when nobody else holds
        // the state (the server was shut down).
        let keep_going = move || weak_for_check.strong_count() > 1;
        let result = rewrap::run_pass(
            &state.keys,
            state.store.as_ref(),
            &committer,
            state.clock.as_ref(),
            state.settings.rewrap_batch_size,
            pause,
            &Actor::system(),
            &keep_going,
            &mut |_| {},
        )
        .await;
        match result {
            Ok(r) => {
                if r.rewrapped > 0 || r.signing_keys > 0 || r.failed > 0 {
                    tracing::info!(
                        rewrapped = r.rewrapped,
                        signing_keys = r.signing_keys,
                        failed = r.failed,
                        seconds = r.elapsed.as_secs_f64(),
                        "background rewrap pass finished"
                    );
                }
                // Unwrappable keys stay; do not spin on them.
                wait = if r.failed > 0 { max_backoff } else { poll };
            }
            Err(e) => {
                tracing::warn!(error = %e, "background rewrap pass stopped; retrying later");
                wait = (wait * 2).min(max_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SigningKeyRow;

    fn state(active: bool, retired_at: Option<i64>, tokens_revoked: bool) -> SigningKeyState {
        SigningKeyState {
            row: SigningKeyRow {
                kid: "k".into(),
                kek_version: 1,
                sealed: Vec::new(),
                public_key: vec![0; 32],
                active,
                created_at: 0,
            },
            retired_at,
            tokens_revoked,
        }
    }

    #[test]
    fn replaced_keys_are_accepted_for_one_token_lifetime_plus_leeway() {
        let settings = Settings {
            token_lifetime_secs: 900,
            ..Settings::default()
        };
        let at = 1_000_000_000;
        let window = (900 + JWT_LEEWAY_SECS) * 1_000_000;
        let s = state(false, Some(at), false);
        assert!(still_accepted(&s, at, &settings));
        assert!(still_accepted(&s, at + window - 1, &settings));
        assert!(!still_accepted(&s, at + window, &settings));
        assert!(still_accepted(&state(true, None, false), at, &settings));
        assert!(!still_accepted(
            &state(false, Some(at), true),
            at,
            &settings
        ));
    }
}
