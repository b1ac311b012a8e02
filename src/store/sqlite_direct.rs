//! The SQLite store's hot paths, each in one call on a blocking thread.
//!
//! Through sqlx every statement is handed to its connection's worker
//! thread and every row handed back, each a thread wake-up; a customer's
//! record therefore had to be one statement returning one row, with its
//! values, purposes and consents built as JSON arrays by SQLite and parsed
//! again in Rust, and a commit batch cost four hand-offs (begin, head,
//! events, commit). Here the work runs on connections of their own (direct
//! calls to the same SQLite library sqlx links), all its statements in one
//! call:
//!
//! - [`DirectReads`]: a customer's whole record (plain statements inside one
//!   read transaction, one snapshot as the single statement had, typed rows,
//!   no JSON or hex) and a blind-index lookup: what every profile read and
//!   search makes;
//! - [`DirectWriter`]: a commit batch of audit events, new customers, their
//!   values and consents and version checks (what every read, search,
//!   create and update of a profile commits), linked from the chain head
//!   the sequencer remembers, with the same statements, the same savepoint
//!   per unit, the same head check and the same durability
//!   (`synchronous=FULL`) as the store's sqlx writer. Batches with other
//!   changes, and a batch whose head must be read first, take the sqlx
//!   writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::record_cache::RecordCache;
use super::sql::CommitAttempt;
use super::sql::encode::{FieldRows, PendingEvents, field_rows};
use super::{
    ChainHead, ConsentEvent, CustomerRecord, CustomerRow, FieldRow, Mutation, StoreError,
    StoreResult, Unit,
};
use crate::audit::EventDraft;

const CUSTOMER: &str = "SELECT id, external_id, created_at, kek_version, wrapped_dek, \
     restricted, opted_out_sale, limit_sensitive, erased_at, version, record_stamp \
     FROM customers WHERE id = ?1";
const VALUES: &str = "SELECT field, ciphertext, collected_by, channel, notice_version, \
     collected_at FROM field_values WHERE customer_id = ?1 ORDER BY field";
const PURPOSES: &str = "SELECT field, purpose, collected_at, expires_at \
     FROM value_purposes WHERE customer_id = ?1 ORDER BY field, purpose";
const CONSENTS: &str = "SELECT id, purpose, action, notice_version, notice_text_sha256, \
     language, jurisdiction, channel, captured_by, at, explicit \
     FROM consent_events WHERE customer_id = ?1 ORDER BY at, id";
const OBJECTIONS: &str = "SELECT purpose FROM objections WHERE customer_id = ?1 ORDER BY purpose";

/// Connections to one SQLite file, each used by one call at a time on a
/// blocking thread, at most `slots` calls (and connections) at once.
struct Connections {
    path: PathBuf,
    /// How a connection is opened (read-only or writing settings).
    open: fn(&Path) -> StoreResult<Connection>,
    /// Open connections not in use.
    idle: Mutex<Vec<Connection>>,
    slots: Arc<Semaphore>,
}

impl Connections {
    /// Opens the first of up to `count` connections to `path` (which must
    /// exist: the writer creates it and runs the migrations).
    fn open(
        path: &Path,
        count: usize,
        open: fn(&Path) -> StoreResult<Connection>,
    ) -> StoreResult<Arc<Self>> {
        let first = open(path)?;
        Ok(Arc::new(Connections {
            path: path.to_path_buf(),
            open,
            idle: Mutex::new(vec![first]),
            slots: Arc::new(Semaphore::new(count.max(1))),
        }))
    }

    /// Runs `work` on an idle connection (or a new one) on a blocking thread.
    async fn run<T, E, F>(self: &Arc<Self>, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        E: Into<StoreError>,
    {
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Database("the connections are closed".into()))?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = this.lock_idle().pop();
            let mut conn = match taken {
                Some(conn) => conn,
                None => (this.open)(&this.path)?,
            };
            let result = work(&mut conn);
            // A connection left inside a transaction (a failed commit or
            // rollback: disk full, I/O error) is closed rather than reused.
            if conn.is_autocommit() {
                this.lock_idle().push(conn);
            }
            result.map_err(Into::into)
        })
        .await
        .map_err(|_| StoreError::Database("a database call was cancelled".into()))?
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while the list was held cannot leave it half changed.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The hot reads, on cores + 1 `query_only` connections, and the copies of
/// the records they read.
pub(super) struct DirectReads(Arc<Connections>, Arc<RecordCache>);

impl DirectReads {
    pub(super) fn open(path: &Path, connections: usize) -> StoreResult<Self> {
        Ok(DirectReads(
            Connections::open(path, connections, connect)?,
            Arc::default(),
        ))
    }

