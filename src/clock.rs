//! Time comes from an injected clock, never from the wall clock deep inside,
//! so tests (and `pii-vault sweep --as-of`) can control it.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch, UTC.
    fn now_micros(&self) -> i64;

    fn now(&self) -> OffsetDateTime {
        from_micros(self.now_micros())
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the wall clock is read
    fn now_micros(&self) -> i64 {
        to_micros(OffsetDateTime::now_utc())
    }
}

/// A clock that stays where it is set (tests, runs "as of" a given time).
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(at: OffsetDateTime) -> Self {
        FixedClock(AtomicI64::new(to_micros(at)))
    }
    pub fn set(&self, at: OffsetDateTime) {
        self.0.store(to_micros(at), Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

pub fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-22T17:36:15.123456Z`.
pub fn rfc3339(us: i64) -> String {
    let t = from_micros(us);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses an RFC 3339 time into microseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(to_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let s = "2026-11-22T17:36:15.123456Z";
        let us = parse_rfc3339(s).unwrap();
        assert_eq!(rfc3339(us), s);
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn fixed_clock_moves_only_when_set() {
        let c = FixedClock::new(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(c.now_micros(), 0);
        c.set(from_micros(5_000_000));
        assert_eq!(c.now_micros(), 5_000_000);
    }
}
