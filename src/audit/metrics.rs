//! Access decisions as metrics: `pii_vault_access_decisions_total{decision,
//! reason}`, one count per field decided (or per refused call). Labels are
//! decisions and reason codes only, never ids or values.

use super::EventDraft;

/// Counts the decisions an access event records: each field served as
/// `allowed`/`served`, each reason as the event's decision with its code,
/// an event with neither (e.g. a miss) once with reason `none`.
pub fn record_access(ev: &EventDraft) {
    if ev.decision == "allowed" {
        for _ in &ev.fields {
            count("allowed", "served");
        }
    }
    let refused = if ev.decision == "allowed" {
        "withheld"
    } else {
        ev.decision.as_str()
    };
    let mut decided = false;
    for (key, code) in &ev.reasons {
        // Where the call came from is context, not a decision (and an
        // address as a label would make the series unbounded).
        if matches!(key.as_str(), "client_addr" | "client_addr_hmac") || key.starts_with("art9.") {
            continue;
        }
        decided = true;
        count(refused, code);
    }
    if ev.fields.is_empty() && !decided {
        count(&ev.decision, "none");
    }
}

fn count(decision: &str, reason: &str) {
    metrics::counter!(
        "pii_vault_access_decisions_total",
        "decision" => decision.to_owned(),
        "reason" => reason.to_owned()
    )
    .increment(1);
}
