//! Access and portability exports (GDPR Art. 15, 20; CCPA §1798.110,
//! §1798.130) and the import of a portability export into an empty vault.
//!
//! The package is JSON (schema: [`SCHEMA`], published at
//! `GET /v1/schemas/export.json`, JSON Schema draft 2020-12):
//! - `controller`: who is responsible and how to reach them (and the DPO);
//! - `subject`: the customer's id and external id;
//! - `data`: every stored value, decrypted, with its type, category,
//!   sensitivity, when, by whom, through which channel and under which
//!   notice version it was collected, and per purpose the description,
//!   legal basis, retention, collection time and end of retention;
//! - `consents`: the current state and the whole ledger;
//! - `recipients`: every recipient role that was given this customer's
//!   data, with each disclosure (when, for which purpose, which fields);
//! - `processing_purposes`: the purposes this customer's data serves;
//! - `rights` and `supervisory_authority`: what the customer may ask for and
//!   where to complain;
//! - `access_log`: every audit event about this customer (when, the role
//!   that acted, what, for which purpose, which fields, the outcome) —
//!   never an actor's id, never another customer's data (R25);
//! - `erasure`: the receipt, when the customer was erased. An erased
//!   customer's package holds nothing else about them: no data, consents,
//!   recipients or log. A partially erased customer's package holds the
//!   kept values and the receipt.
//!
//! [`build_package`] writes no audit event: the caller records the export.

use crate::actor::Actor;
use crate::audit::{Action, Decision};
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::erasure::{self, Ctx, ErasureReceipt};
use crate::clock::{from_micros, parse_rfc3339, rfc3339, to_micros};
use crate::consent::ConsentState;
use crate::crypto::Dek;
use crate::error::ServiceError;
use crate::policy::{self, Controller, Policy};
use crate::state::AppState;
use crate::store::{AuditFilter, ConsentEvent, ErasureJobStatus, Mutation, Unit, ValuePurpose};

pub const SCHEMA_VERSION: &str = "1";

/// The JSON Schema (draft 2020-12) every package validates against.
pub const SCHEMA: &str = include_str!("export.schema.json");

