//! The tombstone file: one JSON line per erasure, appended and fsync'd
//! before the erasure is acknowledged, kept OUTSIDE the database.
//!
//! Why outside: a tombstone kept only in the database disappears when an
//! older copy of that database is restored — exactly the moment it is
//! needed. The file lives beside the SQLite database (or where
//! `tombstone_file` points, e.g. a volume every PostgreSQL-backed process
//! shares) and is not part of a database backup, so after a restore it
//! still lists every customer erased since the backup was taken. At start-up
//! and at `pii-vault migrate` the vault reads it and erases again every
//! listed customer that the database still holds (see `super::recover`).
//!
//! A line holds the customer id, the erasure state and its time — no
//! personal value (R31):
//! `{"customer_id":"0196…","status":"erased","erased_at":"2026-11-22T17:36:15.123456Z"}`

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Settings;

/// One line of the tombstone file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    pub customer_id: Uuid,
    /// `erased` or `partially_erased`.
    pub status: String,
    /// RFC 3339 UTC.
    pub erased_at: String,
}

/// The tombstone file; `None` for an in-memory database (nothing to restore).
#[derive(Debug, Clone)]
pub struct TombstoneFile {
    path: Option<PathBuf>,
}

/// Where the tombstone file lives: `tombstone_file` when set, else beside the
/// SQLite database (`vault.db` → `vault.tombstones`), else
/// `./data/vault.tombstones` (PostgreSQL: point `tombstone_file` at storage
/// that every vault process shares and that database backups do not cover).
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

impl TombstoneFile {
    pub fn new(path: Option<PathBuf>) -> Self {
        TombstoneFile { path }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends lines and makes them durable (fsync of the file, and of its
    /// directory when the file was created).
    pub async fn append(&self, lines: Vec<Tombstone>) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if lines.is_empty() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || append_blocking(&path, &lines))
            .await
            .map_err(std::io::Error::other)?
    }

    /// The latest line per customer. A line that does not parse (a torn
    /// write at a crash) is skipped with a warning.
    pub async fn read(&self) -> std::io::Result<BTreeMap<Uuid, Tombstone>> {
        let Some(path) = self.path.clone() else {
            return Ok(BTreeMap::new());
        };
        tokio::task::spawn_blocking(move || read_blocking(&path))
            .await
            .map_err(std::io::Error::other)?
    }
}

fn append_blocking(path: &Path, lines: &[Tombstone]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let created = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mut buf = Vec::new();
    for t in lines {
        serde_json::to_writer(&mut buf, t).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    f.write_all(&buf)?;
    f.sync_all()?;
    if created && let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

fn read_blocking(path: &Path) -> std::io::Result<BTreeMap<Uuid, Tombstone>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut out: BTreeMap<Uuid, Tombstone> = BTreeMap::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Tombstone>(&line) {
            Ok(t) => {
                // A later line wins, except that `erased` is never downgraded.
                let keep_old = out
                    .get(&t.customer_id)
                    .is_some_and(|old| old.status == "erased" && t.status != "erased");
                if !keep_old {
                    out.insert(t.customer_id, t);
                }
            }
            Err(_) => {
                tracing::warn!(file = %path.display(), line = n + 1, "skipping an unreadable tombstone line");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: Uuid, status: &str) -> Tombstone {
        Tombstone {
            customer_id: id,
            status: status.into(),
            erased_at: "2026-11-22T17:36:15.000000Z".into(),
        }
    }

    #[tokio::test]
    async fn appends_and_reads_back_latest_state_per_customer() {
        let dir = tempfile::tempdir().unwrap();
        let file = TombstoneFile::new(Some(dir.path().join("sub").join("vault.tombstones")));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        file.append(vec![t(a, "partially_erased"), t(b, "erased")])
            .await
            .unwrap();
        file.append(vec![t(a, "erased"), t(b, "partially_erased")])
            .await
            .unwrap();
        // A torn last line (crash mid-write) is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(file.path().unwrap())
            .unwrap()
            .write_all(b"{\"customer_id\":\"01")
            .unwrap();
        let read = file.read().await.unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[&a].status, "erased");
        assert_eq!(read[&b].status, "erased", "erased is never downgraded");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file.path().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn path_is_beside_the_sqlite_database() {
        let s = Settings {
            database_url: "sqlite:///var/lib/vault/vault.db".into(),
            ..Settings::default()
        };
        assert_eq!(
            tombstone_path(&s),
            Some(PathBuf::from("/var/lib/vault/vault.tombstones"))
        );
        let s = Settings {
            database_url: "sqlite::memory:".into(),
            ..Settings::default()
        };
        assert_eq!(tombstone_path(&s), None);
    }
}
