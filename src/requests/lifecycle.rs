//! The life cycle of a data subject request as pure functions: kinds,
//! regulations, statuses, deadlines, the allowed transitions and the yearly
//! metrics. No I/O and no clock: every function takes `now` (microseconds
//! since the epoch, from the injected clock), so the rules are unit-tested
//! here and the HTTP layer only maps their answers.
//!
//! ```text
//! received ─► verifying ─► verified ─► (awaiting_approval) ─► completed
//!    │            │           │              │               partially_completed
//!    └────────────┴───────────┴──────────────┴─────────────► denied
//! ```
//! `received`: filed, no way to verify yet (staff must verify);
//! `verifying`: a one-time code was sent to a contact on file;
//! `verified`: identity established, the request is being carried out (a
//! request stays here while a notice that must precede it is delivered);
//! `awaiting_approval`: verified, waiting for the DPO (policy
//! `[requests] approval_required`); `merged`: a verified duplicate of an
//! open request of the same kind for the same customer, which it follows.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::{from_micros, to_micros};
pub use crate::language::Language;
use crate::policy::Retention;

/// Wrong codes a request tolerates; the last one denies it (R18).
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// Digits of a verification code (10^8 codes, 5 tries each).
pub const CODE_DIGITS: usize = 8;

const DAY_US: i64 = 86_400_000_000;

macro_rules! names {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names! {
    /// What the data subject asks for.
    Kind {
        Access = "access",
        Portability = "portability",
        Erasure = "erasure",
        Rectification = "rectification",
        Restriction = "restriction",
        Objection = "objection",
        OptOutSale = "opt_out_sale",
        LimitSensitive = "limit_sensitive",
    }
}

names! {
    /// The law the request is made under; it sets the deadlines.
    Regulation {
        Gdpr = "gdpr",
        Ccpa = "ccpa",
    }
}

names! {
    /// Where a request is in its life cycle.
    Status {
        Received = "received",
        Verifying = "verifying",
        Verified = "verified",
        AwaitingApproval = "awaiting_approval",
        Completed = "completed",
        PartiallyCompleted = "partially_completed",
        Denied = "denied",
        Merged = "merged",
    }
}

names! {
    /// Why a request was denied: machine-readable (R19).
    DenialReason {
        IdentityNotVerified = "identity_not_verified",
        TooManyAttempts = "too_many_attempts",
        ManifestlyUnfounded = "manifestly_unfounded",
        Excessive = "excessive",
        LegalObligation = "legal_obligation",
        LegalClaims = "legal_claims",
        FreedomOfExpression = "freedom_of_expression",
        PublicInterest = "public_interest",
        RightsOfOthers = "rights_of_others",
        Other = "other",
    }
}

impl Status {
    /// Completed, partially completed, denied or merged: nothing more happens.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::PartiallyCompleted | Status::Denied | Status::Merged
        )
    }
}

impl Kind {
    /// CCPA opt-out of sale/sharing and limit-use-of-sensitive requests
    /// complete without verifying the requester (R12; 11 CCR §7026(d),
    /// §7027(f)). Reversing them (opting back in) does need it: the code is
    /// the separate confirmation of R14.
    pub fn skips_verification(self, lift: bool) -> bool {
        matches!(self, Kind::OptOutSale | Kind::LimitSensitive) && !lift
    }

    /// Lifting an opt-out of sale/sharing, a limit on sensitive data or an
    /// objection takes the customer's own, separate confirmation (R14):
    /// the code sent to the contact on file, whoever filed the request.
    pub fn needs_customer_confirmation(self, lift: bool) -> bool {
        lift && matches!(
            self,
            Kind::OptOutSale | Kind::LimitSensitive | Kind::Objection
        )
    }

    /// Kinds that may carry `"lift": true` (withdraw what an earlier request
    /// of the kind set).
    pub fn may_lift(self) -> bool {
        matches!(
            self,
            Kind::Restriction | Kind::Objection | Kind::OptOutSale | Kind::LimitSensitive
        )
    }
}

