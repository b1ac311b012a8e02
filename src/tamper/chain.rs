//! Append-only logs whose entries are chained by HMAC-SHA256: the format
//! both tamper-evidence logs share, and its verification. Pure: no I/O.
//!
//! One entry per line, JSON:
//!
//! ```text
//! {"n":7,"entry":{…the record…},"prev":"<MAC of entry 6>","mac":"<MAC of this entry>"}
//! ```
//!
//! `n` counts from 1; entry 1's `prev` is 64 zeros. `mac` is the lowercase
//! hex HMAC-SHA256, under the log's key, of the UTF-8 text
//! `"{CONTEXT}\n{n}\n{prev}\n{fields}"`, where `CONTEXT` names the log and
//! its version (`pii-vault tombstone v1`, `pii-vault witness v1`) and
//! `fields` are the record's fields, one per line, in a fixed order
//! ([`Record::mac_fields`]). Because every MAC covers the previous one and
//! the entry's number:
//!
//! - a forged entry (written without the key) or an altered one fails its
//!   own MAC;
//! - a removed, reordered, duplicated or inserted entry breaks the link
//!   (`n` and `prev`) of the entry after it;
//! - only a removed *tail* leaves a valid chain: that is caught by
//!   comparing the log's head with a head kept elsewhere (the vault's
//!   database records the head of each log after every append).
//!
//! Each entry also verifies on its own (its `prev` is part of it), so the
//! last entries of a long log can be checked without reading all of it.

use ring::hmac;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one log holds per entry.
pub trait Record:
    Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// The first line of every message this log's MACs cover.
    const CONTEXT: &'static str;

    /// The record's fields as its MAC covers them: one per line, in a fixed
    /// order.
    fn mac_fields(&self) -> String;
}

/// One entry of a chained log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed<R> {
    pub n: u64,
    pub entry: R,
    /// MAC of entry `n - 1` (hex), or [`GENESIS`].
    pub prev: String,
    /// MAC of this entry (hex).
    pub mac: String,
}

/// The exact text an entry's MAC covers.
pub fn message<R: Record>(n: u64, prev: &str, entry: &R) -> String {
    format!("{}\n{n}\n{prev}\n{}", R::CONTEXT, entry.mac_fields())
}

impl<R: Record> Sealed<R> {
    /// Entry `n` after the entry whose MAC is `prev`.
    pub fn seal(key: &hmac::Key, n: u64, prev: String, entry: R) -> Self {
        let mac = hex::encode(hmac::sign(key, message(n, &prev, &entry).as_bytes()).as_ref());
        Sealed {
            n,
            entry,
            prev,
            mac,
        }
    }

    /// Whether the MAC is right (constant-time comparison).
    pub fn authentic(&self, key: &hmac::Key) -> bool {
        let Ok(mac) = hex::decode(&self.mac) else {
            return false;
        };
        hmac::verify(
            key,
            message(self.n, &self.prev, &self.entry).as_bytes(),
            &mac,
        )
        .is_ok()
    }

    /// The entry as one line of the log (without the newline).
    pub fn to_line(&self) -> String {
        // Strings, integers and UUIDs always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// This entry's place in the chain.
    pub fn head(&self) -> Head {
        Head {
            n: self.n,
            mac: self.mac.clone(),
        }
    }
}

/// Seals `entries` to follow `last` (the head of the log; `None` when it is
/// empty).
pub fn seal_after<R: Record>(
    key: &hmac::Key,
    last: Option<&Head>,
    entries: Vec<R>,
) -> Vec<Sealed<R>> {
    let (mut n, mut prev) = match last {
        Some(h) => (h.n, h.mac.clone()),
        None => (0, GENESIS.to_owned()),
    };
    entries
        .into_iter()
        .map(|entry| {
            n += 1;
            let sealed = Sealed::seal(key, n, prev.clone(), entry);
            prev = sealed.mac.clone();
            sealed
        })
        .collect()
}

/// The last entry of a log: its number and MAC. Kept in the vault's
/// database too, as `"{n} {mac}"`, to catch a log cut back at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub n: u64,
    pub mac: String,
}

impl Head {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.n, self.mac).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (n, mac) = text.trim().split_once(' ')?;
        Some(Head {
            n: n.parse().ok()?,
            mac: mac.to_owned(),
        })
    }
}

