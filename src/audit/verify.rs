//! Verification of the audit trail: every hash and link, the sequence
//! without gaps, every checkpoint signature, every checkpoint against the
//! event it covers, and the end of the trail against the chain head (in the
//! database) or against the last signed checkpoint (in an export).
//!
//! [`Verifier`] is pure and incremental: events are pushed in order, so a
//! trail of any length is checked in constant memory (apart from the
//! checkpoints). It is used by `GET /v1/audit/verify` over the database and
//! by `pii-vault audit verify` over an export file.
//!
//! Where the trail starts: at seq 1 (after the genesis hash), or just after
//! a signed checkpoint (a pruned trail, or an export that starts there).
//! A trail that starts anywhere else is missing its beginning.
//!
//! A point the trail must pass through ([`Verifier::require`]): the last
//! checkpoint witnessed outside the database, or the end of the export an
//! auditor verified last time (`pii-vault audit verify --since`). The trail
//! must hold an event at that seq with that hash (or start right after a
//! checkpoint there), so a trail cut back or rewritten since is caught even
//! when every hash, link and signature in it is right.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::StoredEvent;
use super::chain::{GENESIS, event_hash};
use super::checkpoint::{Checkpoint, PublicKeys};
use crate::store::{AuditFilter, Store, StoreResult};

/// The first bad event and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub seq: i64,
    pub reason: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Report {
    pub ok: bool,
    /// Events verified (up to the first bad one).
    pub events: u64,
    /// Sequence number of the first event of the trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<i64>,
    /// Sequence number and hash (hex) of the last verified event, or of the
    /// chain head when verifying the database.
    pub head_seq: i64,
    pub head: String,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// The latest checkpoint with a valid signature.
    pub checkpoint: Option<Checkpoint>,
    /// When `ok` is false: the first bad event's sequence number…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
    /// …and what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last checkpoint witnessed outside the database, and whether the
    /// trail extends it (`null` when the check was not reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<WitnessCheck>,
}

/// The trail against the last checkpoint witnessed outside the database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct WitnessCheck {
    pub seq: i64,
    /// Hex.
    pub hash: String,
    /// Whether the trail extends it; `null` when an earlier failure stopped
    /// the verification before it was reached.
    pub extended: Option<bool>,
}

impl Report {
    /// Records a problem found outside the chain (e.g. in the witness log).
    pub fn fail_outside(&mut self, reason: String) {
        if self.ok {
            self.ok = false;
            self.reason = Some(reason);
        }
    }
}

/// A point the trail must pass through, and what it is (for messages).
#[derive(Debug, Clone)]
struct Required {
    seq: i64,
    hash: String,
    what: String,
    met: Option<bool>,
}

/// How the end of the trail is checked.
#[derive(Debug, Clone)]
pub enum Tail {
    /// The database's chain head row: the last event must be it.
    Head { seq: i64, hash: String },
    /// An export: the last event must be covered by a signed checkpoint.
    Signed,
}

/// Checks events pushed in sequence order.
pub struct Verifier {
    checkpoints: BTreeMap<i64, Checkpoint>,
    verified_checkpoints: u64,
    failures: Vec<Failure>,
    stopped: bool,
    first: Option<i64>,
    last: Option<(i64, String)>,
    /// The last checkpoint seq that matched the chain (the anchor included).
    matched: i64,
    count: u64,
    required: Option<Required>,
}

fn genesis_hex() -> String {
    hex::encode(GENESIS)
}

impl Verifier {
    /// Checks every checkpoint's signature; only valid ones are trusted.
    pub fn new(keys: &PublicKeys, checkpoints: impl IntoIterator<Item = Checkpoint>) -> Self {
        let mut v = Verifier {
            checkpoints: BTreeMap::new(),
            verified_checkpoints: 0,
            failures: Vec::new(),
            stopped: false,
            first: None,
            last: None,
            matched: 0,
            count: 0,
            required: None,
        };
        for cp in checkpoints {
            if let Err(e) = cp.verify(keys) {
                v.failures.push(Failure {
                    seq: cp.seq,
                    reason: e.to_string(),
                });
                continue;
            }
            v.verified_checkpoints += 1;
            match v.checkpoints.get(&cp.seq) {
                Some(other) if other.hash != cp.hash => v.failures.push(Failure {
                    seq: cp.seq,
                    reason: format!(
                        "two signed checkpoints at seq {} name different hashes (the chain forked)",
                        cp.seq
                    ),
                }),
                Some(_) => {}
                None => {
                    v.checkpoints.insert(cp.seq, cp);
                }
            }
        }
        v
    }

