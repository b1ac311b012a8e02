//! The state every handler shares. Stateless apart from the database: the
//! only process-local state is caches, the login throttle, the rate limiters
//! and the limiter of password work.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::Sequencer;
use crate::clock::Clock;
use crate::config::Settings;
use crate::policy::Policy;
use crate::store::{PrincipalKind, Store};
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
    /// Anonymous filings per source address (`intake_per_source_per_hour`).
    pub intake_sources: crate::auth::rate_limit::RateLimiter,
    /// The proxies whose forwarding headers name the client (`trusted_proxies`).
    pub trusted_proxies: crate::auth::client_addr::TrustedProxies,
    /// The one limiter of argon2 work on request paths.
    pub password_work: crate::auth::work::PasswordWork,
    pub auth_cache: crate::auth::cache::AuthCache,
    /// External identity providers and their cached keys (`identity_providers`).
    pub identity_providers: crate::auth::oidc::IdentityProviders,
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
///
/// The counts live in fixed tables, one per kind of principal, so memory
/// does not grow with the names tried (1 MiB whatever arrives) and cheap
/// client-credential attempts never push out the counts of people's
/// passwords. A name is hashed with SipHash under a random per-process key:
/// the hash picks a set of [`THROTTLE_WAYS`] entries and is kept as the
/// entry's tag; the name itself is never stored. A new name takes an empty
/// or expired entry of its set, else the one with the fewest failures
/// (oldest first): pushing out a name that is being guessed needs a flood
/// of names with more failures than it in every set, far slower than
/// waiting for the window to end.
pub struct Throttle {
    max_failures: u32,
    window_secs: u64,
    hasher: std::collections::hash_map::RandomState,
    started: Instant,
    clients: Mutex<Vec<Entry>>,
    users: Mutex<Vec<Entry>>,
}

/// Sets per table.
const THROTTLE_SETS: usize = 4_096;
/// Entries per set.
pub const THROTTLE_WAYS: usize = 8;

