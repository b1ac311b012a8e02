//! Tamper evidence outside the vault's database (DESIGN.md §8): two
//! append-only logs whose entries are HMAC-chained ([`chain`]) under keys
//! derived from the root key.
//!
//! - the **tombstone log** ([`tombstones`]): one entry per erasure, so that
//!   customers an older, restored database still holds are erased again —
//!   and a forged, altered, removed or reordered entry is detected instead
//!   of acted on;
//! - the **audit witness** ([`witness`]): every signed checkpoint of the
//!   audit chain and the keys that signed them, so that a trail cut back or
//!   rewritten in the database no longer matches what was witnessed.
//!
//! Where they live:
//! - SQLite: files beside the database (`vault.db` → `vault.tombstones`,
//!   `vault.witness`), or `tombstone_file` / `audit_witness_file`;
//! - PostgreSQL: a second database, `tombstone_database_url`, that every
//!   vault process shares and that a restore of the vault's database does
//!   not roll back ([`pg`]). Without it (development only) the files of
//!   this host are used and `serve --production` refuses to start.
//!
//! The head of each log (its last entry's number and MAC) is also recorded
//! in the vault's database after every append, so a log cut back at its end
//! is caught too (when the log is the vault's only one: SQLite, or the
//! shared database).
//!
//! The MAC keys: HKDF-SHA256 (salt `pii-vault tamper evidence v1`, info
//! `tombstones` or `witness`) of the vault secret that the root key wraps
//! (the stored secret the blind index keys also come from). Computing them
//! needs the root key; `keys rotate-root` rewraps that secret, so the logs
//! stay valid across a root key rotation.
//!
//! This module knows nothing of erasures or of the audit chain: the
//! services (`requests::erasure`, `audit::checkpoint`) decide what to
//! append and what a log means.

pub mod chain;
pub mod file;
pub mod pg;
pub mod tombstones;
pub mod witness;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ring::hmac;

use crate::config::Settings;
use crate::crypto::IndexKeys;
use crate::store::DatabaseUrl;
use chain::{Checked, Head, Record, Sealed};
use tombstones::TombstoneRecord;
use witness::WitnessRecord;

/// Lines a tail check reads.
pub const TAIL_LINES: usize = 256;

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The log's last entry does not verify: nothing is appended to a
    /// broken chain.
    #[error("{0}")]
    Broken(String),
}

/// Where the logs are.
#[derive(Clone)]
enum Backend {
    /// An in-memory database: nothing outlives the process, nothing to keep.
    Off,
    Files {
        tombstones: PathBuf,
        witness: PathBuf,
    },
    Postgres {
        logs: pg::PgLogs,
        url: DatabaseUrl,
    },
}

/// The two logs of a vault. Cheap to clone.
#[derive(Clone)]
pub struct Tamper(Arc<Inner>);

struct Inner {
    backend: Backend,
    tombstone_key: hmac::Key,
    witness_key: hmac::Key,
    /// The logs are the vault's only ones (SQLite, or the shared database),
    /// so the vault's database records their heads.
    anchored: bool,
    /// A tombstone file an earlier version wrote, to import into the
    /// tombstone database.
    legacy_tombstones: Option<PathBuf>,
    health: Health,
    /// Key ids the witness records (`None` until read once).
    witnessed_kids: Mutex<Option<std::collections::BTreeSet<String>>>,
}

/// Where the tombstone file lives: `tombstone_file` when set, else beside
/// the SQLite database (`vault.db` → `vault.tombstones`), else
/// `./data/vault.tombstones`; `None` for an in-memory database.
pub fn tombstone_path(settings: &Settings) -> Option<PathBuf> {
    if let Some(p) = &settings.tombstone_file {
        return Some(p.clone());
    }
    let url = settings.database_url().ok()?;
    if url.is_sqlite() {
        return url.sqlite_path().map(|db| db.with_extension("tombstones"));
    }
    Some(PathBuf::from("./data/vault.tombstones"))
}

