//! GDPR Art. 9 special categories, kept apart from CCPA's sensitive data
//! (REQUIREMENTS R5 and R5b), with the shipped policy: accessibility needs
//! (`user.health`) serve `support` only under the customer's explicit
//! consent; a national id is governed by the CCPA limit alone.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const NEEDS: &str = "wheelchair access, large print";

fn grant(purpose: &str, explicit: bool) -> Value {
    let mut c = consent(purpose, "grant");
    c["explicit"] = json!(explicit);
    c
}

/// A customer with an email for support and billing and, when `needs`,
/// accessibility needs for support; `consents` given in the same request.
fn customer(email: &str, needs: bool, consents: Value) -> Value {
    let mut body = json!({
        "external_id": format!("zd-{}", Uuid::now_v7().simple()),
        "channel": "chat", "notice_version": "2026-01",
        "fields": {"email": {"value": email, "purposes": ["support", "billing"]}},
        "consents": consents
    });
    if needs {
        body["fields"]["accessibility_needs"] = json!({"value": NEEDS, "purposes": ["support"]});
    }
    body
}

fn in_request(purpose: &str, explicit: bool) -> Value {
    json!({"purpose": purpose, "notice_version": "2026-01", "notice_text_sha256": NOTICE_SHA,
           "language": "it", "jurisdiction": "EU", "explicit": explicit})
}

fn withheld(profile: &Value, field: &str) -> Option<String> {
    profile["withheld"]
        .as_array()?
        .iter()
        .find(|w| w["field"] == field)
        .and_then(|w| w["reason"].as_str().map(str::to_owned))
}

/// Reads the customer for `purpose`: (the needs if served, the withheld
/// reason otherwise), and the single-field answer agrees.
async fn needs_for(
    v: &TestVault,
    token: &str,
    id: &str,
    purpose: &str,
) -> (Option<String>, Option<String>) {
    let (s, p) = v
        .get(token, &format!("/v1/customers/{id}?purpose={purpose}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let served = p["fields"]["accessibility_needs"]
        .as_str()
        .map(str::to_owned);
    let reason = withheld(&p, "accessibility_needs");
    let (s, one) = v
        .get(
            token,
            &format!("/v1/customers/{id}/fields/accessibility_needs?purpose={purpose}"),
        )
        .await;
    match (&served, &reason) {
        (Some(value), None) => {
            assert_eq!(s, StatusCode::OK, "{one}");
            assert_eq!(one["value"].as_str(), Some(value.as_str()));
        }
        (None, Some(code)) => {
            assert_eq!(s, StatusCode::FORBIDDEN, "{one}");
            assert_eq!(one["code"].as_str(), Some(code.as_str()));
        }
        _ => panic!("served and withheld at once: {p}"),
    }
    (served, reason)
}

#[tokio::test]
async fn r5_the_health_note_serves_support_only_under_explicit_consent() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;

        // Collection: without consent, or with a consent that is not
        // explicit, support may not take the health note.
        for consents in [json!([]), json!([in_request("support", false)])] {
            let (s, b) = v
                .post(
                    &t,
                    "/v1/customers?purpose=support",
                    &customer("ada@example.com", true, consents),
                )
                .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
            assert_eq!(b["code"], "consent_required");
            assert_eq!(b["field"], "accessibility_needs");
            assert!(!b.to_string().contains("wheelchair"), "{b}");
        }
        // Nothing was stored by the refused calls.
        let (_, found) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ada@example.com"}),
            )
            .await;
        assert_eq!(found["customers"], json!([]), "{found}");

        // With explicit consent in the same request: stored and served.
        let id = v
            .create(
                &t,
                &customer(
                    "ada@example.com",
                    true,
                    json!([in_request("support", true)]),
                ),
            )
            .await;
        assert_eq!(
            needs_for(&v, &t, &id, "support").await,
            (Some(NEEDS.to_owned()), None)
        );
        // support.callback inherits the condition; the consent to support covers it.
        assert_eq!(
            needs_for(&v, &t, &id, "support.callback").await,
            (Some(NEEDS.to_owned()), None)
        );
        let (_, consents) = v.get(&t, &format!("/v1/customers/{id}/consents")).await;
        assert_eq!(consents["events"][0]["explicit"], true, "{consents}");
        assert_eq!(consents["current"][0]["explicit"], true, "{consents}");

        // Withdrawn: withheld at once.
        let path = format!("/v1/customers/{id}/consents");
        let (s, b) = v.post(&t, &path, &consent("support", "withdraw")).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(
            needs_for(&v, &t, &id, "support").await,
            (None, Some("no_consent".to_owned()))
        );
        // A consent that is not explicit is not enough.
        let (s, b) = v.post(&t, &path, &grant("support", false)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["explicit"], false);
        assert_eq!(
            needs_for(&v, &t, &id, "support").await,
            (None, Some("no_consent".to_owned()))
        );
        // Explicit again: served again.
        let (s, b) = v.post(&t, &path, &grant("support", true)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["explicit"], true);
        assert_eq!(
            needs_for(&v, &t, &id, "support").await,
            (Some(NEEDS.to_owned()), None)
        );
        // The email, not a special category, was served all along.
        let (_, p) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(p["fields"]["email"], "ada@example.com");

        // A withdrawal cannot be explicit.
        let mut bad = consent("support", "withdraw");
        bad["explicit"] = json!(true);
        let (s, b) = v.post(&t, &path, &bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["field"], "explicit");

        // The audit trail names the Art. 9(2) condition of each served
        // read, never the value.
        let audit = v.audit().await;
        let served: Vec<_> = audit
            .iter()
            .filter(|e| {
                e.draft.customer_id.as_deref() == Some(id.as_str())
                    && e.draft.action.starts_with("customer.read")
                    && e.draft.decision == "allowed"
                    && e.draft.purpose.as_deref() == Some("support")
                    && e.draft.fields.iter().any(|f| f == "accessibility_needs")
            })
            .collect();
        // Five served reads for support: profile and field after creation,
        // profile and field after the second explicit grant, the email check.
        assert_eq!(served.len(), 5, "{served:?}");
        for e in &served {
            assert_eq!(
                e.draft
                    .reasons
                    .get("art9.accessibility_needs")
                    .map(String::as_str),
                Some("explicit_consent"),
                "{:?}",
                e.draft
            );
        }
        let withheld_reads = audit.iter().filter(|e| {
            e.draft.customer_id.as_deref() == Some(id.as_str()) && e.draft.decision == "withheld"
        });
        for e in withheld_reads {
            assert!(!e.draft.reasons.contains_key("art9.accessibility_needs"));
        }
        let text = serde_json::to_string(&audit).unwrap();
        assert!(!text.contains("wheelchair"));
    })
    .await;
}

