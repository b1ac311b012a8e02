//! `pii-vault backup --output FILE`: a consistent copy of a SQLite vault,
//! taken while it serves.

use std::path::Path;

use crate::config::Settings;

/// Copies the SQLite database to `output` (never overwriting a file) and
/// says what the copy does not hold. On PostgreSQL, explains `pg_dump`.
pub async fn backup(settings: &Settings, output: &Path) -> anyhow::Result<()> {
    let url = settings.database_url().map_err(anyhow::Error::msg)?;
    let Some(db) = url.sqlite_path() else {
        anyhow::bail!(
            "`backup` copies a SQLite vault; this vault is on {}. Back up PostgreSQL with \
             pg_dump, e.g. `pg_dump --format=custom --file=vault.dump \"$PII_VAULT_DATABASE_URL\"`, \
             and the tombstone database (tombstone_database_url) separately: docs/DEPLOYMENT.md",
            if url.is_sqlite() {
                "an in-memory SQLite database"
            } else {
                "PostgreSQL"
            }
        );
    };
    if !db.exists() {
        anyhow::bail!("no vault database at {} (nothing to back up)", db.display());
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "copying {} ({size} bytes, plus its write-ahead log) to {} …",
        db.display(),
        output.display()
    );
    let bytes = crate::store::backup_sqlite(&url, output).await?;
    println!(
        "backup written: {} ({bytes} bytes), a consistent copy of the database",
        output.display()
    );
    let tombstones = crate::tamper::tombstone_path(settings);
    let witness = crate::tamper::witness_path(settings);
    if let (Some(t), Some(w)) = (tombstones, witness) {
        println!(
            "not in it: the tombstone log {} and the audit witness {}; back them up on their \
             own schedule and never restore them together with the database (docs/DEPLOYMENT.md)",
            t.display(),
            w.display()
        );
    }
    Ok(())
}
