//! The policy: the purposes the vault knows, the only fields it stores, what
//! each role may do, and the controller's identity.
//!
//! Policy files (`policies/*.toml`) are parsed and validated by [`load`] into
//! the types below; every later module works with the validated model only.
//! [`decide`] holds the pure access decision (DESIGN.md §2) and [`values`]
//! the per-type validation, normalisation and masking of field values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime};

pub mod decide;
mod load;
pub mod values;

pub use decide::{
    CollectError, CollectedFor, ConsentView, Decision, PurposeError, Reason, SubjectState,
    check_collect, check_read_purpose, check_write_purpose, consent_missing, consent_needed,
    consented, consented_explicitly, decide, explicit_consent_needed, special_category_condition,
};
pub use load::{PolicyError, PolicyErrors};
pub use values::{ValueError, apply_mask, normalize};

/// The request kinds a policy may list under `[requests] approval_required`.
pub const REQUEST_KINDS: [&str; 8] = [
    "access",
    "portability",
    "erasure",
    "rectification",
    "restriction",
    "objection",
    "opt_out_sale",
    "limit_sensitive",
];

/// The validated, merged policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub controller: Controller,
    /// Every declared purpose, resolved (children carry their inherited values).
    pub purposes: BTreeMap<String, Purpose>,
    /// The only attributes the vault stores.
    pub fields: BTreeMap<String, FieldDef>,
    pub roles: BTreeMap<String, Role>,
    /// Request kinds that need the DPO's approval after verification.
    pub approval_required: BTreeSet<String>,
    /// Problems that do not stop the policy from loading (a health category
    /// without `special_category = true`, …), in file order.
    #[serde(skip)]
    pub warnings: Vec<PolicyError>,
}

/// The controller's identity and contacts (GDPR Art. 13(1)(a)-(b), Art. 30).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    pub name: String,
    pub contact: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub dpo_contact: Option<String>,
}

/// A declared purpose, already resolved: a child purpose carries the basis,
/// retention and flags it inherits from its parent unless it sets its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purpose {
    pub name: String,
    pub basis: LegalBasis,
    pub retention: Retention,
    /// Shown to customers.
    pub description: String,
    /// Still allowed when a customer limits the use of sensitive data, and
    /// enough to read a sensitive field without consent.
    pub essential: bool,
    /// A CCPA sale or sharing: withheld after an opt-out.
    pub sale_or_sharing: bool,
    /// Allowed while processing is restricted (GDPR Art. 18(2)).
    pub allowed_when_restricted: bool,
    /// The GDPR Art. 9(2) condition this purpose relies on for
    /// special-category values; without one it never serves or collects them.
    pub special_category_condition: Option<SpecialCategoryCondition>,
    /// The description in other languages, by tag (`it`, `zh-Hans`);
    /// `description` is the English one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub descriptions: BTreeMap<String, String>,
    /// The notice a customer agrees to when granting consent to this
    /// purpose on the privacy center (purposes on consent, or relying on
    /// explicit consent for special-category data). Not inherited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_notice: Option<ConsentNotice>,
}

impl Purpose {
    /// The description in `lang` (a tag: `en`, `it`, `zh-Hans`), else the
    /// English one.
    pub fn description_in(&self, lang: &str) -> &str {
        self.descriptions
            .get(lang)
            .map_or(self.description.as_str(), String::as_str)
    }
}

/// The text a customer agrees to when granting consent, per language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentNotice {
    /// Recorded with every grant and withdrawal (`notice_version`).
    pub version: String,
    /// The notice by language tag; `en` is always present.
    pub texts: BTreeMap<String, String>,
    /// For a purpose relying on `explicit_consent`: the specific statement
    /// about the special-category data the customer confirms (GDPR
    /// Art. 9(2)(a)), by language tag; `en` is always present then.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub explicit_statements: BTreeMap<String, String>,
}