#[tokio::test]
async fn r5_collecting_for_an_existing_customer_needs_explicit_consent_first() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v
            .create(&t, &customer("bea@example.com", false, json!([])))
            .await;
        let path = format!("/v1/customers/{id}?purpose=support");
        let add =
            json!({"fields": {"accessibility_needs": {"value": NEEDS, "purposes": ["support"]}}});
        let (s, b) = v.patch(&t, &path, &add).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["code"], "consent_required");
        let consents = format!("/v1/customers/{id}/consents");
        v.post(&t, &consents, &grant("support", false)).await;
        let (s, b) = v.patch(&t, &path, &add).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        v.post(&t, &consents, &grant("support", true)).await;
        let (s, b) = v.patch(&t, &path, &add).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            needs_for(&v, &t, &id, "support").await,
            (Some(NEEDS.to_owned()), None)
        );
    })
    .await;
}

#[tokio::test]
async fn r5_the_art30_record_and_the_export_name_the_condition_relied_on() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let (s, ropa) = v.get(&t, "/v1/processing-activities").await;
        assert_eq!(s, StatusCode::OK);
        let activity = |purpose: &str| {
            ropa["activities"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["purpose"] == purpose)
                .cloned()
                .unwrap()
        };
        assert_eq!(
            activity("support")["special_categories"],
            json!([{"field": "accessibility_needs", "category": "user.health",
                    "condition": "explicit_consent"}])
        );
        assert_eq!(activity("billing")["special_categories"], json!([]));
        // national_id: CCPA sensitive, no Art. 9 category.
        assert_eq!(activity("billing")["sensitive_data"], true);

        let id = v
            .create(
                &t,
                &customer("cy@example.com", true, json!([in_request("support", true)])),
            )
            .await;
        let (s, pkg) = v
            .get(&dpo, &format!("/v1/customers/{id}/export?kind=access"))
            .await;
        assert_eq!(s, StatusCode::OK, "{pkg}");
        let item = pkg["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["field"] == "accessibility_needs")
            .cloned()
            .unwrap();
        assert_eq!(item["special_category"], true);
        assert_eq!(item["sensitive"], true);
        assert_eq!(
            item["purposes"][0]["special_category_condition"],
            "explicit_consent"
        );
        assert_eq!(pkg["consents"]["events"][0]["explicit"], true);
    })
    .await;
}

/// The shipped policy with `edit` applied, in a directory of its own.
fn edited_policy(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml");
    let text = edit(std::fs::read_to_string(shipped).unwrap());
    std::fs::write(dir.path().join("default.toml"), text).unwrap();
    dir
}

