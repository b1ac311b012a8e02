//! The state every handler shares. Stateless apart from the database: the
//! only process-local state is caches and the login throttle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::Sequencer;
use crate::clock::Clock;
use crate::config::Settings;
use crate::policy::Policy;
use crate::store::Store;
use crate::vault::Keys;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub policy: Arc<Policy>,
    pub keys: Arc<Keys>,
    pub sequencer: Sequencer,
    /// The tombstone log and the audit witness, outside the database.
    pub tamper: crate::tamper::Tamper,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    pub throttle: Throttle,
    pub rate_limit: crate::auth::rate_limit::RateLimiter,
    /// Verification codes per identifier (`intake_codes_per_hour`), keyed
    /// by the identifier's blind index, never by the value.
    pub intake_codes: crate::auth::rate_limit::RateLimiter,
    pub auth_cache: crate::auth::cache::AuthCache,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    /// A handle that does not keep the state alive (background tasks end
    /// once every other handle is gone).
    pub fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    pub fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<AppState> {
        weak.upgrade().map(AppState)
    }
}

/// Counts failed logins per name; past the limit within the window the name
/// is refused (429) until the window ends, whatever the password.
pub struct Throttle {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Throttle {
            max_failures,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` when `key` is throttled.
    pub fn check(&self, key: &str) -> Option<u64> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = *map.get(key)?;
        let elapsed = since.elapsed();
        if elapsed >= self.window {
            map.remove(key);
            return None;
        }
        (count >= self.max_failures).then(|| (self.window - elapsed).as_secs().max(1))
    }

    pub fn failure(&self, key: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        let e = map.entry(key.to_owned()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    pub fn success(&self, key: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_max_failures_and_success_resets() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            t.failure("user:ada");
        }
        assert_eq!(t.check("user:ada"), None);
        t.failure("user:ada");
        assert!(t.check("user:ada").is_some());
        assert_eq!(t.check("user:bob"), None, "other names are not affected");
        t.success("user:ada");
        assert_eq!(t.check("user:ada"), None);
    }
}
