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
//! Copies are also dropped, for memory's sake: when this process commits a
//! change to their customer (an erasure among them) or reads the customer
//! again and finds it erased or gone, and in any case a minute after they
//! were read (a customer erased by another process is not kept longer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{CustomerRecord, Mutation, Unit};

/// How many customers' records are kept: about 1 KB each with five values.
pub const CAPACITY: usize = 16_384;

/// How long a copy is kept after it was read.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Copies older than [`MAX_AGE`] are looked for this often.
const EXPIRY_EVERY: Duration = Duration::from_secs(10);

type Entries = HashMap<Uuid, (Arc<CustomerRecord>, i64, Instant)>;

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
}

#[derive(Default)]
pub struct RecordCache {
    entries: Mutex<Entries>,
}

impl RecordCache {
    /// A copy of `id`'s record and the stamp it was read at.
    pub fn get(&self, id: Uuid) -> Option<(CustomerRecord, RecordStamp)> {
        let (record, stamp, read) = self.lock().get(&id).cloned()?;
        if read.elapsed() >= MAX_AGE {
            return None;
        }
        let stamp = RecordStamp {
            customer_id: id,
            stamp,
        };
        Some((CustomerRecord::clone(&record), stamp))
    }

    /// What a read of `id` from the database found: its record and stamp
    /// (`None`: no such customer). Kept only for a customer whose erasure
    /// has not begun; otherwise an earlier copy is dropped. When full, some
    /// other copy makes room.
    pub fn refresh(&self, id: Uuid, read: Option<(&CustomerRecord, i64)>) {
        // Copied before the lock is taken: other reads wait on it.
        let keep = read
            .filter(|(record, _)| {
                record.customer.erased_at.is_none() && record.customer.wrapped_dek.is_some()
            })
            .map(|(record, stamp)| (Arc::new(record.clone()), stamp));
        let mut entries = self.lock();
        let Some((record, stamp)) = keep else {
            entries.remove(&id);
            return;
        };
        if entries.len() >= CAPACITY
            && !entries.contains_key(&id)
            && let Some(other) = entries.keys().next().copied()
        {
            entries.remove(&other);
        }
        entries.insert(id, (record, stamp, Instant::now()));
    }

    /// Drops the copies of the customers `units` (just committed) changed.
    /// A batch of reads changes none and does not wait for the lock.
    pub fn committed(&self, units: &[Unit]) {
        let mut changed = units
            .iter()
            .flat_map(|u| &u.mutations)
            .filter_map(|m| match m.record_change() {
                RecordChange::Customer(id) => Some(id),
                RecordChange::None => None,
            })
            .peekable();
        if changed.peek().is_none() {
            return;
        }
        let mut entries = self.lock();
        for id in changed {
            entries.remove(&id);
        }
    }

    /// Drops the copies read [`MAX_AGE`] ago or earlier.
    pub fn expire(&self) {
        if let Some(cutoff) = Instant::now().checked_sub(MAX_AGE) {
            self.expire_read_before(cutoff);
        }
    }

    fn expire_read_before(&self, cutoff: Instant) {
        self.lock().retain(|_, (_, _, read)| *read >= cutoff);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Each change to the map is one call: a panic cannot leave it half
        // changed.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops expired copies every few seconds, while `copies` is there and a
/// tokio runtime runs.
pub fn expire_in_background(copies: Weak<RecordCache>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(EXPIRY_EVERY);
        loop {
            every.tick().await;
            let Some(copies) = copies.upgrade() else {
                return;
            };
            copies.expire();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CustomerRow;

    fn record(id: Uuid, erased: bool) -> CustomerRecord {
        CustomerRecord {
            customer: CustomerRow {
                id,
                external_id: None,
                created_at: 1,
                kek_version: Some(1),
                wrapped_dek: (!erased).then(|| vec![1; 40]),
                restricted: false,
                opted_out_sale: false,
                limit_sensitive: false,
                erased_at: erased.then_some(2),
                version: 1,
            },
            fields: Vec::new(),
            consents: Vec::new(),
            objections: Vec::new(),
        }
    }

    fn unit(m: Mutation) -> Unit {
        Unit {
            mutations: vec![m],
            events: Vec::new(),
        }
    }

    #[test]
    fn a_copy_is_kept_with_its_stamp_and_an_erased_or_missing_customer_drops_it() {
        let copies = RecordCache::default();
        let id = Uuid::now_v7();
        copies.refresh(id, Some((&record(id, false), 7)));
        let (r, stamp) = copies.get(id).unwrap();
        assert_eq!((r.customer.id, stamp.stamp), (id, 7));
        copies.refresh(id, Some((&record(id, true), 8)));
        assert!(copies.get(id).is_none(), "an erased customer is not kept");
        copies.refresh(id, Some((&record(id, false), 9)));
        copies.refresh(id, None);
        assert!(copies.is_empty(), "a customer gone is not kept");
    }

    #[test]
    fn the_copies_stay_within_their_capacity_and_expire() {
        let copies = RecordCache::default();
        for _ in 0..CAPACITY + 10 {
            let id = Uuid::now_v7();
            copies.refresh(id, Some((&record(id, false), 0)));
        }
        assert_eq!(copies.len(), CAPACITY);
        copies.expire();
        assert_eq!(copies.len(), CAPACITY, "read just now");
        copies.expire_read_before(Instant::now() + Duration::from_millis(1));
        assert!(copies.is_empty());
    }

    #[test]
    fn a_committed_change_drops_its_customers_copy_only() {
        let copies = RecordCache::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for id in [a, b] {
            copies.refresh(id, Some((&record(id, false), 0)));
        }
        copies.committed(&[unit(Mutation::ExpectRecordStamp {
            customer_id: a,
            stamp: 0,
        })]);
        assert_eq!(copies.len(), 2, "a check changes nothing");
        copies.committed(&[unit(Mutation::DeleteField {
            customer_id: a,
            field: "email".into(),
        })]);
        assert!(copies.get(a).is_none() && copies.get(b).is_some());
        copies.refresh(a, Some((&record(a, false), 0)));
        copies.committed(&[unit(Mutation::Requests(
            crate::store::RequestMutation::SetRestricted {
                customer_id: b,
                value: true,
            },
        ))]);
        assert!(copies.get(a).is_some() && copies.get(b).is_none());
    }
}