    /// A customer's whole record, or `None` if no such customer exists. A
    /// copy of it is kept with the stamp it was read at.
    pub(super) async fn customer_record(&self, id: Uuid) -> StoreResult<Option<CustomerRecord>> {
        let read = self.0.run(move |conn| record(conn, id)).await?;
        self.1
            .refresh(id, read.as_ref().map(|(record, stamp)| (record, *stamp)));
        Ok(read.map(|(record, _)| record))
    }

    pub(super) fn copies(&self) -> &RecordCache {
        &self.1
    }

    pub(super) fn copies_handle(&self) -> Weak<RecordCache> {
        Arc::downgrade(&self.1)
    }

    /// Up to 100 customers whose blind-index entry for `field` is `digest`.
    pub(super) async fn find_by_blind_index(
        &self,
        field: &str,
        digest: &[u8],
    ) -> StoreResult<Vec<Uuid>> {
        let (field, digest) = (field.to_owned(), digest.to_vec());
        self.0
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(super::sql::customers::FIND_BY_BLIND_INDEX)?;
                let ids = stmt.query_map(params![field, digest], |r| r.get(0))?;
                ids.collect()
            })
            .await
    }
}

/// One change of a batch the [`DirectWriter`] commits.
enum Change {
    Customer {
        id: Uuid,
        external_id: Option<String>,
        kek_version: i64,
        wrapped_dek: Vec<u8>,
        at: i64,
    },
    /// Some values of one customer (a run of `PutField`s), replacing the
    /// `replaced` ones first.
    Values {
        customer_id: Uuid,
        replaced: Vec<String>,
        rows: FieldRows,
    },
    Consent(ConsentEvent),
    ExpectVersion {
        customer_id: Uuid,
        versions: String,
    },
    ExpectStamp {
        customer_id: Uuid,
        stamp: i64,
    },
}

/// A unit as the [`DirectWriter`] commits it: its changes, all refused
/// together, and the audit events linked when they are stored.
pub(super) struct DirectUnit {
    changes: Vec<Change>,
    events: Vec<EventDraft>,
}

impl DirectUnit {
    /// `unit` as direct changes, or `None` when it makes a change the direct
    /// writer leaves to the sqlx writer. The direct writer takes what every
    /// read, search, create and update of a profile commits: audit events,
    /// new customers, their values and consents, version checks and record
    /// stamp checks.
    pub(super) fn of(unit: &Unit) -> StoreResult<Option<DirectUnit>> {
        let fresh = Mutation::created_customers(&unit.mutations);
        let mut changes = Vec::new();
        let mut rest = unit.mutations.as_slice();
        while let Some(first) = rest.first() {
            let puts = Mutation::put_field_run(rest);
            let taken = puts.len().max(1);
            changes.push(match first {
                Mutation::PutField { customer_id, .. } => Change::Values {
                    customer_id: *customer_id,
                    // A customer created in this unit has no value to replace.
                    replaced: if fresh.contains(customer_id) {
                        Vec::new()
                    } else {
                        puts.iter()
                            .filter_map(|m| match m {
                                Mutation::PutField { field, .. } => Some(field.clone()),
                                _ => None,
                            })
                            .collect()
                    },
                    rows: field_rows(&puts)?,
                },
                Mutation::InsertCustomer {
                    id,
                    external_id,
                    kek_version,
                    wrapped_dek,
                    at,
                } => Change::Customer {
                    id: *id,
                    external_id: external_id.clone(),
                    kek_version: *kek_version,
                    wrapped_dek: wrapped_dek.clone(),
                    at: *at,
                },
                Mutation::AppendConsent(c) => Change::Consent(c.clone()),
                Mutation::ExpectCustomerVersion {
                    customer_id,
                    versions,
                } => Change::ExpectVersion {
                    customer_id: *customer_id,
                    versions: versions.clone(),
                },
                Mutation::ExpectRecordStamp { customer_id, stamp } => Change::ExpectStamp {
                    customer_id: *customer_id,
                    stamp: *stamp,
                },
                _ => return Ok(None),
            });
            rest = &rest[taken..];
        }
        Ok(Some(DirectUnit {
            changes,
            events: unit.events.clone(),
        }))
    }
}

/// The one connection that commits, in one call, the batches whose every
/// unit is a [`DirectUnit`], linked from the chain head the sequencer
/// remembers: the same statements, the same savepoint per unit, the same
/// head check and the same durability (`synchronous=FULL`) as the store's
/// sqlx writer.
pub(super) struct DirectWriter(Arc<Connections>);

impl DirectWriter {
    pub(super) fn open(path: &Path) -> StoreResult<Self> {
        Ok(DirectWriter(Connections::open(path, 1, connect_writer)?))
    }

