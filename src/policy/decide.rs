//! The access decision (DESIGN.md §2): may this role see this field value
//! for this purpose, and if not, why not.
//!
//! Pure functions over the policy and the facts the caller loaded: no I/O
//! and no clock (`now` is a parameter). The request-level checks
//! ([`check_read_purpose`], [`check_write_purpose`]) run once per request;
//! [`decide`] runs once per field value, its steps in the documented order,
//! so the first failing step names the reason.

use std::collections::BTreeSet;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use super::{
    FieldDef, LegalBasis, Mask, Policy, Purpose, Role, SpecialCategoryCondition, ancestors_or_self,
    covers,
};

/// Why a request's purpose is refused (steps 1–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PurposeError {
    #[error("a purpose is required")]
    Required,
    #[error("the purpose is not declared in the policy")]
    Unknown,
    #[error("the role may not use this purpose")]
    NotPermitted,
}

impl PurposeError {
    pub fn code(self) -> &'static str {
        match self {
            PurposeError::Required => "purpose_required",
            PurposeError::Unknown => "unknown_purpose",
            PurposeError::NotPermitted => "purpose_not_permitted",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            PurposeError::Required | PurposeError::Unknown => 400,
            PurposeError::NotPermitted => 403,
        }
    }
}

fn declared<'p>(policy: &'p Policy, purpose: Option<&str>) -> Result<&'p Purpose, PurposeError> {
    let name = purpose.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(PurposeError::Required);
    }
    policy.purpose(name).ok_or(PurposeError::Unknown)
}

/// Steps 1–2 for a read: the purpose is given and declared, and some read
/// grant of the role covers it.
pub fn check_read_purpose<'p>(
    policy: &'p Policy,
    role: &Role,
    purpose: Option<&str>,
) -> Result<&'p Purpose, PurposeError> {
    let purpose = declared(policy, purpose)?;
    if role.may_read(&purpose.name) {
        Ok(purpose)
    } else {
        Err(PurposeError::NotPermitted)
    }
}

/// Steps 1–2 for a write: the purpose is given and declared, and some
/// write grant of the role covers it.
pub fn check_write_purpose<'p>(
    policy: &'p Policy,
    role: &Role,
    purpose: Option<&str>,
) -> Result<&'p Purpose, PurposeError> {
    let purpose = declared(policy, purpose)?;
    if role.may_write(&purpose.name) {
        Ok(purpose)
    } else {
        Err(PurposeError::NotPermitted)
    }
}

/// One purpose a stored value was collected for, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedFor {
    pub purpose: String,
    pub collected_at: OffsetDateTime,
}

/// What the data subject asked for that limits processing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectState {
    /// Processing restricted (GDPR Art. 18).
    pub restricted: bool,
    /// Purpose prefixes the subject objected to (GDPR Art. 21); an
    /// objection to `marketing` covers `marketing.email`.
    pub objections: Vec<String>,
    /// Opted out of sale or sharing (CCPA §1798.120).
    pub opted_out_sale: bool,
    /// Limited the use of sensitive data (CCPA §1798.121).
    pub limit_sensitive: bool,
}

/// The subject's current consents.
pub trait ConsentView {
    /// True when an active consent for exactly `purpose` exists.
    fn active(&self, purpose: &str) -> bool;

    /// True when an active consent for exactly `purpose` exists and was
    /// recorded as explicit (GDPR Art. 9(2)(a)). None by default.
    fn explicit(&self, _purpose: &str) -> bool {
        false
    }
}

impl<F: Fn(&str) -> bool> ConsentView for F {
    fn active(&self, purpose: &str) -> bool {
        self(purpose)
    }
}

impl ConsentView for BTreeSet<String> {
    fn active(&self, purpose: &str) -> bool {
        self.contains(purpose)
    }
}

/// Why a value is withheld: a stable code returned to the caller and
/// written to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    NotCollectedForPurpose,
    NoConsent,
    Objected,
    Restricted,
    OptedOut,
    Limited,
    Expired,
    /// The role's view of the field for this purpose is the `hidden` mask.
    Hidden,
    /// A GDPR Art. 9 special-category value and a purpose that declares no
    /// Art. 9(2) condition.
    SpecialCategory,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::NotCollectedForPurpose,
        Reason::NoConsent,
        Reason::Objected,
        Reason::Restricted,
        Reason::OptedOut,
        Reason::Limited,
        Reason::Expired,
        Reason::Hidden,
        Reason::SpecialCategory,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::NotCollectedForPurpose => "not_collected_for_purpose",
            Reason::NoConsent => "no_consent",
            Reason::Objected => "objected",
            Reason::Restricted => "restricted",
            Reason::OptedOut => "opted_out",
            Reason::Limited => "limited",
            Reason::Expired => "expired",
            Reason::Hidden => "hidden",
            Reason::SpecialCategory => "special_category",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

/// The outcome for one field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Return the value, through `mask` when there is one.
    Allowed { mask: Option<Mask> },
    /// List the field with the reason, never the value.
    Withheld(Reason),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The reason when withheld.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Allowed { .. } => None,
            Decision::Withheld(reason) => Some(*reason),
        }
    }
}

/// True when the subject consented to `purpose` or one of its ancestors
/// (a consent to `marketing` covers `marketing.email`).
pub fn consented(consents: &dyn ConsentView, purpose: &str) -> bool {
    ancestors_or_self(purpose).any(|a| consents.active(a))
}

/// True when the subject's explicit consent covers `purpose` (a consent to
/// it or to one of its ancestors, active and recorded as explicit).
pub fn consented_explicitly(consents: &dyn ConsentView, purpose: &str) -> bool {
    ancestors_or_self(purpose).any(|a| consents.explicit(a))
}

/// The Art. 9(2) condition a read or collection of `field` for `purpose`
/// relies on: `None` when the field is not a special category, or when the
/// purpose declares no condition.
pub fn special_category_condition(
    purpose: &Purpose,
    field: &FieldDef,
) -> Option<SpecialCategoryCondition> {
    if field.special_category {
        purpose.special_category_condition
    } else {
        None
    }
}

