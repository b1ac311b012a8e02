//! Per-principal rate limiting: a token bucket per authenticated caller
//! (`rate_limit_per_sec` refilled, `rate_limit_burst` at most). A caller
//! past its bucket gets 429 `rate_limited` with `Retry-After`; other callers
//! are not affected. Unauthenticated token requests are covered by the login
//! throttle instead.
//!
//! The buckets live in 16 shards, each a `Mutex<HashMap>`, so one check is
//! O(1) and callers on different shards never wait for each other. A shard
//! holds at most `SHARD_MAX` buckets: past it, full (idle) buckets are
//! dropped, and if none is full the fullest tenth goes (the keys that have
//! used least of their buckets), so memory stays bounded however many keys arrive
//! (anonymous intake is keyed by source address).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;
/// Past this many buckets in a shard, full (idle) buckets are dropped, or
/// else the fullest tenth.
const SHARD_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_sec", &self.per_sec)
            .field("burst", &self.burst)
            .finish()
    }
}

impl RateLimiter {
    /// `per_sec == 0` turns limiting off. A burst below `per_sec` is raised
    /// to it.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self::with_rate(f64::from(per_sec), f64::from(burst.max(per_sec).max(1)))
    }

    /// At most `n` at once, refilled evenly over an hour; 0 turns it off.
    pub fn per_hour(n: u32) -> Self {
        Self::with_rate(f64::from(n) / 3600.0, f64::from(n.max(1)))
    }

    fn with_rate(per_sec: f64, burst: f64) -> Self {
        RateLimiter {
            per_sec,
            burst,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Bucket>> {
        // FNV-1a: cheap, and keys are server-assigned ids or keyed digests
        // (blind indexes), not attacker text.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        &self.shards[(h as usize) % self.shards.len()]
    }

    /// Buckets held now (at most 16 × 10 000).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one token from `key`'s bucket: `Ok` or `Err(seconds to wait)`.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SHARD_MAX && !map.contains_key(key) {
            let (per_sec, burst) = (self.per_sec, self.burst);
            let level = |b: &Bucket| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_sec
            };
            map.retain(|_, b| level(b) < burst);
            if map.len() >= SHARD_MAX {
                // Drop the fullest tenth at once, so the next inserts are
                // O(1) again.
                let mut levels: Vec<(f64, String)> =
                    map.iter().map(|(k, b)| (level(b), k.clone())).collect();
                let n = SHARD_MAX / 10;
                levels.select_nth_unstable_by(n, |a, b| b.0.total_cmp(&a.0));
                for (_, k) in &levels[..n] {
                    map.remove(k);
                }
            }
        }
        let b = map.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.per_sec;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_limited_and_refills() {
        let r = RateLimiter::new(2, 4);
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(r.check_at("a", t0), Ok(()));
        }
        assert_eq!(r.check_at("a", t0), Err(1));
        assert_eq!(
            r.check_at("b", t0),
            Ok(()),
            "other callers are not affected"
        );
        let later = t0 + Duration::from_millis(500);
        assert_eq!(r.check_at("a", later), Ok(()), "half a second refills one");
        assert!(r.check_at("a", later).is_err());
        let much_later = t0 + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(r.check_at("a", much_later), Ok(()));
        }
        assert!(r.check_at("a", much_later).is_err(), "never past the burst");
    }

    #[test]
    fn zero_turns_limiting_off() {
        let r = RateLimiter::new(0, 0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(r.check_at("a", t0), Ok(()));
        }
    }

    #[test]
    fn the_buckets_are_bounded_and_a_busy_key_is_not_the_one_dropped() {
        let r = RateLimiter::per_hour(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.check_at("busy", t0), Ok(()));
        }
        assert!(r.check_at("busy", t0).is_err());
        for i in 0..(SHARDS * SHARD_MAX * 2) {
            let _ = r.check_at(&format!("203.0.{}.{}", i / 256, i % 256), t0);
        }
        assert!(r.len() <= SHARDS * SHARD_MAX, "{}", r.len());
        assert!(r.check_at("busy", t0).is_err(), "still limited");
    }

    #[test]
    fn slow_rates_ask_for_a_longer_wait() {
        let r = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        assert_eq!(r.check_at("a", t0), Ok(()));
        assert_eq!(r.check_at("a", t0), Err(1));
    }
}