/// Where the audit witness file lives: `audit_witness_file` when set, else
/// beside the SQLite database (`vault.db` → `vault.witness`), else beside
/// the tombstone file; `None` for an in-memory database.
pub fn witness_path(settings: &Settings) -> Option<PathBuf> {
    if let Some(p) = &settings.audit_witness_file {
        return Some(p.clone());
    }
    let url = settings.database_url().ok()?;
    if url.is_sqlite() {
        return url.sqlite_path().map(|db| db.with_extension("witness"));
    }
    tombstone_path(settings).map(|t| t.with_extension("witness"))
}

impl Tamper {
    /// Opens the logs where `settings` put them (module documentation).
    /// `production`: PostgreSQL without `tombstone_database_url` is refused.
    pub async fn open(
        settings: &Settings,
        keys: &IndexKeys,
        production: bool,
    ) -> Result<Tamper, String> {
        let url = settings.database_url()?;
        let (backend, anchored, legacy) = match &settings.tombstone_database_url {
            Some(t) => {
                let t = DatabaseUrl::new(t.expose_secret().trim());
                let logs = pg::PgLogs::open(&t).await?;
                let legacy = tombstone_path(settings).filter(|p| p.exists());
                (Backend::Postgres { logs, url: t }, true, legacy)
            }
            None if !url.is_sqlite() && production => {
                return Err(
                    "serve --production on PostgreSQL needs tombstone_database_url \
                     (PII_VAULT_TOMBSTONE_DATABASE_URL): a second PostgreSQL database for the \
                     tombstone log and the audit witness, shared by every vault process and not \
                     restored with the vault's database"
                        .into(),
                );
            }
            None => match (tombstone_path(settings), witness_path(settings)) {
                (Some(tombstones), Some(witness)) => {
                    let shared = url.is_sqlite();
                    if !shared {
                        tracing::warn!(
                            "PostgreSQL without tombstone_database_url: the tombstone log and the \
                             audit witness are files of this host ({}, {}), not shared with other \
                             vault processes; set tombstone_database_url for production",
                            tombstones.display(),
                            witness.display()
                        );
                    }
                    (
                        Backend::Files {
                            tombstones,
                            witness,
                        },
                        shared,
                        None,
                    )
                }
                _ => (Backend::Off, false, None),
            },
        };
        Ok(Tamper(Arc::new(Inner {
            backend,
            tombstone_key: keys.tamper_key(b"tombstones"),
            witness_key: keys.tamper_key(b"witness"),
            anchored,
            legacy_tombstones: legacy,
            health: Health::default(),
            witnessed_kids: Mutex::new(None),
        })))
    }

    /// No logs (an in-memory database).
    pub fn off(keys: &IndexKeys) -> Tamper {
        Tamper(Arc::new(Inner {
            backend: Backend::Off,
            tombstone_key: keys.tamper_key(b"tombstones"),
            witness_key: keys.tamper_key(b"witness"),
            anchored: false,
            legacy_tombstones: None,
            health: Health::default(),
            witnessed_kids: Mutex::new(None),
        }))
    }

    pub fn tombstones(&self) -> ChainLog<TombstoneRecord> {
        ChainLog {
            tamper: self.clone(),
            name: "tombstones",
            _record: PhantomData,
        }
    }

    pub fn witness(&self) -> ChainLog<WitnessRecord> {
        ChainLog {
            tamper: self.clone(),
            name: "witness",
            _record: PhantomData,
        }
    }

    /// Whether the vault's database records the heads of these logs.
    pub fn anchored(&self) -> bool {
        self.0.anchored
    }

    /// The unauthenticated tombstone file of an earlier version, when the
    /// log now lives in the tombstone database.
    pub fn legacy_tombstone_file(&self) -> Option<&Path> {
        self.0.legacy_tombstones.as_deref()
    }

    pub fn health(&self) -> &Health {
        &self.0.health
    }

