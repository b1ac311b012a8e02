//! The tombstone log: one authenticated entry per erasure, appended (and
//! made durable) before the erasure is acknowledged, kept OUTSIDE the
//! database.
//!
//! Why outside: a tombstone kept only in the database disappears when an
//! older copy of that database is restored — exactly the moment it is
//! needed. At start-up and at `pii-vault migrate` the vault reads the log
//! and erases again every listed customer that the database still holds
//! (see `super::recover`).
//!
//! Why authenticated: whoever can write the log could otherwise erase any
//! customer (even one under a legal hold) by appending a line, or defeat the
//! re-erasure by deleting one. Every entry carries an HMAC-SHA256 under a
//! key derived from the root key, chained to the entry before it
//! (`crate::tamper::chain`); the vault's database records the head after
//! every append. A forged, altered, removed or reordered entry, or a log
//! cut back at its end, is reported and **nothing in the log is acted on**:
//! the vault serves no customer data until an operator resolves it
//! (`pii-vault tombstones verify`, `pii-vault tombstones repair`).
//!
//! An entry holds the customer id, the erasure state, its time and where it
//! came from — no personal value (R31):
//! `{"n":3,"entry":{"customer_id":"0196…","status":"erased","erased_at":"…","origin":"erasure"},"prev":"…","mac":"…"}`
//!
//! A tombstone file written by an earlier version (unauthenticated lines)
//! is authenticated as it stands the first time this version starts (or
//! runs `pii-vault migrate`), with a warning; the old file is kept beside
//! it as `….unauthenticated`. With `tombstone_database_url` the lines of the
//! old file are imported into that database the same way.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::audit::Committer;
use crate::store::{Mutation, Store, StoreError, Unit};
use crate::tamper::chain::{Head, Sealed};
use crate::tamper::tombstones::{LegacyTombstone, TombstoneRecord, origin};
use crate::tamper::{ChainLog, LogError, Tamper, file};

pub use crate::tamper::tombstone_path;

/// The `vault_meta` row that records the log's head (`"{n} {mac}"`).
pub const META_HEAD: &str = "tombstone_log_head";

/// One erased customer, as the erasure code sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub customer_id: Uuid,
    /// `erased` or `partially_erased`.
    pub status: String,
    /// RFC 3339 UTC.
    pub erased_at: String,
}

/// Why the log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TombstoneError {
    #[error("the tombstone log cannot be read or written: {0}")]
    Io(#[from] std::io::Error),
    #[error("the tombstone log is broken: {0}")]
    Broken(String),
    #[error("the database is unavailable: {0}")]
    Store(#[from] StoreError),
}

impl From<LogError> for TombstoneError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Io(e) => TombstoneError::Io(e),
            LogError::Broken(why) => TombstoneError::Broken(why),
        }
    }
}

/// What checking the log found.
#[derive(Debug, Clone, Default)]
pub struct TombstoneCheck {
    /// Where the log is.
    pub location: String,
    /// Lines read.
    pub lines: u64,
    /// The entries whose MAC verifies, in log order.
    pub entries: Vec<Sealed<TombstoneRecord>>,
    /// What is wrong, one line each; empty when the log verifies.
    pub problems: Vec<String>,
    /// Lines of an earlier version's file, not yet authenticated (the next
    /// `serve` or `migrate` does it).
    pub unauthenticated: u64,
    /// The last entry.
    pub head: Option<Head>,
    /// The head the vault's database recorded.
    pub recorded: Option<Head>,
}

