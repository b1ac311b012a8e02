//! The SQLite store's in-memory copy of customers' record rows, as stored:
//! ciphertext, wrapped data keys, consent events and flags, never a
//! decrypted value.
//!
//! A copy is only a hint. Every row of a customer's record carries its
//! customer's *record stamp* forward (`customers.record_stamp`, moved on by
//! triggers on every change to those rows, whoever makes it: this server,
//! a command, another process, a statement typed by hand). A profile read
//! answered from a copy commits its audit event with
//! [`RecordStamp::check`]: in the same transaction that makes the event
//! durable, the stored stamp must still be the copy's, or nothing is stored
//! and the read is made again from the database. So an answer from a copy
//! is never older than the database at the time its event was committed.
//!
//! Copies are also dropped, for memory's sake, when this process commits a
//! change to their customer (an erasure among them), and all of them
//! within a second of another connection or process committing anything
//! (see `DirectWriter::watch_others`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use super::{CustomerRecord, Mutation, Unit};

/// How many customers' records are kept: about 1 KB each with five values.
pub const CAPACITY: usize = 16_384;

/// The stamp a copy of a customer's record was read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    pub customer_id: Uuid,
    pub stamp: i64,
}

impl RecordStamp {
    /// The check a unit committed on the strength of the copy carries.
    pub fn check(self) -> Mutation {
        Mutation::ExpectRecordStamp {
            customer_id: self.customer_id,
            stamp: self.stamp,
        }
    }
}

/// What a committed mutation means for the copies.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordChange {
    /// No record row changed.
    None,
    /// Rows of this customer's record changed.
    Customer(Uuid),
    /// Records may have changed, whose is not told.
    Unknown,
}

#[derive(Default)]
pub struct RecordCache {
    entries: Mutex<HashMap<Uuid, (Arc<CustomerRecord>, i64)>>,
}

impl RecordCache {
    /// A copy of `id`'s record and the stamp it was read at.
    pub fn get(&self, id: Uuid) -> Option<(CustomerRecord, RecordStamp)> {
        let (record, stamp) = self.lock().get(&id).cloned()?;
        let stamp = RecordStamp {
            customer_id: id,
            stamp,
        };
        Some((CustomerRecord::clone(&record), stamp))
    }

    /// Keeps a copy of a record read at `stamp`. Only a customer whose
    /// erasure has not begun is kept. When full, some other copy makes
    /// room.
    pub fn put(&self, record: &CustomerRecord, stamp: i64) {
        if record.customer.erased_at.is_some() || record.customer.wrapped_dek.is_none() {
            return;
        }
        let id = record.customer.id;
        let mut entries = self.lock();
        if entries.len() >= CAPACITY
            && !entries.contains_key(&id)
            && let Some(other) = entries.keys().next().copied()
        {
            entries.remove(&other);
        }
        entries.insert(id, (Arc::new(record.clone()), stamp));
    }

    /// Drops the copies of the customers `units` (just committed) changed;
    /// every copy when a change does not say whose record it changed.
    pub fn committed(&self, units: &[Unit]) {
        let mut entries = self.lock();
        for m in units.iter().flat_map(|u| &u.mutations) {
            match m.record_change() {
                RecordChange::None => {}
                RecordChange::Customer(id) => {
                    entries.remove(&id);
                }
                RecordChange::Unknown => {
                    entries.clear();
                    return;
                }
            }
        }
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, (Arc<CustomerRecord>, i64)>> {
        // Each change to the map is one call: a panic cannot leave it half
        // changed.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
