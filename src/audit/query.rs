//! Reading the trail: the published shape of an event, the auditor's
//! filters (validated here, once) and a customer's access log.

use crate::audit::Action;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{StoredEvent, is_known_action};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::store::{AuditFilter, Store, StoreResult};

/// Most events one query returns.
pub const MAX_LIMIT: i64 = 1000;
/// Events returned when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;

/// An audit event as the API and exports publish it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct EventView {
    pub seq: i64,
    /// RFC 3339 UTC with microseconds; the hash covers it as microseconds
    /// since the Unix epoch.
    pub at: String,
    /// Client or user id (or `system`, `cli`, `anonymous`).
    pub actor: String,
    pub role: String,
    pub action: String,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Field names, never values.
    #[serde(default)]
    pub fields: Vec<String>,
    /// allowed, denied, withheld, not_found, …
    pub decision: String,
    /// Field name (or topic) to a reason code.
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
    pub request_id: String,
    /// Hex of the previous event's hash (64 zeros before the first event).
    pub prev_hash: String,
    /// Hex SHA-256 of the event's canonical form.
    pub hash: String,
}

impl From<&StoredEvent> for EventView {
    fn from(e: &StoredEvent) -> Self {
        EventView {
            seq: e.seq,
            at: rfc3339(e.at),
            actor: e.draft.actor.clone(),
            role: e.draft.role.clone(),
            action: e.draft.action.clone(),
            purpose: e.draft.purpose.clone(),
            customer_id: e.draft.customer_id.clone(),
            fields: e.draft.fields.clone(),
            decision: e.draft.decision.clone(),
            reasons: e.draft.reasons.clone(),
            request_id: e.draft.request_id.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

impl EventView {
    /// Back to the stored form; `None` when `at` is not RFC 3339.
    pub fn to_stored(&self) -> Option<StoredEvent> {
        Some(StoredEvent {
            seq: self.seq,
            at: parse_rfc3339(&self.at)?,
            draft: super::EventDraft {
                actor: self.actor.clone(),
                role: self.role.clone(),
                action: self.action.clone(),
                purpose: self.purpose.clone(),
                customer_id: self.customer_id.clone(),
                fields: self.fields.clone(),
                decision: self.decision.clone(),
                reasons: self.reasons.clone(),
                request_id: self.request_id.clone(),
            },
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        })
    }
}

/// The auditor's filters as given (query-string text).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RawFilter {
    /// Events about this customer (a UUID).
    pub customer_id: Option<String>,
    /// Events by this client or user id.
    pub actor: Option<String>,
    /// One of the recorded actions, e.g. `customer.read`.
    pub action: Option<String>,
    /// Events for this purpose.
    pub purpose: Option<String>,
    /// allowed, denied, withheld, not_found, …
    pub decision: Option<String>,
    /// Events at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Events before this time (RFC 3339).
    pub to: Option<String>,
    /// Events after this sequence number (the previous page's `next_after_seq`).
    pub after_seq: Option<String>,
    /// 1–1000, default 100 (values outside are clamped).
    pub limit: Option<String>,
}

/// A filter that does not parse: the parameter's name and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub param: &'static str,
    pub problem: String,
}

fn bad(param: &'static str, problem: impl Into<String>) -> FilterError {
    FilterError {
        param,
        problem: problem.into(),
    }
}

/// Free text compared for equality: bounded, printable.
fn text(param: &'static str, v: Option<&String>) -> Result<Option<String>, FilterError> {
    match v {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) if s.len() > 200 || s.chars().any(char::is_control) => {
            Err(bad(param, "must be 1–200 printable characters"))
        }
        Some(s) => Ok(Some(s.clone())),
    }
}

fn time(param: &'static str, v: Option<&String>) -> Result<Option<i64>, FilterError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => parse_rfc3339(s)
            .map(Some)
            .ok_or_else(|| bad(param, "must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z")),
    }
}

fn int(param: &'static str, v: Option<&String>) -> Result<Option<i64>, FilterError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| bad(param, "must be an integer")),
    }
}

impl RawFilter {
    /// Validates every parameter; `limit` is clamped to 1..=1000.
    pub fn parse(&self) -> Result<AuditFilter, FilterError> {
        let customer_id = match self.customer_id.as_ref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                s.parse::<uuid::Uuid>()
                    .map_err(|_| bad("customer_id", "must be a customer id (UUID)"))?
                    .to_string(),
            ),
        };
        let action = match self.action.as_ref().filter(|s| !s.is_empty()) {
            None => None,
            Some(a) if is_known_action(a) => Some(a.clone()),
            Some(_) => {
                return Err(bad(
                    "action",
                    "is not a recorded action (see ACTIONS in the auditors' guide)",
                ));
            }
        };
        let from = time("from", self.from.as_ref())?;
        let to = time("to", self.to.as_ref())?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(bad("from", "must not be after `to`"));
        }
        let after_seq = int("after_seq", self.after_seq.as_ref())?.unwrap_or(0);
        if after_seq < 0 {
            return Err(bad("after_seq", "must not be negative"));
        }
        let limit = int("limit", self.limit.as_ref())?
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT);
        Ok(AuditFilter {
            customer_id,
            actor: text("actor", self.actor.as_ref())?,
            action,
            purpose: text("purpose", self.purpose.as_ref())?,
            decision: text("decision", self.decision.as_ref())?,
            from,
            to,
            after_seq,
            limit,
        })
    }
}