    /// Whether the witness records key `kid`, as far as this process knows
    /// (`None`: the witness was not read yet).
    pub fn witnessed_key(&self, kid: &str) -> Option<bool> {
        self.0
            .witnessed_kids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.contains(kid))
    }

    /// Notes key ids the witness records.
    pub fn note_witnessed_keys(&self, kids: impl IntoIterator<Item = String>) {
        let mut slot = self
            .0
            .witnessed_kids
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(Default::default).extend(kids);
    }
}

/// One of the two logs.
pub struct ChainLog<R> {
    tamper: Tamper,
    name: &'static str,
    _record: PhantomData<fn() -> R>,
}

impl<R> Clone for ChainLog<R> {
    fn clone(&self) -> Self {
        ChainLog {
            tamper: self.tamper.clone(),
            name: self.name,
            _record: PhantomData,
        }
    }
}

impl<R: Record> ChainLog<R> {
    fn key(&self) -> &hmac::Key {
        if self.name == "tombstones" {
            &self.tamper.0.tombstone_key
        } else {
            &self.tamper.0.witness_key
        }
    }

    /// The file of this log (file backend only).
    fn file(&self) -> PathBuf {
        match &self.tamper.0.backend {
            Backend::Files {
                tombstones,
                witness,
            } => {
                if self.name == "tombstones" {
                    tombstones.clone()
                } else {
                    witness.clone()
                }
            }
            _ => PathBuf::new(),
        }
    }

    /// False for an in-memory database.
    pub fn enabled(&self) -> bool {
        !matches!(self.tamper.0.backend, Backend::Off)
    }

    /// Where the log is, for messages (a database URL without its password).
    pub fn location(&self) -> String {
        match &self.tamper.0.backend {
            Backend::Off => "(none: in-memory database)".into(),
            Backend::Files { .. } => self.file().display().to_string(),
            Backend::Postgres { url, .. } => format!("{url} (log {})", self.name),
        }
    }

    /// Every line of the log.
    pub async fn read_lines(&self) -> std::io::Result<Vec<String>> {
        match &self.tamper.0.backend {
            Backend::Off => Ok(Vec::new()),
            Backend::Files { .. } => {
                let path = self.file();
                blocking(move || file::read_all(&path)).await
            }
            Backend::Postgres { logs, .. } => logs.read_all(self.name).await,
        }
    }

    /// The whole log, checked from entry 1.
    pub async fn check(&self) -> std::io::Result<Checked<R>> {
        let lines = self.read_lines().await?;
        Ok(self.check_lines(&lines))
    }

    /// `lines` (from [`ChainLog::read_lines`]) checked as the whole log.
    pub fn check_lines(&self, lines: &[String]) -> Checked<R> {
        chain::check(self.key(), lines, true, 1)
    }

    /// The last entries, each checked on its own and linked to each other.
    pub async fn check_tail(&self) -> std::io::Result<Checked<R>> {
        let (first, lines) = match &self.tamper.0.backend {
            Backend::Off => (1, Vec::new()),
            Backend::Files { .. } => {
                let path = self.file();
                (
                    0,
                    blocking(move || file::read_tail(&path, TAIL_LINES)).await?,
                )
            }
            Backend::Postgres { logs, .. } => logs.read_tail(self.name, TAIL_LINES).await?,
        };
        let mut checked = chain::check(self.key(), &lines, false, first);
        if first == 0 {
            // Line numbers of a file's tail are not known.
            for p in &mut checked.problems {
                p.line = None;
            }
        }
        Ok(checked)
    }