/// Steps 3–10 of the access decision for one field value, read by `role`
/// for `purpose` (which passed [`check_read_purpose`]).
#[allow(clippy::too_many_arguments)]
pub fn decide(
    policy: &Policy,
    role: &Role,
    purpose: &Purpose,
    field: &FieldDef,
    collected: &[CollectedFor],
    subject: &SubjectState,
    consents: &dyn ConsentView,
    now: OffsetDateTime,
) -> Decision {
    let p = purpose.name.as_str();

    // 3. Collected for P or an ancestor of P.
    let serving: Vec<&CollectedFor> = collected.iter().filter(|c| covers(&c.purpose, p)).collect();
    if serving.is_empty() {
        return Decision::Withheld(Reason::NotCollectedForPurpose);
    }

    // 4. Consent, for a consent-based purpose.
    if purpose.basis == LegalBasis::Consent && !consented(consents, p) {
        return Decision::Withheld(Reason::NoConsent);
    }

    // 4a. GDPR Art. 9: a special-category value serves only a purpose that
    //     declares an Art. 9(2) condition; explicit consent must be active
    //     and recorded as explicit.
    if field.special_category {
        match purpose.special_category_condition {
            None => return Decision::Withheld(Reason::SpecialCategory),
            Some(SpecialCategoryCondition::ExplicitConsent)
                if !consented_explicitly(consents, p) =>
            {
                return Decision::Withheld(Reason::NoConsent);
            }
            Some(_) => {}
        }
    }

    // 5. Objection to P or an ancestor.
    if subject.objections.iter().any(|o| covers(o, p)) {
        return Decision::Withheld(Reason::Objected);
    }

    // 6. Restriction.
    if subject.restricted && !purpose.allowed_when_restricted {
        return Decision::Withheld(Reason::Restricted);
    }

    // 7. Opt-out of sale or sharing.
    if purpose.sale_or_sharing && subject.opted_out_sale {
        return Decision::Withheld(Reason::OptedOut);
    }

    // 8. Limit on the use of sensitive data (CCPA §1798.121, 11 CCR
    //    §7027(m): only `essential` purposes).
    if field.sensitive && subject.limit_sensitive && !purpose.essential {
        return Decision::Withheld(Reason::Limited);
    }

    // 9. Retention: expired when it has run out for every collected purpose
    //    that serves P. A collected purpose missing from the policy keeps
    //    nothing alive.
    let retained = serving.iter().any(|c| {
        policy
            .purpose(&c.purpose)
            .is_some_and(|cp| cp.retention.end_from(c.collected_at) > now)
    });
    if !retained {
        return Decision::Withheld(Reason::Expired);
    }

    // 10. Allowed, through the role's mask for (P, field).
    match policy.mask_for(role, p, &field.name) {
        Some(Mask::Hidden) => Decision::Withheld(Reason::Hidden),
        mask => Decision::Allowed { mask },
    }
}

/// Why a value may not be collected for a purpose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectError {
    #[error("a value must be collected for at least one purpose")]
    NoPurpose,
    #[error("purpose \"{0}\" is not declared in the policy")]
    UnknownPurpose(String),
    #[error("field \"{field}\" may not be collected for purpose \"{purpose}\"")]
    PurposeNotAllowedForField { field: String, purpose: String },
    #[error("the role may not collect for purpose \"{0}\"")]
    NotPermitted(String),
    #[error(
        "field \"{field}\" is a special category (GDPR Art. 9) and purpose \"{purpose}\" declares no Art. 9(2) condition"
    )]
    NoSpecialCategoryCondition { field: String, purpose: String },
}

impl CollectError {
    pub fn code(&self) -> &'static str {
        match self {
            CollectError::NoPurpose => "purpose_required",
            CollectError::UnknownPurpose(_) => "unknown_purpose",
            CollectError::PurposeNotAllowedForField { .. }
            | CollectError::NoSpecialCategoryCondition { .. } => "purpose_not_allowed_for_field",
            CollectError::NotPermitted(_) => "purpose_not_permitted",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            CollectError::NotPermitted(_) => 403,
            _ => 400,
        }
    }
}

/// The write check for one value: every purpose it is collected for is
/// declared, allowed for the field (some entry of `field.purposes` covers
/// it) and covered by a write grant of the role. Consent is checked by the
/// caller with [`consent_needed`].
pub fn check_collect(
    policy: &Policy,
    role: &Role,
    field: &FieldDef,
    purposes: &[String],
) -> Result<(), CollectError> {
    if purposes.is_empty() {
        return Err(CollectError::NoPurpose);
    }
    for purpose in purposes {
        if policy.purpose(purpose).is_none() {
            return Err(CollectError::UnknownPurpose(purpose.clone()));
        }
        if !field
            .purposes
            .iter()
            .any(|allowed| covers(allowed, purpose))
        {
            return Err(CollectError::PurposeNotAllowedForField {
                field: field.name.clone(),
                purpose: purpose.clone(),
            });
        }
        if !role.may_write(purpose) {
            return Err(CollectError::NotPermitted(purpose.clone()));
        }
        let declared = policy.purpose(purpose);
        if field.special_category && declared.is_none_or(|p| p.special_category_condition.is_none())
        {
            return Err(CollectError::NoSpecialCategoryCondition {
                field: field.name.clone(),
                purpose: purpose.clone(),
            });
        }
    }
    Ok(())
}

/// The purposes among `purposes` for which collecting a value of `field`
/// relies on explicit consent (a special-category field and a purpose whose
/// condition is `explicit_consent`), each once, in the order given:
/// collecting needs an active explicit consent (given before or in the same
/// request), else 422 `consent_required`.
pub fn explicit_consent_needed(
    policy: &Policy,
    field: &FieldDef,
    purposes: &[String],
) -> Vec<String> {
    let mut needed: Vec<String> = Vec::new();
    if !field.special_category {
        return needed;
    }
    for purpose in purposes {
        let explicit = policy.purpose(purpose).is_some_and(|p| {
            p.special_category_condition == Some(SpecialCategoryCondition::ExplicitConsent)
        });
        if explicit && !needed.contains(purpose) {
            needed.push(purpose.clone());
        }
    }
    needed
}

