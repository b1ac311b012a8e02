//! The export file an auditor verifies offline: NDJSON, one object per line,
//! events in sequence order, then checkpoints:
//!
//! ```text
//! {"type":"event","seq":1,"at":"…","actor":"…",…,"prev_hash":"…","hash":"…"}
//! …
//! {"type":"checkpoint","seq":1000,"hash":"…","at":"…","kid":"…","signature":"…"}
//! ```
//!
//! An export starts just after a signed checkpoint (the last one at or
//! before the requested `after_seq`; seq 0 is the genesis) so that it
//! verifies on its own, and it ends with a checkpoint of the chain head
//! signed when the export was made: removing events from the end of the
//! trail, or from the file, no longer verifies.
//!
//! Between two audits an auditor keeps the previous export (or just its
//! last line): [`verify_extends`] checks that a new export extends it — it
//! holds the previous export's last event (or starts right after a
//! checkpoint there) with the same hash — so a trail cut back or rewritten
//! in between is caught although the new export verifies on its own.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, PublicKeys};
use super::query::EventView;
use super::verify::{Report, Tail, Verifier};
use crate::store::{AuditFilter, Store, StoreResult};

/// One line of an export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Event(EventView),
    Checkpoint(Checkpoint),
}

/// Events per database read while exporting.
const PAGE: i64 = 1_000;

/// Produces an export chunk by chunk (each chunk is whole lines).
pub struct ExportCursor {
    start: i64,
    after: i64,
    through: i64,
    events_done: bool,
    done: bool,
}

impl ExportCursor {
    /// Events after the last checkpoint at or before `after_seq`, up to and
    /// including `through` (the checkpoint signed for this export), then
    /// the checkpoints from that anchor to `through`.
    pub async fn new(store: &dyn Store, after_seq: i64, through: i64) -> StoreResult<Self> {
        let start = store
            .audit_checkpoint_at_or_before(after_seq.clamp(0, through))
            .await?
            .map(|c| c.seq)
            .unwrap_or(0);
        Ok(ExportCursor {
            start,
            after: start,
            through,
            events_done: false,
            done: false,
        })
    }

    /// The sequence number the export starts after.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// The next chunk of lines, `None` at the end.
    pub async fn next_chunk(&mut self, store: &dyn Store) -> StoreResult<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::new();
        if !self.events_done {
            let page = store
                .audit_events(&AuditFilter {
                    after_seq: self.after,
                    limit: PAGE,
                    ..AuditFilter::default()
                })
                .await?;
            let full = page.len() as i64 == PAGE;
            for e in page.iter().filter(|e| e.seq <= self.through) {
                line(&mut out, &ExportLine::Event(EventView::from(e)));
                self.after = e.seq;
            }
            if !full || page.last().is_none_or(|e| e.seq >= self.through) {
                self.events_done = true;
            }
            return Ok(Some(out));
        }
        for c in store.audit_checkpoints(self.start, self.through).await? {
            line(&mut out, &ExportLine::Checkpoint(Checkpoint::from_row(&c)));
        }
        self.done = true;
        Ok(Some(out))
    }

    /// Writes the whole export to `w`.
    pub async fn write_all(mut self, store: &dyn Store, w: &mut impl Write) -> anyhow::Result<()> {
        while let Some(chunk) = self.next_chunk(store).await? {
            w.write_all(&chunk)?;
        }
        w.flush()?;
        Ok(())
    }
}

fn line(out: &mut Vec<u8>, l: &ExportLine) {
    // Serialising strings, integers and string maps cannot fail.
    if serde_json::to_writer(&mut *out, l).is_ok() {
        out.push(b'\n');
    }
}

/// Verifies an export file against `keys` without the database: every hash
/// and link, no gap, every checkpoint signature, every checkpoint against
/// its event, a signed start and a signed end. Two passes over the file
/// (checkpoints first), so memory does not grow with the number of events.
pub fn verify_file(path: &Path, keys: &PublicKeys) -> std::io::Result<Report> {
    verify_file_through(path, keys, None)
}

/// What the previous export is called in messages.
pub const PREVIOUS: &str = "the previous export";

/// `pii-vault audit verify --since OLD NEW`: both exports verify on their
/// own, and NEW extends OLD — it passes through OLD's last event (seq and
/// hash), and ends at or after it. Returns the reports of OLD and NEW.
pub fn verify_extends(
    old: &Path,
    new: &Path,
    keys: &PublicKeys,
) -> std::io::Result<(Report, Option<Report>)> {
    let before = verify_file(old, keys)?;
    if !before.ok {
        return Ok((before, None));
    }
    let point = (before.head_seq, before.head.clone());
    let after = verify_file_through(new, keys, Some(point))?;
    Ok((before, Some(after)))
}

fn verify_file_through(
    path: &Path,
    keys: &PublicKeys,
    through: Option<(i64, String)>,
) -> std::io::Result<Report> {
    let mut checkpoints = Vec::new();
    for l in BufReader::new(std::fs::File::open(path)?).lines() {
        if let Ok(ExportLine::Checkpoint(c)) = serde_json::from_str::<ExportLine>(&l?) {
            checkpoints.push(c);
        }
    }
    let mut v = Verifier::new(keys, checkpoints);
    if let Some((seq, hash)) = &through {
        v.require(*seq, hash, PREVIOUS);
    }
    for (i, l) in BufReader::new(std::fs::File::open(path)?)
        .lines()
        .enumerate()
    {
        let l = l?;
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ExportLine>(&l) {
            Ok(ExportLine::Event(e)) => match e.to_stored() {
                Some(stored) => {
                    if !v.push(&stored) {
                        break;
                    }
                }
                None => v.fail_at(e.seq, "its time is not RFC 3339".into()),
            },
            Ok(ExportLine::Checkpoint(_)) => {}
            Err(_) => v.fail_next(format!(
                "line {} is neither an event nor a checkpoint",
                i + 1
            )),
        }
    }
    Ok(v.finish(Tail::Signed))
}

/// The report as the command line prints it.
pub fn describe(r: &Report) -> String {
    if r.ok {
        let range = match r.first_seq {
            Some(first) => format!("seq {first} to {}", r.head_seq),
            None => "no new events".into(),
        };
        let cp = r
            .checkpoint
            .as_ref()
            .map(|c| {
                format!(
                    "; last checkpoint seq {} signed by {} at {}",
                    c.seq, c.kid, c.at
                )
            })
            .unwrap_or_default();
        format!(
            "ok: {} events ({range}), {} signed checkpoints verified{cp}",
            r.events, r.checkpoints
        )
    } else {
        format!(
            "first bad event: seq {} ({})",
            r.first_bad_seq.unwrap_or(0),
            r.reason.as_deref().unwrap_or("unknown")
        )
    }
}