/// Most audit events one package lists.
const ACCESS_LOG_MAX: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub schema_version: String,
    /// `access` or `portability`.
    pub kind: String,
    pub generated_at: String,
    pub controller: Controller,
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<ErasureReceipt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<DataItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consents: Option<Consents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<Recipient>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_purposes: Option<Vec<PurposeInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<Vec<AccessEntry>>,
    pub rights: Vec<Right>,
    pub supervisory_authority: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataItem {
    pub field: String,
    pub value: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub category: String,
    /// CCPA sensitive personal information.
    pub sensitive: bool,
    /// A GDPR Art. 9 special category; each purpose then names the Art. 9(2)
    /// condition relied on.
    #[serde(default)]
    pub special_category: bool,
    pub collected_at: String,
    /// The client or user that collected it.
    pub collected_by: String,
    pub channel: Option<String>,
    pub notice_version: Option<String>,
    pub purposes: Vec<PurposeUse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeUse {
    pub purpose: String,
    pub description: String,
    pub legal_basis: String,
    pub retention: String,
    pub collected_at: String,
    /// `null` while a legal hold keeps the value.
    pub expires_at: Option<String>,
    /// For a special-category value: the GDPR Art. 9(2) condition the
    /// purpose relies on. Absent for other values, and when the purpose
    /// declares none (the value then does not serve it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_category_condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consents {
    pub current: Vec<CurrentConsent>,
    pub events: Vec<ConsentRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrentConsent {
    pub purpose: String,
    /// `granted`, `withdrawn` or `expired`.
    pub status: String,
    pub since: String,
    /// The latest grant was recorded as explicit (GDPR Art. 9(2)(a)).
    #[serde(default)]
    pub explicit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecord {
    pub id: Uuid,
    pub purpose: String,
    pub action: String,
    pub notice_version: String,
    pub notice_text_sha256: String,
    pub language: String,
    pub jurisdiction: String,
    pub channel: String,
    pub captured_by: String,
    pub at: String,
    /// Recorded as explicit consent (GDPR Art. 9(2)(a)).
    #[serde(default)]
    pub explicit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// The recipient's role in the policy (e.g. `billing_system`).
    pub recipient: String,
    pub disclosures: Vec<Disclosure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disclosure {
    pub at: String,
    pub purpose: String,
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeInfo {
    pub purpose: String,
    pub description: String,
    pub legal_basis: String,
    pub retention: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    pub at: String,
    /// The role of who acted (`helpdesk`, `billing_system`, `dpo`, `system` …).
    pub actor_role: String,
    pub action: String,
    pub purpose: Option<String>,
    pub fields: Vec<String>,
    pub decision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Right {
    pub right: String,
    pub description: String,
    pub legal_reference: String,
}

/// The rights a customer has, and how to use them.
pub fn rights() -> Vec<Right> {
    let r = |right: &str, description: &str, legal_reference: &str| Right {
        right: right.into(),
        description: description.into(),
        legal_reference: legal_reference.into(),
    };
    vec![
        r(
            "access",
            "Get a copy of your data and of how it is used (this package).",
            "GDPR Art. 15; CCPA §1798.110",
        ),
        r(
            "rectification",
            "Have inaccurate data corrected and incomplete data completed.",
            "GDPR Art. 16; CCPA §1798.106",
        ),
        r(
            "erasure",
            "Have your data erased, except what the law requires us to keep.",
            "GDPR Art. 17; CCPA §1798.105",
        ),
        r(
            "restriction",
            "Have the use of your data restricted to storage while a dispute is settled.",
            "GDPR Art. 18",
        ),
        r(
            "portability",
            "Receive your data in this machine-readable form and have it moved to another controller.",
            "GDPR Art. 20",
        ),
        r(
            "objection",
            "Object to uses based on legitimate interest, and to direct marketing at any time.",
            "GDPR Art. 21",
        ),
        r(
            "withdraw_consent",
            "Withdraw a consent at any time, as easily as you gave it.",
            "GDPR Art. 7(3)",
        ),
        r(
            "opt_out_of_sale_or_sharing",
            "Opt out of the sale or sharing of your personal information.",
            "CCPA §1798.120",
        ),
        r(
            "limit_sensitive",
            "Limit the use of your sensitive personal information.",
            "CCPA §1798.121",
        ),
        r(
            "complain",
            "Lodge a complaint with a supervisory authority.",
            "GDPR Art. 77",
        ),
    ]
}

pub const SUPERVISORY_AUTHORITY: &str = "You may lodge a complaint with a supervisory authority, in particular in the EU member state of your habitual residence, your place of work or the place of the alleged infringement (GDPR Art. 77); in California, with the California Privacy Protection Agency.";

/// Builds the export package of `customer` (`kind`: `access` or
/// `portability`) as JSON. An interrupted erasure of the customer is
/// finished first.
pub async fn build_package(
    state: &AppState,
    customer: Uuid,
    kind: &str,
    now: i64,
) -> Result<serde_json::Value, ServiceError> {
    let ctx = Ctx::from_state(state);
    let pkg = package(&ctx, customer, kind, now).await?;
    serde_json::to_value(pkg).map_err(ServiceError::internal)
}

/// The package as a typed value.
pub async fn package(
    ctx: &Ctx<'_>,
    customer: Uuid,
    kind: &str,
    now: i64,
) -> Result<Package, ServiceError> {
    if !matches!(kind, "access" | "portability") {
        return Err(
            ServiceError::invalid_request("kind must be access or portability").field("kind"),
        );
    }
    let policy = ctx.policy;
    let mut job = ctx.store.erasure_job(customer).await?;
    if job
        .as_ref()
        .is_some_and(|j| j.status == ErasureJobStatus::Running)
    {
        erasure::run(ctx, customer, &Actor::system(), None, false).await?;
        job = ctx.store.erasure_job(customer).await?;
    }
    let Some(record) = ctx.store.customer_record(customer).await? else {
        return Err(ServiceError::not_found("customer_not_found"));
    };
    let base = Package {
        schema_version: SCHEMA_VERSION.into(),
        kind: kind.into(),
        generated_at: rfc3339(now),
        controller: policy.controller.clone(),
        subject: Subject {
            id: customer,
            external_id: None,
            created_at: None,
        },
        erasure: job.as_ref().map(erasure::receipt),
        data: None,
        consents: None,
        recipients: None,
        processing_purposes: None,
        access_log: None,
        rights: rights(),
        supervisory_authority: SUPERVISORY_AUTHORITY.into(),
    };
    let (Some(version), Some(wrapped)) =
        (record.customer.kek_version, &record.customer.wrapped_dek)
    else {
        // Erased: the package holds only the receipt.
        return Ok(base);
    };
    if job
        .as_ref()
        .is_some_and(|j| j.status == ErasureJobStatus::Erased)
    {
        return Ok(base);
    }
    let dek = ctx
        .keys
        .keyring()
        .unwrap_dek(customer, version, wrapped)
        .map_err(ServiceError::internal)?;
    let data = data_items(policy, &dek, customer, &record.fields)?;
    let consent_state = ConsentState::derive(policy, &record.consents, now);
    let consents = Consents {
        current: consent_state
            .current()
            .map(|c| CurrentConsent {
                purpose: c.purpose.clone(),
                status: serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                since: rfc3339(c.since),
                explicit: c.explicit,
            })
            .collect(),
        events: record.consents.iter().map(consent_record).collect(),
    };
    let events = ctx
        .store
        .audit_events(&AuditFilter {
            customer_id: Some(customer.to_string()),
            limit: ACCESS_LOG_MAX,
            ..AuditFilter::default()
        })
        .await?;
    let access_log = events
        .iter()
        .filter(|e| e.draft.customer_id.as_deref() == Some(customer.to_string().as_str()))
        .map(|e| AccessEntry {
            at: rfc3339(e.at),
            actor_role: e.draft.role.clone(),
            action: e.draft.action.clone(),
            purpose: e.draft.purpose.clone(),
            fields: e.draft.fields.clone(),
            decision: e.draft.decision.clone(),
        })
        .collect();
    let mut recipients: BTreeMap<String, Vec<Disclosure>> = BTreeMap::new();
    for d in ctx.store.disclosures(customer).await? {
        if d.customer_id != customer {
            continue;
        }
        recipients
            .entry(d.recipient_role.clone())
            .or_default()
            .push(Disclosure {
                at: rfc3339(d.at),
                purpose: d.purpose.clone(),
                fields: d.fields.clone(),
            });
    }
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for f in &record.fields {
        used.extend(f.purposes.iter().map(|p| p.purpose.as_str()));
    }
    used.extend(record.consents.iter().map(|c| c.purpose.as_str()));
    let processing_purposes = used
        .into_iter()
        .filter_map(|p| policy.purpose(p))
        .map(|p| PurposeInfo {
            purpose: p.name.clone(),
            description: p.description.clone(),
            legal_basis: p.basis.as_str().into(),
            retention: p.retention.to_string(),
        })
        .collect();
    Ok(Package {
        subject: Subject {
            id: customer,
            external_id: record.customer.external_id.clone(),
            created_at: Some(rfc3339(record.customer.created_at)),
        },
        data: Some(data),
        consents: Some(consents),
        recipients: Some(
            recipients
                .into_iter()
                .map(|(recipient, disclosures)| Recipient {
                    recipient,
                    disclosures,
                })
                .collect(),
        ),
        processing_purposes: Some(processing_purposes),
        access_log: Some(access_log),
        ..base
    })
}

fn data_items(
    policy: &Policy,
    dek: &Dek,
    customer: Uuid,
    fields: &[crate::store::FieldRow],
) -> Result<Vec<DataItem>, ServiceError> {
    let mut out = Vec::new();
    for row in fields {
        let plain = dek
            .decrypt_field(customer, &row.field, &row.ciphertext)
            .map_err(ServiceError::internal)?;
        let value = String::from_utf8(plain.to_vec()).map_err(ServiceError::internal)?;
        let def = policy.field(&row.field);
        out.push(DataItem {
            field: row.field.clone(),
            value,
            ty: def.map(|d| d.ty.as_str().to_owned()).unwrap_or_default(),
            category: def.map(|d| d.category.clone()).unwrap_or_default(),
            sensitive: def.is_some_and(|d| d.sensitive),
            special_category: def.is_some_and(|d| d.special_category),
            collected_at: rfc3339(row.collected_at),
            collected_by: row.collected_by.clone(),
            channel: row.channel.clone(),
            notice_version: row.notice_version.clone(),
            purposes: row
                .purposes
                .iter()
                .map(|p| {
                    let d = policy.purpose(&p.purpose);
                    PurposeUse {
                        purpose: p.purpose.clone(),
                        description: d.map(|d| d.description.clone()).unwrap_or_default(),
                        legal_basis: d.map(|d| d.basis.as_str().to_owned()).unwrap_or_default(),
                        retention: d.map(|d| d.retention.to_string()).unwrap_or_default(),
                        collected_at: rfc3339(p.collected_at),
                        expires_at: (p.expires_at != erasure::HELD).then(|| rfc3339(p.expires_at)),
                        special_category_condition: def
                            .filter(|f| f.special_category)
                            .and(d)
                            .and_then(|d| d.special_category_condition)
                            .map(|c| c.as_str().to_owned()),
                    }
                })
                .collect(),
        });
    }
    Ok(out)
}

fn consent_record(c: &ConsentEvent) -> ConsentRecord {
    ConsentRecord {
        id: c.id,
        purpose: c.purpose.clone(),
        action: c.action.clone(),
        notice_version: c.notice_version.clone(),
        notice_text_sha256: c.notice_text_sha256.clone(),
        language: c.language.clone(),
        jurisdiction: c.jurisdiction.clone(),
        channel: c.channel.clone(),
        captured_by: c.captured_by.clone(),
        at: rfc3339(c.at),
        explicit: c.explicit,
    }
}

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub customer_id: Uuid,
    pub values: usize,
    pub consents: usize,
}

/// Recreates the customer of a portability (or access) package in an EMPTY
/// vault: same id and external id, every value with its purposes (keeping
/// each purpose's collection time and retention end), collection facts and
/// the consent ledger. The values are encrypted under a fresh data key.
/// Refuses a vault that already holds customers, a package of an erased
/// customer, and any field or purpose the policy does not declare.
pub async fn import_package(
    ctx: &Ctx<'_>,
    pkg: &Package,
    actor: &Actor,
) -> Result<Imported, String> {
    if pkg.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "unsupported schema_version {:?} (this vault reads {SCHEMA_VERSION:?})",
            pkg.schema_version
        ));
    }
    let Some(data) = &pkg.data else {
        return Err(
            "the package holds no data (an erased customer's package cannot be imported)".into(),
        );
    };
    let db = |e: crate::store::StoreError| format!("database error: {e}");
    if ctx.store.customer_count().await.map_err(db)? > 0 {
        return Err("the vault already holds customers: import needs an empty vault".into());
    }
    let policy = ctx.policy;
    let now = ctx.clock.now_micros();
    let id = pkg.subject.id;
    let time = |s: &str, what: &str| {
        parse_rfc3339(s).ok_or_else(|| format!("{what} is not an RFC 3339 time"))
    };
    let created_at = match &pkg.subject.created_at {
        Some(t) => time(t, "subject.created_at")?,
        None => now,
    };
    let dek = Dek::generate().map_err(|e| e.to_string())?;
    let keyring = ctx.keys.keyring();
    let (kek_version, wrapped_dek) = keyring.wrap_dek(id, &dek).map_err(|e| e.to_string())?;
    let mut mutations = vec![Mutation::InsertCustomer {
        id,
        external_id: pkg.subject.external_id.clone(),
        kek_version,
        wrapped_dek,
        at: created_at,
    }];
    let mut names = Vec::new();
    for item in data {
        let def = policy
            .field(&item.field)
            .ok_or_else(|| format!("field {:?} is not declared in the policy", item.field))?;
        let normalized = policy::normalize(def.ty, &item.value)
            .map_err(|e| format!("field {:?}: {e}", item.field))?;
        if item.purposes.is_empty() {
            return Err(format!("field {:?} has no purpose", item.field));
        }
        let mut purposes = Vec::new();
        for p in &item.purposes {
            let declared = policy.purpose(&p.purpose).ok_or_else(|| {
                format!(
                    "field {:?}: purpose {:?} is not declared",
                    item.field, p.purpose
                )
            })?;
            if !def.purposes.iter().any(|a| policy::covers(a, &p.purpose)) {
                return Err(format!(
                    "field {:?} may not be collected for {:?} under this policy",
                    item.field, p.purpose
                ));
            }
            let collected_at = time(&p.collected_at, "a purpose's collected_at")?;
            let expires_at = match &p.expires_at {
                Some(t) => time(t, "a purpose's expires_at")?,
                None => to_micros(declared.retention.end_from(from_micros(collected_at))),
            };
            purposes.push(ValuePurpose {
                purpose: p.purpose.clone(),
                collected_at,
                expires_at,
            });
        }
        let ciphertext = dek
            .encrypt_field(id, &def.name, normalized.as_bytes())
            .map_err(|e| e.to_string())?;
        mutations.push(Mutation::PutField {
            customer_id: id,
            field: def.name.clone(),
            ciphertext,
            collected_by: item.collected_by.clone(),
            channel: item.channel.clone(),
            notice_version: item.notice_version.clone(),
            at: time(&item.collected_at, "a value's collected_at")?,
            purposes,
            blind_index: def
                .searchable
                .then(|| ctx.keys.index.blind_index(&def.name, &normalized).to_vec()),
        });
        names.push(def.name.clone());
    }
    let ledger = pkg
        .consents
        .as_ref()
        .map(|c| c.events.as_slice())
        .unwrap_or_default();
    for c in ledger {
        if policy.purpose(&c.purpose).is_none() {
            return Err(format!("consent purpose {:?} is not declared", c.purpose));
        }
        if !matches!(c.action.as_str(), "grant" | "withdraw") {
            return Err(format!(
                "consent action {:?} is neither grant nor withdraw",
                c.action
            ));
        }
        mutations.push(Mutation::AppendConsent(ConsentEvent {
            id: c.id,
            customer_id: id,
            purpose: c.purpose.clone(),
            action: c.action.clone(),
            notice_version: c.notice_version.clone(),
            notice_text_sha256: c.notice_text_sha256.clone(),
            language: c.language.clone(),
            jurisdiction: c.jurisdiction.clone(),
            channel: c.channel.clone(),
            captured_by: c.captured_by.clone(),
            at: time(&c.at, "a consent's at")?,
            explicit: c.action == "grant" && c.explicit,
        }));
    }
    let ev = crate::audit::EventDraft::new(
        &actor.id,
        &actor.role,
        Action::CustomerImport,
        Decision::Allowed,
        &actor.request_id,
    )
    .customer(id)
    .fields(names.clone())
    .reason("kind", &pkg.kind);
    ctx.commit(Unit {
        mutations,
        events: vec![ev],
    })
    .await
    .map_err(|e| match e {
        crate::audit::CommitError::Conflict(what) => {
            format!("the package conflicts with stored data ({what})")
        }
        other => format!("cannot store the customer: {other}"),
    })?;
    Ok(Imported {
        customer_id: id,
        values: names.len(),
        consents: ledger.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_json_of_draft_2020_12() {
        let v: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
        let required = v["required"].as_array().unwrap();
        for r in ["schema_version", "controller", "subject", "rights"] {
            assert!(required.iter().any(|x| x == r), "{r}");
        }
    }

    #[test]
    fn rights_name_every_right_r22_lists() {
        let names: Vec<String> = rights().into_iter().map(|r| r.right).collect();
        for r in [
            "rectification",
            "erasure",
            "restriction",
            "objection",
            "complain",
        ] {
            assert!(names.iter().any(|n| n == r), "{r}");
        }
    }
}
