//! Loading and validating policy files.
//!
//! Every `*.toml` file of the policy directory is read and the declarations
//! of all files are merged; a name declared in two files is an error. The
//! loader keeps going after a problem so that one run reports every problem,
//! each naming its file, its entry (`fields.phone`) and what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    Capability, ConsentNotice, Controller, FieldDef, FieldType, LegalBasis, Mask, MaskRule, Policy,
    Purpose, REQUEST_KINDS, Retention, Role, SpecialCategoryCondition, covers, is_identifier,
    is_purpose_name, is_special_category, parent_name,
};

/// One problem in the policy: the file, the entry within it and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    /// Dotted path of the entry (`fields.phone`, `roles.helpdesk.masks[0]`);
    /// empty for a problem with the file as a whole.
    pub entry: String,
    pub problem: String,
}

impl PolicyError {
    fn new(file: &str, entry: &str, problem: impl Into<String>) -> Self {
        PolicyError {
            file: file.to_owned(),
            entry: entry.to_owned(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entry.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.entry, self.problem)
        }
    }
}

impl std::error::Error for PolicyError {}

/// Every problem found in a policy, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl Policy {
    /// Loads and validates every `*.toml` file in `dir` (files whose names
    /// start with a dot are skipped). Problems are named by the file's path
    /// as given (`policies/default.toml`).
    pub fn load_dir(dir: &Path) -> Result<Policy, PolicyErrors> {
        let origin = dir.display().to_string();
        let entries = fs::read_dir(dir).map_err(|e| {
            PolicyErrors(vec![PolicyError::new(
                &origin,
                "",
                format!("cannot read the policy directory: {}", e.kind()),
            )])
        })?;
        let mut errors = Vec::new();
        let mut paths = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    let hidden = entry.file_name().to_string_lossy().starts_with('.');
                    let toml = path.extension().is_some_and(|ext| ext == "toml");
                    if toml && !hidden && path.is_file() {
                        paths.push(path);
                    }
                }
                Err(e) => errors.push(PolicyError::new(
                    &origin,
                    "",
                    format!("cannot list the policy directory: {}", e.kind()),
                )),
            }
        }
        paths.sort();
        if paths.is_empty() && errors.is_empty() {
            errors.push(PolicyError::new(
                &origin,
                "",
                "no *.toml policy file in the directory",
            ));
        }
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let file = path.display().to_string();
            match fs::read_to_string(&path) {
                Ok(text) => sources.push((file, text)),
                Err(e) => errors.push(PolicyError::new(
                    &file,
                    "",
                    format!("cannot read the file: {}", e.kind()),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        build(&origin, &sources)
    }

    /// Validates policy sources given as `(file name, TOML text)` pairs, as
    /// if they were the files of one policy directory.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Policy, PolicyErrors> {
        if sources.is_empty() {
            return Err(PolicyErrors(vec![PolicyError::new(
                "policy",
                "",
                "no policy file given",
            )]));
        }
        build("policy", sources)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    basis: Option<String>,
    retention: Option<String>,
    description: String,
    essential: Option<bool>,
    sale_or_sharing: Option<bool>,
    allowed_when_restricted: Option<bool>,
    special_category_condition: Option<String>,
    #[serde(default)]
    descriptions: BTreeMap<String, String>,
    consent_notice: Option<RawNotice>,
}

const PURPOSE_KEYS: &[&str] = &[
    "basis",
    "retention",
    "description",
    "essential",
    "sale_or_sharing",
    "allowed_when_restricted",
    "special_category_condition",
    "descriptions",
    "consent_notice",
];

/// `[purposes.<name>.consent_notice]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotice {
    version: String,
    /// English.
    text: String,
    #[serde(default)]
    texts: BTreeMap<String, String>,
    /// English.
    explicit_statement: Option<String>,
    #[serde(default)]
    explicit_statements: BTreeMap<String, String>,
}

/// The languages other than English a policy text may be given in.
const OTHER_LANGUAGES: &[&str] = &["it", "zh-Hans"];

/// Problems of a per-language text table (`descriptions`, `texts`, …).
fn translations(what: &str, map: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (lang, text) in map {
        if !OTHER_LANGUAGES.contains(&lang.as_str()) {
            problems.push(format!(
                "{what}: unknown language \"{lang}\" (expected one of {}; English is the main text)",
                OTHER_LANGUAGES.join(", ")
            ));
        } else if text.trim().is_empty() {
            problems.push(format!("{what}.{lang} must not be empty"));
        }
    }
    problems
}

