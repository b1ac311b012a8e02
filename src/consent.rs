//! Current consent state, derived from the append-only ledger.
//!
//! The latest event per purpose decides: `withdraw` → withdrawn; `grant` →
//! granted until the purpose's retention period has run from the grant,
//! then expired (consent is refreshed, not assumed forever).

use std::collections::BTreeMap;

use crate::clock::{from_micros, to_micros};
use crate::policy::{ConsentView, Policy};
use crate::store::ConsentEvent;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Withdrawn,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentConsent {
    pub purpose: String,
    pub status: ConsentStatus,
    /// When the status began (micros).
    pub since: i64,
    /// The latest grant was recorded as explicit (GDPR Art. 9(2)(a)).
    pub explicit: bool,
}

/// Current consent per purpose.
#[derive(Debug, Clone, Default)]
pub struct ConsentState {
    current: BTreeMap<String, CurrentConsent>,
}

impl ConsentState {
    pub fn derive(policy: &Policy, events: &[ConsentEvent], now: i64) -> Self {
        let mut latest: BTreeMap<&str, &ConsentEvent> = BTreeMap::new();
        for e in events {
            match latest.get(e.purpose.as_str()) {
                Some(prev) if prev.at > e.at => {}
                _ => {
                    latest.insert(&e.purpose, e);
                }
            }
        }
        let current = latest
            .into_iter()
            .map(|(purpose, e)| {
                let (status, since) = if e.action == "withdraw" {
                    (ConsentStatus::Withdrawn, e.at)
                } else {
                    let ends = policy
                        .purpose(purpose)
                        .map(|p| to_micros(p.retention.end_from(from_micros(e.at))))
                        .unwrap_or(i64::MAX);
                    if ends <= now {
                        (ConsentStatus::Expired, ends)
                    } else {
                        (ConsentStatus::Granted, e.at)
                    }
                };
                (
                    purpose.to_owned(),
                    CurrentConsent {
                        purpose: purpose.to_owned(),
                        status,
                        since,
                        explicit: e.action != "withdraw" && e.explicit,
                    },
                )
            })
            .collect();
        ConsentState { current }
    }

    pub fn current(&self) -> impl Iterator<Item = &CurrentConsent> {
        self.current.values()
    }
}

impl ConsentView for ConsentState {
    fn active(&self, purpose: &str) -> bool {
        self.current
            .get(purpose)
            .is_some_and(|c| c.status == ConsentStatus::Granted)
    }

    fn explicit(&self, purpose: &str) -> bool {
        self.current
            .get(purpose)
            .is_some_and(|c| c.status == ConsentStatus::Granted && c.explicit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .unwrap()
    }

    fn ev(purpose: &str, action: &str, at: i64) -> ConsentEvent {
        ConsentEvent {
            id: uuid::Uuid::now_v7(),
            customer_id: uuid::Uuid::nil(),
            purpose: purpose.into(),
            action: action.into(),
            notice_version: "2026-01".into(),
            notice_text_sha256: "00".repeat(32),
            language: "en".into(),
            jurisdiction: "EU".into(),
            channel: "web".into(),
            captured_by: "c".into(),
            at,
            explicit: false,
        }
    }

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn latest_event_decides() {
        let p = policy();
        let s = ConsentState::derive(
            &p,
            &[
                ev("marketing.email", "grant", DAY),
                ev("marketing.email", "withdraw", 2 * DAY),
            ],
            3 * DAY,
        );
        assert!(!s.active("marketing.email"));
        let s = ConsentState::derive(
            &p,
            &[
                ev("marketing.email", "withdraw", DAY),
                ev("marketing.email", "grant", 2 * DAY),
            ],
            3 * DAY,
        );
        assert!(s.active("marketing.email"));
        assert!(!s.active("marketing.sms"));
    }

    #[test]
    fn only_the_latest_grant_recorded_as_explicit_is_explicit() {
        let p = policy();
        let explicit = |mut e: ConsentEvent| {
            e.explicit = true;
            e
        };
        let s = ConsentState::derive(&p, &[explicit(ev("support", "grant", DAY))], 2 * DAY);
        assert!(s.active("support") && s.explicit("support"));
        assert!(s.current().all(|c| c.explicit));
        // A later plain grant replaces it.
        let s = ConsentState::derive(
            &p,
            &[
                explicit(ev("support", "grant", DAY)),
                ev("support", "grant", 2 * DAY),
            ],
            3 * DAY,
        );
        assert!(s.active("support") && !s.explicit("support"));
        // A withdrawal ends it at once.
        let s = ConsentState::derive(
            &p,
            &[
                explicit(ev("support", "grant", DAY)),
                ev("support", "withdraw", 2 * DAY),
            ],
            3 * DAY,
        );
        assert!(!s.active("support") && !s.explicit("support"));
        assert!(s.current().all(|c| !c.explicit));
        // An expired explicit grant is not active.
        let s = ConsentState::derive(&p, &[explicit(ev("support", "grant", 0))], 800 * DAY);
        assert!(!s.explicit("support"));
    }

    #[test]
    fn a_grant_expires_with_the_purpose_retention() {
        let p = policy();
        // partner_sharing keeps consent for 1 year.
        let s = ConsentState::derive(&p, &[ev("partner_sharing", "grant", 0)], 400 * DAY);
        let c: Vec<_> = s.current().collect();
        assert_eq!(c[0].status, ConsentStatus::Expired);
        assert!(!s.active("partner_sharing"));
    }
}