/// Something wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line (1-based) in the log, when the problem has one.
    pub line: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// A log (or its tail) checked with the key.
#[derive(Debug, Clone)]
pub struct Checked<R> {
    /// The entries whose MAC verifies, in log order (an entry that follows
    /// a broken link is still listed: it is authentic).
    pub entries: Vec<Sealed<R>>,
    pub problems: Vec<Problem>,
    /// Lines read.
    pub lines: u64,
}

impl<R: Record> Checked<R> {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The last authentic entry.
    pub fn head(&self) -> Option<Head> {
        self.entries.last().map(Sealed::head)
    }

    /// Compares the log with the head the database recorded: the log must
    /// hold that entry, unchanged (a log cut back at its end, or replaced by
    /// another, does not).
    pub fn check_recorded(&mut self, recorded: &Head) {
        if recorded.n == 0 {
            return;
        }
        let ours = self.entries.iter().find(|e| e.n == recorded.n);
        let last = self.entries.last().map(|e| e.n).unwrap_or(0);
        let what = match ours {
            Some(e) if e.mac == recorded.mac => return,
            Some(_) => format!(
                "entry {} is not the entry {} the vault's database recorded: the log was replaced",
                recorded.n, recorded.n
            ),
            None if last < recorded.n => format!(
                "the log ends at entry {last} but the vault's database recorded entry {}: \
                 entries were removed from its end (or the log was replaced)",
                recorded.n
            ),
            None => format!(
                "entry {} that the vault's database recorded is missing",
                recorded.n
            ),
        };
        self.problems.push(Problem { line: None, what });
    }
}

/// Checks `lines` as a whole log (`whole`: it starts at entry 1) or as the
/// last lines of one (the first line is then taken as it is). `first_line`
/// is the number of the first line, for messages.
pub fn check<R: Record>(
    key: &hmac::Key,
    lines: &[String],
    whole: bool,
    first_line: u64,
) -> Checked<R> {
    let mut out = Checked {
        entries: Vec::new(),
        problems: Vec::new(),
        lines: lines.len() as u64,
    };
    let mut prev: Option<Head> = whole.then(|| Head {
        n: 0,
        mac: GENESIS.to_owned(),
    });
    for (i, line) in lines.iter().enumerate() {
        let at = Some(first_line + i as u64);
        let sealed: Sealed<R> = match serde_json::from_str(line) {
            Ok(s) => s,
            Err(_) => {
                out.problems.push(Problem {
                    line: at,
                    what: unreadable(line),
                });
                prev = None;
                continue;
            }
        };
        if !sealed.authentic(key) {
            out.problems.push(Problem {
                line: at,
                what: format!(
                    "entry {}: its MAC does not verify: the entry was forged or altered",
                    sealed.n
                ),
            });
            prev = None;
            continue;
        }
        if let Some(p) = &prev
            && (sealed.n != p.n + 1 || sealed.prev != p.mac)
        {
            let what = if p.n == 0 {
                format!(
                    "entry {}: the log does not start at entry 1: entries were removed from its beginning",
                    sealed.n
                )
            } else {
                format!(
                    "entry {}: it does not follow entry {}: an entry was removed, reordered or inserted",
                    sealed.n, p.n
                )
            };
            out.problems.push(Problem { line: at, what });
        }
        prev = Some(sealed.head());
        out.entries.push(sealed);
    }
    out
}