/// The deadline of a request received at `received`: one calendar month
/// under the GDPR (Art. 12(3)), 45 days under the CCPA (§1798.130(a)(2)).
pub fn due_at(regulation: Regulation, received: i64) -> i64 {
    let start = from_micros(received);
    match regulation {
        Regulation::Gdpr => to_micros(Retention::Months(1).end_from(start)),
        Regulation::Ccpa => received.saturating_add(45 * DAY_US),
    }
}

/// The latest a single extension may move the deadline to: three months
/// from receipt in all under the GDPR ("by two further months"), 90 days
/// under the CCPA (R16).
pub fn max_extended_due(regulation: Regulation, received: i64) -> i64 {
    let start = from_micros(received);
    match regulation {
        Regulation::Gdpr => to_micros(Retention::Months(3).end_from(start)),
        Regulation::Ccpa => received.saturating_add(90 * DAY_US),
    }
}

/// A request as the life cycle sees it (a database row, decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: Uuid,
    pub kind: Kind,
    pub regulation: Regulation,
    /// How it was filed: web (a customer, no token) or a staff channel.
    pub channel: String,
    /// `None` when the identifier given at intake matched no customer: the
    /// request looks the same from outside but can never be verified.
    pub customer_id: Option<Uuid>,
    /// The field the customer identified themself by (its name only).
    pub identifier_field: Option<String>,
    pub status: Status,
    /// "data_subject" or the staff principal's id.
    pub filed_by: String,
    pub received_at: i64,
    pub due_at: i64,
    pub extended_at: Option<i64>,
    pub extension_reason: Option<String>,
    pub verified_at: Option<i64>,
    /// "code" or the method staff recorded (e.g. `id_document_checked`).
    pub verification_method: Option<String>,
    pub verified_by: Option<String>,
    /// argon2id PHC string of the current one-time code.
    pub code_hash: Option<String>,
    pub code_expires_at: Option<i64>,
    pub code_attempts: i64,
    pub approved_at: Option<i64>,
    pub approved_by: Option<String>,
    pub responded_at: Option<i64>,
    pub denial_reason: Option<DenialReason>,
    pub denial_note: Option<String>,
    /// The purpose of an objection.
    pub purpose: Option<String>,
    /// Withdraws what an earlier request of the kind set.
    pub lift: bool,
    /// Rectification values, sealed under the customer's data key.
    pub changes: Option<Vec<u8>>,
    /// The outcome as JSON (receipt, export link, notice id); no personal value.
    pub result: Option<String>,
    pub merged_into: Option<Uuid>,
    /// The language messages to the customer about it are written in.
    pub language: Language,
    /// Optimistic concurrency: every update names the version it read.
    pub version: i64,
}

/// What is needed to file a request.
#[derive(Debug, Clone)]
pub struct Filing {
    pub kind: Kind,
    pub regulation: Regulation,
    pub channel: String,
    pub customer_id: Option<Uuid>,
    pub identifier_field: Option<String>,
    pub filed_by: String,
    pub purpose: Option<String>,
    pub lift: bool,
    pub language: Language,
}

impl Request {
    /// A new request, received now.
    pub fn file(id: Uuid, f: Filing, now: i64) -> Request {
        Request {
            id,
            kind: f.kind,
            regulation: f.regulation,
            channel: f.channel,
            customer_id: f.customer_id,
            identifier_field: f.identifier_field,
            status: Status::Received,
            filed_by: f.filed_by,
            received_at: now,
            due_at: due_at(f.regulation, now),
            extended_at: None,
            extension_reason: None,
            verified_at: None,
            verification_method: None,
            verified_by: None,
            code_hash: None,
            code_expires_at: None,
            code_attempts: 0,
            approved_at: None,
            approved_by: None,
            responded_at: None,
            denial_reason: None,
            denial_note: None,
            purpose: f.purpose,
            lift: f.lift,
            changes: None,
            result: None,
            merged_into: None,
            language: f.language,
            version: 0,
        }
    }

    /// Open and past its deadline.
    pub fn is_overdue(&self, now: i64) -> bool {
        !self.status.is_closed() && now > self.due_at
    }
}