impl ConsentNotice {
    /// The notice in `lang`, else English.
    pub fn text(&self, lang: &str) -> &str {
        self.texts
            .get(lang)
            .or_else(|| self.texts.get("en"))
            .map_or("", String::as_str)
    }

    /// The explicit-consent statement in `lang`, else English.
    pub fn explicit_statement(&self, lang: &str) -> Option<&str> {
        self.explicit_statements
            .get(lang)
            .or_else(|| self.explicit_statements.get("en"))
            .map(String::as_str)
    }

    /// Every text of this notice (notices and statements, all languages),
    /// with its language: to find the one a recorded hash names.
    pub fn all_texts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.texts
            .iter()
            .chain(self.explicit_statements.iter())
            .map(|(l, t)| (l.as_str(), t.as_str()))
    }
}

/// The conditions of GDPR Art. 9(2)(a)–(j) under which a special category
/// of personal data may be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecialCategoryCondition {
    /// (a) the data subject's explicit consent, for a specified purpose.
    ExplicitConsent,
    /// (b) employment, social security and social protection law.
    EmploymentSocialSecurity,
    /// (c) vital interests, where the subject cannot consent.
    VitalInterests,
    /// (d) members of a not-for-profit body, within its activities.
    NotForProfitMembers,
    /// (e) data manifestly made public by the data subject.
    ManifestlyPublic,
    /// (f) establishing, exercising or defending legal claims.
    LegalClaims,
    /// (g) substantial public interest, on a legal basis.
    SubstantialPublicInterest,
    /// (h) preventive or occupational medicine, health or social care.
    HealthCare,
    /// (i) public health.
    PublicHealth,
    /// (j) archiving in the public interest, research or statistics.
    ArchivingResearch,
}

impl SpecialCategoryCondition {
    pub const ALL: [SpecialCategoryCondition; 10] = [
        SpecialCategoryCondition::ExplicitConsent,
        SpecialCategoryCondition::EmploymentSocialSecurity,
        SpecialCategoryCondition::VitalInterests,
        SpecialCategoryCondition::NotForProfitMembers,
        SpecialCategoryCondition::ManifestlyPublic,
        SpecialCategoryCondition::LegalClaims,
        SpecialCategoryCondition::SubstantialPublicInterest,
        SpecialCategoryCondition::HealthCare,
        SpecialCategoryCondition::PublicHealth,
        SpecialCategoryCondition::ArchivingResearch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpecialCategoryCondition::ExplicitConsent => "explicit_consent",
            SpecialCategoryCondition::EmploymentSocialSecurity => "employment_social_security",
            SpecialCategoryCondition::VitalInterests => "vital_interests",
            SpecialCategoryCondition::NotForProfitMembers => "not_for_profit_members",
            SpecialCategoryCondition::ManifestlyPublic => "manifestly_public",
            SpecialCategoryCondition::LegalClaims => "legal_claims",
            SpecialCategoryCondition::SubstantialPublicInterest => "substantial_public_interest",
            SpecialCategoryCondition::HealthCare => "health_care",
            SpecialCategoryCondition::PublicHealth => "public_health",
            SpecialCategoryCondition::ArchivingResearch => "archiving_research",
        }
    }
}

