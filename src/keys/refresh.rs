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
use crate::store::{KeyUse, SigningKeyState, Store};
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

/// What keys of `key_use` should be loaded now: the active key, the
/// replaced token keys whose tokens may still be valid, and every other
/// public key (published only). Checkpoint keys verify no tokens.
fn wanted_config(
    key_use: KeyUse,
    states: &[SigningKeyState],
    now_micros: i64,
    settings: &Settings,
) -> Option<TokenConfig> {
    let active = states.iter().rev().find(|s| s.row.active)?;
    let others = states.iter().filter(|s| s.row.kid != active.row.kid);
    let (accepted, published): (Vec<_>, Vec<_>) =
        others.partition(|s| key_use == KeyUse::Token && still_accepted(s, now_micros, settings));
    Some(TokenConfig {
        active: active.row.kid.clone(),
        accepted: accepted.iter().map(|s| s.row.kid.clone()).collect(),
        published: published.iter().map(|s| s.row.kid.clone()).collect(),
    })
}

/// Builds the keys of `key_use` (see [`wanted_config`]): the active
/// signing key opened with `keyring`, and the public keys of the others.
pub fn build_keys(
    key_use: KeyUse,
    states: &[SigningKeyState],
    keyring: &Keyring,
    settings: &Settings,
    now_micros: i64,
) -> Result<(TokenKeys, TokenConfig), String> {
    let config = wanted_config(key_use, states, now_micros, settings)
        .ok_or(format!("no active {} key", key_use_name(key_use)))?;
    let current = states
        .iter()
        .find(|s| s.row.kid == config.active)
        .ok_or("no active signing key")?;
    let pkcs8 = keyring
        .open(
            SIGNING_KEY_LABEL,
            current.row.kek_version,
            &current.row.sealed,
        )
        .map_err(|_| format!("the {} key cannot be opened", key_use_name(key_use)))?;
    let signing = SigningKey::from_pkcs8(&pkcs8).map_err(|e| e.to_string())?;
    let public = |kids: &[String]| -> Vec<(String, [u8; 32])> {
        states
            .iter()
            .filter(|s| kids.contains(&s.row.kid))
            .filter_map(|s| {
                let key = <[u8; 32]>::try_from(s.row.public_key.as_slice()).ok()?;
                Some((s.row.kid.clone(), key))
            })
            .collect()
    };
    let tokens = TokenKeys::new(
        signing,
        public(&config.accepted),
        settings.issuer(),
        settings.token_audience.clone(),
    )
    .with_published(public(&config.published));
    Ok((tokens, config))
}

fn key_use_name(key_use: KeyUse) -> &'static str {
    match key_use {
        KeyUse::Checkpoint => "checkpoint-signing",
        KeyUse::Token => "token-signing",
    }
}

/// Reads the signing keys of `key_use` and builds them (start-up).
pub async fn load_keys(
    key_use: KeyUse,
    store: &dyn Store,
    keyring: &Keyring,
    settings: &Settings,
    now_micros: i64,
) -> Result<(TokenKeys, TokenConfig), String> {
    let states = store
        .key_states(key_use)
        .await
        .map_err(|e| format!("cannot read the signing keys: {e}"))?;
    build_keys(key_use, &states, keyring, settings, now_micros)
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

/// Rebuilds the token keys and the checkpoint keys when their signing
/// keys, or which of them are still accepted, changed.
pub async fn refresh_tokens(
    keys: &Keys,
    store: &dyn Store,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<(), String> {
    for key_use in [KeyUse::Token, KeyUse::Checkpoint] {
        refresh_use(key_use, keys, store, settings, clock).await?;
    }
    Ok(())
}

async fn refresh_use(
    key_use: KeyUse,
    keys: &Keys,
    store: &dyn Store,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<(), String> {
    let states = store
        .key_states(key_use)
        .await
        .map_err(|e| format!("cannot read the signing keys: {e}"))?;
    let now = clock.now_micros();
    let wanted = wanted_config(key_use, &states, now, settings);
    let slot = keys.rotation.config(key_use);
    let same = {
        let held = slot.lock().unwrap_or_else(|p| p.into_inner());
        held.is_some() && *held == wanted
    };
    if same || wanted.is_none() {
        return Ok(());
    }
    let (built, config) = build_keys(key_use, &states, &keys.keyring(), settings, now)?;
    let holder = keys.signing(key_use);
    let changed_kid = holder.load().signing_key().kid() != config.active;
    holder.store(Arc::new(built));
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(config);
    if changed_kid {
        tracing::info!(key = key_use_name(key_use), "signing key reloaded");
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