impl TombstoneCheck {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.unauthenticated == 0
    }

    /// One line for `/readyz` and the logs; `None` when the log is fine.
    pub fn summary(&self) -> Option<String> {
        if let Some(first) = self.problems.first() {
            let more = match self.problems.len() {
                1 => String::new(),
                n => format!(" (and {} more problem(s))", n - 1),
            };
            return Some(format!("{first}{more}"));
        }
        (self.unauthenticated > 0).then(|| {
            format!(
                "{} unauthenticated line(s) of an earlier version: `pii-vault migrate` \
                 authenticates them",
                self.unauthenticated
            )
        })
    }

    /// Entries that came from an earlier version's unauthenticated file.
    pub fn adopted(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.entry.origin == origin::UNAUTHENTICATED)
            .count()
    }

    /// The latest state per customer: a later entry wins, except that
    /// `erased` is never downgraded.
    pub fn latest(&self) -> BTreeMap<Uuid, Tombstone> {
        let mut out: BTreeMap<Uuid, Tombstone> = BTreeMap::new();
        for e in &self.entries {
            let t = &e.entry;
            let keep_old = out
                .get(&t.customer_id)
                .is_some_and(|old| old.status == "erased" && t.status != "erased");
            if !keep_old {
                out.insert(
                    t.customer_id,
                    Tombstone {
                        customer_id: t.customer_id,
                        status: t.status.clone(),
                        erased_at: t.erased_at.clone(),
                    },
                );
            }
        }
        out
    }
}

/// The tombstone log of a vault. Cheap to clone.
#[derive(Clone)]
pub struct TombstoneLog {
    tamper: Tamper,
}

impl TombstoneLog {
    pub fn new(tamper: Tamper) -> Self {
        TombstoneLog { tamper }
    }

    fn log(&self) -> ChainLog<TombstoneRecord> {
        self.tamper.tombstones()
    }

    /// Where the log is, for messages.
    pub fn location(&self) -> String {
        self.log().location()
    }

    /// Appends tombstones, durably, then records the new head in the
    /// database. Refused when the log's last entry does not verify.
    pub async fn append(
        &self,
        committer: &Committer<'_>,
        tombstones: Vec<Tombstone>,
        from: &str,
    ) -> Result<(), TombstoneError> {
        let records = tombstones
            .into_iter()
            .map(|t| TombstoneRecord {
                customer_id: t.customer_id,
                status: t.status,
                erased_at: t.erased_at,
                origin: from.to_owned(),
            })
            .collect();
        if let Some(head) = self.log().append(records).await? {
            self.record_head(committer, &head).await;
        }
        Ok(())
    }

    /// Records `head` in the database (a failure is only logged: the log
    /// is ahead of the database then, which is how a restore looks too).
    async fn record_head(&self, committer: &Committer<'_>, head: &Head) {
        if !self.tamper.anchored() {
            return;
        }
        let unit = Unit {
            mutations: vec![Mutation::ReplaceMeta {
                name: META_HEAD.into(),
                expected: None,
                value: head.encode(),
            }],
            events: Vec::new(),
        };
        if let Err(e) = committer.commit(unit).await {
            tracing::warn!(error = %e, "the tombstone log's head is not recorded in the database");
        }
    }

    /// Reads and checks the whole log, and compares its head with the one
    /// the database recorded. Changes nothing.
    pub async fn check(&self, store: &dyn Store) -> Result<TombstoneCheck, TombstoneError> {
        let log = self.log();
        let lines = log.read_lines().await?;
        let recorded = if self.tamper.anchored() {
            store
                .get_meta(META_HEAD)
                .await?
                .and_then(|b| Head::decode(&b))
        } else {
            None
        };
        let mut out = TombstoneCheck {
            location: log.location(),
            lines: lines.len() as u64,
            recorded: recorded.clone(),
            ..TombstoneCheck::default()
        };
        let legacy = lines
            .iter()
            .filter(|l| LegacyTombstone::parse(l).is_some())
            .count();
        if !lines.is_empty() && legacy == lines.len() {
            out.unauthenticated = legacy as u64;
            if let Some(r) = &recorded {
                out.problems.push(format!(
                    "the log holds only unauthenticated lines, but the vault's database recorded \
                     an authenticated log up to entry {}: the log was replaced",
                    r.n
                ));
            }
            return Ok(out);
        }
        let mut checked = log.check_lines(&lines);
        if let Some(r) = &recorded {
            checked.check_recorded(r);
        }
        out.head = checked.head();
        out.problems = checked.problems.iter().map(|p| p.to_string()).collect();
        out.entries = checked.entries;
        Ok(out)
    }