    /// Appends `entries` after the last entry, durably. Refused when the
    /// last entry does not verify. Returns the new head (`None` when there
    /// is no log or nothing to append).
    pub async fn append(&self, entries: Vec<R>) -> Result<Option<Head>, LogError> {
        if entries.is_empty() || !self.enabled() {
            return Ok(None);
        }
        let key = self.key().clone();
        let head = Arc::new(Mutex::new(None));
        let out = Arc::clone(&head);
        let make = move |last: Option<&str>| -> Result<Vec<String>, LogError> {
            let previous = match last {
                None => None,
                Some(line) => match serde_json::from_str::<Sealed<R>>(line) {
                    Ok(s) if s.authentic(&key) => Some(s.head()),
                    _ => {
                        return Err(LogError::Broken(
                            "the last entry of the log does not verify: nothing is appended to a \
                             broken log (see `pii-vault tombstones verify`)"
                                .into(),
                        ));
                    }
                },
            };
            let sealed = chain::seal_after(&key, previous.as_ref(), entries);
            *out.lock().unwrap_or_else(|p| p.into_inner()) = sealed.last().map(Sealed::head);
            Ok(sealed.iter().map(Sealed::to_line).collect())
        };
        match &self.tamper.0.backend {
            Backend::Off => return Ok(None),
            Backend::Files { .. } => {
                let path = self.file();
                tokio::task::spawn_blocking(move || file::append(&path, make))
                    .await
                    .map_err(|e| LogError::Io(std::io::Error::other(e)))??;
            }
            Backend::Postgres { logs, .. } => logs.append(self.name, make).await?,
        }
        let new_head = head.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(new_head)
    }

    /// Replaces the whole log with `entries`, sealed from entry 1 (the
    /// previous file is kept as `{file}.{suffix}`). For the one-time
    /// authentication of an earlier version's file and for
    /// `pii-vault tombstones repair`, never while serving.
    pub async fn replace(&self, entries: Vec<R>, suffix: &str) -> std::io::Result<Option<Head>> {
        let sealed = chain::seal_after(self.key(), None, entries);
        let lines: Vec<String> = sealed.iter().map(Sealed::to_line).collect();
        match &self.tamper.0.backend {
            Backend::Off => return Ok(None),
            Backend::Files { .. } => {
                let path = self.file();
                let suffix = suffix.to_owned();
                blocking(move || file::replace(&path, &lines, &suffix)).await?;
            }
            Backend::Postgres { logs, .. } => logs.replace(self.name, &lines).await?,
        }
        Ok(sealed.last().map(Sealed::head))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// What is wrong with the logs, as `/readyz`, the metrics and the logs
/// report it.
#[derive(Default)]
pub struct Health {
    tombstones: Mutex<Option<String>>,
    witness: Mutex<Option<String>>,
}

impl Health {
    /// A problem with the tombstone log (`None`: none). While there is one
    /// the vault serves no customer data (see `http::tamper`) and erases
    /// no one from the log. Gauge `pii_vault_tombstone_log_broken`.
    pub fn set_tombstones(&self, problem: Option<String>) {
        let mut slot = self.tombstones.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = &problem
            && slot.as_ref() != Some(p)
        {
            tracing::error!(
                problem = %p,
                "the tombstone log is broken: nothing in it is acted on and the vault serves no \
                 customer data until an operator resolves it (pii-vault tombstones verify)"
            );
        }
        metrics::gauge!("pii_vault_tombstone_log_broken").set(if problem.is_some() {
            1.0
        } else {
            0.0
        });
        *slot = problem;
    }

    pub fn tombstones(&self) -> Option<String> {
        self.tombstones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the audit trail in the database extends the last witnessed
    /// checkpoint (`None`: it does). Gauge `pii_vault_audit_witness_mismatch`.
    pub fn set_witness(&self, problem: Option<String>) {
        let mut slot = self.witness.lock().unwrap_or_else(|p| p.into_inner());
        match (&problem, slot.as_ref()) {
            (Some(p), old) if old != Some(p) => tracing::error!(
                problem = %p,
                "the audit trail in the database does not extend the checkpoint witnessed outside \
                 it: the vault is not ready (GET /v1/audit/verify)"
            ),
            (None, Some(_)) => {
                tracing::info!("the audit trail extends the last witnessed checkpoint again")
            }
            _ => {}
        }
        metrics::gauge!("pii_vault_audit_witness_mismatch").set(if problem.is_some() {
            1.0
        } else {
            0.0
        });
        *slot = problem;
    }

    pub fn witness(&self) -> Option<String> {
        self.witness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
