//! Storage limitation (R35): the retention sweeper removes purposes whose
//! retention ran out, deletes values left without one, audits each
//! deletion, and leaves held values alone; `pii-vault sweep --as-of`.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::erasure::{ciphertexts, fetch};
use crate::helpers::*;
use pii_vault::clock::Clock;

async fn sweep(v: &TestVault) -> pii_vault::retention::SweepReport {
    let ctx = pii_vault::requests::erasure::Ctx::from_state(&v.state);
    pii_vault::retention::sweep(&ctx, v.clock.now_micros(), |_| {})
        .await
        .unwrap()
}

async fn purposes(url: &str, id: Uuid) -> Vec<(String, String)> {
    fetch(
        url,
        "SELECT field, purpose FROM value_purposes WHERE customer_id = $1 ORDER BY field, purpose",
        id,
    )
    .await
}

#[tokio::test]
async fn r35_the_sweeper_deletes_values_whose_retention_ran_out_and_audits_it() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v
            .create(
                &helpdesk,
                &json!({"fields": {
                "phone": {"value": "+39 333 123 4567", "purposes": ["support.callback"]},
                "email": {"value": "ada@example.com", "purposes": ["support", "billing"]},
                "name": {"value": "Ada Lovelace", "purposes": ["support"]},
                "support_note": {"value": "keep for the case", "purposes": ["support"]}}}),
            )
            .await;
        let cid: Uuid = id.parse().unwrap();
        let (s, _) = v
            .post(
                &dpo,
                "/v1/legal-holds",
                &json!({"customer_id": id, "fields": ["support_note"],
            "reason": "Case 12", "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);

        // Nothing has run out yet.
        assert_eq!(sweep(&v).await.values_deleted, 0);
        assert_eq!(ciphertexts(&v.database_url, cid).await.len(), 4);

        // 91 days: the callback number's only purpose (90 days) ran out.
        v.clock.advance_days(91);
        let helpdesk = v.token("helpdesk").await;
        let (s, b) = v
            .get(
                &helpdesk,
                &format!("/v1/customers/{id}/fields/phone?purpose=support.callback"),
            )
            .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("expired"))
        );
        let report = sweep(&v).await;
        assert_eq!((report.values_deleted, report.purposes_removed), (1, 1));
        let fields: Vec<String> = ciphertexts(&v.database_url, cid)
            .await
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, vec!["email", "name", "support_note"]);
        let index: Vec<(i64,)> = fetch(
            &v.database_url,
            "SELECT COUNT(*) FROM blind_index WHERE customer_id = $1 AND field = 'phone'",
            cid,
        )
        .await;
        assert_eq!(index[0].0, 0, "the index entry went with the value");
        let (s, b) = v
            .get(
                &helpdesk,
                &format!("/v1/customers/{id}/fields/phone?purpose=support.callback"),
            )
            .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("field_not_found"))
        );
        let events = v.audit().await;
        let deleted = events
            .iter()
            .find(|e| {
                e.draft.action == "retention.expired"
                    && e.draft.customer_id.as_deref() == Some(id.as_str())
            })
            .expect("the deletion is audited");
        assert_eq!(deleted.draft.fields, vec!["phone".to_owned()]);
        assert_eq!(deleted.draft.reasons["phone"], "support.callback");
        assert_eq!(deleted.draft.decision, "deleted");

        // Past two years: support ran out. The email keeps billing (10 years),
        // the name goes, the held note stays.
        v.clock.advance_days(2 * 366);
        let report = sweep(&v).await;
        assert_eq!(report.values_deleted, 1);
        assert_eq!(report.held, 1);
        assert_eq!(
            purposes(&v.database_url, cid).await,
            vec![
                ("email".into(), "billing".into()),
                ("support_note".into(), "support".into())
            ]
        );
        let events = v.audit().await;
        assert!(
            events
                .iter()
                .any(|e| e.draft.action == "retention.purpose_removed"
                    && e.draft.fields == vec!["email".to_owned()]
                    && e.draft.reasons["email"] == "support")
        );
        let dump = format!("{events:?}");
        assert!(!dump.contains("ada@example.com") && !dump.contains("Ada Lovelace"));

        // Sweeping again changes nothing.
        let again = sweep(&v).await;
        assert_eq!((again.values_deleted, again.purposes_removed), (0, 0));
    })
    .await;
}