/// The resolved notice of a purpose, or the problems with it.
fn consent_notice(
    raw: &RawNotice,
    basis: LegalBasis,
    condition: Option<SpecialCategoryCondition>,
) -> Result<ConsentNotice, Vec<String>> {
    let mut problems = Vec::new();
    let explicit = condition == Some(SpecialCategoryCondition::ExplicitConsent);
    if basis != LegalBasis::Consent && !explicit {
        problems.push(
            "consent_notice applies to purposes on the basis consent or with special_category_condition = \"explicit_consent\"".to_owned(),
        );
    }
    let version = raw.version.trim();
    if version.is_empty() || version.len() > 64 || version.chars().any(char::is_control) {
        problems.push("consent_notice.version must be 1–64 printable characters".to_owned());
    }
    if raw.text.trim().is_empty() {
        problems.push("consent_notice.text must not be empty".to_owned());
    }
    problems.extend(translations("consent_notice.texts", &raw.texts));
    problems.extend(translations(
        "consent_notice.explicit_statements",
        &raw.explicit_statements,
    ));
    match (&raw.explicit_statement, explicit) {
        (None, true) => problems.push(
            "consent_notice.explicit_statement is required: the purpose relies on explicit consent for special-category data".to_owned(),
        ),
        (Some(_), false) => problems.push(
            "consent_notice.explicit_statement applies only to purposes with special_category_condition = \"explicit_consent\"".to_owned(),
        ),
        (Some(s), true) if s.trim().is_empty() => {
            problems.push("consent_notice.explicit_statement must not be empty".to_owned());
        }
        _ => {}
    }
    if raw.explicit_statement.is_none() && !raw.explicit_statements.is_empty() {
        problems.push(
            "consent_notice.explicit_statements needs the English explicit_statement".to_owned(),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let with_english = |en: &str, others: &BTreeMap<String, String>| {
        let mut all: BTreeMap<String, String> = others
            .iter()
            .map(|(l, t)| (l.clone(), t.trim().to_owned()))
            .collect();
        all.insert("en".into(), en.trim().to_owned());
        all
    };
    Ok(ConsentNotice {
        version: version.to_owned(),
        texts: with_english(&raw.text, &raw.texts),
        explicit_statements: raw
            .explicit_statement
            .as_deref()
            .map(|en| with_english(en, &raw.explicit_statements))
            .unwrap_or_default(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(rename = "type")]
    ty: String,
    category: String,
    purposes: Vec<String>,
    #[serde(default)]
    sensitive: bool,
    #[serde(default)]
    special_category: bool,
    #[serde(default)]
    searchable: bool,
}

const FIELD_KEYS: &[&str] = &[
    "type",
    "category",
    "purposes",
    "sensitive",
    "special_category",
    "searchable",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    masks: Vec<toml::Value>,
    #[serde(default)]
    recipient: bool,
    #[serde(default)]
    notice_email: Option<String>,
}

const ROLE_KEYS: &[&str] = &[
    "read",
    "write",
    "capabilities",
    "masks",
    "recipient",
    "notice_email",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMask {
    purpose: String,
    field: String,
    mask: String,
}

const MASK_KEYS: &[&str] = &["purpose", "field", "mask"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequests {
    #[serde(default)]
    approval_required: Vec<String>,
}

const REQUESTS_KEYS: &[&str] = &["approval_required"];

const CONTROLLER_KEYS: &[&str] = &["name", "contact", "address", "dpo_contact"];

const SECTIONS: &[&str] = &["controller", "purposes", "fields", "roles", "requests"];

/// A declaration and the file it came from; `raw` is `None` when the entry
/// itself could not be read (the problem is already reported), so that
/// references to its name do not cascade into more errors.
struct Declared<T> {
    file: String,
    raw: Option<T>,
}

#[derive(Default)]
struct Loader {
    errors: Vec<PolicyError>,
    warnings: Vec<PolicyError>,
    controller: Option<Declared<Controller>>,
    purposes: BTreeMap<String, Declared<RawPurpose>>,
    fields: BTreeMap<String, Declared<RawField>>,
    roles: BTreeMap<String, Declared<RawRole>>,
    requests: Option<Declared<RawRequests>>,
}

fn build(origin: &str, sources: &[(String, String)]) -> Result<Policy, PolicyErrors> {
    let mut loader = Loader::default();
    for (file, text) in sources {
        loader.read_file(file, text);
    }
    let purposes = loader.resolve_purposes();
    let fields = loader.resolve_fields();
    let roles = loader.resolve_roles(&fields);
    let approval_required = loader.resolve_requests();
    let Some(declared) = loader.controller.take() else {
        loader.errors.push(PolicyError::new(
            origin,
            "controller",
            "no policy file declares the [controller] section",
        ));
        return Err(PolicyErrors(loader.errors));
    };
    let controller = declared.raw;
    match controller {
        Some(controller) if loader.errors.is_empty() => Ok(Policy {
            controller,
            purposes,
            fields,
            roles,
            approval_required,
            warnings: loader.warnings,
        }),
        _ => Err(PolicyErrors(loader.errors)),
    }
}

/// The entry path of a named item, quoting names that are not bare TOML keys
/// (`purposes."support.callback"`).
fn item_path(section: &str, name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        format!("{section}.{name}")
    } else {
        format!("{section}.{name:?}")
    }
}

/// Turns a deserialisation error into a one-line problem, leading with the
/// key it concerns when the error names one.
fn serde_problem(error: &toml::de::Error) -> String {
    let text = error.to_string();
    let key = text
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("in `")?.strip_suffix('`'));
    match key {
        Some(key) => format!("{key}: {}", error.message()),
        None => error.message().to_owned(),
    }
}

/// Line and column (1-based) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Deserialises one entry. Unknown keys are reported one by one and left
/// out, so the entry's other problems are still found.
fn read_entry<T: DeserializeOwned>(
    errors: &mut Vec<PolicyError>,
    file: &str,
    entry: &str,
    value: &toml::Value,
    allowed: &[&str],
) -> Option<T> {
    let toml::Value::Table(table) = value else {
        errors.push(PolicyError::new(
            file,
            entry,
            format!("expected a table, found {}", value.type_str()),
        ));
        return None;
    };
    let mut known = table.clone();
    for (key, item) in table {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        known.remove(key);
        let hint = if entry.starts_with("purposes.") && item.is_table() {
            let child = format!("{}.{key}", entry_name(entry));
            format!(
                "; a child purpose is declared with a quoted name: [{}]",
                item_path("purposes", &child)
            )
        } else {
            format!(" (expected one of {})", allowed.join(", "))
        };
        errors.push(PolicyError::new(
            file,
            entry,
            format!("unknown key \"{key}\"{hint}"),
        ));
    }
    match toml::Value::Table(known).try_into::<T>() {
        Ok(raw) => Some(raw),
        Err(e) => {
            errors.push(PolicyError::new(file, entry, serde_problem(&e)));
            None
        }
    }
}

impl Loader {
    fn error(&mut self, file: &str, entry: &str, problem: impl Into<String>) {
        self.errors.push(PolicyError::new(file, entry, problem));
    }

    fn read_file(&mut self, file: &str, text: &str) {
        let table: toml::Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(e) => {
                let problem = match e.span() {
                    Some(span) => {
                        let (line, column) = line_column(text, span.start);
                        format!(
                            "invalid TOML at line {line}, column {column}: {}",
                            e.message()
                        )
                    }
                    None => format!("invalid TOML: {}", e.message()),
                };
                self.error(file, "", problem);
                return;
            }
        };
        for (section, value) in &table {
            match section.as_str() {
                "controller" => self.read_controller(file, value),
                "purposes" => {
                    for (name, entry) in self.section_entries(file, section, value) {
                        self.read_purpose(file, &name, &entry);
                    }
                }
                "fields" => {
                    for (name, entry) in self.section_entries(file, section, value) {
                        self.read_field(file, &name, &entry);
                    }
                }
                "roles" => {
                    for (name, entry) in self.section_entries(file, section, value) {
                        self.read_role(file, &name, &entry);
                    }
                }
                "requests" => self.read_requests(file, value),
                other => self.error(
                    file,
                    other,
                    format!("unknown section (expected one of {})", SECTIONS.join(", ")),
                ),
            }
        }
    }

    /// The named entries of a `[purposes]`, `[fields]` or `[roles]` section.
    fn section_entries(
        &mut self,
        file: &str,
        section: &str,
        value: &toml::Value,
    ) -> Vec<(String, toml::Value)> {
        match value {
            toml::Value::Table(table) => table
                .iter()
                .map(|(name, entry)| (name.clone(), entry.clone()))
                .collect(),
            other => {
                self.error(
                    file,
                    section,
                    format!("expected a table, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    fn entry<T: DeserializeOwned>(
        &mut self,
        file: &str,
        entry: &str,
        value: &toml::Value,
        allowed: &[&str],
    ) -> Option<T> {
        read_entry(&mut self.errors, file, entry, value, allowed)
    }

    fn read_controller(&mut self, file: &str, value: &toml::Value) {
        let raw: Option<Controller> = self.entry(file, "controller", value, CONTROLLER_KEYS);
        if let Some(first) = &self.controller {
            let first = first.file.clone();
            self.error(
                file,
                "controller",
                format!("declared again (first declared in {first})"),
            );
            return;
        }
        if let Some(controller) = &raw {
            if controller.name.trim().is_empty() {
                self.error(file, "controller", "name must not be empty");
            }
            if controller.contact.trim().is_empty() {
                self.error(file, "controller", "contact must not be empty");
            }
        }
        self.controller = Some(Declared {
            file: file.to_owned(),
            raw,
        });
    }

    fn read_requests(&mut self, file: &str, value: &toml::Value) {
        let raw: Option<RawRequests> = self.entry(file, "requests", value, REQUESTS_KEYS);
        if let Some(first) = &self.requests {
            let first = first.file.clone();
            self.error(
                file,
                "requests",
                format!("declared again (first declared in {first})"),
            );
            return;
        }
        self.requests = Some(Declared {
            file: file.to_owned(),
            raw,
        });
    }

    /// Reports a name declared in an earlier file; true when it is new.
    fn first_declaration<T>(
        errors: &mut Vec<PolicyError>,
        map: &BTreeMap<String, Declared<T>>,
        file: &str,
        entry: &str,
        name: &str,
    ) -> bool {
        match map.get(name) {
            Some(first) => {
                errors.push(PolicyError::new(
                    file,
                    entry,
                    format!("declared again (first declared in {})", first.file),
                ));
                false
            }
            None => true,
        }
    }

    fn read_purpose(&mut self, file: &str, name: &str, value: &toml::Value) {
        let entry = item_path("purposes", name);
        if !is_purpose_name(name) {
            self.error(
                file,
                &entry,
                "a purpose name must be lowercase dotted identifiers ([a-z][a-z0-9_]*, separated by dots)",
            );
        }
        let raw = self.entry(file, &entry, value, PURPOSE_KEYS);
        if Self::first_declaration(&mut self.errors, &self.purposes, file, &entry, name) {
            let declared = Declared {
                file: file.to_owned(),
                raw,
            };
            self.purposes.insert(name.to_owned(), declared);
        }
    }

    fn read_field(&mut self, file: &str, name: &str, value: &toml::Value) {
        let entry = item_path("fields", name);
        if !is_identifier(name) {
            self.error(
                file,
                &entry,
                "a field name must be a lowercase identifier ([a-z][a-z0-9_]*)",
            );
        }
        let raw = self.entry(file, &entry, value, FIELD_KEYS);
        if Self::first_declaration(&mut self.errors, &self.fields, file, &entry, name) {
            let declared = Declared {
                file: file.to_owned(),
                raw,
            };
            self.fields.insert(name.to_owned(), declared);
        }
    }

    fn read_role(&mut self, file: &str, name: &str, value: &toml::Value) {
        let entry = item_path("roles", name);
        if !is_identifier(name) {
            self.error(
                file,
                &entry,
                "a role name must be a lowercase identifier ([a-z][a-z0-9_]*)",
            );
        }
        let raw = self.entry(file, &entry, value, ROLE_KEYS);
        if Self::first_declaration(&mut self.errors, &self.roles, file, &entry, name) {
            let declared = Declared {
                file: file.to_owned(),
                raw,
            };
            self.roles.insert(name.to_owned(), declared);
        }
    }

    /// Resolves every purpose, parents before children (a parent's name is a
    /// prefix of its child's, so it sorts first), applying inheritance.
    fn resolve_purposes(&mut self) -> BTreeMap<String, Purpose> {
        let mut resolved: BTreeMap<String, Purpose> = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, declared) in &self.purposes {
            let Some(raw) = &declared.raw else {
                continue;
            };
            let file = declared.file.as_str();
            let entry = item_path("purposes", name);
            let mut problem = |text: String| problems.push(PolicyError::new(file, &entry, text));

            let basis = raw
                .basis
                .as_deref()
                .and_then(|b| match b.parse::<LegalBasis>() {
                    Ok(basis) => Some(basis),
                    Err(_) => {
                        let expected: Vec<&str> =
                            LegalBasis::ALL.iter().map(|b| b.as_str()).collect();
                        problem(format!(
                            "unknown legal basis \"{b}\" (expected one of {})",
                            expected.join(", ")
                        ));
                        None
                    }
                });
            let retention = raw
                .retention
                .as_deref()
                .and_then(|r| match r.parse::<Retention>() {
                    Ok(retention) => Some(retention),
                    Err(e) => {
                        problem(format!("bad retention period \"{r}\": {e}"));
                        None
                    }
                });
            if raw.description.trim().is_empty() {
                problem("description must not be empty".to_owned());
            }
            for p in translations("descriptions", &raw.descriptions) {
                problem(p);
            }
            let parent = match parent_name(name) {
                None => None,
                Some(parent) => match resolved.get(parent) {
                    Some(p) => Some(p.clone()),
                    None => {
                        if !self.purposes.contains_key(parent) {
                            problem(format!(
                                "parent purpose \"{parent}\" is not declared (declare [{}] first)",
                                item_path("purposes", parent)
                            ));
                        }
                        continue;
                    }
                },
            };
            let (basis, retention) = match &parent {
                Some(parent) => (
                    basis.or(raw.basis.is_none().then_some(parent.basis)),
                    retention.or(raw.retention.is_none().then_some(parent.retention)),
                ),
                None => {
                    if raw.basis.is_none() {
                        problem("basis is required for a top-level purpose".to_owned());
                    }
                    if raw.retention.is_none() {
                        problem("retention is required for a top-level purpose".to_owned());
                    }
                    (basis, retention)
                }
            };
            let condition = raw.special_category_condition.as_deref().and_then(|c| {
                match c.parse::<SpecialCategoryCondition>() {
                    Ok(condition) => Some(condition),
                    Err(_) => {
                        let expected: Vec<&str> = SpecialCategoryCondition::ALL
                            .iter()
                            .map(|c| c.as_str())
                            .collect();
                        problem(format!(
                            "unknown special_category_condition \"{c}\" (expected one of {})",
                            expected.join(", ")
                        ));
                        None
                    }
                }
            });
            let inherit = |own: Option<bool>, from: fn(&Purpose) -> bool| {
                own.or(parent.as_ref().map(from)).unwrap_or(false)
            };
            let (Some(basis), Some(retention)) = (basis, retention) else {
                continue;
            };
            let condition =
                condition.or_else(|| parent.as_ref().and_then(|p| p.special_category_condition));
            let notice = match raw
                .consent_notice
                .as_ref()
                .map(|n| consent_notice(n, basis, condition))
            {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(found)) => {
                    for p in found {
                        problem(p);
                    }
                    None
                }
            };
            resolved.insert(
                name.clone(),
                Purpose {
                    name: name.clone(),
                    basis,
                    retention,
                    description: raw.description.trim().to_owned(),
                    essential: inherit(raw.essential, |p| p.essential),
                    sale_or_sharing: inherit(raw.sale_or_sharing, |p| p.sale_or_sharing),
                    allowed_when_restricted: inherit(raw.allowed_when_restricted, |p| {
                        p.allowed_when_restricted
                    }),
                    special_category_condition: condition,
                    descriptions: raw
                        .descriptions
                        .iter()
                        .map(|(l, t)| (l.clone(), t.trim().to_owned()))
                        .collect(),
                    consent_notice: notice,
                },
            );
        }
        self.errors.extend(problems);
        resolved
    }

    /// Checks a list of purpose references; returns the problems.
    fn purpose_refs(&self, what: &str, names: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            if !self.purposes.contains_key(name) {
                problems.push(format!("{what}unknown purpose \"{name}\""));
            } else if !seen.insert(name.as_str()) {
                problems.push(format!("{what}purpose \"{name}\" is listed twice"));
            }
        }
        problems
    }

    fn resolve_fields(&mut self) -> BTreeMap<String, FieldDef> {
        let mut resolved = BTreeMap::new();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        for (name, declared) in &self.fields {
            let Some(raw) = &declared.raw else {
                continue;
            };
            let entry = item_path("fields", name);
            let mut local = Vec::new();
            let ty = match raw.ty.parse::<FieldType>() {
                Ok(ty) => Some(ty),
                Err(_) => {
                    let expected: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
                    local.push(format!(
                        "unknown field type \"{}\" (expected one of {})",
                        raw.ty,
                        expected.join(", ")
                    ));
                    None
                }
            };
            if !is_purpose_name(&raw.category) {
                local.push(format!(
                    "category \"{}\" must be lowercase dotted identifiers (e.g. user.contact.email)",
                    raw.category
                ));
            }
            if raw.purposes.is_empty() {
                local.push("purposes must list at least one purpose".to_owned());
            }
            local.extend(self.purpose_refs("", &raw.purposes));
            let ok = local.is_empty();
            problems.extend(
                local
                    .into_iter()
                    .map(|p| PolicyError::new(&declared.file, &entry, p)),
            );
            if let (true, Some(ty)) = (ok, ty) {
                resolved.insert(
                    name.clone(),
                    FieldDef {
                        name: name.clone(),
                        ty,
                        category: raw.category.clone(),
                        purposes: raw.purposes.clone(),
                        sensitive: raw.sensitive,
                        special_category: raw.special_category,
                        searchable: raw.searchable,
                    },
                );
            }
            if !raw.special_category && is_special_category(&raw.category) {
                warnings.push(PolicyError::new(
                    &declared.file,
                    &entry,
                    format!(
                        "category \"{}\" is a GDPR Art. 9 special category but the field \
                         lacks special_category = true",
                        raw.category
                    ),
                ));
            }
        }
        self.errors.extend(problems);
        self.warnings.extend(warnings);
        resolved
    }

    fn resolve_roles(&mut self, fields: &BTreeMap<String, FieldDef>) -> BTreeMap<String, Role> {
        let mut resolved = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, declared) in &self.roles {
            let Some(raw) = &declared.raw else {
                continue;
            };
            let file = declared.file.as_str();
            let entry = item_path("roles", name);
            let before = problems.len();
            let mut push = |entry: &str, problem: String| {
                problems.push(PolicyError::new(file, entry, problem));
            };
            for p in self.purpose_refs("read: ", &raw.read) {
                push(&entry, p);
            }
            for p in self.purpose_refs("write: ", &raw.write) {
                push(&entry, p);
            }
            let mut capabilities = BTreeSet::new();
            for c in &raw.capabilities {
                match c.parse::<Capability>() {
                    Ok(capability) => {
                        if !capabilities.insert(capability) {
                            push(&entry, format!("capability \"{c}\" is listed twice"));
                        }
                    }
                    Err(_) => {
                        let expected: Vec<&str> =
                            Capability::ALL.iter().map(|c| c.as_str()).collect();
                        push(
                            &entry,
                            format!(
                                "unknown capability \"{c}\" (expected one of {})",
                                expected.join(", ")
                            ),
                        );
                    }
                }
            }
            if let Some(email) = &raw.notice_email {
                if !raw.recipient {
                    push(
                        &entry,
                        "notice_email is for recipients only (set recipient = true)".to_owned(),
                    );
                } else if email.parse::<lettre::Address>().is_err() {
                    push(
                        &entry,
                        "notice_email must be one email address, such as privacy@partner.example"
                            .to_owned(),
                    );
                }
            }
            let mut masks = Vec::new();
            for (i, value) in raw.masks.iter().enumerate() {
                let mask_entry = format!("{entry}.masks[{i}]");
                let Some(rule) =
                    read_entry::<RawMask>(&mut problems, file, &mask_entry, value, MASK_KEYS)
                else {
                    continue;
                };
                let mut push = |problem: String| {
                    problems.push(PolicyError::new(file, &mask_entry, problem));
                };
                let mut ok = true;
                if !self.purposes.contains_key(&rule.purpose) {
                    push(format!("unknown purpose \"{}\"", rule.purpose));
                    ok = false;
                } else if !raw
                    .read
                    .iter()
                    .any(|g| covers(g, &rule.purpose) || covers(&rule.purpose, g))
                {
                    push(format!(
                        "the role does not read for purpose \"{}\"",
                        rule.purpose
                    ));
                    ok = false;
                }
                if !self.fields.contains_key(&rule.field) {
                    push(format!("unknown field \"{}\"", rule.field));
                    ok = false;
                }
                let mask = match rule.mask.as_str() {
                    "none" => None,
                    other => match other.parse::<Mask>() {
                        Ok(mask) => Some(mask),
                        Err(_) => {
                            push(format!(
                                "unknown mask \"{other}\" (expected one of last4, email, hidden, none)"
                            ));
                            ok = false;
                            None
                        }
                    },
                };
                let field_type = fields.get(&rule.field).map(|f| f.ty);
                if mask == Some(Mask::Email) && field_type.is_some_and(|t| t != FieldType::Email) {
                    push(format!(
                        "mask \"email\" applies only to fields of type email, not \"{}\"",
                        rule.field
                    ));
                    ok = false;
                }
                let duplicate = masks
                    .iter()
                    .any(|m: &MaskRule| m.purpose == rule.purpose && m.field == rule.field);
                if duplicate {
                    push(format!(
                        "a second mask for purpose \"{}\" and field \"{}\"",
                        rule.purpose, rule.field
                    ));
                    ok = false;
                }
                if ok {
                    masks.push(MaskRule {
                        purpose: rule.purpose,
                        field: rule.field,
                        mask,
                    });
                }
            }
            if problems.len() == before {
                resolved.insert(
                    name.clone(),
                    Role {
                        name: name.clone(),
                        read: raw.read.clone(),
                        write: raw.write.clone(),
                        capabilities,
                        masks,
                        recipient: raw.recipient,
                        notice_email: raw.notice_email.clone(),
                    },
                );
            }
        }
        self.errors.extend(problems);
        resolved
    }

    fn resolve_requests(&mut self) -> BTreeSet<String> {
        let mut kinds = BTreeSet::new();
        let Some(Declared {
            file,
            raw: Some(raw),
        }) = &self.requests
        else {
            return kinds;
        };
        let mut problems = Vec::new();
        for kind in &raw.approval_required {
            if !REQUEST_KINDS.contains(&kind.as_str()) {
                problems.push(PolicyError::new(
                    file,
                    "requests",
                    format!(
                        "approval_required: unknown request kind \"{kind}\" (expected one of {})",
                        REQUEST_KINDS.join(", ")
                    ),
                ));
            } else if !kinds.insert(kind.clone()) {
                problems.push(PolicyError::new(
                    file,
                    "requests",
                    format!("approval_required: \"{kind}\" is listed twice"),
                ));
            }
        }
        self.errors.extend(problems);
        kinds
    }
}

/// The item name of an entry path built by [`item_path`].
fn entry_name(entry: &str) -> String {
    let name = entry.split_once('.').map_or(entry, |(_, name)| name);
    name.strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(name)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PurposeError, check_read_purpose};
    use std::path::PathBuf;

    /// (name, type, category, purposes, sensitive, searchable)
    type FieldRow = (
        &'static str,
        FieldType,
        &'static str,
        &'static [&'static str],
        bool,
        bool,
    );

    /// (name, read, write, capabilities, recipient)
    type RoleRow = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [Capability],
        bool,
    );

    fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
    }

    fn default_policy() -> Policy {
        match Policy::load_dir(&default_dir()) {
            Ok(policy) => policy,
            Err(errors) => panic!("the default policy does not load:\n{errors}"),
        }
    }

    const BASE: &str = r#"
