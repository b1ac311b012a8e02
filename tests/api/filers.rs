//! What a request hands its filer, and who may change a privacy choice.
//!
//! - A request never gives its filer more than the filer's role may read:
//!   every kind × every role that may file, and no answer carries a value
//!   that the caller's own read withholds or masks; staff never get the
//!   request token (it goes to the customer's contact on file).
//! - Lifting an opt-out, a limit or an objection needs the customer's own
//!   confirmation, whoever files it (R14).
//! - A rectification filed by staff passes the write check of `PATCH`, and
//!   waits for `requests.process` approval when the filer could not `PATCH`.
//! - Request tokens expire `request_token_ttl_days` after their request
//!   closed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const NATIONAL_ID: &str = "RSSMRA80A01H501U";
const PHONE: &str = "+393331234567";
const EMAIL: &str = "grace@example.com";
const ADDRESS: &str = "Via Hopper 9, Roma";

/// A customer with a value each role sees differently: the helpdesk sees
/// the phone masked and never the national id; billing sees the national
/// id; the DPO reads for legal claims only.
fn grace() -> Value {
    json!({
        "channel": "chat",
        "notice_version": "2026-01",
        "fields": {
            "email": {"value": EMAIL, "purposes": ["support", "billing"]},
            "phone": {"value": PHONE, "purposes": ["support"]},
            "national_id": {"value": NATIONAL_ID, "purposes": ["billing"]},
            "address": {"value": ADDRESS, "purposes": ["billing", "support"]}
        }
    })
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The plain values of the fixture that `role`'s own read (for the purpose
/// it reads for) does not show in full.
async fn not_readable_by(v: &TestVault, token: &str, purpose: &str, id: &str) -> Vec<&'static str> {
    let (_, p) = v
        .get(token, &format!("/v1/customers/{id}?purpose={purpose}"))
        .await;
    let shown = p["fields"].to_string();
    [NATIONAL_ID, PHONE, EMAIL, ADDRESS]
        .into_iter()
        .filter(|value| !shown.contains(value))
        .collect()
}

fn filing(kind: &str, customer: &str) -> Value {
    let mut b = json!({"kind": kind, "regulation": "gdpr", "customer_id": customer,
                       "verified_by": "id_document_checked"});
    match kind {
        "objection" => b["purpose"] = json!("marketing"),
        "rectification" => {
            b["changes"] = json!({"fields": {"address": {"value": "Via Lovelace 1, Roma"}}});
        }
        _ => {}
    }
    b
}

const KINDS: &[&str] = &[
    "access",
    "portability",
    "erasure",
    "rectification",
    "restriction",
    "objection",
    "opt_out_sale",
    "limit_sensitive",
];

#[tokio::test]
async fn no_request_hands_its_filer_a_value_the_filers_role_may_not_read() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let filers = [("helpdesk", "support"), ("dpo", "legal.claims")];
        let mut checked = 0;
        for (role, purpose) in filers {
            let token = v.token(role).await;
            for kind in KINDS {
                let id = v.create(&helpdesk, &grace()).await;
                let hidden = not_readable_by(&v, &token, purpose, &id).await;
                assert!(
                    hidden.contains(&NATIONAL_ID),
                    "{role} must not read the national id: {hidden:?}"
                );
                let (st, filed) = v.post(&token, "/v1/requests", &filing(kind, &id)).await;
                assert_eq!(st, StatusCode::ACCEPTED, "{role} {kind}: {filed}");
                assert!(
                    filed.get("request_token").is_none(),
                    "{role} {kind}: staff got the request token: {filed}"
                );
                let rid = s(&filed["id"]);
                // Everything the filer can get about the request, with its own
                // token or any token it was handed.
                let mut answers = vec![filed.to_string()];
                let mut credentials = vec![token.clone()];
                if let Some(t) = filed["request_token"].as_str() {
                    credentials.push(t.to_owned());
                }
                for c in &credentials {
                    let (_, b) = v.get(c, &format!("/v1/requests/{rid}")).await;
                    answers.push(b.to_string());
                    // The package is the customer's, and the privacy team's
                    // to hand over (requests.process): any other filer, or a
                    // token it was handed, must not get it.
                    let (st, b) = v.get(c, &format!("/v1/requests/{rid}/export")).await;
                    if role == "dpo" && c == &token {
                        continue;
                    }
                    if matches!(*kind, "access" | "portability") {
                        assert!(!st.is_success(), "{role} {kind}: export {st} {b}");
                    }
                    answers.push(b.to_string());
                }
                for text in &answers {
                    for value in &hidden {
                        assert!(
                            !text.contains(value),
                            "{role} filing {kind} received a value its own read withholds: {text}"
                        );
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 2 * KINDS.len());
    })
    .await;
}