    /// The trail must pass through (`seq`, `hash`); `what` names the point
    /// in messages ("the last checkpoint witnessed outside the database").
    pub fn require(&mut self, seq: i64, hash: &str, what: &str) {
        self.required = Some(Required {
            seq,
            hash: hash.to_owned(),
            what: what.to_owned(),
            met: None,
        });
    }

    /// Checks the required point against (`seq`, `hash`) of the trail.
    fn meet(&mut self, seq: i64, hash: &str) -> bool {
        let Some(r) = self.required.as_mut().filter(|r| r.seq == seq) else {
            return true;
        };
        if r.hash == hash {
            r.met = Some(true);
            return true;
        }
        r.met = Some(false);
        let reason = format!(
            "rewritten: the event at seq {seq} is not the one in {} (another hash)",
            r.what
        );
        self.fail(seq, reason)
    }

    fn fail(&mut self, seq: i64, reason: String) -> bool {
        self.failures.push(Failure { seq, reason });
        self.stopped = true;
        false
    }

    /// Checks the next event; `false` once the trail is known to be bad
    /// (further events are ignored).
    pub fn push(&mut self, e: &StoredEvent) -> bool {
        if self.stopped {
            return false;
        }
        let (prev_seq, prev_hash) = match &self.last {
            Some(last) => last.clone(),
            None => {
                self.first = Some(e.seq);
                if e.seq == 1 {
                    (0, genesis_hex())
                } else if let Some(anchor) = self.checkpoints.get(&(e.seq - 1)) {
                    let (seq, hash) = (anchor.seq, anchor.hash.clone());
                    self.matched = seq;
                    if let Some(r) = self.required.as_mut().filter(|r| r.seq < seq) {
                        r.met = Some(false);
                        let reason = format!(
                            "{} at seq {} lies before the start of this trail (seq {}): it cannot \
                             show that it extends it",
                            r.what, r.seq, e.seq
                        );
                        return self.fail(e.seq, reason);
                    }
                    if !self.meet(seq, &hash) {
                        return false;
                    }
                    (seq, hash)
                } else {
                    let before = self
                        .checkpoints
                        .range(..e.seq)
                        .next_back()
                        .map(|(s, _)| *s)
                        .unwrap_or(0);
                    return self.fail(
                        before + 1,
                        format!(
                            "missing: the trail starts at seq {} and no signed checkpoint at seq {} anchors it",
                            e.seq,
                            e.seq - 1
                        ),
                    );
                }
            }
        };
        if e.seq > prev_seq + 1 {
            let missing = if e.seq == prev_seq + 2 {
                format!("missing (the next event is seq {})", e.seq)
            } else {
                format!(
                    "missing: events {} to {} are not in the trail",
                    prev_seq + 1,
                    e.seq - 1
                )
            };
            return self.fail(prev_seq + 1, missing);
        }
        if e.seq <= prev_seq {
            return self.fail(
                e.seq,
                format!("out of order: seq {} follows seq {prev_seq}", e.seq),
            );
        }
        if e.prev_hash != prev_hash {
            return self.fail(
                e.seq,
                "its previous hash does not match the event before it".into(),
            );
        }
        let computed = hex::encode(event_hash(e.seq, e.at, &e.draft, &e.prev_hash));
        if computed != e.hash {
            return self.fail(e.seq, "its hash does not match its contents".into());
        }
        if !self.meet(e.seq, &e.hash) {
            return false;
        }
        if let Some(cp) = self.checkpoints.get(&e.seq) {
            if cp.hash != e.hash {
                let from = self.matched.max(self.first.unwrap_or(1) - 1) + 1;
                return self.fail(
                    from,
                    format!(
                        "rewritten: the events after seq {} do not lead to the hash signed in the checkpoint at seq {}",
                        from - 1,
                        e.seq
                    ),
                );
            }
            self.matched = e.seq;
        }
        self.last = Some((e.seq, e.hash.clone()));
        self.count += 1;
        true
    }