[controller]
name = "Test Ltd"
contact = "privacy@test.example"

[purposes.support]
basis = "contract"
retention = "2 years"
description = "Support"
essential = true

[fields.phone]
type = "phone"
category = "user.contact.phone_number"
purposes = ["support"]

[roles.agent]
read = ["support"]
"#;

    fn load(sources: &[(&str, &str)]) -> Result<Policy, Vec<String>> {
        let sources: Vec<(String, String)> = sources
            .iter()
            .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
            .collect();
        Policy::from_sources(&sources).map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    /// The problems of BASE plus `extra` in one file named `p.toml`.
    fn problems(extra: &str) -> Vec<String> {
        match load(&[("p.toml", &format!("{BASE}\n{extra}"))]) {
            Ok(_) => panic!("accepted:\n{extra}"),
            Err(problems) => problems,
        }
    }

    fn assert_problem(extra: &str, expected: &str) {
        let found = problems(extra);
        assert!(
            found.iter().any(|p| p == expected),
            "expected {expected:?} among {found:#?}"
        );
    }

    #[test]
    fn purposes_may_carry_descriptions_and_consent_notices_per_language() {
        let policy = default_policy();
        let marketing = policy.purpose("marketing").unwrap();
        assert_eq!(marketing.description_in("it"), "Inviarti offerte");
        assert_eq!(marketing.description_in("en"), "Send you offers");
        let notice = marketing.consent_notice.as_ref().unwrap();
        assert_eq!(notice.version, "2026-01");
        assert!(notice.text("zh-Hans").contains("优惠"));
        assert!(
            notice.text("fr").starts_with("I would like"),
            "English otherwise"
        );
        assert!(notice.explicit_statement("en").is_none());
        let support = policy
            .purpose("support")
            .unwrap()
            .consent_notice
            .as_ref()
            .unwrap();
        assert!(
            support
                .explicit_statement("it")
                .unwrap()
                .contains("esplicitamente")
        );
        // Not inherited: marketing.email has none of its own.
        assert!(
            policy
                .purpose("marketing.email")
                .unwrap()
                .consent_notice
                .is_none()
        );
        for p in policy.purposes.values() {
            for lang in ["it", "zh-Hans"] {
                assert!(p.descriptions.contains_key(lang), "{} in {lang}", p.name);
            }
        }

        let ok = r#"
[purposes.news]
basis = "consent"
retention = "1 year"
description = "News"
descriptions = { it = "Notizie" }
[purposes.news.consent_notice]
version = "v1"
text = "Send me news."
texts = { "zh-Hans" = "给我发送新闻。" }
"#;
        let loaded = load(&[("p.toml", &format!("{BASE}\n{ok}"))]).unwrap();
        let news = loaded.purpose("news").unwrap();
        assert_eq!(news.description_in("it"), "Notizie");
        assert_eq!(news.description_in("zh-Hans"), "News");
        assert_eq!(
            news.consent_notice.as_ref().unwrap().text("zh-Hans"),
            "给我发送新闻。"
        );
    }

    #[test]
    fn per_language_texts_and_notices_are_checked() {
        let purpose = |extra: &str| {
            format!(
                "[purposes.news]\nbasis = \"consent\"\nretention = \"1 year\"\ndescription = \"N\"\n{extra}"
            )
        };
        assert_problem(
            &purpose("descriptions = { fr = \"Nouvelles\" }"),
            "p.toml: purposes.news: descriptions: unknown language \"fr\" (expected one of it, zh-Hans; English is the main text)",
        );
        assert_problem(
            &purpose("descriptions = { it = \" \" }"),
            "p.toml: purposes.news: descriptions.it must not be empty",
        );
        assert_problem(
            &purpose("[purposes.news.consent_notice]\nversion = \"\"\ntext = \"T\""),
            "p.toml: purposes.news: consent_notice.version must be 1–64 printable characters",
        );
        assert_problem(
            &purpose(
                "[purposes.news.consent_notice]\nversion = \"1\"\ntext = \"T\"\nexplicit_statement = \"S\"",
            ),
            "p.toml: purposes.news: consent_notice.explicit_statement applies only to purposes with special_category_condition = \"explicit_consent\"",
        );
        assert_problem(
            "[purposes.stats]\nbasis = \"legitimate_interest\"\nretention = \"1 year\"\ndescription = \"S\"\n[purposes.stats.consent_notice]\nversion = \"1\"\ntext = \"T\"",
            "p.toml: purposes.stats: consent_notice applies to purposes on the basis consent or with special_category_condition = \"explicit_consent\"",
        );
        assert_problem(
            "[purposes.care]\nbasis = \"contract\"\nretention = \"1 year\"\ndescription = \"C\"\nspecial_category_condition = \"explicit_consent\"\n[purposes.care.consent_notice]\nversion = \"1\"\ntext = \"T\"",
            "p.toml: purposes.care: consent_notice.explicit_statement is required: the purpose relies on explicit consent for special-category data",
        );
    }

    #[test]
    fn default_policy_purposes_match_default_policy_md() {
        let policy = default_policy();
        // (name, basis, retention, essential, sale_or_sharing, allowed_when_restricted)
        let expected = [
            (
                "support",
                LegalBasis::Contract,
                Retention::Years(2),
                true,
                false,
                false,
            ),
            (
                "support.callback",
                LegalBasis::LegitimateInterest,
                Retention::Days(90),
                true,
                false,
                false,
            ),
            (
                "billing",
                LegalBasis::LegalObligation,
                Retention::Years(10),
                true,
                false,
                false,
            ),
            (
                "marketing",
                LegalBasis::Consent,
                Retention::Years(2),
                false,
                false,
                false,
            ),
            (
                "marketing.email",
                LegalBasis::Consent,
                Retention::Years(2),
                false,
                false,
                false,
            ),
            (
                "marketing.sms",
                LegalBasis::Consent,
                Retention::Years(2),
                false,
                false,
                false,
            ),
            (
                "analytics",
                LegalBasis::LegitimateInterest,
                Retention::Years(1),
                false,
                false,
                false,
            ),
            (
                "fraud_prevention",
                LegalBasis::LegitimateInterest,
                Retention::Years(1),
                true,
                false,
                false,
            ),
            (
                "legal",
                LegalBasis::LegalObligation,
                Retention::Years(6),
                false,
                false,
                false,
            ),
            (
                "legal.claims",
                LegalBasis::LegalObligation,
                Retention::Years(6),
                true,
                false,
                true,
            ),
            (
                "partner_sharing",
                LegalBasis::Consent,
                Retention::Years(1),
                false,
                true,
                false,
            ),
        ];
        let names: Vec<&str> = policy.purposes.keys().map(String::as_str).collect();
        let mut expected_names: Vec<&str> = expected.iter().map(|e| e.0).collect();
        expected_names.sort_unstable();
        assert_eq!(names, expected_names);
        for (name, basis, retention, essential, sale, restricted) in expected {
            let Some(p) = policy.purpose(name) else {
                panic!("purpose {name} missing");
            };
            assert_eq!(p.name, name);
            assert_eq!(p.basis, basis, "{name}");
            assert_eq!(p.retention, retention, "{name}");
            assert_eq!(p.essential, essential, "{name} essential");
            assert_eq!(p.sale_or_sharing, sale, "{name} sale_or_sharing");
            assert_eq!(
                p.allowed_when_restricted, restricted,
                "{name} allowed_when_restricted"
            );
            assert!(!p.description.is_empty(), "{name}");
        }
        let description = |name: &str| policy.purpose(name).map(|p| p.description.as_str());
        assert_eq!(description("support"), Some("Answer your support requests"));
        assert_eq!(
            description("support.callback"),
            Some("Call you back about an open request")
        );
        assert_eq!(
            description("billing"),
            Some("Invoice you and keep tax records")
        );
        assert_eq!(
            description("analytics"),
            Some("Improve our service from aggregate use")
        );
        assert_eq!(
            description("fraud_prevention"),
            Some("Detect and stop fraud")
        );
        assert_eq!(
            description("legal.claims"),
            Some("Establish or defend legal claims")
        );
        assert_eq!(
            description("partner_sharing"),
            Some("Share your contact with partners")
        );
        assert_eq!(
            policy.parent("marketing.sms").map(|p| p.name.as_str()),
            Some("marketing")
        );
        assert_eq!(
            policy.parent("legal.claims").map(|p| p.name.as_str()),
            Some("legal")
        );
        assert!(policy.parent("support").is_none());
    }

    #[test]
    fn default_policy_children_inherit_unless_they_override() {
        let text = match fs::read_to_string(default_dir().join("default.toml")) {
            Ok(text) => text,
            Err(e) => panic!("cannot read default.toml: {e}"),
        };
        let table: toml::Table = match toml::from_str(&text) {
            Ok(table) => table,
            Err(e) => panic!("{e}"),
        };
        let raw = |name: &str, key: &str| {
            table
                .get("purposes")
                .and_then(|p| p.get(name))
                .and_then(|p| p.get(key))
                .is_some()
        };
        // The children rely on inheritance for what the table says they share.
        for child in ["marketing.email", "marketing.sms"] {
            for key in ["basis", "retention", "essential", "sale_or_sharing"] {
                assert!(!raw(child, key), "{child} sets {key} itself");
            }
        }
        assert!(!raw("legal.claims", "basis") && !raw("legal.claims", "retention"));
        assert!(raw("support.callback", "basis") && raw("support.callback", "retention"));
    }

    #[test]
    fn default_policy_fields_match_default_policy_md() {
        let policy = default_policy();
        let expected: [FieldRow; 8] = [
            (
                "name",
                FieldType::Name,
                "user.name",
                &["support", "billing", "marketing"],
                false,
                false,
            ),
            (
                "email",
                FieldType::Email,
                "user.contact.email",
                &[
                    "support",
                    "billing",
                    "marketing.email",
                    "partner_sharing",
                    "legal.claims",
                ],
                false,
                true,
            ),
            (
                "phone",
                FieldType::Phone,
                "user.contact.phone_number",
                &["support", "support.callback", "marketing.sms"],
                false,
                true,
            ),
            (
                "address",
                FieldType::Address,
                "user.contact.address",
                &["billing", "support"],
                false,
                false,
            ),
            (
                "birth_date",
                FieldType::Date,
                "user.demographic.date_of_birth",
                &["fraud_prevention", "support"],
                false,
                false,
            ),
            (
                "national_id",
                FieldType::NationalId,
                "user.government_id",
                &["billing", "fraud_prevention"],
                true,
                false,
            ),
            (
                "accessibility_needs",
                FieldType::Text,
                "user.health",
                &["support"],
                true,
                false,
            ),
            (
                "support_note",
                FieldType::Text,
                "user.content.private",
                &["support"],
                false,
                false,
            ),
        ];
        assert_eq!(policy.fields.len(), expected.len());
        for (name, ty, category, purposes, sensitive, searchable) in expected {
            let Some(f) = policy.field(name) else {
                panic!("field {name} missing");
            };
            assert_eq!(f.name, name);
            assert_eq!(f.ty, ty, "{name}");
            assert_eq!(f.category, category, "{name}");
            let mut got = f.purposes.clone();
            got.sort();
            let mut want: Vec<String> = purposes.iter().map(|p| (*p).to_owned()).collect();
            want.sort();
            assert_eq!(got, want, "{name}");
            assert_eq!(f.sensitive, sensitive, "{name} sensitive");
            assert_eq!(f.searchable, searchable, "{name} searchable");
        }
    }

    #[test]
    fn default_policy_roles_match_default_policy_md() {
        use Capability::*;
        let policy = default_policy();
        let expected: [RoleRow; 7] = [
            (
                "helpdesk",
                &["support"],
                &[
                    "support",
                    "billing",
                    "marketing",
                    "partner_sharing",
                    "legal.claims",
                ],
                &[Consents, RequestsFile],
                false,
            ),
            ("marketing_tool", &["marketing"], &[], &[], true),
            ("billing_system", &["billing"], &["billing"], &[], true),
            (
                "dpo",
                &["legal.claims"],
                &[],
                &[Consents, RequestsFile, RequestsProcess, Erase, LegalHold],
                false,
            ),
            ("auditor", &[], &[], &[Audit], false),
            ("notifier", &[], &[], &[Notify], false),
            ("admin", &[], &[], &[Admin], false),
        ];
        assert_eq!(policy.roles.len(), expected.len());
        for (name, read, write, capabilities, recipient) in expected {
            let Some(role) = policy.role(name) else {
                panic!("role {name} missing");
            };
            assert_eq!(role.name, name);
            assert_eq!(role.read, read, "{name} read");
            assert_eq!(role.write, write, "{name} write");
            let caps: BTreeSet<Capability> = capabilities.iter().copied().collect();
            assert_eq!(role.capabilities, caps, "{name} capabilities");
            assert_eq!(role.recipient, recipient, "{name} recipient");
            if name != "helpdesk" {
                assert!(role.masks.is_empty(), "{name} masks");
            }
        }
        let recipients: Vec<&str> = policy.recipients().map(|r| r.name.as_str()).collect();
        assert_eq!(recipients, ["billing_system", "marketing_tool"]);
    }

    #[test]
    fn default_policy_masks_and_requests() {
        let policy = default_policy();
        let Some(helpdesk) = policy.role("helpdesk") else {
            panic!("no helpdesk role");
        };
        assert_eq!(
            policy.mask_for(helpdesk, "support", "phone"),
            Some(Mask::Last4)
        );
        assert_eq!(
            policy.mask_for(helpdesk, "support", "national_id"),
            Some(Mask::Hidden)
        );
        assert_eq!(policy.mask_for(helpdesk, "support.callback", "phone"), None);
        assert_eq!(policy.mask_for(helpdesk, "support", "email"), None);
        assert_eq!(
            policy.approval_required,
            BTreeSet::from(["erasure".to_owned()])
        );
        assert!(policy.needs_approval("erasure"));
        assert!(!policy.needs_approval("access"));
        assert_eq!(policy.controller.name, "Example Helpdesk Ltd");
        assert!(!policy.controller.contact.is_empty());
        assert!(policy.controller.dpo_contact.is_some());
    }

    #[test]
    fn nobody_reads_the_legal_parent() {
        let policy = default_policy();
        for role in policy.roles.values() {
            assert!(!role.may_read("legal"), "{} reads legal", role.name);
            assert!(!role.may_write("legal"), "{} writes legal", role.name);
            assert_eq!(
                check_read_purpose(&policy, role, Some("legal")).map(|p| p.name.clone()),
                Err(PurposeError::NotPermitted)
            );
        }
        assert!(
            policy
                .fields
                .values()
                .all(|f| !f.purposes.iter().any(|p| p == "legal"))
        );
    }

    #[test]
    fn policy_serializes_for_the_api() {
        let policy = default_policy();
        let json = match serde_json::to_value(&policy) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(json["purposes"]["support.callback"]["retention"], "90 days");
        assert_eq!(
            json["purposes"]["support.callback"]["basis"],
            "legitimate_interest"
        );
        assert_eq!(json["fields"]["national_id"]["type"], "national_id");
        assert_eq!(
            json["roles"]["helpdesk"]["capabilities"],
            serde_json::json!(["consents", "requests.file"])
        );
        assert_eq!(json["roles"]["helpdesk"]["masks"][0]["mask"], "last4");
        assert_eq!(json["approval_required"], serde_json::json!(["erasure"]));
        assert_eq!(json["controller"]["name"], "Example Helpdesk Ltd");
    }

    #[test]
    fn a_minimal_policy_loads_and_children_inherit() {
        let extra = r#"
[purposes."support.callback"]
description = "Callback"
[purposes."support.callback.urgent"]
basis = "vital_interest"
retention = "3 days"
description = "Urgent"
essential = false
allowed_when_restricted = true
"#;
        let policy = match load(&[("p.toml", &format!("{BASE}{extra}"))]) {
            Ok(policy) => policy,
            Err(e) => panic!("{e:#?}"),
        };
        let callback = policy.purpose("support.callback");
        assert_eq!(
            callback.map(|p| (p.basis, p.retention, p.essential)),
            Some((LegalBasis::Contract, Retention::Years(2), true))
        );
        let urgent = policy.purpose("support.callback.urgent");
        assert_eq!(
            urgent.map(|p| (p.basis, p.retention, p.essential, p.allowed_when_restricted)),
            Some((LegalBasis::VitalInterest, Retention::Days(3), false, true))
        );
        assert!(policy.approval_required.is_empty());
        assert_eq!(policy.controller.address, None);
    }

    #[test]
    fn toml_syntax_errors_name_the_file_and_line() {
        let found = match load(&[
            ("ok.toml", BASE),
            ("bad.toml", "[roles.x]\nread = [\"support\"\n"),
        ]) {
            Ok(_) => panic!("accepted"),
            Err(found) => found,
        };
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("bad.toml: invalid TOML at line "),
            "{found:#?}"
        );
    }

    #[test]
    fn default_policy_keeps_art9_and_ccpa_apart() {
        let policy = default_policy();
        let condition = |name: &str| {
            policy
                .purpose(name)
                .and_then(|p| p.special_category_condition)
        };
        assert_eq!(
            condition("support"),
            Some(SpecialCategoryCondition::ExplicitConsent)
        );
        // Inherited from support.
        assert_eq!(
            condition("support.callback"),
            Some(SpecialCategoryCondition::ExplicitConsent)
        );
        assert_eq!(
            condition("legal.claims"),
            Some(SpecialCategoryCondition::LegalClaims)
        );
        for none in [
            "billing",
            "marketing",
            "analytics",
            "fraud_prevention",
            "legal",
        ] {
            assert_eq!(condition(none), None, "{none}");
        }
        let flags = |name: &str| {
            policy
                .field(name)
                .map(|f| (f.sensitive, f.special_category))
        };
        assert_eq!(flags("accessibility_needs"), Some((true, true)));
        assert_eq!(flags("national_id"), Some((true, false)));
        assert_eq!(flags("email"), Some((false, false)));
        assert!(policy.warnings.is_empty(), "{:?}", policy.warnings);
    }

    #[test]
    fn an_unknown_special_category_condition_is_an_error() {
        assert_problem(
            "[purposes.care]\nbasis = \"contract\"\nretention = \"1 year\"\ndescription = \"C\"\nspecial_category_condition = \"essential\"",
            "p.toml: purposes.care: unknown special_category_condition \"essential\" (expected one of explicit_consent, employment_social_security, vital_interests, not_for_profit_members, manifestly_public, legal_claims, substantial_public_interest, health_care, public_health, archiving_research)",
        );
    }

    #[test]
    fn a_known_special_category_without_the_flag_is_a_warning_naming_file_field_and_category() {
        let unflagged = "[fields.allergies]\ntype = \"text\"\ncategory = \"user.health.allergies\"\npurposes = [\"support\"]\n\
             [fields.faith]\ntype = \"text\"\ncategory = \"user.demographic.religious_belief\"\npurposes = [\"support\"]\n\
             [fields.healthy_food]\ntype = \"text\"\ncategory = \"user.healthy_food\"\npurposes = [\"support\"]";
        let policy = match load(&[("p.toml", &format!("{BASE}\n{unflagged}"))]) {
            Ok(policy) => policy,
            Err(problems) => panic!("a warning must not stop loading: {problems:?}"),
        };
        let warnings: Vec<String> = policy.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [
                "p.toml: fields.allergies: category \"user.health.allergies\" is a GDPR Art. 9 special category but the field lacks special_category = true",
                "p.toml: fields.faith: category \"user.demographic.religious_belief\" is a GDPR Art. 9 special category but the field lacks special_category = true",
            ]
        );
        let flagged = "[fields.allergies]\ntype = \"text\"\ncategory = \"user.health\"\npurposes = [\"support\"]\nspecial_category = true";
        match load(&[("p.toml", &format!("{BASE}\n{flagged}"))]) {
            Ok(policy) => assert!(policy.warnings.is_empty(), "{:?}", policy.warnings),
            Err(problems) => panic!("{problems:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert_problem(
            "[purposes.billing]\nbasis = \"contract\"\nretention = \"1 year\"\ndescription = \"B\"\nbsis = \"x\"",
            "p.toml: purposes.billing: unknown key \"bsis\" (expected one of basis, retention, description, essential, sale_or_sharing, allowed_when_restricted, special_category_condition, descriptions, consent_notice)",
        );
        assert_problem(
            "[fields.email]\ntype = \"email\"\ncategory = \"user.contact.email\"\npurposes = [\"support\"]\nsearchabel = true",
            "p.toml: fields.email: unknown key \"searchabel\" (expected one of type, category, purposes, sensitive, special_category, searchable)",
        );
        assert_problem(
            "[roles.viewer]\nreads = [\"support\"]",
            "p.toml: roles.viewer: unknown key \"reads\" (expected one of read, write, capabilities, masks, recipient, notice_email)",
        );
        assert_problem(
            "[[roles.agent2.masks]]\npurpose = \"support\"\nfield = \"phone\"\nmask = \"last4\"\ncolour = \"red\"\n[roles.agent2]\nread = [\"support\"]",
            "p.toml: roles.agent2.masks[0]: unknown key \"colour\" (expected one of purpose, field, mask)",
        );
        assert_problem(
            "[requests]\napproval = [\"erasure\"]",
            "p.toml: requests: unknown key \"approval\" (expected one of approval_required)",
        );
        assert_problem(
            "[purpose.billing]\nbasis = \"contract\"",
            "p.toml: purpose: unknown section (expected one of controller, purposes, fields, roles, requests)",
        );
        assert_problem(
            "[purposes.support.callback]\ndescription = \"Callback\"",
            "p.toml: purposes.support: unknown key \"callback\"; a child purpose is declared with a quoted name: [purposes.\"support.callback\"]",
        );
    }

    #[test]
    fn a_recipient_may_name_one_email_address_for_its_notices() {
        let with = |role: &str| {
            load(&[(
                "p.toml",
                &format!("{BASE}\n[roles.partner]\nread = [\"support\"]\n{role}"),
            )])
        };
        match with("recipient = true\nnotice_email = \"privacy@partner.example\"") {
            Ok(policy) => assert_eq!(
                policy
                    .role("partner")
                    .and_then(|r| r.notice_email.as_deref()),
                Some("privacy@partner.example")
            ),
            Err(problems) => panic!("{problems:?}"),
        }
        assert_problem(
            "[roles.partner]\nread = [\"support\"]\nnotice_email = \"privacy@partner.example\"",
            "p.toml: roles.partner: notice_email is for recipients only (set recipient = true)",
        );
        for bad in [
            "",
            "privacy",
            "Privacy <privacy@partner.example>",
            "a@b.example, c@d.example",
        ] {
            assert_problem(
                &format!(
                    "[roles.partner]\nread = [\"support\"]\nrecipient = true\nnotice_email = \"{bad}\""
                ),
                "p.toml: roles.partner: notice_email must be one email address, such as privacy@partner.example",
            );
        }
    }

    #[test]
    fn controller_keys_and_values_are_checked() {
        let text = BASE.replace(
            "contact = \"privacy@test.example\"",
            "contact = \"\"\nphone = \"1\"",
        );
        let found = match load(&[("p.toml", &text)]) {
            Ok(_) => panic!("accepted"),
            Err(found) => found,
        };
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("p.toml: controller: unknown key \"phone\"")),
            "{found:#?}"
        );
        assert!(
            found.contains(&"p.toml: controller: contact must not be empty".to_owned()),
            "{found:#?}"
        );
    }

    #[test]
    fn wrong_value_types_name_the_key() {
        assert_problem(
            "[purposes.billing]\nbasis = \"contract\"\nretention = \"1 year\"\ndescription = \"B\"\nessential = \"yes\"",
            "p.toml: purposes.billing: essential: invalid type: string \"yes\", expected a boolean",
        );
        assert_problem(
            "[purposes.billing]\nbasis = \"contract\"\nretention = \"1 year\"",
            "p.toml: purposes.billing: missing field `description`",
        );
        assert_problem(
            "[fields]\nemail = 3",
            "p.toml: fields.email: expected a table, found integer",
        );
    }

    #[test]
    fn references_to_undeclared_purposes_and_fields() {
        assert_problem(
            "[fields.mobile]\ntype = \"phone\"\ncategory = \"user.contact.phone_number\"\npurposes = [\"support\", \"marketing.fax\"]",
            "p.toml: fields.mobile: unknown purpose \"marketing.fax\"",
        );
        assert_problem(
            "[roles.viewer]\nread = [\"support\", \"sales\"]",
            "p.toml: roles.viewer: read: unknown purpose \"sales\"",
        );
        assert_problem(
            "[roles.viewer]\nwrite = [\"billing\"]",
            "p.toml: roles.viewer: write: unknown purpose \"billing\"",
        );
        assert_problem(
            "[[roles.viewer.masks]]\npurpose = \"billing\"\nfield = \"phone\"\nmask = \"last4\"",
            "p.toml: roles.viewer.masks[0]: unknown purpose \"billing\"",
        );
        assert_problem(
            "[[roles.viewer.masks]]\npurpose = \"support\"\nfield = \"fax\"\nmask = \"last4\"\n[roles.viewer]\nread = [\"support\"]",
            "p.toml: roles.viewer.masks[0]: unknown field \"fax\"",
        );
        assert_problem(
            "[fields.nothing]\ntype = \"text\"\ncategory = \"user.other\"\npurposes = []",
            "p.toml: fields.nothing: purposes must list at least one purpose",
        );
    }

    #[test]
    fn mask_rules_are_checked() {
        assert_problem(
            "[[roles.viewer.masks]]\npurpose = \"support\"\nfield = \"phone\"\nmask = \"blur\"\n[roles.viewer]\nread = [\"support\"]",
            "p.toml: roles.viewer.masks[0]: unknown mask \"blur\" (expected one of last4, email, hidden, none)",
        );
        assert_problem(
            "[[roles.viewer.masks]]\npurpose = \"support\"\nfield = \"phone\"\nmask = \"email\"\n[roles.viewer]\nread = [\"support\"]",
            "p.toml: roles.viewer.masks[0]: mask \"email\" applies only to fields of type email, not \"phone\"",
        );
        assert_problem(
            "[[roles.viewer.masks]]\npurpose = \"support\"\nfield = \"phone\"\nmask = \"last4\"\n[roles.viewer]\nread = []",
            "p.toml: roles.viewer.masks[0]: the role does not read for purpose \"support\"",
        );
        assert_problem(
            "[[roles.viewer.masks]]\npurpose = \"support\"\nfield = \"phone\"\nmask = \"last4\"\n[[roles.viewer.masks]]\npurpose = \"support\"\nfield = \"phone\"\nmask = \"hidden\"\n[roles.viewer]\nread = [\"support\"]",
            "p.toml: roles.viewer.masks[1]: a second mask for purpose \"support\" and field \"phone\"",
        );
    }

    #[test]
    fn bad_retention_periods() {
        let purpose = |retention: &str| {
            format!(
                "[purposes.billing]\nbasis = \"contract\"\nretention = \"{retention}\"\ndescription = \"B\""
            )
        };
        assert_problem(
            &purpose("2 fortnights"),
            "p.toml: purposes.billing: bad retention period \"2 fortnights\": unknown retention unit \"fortnights\" (expected days, months or years)",
        );
        for bad in ["0 days", "-1 years"] {
            assert_problem(
                &purpose(bad),
                &format!(
                    "p.toml: purposes.billing: bad retention period \"{bad}\": the number of a retention period must be a whole number of at least 1"
                ),
            );
        }
        assert_problem(
            &purpose("forever"),
            "p.toml: purposes.billing: bad retention period \"forever\": expected \"<n> days\", \"<n> months\" or \"<n> years\"",
        );
    }

    #[test]
    fn unknown_basis_type_capability_and_request_kind() {
        assert_problem(
            "[purposes.billing]\nbasis = \"contrct\"\nretention = \"1 year\"\ndescription = \"B\"",
            "p.toml: purposes.billing: unknown legal basis \"contrct\" (expected one of consent, contract, legal_obligation, legitimate_interest, vital_interest, public_task)",
        );
        assert_problem(
            "[fields.fax]\ntype = \"fax\"\ncategory = \"user.contact.fax\"\npurposes = [\"support\"]",
            "p.toml: fields.fax: unknown field type \"fax\" (expected one of email, phone, name, address, date, text, national_id, iban)",
        );
        assert_problem(
            "[roles.viewer]\ncapabilities = [\"requests_file\"]",
            "p.toml: roles.viewer: unknown capability \"requests_file\" (expected one of consents, requests.file, requests.process, erase, legal_hold, audit, admin, notify)",
        );
        assert_problem(
            "[requests]\napproval_required = [\"erasure\", \"deletion\"]",
            "p.toml: requests: approval_required: unknown request kind \"deletion\" (expected one of access, portability, erasure, rectification, restriction, objection, opt_out_sale, limit_sensitive)",
        );
    }

    #[test]
    fn purpose_hierarchy_and_names() {
        assert_problem(
            "[purposes.\"marketing.email\"]\nbasis = \"consent\"\nretention = \"1 year\"\ndescription = \"M\"",
            "p.toml: purposes.\"marketing.email\": parent purpose \"marketing\" is not declared (declare [purposes.marketing] first)",
        );
        assert_problem(
            "[purposes.Billing]\nbasis = \"contract\"\nretention = \"1 year\"\ndescription = \"B\"",
            "p.toml: purposes.Billing: a purpose name must be lowercase dotted identifiers ([a-z][a-z0-9_]*, separated by dots)",
        );
        assert_problem(
            "[purposes.billing-desk]\nbasis = \"contract\"\nretention = \"1 year\"\ndescription = \"B\"",
            "p.toml: purposes.billing-desk: a purpose name must be lowercase dotted identifiers ([a-z][a-z0-9_]*, separated by dots)",
        );
        assert_problem(
            "[purposes.billing]\ndescription = \"B\"",
            "p.toml: purposes.billing: basis is required for a top-level purpose",
        );
        assert_problem(
            "[purposes.billing]\ndescription = \"B\"",
            "p.toml: purposes.billing: retention is required for a top-level purpose",
        );
        assert_problem(
            "[fields.Phone2]\ntype = \"phone\"\ncategory = \"user.contact.phone_number\"\npurposes = [\"support\"]",
            "p.toml: fields.Phone2: a field name must be a lowercase identifier ([a-z][a-z0-9_]*)",
        );
    }

    #[test]
    fn names_declared_twice_across_files() {
        let other = r#"
[controller]
name = "Other"
contact = "x@other.example"
[purposes.support]
basis = "contract"
retention = "1 year"
description = "S"
[fields.phone]
type = "phone"
category = "user.contact.phone_number"
purposes = ["support"]
[roles.agent]
read = ["support"]
[requests]
approval_required = ["erasure"]
"#;
        let found = match load(&[("a.toml", BASE), ("b.toml", other)]) {
            Ok(_) => panic!("accepted"),
            Err(found) => found,
        };
        for entry in [
            "controller",
            "purposes.support",
            "fields.phone",
            "roles.agent",
        ] {
            let expected = format!("b.toml: {entry}: declared again (first declared in a.toml)");
            assert!(found.contains(&expected), "{expected:?} not in {found:#?}");
        }
        let with_requests = format!("{BASE}\n[requests]\napproval_required = [\"access\"]");
        let found = match load(&[
            ("a.toml", &with_requests),
            ("b.toml", "[requests]\napproval_required = []"),
        ]) {
            Ok(_) => panic!("accepted"),
            Err(found) => found,
        };
        assert_eq!(
            found,
            ["b.toml: requests: declared again (first declared in a.toml)"]
        );
    }

    #[test]
    fn declarations_merge_across_files() {
        let roles = "[roles.viewer]\nread = [\"support.callback\"]\n[purposes.\"support.callback\"]\ndescription = \"C\"";
        let policy = match load(&[("a.toml", BASE), ("b.toml", roles)]) {
            Ok(policy) => policy,
            Err(e) => panic!("{e:#?}"),
        };
        assert!(policy.role("viewer").is_some() && policy.role("agent").is_some());
        assert!(policy.purpose("support.callback").is_some());
    }

    #[test]
    fn a_missing_controller_is_an_error() {
        let without = BASE.replace(
            "[controller]\nname = \"Test Ltd\"\ncontact = \"privacy@test.example\"\n",
            "",
        );
        assert_eq!(
            load(&[("p.toml", &without)]).err(),
            Some(vec![
                "policy: controller: no policy file declares the [controller] section".to_owned()
            ])
        );
        assert_eq!(
            load(&[]).err(),
            Some(vec!["policy: no policy file given".to_owned()])
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let extra = r#"
[purposes.billing]
basis = "contrct"
retention = "2 fortnights"
description = "B"
bsis = "x"
[fields.mobile]
type = "phone"
category = "user.contact.phone_number"
purposes = ["marketing.fax"]
[roles.viewer]
read = ["sales"]
capabilities = ["everything"]
"#;
        let found = problems(extra);
        assert_eq!(found.len(), 6, "{found:#?}");
        let entries = [
            "purposes.billing",
            "purposes.billing",
            "purposes.billing",
            "fields.mobile",
            "roles.viewer",
            "roles.viewer",
        ];
        for (problem, entry) in found.iter().zip(entries) {
            assert!(
                problem.starts_with(&format!("p.toml: {entry}: ")),
                "{problem}"
            );
        }
    }

    #[test]
    fn load_dir_reads_every_toml_file_and_names_paths() {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("{e}"),
        };
        let write = |name: &str, text: &str| {
            if let Err(e) = fs::write(dir.path().join(name), text) {
                panic!("{e}");
            }
        };
        let empty = Policy::load_dir(dir.path()).map(|_| ());
        let shown = dir.path().display().to_string();
        assert_eq!(
            empty.map_err(|e| e.to_string()),
            Err(format!("{shown}: no *.toml policy file in the directory"))
        );

        write("base.toml", BASE);
        write("notes.txt", "not a policy");
        write(".draft.toml", "garbage [[[");
        write("extra.toml", "[roles.viewer]\nread = [\"nope\"]");
        let errors = match Policy::load_dir(dir.path()) {
            Ok(_) => panic!("accepted"),
            Err(errors) => errors,
        };
        let path = dir.path().join("extra.toml").display().to_string();
        assert_eq!(
            errors.to_string(),
            format!("{path}: roles.viewer: read: unknown purpose \"nope\"")
        );
        assert_eq!(errors.0[0].file, path);
        assert_eq!(errors.0[0].entry, "roles.viewer");
        assert_eq!(errors.0[0].problem, "read: unknown purpose \"nope\"");

        write("extra.toml", "[roles.viewer]\nread = [\"support\"]");
        let policy = match Policy::load_dir(dir.path()) {
            Ok(policy) => policy,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(policy.roles.len(), 2);

        let missing = dir.path().join("missing");
        let err = Policy::load_dir(&missing)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            matches!(&err, Err(text) if text.contains("cannot read the policy directory")),
            "{err:?}"
        );
    }
}
