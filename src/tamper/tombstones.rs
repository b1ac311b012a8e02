//! The records of the tombstone log: one per erasure, no personal value
//! (R31): the customer id, how far it was erased, when, and where the
//! entry came from.
//!
//! ```text
//! {"n":3,"entry":{"customer_id":"0196…","status":"erased","erased_at":"2026-11-22T17:36:15.123456Z","origin":"erasure"},"prev":"…","mac":"…"}
//! ```
//!
//! The MAC message ([`super::chain`]) is
//! `"pii-vault tombstone v1\n{n}\n{prev}\n{customer_id}\n{status}\n{erased_at}\n{origin}"`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::chain::Record;

/// Where a tombstone entry came from.
pub mod origin {
    /// Written by the erasure itself.
    pub const ERASURE: &str = "erasure";
    /// Found in the database's `tombstones` table but missing from the log
    /// (the process stopped between the erasure's commit and the append),
    /// and appended at the next start.
    pub const DATABASE: &str = "database";
    /// A line of the unauthenticated tombstone file of an earlier version,
    /// authenticated as it stood when this version first started.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
}

/// One tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TombstoneRecord {
    pub customer_id: Uuid,
    /// `erased` or `partially_erased`.
    pub status: String,
    /// RFC 3339 UTC.
    pub erased_at: String,
    /// See [`origin`].
    pub origin: String,
}

impl Record for TombstoneRecord {
    const CONTEXT: &'static str = "pii-vault tombstone v1";

    fn mac_fields(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}",
            self.customer_id, self.status, self.erased_at, self.origin
        )
    }
}

/// A line of the tombstone file as versions before the authenticated log
/// wrote it: `{"customer_id":…,"status":…,"erased_at":…}`, no MAC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyTombstone {
    pub customer_id: Uuid,
    pub status: String,
    pub erased_at: String,
}

impl LegacyTombstone {
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line)
            .ok()
            .filter(|t: &LegacyTombstone| {
                matches!(t.status.as_str(), "erased" | "partially_erased")
            })
    }

    /// The record it becomes once authenticated.
    pub fn adopt(self) -> TombstoneRecord {
        TombstoneRecord {
            customer_id: self.customer_id,
            status: self.status,
            erased_at: self.erased_at,
            origin: origin::UNAUTHENTICATED.into(),
        }
    }
}