impl fmt::Display for SpecialCategoryCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpecialCategoryCondition {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpecialCategoryCondition::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// Data categories (fideslang style) that are special categories under GDPR
/// Art. 9(1); a category equal to one of these or below it (`user.health.x`)
/// counts. `pii-vault policy check` warns when such a field lacks
/// `special_category = true`.
pub const SPECIAL_CATEGORY_PREFIXES: &[&str] = &[
    "user.health",
    "user.health_and_medical",
    "user.biometric",
    "user.biometrics",
    "user.genetic",
    "user.demographic.race_ethnicity",
    "user.demographic.racial_origin",
    "user.demographic.ethnic_origin",
    "user.demographic.political_opinion",
    "user.political_opinion",
    "user.demographic.religious_belief",
    "user.demographic.philosophical_belief",
    "user.religious_belief",
    "user.demographic.trade_union_membership",
    "user.trade_union_membership",
    "user.demographic.sexual_orientation",
    "user.sexual_orientation",
    "user.sex_life",
];

/// True when `category` is (or lies below) a known special category.
pub fn is_special_category(category: &str) -> bool {
    SPECIAL_CATEGORY_PREFIXES.iter().any(|p| {
        category == *p
            || category
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The legal basis of a purpose (GDPR Art. 6(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    LegitimateInterest,
    VitalInterest,
    PublicTask,
}

impl LegalBasis {
    pub const ALL: [LegalBasis; 6] = [
        LegalBasis::Consent,
        LegalBasis::Contract,
        LegalBasis::LegalObligation,
        LegalBasis::LegitimateInterest,
        LegalBasis::VitalInterest,
        LegalBasis::PublicTask,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegalObligation => "legal_obligation",
            LegalBasis::LegitimateInterest => "legitimate_interest",
            LegalBasis::VitalInterest => "vital_interest",
            LegalBasis::PublicTask => "public_task",
        }
    }
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LegalBasis {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LegalBasis::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// A name that is not one of an enumeration's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown name")]
pub struct UnknownName;

/// How long a value may be kept for a purpose, counted from its collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retention {
    Days(u32),
    Months(u32),
    Years(u32),
}

/// Longest retention a policy may declare.
const MAX_RETENTION_YEARS: u32 = 100;

/// Why a retention period does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("expected \"<n> days\", \"<n> months\" or \"<n> years\"")]
    Format,
    #[error("the number of a retention period must be a whole number of at least 1")]
    NotPositive,
    #[error("unknown retention unit \"{0}\" (expected days, months or years)")]
    Unit(String),
    #[error("retention periods longer than {MAX_RETENTION_YEARS} years are not supported")]
    TooLong,
}

impl Retention {
    /// The moment a value collected at `start` reaches the end of this
    /// period. Months and years are calendar arithmetic: the day of month is
    /// kept, clamped to the end of a shorter month (31 Jan + 1 month = 28 or
    /// 29 Feb; 29 Feb + 1 year = 28 Feb). The time of day and offset are kept.
    pub fn end_from(&self, start: OffsetDateTime) -> OffsetDateTime {
        match *self {
            Retention::Days(n) => start
                .checked_add(Duration::days(i64::from(n)))
                .unwrap_or_else(far_future),
            Retention::Months(n) => add_months(start, i64::from(n)),
            Retention::Years(n) => add_months(start, i64::from(n) * 12),
        }
    }

    fn parts(&self) -> (u32, &'static str, &'static str) {
        match *self {
            Retention::Days(n) => (n, "day", "days"),
            Retention::Months(n) => (n, "month", "months"),
            Retention::Years(n) => (n, "year", "years"),
        }
    }
}

fn add_months(start: OffsetDateTime, months: i64) -> OffsetDateTime {
    let date = start.date();
    let total = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let Ok(year) = i32::try_from(total.div_euclid(12)) else {
        return far_future();
    };
    let Some(month) = u8::try_from(total.rem_euclid(12) + 1)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
    else {
        return far_future();
    };
    let day = date.day().min(month.length(year));
    match Date::from_calendar_date(year, month, day) {
        Ok(end) => start.replace_date(end),
        Err(_) => far_future(),
    }
}

/// Stands in for an end beyond the representable calendar.
fn far_future() -> OffsetDateTime {
    PrimitiveDateTime::MAX.assume_utc()
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, one, many) = self.parts();
        write!(f, "{n} {}", if n == 1 { one } else { many })
    }
}

impl FromStr for Retention {
    type Err = RetentionError;

    /// Parses `"<n> days|months|years"` (singular accepted), `n >= 1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = s.split_whitespace();
        let (Some(number), Some(unit), None) = (words.next(), words.next(), words.next()) else {
            return Err(RetentionError::Format);
        };
        if !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RetentionError::NotPositive);
        }
        let n: u32 = number.parse().map_err(|_| RetentionError::TooLong)?;
        if n == 0 {
            return Err(RetentionError::NotPositive);
        }
        let (retention, limit) = match unit.to_ascii_lowercase().as_str() {
            "day" | "days" => (Retention::Days(n), MAX_RETENTION_YEARS * 366),
            "month" | "months" => (Retention::Months(n), MAX_RETENTION_YEARS * 12),
            "year" | "years" => (Retention::Years(n), MAX_RETENTION_YEARS),
            _ => return Err(RetentionError::Unit(unit.to_owned())),
        };
        if n > limit {
            return Err(RetentionError::TooLong);
        }
        Ok(retention)
    }
}

