//! Access and portability exports (R21–R25): contents, the published JSON
//! Schema, one customer only, and `pii-vault import` into an empty vault.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::erasure::delete;
use crate::helpers::*;

async fn schema(v: &TestVault) -> jsonschema::Validator {
    let resp = v
        .http
        .get(v.url("/v1/schemas/export.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the schema is public");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/schema+json"
    );
    let schema: Value = resp.json().await.unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema")
}

fn assert_valid(validator: &jsonschema::Validator, package: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(package)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the package does not validate: {errors:#?}"
    );
}

fn customer(email: &str, note: &str) -> Value {
    json!({
        "external_id": format!("zd-{}", Uuid::now_v7().simple()),
        "channel": "chat", "notice_version": "2026-01",
        "fields": {
            "email": {"value": email, "purposes": ["support", "billing", "marketing.email"]},
            "phone": {"value": "+39 333 123 4567", "purposes": ["support.callback"]},
            "support_note": {"value": note, "purposes": ["support"]},
            "accessibility_needs": {"value": "large print", "purposes": ["support"]}
        },
        "consents": [{"purpose": "marketing.email", "notice_version": "2026-01",
                      "notice_text_sha256": NOTICE_SHA, "language": "it", "jurisdiction": "EU"},
                     // Accessibility needs are health data (GDPR Art. 9): support
                     // collects them only with the customer's explicit consent.
                     {"purpose": "support", "notice_version": "2026-01", "explicit": true,
                      "notice_text_sha256": NOTICE_SHA, "language": "it", "jurisdiction": "EU"}]
    })
}

