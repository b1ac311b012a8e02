//! The hash chain: canonical event bytes, linking, and verification.
//! Pure functions, used by the store when appending and by the verifier.

use ring::digest::{SHA256, digest};
use serde::Serialize;

use super::{EventDraft, StoredEvent};

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The canonical form that an event's hash covers. Field order is fixed by
/// this struct, `reasons` is a sorted map, so the bytes are deterministic.
#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    seq: i64,
    at: i64,
    actor: &'a str,
    role: &'a str,
    action: &'a str,
    purpose: &'a Option<String>,
    customer_id: &'a Option<String>,
    fields: &'a [String],
    decision: &'a str,
    reasons: &'a std::collections::BTreeMap<String, String>,
    request_id: &'a str,
    prev_hash: &'a str,
}

/// SHA-256 over the canonical form of an event placed at `seq` after `prev`.
pub fn event_hash(seq: i64, at: i64, draft: &EventDraft, prev_hash_hex: &str) -> [u8; 32] {
    let canonical = Canonical {
        v: 1,
        seq,
        at,
        actor: &draft.actor,
        role: &draft.role,
        action: &draft.action,
        purpose: &draft.purpose,
        customer_id: &draft.customer_id,
        fields: &draft.fields,
        decision: &draft.decision,
        reasons: &draft.reasons,
        request_id: &draft.request_id,
        prev_hash: prev_hash_hex,
    };
    // Serialising this struct of strings, integers and a string map cannot
    // fail; an empty buffer would still hash deterministically.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    let d = digest(&SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Places `draft` after the event with hash `prev` at sequence `prev_seq`.
pub fn link(prev_seq: i64, prev: &[u8], at: i64, draft: &EventDraft) -> StoredEvent {
    let seq = prev_seq + 1;
    let prev_hash = hex::encode(prev);
    let hash = event_hash(seq, at, draft, &prev_hash);
    StoredEvent {
        seq,
        at,
        draft: draft.clone(),
        prev_hash,
        hash: hex::encode(hash),
    }
}

/// Why a sequence of events does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("event {seq}: sequence gap (expected {expected})")]
    Gap { seq: i64, expected: i64 },
    #[error("event {seq}: previous hash does not match the event before it")]
    Link { seq: i64 },
    #[error("event {seq}: hash does not match its contents")]
    Hash { seq: i64 },
}

impl ChainError {
    /// The sequence number of the first bad event.
    pub fn seq(&self) -> i64 {
        match self {
            ChainError::Gap { seq, .. } | ChainError::Link { seq } | ChainError::Hash { seq } => {
                *seq
            }
        }
    }
}

/// Verifies events in order. `start` is the (seq, hash hex) the first event
/// must follow: `(0, GENESIS)` for a full chain, or a trusted checkpoint.
/// Returns the last (seq, hash hex).
pub fn verify<'a, I>(start: (i64, String), events: I) -> Result<(i64, String), ChainError>
where
    I: IntoIterator<Item = &'a StoredEvent>,
{
    let (mut seq, mut hash) = start;
    for e in events {
        if e.seq != seq + 1 {
            return Err(ChainError::Gap {
                seq: e.seq,
                expected: seq + 1,
            });
        }
        if e.prev_hash != hash {
            return Err(ChainError::Link { seq: e.seq });
        }
        let computed = hex::encode(event_hash(e.seq, e.at, &e.draft, &e.prev_hash));
        if computed != e.hash {
            return Err(ChainError::Hash { seq: e.seq });
        }
        seq = e.seq;
        hash = e.hash.clone();
    }
    Ok((seq, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<StoredEvent> {
        let mut out: Vec<StoredEvent> = Vec::new();
        let mut prev = (0i64, GENESIS.to_vec());
        for i in 0..n {
            let d = EventDraft::new(
                "c1",
                "helpdesk",
                crate::audit::Action::CustomerRead,
                crate::audit::Decision::Allowed,
                "r",
            )
            .purpose(Some("support"))
            .customer(format!("cust-{i}"))
            .fields(["phone"])
            .reason("email", "not_collected_for_purpose");
            let e = link(prev.0, &prev.1, 1_000 + i as i64, &d);
            prev = (e.seq, hex::decode(&e.hash).unwrap_or_default());
            out.push(e);
        }
        out
    }

    fn genesis() -> (i64, String) {
        (0, hex::encode(GENESIS))
    }

    #[test]
    fn intact_chain_verifies() {
        let events = chain(5);
        let (seq, hash) = verify(genesis(), &events).unwrap();
        assert_eq!(seq, 5);
        assert_eq!(hash, events[4].hash);
    }

    #[test]
    fn changed_field_is_detected_at_that_event() {
        let mut events = chain(5);
        events[2].draft.purpose = Some("marketing".into());
        assert_eq!(
            verify(genesis(), &events).unwrap_err(),
            ChainError::Hash { seq: 3 }
        );
    }

    #[test]
    fn deleted_event_is_a_gap() {
        let mut events = chain(5);
        events.remove(1);
        assert_eq!(verify(genesis(), &events).unwrap_err().seq(), 3);
    }

    #[test]
    fn swapped_events_are_detected() {
        let mut events = chain(5);
        events.swap(1, 2);
        assert_eq!(verify(genesis(), &events).unwrap_err().seq(), 3);
    }

    #[test]
    fn renumbered_swap_breaks_the_link() {
        let mut events = chain(5);
        events.swap(1, 2);
        events[1].seq = 2;
        events[2].seq = 3;
        assert_eq!(
            verify(genesis(), &events).unwrap_err(),
            ChainError::Link { seq: 2 }
        );
    }

    #[test]
    fn rehashing_one_event_still_breaks_the_next_link() {
        let mut events = chain(4);
        events[1].draft.actor = "someone-else".into();
        events[1].hash = hex::encode(event_hash(
            events[1].seq,
            events[1].at,
            &events[1].draft,
            &events[1].prev_hash,
        ));
        assert_eq!(
            verify(genesis(), &events).unwrap_err(),
            ChainError::Link { seq: 3 }
        );
    }

    #[test]
    fn verification_can_start_from_a_checkpoint() {
        let events = chain(6);
        let start = (events[2].seq, events[2].hash.clone());
        assert_eq!(verify(start, &events[3..]).unwrap().0, 6);
    }
}