impl Serialize for Retention {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A field the vault may store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Data category, fideslang style (`user.contact.email`).
    pub category: String,
    /// The purposes a value of this field may be collected for (a purpose
    /// listed here also allows its children).
    pub purposes: Vec<String>,
    /// CCPA sensitive personal information (§1798.140(ae)): once the
    /// customer limits its use, it serves only `essential` purposes.
    pub sensitive: bool,
    /// GDPR Art. 9 special category: serves only purposes that declare a
    /// `special_category_condition` (and, for explicit consent, only while
    /// the customer's explicit consent is active).
    pub special_category: bool,
    /// Exact lookup through a blind index.
    pub searchable: bool,
}

/// The type of a field: decides validation and normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Email,
    Phone,
    Name,
    Address,
    Date,
    Text,
    NationalId,
    Iban,
}

impl FieldType {
    pub const ALL: [FieldType; 8] = [
        FieldType::Email,
        FieldType::Phone,
        FieldType::Name,
        FieldType::Address,
        FieldType::Date,
        FieldType::Text,
        FieldType::NationalId,
        FieldType::Iban,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Name => "name",
            FieldType::Address => "address",
            FieldType::Date => "date",
            FieldType::Text => "text",
            FieldType::NationalId => "national_id",
            FieldType::Iban => "iban",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FieldType {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// What a kind of caller may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub name: String,
    /// Purposes the role may read for (each entry also covers its children).
    pub read: Vec<String>,
    /// Purposes the role may collect values for.
    pub write: Vec<String>,
    pub capabilities: BTreeSet<Capability>,
    pub masks: Vec<MaskRule>,
    /// The role is a recipient of personal data (listed in exports and
    /// notified of rectification, erasure and restriction).
    pub recipient: bool,
    /// Where a recipient's notices (GDPR Art. 19) go by email when the
    /// vault sends email itself (`outbox_smtp_url`); without it they wait
    /// in the outbox for the notifier or the webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice_email: Option<String>,
}

impl Role {
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// True when some read grant covers `purpose`.
    pub fn may_read(&self, purpose: &str) -> bool {
        self.read.iter().any(|g| covers(g, purpose))
    }

    /// True when some write grant covers `purpose`.
    pub fn may_write(&self, purpose: &str) -> bool {
        self.write.iter().any(|g| covers(g, purpose))
    }
}

/// A non-purpose right of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Capability {
    #[serde(rename = "consents")]
    Consents,
    #[serde(rename = "requests.file")]
    RequestsFile,
    #[serde(rename = "requests.process")]
    RequestsProcess,
    #[serde(rename = "erase")]
    Erase,
    #[serde(rename = "legal_hold")]
    LegalHold,
    #[serde(rename = "audit")]
    Audit,
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "notify")]
    Notify,
}