/// The purposes among `purposes` whose basis is consent, each once, in the
/// order given: collecting for them needs an active consent (given before
/// or in the same request), else 422 `consent_required`.
pub fn consent_needed(policy: &Policy, purposes: &[String]) -> Vec<String> {
    let mut needed: Vec<String> = Vec::new();
    for purpose in purposes {
        let consent_based = policy
            .purpose(purpose)
            .is_some_and(|p| p.basis == LegalBasis::Consent);
        if consent_based && !needed.contains(purpose) {
            needed.push(purpose.clone());
        }
    }
    needed
}

/// The purposes among `purposes` whose basis is consent and that no active
/// consent (for the purpose or an ancestor) covers: a non-empty answer is
/// 422 `consent_required`.
pub fn consent_missing(
    policy: &Policy,
    purposes: &[String],
    consents: &dyn ConsentView,
) -> Vec<String> {
    consent_needed(policy, purposes)
        .into_iter()
        .filter(|p| !consented(consents, p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::apply_mask;
    use std::path::Path;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00 UTC);

    fn default_policy() -> Policy {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        match Policy::load_dir(&dir) {
            Ok(policy) => policy,
            Err(errors) => panic!("the default policy does not load:\n{errors}"),
        }
    }

    /// A policy with what the default one lacks: a sensitive field that
    /// may serve non-essential purposes and a role reading a
    /// sale-or-sharing purpose.
    fn test_policy() -> Policy {
        let text = r#"
[controller]
name = "Test Ltd"
contact = "privacy@test.example"

[purposes.support]
basis = "contract"
retention = "2 years"
description = "Support"
essential = true

[purposes.analytics]
basis = "legitimate_interest"
retention = "1 year"
description = "Analytics"

[purposes.partner_sharing]
basis = "consent"
retention = "1 year"
description = "Partners"
sale_or_sharing = true

[purposes.research]
basis = "legitimate_interest"
retention = "1 year"
description = "Research"
sale_or_sharing = true

[fields.health]
type = "text"
category = "user.health"
purposes = ["support", "analytics", "partner_sharing", "research"]
sensitive = true

[fields.email]
type = "email"
category = "user.contact.email"
purposes = ["support", "partner_sharing", "research"]

[roles.reader]
read = ["support", "analytics", "partner_sharing", "research"]
"#;
        match Policy::from_sources(&[("test.toml".to_owned(), text.to_owned())]) {
            Ok(policy) => policy,
            Err(errors) => panic!("the test policy does not load:\n{errors}"),
        }
    }

    fn role<'p>(policy: &'p Policy, name: &str) -> &'p Role {
        match policy.role(name) {
            Some(role) => role,
            None => panic!("no role {name}"),
        }
    }

    fn field<'p>(policy: &'p Policy, name: &str) -> &'p FieldDef {
        match policy.field(name) {
            Some(field) => field,
            None => panic!("no field {name}"),
        }
    }

    /// Collected for each purpose, `days_ago` days before NOW.
    fn collected(purposes: &[(&str, i64)]) -> Vec<CollectedFor> {
        purposes
            .iter()
            .map(|(p, days_ago)| CollectedFor {
                purpose: (*p).to_owned(),
                collected_at: NOW - time::Duration::days(*days_ago),
            })
            .collect()
    }

    fn consents(purposes: &[&str]) -> BTreeSet<String> {
        purposes.iter().map(|p| (*p).to_owned()).collect()
    }

    /// A read for `purpose` by `role_name`, through the request-level check
    /// first, as the vault does it.
    struct Read<'a> {
        policy: &'a Policy,
        role: &'a str,
        purpose: &'a str,
        field: &'a str,
        collected: Vec<CollectedFor>,
        subject: SubjectState,
        consents: BTreeSet<String>,
        now: OffsetDateTime,
    }

    impl<'a> Read<'a> {
        fn new(policy: &'a Policy, role: &'a str, purpose: &'a str, field: &'a str) -> Self {
            Read {
                policy,
                role,
                purpose,
                field,
                collected: Vec::new(),
                subject: SubjectState::default(),
                consents: BTreeSet::new(),
                now: NOW,
            }
        }

        fn collected(mut self, purposes: &[&str]) -> Self {
            let with_age: Vec<(&str, i64)> = purposes.iter().map(|p| (*p, 1)).collect();
            self.collected = collected(&with_age);
            self
        }

        fn collected_days_ago(mut self, purposes: &[(&str, i64)]) -> Self {
            self.collected = collected(purposes);
            self
        }

        fn consents(mut self, purposes: &[&str]) -> Self {
            self.consents = consents(purposes);
            self
        }

        fn subject(mut self, subject: SubjectState) -> Self {
            self.subject = subject;
            self
        }

        fn decide(&self) -> Decision {
            let role = role(self.policy, self.role);
            let purpose = match check_read_purpose(self.policy, role, Some(self.purpose)) {
                Ok(purpose) => purpose,
                Err(e) => panic!("{} may not read for {}: {e}", self.role, self.purpose),
            };
            decide(
                self.policy,
                role,
                purpose,
                field(self.policy, self.field),
                &self.collected,
                &self.subject,
                &self.consents,
                self.now,
            )
        }
    }

    const FULL: Decision = Decision::Allowed { mask: None };

    fn withheld(reason: Reason) -> Decision {
        Decision::Withheld(reason)
    }

    // Steps 1–2: the request's purpose.

    #[test]
    fn step1_a_purpose_is_required_and_must_be_declared() {
        let policy = default_policy();
        let helpdesk = role(&policy, "helpdesk");
        for missing in [None, Some(""), Some("   ")] {
            assert_eq!(
                check_read_purpose(&policy, helpdesk, missing).err(),
                Some(PurposeError::Required)
            );
            assert_eq!(
                check_write_purpose(&policy, helpdesk, missing).err(),
                Some(PurposeError::Required)
            );
        }
        for unknown in ["marketing.fax", "Support", "support.", "supportx"] {
            assert_eq!(
                check_read_purpose(&policy, helpdesk, Some(unknown)).err(),
                Some(PurposeError::Unknown),
                "{unknown}"
            );
        }
        assert_eq!(
            check_write_purpose(&policy, helpdesk, Some("sales")).err(),
            Some(PurposeError::Unknown)
        );
    }

    #[test]
    fn step2_the_role_must_hold_a_covering_grant() {
        let policy = default_policy();
        let read = |r: &str, p: &str| {
            check_read_purpose(&policy, role(&policy, r), Some(p)).map(|p| p.name.clone())
        };
        assert_eq!(read("helpdesk", "support"), Ok("support".to_owned()));
        assert_eq!(
            read("helpdesk", "support.callback"),
            Ok("support.callback".to_owned())
        );
        assert_eq!(
            read("marketing_tool", "marketing.email"),
            Ok("marketing.email".to_owned())
        );
        assert_eq!(
            read("marketing_tool", "marketing.sms"),
            Ok("marketing.sms".to_owned())
        );
        assert_eq!(
            read("helpdesk", "marketing"),
            Err(PurposeError::NotPermitted)
        );
        assert_eq!(read("helpdesk", "billing"), Err(PurposeError::NotPermitted));
        assert_eq!(
            read("marketing_tool", "support"),
            Err(PurposeError::NotPermitted)
        );
        assert_eq!(read("dpo", "legal"), Err(PurposeError::NotPermitted));
        assert_eq!(read("dpo", "legal.claims"), Ok("legal.claims".to_owned()));
        assert_eq!(read("auditor", "support"), Err(PurposeError::NotPermitted));

        let write = |r: &str, p: &str| {
            check_write_purpose(&policy, role(&policy, r), Some(p)).map(|p| p.name.clone())
        };
        assert_eq!(
            write("helpdesk", "marketing.email"),
            Ok("marketing.email".to_owned())
        );
        assert_eq!(
            write("helpdesk", "legal.claims"),
            Ok("legal.claims".to_owned())
        );
        assert_eq!(write("helpdesk", "legal"), Err(PurposeError::NotPermitted));
        assert_eq!(
            write("marketing_tool", "marketing"),
            Err(PurposeError::NotPermitted)
        );
        assert_eq!(write("billing_system", "billing"), Ok("billing".to_owned()));
    }

    #[test]
    fn purpose_error_codes_and_statuses() {
        assert_eq!(
            [
                PurposeError::Required,
                PurposeError::Unknown,
                PurposeError::NotPermitted
            ]
            .map(|e| (e.code(), e.status())),
            [
                ("purpose_required", 400),
                ("unknown_purpose", 400),
                ("purpose_not_permitted", 403)
            ]
        );
    }

    // Step 3: collected for P or an ancestor of P.

    #[test]
    fn step3_a_value_collected_for_a_parent_serves_its_children_not_the_reverse() {
        let policy = default_policy();
        let read = |purpose, collected_for: &[&str]| {
            Read::new(&policy, "helpdesk", purpose, "address")
                .collected(collected_for)
                .decide()
        };
        assert_eq!(read("support.callback", &["support"]), FULL);
        assert_eq!(read("support", &["support"]), FULL);
        assert_eq!(
            read("support", &["support.callback"]),
            withheld(Reason::NotCollectedForPurpose)
        );
        assert_eq!(
            read("support", &["billing"]),
            withheld(Reason::NotCollectedForPurpose)
        );
        assert_eq!(
            read("support", &[]),
            withheld(Reason::NotCollectedForPurpose)
        );
    }

    #[test]
    fn step3_r3_a_callback_phone_is_not_for_marketing() {
        let policy = default_policy();
        let callback = Read::new(&policy, "helpdesk", "support.callback", "phone")
            .collected(&["support.callback"]);
        assert_eq!(callback.decide(), FULL);
        let sms = Read::new(&policy, "marketing_tool", "marketing.sms", "phone")
            .collected(&["support.callback"])
            .consents(&["marketing", "marketing.sms"]);
        assert_eq!(sms.decide(), withheld(Reason::NotCollectedForPurpose));
        let sms = sms.collected(&["support.callback", "marketing.sms"]);
        assert_eq!(sms.decide(), FULL);
    }

    #[test]
    fn step3_a_grant_of_marketing_covers_marketing_email() {
        let policy = default_policy();
        let read = Read::new(&policy, "marketing_tool", "marketing.email", "email")
            .collected(&["marketing.email"])
            .consents(&["marketing.email"]);
        assert_eq!(read.decide(), FULL);
    }

    // Step 4: consent.

    #[test]
    fn step4_a_consent_based_purpose_needs_an_active_consent_for_it_or_an_ancestor() {
        let policy = default_policy();
        let read = |consented: &[&str]| {
            Read::new(&policy, "marketing_tool", "marketing.email", "email")
                .collected(&["marketing.email"])
                .consents(consented)
                .decide()
        };
        assert_eq!(read(&[]), withheld(Reason::NoConsent));
        assert_eq!(read(&["marketing.sms"]), withheld(Reason::NoConsent));
        assert_eq!(read(&["partner_sharing"]), withheld(Reason::NoConsent));
        assert_eq!(read(&["marketing.email"]), FULL);
        assert_eq!(read(&["marketing"]), FULL);

        // A consent to a child does not cover its parent.
        let parent = Read::new(&policy, "marketing_tool", "marketing", "name")
            .collected(&["marketing"])
            .consents(&["marketing.email"]);
        assert_eq!(parent.decide(), withheld(Reason::NoConsent));
        assert_eq!(parent.consents(&["marketing"]).decide(), FULL);
    }

    #[test]
    fn step4_consent_view_can_be_a_closure() {
        let policy = default_policy();
        let tool = role(&policy, "marketing_tool");
        let Some(purpose) = policy.purpose("marketing.sms") else {
            panic!("no marketing.sms");
        };
        let only_marketing = |p: &str| p == "marketing";
        let decision = decide(
            &policy,
            tool,
            purpose,
            field(&policy, "phone"),
            &collected(&[("marketing.sms", 1)]),
            &SubjectState::default(),
            &only_marketing,
            NOW,
        );
        assert_eq!(decision, FULL);
    }

    #[test]
    fn step4_ccpa_sensitive_alone_needs_no_consent() {
        // CCPA: using sensitive personal information is free until the
        // customer limits it (step 8); it needs no consent.
        let policy = test_policy();
        let analytics =
            Read::new(&policy, "reader", "analytics", "health").collected(&["analytics"]);
        assert_eq!(analytics.decide(), FULL);
        let limited = Read::new(&policy, "reader", "analytics", "health")
            .collected(&["analytics"])
            .subject(SubjectState {
                limit_sensitive: true,
                ..SubjectState::default()
            });
        assert_eq!(limited.decide(), withheld(Reason::Limited));
    }

    #[test]
    fn step4a_default_policy_accessibility_needs_need_explicit_consent_for_support() {
        let default = default_policy();
        let needs = |consents: Ledger| {
            decide_with(
                &default,
                "helpdesk",
                "support",
                "accessibility_needs",
                &consents,
                &SubjectState::default(),
            )
        };
        // Being needed for the service (essential) is no Art. 9(2) condition.
        assert_eq!(needs(Ledger::default()), withheld(Reason::NoConsent));
        assert_eq!(
            needs(Ledger::granted(&["support"])),
            withheld(Reason::NoConsent)
        );
        assert_eq!(needs(Ledger::explicit(&["support"])), FULL);
        // The explicit consent to support covers support.callback.
        let callback = decide_with(
            &default,
            "helpdesk",
            "support.callback",
            "accessibility_needs",
            &Ledger::explicit(&["support"]),
            &SubjectState::default(),
        );
        assert_eq!(callback, FULL);
        // national_id is CCPA sensitive only: no Art. 9 step applies.
        let id = field(&default, "national_id");
        assert!(id.sensitive && !id.special_category);
    }

    // Step 4a: GDPR Art. 9 special categories.

    /// A ledger of active consents, some recorded as explicit.
    #[derive(Default)]
    struct Ledger {
        active: BTreeSet<String>,
        explicit: BTreeSet<String>,
    }

    impl Ledger {
        fn granted(purposes: &[&str]) -> Self {
            Ledger {
                active: consents(purposes),
                explicit: BTreeSet::new(),
            }
        }

        fn explicit(purposes: &[&str]) -> Self {
            Ledger {
                active: consents(purposes),
                explicit: consents(purposes),
            }
        }
    }

    impl ConsentView for Ledger {
        fn active(&self, purpose: &str) -> bool {
            self.active.contains(purpose)
        }

        fn explicit(&self, purpose: &str) -> bool {
            self.active.contains(purpose) && self.explicit.contains(purpose)
        }
    }

    /// A read of `field` for `purpose`, the value collected for `purpose`.
    fn decide_with(
        policy: &Policy,
        role_name: &str,
        purpose: &str,
        field_name: &str,
        consents: &dyn ConsentView,
        subject: &SubjectState,
    ) -> Decision {
        let role = role(policy, role_name);
        let declared = match check_read_purpose(policy, role, Some(purpose)) {
            Ok(p) => p,
            Err(e) => panic!("{role_name} may not read for {purpose}: {e}"),
        };
        // Collected for the top-level purpose, which serves its children.
        let top = purpose.split('.').next().unwrap_or(purpose);
        decide(
            policy,
            role,
            declared,
            field(policy, field_name),
            &collected(&[(top, 1)]),
            subject,
            consents,
            NOW,
        )
    }

    /// One purpose per Art. 9(2) condition (`c_<condition>`), one without
    /// (`plain`), a consent-based one relying on explicit consent
    /// (`newsletter`), a child inheriting its parent's condition; a field
    /// that is a special category and CCPA sensitive, one that is neither.
    fn art9_policy() -> Policy {
        let mut text = String::from(
            r#"
[controller]
name = "Test Ltd"
contact = "privacy@test.example"

[purposes.plain]
basis = "contract"
retention = "2 years"
description = "No Art. 9 condition"
essential = true

[purposes.newsletter]
basis = "consent"
retention = "1 year"
description = "Consent-based"
special_category_condition = "explicit_consent"

[purposes."c_explicit_consent.child"]
description = "Inherits explicit consent"

[fields.note]
type = "text"
category = "user.content.private"
purposes = ["plain"]
"#,
        );
        let mut names = vec!["\"plain\"".to_owned(), "\"newsletter\"".to_owned()];
        for c in SpecialCategoryCondition::ALL {
            text.push_str(&format!(
                "\n[purposes.c_{c}]\nbasis = \"contract\"\nretention = \"2 years\"\n\
                 description = \"{c}\"\nspecial_category_condition = \"{c}\"\n"
            ));
            names.push(format!("\"c_{c}\""));
        }
        let list = names.join(", ");
        text.push_str(&format!(
            "\n[fields.health]\ntype = \"text\"\ncategory = \"user.health\"\n\
             purposes = [{list}]\nsensitive = true\nspecial_category = true\n\
             \n[roles.reader]\nread = [{list}]\nwrite = [{list}]\n"
        ));
        // The child comes before its parent in the text: the loader resolves
        // parents first wherever they are declared.
        match Policy::from_sources(&[("art9.toml".to_owned(), text)]) {
            Ok(policy) => policy,
            Err(errors) => panic!("the Art. 9 test policy does not load:\n{errors}"),
        }
    }

    /// What the step says for every condition × consent × explicit flag ×
    /// restriction, for a special-category value.
    fn expected(
        condition: Option<SpecialCategoryCondition>,
        consent: bool,
        explicit: bool,
        restricted: bool,
    ) -> Decision {
        match condition {
            None => withheld(Reason::SpecialCategory),
            Some(SpecialCategoryCondition::ExplicitConsent) if !(consent && explicit) => {
                withheld(Reason::NoConsent)
            }
            Some(_) if restricted => withheld(Reason::Restricted),
            Some(_) => FULL,
        }
    }

    #[test]
    fn step4a_every_condition_consent_explicit_flag_and_restriction() {
        let policy = art9_policy();
        let mut purposes: Vec<(String, Option<SpecialCategoryCondition>)> =
            vec![("plain".to_owned(), None)];
        for c in SpecialCategoryCondition::ALL {
            purposes.push((format!("c_{c}"), Some(c)));
        }
        let mut checked = 0;
        for (purpose, condition) in &purposes {
            assert_eq!(
                policy
                    .purpose(purpose)
                    .and_then(|p| p.special_category_condition),
                *condition,
                "{purpose}"
            );
            for consent in [false, true] {
                for explicit in [false, true] {
                    for restricted in [false, true] {
                        // An explicit flag without an active consent is a
                        // withdrawn explicit consent: nothing is active.
                        let ledger = match (consent, explicit) {
                            (false, _) => Ledger::default(),
                            (true, false) => Ledger::granted(&[purpose]),
                            (true, true) => Ledger::explicit(&[purpose]),
                        };
                        let subject = SubjectState {
                            restricted,
                            ..SubjectState::default()
                        };
                        let got =
                            decide_with(&policy, "reader", purpose, "health", &ledger, &subject);
                        assert_eq!(
                            got,
                            expected(*condition, consent, explicit, restricted),
                            "{purpose} consent={consent} explicit={explicit} restricted={restricted}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 11 * 8);
    }

    #[test]
    fn step4a_a_field_that_is_not_a_special_category_is_unaffected() {
        let policy = art9_policy();
        for restricted in [false, true] {
            let subject = SubjectState {
                restricted,
                ..SubjectState::default()
            };
            let got = decide_with(
                &policy,
                "reader",
                "plain",
                "note",
                &Ledger::default(),
                &subject,
            );
            let want = if restricted {
                withheld(Reason::Restricted)
            } else {
                FULL
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn step4a_explicit_consent_to_a_parent_covers_a_child_that_inherits_the_condition() {
        let policy = art9_policy();
        let child = policy.purpose("c_explicit_consent.child");
        assert_eq!(
            child.and_then(|p| p.special_category_condition),
            Some(SpecialCategoryCondition::ExplicitConsent)
        );
        let read = |ledger: Ledger| {
            decide_with(
                &policy,
                "reader",
                "c_explicit_consent.child",
                "health",
                &ledger,
                &SubjectState::default(),
            )
        };
        assert_eq!(read(Ledger::default()), withheld(Reason::NoConsent));
        assert_eq!(
            read(Ledger::granted(&["c_explicit_consent"])),
            withheld(Reason::NoConsent)
        );
        assert_eq!(read(Ledger::explicit(&["c_explicit_consent"])), FULL);
        assert_eq!(read(Ledger::explicit(&["c_explicit_consent.child"])), FULL);
    }

    #[test]
    fn step4a_a_consent_based_purpose_needs_the_consent_to_be_explicit_for_art9_values() {
        let policy = art9_policy();
        let read = |ledger: Ledger, field: &str| {
            decide_with(
                &policy,
                "reader",
                "newsletter",
                field,
                &ledger,
                &SubjectState::default(),
            )
        };
        assert_eq!(
            read(Ledger::default(), "health"),
            withheld(Reason::NoConsent)
        );
        assert_eq!(
            read(Ledger::granted(&["newsletter"]), "health"),
            withheld(Reason::NoConsent)
        );
        assert_eq!(read(Ledger::explicit(&["newsletter"]), "health"), FULL);
    }

    #[test]
    fn step4a_then_the_ccpa_limit_still_applies_to_non_essential_purposes() {
        let policy = art9_policy();
        let limited = SubjectState {
            limit_sensitive: true,
            ..SubjectState::default()
        };
        // c_explicit_consent is not essential: explicit consent passes the
        // Art. 9 step, the CCPA limit then withholds.
        let got = decide_with(
            &policy,
            "reader",
            "c_explicit_consent",
            "health",
            &Ledger::explicit(&["c_explicit_consent"]),
            &limited,
        );
        assert_eq!(got, withheld(Reason::Limited));
        // `plain` is essential, but declares no condition: Art. 9 withholds
        // first, whatever the limit.
        let got = decide_with(
            &policy,
            "reader",
            "plain",
            "health",
            &Ledger::default(),
            &limited,
        );
        assert_eq!(got, withheld(Reason::SpecialCategory));
    }

    #[test]
    fn collecting_a_special_category_value_needs_a_condition_and_explicit_consent_where_relied_on()
    {
        let policy = art9_policy();
        let reader = role(&policy, "reader");
        let health = field(&policy, "health");
        assert_eq!(
            check_collect(&policy, reader, health, &["plain".to_owned()]),
            Err(CollectError::NoSpecialCategoryCondition {
                field: "health".into(),
                purpose: "plain".into()
            })
        );
        assert_eq!(
            CollectError::NoSpecialCategoryCondition {
                field: "health".into(),
                purpose: "plain".into()
            }
            .code(),
            "purpose_not_allowed_for_field"
        );
        assert_eq!(
            check_collect(&policy, reader, health, &["c_legal_claims".to_owned()]),
            Ok(())
        );
        let purposes: Vec<String> = ["c_legal_claims", "c_explicit_consent", "c_explicit_consent"]
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        assert_eq!(
            explicit_consent_needed(&policy, health, &purposes),
            ["c_explicit_consent"]
        );
        // A field that is not a special category never needs it.
        let note = field(&policy, "note");
        assert!(explicit_consent_needed(&policy, note, &purposes).is_empty());
    }

    // Step 5: objection.

    #[test]
    fn step5_an_objection_covers_the_purpose_and_its_children() {
        let policy = default_policy();
        let objecting = |prefixes: &[&str]| SubjectState {
            objections: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            ..SubjectState::default()
        };
        let email = Read::new(&policy, "marketing_tool", "marketing.email", "email")
            .collected(&["marketing.email"])
            .consents(&["marketing.email"]);
        assert_eq!(
            email.subject(objecting(&["marketing"])).decide(),
            withheld(Reason::Objected)
        );
        let callback = Read::new(&policy, "helpdesk", "support.callback", "phone")
            .collected(&["support.callback"]);
        assert_eq!(
            callback.subject(objecting(&["support"])).decide(),
            withheld(Reason::Objected)
        );
        let support = Read::new(&policy, "helpdesk", "support", "address").collected(&["support"]);
        assert_eq!(
            support
                .subject(objecting(&["support.callback", "marketing", "supportx"]))
                .decide(),
            FULL
        );
    }

    // Step 6: restriction.

    #[test]
    fn step6_restriction_withholds_except_allowed_purposes() {
        let policy = default_policy();
        let restricted = SubjectState {
            restricted: true,
            ..SubjectState::default()
        };
        let support = Read::new(&policy, "helpdesk", "support", "address")
            .collected(&["support"])
            .subject(restricted.clone());
        assert_eq!(support.decide(), withheld(Reason::Restricted));
        let claims = Read::new(&policy, "dpo", "legal.claims", "email")
            .collected(&["legal.claims"])
            .subject(restricted);
        assert_eq!(claims.decide(), FULL);
    }

    // Step 7: opt-out of sale or sharing.

    #[test]
    fn step7_an_opt_out_withholds_sale_or_sharing_purposes() {
        let policy = test_policy();
        let opted_out = SubjectState {
            opted_out_sale: true,
            ..SubjectState::default()
        };
        let sharing = Read::new(&policy, "reader", "partner_sharing", "email")
            .collected(&["partner_sharing"])
            .consents(&["partner_sharing"]);
        assert_eq!(sharing.decide(), FULL);
        assert_eq!(
            sharing.subject(opted_out.clone()).decide(),
            withheld(Reason::OptedOut)
        );
        let support = Read::new(&policy, "reader", "support", "email")
            .collected(&["support"])
            .subject(opted_out);
        assert_eq!(support.decide(), FULL);
    }

    // Step 8: limit the use of sensitive data.

    #[test]
    fn step8_a_limit_withholds_sensitive_fields_for_non_essential_purposes() {
        let policy = test_policy();
        let limited = SubjectState {
            limit_sensitive: true,
            ..SubjectState::default()
        };
        let analytics = Read::new(&policy, "reader", "analytics", "health")
            .collected(&["analytics"])
            .consents(&["analytics"])
            .subject(limited.clone());
        assert_eq!(analytics.decide(), withheld(Reason::Limited));
        let support = Read::new(&policy, "reader", "support", "health")
            .collected(&["support"])
            .subject(limited.clone());
        assert_eq!(support.decide(), FULL);
        let not_sensitive = Read::new(&policy, "reader", "research", "email")
            .collected(&["research"])
            .subject(limited);
        assert_eq!(not_sensitive.decide(), FULL);
    }

    // Step 9: retention.

    #[test]
    fn step9_retention_ends_exactly_at_the_end_of_the_period() {
        let policy = default_policy();
        let read = |days_ago: i64| {
            Read::new(&policy, "helpdesk", "support.callback", "phone")
                .collected_days_ago(&[("support.callback", days_ago)])
                .decide()
        };
        assert_eq!(read(89), FULL);
        assert_eq!(read(90), withheld(Reason::Expired));
        assert_eq!(read(91), withheld(Reason::Expired));

        let mut edge = Read::new(&policy, "helpdesk", "support.callback", "phone");
        edge.collected = vec![CollectedFor {
            purpose: "support.callback".into(),
            collected_at: NOW - time::Duration::days(90) + time::Duration::nanoseconds(1),
        }];
        assert_eq!(edge.decide(), FULL);
    }

    #[test]
    fn step9_expired_only_when_every_serving_purpose_has_lapsed() {
        let policy = default_policy();
        // Collected for support 1 year ago: its 2-year retention serves a callback read.
        let via_parent = Read::new(&policy, "helpdesk", "support.callback", "phone")
            .collected_days_ago(&[("support", 365)]);
        assert_eq!(via_parent.decide(), FULL);
        // Support lapsed, the callback purpose still runs.
        let both = Read::new(&policy, "helpdesk", "support.callback", "phone")
            .collected_days_ago(&[("support", 3 * 365), ("support.callback", 10)]);
        assert_eq!(both.decide(), FULL);
        // A read for support is served by the support collection only.
        let support = Read::new(&policy, "helpdesk", "support", "address")
            .collected_days_ago(&[("support", 3 * 365), ("billing", 10)]);
        assert_eq!(support.decide(), withheld(Reason::Expired));
        // Calendar years: exactly two years later is the end.
        let mut two_years = Read::new(&policy, "helpdesk", "support", "address");
        two_years.collected = vec![CollectedFor {
            purpose: "support".into(),
            collected_at: datetime!(2024-06-01 12:00:00 UTC),
        }];
        assert_eq!(two_years.decide(), withheld(Reason::Expired));
        two_years.now = datetime!(2026-06-01 11:59:59 UTC);
        assert_eq!(two_years.decide(), FULL);
    }

    // Step 10: masks.

    #[test]
    fn step10_the_roles_mask_applies() {
        let policy = default_policy();
        let support = Read::new(&policy, "helpdesk", "support", "phone").collected(&["support"]);
        let decision = support.decide();
        assert_eq!(
            decision,
            Decision::Allowed {
                mask: Some(Mask::Last4)
            }
        );
        let Decision::Allowed { mask: Some(mask) } = decision else {
            panic!("not masked");
        };
        assert_eq!(
            apply_mask(mask, "+393331234567").as_deref(),
            Some("•••• 4567")
        );

        let callback =
            Read::new(&policy, "helpdesk", "support.callback", "phone").collected(&["support"]);
        assert_eq!(callback.decide(), FULL);

        // national_id is hidden from helpdesk reads for support.
        let national_id =
            Read::new(&policy, "helpdesk", "support", "national_id").collected(&["support"]);
        assert_eq!(national_id.decide(), withheld(Reason::Hidden));
    }

    // Ordering: the first failing step names the reason.

    #[test]
    fn not_collected_beats_no_consent() {
        let policy = default_policy();
        let read = Read::new(&policy, "marketing_tool", "marketing.email", "email")
            .collected(&["support"]);
        assert_eq!(read.decide(), withheld(Reason::NotCollectedForPurpose));
    }

    #[test]
    fn no_consent_beats_objection() {
        let policy = default_policy();
        let read = Read::new(&policy, "marketing_tool", "marketing.email", "email")
            .collected(&["marketing.email"])
            .subject(SubjectState {
                objections: vec!["marketing".into()],
                restricted: true,
                ..SubjectState::default()
            });
        assert_eq!(read.decide(), withheld(Reason::NoConsent));
    }

    #[test]
    fn objection_beats_restriction_beats_opt_out() {
        let policy = test_policy();
        let everything = SubjectState {
            restricted: true,
            objections: vec!["partner_sharing".into()],
            opted_out_sale: true,
            limit_sensitive: true,
        };
        let read = Read::new(&policy, "reader", "partner_sharing", "health")
            .collected(&["partner_sharing"])
            .consents(&["partner_sharing"])
            .subject(everything.clone());
        assert_eq!(read.decide(), withheld(Reason::Objected));
        let read = read.subject(SubjectState {
            objections: vec![],
            ..everything.clone()
        });
        assert_eq!(read.decide(), withheld(Reason::Restricted));
        let read = read.subject(SubjectState {
            objections: vec![],
            restricted: false,
            ..everything
        });
        assert_eq!(read.decide(), withheld(Reason::OptedOut));
    }

    #[test]
    fn limit_beats_expiry_beats_mask() {
        let policy = test_policy();
        let limited = Read::new(&policy, "reader", "research", "health")
            .collected_days_ago(&[("research", 400)])
            .consents(&["research"])
            .subject(SubjectState {
                limit_sensitive: true,
                ..SubjectState::default()
            });
        assert_eq!(limited.decide(), withheld(Reason::Limited));
        assert_eq!(
            limited.subject(SubjectState::default()).decide(),
            withheld(Reason::Expired)
        );

        let default = default_policy();
        let hidden_and_expired = Read::new(&default, "helpdesk", "support", "national_id")
            .collected_days_ago(&[("support", 3 * 365)]);
        assert_eq!(hidden_and_expired.decide(), withheld(Reason::Expired));
    }

    #[test]
    fn reason_codes_are_stable() {
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(
            codes,
            [
                "not_collected_for_purpose",
                "no_consent",
                "objected",
                "restricted",
                "opted_out",
                "limited",
                "expired",
                "hidden",
                "special_category"
            ]
        );
        for reason in Reason::ALL {
            assert_eq!(
                serde_json::to_value(reason).ok(),
                Some(reason.code().into())
            );
            assert_eq!(reason.to_string(), reason.code());
            assert_eq!(Decision::Withheld(reason).reason(), Some(reason));
            assert!(!Decision::Withheld(reason).is_allowed());
        }
        assert!(FULL.is_allowed());
        assert_eq!(FULL.reason(), None);
    }

    // Writes.

    #[test]
    fn check_collect_requires_declared_allowed_and_writable_purposes() {
        let policy = default_policy();
        let helpdesk = role(&policy, "helpdesk");
        let billing = role(&policy, "billing_system");
        let purposes = |list: &[&str]| list.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        let phone = field(&policy, "phone");
        let email = field(&policy, "email");

        assert_eq!(
            check_collect(&policy, helpdesk, phone, &purposes(&["support.callback"])),
            Ok(())
        );
        assert_eq!(
            check_collect(
                &policy,
                helpdesk,
                phone,
                &purposes(&["support", "marketing.sms"])
            ),
            Ok(())
        );
        assert_eq!(
            check_collect(
                &policy,
                helpdesk,
                email,
                &purposes(&["legal.claims", "marketing.email"])
            ),
            Ok(())
        );

        let unknown = check_collect(
            &policy,
            helpdesk,
            phone,
            &purposes(&["support", "marketing.fax"]),
        );
        assert_eq!(
            unknown,
            Err(CollectError::UnknownPurpose("marketing.fax".into()))
        );

        let not_for_field = check_collect(&policy, helpdesk, email, &purposes(&["marketing"]));
        assert_eq!(
            not_for_field,
            Err(CollectError::PurposeNotAllowedForField {
                field: "email".into(),
                purpose: "marketing".into()
            })
        );
        let not_for_field =
            check_collect(&policy, helpdesk, phone, &purposes(&["marketing.email"]));
        assert!(matches!(
            not_for_field,
            Err(CollectError::PurposeNotAllowedForField { .. })
        ));

        let not_permitted = check_collect(&policy, billing, email, &purposes(&["support"]));
        assert_eq!(
            not_permitted,
            Err(CollectError::NotPermitted("support".into()))
        );
        let not_permitted = check_collect(
            &policy,
            helpdesk,
            field(&policy, "national_id"),
            &purposes(&["fraud_prevention"]),
        );
        assert_eq!(
            not_permitted,
            Err(CollectError::NotPermitted("fraud_prevention".into()))
        );

        assert_eq!(
            check_collect(&policy, helpdesk, phone, &[]),
            Err(CollectError::NoPurpose)
        );

        let codes = [
            CollectError::NoPurpose,
            CollectError::UnknownPurpose("x".into()),
            CollectError::PurposeNotAllowedForField {
                field: "f".into(),
                purpose: "p".into(),
            },
            CollectError::NotPermitted("p".into()),
        ]
        .map(|e| (e.code(), e.status()));
        assert_eq!(
            codes,
            [
                ("purpose_required", 400),
                ("unknown_purpose", 400),
                ("purpose_not_allowed_for_field", 400),
                ("purpose_not_permitted", 403)
            ]
        );
    }

    #[test]
    fn consent_is_needed_for_consent_based_purposes() {
        let policy = default_policy();
        let purposes: Vec<String> = [
            "support",
            "marketing.email",
            "partner_sharing",
            "marketing.email",
            "billing",
        ]
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
        assert_eq!(
            consent_needed(&policy, &purposes),
            ["marketing.email", "partner_sharing"]
        );
        assert_eq!(
            consent_missing(&policy, &purposes, &consents(&["marketing"])),
            ["partner_sharing"]
        );
        assert!(
            consent_missing(
                &policy,
                &purposes,
                &consents(&["marketing.email", "partner_sharing"])
            )
            .is_empty()
        );
        assert!(consented(&consents(&["legal"]), "legal.claims"));
        assert!(!consented(&consents(&["legal.claims"]), "legal"));
    }
}