    /// In one write transaction: applies each unit's changes (a unit
    /// refused with Conflict or NotFound is undone alone and its outcome
    /// says so), links the events of the stored units from `from`
    /// (stamped no earlier than `at`), moves the chain head if it is still
    /// `from`, inserts the events and commits. `Ok(None)`: the head had
    /// moved; nothing was stored.
    pub(super) async fn commit(
        &self,
        units: Vec<DirectUnit>,
        from: ChainHead,
        at: i64,
    ) -> StoreResult<CommitAttempt> {
        self.0
            .run(move |conn| commit_in(conn, &units, &from, at))
            .await
    }
}

fn commit_in(
    conn: &mut Connection,
    units: &[DirectUnit],
    from: &ChainHead,
    at: i64,
) -> StoreResult<CommitAttempt> {
    // BEGIN IMMEDIATE: serialized with every other writer, as the sqlx
    // writer's transactions are. Dropped without commit, it rolls back.
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut head = from.linking_at(at);
    let mut pending = PendingEvents::default();
    let mut outcomes = Vec::with_capacity(units.len());
    for unit in units {
        // A unit that only checks (a read from a copy of its record) changes
        // nothing: refused, it has nothing to undo and needs no savepoint.
        let checks_only = unit
            .changes
            .iter()
            .all(|c| matches!(c, Change::ExpectStamp { .. }));
        let refused = if unit.changes.is_empty() {
            None
        } else if checks_only {
            refusal(apply(&tx, &unit.changes))?
        } else {
            let mut unit_tx = tx.savepoint()?;
            let refused = refusal(apply(&unit_tx, &unit.changes))?;
            if refused.is_some() {
                unit_tx.rollback()?;
            }
            unit_tx.commit()?;
            refused
        };
        outcomes.push(match refused {
            Some(e) => Err(e),
            None => Ok(pending.link(&unit.events, &mut head)?),
        });
    }
    let Some(events) = pending.take() else {
        tx.commit()?;
        return Ok(Some((outcomes, from.clone())));
    };
    let moved = tx
        .prepare_cached(super::sql::audit::MOVE_HEAD)?
        .execute(params![head.seq, head.hash, head.at, from.seq, from.hash])?;
    if moved == 0 {
        return Ok(None);
    }
    tx.prepare_cached(super::sql::SQLITE_SQL.events)?
        .execute([events])?;
    tx.commit()?;
    Ok(Some((outcomes, head)))
}

/// `Some` when a unit's changes were refused (NotFound or Conflict: the unit
/// alone is undone); a database error stops the batch.
fn refusal(applied: StoreResult<()>) -> StoreResult<Option<StoreError>> {
    match applied {
        Ok(()) => Ok(None),
        Err(e @ (StoreError::Conflict(_) | StoreError::NotFound)) => Ok(Some(e)),
        Err(e) => Err(e),
    }
}

/// One unit's changes, in order; NotFound or Conflict as the sqlx writer
/// refuses them.
fn apply(conn: &Connection, changes: &[Change]) -> StoreResult<()> {
    use super::sql::customers::{
        DELETE_VALUE, EXPECT_VERSION, INSERT_CONSENT, INSERT_CUSTOMER, RECORD_STAMP_IS,
    };
    let sql = &super::sql::SQLITE_SQL;
    for change in changes {
        match change {
            Change::Customer {
                id,
                external_id,
                kek_version,
                wrapped_dek,
                at,
            } => {
                conn.prepare_cached(INSERT_CUSTOMER)?.execute(params![
                    id,
                    external_id,
                    at,
                    kek_version,
                    wrapped_dek
                ])?;
            }
            Change::Values {
                customer_id,
                replaced,
                rows,
            } => {
                for field in replaced {
                    conn.prepare_cached(DELETE_VALUE)?
                        .execute(params![customer_id, field])?;
                }
                let stored = conn
                    .prepare_cached(sql.values)?
                    .execute(params![customer_id, rows.values])?;
                // An unknown customer, or one whose erasure has begun.
                if stored == 0 {
                    return Err(StoreError::NotFound);
                }
                for (statement, rows) in
                    [(sql.purposes, &rows.purposes), (sql.digests, &rows.digests)]
                {
                    if let Some(rows) = rows {
                        conn.prepare_cached(statement)?
                            .execute(params![customer_id, rows])?;
                    }
                }
            }
            Change::Consent(c) => {
                let stored = conn.prepare_cached(INSERT_CONSENT)?.execute(params![
                    c.id,
                    c.customer_id,
                    c.purpose,
                    c.action,
                    c.notice_version,
                    c.notice_text_sha256,
                    c.language,
                    c.jurisdiction,
                    c.channel,
                    c.captured_by,
                    c.at,
                    c.explicit
                ])?;
                if stored == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            Change::ExpectVersion {
                customer_id,
                versions,
            } => {
                let changed = conn
                    .prepare_cached(EXPECT_VERSION)?
                    .execute(params![customer_id, versions])?;
                if changed == 0 {
                    return Err(StoreError::Conflict(
                        super::mutation::VERSION_MISMATCH.into(),
                    ));
                }
            }
            Change::ExpectStamp { customer_id, stamp } => {
                let found = conn
                    .prepare_cached(RECORD_STAMP_IS)?
                    .exists(params![customer_id, stamp])?;
                if !found {
                    return Err(StoreError::Conflict(super::mutation::RECORD_CHANGED.into()));
                }
            }
        }
    }
    Ok(())
}

fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = open_file(path)?;
    // Reads only: a bug that tried to write here fails instead of writing
    // around the sequencer.
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// A connection that writes, with the settings of the store's sqlx
/// connections: an acknowledged commit survives power loss.
fn connect_writer(path: &Path) -> StoreResult<Connection> {
    let conn = open_file(path)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "secure_delete", true)?;
    Ok(conn)
}