    /// The cheap check `/readyz` runs: the log's last entries verify and
    /// link, and the log reaches the head the database recorded. A problem
    /// found is reported to the vault's health (and stays until a restart).
    pub async fn check_tail(&self, store: &dyn Store) -> Option<String> {
        let log = self.log();
        if !log.enabled() {
            return None;
        }
        let problem = match log.check_tail().await {
            Err(e) => Some(format!("the tombstone log cannot be read: {e}")),
            Ok(tail) if !tail.ok() => tail.problems.first().map(|p| p.to_string()),
            Ok(tail) => {
                let recorded = if self.tamper.anchored() {
                    store
                        .get_meta(META_HEAD)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|b| Head::decode(&b))
                } else {
                    None
                };
                let last = tail.entries.last().map(|e| e.n).unwrap_or(0);
                recorded.filter(|r| r.n > last).map(|r| {
                    format!(
                        "the log ends at entry {last} but the vault's database recorded entry {}: \
                         entries were removed from its end",
                        r.n
                    )
                })
            }
        };
        if problem.is_some() {
            self.tamper.health().set_tombstones(problem.clone());
        }
        problem
    }

    /// At start-up and at `pii-vault migrate`: authenticates an earlier
    /// version's file once, checks the log, brings the head the database
    /// records up to date, and reports the outcome to the vault's health.
    pub async fn prepare(
        &self,
        store: &dyn Store,
        committer: &Committer<'_>,
    ) -> Result<TombstoneCheck, TombstoneError> {
        let mut c = self.check(store).await?;
        let adopted = if c.unauthenticated > 0 && c.problems.is_empty() {
            self.authenticate_legacy().await?
        } else if c.lines == 0 && c.recorded.is_none() {
            self.import_legacy_file().await?
        } else {
            0
        };
        if adopted > 0 {
            tracing::warn!(
                entries = adopted,
                log = %self.location(),
                "tombstones written by an earlier version were not authenticated; they are now \
                 authenticated as they stood — check them with `pii-vault tombstones verify`"
            );
            c = self.check(store).await?;
        }
        if c.ok()
            && c.head != c.recorded
            && let Some(h) = &c.head
        {
            self.record_head(committer, h).await;
        }
        self.tamper.health().set_tombstones(c.summary());
        Ok(c)
    }

    /// Replaces an all-unauthenticated log with the same tombstones,
    /// authenticated (the old file is kept as `….unauthenticated`).
    async fn authenticate_legacy(&self) -> Result<usize, TombstoneError> {
        let log = self.log();
        let records: Vec<TombstoneRecord> = log
            .read_lines()
            .await?
            .iter()
            .filter_map(|l| LegacyTombstone::parse(l))
            .map(LegacyTombstone::adopt)
            .collect();
        let n = records.len();
        log.replace(records, "unauthenticated").await?;
        Ok(n)
    }

    /// With the log in the tombstone database: imports the tombstone file
    /// this host kept before (unauthenticated lines, or entries of this
    /// vault), then renames it `….imported`.
    async fn import_legacy_file(&self) -> Result<usize, TombstoneError> {
        let Some(path) = self.tamper.legacy_tombstone_file().map(|p| p.to_path_buf()) else {
            return Ok(0);
        };
        let read = path.clone();
        let lines = tokio::task::spawn_blocking(move || file::read_all(&read))
            .await
            .map_err(std::io::Error::other)??;
        let own = self.log().check_lines(&lines).entries;
        let mut records: Vec<TombstoneRecord> = own.into_iter().map(|e| e.entry).collect();
        records.extend(
            lines
                .iter()
                .filter_map(|l| LegacyTombstone::parse(l))
                .map(LegacyTombstone::adopt),
        );
        let n = records.len();
        if n > 0 {
            self.log().append(records).await?;
        }
        let imported = file::sibling(&path, "imported");
        if let Err(e) = std::fs::rename(&path, &imported) {
            tracing::warn!(file = %path.display(), error = %e, "cannot rename the imported tombstone file");
        }
        Ok(n)
    }

    /// `pii-vault tombstones repair`: keeps every entry whose MAC verifies,
    /// in order, drops the rest, and seals them again as one chain (the old
    /// log is kept as `….before-repair`). Returns the entries kept.
    pub async fn repair(
        &self,
        committer: &Committer<'_>,
        check: &TombstoneCheck,
    ) -> Result<usize, TombstoneError> {
        let records: Vec<TombstoneRecord> = check.entries.iter().map(|e| e.entry.clone()).collect();
        let n = records.len();
        let head = self.log().replace(records, "before-repair").await?;
        match head {
            Some(h) => self.record_head(committer, &h).await,
            None => {
                // An empty log: the database's record goes with it.
                let unit = Unit {
                    mutations: vec![Mutation::ReplaceMeta {
                        name: META_HEAD.into(),
                        expected: None,
                        value: Head {
                            n: 0,
                            mac: crate::tamper::chain::GENESIS.into(),
                        }
                        .encode(),
                    }],
                    events: Vec::new(),
                };
                committer
                    .commit(unit)
                    .await
                    .map_err(|e| TombstoneError::Broken(e.to_string()))?;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: Uuid, status: &str) -> Sealed<TombstoneRecord> {
        Sealed {
            n: 1,
            entry: TombstoneRecord {
                customer_id: id,
                status: status.into(),
                erased_at: "2026-11-22T17:36:15.000000Z".into(),
                origin: origin::ERASURE.into(),
            },
            prev: String::new(),
            mac: String::new(),
        }
    }

    #[test]
    fn the_latest_state_per_customer_never_downgrades_erased() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let c = TombstoneCheck {
            entries: vec![
                record(a, "partially_erased"),
                record(b, "erased"),
                record(a, "erased"),
                record(b, "partially_erased"),
            ],
            ..TombstoneCheck::default()
        };
        let latest = c.latest();
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[&a].status, "erased");
        assert_eq!(latest[&b].status, "erased", "erased is never downgraded");
        assert!(c.ok() && c.summary().is_none());
    }

    #[test]
    fn legacy_lines_are_recognised_and_adopted() {
        let id = Uuid::now_v7();
        let line = format!(
            "{{\"customer_id\":\"{id}\",\"status\":\"erased\",\"erased_at\":\"2026-11-22T17:36:15.000000Z\"}}"
        );
        let t = LegacyTombstone::parse(&line).unwrap().adopt();
        assert_eq!((t.customer_id, t.origin.as_str()), (id, "unauthenticated"));
        assert!(LegacyTombstone::parse("{\"customer_id\":1}").is_none());
        let check = TombstoneCheck {
            unauthenticated: 2,
            ..TombstoneCheck::default()
        };
        assert!(!check.ok());
        assert!(check.summary().unwrap().contains("pii-vault migrate"));
    }

    #[test]
    fn path_is_beside_the_sqlite_database() {
        use crate::config::Settings;
        use std::path::PathBuf;
        let s = Settings {
            database_url: "sqlite:///var/lib/vault/vault.db".into(),
            ..Settings::default()
        };
        assert_eq!(
            tombstone_path(&s),
            Some(PathBuf::from("/var/lib/vault/vault.tombstones"))
        );
        assert_eq!(
            crate::tamper::witness_path(&s),
            Some(PathBuf::from("/var/lib/vault/vault.witness"))
        );
        let s = Settings {
            database_url: "sqlite::memory:".into(),
            ..Settings::default()
        };
        assert_eq!(tombstone_path(&s), None);
    }
}