#[tokio::test]
async fn a_staff_filed_export_reaches_the_customer_and_the_privacy_team_only() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        let dpo = v.token("dpo").await;
        let id = v.create(&helpdesk, &grace()).await;
        let (st, filed) = v
            .post(&helpdesk, "/v1/requests", &filing("access", &id))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{filed}");
        assert_eq!(filed["status"], "completed", "{filed}");
        let rid = s(&filed["id"]);
        let export = format!("/v1/requests/{rid}/export");
        // The helpdesk (requests.file only) may not download it.
        let (st, _) = v.get(&helpdesk, &export).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        // The customer got the token at the contact on file.
        let (_, out) = v.get(&notifier, "/v1/outbox").await;
        let msgs = out["messages"].as_array().unwrap();
        let to_customer: Vec<&Value> = msgs
            .iter()
            .filter(|m| m["request_id"] == rid.as_str() && m["kind"] == "request_filed")
            .collect();
        assert_eq!(to_customer.len(), 1, "{out}");
        assert_eq!(to_customer[0]["to"]["address"], EMAIL);
        let customer_token = s(&to_customer[0]["body"]["request_token"]);
        assert!(customer_token.starts_with("pvr_"));
        let (st, package) = v.get(&customer_token, &export).await;
        assert_eq!(st, StatusCode::OK, "{package}");
        assert!(package.to_string().contains(NATIONAL_ID));
        // The privacy team may download it too; the event names who did.
        let (st, _) = v.get(&dpo, &export).await;
        assert_eq!(st, StatusCode::OK);
        let exported: Vec<_> = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.action == "request.exported" && e.draft.decision == "allowed")
            .map(|e| e.draft.role)
            .collect();
        assert_eq!(exported, ["data_subject", "dpo"]);
    })
    .await;
}