    /// Records a problem with the event at `seq` found before hashing it.
    pub fn fail_at(&mut self, seq: i64, reason: String) {
        if !self.stopped {
            self.fail(seq, reason);
        }
    }

    /// Records a problem found outside the chain (e.g. an unreadable line).
    pub fn fail_next(&mut self, reason: String) {
        if self.stopped {
            return;
        }
        let seq = self
            .last
            .as_ref()
            .map(|(s, _)| s + 1)
            .or(self.first)
            .unwrap_or(1);
        self.fail(seq, reason);
    }

    /// The report, after checking how the trail ends.
    pub fn finish(mut self, tail: Tail) -> Report {
        if !self.stopped {
            self.check_tail(&tail);
        }
        let latest = self.checkpoints.values().next_back().cloned();
        let (head_seq, head) = match (&tail, &self.last) {
            (Tail::Head { seq, hash }, _) => (*seq, hash.clone()),
            (Tail::Signed, Some((s, h))) => (*s, h.clone()),
            (Tail::Signed, None) => latest
                .as_ref()
                .map(|c| (c.seq, c.hash.clone()))
                .unwrap_or((0, genesis_hex())),
        };
        let witness = self.required.as_ref().map(|r| WitnessCheck {
            seq: r.seq,
            hash: r.hash.clone(),
            extended: r.met,
        });
        let first_bad = self.failures.iter().min_by_key(|f| f.seq).cloned();
        Report {
            ok: first_bad.is_none(),
            events: self.count,
            first_seq: self.first,
            head_seq,
            head,
            checkpoints: self.verified_checkpoints,
            checkpoint: latest,
            first_bad_seq: first_bad.as_ref().map(|f| f.seq),
            reason: first_bad.map(|f| f.reason),
            witness,
        }
    }

    fn check_tail(&mut self, tail: &Tail) {
        self.check_ends(tail);
        if self.stopped {
            return;
        }
        let last_seq = match &self.last {
            Some((s, _)) => *s,
            None => self.checkpoints.keys().next_back().copied().unwrap_or(0),
        };
        let Some(r) = self.required.clone().filter(|r| r.met.is_none()) else {
            return;
        };
        if self.last.is_none()
            && let Some(cp) = self.checkpoints.get(&r.seq).cloned()
        {
            // Nothing after the anchor: the signed checkpoint is the trail's end.
            self.meet(cp.seq, &cp.hash);
            return;
        }
        if let Some(req) = self.required.as_mut() {
            req.met = Some(false);
        }
        let reason = if last_seq < r.seq {
            format!(
                "missing: {} is at seq {} but the trail ends at seq {last_seq} (it was cut back)",
                r.what, r.seq
            )
        } else {
            format!(
                "missing: the trail does not hold seq {} of {}",
                r.seq, r.what
            )
        };
        self.fail(last_seq.min(r.seq - 1) + 1, reason);
    }

    fn check_ends(&mut self, tail: &Tail) {
        let last_seq = match &self.last {
            Some((s, _)) => *s,
            // No events: the trail is empty, or starts after its anchor.
            None => self.checkpoints.keys().next_back().copied().unwrap_or(0),
        };
        if let Some((&cp, _)) = self.checkpoints.range(last_seq + 1..).next()
            && self.last.is_some()
        {
            self.fail(
                last_seq + 1,
                format!(
                    "missing: the signed checkpoint at seq {cp} is past the last event (seq {last_seq})"
                ),
            );
            return;
        }
        match tail {
            Tail::Head { seq, hash } => match &self.last {
                Some((s, _)) if s < seq => {
                    self.fail(
                        s + 1,
                        format!(
                            "missing: the chain head is seq {seq} but the last event is seq {s}"
                        ),
                    );
                }
                Some((s, h)) if s == seq && h != hash => {
                    self.fail(*s, "it does not match the chain head".into());
                }
                Some(_) => {}
                None if *seq > last_seq => {
                    self.fail(
                        last_seq + 1,
                        format!("missing: the chain head is seq {seq} but there are no events"),
                    );
                }
                None => {}
            },
            Tail::Signed => {
                if let Some((s, _)) = &self.last {
                    let covered = self.checkpoints.keys().next_back().copied().unwrap_or(0);
                    if covered < *s {
                        self.fail(
                            covered.max(self.first.unwrap_or(1) - 1) + 1,
                            format!(
                                "not covered by a signed checkpoint: the last checkpoint is at seq {covered} but the events go on to seq {s}"
                            ),
                        );
                    }
                } else if self.checkpoints.is_empty() {
                    self.fail(
                        1,
                        "the export holds no event and no signed checkpoint".into(),
                    );
                }
            }
        }
    }
}