/// Why a transition is refused. Each maps to one stable API code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request is closed")]
    Closed,
    #[error("the request is not waiting for a verification code")]
    NotVerifying,
    #[error("the code has expired")]
    CodeExpired,
    #[error("the code is wrong")]
    InvalidCode,
    #[error("too many wrong codes")]
    TooManyAttempts,
    #[error("the request is already verified")]
    AlreadyVerified,
    #[error("the request is not waiting for approval")]
    NotAwaitingApproval,
    #[error("the request was already extended once")]
    AlreadyExtended,
    #[error("the deadline has passed")]
    PastDue,
    #[error("a reason is required")]
    ReasonRequired,
    #[error("the new deadline is beyond what the regulation allows")]
    ExtensionTooLong,
    #[error("the new deadline must be later than the current one")]
    ExtensionTooShort,
    #[error("the requester is not verified")]
    NotVerified,
    #[error("the request needs the DPO's approval first")]
    NotApproved,
}

/// Starts code verification: the code's hash and its expiry replace any
/// earlier code; attempts already spent still count.
pub fn send_code(r: &Request, code_hash: String, expires_at: i64) -> Result<Request, Refusal> {
    if r.status.is_closed() {
        return Err(Refusal::Closed);
    }
    if r.verified_at.is_some() {
        return Err(Refusal::AlreadyVerified);
    }
    let mut n = r.clone();
    n.status = Status::Verifying;
    n.code_hash = Some(code_hash);
    n.code_expires_at = Some(expires_at);
    Ok(n)
}

/// May a code be checked now? (Before the slow hash comparison.)
pub fn check_code_allowed(r: &Request, now: i64) -> Result<(), Refusal> {
    match r.status {
        Status::Denied if r.denial_reason == Some(DenialReason::TooManyAttempts) => {
            return Err(Refusal::TooManyAttempts);
        }
        s if s.is_closed() => return Err(Refusal::Closed),
        Status::Verifying => {}
        _ if r.verified_at.is_some() => return Err(Refusal::AlreadyVerified),
        _ => return Err(Refusal::NotVerifying),
    }
    if r.code_attempts >= MAX_CODE_ATTEMPTS {
        return Err(Refusal::TooManyAttempts);
    }
    match (r.code_hash.as_ref(), r.code_expires_at) {
        (Some(_), Some(exp)) if now < exp => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::CodeExpired),
        _ => Err(Refusal::NotVerifying),
    }
}

/// A wrong code: one attempt more; the last allowed one denies the request.
/// Returns the new state and the refusal to answer with.
pub fn wrong_code(r: &Request, now: i64) -> (Request, Refusal) {
    let mut n = r.clone();
    n.code_attempts += 1;
    if n.code_attempts >= MAX_CODE_ATTEMPTS {
        n.status = Status::Denied;
        n.denial_reason = Some(DenialReason::TooManyAttempts);
        n.responded_at = Some(now);
        n.code_hash = None;
        n.code_expires_at = None;
        (n, Refusal::TooManyAttempts)
    } else {
        (n, Refusal::InvalidCode)
    }
}

/// The requester is verified (by code or by staff, `method` recorded). A
/// code can be used once: it is cleared. Returns `AwaitingApproval` when
/// the policy wants the DPO to decide, else `Verified` (ready to carry out).
pub fn verified(
    r: &Request,
    now: i64,
    method: &str,
    by: &str,
    needs_approval: bool,
) -> Result<Request, Refusal> {
    if r.status.is_closed() {
        return Err(Refusal::Closed);
    }
    if r.verified_at.is_some() {
        return Err(Refusal::AlreadyVerified);
    }
    let mut n = r.clone();
    n.verified_at = Some(now);
    n.verification_method = Some(method.to_owned());
    n.verified_by = Some(by.to_owned());
    n.code_hash = None;
    n.code_expires_at = None;
    n.status = if needs_approval {
        Status::AwaitingApproval
    } else {
        Status::Verified
    };
    Ok(n)
}