fn unreadable(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(map)) if !map.contains_key("mac") => {
            "not authenticated (no MAC): written by hand, or by an older version".into()
        }
        _ => "unreadable: not an entry of this log".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }

    impl Record for Note {
        const CONTEXT: &'static str = "pii-vault test v1";
        fn mac_fields(&self) -> String {
            self.text.clone()
        }
    }

    fn key(b: u8) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[b; 32])
    }

    fn log(n: usize) -> Vec<String> {
        let notes = (1..=n).map(|i| Note {
            text: format!("note {i}"),
        });
        seal_after(&key(1), None, notes.collect())
            .iter()
            .map(Sealed::to_line)
            .collect()
    }

    fn whats(c: &Checked<Note>) -> Vec<String> {
        c.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_mac_covers_a_documented_message() {
        let s = Sealed::seal(&key(1), 1, GENESIS.into(), Note { text: "a".into() });
        let expected = hmac::sign(
            &key(1),
            format!("pii-vault test v1\n1\n{GENESIS}\na").as_bytes(),
        );
        assert_eq!(s.mac, hex::encode(expected.as_ref()));
        assert!(s.authentic(&key(1)));
        assert!(!s.authentic(&key(2)));
        let line = s.to_line();
        assert!(line.starts_with("{\"n\":1,\"entry\":{\"text\":\"a\"},\"prev\":\"000"));
    }

    #[test]
    fn an_intact_log_verifies_and_appends_continue_it() {
        let mut lines = log(3);
        let c = check::<Note>(&key(1), &lines, true, 1);
        assert!(c.ok(), "{:?}", whats(&c));
        assert_eq!(c.head().unwrap().n, 3);
        let more = seal_after(&key(1), c.head().as_ref(), vec![Note { text: "x".into() }]);
        lines.push(more[0].to_line());
        let c = check::<Note>(&key(1), &lines, true, 1);
        assert!(c.ok(), "{:?}", whats(&c));
        assert_eq!(c.entries.len(), 4);
        // The tail alone verifies too.
        assert!(check::<Note>(&key(1), &lines[2..], false, 3).ok());
        assert!(check::<Note>(&key(2), &lines, true, 1).problems.len() == 4);
    }

    #[test]
    fn forged_altered_removed_and_reordered_entries_are_named() {
        let lines = log(4);
        let mut forged = lines.clone();
        forged
            .push("{\"n\":5,\"entry\":{\"text\":\"evil\"},\"prev\":\"00\",\"mac\":\"00\"}".into());
        let c = check::<Note>(&key(1), &forged, true, 1);
        assert_eq!(whats(&c).len(), 1);
        assert!(whats(&c)[0].contains("line 5: entry 5: its MAC does not verify"));
        assert_eq!(c.entries.len(), 4, "the forged entry is not taken");

        let mut legacy = lines.clone();
        legacy.push("{\"text\":\"old format\"}".into());
        let c = check::<Note>(&key(1), &legacy, true, 1);
        assert!(
            whats(&c)[0].contains("not authenticated"),
            "{:?}",
            whats(&c)
        );

        let mut altered = lines.clone();
        altered[1] = altered[1].replace("note 2", "note 9");
        let c = check::<Note>(&key(1), &altered, true, 1);
        assert_eq!(whats(&c).len(), 1);
        assert!(whats(&c)[0].contains("line 2: entry 2: its MAC"));

        let mut removed = lines.clone();
        removed.remove(2);
        let c = check::<Note>(&key(1), &removed, true, 1);
        assert_eq!(
            whats(&c),
            vec![
                "line 3: entry 4: it does not follow entry 2: an entry was removed, reordered or inserted"
            ]
        );

        let mut swapped = lines.clone();
        swapped.swap(0, 1);
        let c = check::<Note>(&key(1), &swapped, true, 1);
        assert!(whats(&c)[0].contains("does not start at entry 1"));

        let c = check::<Note>(&key(1), &lines[1..], true, 1);
        assert!(whats(&c)[0].contains("removed from its beginning"));
    }

    #[test]
    fn a_cut_tail_shows_against_the_recorded_head() {
        let lines = log(4);
        let full = check::<Note>(&key(1), &lines, true, 1);
        let recorded = full.head().unwrap();
        assert_eq!(Head::decode(&recorded.encode()), Some(recorded.clone()));

        let mut cut = check::<Note>(&key(1), &lines[..2], true, 1);
        assert!(cut.ok());
        cut.check_recorded(&recorded);
        assert!(
            whats(&cut)[0].contains("removed from its end"),
            "{:?}",
            whats(&cut)
        );

        let other: Vec<String> = seal_after(
            &key(1),
            None,
            (1..=4)
                .map(|i| Note {
                    text: format!("other {i}"),
                })
                .collect(),
        )
        .iter()
        .map(Sealed::to_line)
        .collect();
        let mut replaced = check::<Note>(&key(1), &other, true, 1);
        replaced.check_recorded(&recorded);
        assert!(whats(&replaced)[0].contains("replaced"));

        let mut longer = check::<Note>(&key(1), &lines, true, 1);
        longer.check_recorded(&Head {
            n: 2,
            mac: longer.entries[1].mac.clone(),
        });
        assert!(
            longer.ok(),
            "a log that goes on past the recorded head is fine"
        );
    }
}