#[tokio::test]
async fn r5_a_purpose_without_a_condition_never_collects_nor_serves_the_health_note() {
    for backend in backends() {
        let v = TestVault::start(backend).await;
        let t = v.token("helpdesk").await;
        let id = v
            .create(
                &t,
                &customer(
                    "dan@example.com",
                    true,
                    json!([in_request("support", true)]),
                ),
            )
            .await;
        assert_eq!(
            needs_for(&v, &t, &id, "support").await,
            (Some(NEEDS.to_owned()), None)
        );

        // The controller drops support's Art. 9(2) condition.
        let line = "special_category_condition = \"explicit_consent\"\n";
        let policy = edited_policy(|text| {
            assert!(text.contains(line));
            // Its consent notice (with the explicit statement) goes with it.
            let notice = "[purposes.support.consent_notice]";
            let start = text.find(notice).expect("support's consent notice");
            let end = start
                + text[start..]
                    .find("\n[purposes.\"support.callback\"]")
                    .expect("the next purpose");
            let text = format!("{}{}", &text[..start], &text[end..]);
            text.replacen(line, "", 1)
        });
        let (dir, url) = v.stop().await;
        let policy_dir = policy.path().to_owned();
        let v = TestVault::start_with_adjusted(backend, dir, url, |s, _| {
            s.policy_dir = policy_dir;
        })
        .await;
        let t = v.token("helpdesk").await;
        // The explicit consent is still active, and still not enough.
        let (_, consents) = v.get(&t, &format!("/v1/customers/{id}/consents")).await;
        assert_eq!(consents["current"][0]["status"], "granted");
        assert_eq!(consents["current"][0]["explicit"], true);
        for purpose in ["support", "support.callback"] {
            assert_eq!(
                needs_for(&v, &t, &id, purpose).await,
                (None, Some("special_category".to_owned())),
                "{purpose}"
            );
        }
        // Nor is a new value collected for it, explicit consent or not.
        let (s, b) = v
            .post(
                &t,
                "/v1/customers?purpose=support",
                &customer(
                    "eve@example.com",
                    true,
                    json!([in_request("support", true)]),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["code"], "purpose_not_allowed_for_field");
        assert_eq!(b["field"], "accessibility_needs");
        let (_, ropa) = v.get(&t, "/v1/processing-activities").await;
        let support = ropa["activities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["purpose"] == "support")
            .cloned()
            .unwrap();
        assert_eq!(support["special_categories"][0]["condition"], Value::Null);
    }
}

#[tokio::test]
async fn r5b_a_national_id_is_governed_by_the_ccpa_limit_alone() {
    // The shipped policy, plus an analyst reading national ids for a
    // non-essential purpose (analytics) to show the limit.
    let policy = edited_policy(|text| {
        let from = "purposes = [\"billing\", \"fraud_prevention\"]\nsensitive = true\n";
        assert!(text.contains(from));
        text.replacen(
            from,
            "purposes = [\"billing\", \"fraud_prevention\", \"analytics\"]\nsensitive = true\n",
            1,
        ) + "\n[roles.analyst]\nread = [\"analytics\", \"billing\"]\nwrite = [\"analytics\", \"billing\"]\n"
    });
    for backend in backends() {
        let policy_dir = policy.path().to_owned();
        let v = TestVault::start_adjusted(backend, |s, _| s.policy_dir = policy_dir).await;
        let t = v.token("analyst").await;
        // No consent of any kind is needed to collect or read it.
        let body = json!({
            "external_id": format!("zd-{}", Uuid::now_v7().simple()),
            "fields": {
                "email": {"value": "fay@example.com", "purposes": ["billing"]},
                "national_id": {"value": "RSSMRA85T10A562S", "purposes": ["billing", "analytics"]}
            }
        });
        let (s, created) = v.post(&t, "/v1/customers?purpose=billing", &body).await;
        assert_eq!(s, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        for purpose in ["analytics", "billing"] {
            let (s, p) = v
                .get(&t, &format!("/v1/customers/{id}?purpose={purpose}"))
                .await;
            assert_eq!(s, StatusCode::OK, "{p}");
            assert_eq!(
                p["fields"]["national_id"], "RSSMRA85T10A562S",
                "{purpose}: {p}"
            );
        }
        // The customer limits the use of sensitive data (CCPA §1798.121).
        let resp = v
            .http
            .post(v.url("/v1/requests"))
            .json(&json!({"kind": "limit_sensitive", "regulation": "ccpa",
                          "identifier": {"field": "email", "value": "fay@example.com"}}))
            .send()
            .await
            .unwrap();
        let (s, r) = split(resp).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["status"], "completed", "{r}");
        let (_, p) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=analytics"))
            .await;
        assert_eq!(
            withheld(&p, "national_id").as_deref(),
            Some("limited"),
            "{p}"
        );
        // billing is essential (11 CCR §7027(m)): still served.
        let (_, p) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        assert_eq!(p["fields"]["national_id"], "RSSMRA85T10A562S", "{p}");
        // No read of it records an Art. 9 condition.
        let audit = v.audit().await;
        assert!(
            audit
                .iter()
                .all(|e| !e.draft.reasons.keys().any(|k| k.starts_with("art9."))),
            "no special category was read"
        );
    }
}