#[tokio::test]
async fn lifting_a_privacy_choice_needs_the_customers_own_confirmation() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        for (kind, flag) in [
            ("opt_out_sale", "opted_out_sale"),
            ("limit_sensitive", "limit_sensitive"),
            ("objection", "objection"),
        ] {
            let id = v.create(&helpdesk, &grace()).await;
            let (st, set) = v.post(&dpo, "/v1/requests", &filing(kind, &id)).await;
            assert_eq!(st, StatusCode::ACCEPTED, "{set}");
            assert_eq!(set["status"], "completed", "{kind}: {set}");
            let mut lift = filing(kind, &id);
            lift["lift"] = json!(true);
            let (st, lifted) = v.post(&dpo, "/v1/requests", &lift).await;
            assert_eq!(st, StatusCode::ACCEPTED, "{lifted}");
            // Staff's identity check does not stand in for the customer's
            // confirmation: a code goes to the customer.
            assert_eq!(lifted["status"], "verifying", "{kind}: {lifted}");
            let rid = s(&lifted["id"]);
            let (st, b) = v
                .post(
                    &dpo,
                    &format!("/v1/requests/{rid}/verify"),
                    &json!({"method": "id_document_checked"}),
                )
                .await;
            assert_eq!(st, StatusCode::CONFLICT, "{kind}: {b}");
            assert_eq!(b["code"], "customer_confirmation_required");
            let (_, view) = v.get(&dpo, &format!("/v1/requests/{rid}")).await;
            assert_eq!(
                view["status"], "verifying",
                "{kind} was lifted by staff alone"
            );
            // The customer confirms with the code and the token sent to them.
            let (_, out) = v.get(&notifier, "/v1/outbox").await;
            let msg = out["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["request_id"] == rid.as_str() && m["kind"] == "verification_code")
                .cloned()
                .unwrap_or_else(|| panic!("{kind}: no code sent: {out}"));
            assert_eq!(msg["body"]["purpose"], "confirm_request");
            let (st, done) = v
                .post(
                    &s(&msg["body"]["request_token"]),
                    &format!("/v1/requests/{rid}/verify"),
                    &json!({"code": s(&msg["body"]["code"])}),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{done}");
            assert_eq!(done["status"], "completed", "{kind}: {done}");
            assert!(done["result"].to_string().contains(flag), "{done}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_staff_rectification_passes_the_write_check_of_patch() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let billing = v.token("billing_system").await;
        let dpo = v.token("dpo").await;
        // The helpdesk may write support values: done at once.
        let id = v.create(&helpdesk, &grace()).await;
        let mut rect = filing("rectification", &id);
        rect["changes"] = json!({"fields": {"phone": {"value": "+39 333 765 4321"}}});
        let (st, r) = v.post(&helpdesk, "/v1/requests", &rect).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["status"], "completed", "{r}");
        // The national id was collected for billing, which the helpdesk may
        // write but not read; a role without the write grant waits.
        let mut rect = filing("rectification", &id);
        rect["changes"] = json!({"fields": {"national_id": {"value": "RSSMRA80A01H501X"}}});
        let (st, b) = v
            .patch(
                &dpo,
                &format!("/v1/customers/{id}?purpose=legal.claims"),
                &rect["changes"],
            )
            .await;
        assert!(
            st == StatusCode::FORBIDDEN,
            "the DPO cannot PATCH it: {st} {b}"
        );
        let (st, r) = v.post(&dpo, "/v1/requests", &rect).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["status"], "awaiting_approval", "{r}");
        let (_, p) = v
            .get(&billing, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        assert_eq!(
            p["fields"]["national_id"], NATIONAL_ID,
            "changed before approval"
        );
        let (st, done) = v
            .post(
                &dpo,
                &format!("/v1/requests/{}/approve", s(&r["id"])),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "completed", "{done}");
        let (_, p) = v
            .get(&billing, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        assert_eq!(p["fields"]["national_id"], "RSSMRA80A01H501X");
    })
    .await;
}

#[tokio::test]
async fn request_tokens_expire_after_their_request_closed() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &grace()).await;
        let (st, filed) = v
            .http
            .post(v.url("/v1/requests"))
            .json(&json!({"kind": "access", "regulation": "gdpr",
                          "identifier": {"field": "email", "value": EMAIL}}))
            .send()
            .await
            .map(|r| (r.status(), r))
            .unwrap();
        assert_eq!(st, StatusCode::ACCEPTED);
        let filed: Value = filed.json().await.unwrap();
        let (rid, token) = (s(&filed["id"]), s(&filed["request_token"]));
        let (_, out) = v.get(&notifier, "/v1/outbox").await;
        let code = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["request_id"] == rid.as_str())
            .map(|m| s(&m["body"]["code"]))
            .unwrap();
        let (st, done) = v
            .post(
                &token,
                &format!("/v1/requests/{rid}/verify"),
                &json!({"code": code}),
            )
            .await;
        assert_eq!(
            (st, s(&done["status"])),
            (StatusCode::OK, "completed".into())
        );
        // Open, and for 30 days after closing: the token works.
        v.clock.advance_days(29);
        let (st, _) = v.get(&token, &format!("/v1/requests/{rid}")).await;
        assert_eq!(st, StatusCode::OK);
        v.clock.advance_days(2);
        for path in [
            format!("/v1/requests/{rid}"),
            format!("/v1/requests/{rid}/export"),
        ] {
            let (st, b) = v.get(&token, &path).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {b}");
            assert_eq!(b["code"], "unauthenticated");
        }
    })
    .await;
}

#[tokio::test]
async fn a_patch_tells_every_recipient_that_received_the_value() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let billing = v.token("billing_system").await;
        let notifier = v.token("notifier").await;
        let id = v.create(&helpdesk, &grace()).await;
        // billing_system is a recipient: its read is a disclosure.
        let (st, _) = v
            .get(&billing, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, b) = v
            .patch(
                &helpdesk,
                &format!("/v1/customers/{id}?purpose=support"),
                &json!({"fields": {"email": {"value": "grace.hopper@example.com"}}}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (_, out) = v.get(&notifier, "/v1/outbox").await;
        let notices: Vec<&Value> = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "recipient_notice" && m["body"]["customer_id"] == id.as_str())
            .collect();
        assert_eq!(notices.len(), 1, "{out}");
        assert_eq!(notices[0]["to"]["recipient_role"], "billing_system");
        assert_eq!(notices[0]["body"]["notice"], "rectification");
        assert_eq!(notices[0]["body"]["fields"], json!(["email"]));
        assert!(!notices[0].to_string().contains("grace.hopper"));
    })
    .await;
}