#[tokio::test]
async fn r35_pii_vault_sweep_as_of_a_date_runs_the_sweeper_from_the_command_line() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let id = v.create(&helpdesk, &ada()).await;
        let cid: Uuid = id.parse().unwrap();
        let run = |as_of: &str| {
            let mut c = vault_cmd(v.dir.path(), &v.database_url, "warn");
            c.args(["sweep", "--as-of", as_of]);
            output(c)
        };
        let bad = run("next tuesday").await;
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));

        let out = run("2031-01-01T00:00:00Z").await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("as of 2031-01-01T00:00:00.000000Z"),
            "{stdout}"
        );
        assert!(stdout.contains("1 value(s) deleted"), "{stdout}");
        // By 2031 the callback phone (90 days) and the support purpose (2
        // years) have run out; billing (10 years) keeps the email.
        assert_eq!(
            purposes(&v.database_url, cid).await,
            vec![("email".into(), "billing".into())]
        );
        let (s, p) = v
            .get(&helpdesk, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(p["fields"], json!({}));
    })
    .await;
}

#[tokio::test]
async fn the_sweeper_tells_each_recipient_that_an_expired_value_is_gone() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let id = v
            .create(
                &helpdesk,
                &json!({"fields": {
                    "email": {"value": "ada@example.com", "purposes": ["billing"]},
                    "phone": {"value": "+39 333 123 4567", "purposes": ["marketing.sms"]}},
                    "consents": [{"purpose": "marketing", "notice_version": "2026-01",
                        "notice_text_sha256": NOTICE_SHA, "language": "en", "jurisdiction": "EU"}]}),
            )
            .await;
        // A recipient reads the number: a disclosure.
        let marketing = v.token("marketing_tool").await;
        let (s, b) = v
            .get(
                &marketing,
                &format!("/v1/customers/{id}/fields/phone?purpose=marketing.sms"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        // Two years and a day: marketing's retention ran out.
        v.clock.advance_days(731);
        let report = sweep(&v).await;
        assert_eq!(report.values_deleted, 1);
        let notifier = v.token("notifier").await;
        let (_, out) = v.get(&notifier, "/v1/outbox").await;
        let notices: Vec<&serde_json::Value> = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "recipient_notice")
            .collect();
        assert_eq!(notices.len(), 1, "{out}");
        assert_eq!(notices[0]["to"]["recipient_role"], "marketing_tool");
        assert_eq!(notices[0]["body"]["notice"], "erasure");
        assert_eq!(notices[0]["body"]["fields"], json!(["phone"]));
        assert!(!notices[0].to_string().contains("3331234567"));
    })
    .await;
}

/// `sweep --as-of` decides what has expired by that time, but what it
/// records happened now: an erasure it finishes is stamped with the real
/// time (as its audit events are), never with the time it was run as of.
#[tokio::test]
async fn a_sweep_as_of_a_later_date_stamps_the_erasure_it_finishes_with_the_real_time() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v.create(&helpdesk, &ada()).await;
        let path = format!("/v1/customers/{id}");
        // Billing's ten years keep the email: partially erased.
        let (_, receipt) = crate::erasure::delete(&v, &dpo, &path).await;
        assert_eq!(receipt["status"], "partially_erased", "{receipt}");
        let mut c = vault_cmd(v.dir.path(), &v.database_url, "warn");
        c.args(["sweep", "--as-of", "2045-01-01T00:00:00Z"]);
        let out = output(c).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 erasure(s) re-evaluated"), "{stdout}");
        let (_, done) = crate::erasure::delete(&v, &dpo, &path).await;
        assert_eq!(done["status"], "erased", "{done}");
        assert_eq!(done["receipt_id"], receipt["receipt_id"]);
        let completed = done["completed_at"].as_str().unwrap();
        // The command runs on the wall clock, as the vault it serves does.
        use pii_vault::clock::Clock;
        let this_year = pii_vault::clock::SystemClock.now().year().to_string();
        assert!(completed.starts_with(&this_year), "{done}");
    })
    .await;
}