/// A request that needs no verification goes straight to being carried out.
pub fn accept_unverified(r: &Request) -> Result<Request, Refusal> {
    if !r.kind.skips_verification(r.lift) {
        return Err(Refusal::NotVerified);
    }
    if r.status.is_closed() {
        return Err(Refusal::Closed);
    }
    let mut n = r.clone();
    n.status = Status::Verified;
    Ok(n)
}

/// The DPO approves: the request is ready to be carried out.
pub fn approve(r: &Request, now: i64, by: &str) -> Result<Request, Refusal> {
    if r.status.is_closed() {
        return Err(Refusal::Closed);
    }
    if r.status != Status::AwaitingApproval {
        return Err(Refusal::NotAwaitingApproval);
    }
    let mut n = r.clone();
    n.status = Status::Verified;
    n.approved_at = Some(now);
    n.approved_by = Some(by.to_owned());
    Ok(n)
}

/// Denies an open request with a machine-readable reason.
pub fn deny(
    r: &Request,
    now: i64,
    reason: DenialReason,
    note: Option<String>,
) -> Result<Request, Refusal> {
    if r.status.is_closed() {
        return Err(Refusal::Closed);
    }
    let mut n = r.clone();
    n.status = Status::Denied;
    n.denial_reason = Some(reason);
    n.denial_note = note;
    n.responded_at = Some(now);
    n.code_hash = None;
    n.code_expires_at = None;
    n.changes = None;
    Ok(n)
}

/// One extension, with a reason, before the deadline, to at most the
/// regulation's limit (R16). `until`: the new deadline, default the limit.
pub fn extend(r: &Request, now: i64, reason: &str, until: Option<i64>) -> Result<Request, Refusal> {
    if r.status.is_closed() {
        return Err(Refusal::Closed);
    }
    if r.extended_at.is_some() {
        return Err(Refusal::AlreadyExtended);
    }
    if now >= r.due_at {
        return Err(Refusal::PastDue);
    }
    if reason.trim().is_empty() {
        return Err(Refusal::ReasonRequired);
    }
    let limit = max_extended_due(r.regulation, r.received_at);
    let new_due = until.unwrap_or(limit);
    if new_due > limit {
        return Err(Refusal::ExtensionTooLong);
    }
    if new_due <= r.due_at {
        return Err(Refusal::ExtensionTooShort);
    }
    let mut n = r.clone();
    n.extended_at = Some(now);
    n.extension_reason = Some(reason.trim().to_owned());
    n.due_at = new_due;
    Ok(n)
}

/// Whether the request may be carried out now: verified (or of a kind that
/// needs no verification) and approved when the policy asks for it (R17).
pub fn ready(r: &Request, needs_approval: bool) -> Result<(), Refusal> {
    if r.status.is_closed() {
        return Err(Refusal::Closed);
    }
    if r.verified_at.is_none() && !r.kind.skips_verification(r.lift) {
        return Err(Refusal::NotVerified);
    }
    if needs_approval && r.approved_at.is_none() && r.verified_at.is_some() {
        return Err(Refusal::NotApproved);
    }
    if r.status != Status::Verified {
        return Err(Refusal::NotVerified);
    }
    Ok(())
}

/// Carried out: `completed` or `partially_completed`, with the outcome.
pub fn complete(
    r: &Request,
    now: i64,
    needs_approval: bool,
    partial: bool,
    result: Option<String>,
) -> Result<Request, Refusal> {
    ready(r, needs_approval)?;
    let mut n = r.clone();
    n.status = if partial {
        Status::PartiallyCompleted
    } else {
        Status::Completed
    };
    n.responded_at = Some(now);
    n.result = result;
    n.changes = None;
    Ok(n)
}

/// A verified duplicate joins the open request `into`.
pub fn merge(r: &Request, into: Uuid, now: i64) -> Result<Request, Refusal> {
    if r.status.is_closed() {
        return Err(Refusal::Closed);
    }
    let mut n = r.clone();
    n.status = Status::Merged;
    n.merged_into = Some(into);
    n.responded_at = Some(now);
    n.changes = None;
    Ok(n)
}