/// One page of events and where the next one starts (`None`: no more).
pub async fn page(
    store: &dyn Store,
    filter: &AuditFilter,
) -> StoreResult<(Vec<StoredEvent>, Option<i64>)> {
    let mut probe = filter.clone();
    probe.limit = filter.limit + 1;
    let mut events = store.audit_events(&probe).await?;
    let more = events.len() as i64 > filter.limit;
    events.truncate(usize::try_from(filter.limit).unwrap_or(0));
    let next = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok((events, next))
}

/// Actions left out of a customer's access log: reading the trail is not
/// an access to the customer's data.
pub fn is_access_log_noise(action: &str) -> bool {
    action == Action::AccessLogRead.as_str() || action.starts_with("audit.")
}

/// One entry of a customer's access log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AccessEntry {
    pub seq: i64,
    /// RFC 3339 UTC.
    pub at: String,
    /// Client or user id.
    pub actor: String,
    pub role: String,
    pub action: String,
    pub purpose: Option<String>,
    /// Field names concerned.
    pub fields: Vec<String>,
    pub decision: String,
    /// Field name to the reason a value was withheld or refused.
    pub reasons: BTreeMap<String, String>,
}

impl From<&StoredEvent> for AccessEntry {
    fn from(e: &StoredEvent) -> Self {
        AccessEntry {
            seq: e.seq,
            at: rfc3339(e.at),
            actor: e.draft.actor.clone(),
            role: e.draft.role.clone(),
            action: e.draft.action.clone(),
            purpose: e.draft.purpose.clone(),
            fields: e.draft.fields.clone(),
            decision: e.draft.decision.clone(),
            reasons: e.draft.reasons.clone(),
        }
    }
}

/// Who used this customer's data, when and for which purpose: the
/// customer's events after `after_seq` minus [`is_access_log_noise`], at
/// most `limit` (clamped to 1..=1000), and the cursor of the next page.
pub async fn access_log(
    store: &dyn Store,
    customer_id: uuid::Uuid,
    after_seq: i64,
    limit: i64,
) -> StoreResult<(Vec<AccessEntry>, Option<i64>)> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut out = Vec::new();
    let mut cursor = after_seq;
    loop {
        let batch = store
            .audit_events(&AuditFilter {
                customer_id: Some(customer_id.to_string()),
                after_seq: cursor,
                limit: MAX_LIMIT,
                ..AuditFilter::default()
            })
            .await?;
        let exhausted = (batch.len() as i64) < MAX_LIMIT;
        for e in &batch {
            cursor = e.seq;
            if is_access_log_noise(&e.draft.action) {
                continue;
            }
            if out.len() as i64 == limit {
                // One more entry exists: the page is full.
                let next = out.last().map(|a: &AccessEntry| a.seq);
                return Ok((out, next));
            }
            out.push(AccessEntry::from(e));
        }
        if exhausted {
            return Ok((out, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawFilter {
        let mut r = RawFilter::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "customer_id" => r.customer_id = v,
                "actor" => r.actor = v,
                "action" => r.action = v,
                "purpose" => r.purpose = v,
                "decision" => r.decision = v,
                "from" => r.from = v,
                "to" => r.to = v,
                "after_seq" => r.after_seq = v,
                "limit" => r.limit = v,
                _ => unreachable!(),
            }
        }
        r
    }

    #[test]
    fn filters_parse_and_limit_is_clamped() {
        let f = raw(&[
            ("customer_id", "0190F5A6-8F6A-7C3B-9A3E-5B1D2C3E4F50"),
            ("action", "customer.read"),
            ("from", "2026-01-01T00:00:00Z"),
            ("to", "2026-02-01T00:00:00+01:00"),
            ("after_seq", "41"),
            ("limit", "5000"),
        ])
        .parse()
        .unwrap();
        assert_eq!(
            f.customer_id.as_deref(),
            Some("0190f5a6-8f6a-7c3b-9a3e-5b1d2c3e4f50")
        );
        assert_eq!(f.action.as_deref(), Some("customer.read"));
        assert_eq!(f.after_seq, 41);
        assert_eq!(f.limit, 1000);
        assert_eq!(raw(&[("limit", "0")]).parse().unwrap().limit, 1);
        assert_eq!(raw(&[]).parse().unwrap().limit, 100);
    }

    #[test]
    fn bad_filters_name_the_parameter() {
        for (k, v) in [
            ("from", "yesterday"),
            ("to", "2026-13-01T00:00:00Z"),
            ("action", "customer.delete_everything"),
            ("customer_id", "ada@example.com"),
            ("after_seq", "x"),
            ("after_seq", "-1"),
            ("limit", "ten"),
        ] {
            let e = raw(&[(k, v)]).parse().unwrap_err();
            assert_eq!(e.param, k, "{k}={v}");
            assert!(!e.problem.contains(v), "the value is not echoed");
        }
        let e = raw(&[
            ("from", "2026-02-01T00:00:00Z"),
            ("to", "2026-01-01T00:00:00Z"),
        ])
        .parse()
        .unwrap_err();
        assert_eq!(e.param, "from");
    }

    #[test]
    fn every_action_and_decision_name_parses_back() {
        for a in crate::audit::Action::ALL {
            assert_eq!(crate::audit::Action::parse(a.as_str()), Some(*a));
            assert!(is_known_action(a.as_str()));
        }
        for d in crate::audit::Decision::ALL {
            assert_eq!(crate::audit::Decision::parse(d.as_str()), Some(*d));
        }
        assert!(!is_known_action("customer.reed"));
    }
}
