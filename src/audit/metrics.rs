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
    for code in ev.reasons.values() {
        count(refused, code);
    }
    if ev.fields.is_empty() && ev.reasons.is_empty() {
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