/// Two requests ask for the same thing (so the later one is merged).
pub fn same_ask(a: &Request, b: &Request) -> bool {
    a.kind == b.kind
        && a.kind != Kind::Rectification
        && a.customer_id.is_some()
        && a.customer_id == b.customer_id
        && a.lift == b.lift
        && a.purpose == b.purpose
}

/// Yearly figures for one kind (R20).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KindMetrics {
    pub received: u64,
    pub completed: u64,
    pub partially_completed: u64,
    pub denied: u64,
    /// Still open (neither completed nor denied).
    pub open: u64,
    /// Median days from receipt to response, over the answered requests.
    pub median_days: Option<f64>,
}

/// Metrics over the requests received in a period (duplicates merged into
/// another request are not counted twice).
pub fn metrics<'a>(requests: impl IntoIterator<Item = &'a Request>) -> KindMetrics {
    let mut m = KindMetrics::default();
    let mut days = Vec::new();
    for r in requests {
        if r.status == Status::Merged {
            continue;
        }
        m.received += 1;
        match r.status {
            Status::Completed => m.completed += 1,
            Status::PartiallyCompleted => m.partially_completed += 1,
            Status::Denied => m.denied += 1,
            _ => m.open += 1,
        }
        if let Some(at) = r.responded_at {
            days.push((at - r.received_at) as f64 / DAY_US as f64);
        }
    }
    m.median_days = median(&mut days);
    m
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let m = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Some((m * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;

    fn t(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    fn req(kind: Kind, reg: Regulation, at: &str) -> Request {
        Request::file(
            Uuid::now_v7(),
            Filing {
                kind,
                regulation: reg,
                channel: "web".into(),
                customer_id: Some(Uuid::now_v7()),
                identifier_field: Some("email".into()),
                filed_by: "data_subject".into(),
                purpose: None,
                lift: false,
                language: Language::En,
            },
            t(at),
        )
    }

    #[test]
    fn gdpr_deadline_is_one_calendar_month() {
        assert_eq!(
            due_at(Regulation::Gdpr, t("2026-03-15T10:00:00Z")),
            t("2026-04-15T10:00:00Z")
        );
        // The end of a shorter month is used.
        assert_eq!(
            due_at(Regulation::Gdpr, t("2026-01-31T09:30:00Z")),
            t("2026-02-28T09:30:00Z")
        );
        assert_eq!(
            due_at(Regulation::Gdpr, t("2028-01-31T00:00:00Z")),
            t("2028-02-29T00:00:00Z")
        );
        assert_eq!(
            due_at(Regulation::Gdpr, t("2026-12-10T00:00:00Z")),
            t("2027-01-10T00:00:00Z")
        );
    }

    #[test]
    fn ccpa_deadline_is_45_days() {
        assert_eq!(
            due_at(Regulation::Ccpa, t("2026-03-15T10:00:00Z")),
            t("2026-04-29T10:00:00Z")
        );
    }

    #[test]
    fn extension_limits() {
        assert_eq!(
            max_extended_due(Regulation::Gdpr, t("2026-01-31T00:00:00Z")),
            t("2026-04-30T00:00:00Z")
        );
        assert_eq!(
            max_extended_due(Regulation::Ccpa, t("2026-03-15T10:00:00Z")),
            t("2026-06-13T10:00:00Z")
        );
    }

    #[test]
    fn extend_once_with_reason_before_due_up_to_the_limit() {
        let r = req(Kind::Access, Regulation::Gdpr, "2026-03-01T00:00:00Z");
        let now = t("2026-03-20T00:00:00Z");
        assert_eq!(extend(&r, now, "  ", None), Err(Refusal::ReasonRequired));
        assert_eq!(
            extend(&r, now, "complex", Some(t("2026-06-02T00:00:00Z"))),
            Err(Refusal::ExtensionTooLong)
        );
        assert_eq!(
            extend(&r, now, "complex", Some(t("2026-03-30T00:00:00Z"))),
            Err(Refusal::ExtensionTooShort)
        );
        let e = extend(&r, now, "many requests", None).unwrap();
        assert_eq!(e.due_at, t("2026-06-01T00:00:00Z"));
        assert_eq!(e.extension_reason.as_deref(), Some("many requests"));
        assert_eq!(
            extend(&e, now, "again", None),
            Err(Refusal::AlreadyExtended)
        );
        // Not after the deadline.
        assert_eq!(
            extend(&r, t("2026-04-01T00:00:00Z"), "late", None),
            Err(Refusal::PastDue)
        );
        let ccpa = req(Kind::Erasure, Regulation::Ccpa, "2026-03-01T00:00:00Z");
        let e = extend(&ccpa, now, "complex", Some(t("2026-05-01T00:00:00Z"))).unwrap();
        assert_eq!(e.due_at, t("2026-05-01T00:00:00Z"));
    }

    #[test]
    fn codes_expire_count_attempts_and_deny_after_the_last() {
        let now = t("2026-03-01T00:00:00Z");
        let r = req(Kind::Erasure, Regulation::Gdpr, "2026-03-01T00:00:00Z");
        assert_eq!(check_code_allowed(&r, now), Err(Refusal::NotVerifying));
        let mut r = send_code(&r, "phc".into(), now + 1_800_000_000).unwrap();
        assert_eq!(r.status, Status::Verifying);
        assert_eq!(check_code_allowed(&r, now), Ok(()));
        assert_eq!(
            check_code_allowed(&r, now + 1_800_000_000),
            Err(Refusal::CodeExpired)
        );
        for i in 1..MAX_CODE_ATTEMPTS {
            let (n, why) = wrong_code(&r, now);
            assert_eq!(why, Refusal::InvalidCode);
            assert_eq!(n.code_attempts, i);
            r = n;
            assert_eq!(check_code_allowed(&r, now), Ok(()));
        }
        let (n, why) = wrong_code(&r, now);
        assert_eq!(why, Refusal::TooManyAttempts);
        assert_eq!(n.status, Status::Denied);
        assert_eq!(n.denial_reason, Some(DenialReason::TooManyAttempts));
        assert_eq!(check_code_allowed(&n, now), Err(Refusal::TooManyAttempts));
        // A new code does not reset the attempts.
        let again = send_code(&r, "phc2".into(), now + 10).unwrap();
        assert_eq!(again.code_attempts, MAX_CODE_ATTEMPTS - 1);
    }

    #[test]
    fn a_code_is_used_once() {
        let now = t("2026-03-01T00:00:00Z");
        let r = req(Kind::Access, Regulation::Gdpr, "2026-03-01T00:00:00Z");
        let r = send_code(&r, "phc".into(), now + 10).unwrap();
        let v = verified(&r, now, "code", "data_subject", false).unwrap();
        assert_eq!(v.status, Status::Verified);
        assert!(v.code_hash.is_none());
        assert_eq!(check_code_allowed(&v, now), Err(Refusal::AlreadyVerified));
        assert_eq!(
            verified(&v, now, "code", "x", false),
            Err(Refusal::AlreadyVerified)
        );
    }

    #[test]
    fn nothing_completes_unverified_except_opt_out_and_limit() {
        let now = t("2026-03-01T00:00:00Z");
        for kind in [
            Kind::Access,
            Kind::Portability,
            Kind::Erasure,
            Kind::Rectification,
            Kind::Restriction,
            Kind::Objection,
        ] {
            let r = req(kind, Regulation::Gdpr, "2026-03-01T00:00:00Z");
            assert_eq!(
                complete(&r, now, false, false, None),
                Err(Refusal::NotVerified),
                "{kind}"
            );
            assert_eq!(accept_unverified(&r), Err(Refusal::NotVerified));
        }
        for kind in [Kind::OptOutSale, Kind::LimitSensitive] {
            let r = req(kind, Regulation::Ccpa, "2026-03-01T00:00:00Z");
            let a = accept_unverified(&r).unwrap();
            let c = complete(&a, now, false, false, None).unwrap();
            assert_eq!(c.status, Status::Completed);
            // Opting back in is confirmed separately.
            let mut lift = r.clone();
            lift.lift = true;
            assert_eq!(accept_unverified(&lift), Err(Refusal::NotVerified));
        }
    }

    #[test]
    fn approval_is_required_when_the_policy_says_so() {
        let now = t("2026-03-01T00:00:00Z");
        let r = req(Kind::Erasure, Regulation::Gdpr, "2026-03-01T00:00:00Z");
        let v = verified(&r, now, "id_document_checked", "staff", true).unwrap();
        assert_eq!(v.status, Status::AwaitingApproval);
        assert_eq!(
            complete(&v, now, true, false, None),
            Err(Refusal::NotApproved)
        );
        let a = approve(&v, now, "dpo").unwrap();
        assert_eq!(a.status, Status::Verified);
        assert_eq!(approve(&a, now, "dpo"), Err(Refusal::NotAwaitingApproval));
        let c = complete(&a, now, true, true, Some("{}".into())).unwrap();
        assert_eq!(c.status, Status::PartiallyCompleted);
        assert_eq!(c.responded_at, Some(now));
    }

    #[test]
    fn closed_requests_do_not_move() {
        let now = t("2026-03-01T00:00:00Z");
        let r = req(Kind::Erasure, Regulation::Gdpr, "2026-03-01T00:00:00Z");
        let v = verified(&r, now, "code", "x", true).unwrap();
        let d = deny(&v, now, DenialReason::ManifestlyUnfounded, None).unwrap();
        assert_eq!(d.status, Status::Denied);
        assert_eq!(approve(&d, now, "dpo"), Err(Refusal::Closed));
        assert_eq!(
            deny(&d, now, DenialReason::Other, None),
            Err(Refusal::Closed)
        );
        assert_eq!(extend(&d, now, "x", None), Err(Refusal::Closed));
        assert_eq!(check_code_allowed(&d, now), Err(Refusal::Closed));
        assert_eq!(merge(&d, Uuid::now_v7(), now), Err(Refusal::Closed));
    }

    #[test]
    fn overdue_only_while_open() {
        let r = req(Kind::Access, Regulation::Ccpa, "2026-03-01T00:00:00Z");
        assert!(!r.is_overdue(t("2026-04-15T00:00:00Z")));
        assert!(r.is_overdue(t("2026-04-16T00:00:00Z")));
        let d = deny(&r, t("2026-03-02T00:00:00Z"), DenialReason::Other, None).unwrap();
        assert!(!d.is_overdue(t("2026-05-01T00:00:00Z")));
    }

    #[test]
    fn metrics_count_outcomes_and_median_days() {
        let a = req(Kind::Access, Regulation::Gdpr, "2026-03-01T00:00:00Z");
        let mut done = verified(&a, t("2026-03-01T00:00:00Z"), "code", "x", false).unwrap();
        done = complete(&done, t("2026-03-04T00:00:00Z"), false, false, None).unwrap();
        let mut done2 = verified(&a, t("2026-03-01T00:00:00Z"), "code", "x", false).unwrap();
        done2 = complete(&done2, t("2026-03-11T00:00:00Z"), false, true, None).unwrap();
        let denied = deny(&a, t("2026-03-02T00:00:00Z"), DenialReason::Other, None).unwrap();
        let merged = merge(&a, Uuid::now_v7(), t("2026-03-02T00:00:00Z")).unwrap();
        let m = metrics([&a, &done, &done2, &denied, &merged]);
        assert_eq!(m.received, 4);
        assert_eq!(m.completed, 1);
        assert_eq!(m.partially_completed, 1);
        assert_eq!(m.denied, 1);
        assert_eq!(m.open, 1);
        // 3, 10 and 1 days: the median is 3.
        assert_eq!(m.median_days, Some(3.0));
        assert_eq!(metrics([&a]).median_days, None);
        assert_eq!(median(&mut [1.0, 2.0]), Some(1.5));
    }

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(
            Kind::ALL.len(),
            crate::policy::REQUEST_KINDS.len(),
            "every kind the policy may name"
        );
        for k in crate::policy::REQUEST_KINDS {
            assert!(Kind::parse(k).is_some(), "{k}");
        }
        assert_eq!(Kind::parse("delete_everything"), None);
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(*s));
        }
    }
}