#[tokio::test]
async fn r21_r22_r23_r24_r25_the_export_holds_everything_about_this_customer_and_validates() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let billing = v.token("billing_system").await;
        let dpo = v.token("dpo").await;
        let id = v
            .create(&helpdesk, &customer("ada@example.com", "call after 9"))
            .await;
        let bob = v
            .create(&helpdesk, &customer("bob@example.org", "bob-note-kiwi"))
            .await;
        // Some use of Ada's data (and of Bob's, which must not show).
        v.get(
            &helpdesk,
            &format!("/v1/customers/{id}?purpose=support.callback"),
        )
        .await;
        let (s, _) = v
            .get(&billing, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        assert_eq!(s, StatusCode::OK);
        v.get(&helpdesk, &format!("/v1/customers/{bob}?purpose=support"))
            .await;
        v.post(
            &dpo,
            &format!("/v1/customers/{id}/consents"),
            &consent("marketing.email", "withdraw"),
        )
        .await;

        let (s, pkg) = v
            .get(&dpo, &format!("/v1/customers/{id}/export?kind=access"))
            .await;
        assert_eq!(s, StatusCode::OK, "{pkg}");
        assert_eq!(pkg["kind"], "access");
        assert_eq!(pkg["schema_version"], "1");
        assert_eq!(pkg["subject"]["id"], id);

        // R21: every stored value, decrypted.
        let data = pkg["data"].as_array().unwrap();
        let value = |f: &str| {
            data.iter()
                .find(|d| d["field"] == f)
                .map(|d| d["value"].clone())
        };
        assert_eq!(data.len(), 4);
        assert_eq!(value("email"), Some(json!("ada@example.com")));
        assert_eq!(value("phone"), Some(json!("+393331234567")));
        assert_eq!(value("support_note"), Some(json!("call after 9")));
        assert_eq!(value("accessibility_needs"), Some(json!("large print")));

        // R22: per value its purposes, category, basis, retention, channel and time.
        let email = data.iter().find(|d| d["field"] == "email").unwrap();
        assert_eq!(email["category"], "user.contact.email");
        assert_eq!(email["channel"], "chat");
        assert_eq!(email["notice_version"], "2026-01");
        assert!(email["collected_at"].is_string() && email["collected_by"].is_string());
        let billing_use = email["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["purpose"] == "billing")
            .unwrap();
        assert_eq!(billing_use["legal_basis"], "legal_obligation");
        assert_eq!(billing_use["retention"], "10 years");
        assert!(
            billing_use["expires_at"].as_str().unwrap()
                > billing_use["collected_at"].as_str().unwrap()
        );
        let sensitive = data
            .iter()
            .find(|d| d["field"] == "accessibility_needs")
            .unwrap();
        assert_eq!(
            (
                sensitive["sensitive"].as_bool(),
                sensitive["category"].as_str()
            ),
            (Some(true), Some("user.health"))
        );
        // The Art. 9 special category names the condition each purpose relies on.
        assert_eq!(sensitive["special_category"], true);
        assert_eq!(
            sensitive["purposes"][0]["special_category_condition"],
            "explicit_consent"
        );
        assert_eq!(email["special_category"], false);
        assert!(billing_use.get("special_category_condition").is_none());
        // …the consents (ledger and current state)…
        assert_eq!(pkg["consents"]["events"].as_array().unwrap().len(), 3);
        assert_eq!(
            pkg["consents"]["events"][0]["notice_text_sha256"],
            NOTICE_SHA
        );
        assert_eq!(pkg["consents"]["current"][0]["status"], "withdrawn");
        // …the recipients…
        let recipients = pkg["recipients"].as_array().unwrap();
        let to_billing = recipients
            .iter()
            .find(|r| r["recipient"] == "billing_system")
            .expect("billing_system listed");
        assert_eq!(to_billing["disclosures"][0]["purpose"], "billing");
        assert!(
            recipients.iter().all(|r| r["recipient"] != "helpdesk"),
            "helpdesk is not a recipient"
        );
        // …the controller, the purposes and the rights.
        assert_eq!(pkg["controller"]["name"], "Example Helpdesk Ltd");
        assert_eq!(pkg["controller"]["dpo_contact"], "dpo@example.com");
        let purposes: Vec<&str> = pkg["processing_purposes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["purpose"].as_str().unwrap())
            .collect();
        assert!(purposes.contains(&"billing") && purposes.contains(&"marketing.email"));
        let rights: Vec<&str> = pkg["rights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["right"].as_str().unwrap())
            .collect();
        for r in [
            "rectification",
            "erasure",
            "restriction",
            "objection",
            "portability",
            "complain",
        ] {
            assert!(rights.contains(&r), "right {r} missing");
        }
        assert!(
            pkg["supervisory_authority"]
                .as_str()
                .unwrap()
                .contains("supervisory authority")
        );

        // R24: the customer's own access log: who (role), when, which purpose.
        let log = pkg["access_log"].as_array().unwrap();
        assert!(log.iter().any(|e| e["actor_role"] == "helpdesk"
            && e["action"] == "customer.read"
            && e["purpose"] == "support.callback"));
        assert!(
            log.iter()
                .any(|e| e["actor_role"] == "billing_system" && e["purpose"] == "billing")
        );
        assert!(log.iter().all(|e| e.get("actor").is_none()), "no actor ids");

        // R25: nothing of another customer.
        let text = pkg.to_string();
        for other in [bob.as_str(), "bob@example.org", "bob-note-kiwi"] {
            assert!(!text.contains(other), "{other} appears in Ada's export");
        }

        // The endpoints are in the OpenAPI document.
        let (_, doc) = split(v.http.get(v.url("/openapi.json")).send().await.unwrap()).await;
        for p in [
            "/v1/schemas/export.json",
            "/v1/customers/{id}/export",
            "/v1/legal-holds",
            "/v1/legal-holds/{id}",
        ] {
            assert!(
                doc["paths"].get(p).is_some(),
                "{p} missing from /openapi.json"
            );
        }
        assert!(doc["paths"]["/v1/customers/{id}"].get("delete").is_some());
        assert!(doc["paths"]["/v1/customers/{id}"].get("get").is_some());

        // R23: it validates against the published schema…
        let validator = schema(&v).await;
        assert_valid(&validator, &pkg);
        // …which really checks: a package without its controller does not.
        let mut broken = pkg.clone();
        broken.as_object_mut().unwrap().remove("controller");
        assert!(!validator.is_valid(&broken));
        let mut broken = pkg.clone();
        broken["data"][0]["purposes"][0]["legal_basis"] = json!("because");
        assert!(!validator.is_valid(&broken));

        // The export was audited; a bad kind and other roles are refused.
        assert!(
            v.audit()
                .await
                .iter()
                .any(|e| e.draft.action == "customer.export"
                    && e.draft.customer_id.as_deref() == Some(id.as_str()))
        );
        let (s, b) = v
            .get(&dpo, &format!("/v1/customers/{id}/export?kind=everything"))
            .await;
        assert_eq!(
            (s, b["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("kind"))
        );
        let (s, _) = v
            .get(&helpdesk, &format!("/v1/customers/{id}/export"))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = v
            .get(&dpo, &format!("/v1/customers/{}/export", Uuid::now_v7()))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // Partially erased and erased packages validate too.
        let (_, receipt) = delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert_eq!(receipt["status"], "partially_erased");
        let (_, partial) = v.get(&dpo, &format!("/v1/customers/{id}/export")).await;
        assert_valid(&validator, &partial);
        assert_eq!(partial["data"].as_array().unwrap().len(), 1);
        let plain = v
            .create(
                &helpdesk,
                &json!({"fields": {"name": {"value": "Cy", "purposes": ["support"]}}}),
            )
            .await;
        delete(&v, &dpo, &format!("/v1/customers/{plain}")).await;
        let (_, erased) = v
            .get(
                &dpo,
                &format!("/v1/customers/{plain}/export?kind=portability"),
            )
            .await;
        assert_valid(&validator, &erased);
        assert!(erased.get("data").is_none());
    })
    .await;
}

async fn import(v: &TestVault, file: &std::path::Path) -> std::process::Output {
    let mut c = vault_cmd(v.dir.path(), &v.database_url, "warn");
    c.args(["import", file.to_str().unwrap()]);
    output(c).await
}

#[tokio::test]
async fn r23_a_portability_export_imports_into_an_empty_vault_without_loss() {
    on_each_backend(|source| async move {
        let helpdesk = source.token("helpdesk").await;
        let dpo = source.token("dpo").await;
        let id = source
            .create(&helpdesk, &customer("ada@example.com", "call after 9"))
            .await;
        source
            .post(
                &dpo,
                &format!("/v1/customers/{id}/consents"),
                &consent("partner_sharing", "grant"),
            )
            .await;
        let (s, first) = source
            .get(&dpo, &format!("/v1/customers/{id}/export?kind=portability"))
            .await;
        assert_eq!(s, StatusCode::OK);
        let file = source.dir.path().join("ada-export.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&first).unwrap()).unwrap();

        // A fresh, empty vault of the same backend.
        let target = TestVault::start(source.backend).await;
        let out = import(&target, &file).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(&id));

        let dpo2 = target.token("dpo").await;
        let (s, second) = target
            .get(
                &dpo2,
                &format!("/v1/customers/{id}/export?kind=portability"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{second}");
        assert_eq!(second["subject"], first["subject"]);
        assert_eq!(
            second["data"], first["data"],
            "values, purposes and collection facts"
        );
        assert_eq!(second["consents"], first["consents"]);
        assert_eq!(second["processing_purposes"], first["processing_purposes"]);
        assert_valid(&schema(&target).await, &second);
        // The values work as before: readable for their purposes, searchable.
        let helpdesk2 = target.token("helpdesk").await;
        let (s, found) = target
            .post(
                &helpdesk2,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ADA@example.com"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(found["customers"][0]["id"], id);
        assert!(
            target
                .audit()
                .await
                .iter()
                .any(|e| e.draft.action == "customer.import")
        );

        // Only into an empty vault; an erased customer's package has nothing to import.
        let again = import(&target, &file).await;
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("empty vault"));
        let empty = TestVault::start(source.backend).await;
        let mut erased = first.clone();
        for k in [
            "data",
            "consents",
            "recipients",
            "access_log",
            "processing_purposes",
        ] {
            erased.as_object_mut().unwrap().remove(k);
        }
        let erased_file = source.dir.path().join("erased.json");
        std::fs::write(&erased_file, erased.to_string()).unwrap();
        let out = import(&empty, &erased_file).await;
        assert!(!out.status.success());
        let garbage = source.dir.path().join("garbage.json");
        std::fs::write(
            &garbage,
            r#"{"schema_version": "1", "kind": "ada@example.com"}"#,
        )
        .unwrap();
        let out = import(&empty, &garbage).await;
        assert!(!out.status.success());
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("ada@"),
            "no value in the error"
        );
    })
    .await;
}
