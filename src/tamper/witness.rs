//! The records of the audit witness: every signed checkpoint of the audit
//! chain, the public keys that signed them, and each rollback an operator
//! accepted.
//!
//! ```text
//! {"n":1,"entry":{"kind":"key","kid":"3f9c…","public_key":"…base64…","at":"…","origin":"held"},"prev":"000…","mac":"…"}
//! {"n":2,"entry":{"kind":"checkpoint","seq":1000,"hash":"c2d4…","at":"…","kid":"3f9c…","signature":"…"},"prev":"…","mac":"…"}
//! ```
//!
//! MAC messages ([`super::chain`]): `"pii-vault witness v1\n{n}\n{prev}\n"`
//! followed by `key\n{kid}\n{public_key}\n{at}\n{origin}`,
//! `checkpoint\n{seq}\n{hash}\n{at}\n{kid}\n{signature}` or
//! `rollback\n{seq}\n{hash}\n{abandoned_seq}\n{abandoned_hash}\n{at}`.
//!
//! A key entry is written by a process that holds the key's private half
//! (`held`), or, once, when a vault first starts with a witness, for the
//! keys its database already lists (`adopted`). Being MAC'd under a key
//! derived from the root key, it is what lets a verifier trust a signing
//! key whose private half has since been destroyed by a rotation; a public
//! key row in the database alone is never trusted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::chain::{Record, Sealed};

/// `origin` of a key the process held when it recorded it.
pub const HELD: &str = "held";
/// `origin` of a key taken from the database when the witness started.
pub const ADOPTED: &str = "adopted";

/// One witness entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WitnessRecord {
    /// A checkpoint-signing public key (Ed25519, standard base64).
    Key {
        kid: String,
        public_key: String,
        at: String,
        origin: String,
    },
    /// A signed checkpoint, exactly as stored in the database.
    Checkpoint {
        seq: i64,
        hash: String,
        at: String,
        kid: String,
        signature: String,
    },
    /// An operator accepted that the trail in the database was rolled back
    /// (an older backup restored): from here on the trail must extend
    /// `seq`/`hash` instead of the checkpoint it abandoned.
    Rollback {
        seq: i64,
        hash: String,
        abandoned_seq: i64,
        abandoned_hash: String,
        at: String,
    },
}

impl Record for WitnessRecord {
    const CONTEXT: &'static str = "pii-vault witness v1";

    fn mac_fields(&self) -> String {
        match self {
            WitnessRecord::Key {
                kid,
                public_key,
                at,
                origin,
            } => format!("key\n{kid}\n{public_key}\n{at}\n{origin}"),
            WitnessRecord::Checkpoint {
                seq,
                hash,
                at,
                kid,
                signature,
            } => format!("checkpoint\n{seq}\n{hash}\n{at}\n{kid}\n{signature}"),
            WitnessRecord::Rollback {
                seq,
                hash,
                abandoned_seq,
                abandoned_hash,
                at,
            } => format!("rollback\n{seq}\n{hash}\n{abandoned_seq}\n{abandoned_hash}\n{at}"),
        }
    }
}

/// A point of the audit chain that the trail in the database must extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub seq: i64,
    /// Hex.
    pub hash: String,
    /// The witness entry that holds it.
    pub entry: u64,
}

/// The point the trail must extend: the highest checkpoint witnessed after
/// the last accepted rollback, else that rollback. (Two processes may
/// witness their checkpoints slightly out of order, hence the highest.)
pub fn last_point(entries: &[Sealed<WitnessRecord>]) -> Option<Point> {
    let from = entries
        .iter()
        .rposition(|e| matches!(e.entry, WitnessRecord::Rollback { .. }))
        .unwrap_or(0);
    let mut best: Option<Point> = None;
    for e in entries.get(from..).unwrap_or_default() {
        let (seq, hash) = match &e.entry {
            WitnessRecord::Checkpoint { seq, hash, .. }
            | WitnessRecord::Rollback { seq, hash, .. } => (*seq, hash),
            WitnessRecord::Key { .. } => continue,
        };
        let rollback = matches!(e.entry, WitnessRecord::Rollback { .. });
        if rollback || best.as_ref().is_none_or(|b| seq > b.seq) {
            best = Some(Point {
                seq,
                hash: hash.clone(),
                entry: e.n,
            });
        }
    }
    best
}

/// The keys the witness records, by key id.
pub fn keys(entries: &[Sealed<WitnessRecord>]) -> Vec<(String, [u8; 32])> {
    let mut out: Vec<(String, [u8; 32])> = Vec::new();
    for e in entries {
        if let WitnessRecord::Key {
            kid, public_key, ..
        } = &e.entry
            && let Ok(bytes) = STANDARD.decode(public_key.as_bytes())
            && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
            && !out.iter().any(|(k, _)| k == kid)
        {
            out.push((kid.clone(), key));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tamper::chain::seal_after;
    use ring::hmac;

    fn cp(seq: i64) -> WitnessRecord {
        WitnessRecord::Checkpoint {
            seq,
            hash: format!("{seq:064x}"),
            at: "t".into(),
            kid: "k".into(),
            signature: "s".into(),
        }
    }

    #[test]
    fn the_last_point_is_the_highest_checkpoint_after_the_last_rollback() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        let e = seal_after(&key, None, vec![cp(10), cp(30), cp(20)]);
        assert_eq!(last_point(&e).unwrap().seq, 30);
        let rollback = WitnessRecord::Rollback {
            seq: 15,
            hash: "ab".into(),
            abandoned_seq: 30,
            abandoned_hash: "cd".into(),
            at: "t".into(),
        };
        let e = seal_after(&key, None, vec![cp(10), cp(30), rollback.clone()]);
        let p = last_point(&e).unwrap();
        assert_eq!((p.seq, p.entry), (15, 3));
        let e = seal_after(&key, None, vec![cp(30), rollback, cp(16)]);
        assert_eq!(last_point(&e).unwrap().seq, 16);
        assert_eq!(last_point(&[]), None);
        let line = e[2].to_line();
        assert!(
            line.contains("\"entry\":{\"kind\":\"checkpoint\",\"seq\":16"),
            "{line}"
        );
    }
}