impl Capability {
    pub const ALL: [Capability; 8] = [
        Capability::Consents,
        Capability::RequestsFile,
        Capability::RequestsProcess,
        Capability::Erase,
        Capability::LegalHold,
        Capability::Audit,
        Capability::Admin,
        Capability::Notify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Consents => "consents",
            Capability::RequestsFile => "requests.file",
            Capability::RequestsProcess => "requests.process",
            Capability::Erase => "erase",
            Capability::LegalHold => "legal_hold",
            Capability::Audit => "audit",
            Capability::Admin => "admin",
            Capability::Notify => "notify",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Capability {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// A masked view: a role reading `field` for `purpose` (or for any purpose
/// `purpose` covers) sees it through `mask`. `mask` is `None` for an explicit
/// full view (TOML `mask = "none"`), which lets a more specific purpose undo
/// a broader rule. The most specific matching rule wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskRule {
    pub purpose: String,
    pub field: String,
    #[serde(serialize_with = "serialize_mask_rule")]
    pub mask: Option<Mask>,
}

fn serialize_mask_rule<S: Serializer>(
    mask: &Option<Mask>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(mask.map_or("none", Mask::as_str))
}

/// How a value is shown through a masked view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    /// `•••• 4567`: only the last four characters.
    Last4,
    /// Not shown at all: the field is withheld with reason `hidden`.
    Hidden,
    /// `a•••@example.com`: first character of the local part and the domain.
    Email,
}

impl Mask {
    pub const ALL: [Mask; 3] = [Mask::Last4, Mask::Hidden, Mask::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Mask::Last4 => "last4",
            Mask::Hidden => "hidden",
            Mask::Email => "email",
        }
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mask {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mask::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// True when a grant of (or a value collected for) `granted` extends to
/// `requested`: the same purpose or one of its descendants in the dotted
/// hierarchy. `marketing` covers `marketing.email`, not `marketingx`.
pub fn covers(granted: &str, requested: &str) -> bool {
    match requested.strip_prefix(granted) {
        Some("") => true,
        Some(rest) => !granted.is_empty() && rest.starts_with('.'),
        None => false,
    }
}

/// The parent's name of a dotted purpose name (`marketing` for
/// `marketing.email`), `None` for a top-level purpose.
pub fn parent_name(purpose: &str) -> Option<&str> {
    purpose.rsplit_once('.').map(|(parent, _)| parent)
}

/// The proper ancestors of a purpose name, nearest first
/// (`a.b.c` → `a.b`, `a`).
pub fn ancestors(purpose: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(parent_name(purpose), |p| parent_name(p))
}

/// The purpose name itself, then its ancestors, nearest first
/// (`a.b` → `a.b`, `a`): the names whose consent or collection serves it.
pub fn ancestors_or_self(purpose: &str) -> impl Iterator<Item = &str> {
    std::iter::once(purpose).chain(ancestors(purpose))
}

/// `[a-z][a-z0-9_]*`: the shape of field and role names and of each segment
/// of a purpose or category name.
pub fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*`: the shape of purpose names.
pub fn is_purpose_name(name: &str) -> bool {
    name.split('.').all(is_identifier)
}

impl Policy {
    pub fn purpose(&self, name: &str) -> Option<&Purpose> {
        self.purposes.get(name)
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.get(name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// The parent of a declared child purpose.
    pub fn parent(&self, purpose: &str) -> Option<&Purpose> {
        parent_name(purpose).and_then(|p| self.purpose(p))
    }

    /// The mask `role` sees `field` through when reading for `purpose`: the
    /// most specific rule whose purpose covers `purpose`; `None` for a full
    /// view.
    pub fn mask_for(&self, role: &Role, purpose: &str, field: &str) -> Option<Mask> {
        role.masks
            .iter()
            .filter(|rule| rule.field == field && covers(&rule.purpose, purpose))
            .max_by_key(|rule| rule.purpose.len())
            .and_then(|rule| rule.mask)
    }

    /// The roles flagged as recipients of personal data.
    pub fn recipients(&self) -> impl Iterator<Item = &Role> {
        self.roles.values().filter(|r| r.recipient)
    }

    /// True when the request kind needs the DPO's approval after verification.
    pub fn needs_approval(&self, kind: &str) -> bool {
        self.approval_required.contains(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn covers_follows_the_dotted_hierarchy() {
        assert!(covers("marketing", "marketing"));
        assert!(covers("marketing", "marketing.email"));
        assert!(covers("marketing", "marketing.email.weekly"));
        assert!(!covers("marketing", "marketingx"));
        assert!(!covers("marketing", "marketing_email"));
        assert!(!covers("marketing.email", "marketing"));
        assert!(!covers("support.callback", "support"));
        assert!(!covers("", "support"));
        assert!(!covers("marketing.", "marketing.email"));
    }

    #[test]
    fn ancestors_are_listed_nearest_first() {
        assert_eq!(ancestors("a.b.c").collect::<Vec<_>>(), ["a.b", "a"]);
        assert_eq!(ancestors("support").count(), 0);
        assert_eq!(
            ancestors_or_self("marketing.email").collect::<Vec<_>>(),
            ["marketing.email", "marketing"]
        );
        assert_eq!(parent_name("legal.claims"), Some("legal"));
        assert_eq!(parent_name("legal"), None);
    }

    #[test]
    fn purpose_names_are_lowercase_dotted_identifiers() {
        for ok in ["support", "support.callback", "a1_b.c2", "legal.claims"] {
            assert!(is_purpose_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Support",
            "support.",
            ".support",
            "support..x",
            "1support",
            "sup port",
            "support-x",
            "_x",
            "marketing.Email",
            "a.1b",
        ] {
            assert!(!is_purpose_name(bad), "{bad}");
        }
    }

    #[test]
    fn retention_parses_and_displays() {
        assert_eq!("90 days".parse(), Ok(Retention::Days(90)));
        assert_eq!("2 years".parse(), Ok(Retention::Years(2)));
        assert_eq!("1 year".parse(), Ok(Retention::Years(1)));
        assert_eq!(" 6  months ".parse(), Ok(Retention::Months(6)));
        assert_eq!(Retention::Days(90).to_string(), "90 days");
        assert_eq!(Retention::Years(1).to_string(), "1 year");
        assert_eq!(Retention::Months(18).to_string(), "18 months");
        assert_eq!(
            "2 fortnights".parse::<Retention>(),
            Err(RetentionError::Unit("fortnights".into()))
        );
        assert_eq!(
            "0 days".parse::<Retention>(),
            Err(RetentionError::NotPositive)
        );
        assert_eq!(
            "-1 years".parse::<Retention>(),
            Err(RetentionError::NotPositive)
        );
        assert_eq!(
            "1.5 years".parse::<Retention>(),
            Err(RetentionError::NotPositive)
        );
        assert_eq!(
            "two years".parse::<Retention>(),
            Err(RetentionError::NotPositive)
        );
        assert_eq!("years".parse::<Retention>(), Err(RetentionError::Format));
        assert_eq!("".parse::<Retention>(), Err(RetentionError::Format));
        assert_eq!(
            "2 years ago".parse::<Retention>(),
            Err(RetentionError::Format)
        );
        assert_eq!(
            "101 years".parse::<Retention>(),
            Err(RetentionError::TooLong)
        );
        assert_eq!(
            "99999999999 days".parse::<Retention>(),
            Err(RetentionError::TooLong)
        );
    }

    #[test]
    fn retention_uses_calendar_arithmetic() {
        let start = datetime!(2024-01-31 10:15:00 UTC);
        assert_eq!(
            Retention::Months(1).end_from(start),
            datetime!(2024-02-29 10:15:00 UTC)
        );
        assert_eq!(
            Retention::Months(1).end_from(datetime!(2023-01-31 10:15:00 UTC)),
            datetime!(2023-02-28 10:15:00 UTC)
        );
        assert_eq!(
            Retention::Months(3).end_from(start),
            datetime!(2024-04-30 10:15:00 UTC)
        );
        assert_eq!(
            Retention::Months(13).end_from(datetime!(2024-12-15 00:00:00 +02:00)),
            datetime!(2026-01-15 00:00:00 +02:00)
        );
        assert_eq!(
            Retention::Years(1).end_from(datetime!(2024-02-29 08:00:00 UTC)),
            datetime!(2025-02-28 08:00:00 UTC)
        );
        assert_eq!(
            Retention::Years(4).end_from(datetime!(2024-02-29 08:00:00 UTC)),
            datetime!(2028-02-29 08:00:00 UTC)
        );
        assert_eq!(
            Retention::Days(90).end_from(datetime!(2026-01-01 12:00:00 UTC)),
            datetime!(2026-04-01 12:00:00 UTC)
        );
    }

    #[test]
    fn retention_beyond_the_calendar_saturates() {
        let start = datetime!(9990-06-01 00:00:00 UTC);
        let far = PrimitiveDateTime::MAX.assume_utc();
        assert_eq!(Retention::Years(100).end_from(start), far);
        assert_eq!(Retention::Days(u32::MAX).end_from(start), far);
        assert_eq!(Retention::Months(u32::MAX).end_from(start), far);
        assert_eq!(Retention::Years(u32::MAX).end_from(start), far);
    }

    #[test]
    fn enum_names_match_serde() {
        for b in LegalBasis::ALL {
            assert_eq!(serde_json::to_value(b).ok(), Some(b.as_str().into()));
            assert_eq!(b.as_str().parse(), Ok(b));
        }
        for t in FieldType::ALL {
            assert_eq!(serde_json::to_value(t).ok(), Some(t.as_str().into()));
            assert_eq!(t.as_str().parse(), Ok(t));
        }
        for c in Capability::ALL {
            assert_eq!(serde_json::to_value(c).ok(), Some(c.as_str().into()));
            assert_eq!(c.as_str().parse(), Ok(c));
        }
        for m in Mask::ALL {
            assert_eq!(serde_json::to_value(m).ok(), Some(m.as_str().into()));
            assert_eq!(m.as_str().parse(), Ok(m));
        }
        assert_eq!("requests_file".parse::<Capability>(), Err(UnknownName));
        assert_eq!("Consent".parse::<LegalBasis>(), Err(UnknownName));
    }

    fn role_with_masks(masks: Vec<MaskRule>) -> Role {
        Role {
            name: "r".into(),
            read: vec!["support".into()],
            write: vec![],
            capabilities: BTreeSet::new(),
            masks,
            recipient: false,
            notice_email: None,
        }
    }

    fn empty_policy() -> Policy {
        Policy {
            controller: Controller {
                name: "C".into(),
                contact: "c@example.com".into(),
                address: None,
                dpo_contact: None,
            },
            purposes: BTreeMap::new(),
            fields: BTreeMap::new(),
            roles: BTreeMap::new(),
            approval_required: BTreeSet::new(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn mask_rules_cover_children_and_the_most_specific_wins() {
        let rule = |purpose: &str, field: &str, mask| MaskRule {
            purpose: purpose.into(),
            field: field.into(),
            mask,
        };
        let role = role_with_masks(vec![
            rule("support", "phone", Some(Mask::Last4)),
            rule("support.callback", "phone", None),
            rule("support", "email", Some(Mask::Email)),
        ]);
        let policy = empty_policy();
        assert_eq!(
            policy.mask_for(&role, "support", "phone"),
            Some(Mask::Last4)
        );
        assert_eq!(policy.mask_for(&role, "support.callback", "phone"), None);
        assert_eq!(
            policy.mask_for(&role, "support.callback", "email"),
            Some(Mask::Email)
        );
        assert_eq!(policy.mask_for(&role, "supportx", "phone"), None);
        assert_eq!(policy.mask_for(&role, "support", "name"), None);
    }

    #[test]
    fn mask_rule_serializes_none_as_a_full_view() {
        let rule = MaskRule {
            purpose: "support.callback".into(),
            field: "phone".into(),
            mask: None,
        };
        assert_eq!(
            serde_json::to_value(&rule).ok(),
            Some(
                serde_json::json!({"purpose": "support.callback", "field": "phone", "mask": "none"})
            )
        );
    }
}