/// One name's failures since `since` (seconds after the throttle started,
/// from 1). `tag` 0 is an empty entry.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    tag: u64,
    failures: u32,
    since: u32,
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        let table = || Mutex::new(vec![Entry::default(); THROTTLE_SETS * THROTTLE_WAYS]);
        Throttle {
            max_failures,
            window_secs: window.as_secs().max(1),
            hasher: std::collections::hash_map::RandomState::new(),
            started: Instant::now(),
            clients: table(),
            users: table(),
        }
    }

    fn table(&self, kind: PrincipalKind) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        let t = match kind {
            PrincipalKind::Client => &self.clients,
            PrincipalKind::User => &self.users,
        };
        t.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first entry of `name`'s set, and its tag.
    fn locate(&self, name: &str) -> (usize, u64) {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(name);
        let set = (h % THROTTLE_SETS as u64) as usize;
        (set * THROTTLE_WAYS, h.max(1))
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_secs() + 1
    }

    /// Seconds `e` stays live, or `None` when it is empty or expired.
    fn live(&self, e: Entry, now: u64) -> Option<u64> {
        let end = u64::from(e.since) + self.window_secs;
        (e.tag != 0 && now < end).then(|| end - now)
    }

    /// `Some(seconds to wait)` when `name` is throttled.
    pub fn check(&self, kind: PrincipalKind, name: &str) -> Option<u64> {
        self.check_at(kind, name, self.now())
    }

    fn check_at(&self, kind: PrincipalKind, name: &str, now: u64) -> Option<u64> {
        let (first, tag) = self.locate(name);
        let table = self.table(kind);
        let e = table[first..first + THROTTLE_WAYS]
            .iter()
            .find(|e| e.tag == tag)?;
        let left = self.live(*e, now)?;
        (e.failures >= self.max_failures).then_some(left.max(1))
    }

    pub fn failure(&self, kind: PrincipalKind, name: &str) {
        self.failure_at(kind, name, self.now());
    }

    fn failure_at(&self, kind: PrincipalKind, name: &str, now: u64) {
        let (first, tag) = self.locate(name);
        let mut table = self.table(kind);
        let set = &mut table[first..first + THROTTLE_WAYS];
        let at = match set.iter().position(|e| e.tag == tag) {
            Some(i) => i,
            None => {
                // An empty or expired entry, else the fewest failures, oldest.
                let (i, _) = set
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| match self.live(**e, now) {
                        None => (0, 0, 0),
                        Some(_) => (1, e.failures, e.since),
                    })
                    .unwrap_or((0, &Entry::default()));
                set[i] = Entry::default();
                i
            }
        };
        let e = &mut set[at];
        if self.live(*e, now).is_none() {
            *e = Entry {
                tag,
                failures: 0,
                since: u32::try_from(now).unwrap_or(u32::MAX),
            };
        }
        e.failures = e.failures.saturating_add(1);
    }

    pub fn success(&self, kind: PrincipalKind, name: &str) {
        let (first, tag) = self.locate(name);
        let mut table = self.table(kind);
        for e in &mut table[first..first + THROTTLE_WAYS] {
            if e.tag == tag {
                *e = Entry::default();
            }
        }
    }

    /// Names counted now, of both kinds (at most [`Throttle::capacity`]).
    pub fn len(&self) -> usize {
        let now = self.now();
        [PrincipalKind::Client, PrincipalKind::User]
            .into_iter()
            .map(|k| {
                self.table(k)
                    .iter()
                    .filter(|e| self.live(**e, now).is_some())
                    .count()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fixed number of entries, both kinds together.
    pub fn capacity(&self) -> usize {
        2 * THROTTLE_SETS * THROTTLE_WAYS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PrincipalKind::{Client, User};

    #[test]
    fn throttles_after_max_failures_and_success_resets() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            t.failure(User, "ada");
        }
        assert_eq!(t.check(User, "ada"), None);
        t.failure(User, "ada");
        let wait = t.check(User, "ada").unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(t.check(User, "bob"), None, "other names are not affected");
        assert_eq!(t.check(Client, "ada"), None, "nor the other kind");
        t.success(User, "ada");
        assert_eq!(t.check(User, "ada"), None);
    }

    #[test]
    fn the_window_ends() {
        let t = Throttle::new(2, Duration::from_secs(60));
        t.failure_at(User, "ada", 1);
        t.failure_at(User, "ada", 30);
        assert_eq!(t.check_at(User, "ada", 30), Some(31));
        assert_eq!(t.check_at(User, "ada", 61), None);
        t.failure_at(User, "ada", 61);
        assert_eq!(t.check_at(User, "ada", 61), None, "counting starts afresh");
    }

    #[test]
    fn the_tables_do_not_grow_with_the_names_tried() {
        let t = Throttle::new(3, Duration::from_secs(60));
        assert!(t.is_empty());
        let long = "x".repeat(256);
        for i in 0..200_000 {
            t.failure(Client, &format!("{i}{long}"));
            t.failure(User, &format!("{i}{long}"));
        }
        assert_eq!(t.capacity(), 65_536);
        assert_eq!(t.len(), t.capacity(), "full, and no larger");
        for table in [&t.clients, &t.users] {
            assert_eq!(
                table.lock().unwrap().capacity(),
                THROTTLE_SETS * THROTTLE_WAYS
            );
        }
    }

    #[test]
    fn a_flood_of_other_names_neither_throttles_nor_frees_a_name() {
        let t = Throttle::new(3, Duration::from_secs(60));
        t.failure(User, "ada");
        t.failure(User, "ada");
        // Far more names than entries, each failing once: "ada" (two
        // failures) is never the one pushed out, and never throttled by them.
        for i in 0..100_000 {
            t.failure(User, &format!("guess{i}"));
            t.failure(Client, &format!("guess{i}"));
        }
        assert_eq!(t.check(User, "ada"), None);
        t.failure(User, "ada");
        assert!(
            t.check(User, "ada").is_some(),
            "the two earlier failures still count"
        );
        assert_eq!(t.check(User, "bob"), None);
    }
}