fn open_file(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// As the sqlx SQLite driver's errors map: a unique or foreign key
/// violation is a Conflict naming the constraint.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            rusqlite::Error::SqliteFailure(code, message)
                if matches!(
                    code.extended_code,
                    ffi::SQLITE_CONSTRAINT_UNIQUE
                        | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        | ffi::SQLITE_CONSTRAINT_FOREIGNKEY
                ) =>
            {
                StoreError::Conflict(message.unwrap_or_else(|| code.to_string()))
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// A customer's record and its stamp.
fn record(conn: &mut Connection, id: Uuid) -> rusqlite::Result<Option<(CustomerRecord, i64)>> {
    // One read transaction: every statement sees the same snapshot.
    let tx = conn.transaction()?;
    let customer = tx
        .prepare_cached(CUSTOMER)?
        .query_row([id], |r| {
            let customer = CustomerRow {
                id: r.get(0)?,
                external_id: r.get(1)?,
                created_at: r.get(2)?,
                kek_version: r.get(3)?,
                wrapped_dek: r.get(4)?,
                restricted: r.get(5)?,
                opted_out_sale: r.get(6)?,
                limit_sensitive: r.get(7)?,
                erased_at: r.get(8)?,
                version: r.get(9)?,
            };
            Ok((customer, r.get::<_, i64>(10)?))
        })
        .optional()?;
    let Some((customer, stamp)) = customer else {
        return Ok(None);
    };
    let mut fields = tx
        .prepare_cached(VALUES)?
        .query_map([id], |r| {
            Ok(FieldRow {
                field: r.get(0)?,
                ciphertext: r.get(1)?,
                collected_by: r.get(2)?,
                channel: r.get(3)?,
                notice_version: r.get(4)?,
                collected_at: r.get(5)?,
                purposes: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    {
        let mut stmt = tx.prepare_cached(PURPOSES)?;
        let mut rows = stmt.query([id])?;
        while let Some(r) = rows.next()? {
            let field: String = r.get(0)?;
            // Both lists are ordered by field; a purpose of a value that is
            // not there cannot exist (foreign key) and is skipped.
            if let Ok(at) = fields.binary_search_by(|f| f.field.as_str().cmp(&field)) {
                fields[at].purposes.push(super::ValuePurpose {
                    purpose: r.get(1)?,
                    collected_at: r.get(2)?,
                    expires_at: r.get(3)?,
                });
            }
        }
    }
    let consents = tx
        .prepare_cached(CONSENTS)?
        .query_map([id], |r| {
            Ok(ConsentEvent {
                id: r.get(0)?,
                customer_id: id,
                purpose: r.get(1)?,
                action: r.get(2)?,
                notice_version: r.get(3)?,
                notice_text_sha256: r.get(4)?,
                language: r.get(5)?,
                jurisdiction: r.get(6)?,
                channel: r.get(7)?,
                captured_by: r.get(8)?,
                at: r.get(9)?,
                explicit: r.get(10)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let objections = tx
        .prepare_cached(OBJECTIONS)?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    tx.commit()?;
    let record = CustomerRecord {
        customer,
        fields,
        consents,
        objections,
    };
    Ok(Some((record, stamp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_direct_writer_commits_as_durably_as_the_sqlx_writer_and_readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);")
            .unwrap();

        let writer = connect_writer(&path).unwrap();
        assert_eq!(pragma(&writer, "synchronous"), 2, "synchronous=FULL");
        assert_eq!(pragma(&writer, "foreign_keys"), 1);
        assert_eq!(pragma(&writer, "secure_delete"), 1);
        assert_eq!(pragma(&writer, "temp_store"), 2, "in memory");
        writer.execute("INSERT INTO t (x) VALUES (1)", []).unwrap();

        let reader = connect(&path).unwrap();
        assert_eq!(pragma(&reader, "query_only"), 1);
        let n: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let refused = reader.execute("INSERT INTO t (x) VALUES (2)", []);
        assert!(refused.is_err(), "a read connection wrote");
    }
}
