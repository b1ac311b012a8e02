//! A short-lived cache of authenticated callers, keyed by the SHA-256 of the
//! bearer token.
//!
//! Verifying a token costs an Ed25519 verification and a principal lookup
//! (to honour disabled clients and role changes). Helpdesk tools call the
//! vault many times a second with the same token, so a hit skips both.
//! Bounds on what a hit may skip:
//! - an entry lives at most [`TTL`]: a client disabled (or a role changed)
//!   by another process stops working within that time;
//! - the sequencer counts commits that change principals; an entry made
//!   before such a commit in this process is not used, so a client disabled
//!   through this process stops working at once;
//! - `exp` and `nbf` are checked against the clock on every hit;
//! - an entry made under other token keys (a signing-key rotation) is not used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::PrincipalKind;

pub const TTL: Duration = Duration::from_secs(1);
const MAX_ENTRIES: usize = 50_000;

#[derive(Debug, Clone)]
pub struct CachedCaller {
    pub id: String,
    pub kind: PrincipalKind,
    pub role: String,
    pub exp: i64,
    pub nbf: i64,
}

struct Entry {
    caller: CachedCaller,
    at: Instant,
    epoch: u64,
    keys: usize,
}

#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

pub fn token_digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl AuthCache {
    /// The cached caller, if the entry is fresh, from the current principal
    /// epoch and token keys, and the token is valid at `now` (seconds).
    pub fn get(
        &self,
        digest: &[u8; 32],
        epoch: u64,
        keys: usize,
        now: i64,
    ) -> Option<CachedCaller> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get(digest)?;
        let leeway = crate::crypto::JWT_LEEWAY_SECS;
        let fresh = e.at.elapsed() < TTL && e.epoch == epoch && e.keys == keys;
        let valid = now <= e.caller.exp.saturating_add(leeway)
            && e.caller.nbf <= now.saturating_add(leeway);
        (fresh && valid).then(|| e.caller.clone())
    }

    pub fn put(&self, digest: [u8; 32], caller: CachedCaller, epoch: u64, keys: usize) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.at.elapsed() < TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            digest,
            Entry {
                caller,
                at: Instant::now(),
                epoch,
                keys,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(exp: i64) -> CachedCaller {
        CachedCaller {
            id: "c".into(),
            kind: PrincipalKind::Client,
            role: "helpdesk".into(),
            exp,
            nbf: 0,
        }
    }

    #[test]
    fn hits_only_for_the_same_epoch_keys_and_a_valid_token() {
        let c = AuthCache::default();
        let d = token_digest("t");
        c.put(d, caller(1_000), 1, 7);
        assert!(c.get(&d, 1, 7, 500).is_some());
        assert!(c.get(&d, 2, 7, 500).is_none(), "a principal changed since");
        assert!(c.get(&d, 1, 8, 500).is_none(), "other token keys");
        assert!(c.get(&d, 1, 7, 2_000).is_none(), "expired token");
        assert!(c.get(&token_digest("u"), 1, 7, 500).is_none());
    }
}