/// Events read per query while verifying the database.
const PAGE: i64 = 2_000;

/// The text that names the witnessed point in messages.
pub const WITNESSED: &str = "the last checkpoint witnessed outside the database";

/// Verifies the whole stored trail against `keys`: every event from the
/// start (genesis or the oldest kept checkpoint) to the chain head row, and
/// through `witnessed` (seq, hex hash), the last checkpoint witnessed
/// outside the database (read before calling this).
pub async fn verify_store(
    store: &dyn Store,
    keys: &PublicKeys,
    witnessed: Option<(i64, String)>,
) -> StoreResult<Report> {
    // The head first: every event up to it is committed (events and the head
    // row change in one transaction), later appends are not looked at.
    let crate::store::ChainHead {
        seq: head_seq,
        hash: head_hash,
        ..
    } = store.audit_head().await?;
    let checkpoints = store.audit_checkpoints(0, head_seq).await?;
    let mut v = Verifier::new(keys, checkpoints.iter().map(Checkpoint::from_row));
    if let Some((seq, hash)) = witnessed {
        v.require(seq, &hash, WITNESSED);
    }
    let mut after = 0;
    'pages: loop {
        let page = store
            .audit_events(&AuditFilter {
                after_seq: after,
                limit: PAGE,
                ..AuditFilter::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if e.seq > head_seq {
                break 'pages;
            }
            if !v.push(e) {
                break 'pages;
            }
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    Ok(v.finish(Tail::Head {
        seq: head_seq,
        hash: hex::encode(head_hash),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventDraft;
    use crate::audit::chain::link;
    use crate::audit::checkpoint::sign;
    use crate::crypto::SigningKey;

    struct Fixture {
        key: SigningKey,
        keys: PublicKeys,
        events: Vec<StoredEvent>,
    }

    fn fixture(n: usize) -> Fixture {
        let (key, _) = SigningKey::generate().unwrap();
        let mut keys = PublicKeys::default();
        keys.insert(key.kid(), key.public_key());
        let mut events: Vec<StoredEvent> = Vec::new();
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
            .fields(["phone"]);
            let e = link(prev.0, &prev.1, 1_000 + i as i64, &d);
            prev = (e.seq, hex::decode(&e.hash).unwrap());
            events.push(e);
        }
        Fixture { key, keys, events }
    }

    impl Fixture {
        fn cp(&self, seq: i64) -> Checkpoint {
            let e = &self.events[(seq - 1) as usize];
            Checkpoint::from_row(&sign(&self.key, seq, &hex::decode(&e.hash).unwrap(), 5_000))
        }
        fn run(&self, events: &[StoredEvent], cps: Vec<Checkpoint>, tail: Tail) -> Report {
            let mut v = Verifier::new(&self.keys, cps);
            for e in events {
                v.push(e);
            }
            v.finish(tail)
        }
        fn head(&self) -> Tail {
            let last = self.events.last().unwrap();
            Tail::Head {
                seq: last.seq,
                hash: last.hash.clone(),
            }
        }
    }

    fn bad(r: &Report) -> (i64, String) {
        assert!(!r.ok, "{r:?}");
        (r.first_bad_seq.unwrap(), r.reason.clone().unwrap())
    }

    #[test]
    fn an_intact_trail_verifies_against_head_and_checkpoints() {
        let f = fixture(10);
        let r = f.run(&f.events, vec![f.cp(4), f.cp(10)], f.head());
        assert!(r.ok, "{r:?}");
        assert_eq!((r.events, r.checkpoints, r.head_seq), (10, 2, 10));
        assert_eq!(r.checkpoint.unwrap().seq, 10);
        let r = f.run(&f.events, vec![f.cp(4), f.cp(10)], Tail::Signed);
        assert!(r.ok, "{r:?}");
    }

    #[test]
    fn changed_deleted_swapped_and_truncated_events_name_the_first_bad_seq() {
        let f = fixture(10);
        let cps = || vec![f.cp(4), f.cp(10)];

        let mut changed = f.events.clone();
        changed[5].draft.purpose = Some("marketing".into());
        let (seq, why) = bad(&f.run(&changed, cps(), f.head()));
        assert_eq!(seq, 6);
        assert!(why.contains("hash"), "{why}");

        let mut deleted = f.events.clone();
        deleted.remove(6);
        let (seq, why) = bad(&f.run(&deleted, cps(), f.head()));
        assert_eq!(seq, 7);
        assert!(why.contains("missing"), "{why}");

        // Two rows swap their contents (the seq column stays in place).
        let mut swapped = f.events.clone();
        let (a, b) = (swapped[2].clone(), swapped[7].clone());
        swapped[2] = StoredEvent { seq: 3, ..b };
        swapped[7] = StoredEvent { seq: 8, ..a };
        assert_eq!(bad(&f.run(&swapped, cps(), f.head())).0, 3);

        // Tail removed: the head row (database) or the checkpoint (export).
        let truncated = &f.events[..7];
        let (seq, why) = bad(&f.run(truncated, cps(), f.head()));
        assert_eq!(seq, 8);
        assert!(why.contains("missing"), "{why}");
        let (seq, _) = bad(&f.run(truncated, vec![f.cp(4)], f.head()));
        assert_eq!(seq, 8, "the head row alone shows it");
        let (seq, _) = bad(&f.run(truncated, cps(), Tail::Signed));
        assert_eq!(seq, 8, "the signed checkpoint alone shows it");
    }

    #[test]
    fn a_rehashed_rewrite_is_caught_by_the_checkpoint() {
        let f = fixture(10);
        // Rewrite events 6.. and recompute every hash and link.
        let mut forged: Vec<StoredEvent> = f.events[..5].to_vec();
        let mut prev = (5i64, hex::decode(&f.events[4].hash).unwrap());
        for e in &f.events[5..] {
            let mut d = e.draft.clone();
            d.actor = "someone-else".into();
            let n = link(prev.0, &prev.1, e.at, &d);
            prev = (n.seq, hex::decode(&n.hash).unwrap());
            forged.push(n);
        }
        let last = forged.last().unwrap().clone();
        let head = Tail::Head {
            seq: last.seq,
            hash: last.hash,
        };
        let (seq, why) = bad(&f.run(&forged, vec![f.cp(4), f.cp(10)], head));
        assert_eq!(seq, 5, "somewhere after the last good checkpoint");
        assert!(why.contains("rewritten"), "{why}");
    }

    #[test]
    fn bad_signatures_and_unknown_keys_fail() {
        let f = fixture(6);
        let mut forged = f.cp(6);
        forged.hash = "ab".repeat(32);
        let (seq, why) = bad(&f.run(&f.events, vec![f.cp(3), forged.clone()], f.head()));
        assert_eq!(seq, 6);
        assert!(why.contains("signature"), "{why}");
        // In an export the events after seq 3 are then not covered at all.
        let (seq, why) = bad(&f.run(&f.events, vec![f.cp(3), forged], Tail::Signed));
        assert_eq!(seq, 4);
        assert!(why.contains("not covered"), "{why}");

        let (other, _) = SigningKey::generate().unwrap();
        let e = &f.events[5];
        let foreign = Checkpoint::from_row(&sign(&other, 6, &hex::decode(&e.hash).unwrap(), 1));
        let (seq, why) = bad(&f.run(&f.events, vec![foreign], f.head()));
        assert_eq!(seq, 6);
        assert!(why.contains("unknown key"), "{why}");
    }

    #[test]
    fn a_trail_may_start_after_a_signed_checkpoint_only() {
        let f = fixture(10);
        let r = f.run(&f.events[4..], vec![f.cp(4), f.cp(10)], f.head());
        assert!(r.ok, "{r:?}");
        assert_eq!(r.first_seq, Some(5));
        // The first events deleted, no anchor: the beginning is missing.
        let (seq, why) = bad(&f.run(&f.events[4..], vec![f.cp(10)], f.head()));
        assert_eq!(seq, 1);
        assert!(why.contains("anchors"), "{why}");
        let (seq, _) = bad(&f.run(&f.events[5..], vec![f.cp(4), f.cp(10)], f.head()));
        assert_eq!(seq, 5);
    }

    #[test]
    fn an_export_must_end_at_a_signed_checkpoint() {
        let f = fixture(10);
        let (seq, why) = bad(&f.run(&f.events, vec![f.cp(4)], Tail::Signed));
        assert_eq!(seq, 5);
        assert!(why.contains("not covered"), "{why}");
        let (seq, _) = bad(&f.run(&[], vec![], Tail::Signed));
        assert_eq!(seq, 1);
        // Nothing new since the anchor: only the checkpoint.
        assert!(f.run(&[], vec![f.cp(10)], Tail::Signed).ok);
    }

    #[test]
    fn reordered_events_fail_at_the_first_out_of_place() {
        let f = fixture(6);
        let mut moved = f.events.clone();
        moved.swap(2, 4);
        let (seq, why) = bad(&f.run(&moved, vec![f.cp(6)], Tail::Signed));
        assert_eq!(seq, 3);
        assert!(why.contains("missing"), "{why}");
        let mut dup = f.events.clone();
        dup.insert(3, f.events[2].clone());
        let (seq, why) = bad(&f.run(&dup, vec![f.cp(6)], Tail::Signed));
        assert_eq!(seq, 3);
        assert!(why.contains("out of order"), "{why}");
    }

    #[test]
    fn a_trail_cut_back_behind_the_witness_fails_even_when_it_verifies_on_its_own() {
        let f = fixture(10);
        let witnessed = f.events[7].hash.clone();
        let run = |events: &[StoredEvent], cps: Vec<Checkpoint>, tail: Tail| {
            let mut v = Verifier::new(&f.keys, cps);
            v.require(8, &witnessed, WITNESSED);
            for e in events {
                v.push(e);
            }
            v.finish(tail)
        };
        let r = run(&f.events, vec![f.cp(4), f.cp(10)], f.head());
        assert!(r.ok, "{r:?}");
        assert_eq!(r.witness.unwrap().extended, Some(true));

        // Cut back to seq 5, head row and checkpoints adjusted to match.
        let cut = &f.events[..5];
        let head = Tail::Head {
            seq: 5,
            hash: cut[4].hash.clone(),
        };
        let r = run(cut, vec![f.cp(4)], head);
        let (seq, why) = bad(&r);
        assert_eq!(seq, 6);
        assert!(
            why.contains("cut back") && why.contains("witnessed"),
            "{why}"
        );
        assert_eq!(r.witness.unwrap().extended, Some(false));

        // Rewritten from seq 6 with every hash recomputed, and re-signed.
        let mut forged: Vec<StoredEvent> = f.events[..5].to_vec();
        let mut prev = (5i64, hex::decode(&f.events[4].hash).unwrap());
        for e in &f.events[5..] {
            let mut d = e.draft.clone();
            d.actor = "someone-else".into();
            let n = link(prev.0, &prev.1, e.at, &d);
            prev = (n.seq, hex::decode(&n.hash).unwrap());
            forged.push(n);
        }
        let resigned = Checkpoint::from_row(&sign(
            &f.key,
            10,
            &hex::decode(&forged[9].hash).unwrap(),
            9_000,
        ));
        let head = Tail::Head {
            seq: 10,
            hash: forged[9].hash.clone(),
        };
        let (seq, why) = bad(&run(&forged, vec![f.cp(4), resigned], head));
        assert_eq!(seq, 8);
        assert!(why.contains("rewritten"), "{why}");

        // The trail may start at a checkpoint at the point, not after it.
        let r = run(&f.events[8..], vec![f.cp(8), f.cp(10)], f.head());
        assert!(r.ok, "{r:?}");
        let (seq, why) = bad(&run(&f.events[9..], vec![f.cp(9), f.cp(10)], f.head()));
        assert_eq!(seq, 10);
        assert!(why.contains("lies before the start"), "{why}");
        // An export with nothing after its anchor, the anchor being the point.
        assert!(run(&[], vec![f.cp(8)], Tail::Signed).ok);
    }
}
