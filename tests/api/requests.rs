//! Data subject requests: intake without revealing who is a customer,
//! deadlines and extensions, verification codes through the outbox,
//! approval and denial, the subject state they set (objection, restriction,
//! opt-out, limit), notices to recipients, the request records and their
//! metrics, and the outbox webhook. R10–R20, R32, R33 and the request-flow
//! parts of R26/R28.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::helpers::*;
use pii_vault::requests::StoredRequests;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Files a request as a customer: no token at all.
async fn anon(v: &TestVault, body: &Value) -> (StatusCode, Value) {
    let resp = v
        .http
        .post(v.url("/v1/requests"))
        .json(body)
        .send()
        .await
        .unwrap();
    split(resp).await
}

/// Files a request as a customer whose browser sends Global Privacy Control.
async fn anon_gpc(v: &TestVault, body: &Value) -> (StatusCode, Value) {
    let resp = v
        .http
        .post(v.url("/v1/requests"))
        .header("Sec-GPC", "1")
        .json(body)
        .send()
        .await
        .unwrap();
    split(resp).await
}

fn by_email(kind: &str, regulation: &str, email: &str) -> Value {
    json!({"kind": kind, "regulation": regulation,
           "identifier": {"field": "email", "value": email}})
}

fn staff(kind: &str, regulation: &str, customer: &str) -> Value {
    json!({"kind": kind, "regulation": regulation, "customer_id": customer,
           "verified_by": "id_document_checked"})
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// Every message the notifier sees now.
async fn outbox(v: &TestVault, notifier: &str) -> Vec<Value> {
    let (st, b) = v.get(notifier, "/v1/outbox").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["messages"].as_array().unwrap().clone()
}

fn of_request<'a>(msgs: &'a [Value], kind: &str, request: &str) -> Vec<&'a Value> {
    msgs.iter()
        .filter(|m| m["kind"] == kind && m["request_id"] == request)
        .collect()
}

/// The latest code the vault sent for `request`.
async fn code_for(v: &TestVault, notifier: &str, request: &str) -> String {
    let msgs = outbox(v, notifier).await;
    let m = of_request(&msgs, "verification_code", request);
    s(&m.last().expect("a verification code was sent")["body"]["code"])
}

async fn verify(v: &TestVault, token: &str, id: &str, code: &str) -> (StatusCode, Value) {
    v.post(
        token,
        &format!("/v1/requests/{id}/verify"),
        &json!({"code": code}),
    )
    .await
}

/// Files as a customer and enters the code that reached the outbox.
async fn file_and_verify(v: &TestVault, notifier: &str, body: &Value) -> (String, String, Value) {
    let (st, filed) = anon(v, body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{filed}");
    let (id, token) = (s(&filed["id"]), s(&filed["request_token"]));
    let code = code_for(v, notifier, &id).await;
    let (st, view) = verify(v, &token, &id, &code).await;
    assert_eq!(st, StatusCode::OK, "{view}");
    (id, token, view)
}

async fn stored(v: &TestVault, id: &str) -> pii_vault::requests::lifecycle::Request {
    v.state
        .store
        .request(id.parse().unwrap())
        .await
        .unwrap()
        .expect("request stored")
}

/// Why `field` is withheld in a profile (empty when it is not).
fn withheld(p: &Value, field: &str) -> String {
    p["withheld"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["field"] == field)
        .map(|w| s(&w["reason"]))
        .unwrap_or_default()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// The audit trail as text, to look for values that must not be in it.
async fn audit_text(v: &TestVault) -> String {
    serde_json::to_string(&v.audit().await).unwrap()
}

/// A vault whose policy adds a recipient role that reads for
/// `partner_sharing` (a sale/sharing purpose) and `analytics`, and a
/// sensitive field collected for analytics.
async fn partner_vault(backend: Backend) -> TestVault {
    TestVault::start_adjusted(backend, |settings, dir| {
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let default =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml");
        std::fs::copy(default, policies.join("default.toml")).unwrap();
        std::fs::write(
            policies.join("partners.toml"),
            r#"
[roles.partner_portal]
read = ["partner_sharing", "analytics"]
write = ["support", "partner_sharing", "analytics"]
capabilities = ["consents"]
recipient = true

[fields.health_note]
type = "text"
category = "user.health"
purposes = ["analytics"]
sensitive = true
"#,
        )
        .unwrap();
        settings.policy_dir = policies;
    })
    .await
}

fn given(purpose: &str) -> Value {
    json!({"purpose": purpose, "notice_version": "2026-01", "notice_text_sha256": NOTICE_SHA,
           "language": "en", "jurisdiction": "US-CA"})
}

// ---------------------------------------------------------------------------
// Intake and deadlines
// ---------------------------------------------------------------------------

#[tokio::test]
async fn r15_filing_answers_alike_whether_or_not_the_customer_exists() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;

        let (s1, known) = anon(&v, &by_email("erasure", "gdpr", "ADA@example.com")).await;
        let (s2, unknown) = anon(&v, &by_email("erasure", "gdpr", "nobody@example.com")).await;
        assert_eq!(s1, StatusCode::ACCEPTED, "{known}");
        assert_eq!(s2, StatusCode::ACCEPTED, "{unknown}");
        assert_eq!(keys(&known), keys(&unknown));
        assert_eq!(
            keys(&known),
            ["due_at", "id", "received_at", "request_token", "status"]
        );
        assert_eq!(known["status"], "verifying");
        assert_eq!(unknown["status"], "verifying");
        assert!(s(&known["request_token"]).starts_with("pvr_"));

        // GDPR: due one calendar month after receipt.
        let (rec, due) = (at(&known["received_at"]), at(&known["due_at"]));
        let days = (due - rec).whole_days();
        assert!((28..=31).contains(&days), "{days}");
        assert_eq!(u8::from(due.month()), u8::from(rec.month()) % 12 + 1);
        assert_eq!(due.time(), rec.time());
        // CCPA: 45 days.
        let (_, ccpa) = anon(&v, &by_email("access", "ccpa", "ada@example.com")).await;
        assert_eq!(
            at(&ccpa["due_at"]) - at(&ccpa["received_at"]),
            time::Duration::days(45)
        );

        // The requester's view has the same shape, and a wrong code is
        // answered the same.
        for r in [&known, &unknown] {
            let (st, view) = v
                .get(
                    &s(&r["request_token"]),
                    &format!("/v1/requests/{}", s(&r["id"])),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{view}");
            assert_eq!(view["status"], "verifying");
            assert!(view.get("customer_id").is_none());
            let (st, b) = verify(&v, &s(&r["request_token"]), &s(&r["id"]), "00000000").await;
            assert_eq!(st, StatusCode::BAD_REQUEST);
            assert_eq!(b["code"], "invalid_code");
        }

        // Only the real customer got a code, at the address on file.
        let msgs = outbox(&v, &notifier).await;
        let codes: Vec<&Value> = msgs
            .iter()
            .filter(|m| m["kind"] == "verification_code")
            .collect();
        assert_eq!(codes.len(), 2, "erasure and access for ada");
        assert!(
            codes
                .iter()
                .all(|m| m["to"]["address"] == "ada@example.com")
        );
        assert!(of_request(&msgs, "verification_code", &s(&unknown["id"])).is_empty());

        // No address, code or token in the audit trail.
        let trail = audit_text(&v).await;
        let code = s(&codes[0]["body"]["code"]);
        for secret in [
            "ada@example.com",
            "nobody@example.com",
            &code,
            &s(&known["request_token"]),
        ] {
            assert!(!trail.contains(secret), "{secret} in the audit trail");
        }
    })
    .await;
}

/// Anonymous filings cannot flood a customer with codes: past
/// `intake_codes_per_hour` (5 by default) for one identifier, filings are
/// answered and recorded alike but send no code; other identifiers are not
/// affected.
#[tokio::test]
async fn repeated_anonymous_filings_stop_sending_codes_to_the_customer() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        let dpo = v.token("dpo").await;
        v.create(&helpdesk, &ada()).await;
        let mut grace = ada();
        grace["fields"]["email"]["value"] = json!("grace@example.com");
        v.create(&helpdesk, &grace).await;

        let mut filed = Vec::new();
        for _ in 0..7 {
            for email in ["ada@example.com", "nobody@example.com"] {
                let (st, b) = anon(&v, &by_email("erasure", "gdpr", email)).await;
                assert_eq!(st, StatusCode::ACCEPTED, "{b}");
                assert_eq!(
                    keys(&b),
                    ["due_at", "id", "received_at", "request_token", "status"]
                );
                assert_eq!(b["status"], "verifying");
                filed.push(b);
            }
        }
        let (st, g) = anon(&v, &by_email("erasure", "gdpr", "grace@example.com")).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{g}");

        let msgs = outbox(&v, &notifier).await;
        let codes_to = |address: &str| {
            msgs.iter()
                .filter(|m| m["kind"] == "verification_code" && m["to"]["address"] == address)
                .count()
        };
        assert_eq!(codes_to("ada@example.com"), 5);
        assert_eq!(codes_to("grace@example.com"), 1);
        assert_eq!(codes_to("nobody@example.com"), 0);

        // Every filing is on record; the withheld codes are in the trail,
        // without the address.
        let (_, list) = v.get(&dpo, "/v1/requests?status=verifying").await;
        assert_eq!(list["requests"].as_array().unwrap().len(), 15);
        let auditor = v.token("auditor").await;
        let (_, withheld) = v
            .get(&auditor, "/v1/audit?action=request.code_withheld")
            .await;
        assert_eq!(
            withheld["events"].as_array().unwrap().len(),
            2,
            "{withheld}"
        );
        let trail = audit_text(&v).await;
        assert!(!trail.contains("ada@example.com"));
    })
    .await;
}

#[tokio::test]
async fn r16_one_extension_with_a_reason_before_the_deadline() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let c1 = v.create(&helpdesk, &ada()).await;
        let (st, r) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "gdpr", &c1))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["status"], "awaiting_approval");
        let path = format!("/v1/requests/{}/extend", s(&r["id"]));

        let (st, b) = v.post(&dpo, &path, &json!({})).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::BAD_REQUEST, "reason_required".into())
        );
        let (st, b) = v
            .post(&helpdesk, &path, &json!({"reason": "complex"}))
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        let rec = at(&r["received_at"]);
        let too_far = (rec + time::Duration::days(100)).format(&Rfc3339).unwrap();
        let (st, b) = v
            .post(
                &dpo,
                &path,
                &json!({"reason": "complex", "due_at": too_far}),
            )
            .await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::BAD_REQUEST, "extension_too_long".into())
        );

        let (st, e) = v
            .post(&dpo, &path, &json!({"reason": "many requests at once"}))
            .await;
        assert_eq!(st, StatusCode::OK, "{e}");
        assert_eq!(e["extended"], true);
        assert_eq!(e["extension_reason"], "many requests at once");
        let due = at(&e["due_at"]);
        // Three months from receipt in all.
        let months =
            (i32::from(u8::from(due.month())) - i32::from(u8::from(rec.month())) + 12) % 12;
        assert_eq!(months, 3, "{due} from {rec}");
        let (st, b) = v.post(&dpo, &path, &json!({"reason": "again"})).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::CONFLICT, "already_extended".into())
        );
        assert_eq!(
            at(&stored_view(&v, &dpo, &s(&r["id"])).await["due_at"]),
            due
        );

        // CCPA: at most 90 days from receipt.
        let c2 = v.create(&helpdesk, &ada()).await;
        let (_, r2) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "ccpa", &c2))
            .await;
        let path2 = format!("/v1/requests/{}/extend", s(&r2["id"]));
        let (st, e2) = v.post(&dpo, &path2, &json!({"reason": "complex"})).await;
        assert_eq!(st, StatusCode::OK, "{e2}");
        assert_eq!(
            at(&e2["due_at"]) - at(&r2["received_at"]),
            time::Duration::days(90)
        );

        // Not after the deadline.
        let c3 = v.create(&helpdesk, &ada()).await;
        let (_, r3) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "ccpa", &c3))
            .await;
        v.clock.advance_days(46);
        // (Tokens expire with the clock moved: log in again.)
        let dpo = v.token("dpo").await;
        let (st, b) = v
            .post(
                &dpo,
                &format!("/v1/requests/{}/extend", s(&r3["id"])),
                &json!({"reason": "late"}),
            )
            .await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::CONFLICT, "past_due".into())
        );
        let audit = v.audit().await;
        let extended: Vec<_> = audit
            .iter()
            .filter(|e| e.draft.action == "request.extended" && e.draft.decision == "allowed")
            .collect();
        assert_eq!(extended.len(), 2);
        assert!(!audit_text(&v).await.contains("many requests at once"));
    })
    .await;
}

async fn stored_view(v: &TestVault, staff: &str, id: &str) -> Value {
    let (st, b) = v.get(staff, &format!("/v1/requests/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b
}

#[tokio::test]
async fn r17_nothing_completes_before_verification_and_the_method_is_recorded() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        let id = v.create(&helpdesk, &ada()).await;
        let mut body = by_email("rectification", "gdpr", "ada@example.com");
        body["changes"] = json!({"fields": {"phone": {"value": "+39 333 765 4321"}}});
        let (st, r) = anon(&v, &body).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        let rid = s(&r["id"]);

        // Unverified: the DPO cannot push it through, the data is unchanged.
        let (st, b) = v
            .post(&dpo, &format!("/v1/requests/{rid}/approve"), &json!({}))
            .await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::CONFLICT, "not_awaiting_approval".into())
        );
        let path = format!("/v1/customers/{id}/fields/phone?purpose=support.callback");
        let (_, p) = v.get(&helpdesk, &path).await;
        assert_eq!(p["value"], "+393331234567");
        let view = stored_view(&v, &dpo, &rid).await;
        assert_eq!(view["status"], "verifying");
        assert!(view["verification_method"].is_null());
        // The new value waits sealed, not in clear.
        let sealed = stored(&v, &rid).await.changes.unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("765 4321"));

        // Verified by code: carried out (no approval needed for this kind).
        let code = code_for(&v, &notifier, &rid).await;
        let (st, done) = verify(&v, &s(&r["request_token"]), &rid, &code).await;
        assert_eq!(st, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["fee"], "none");
        assert_eq!(done["result"]["rectified"], json!(["phone"]));
        let (_, p) = v.get(&helpdesk, &path).await;
        assert_eq!(p["value"], "+393337654321");
        let view = stored_view(&v, &dpo, &rid).await;
        assert_eq!(view["verification_method"], "code");
        assert_eq!(view["verified_by"], "data_subject");
        assert!(
            stored(&v, &rid).await.changes.is_none(),
            "the sealed values are gone"
        );

        // Staff verify on the customer's behalf: the method is recorded.
        let (_, r2) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "gdpr", &id))
            .await;
        let view = stored_view(&v, &dpo, &s(&r2["id"])).await;
        assert_eq!(view["verification_method"], "id_document_checked");
        assert_eq!(view["status"], "awaiting_approval");

        // Filed by staff without a check: a code goes to the customer; staff
        // may also verify afterwards, naming the method.
        let c2 = v.create(&helpdesk, &ada()).await;
        let (_, r3) = v
            .post(
                &helpdesk,
                "/v1/requests",
                &json!({"kind": "erasure", "regulation": "gdpr", "customer_id": c2}),
            )
            .await;
        assert_eq!(r3["status"], "verifying");
        let (st, b) = v
            .post(
                &helpdesk,
                &format!("/v1/requests/{}/verify", s(&r3["id"])),
                &json!({"method": "called back on the number on file"}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
        let (st, b) = v
            .post(
                &helpdesk,
                &format!("/v1/requests/{}/verify", s(&r3["id"])),
                &json!({"method": "callback_on_file_number"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "awaiting_approval");
        // The helpdesk is not the privacy team: no request record for it.
        assert!(b.get("verification_method").is_none(), "{b}");
        let view = stored_view(&v, &dpo, &s(&r3["id"])).await;
        assert_eq!(view["verification_method"], "callback_on_file_number");
    })
    .await;
}

#[tokio::test]
async fn r18_wrong_codes_count_codes_expire_and_are_stored_as_argon2id() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;

        let (_, r) = anon(&v, &by_email("erasure", "gdpr", "ada@example.com")).await;
        let (rid, token) = (s(&r["id"]), s(&r["request_token"]));
        let code = code_for(&v, &notifier, &rid).await;
        let wrong = if code == "11111111" {
            "22222222"
        } else {
            "11111111"
        };
        for attempt in 1..=4 {
            let (st, b) = verify(&v, &token, &rid, wrong).await;
            assert_eq!(
                (st, s(&b["code"])),
                (StatusCode::BAD_REQUEST, "invalid_code".into()),
                "{attempt}"
            );
        }
        let (st, b) = verify(&v, &token, &rid, wrong).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts".into())
        );
        // Denied now: even the right code is refused.
        let (st, _) = verify(&v, &token, &rid, &code).await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
        let view = stored_view(&v, &dpo, &rid).await;
        assert_eq!(view["status"], "denied");
        assert_eq!(view["denial"]["reason"], "too_many_attempts");
        assert_eq!(view["code_attempts"], 5);

        // Codes expire (30 minutes by default).
        let (_, r) = anon(&v, &by_email("erasure", "gdpr", "ada@example.com")).await;
        let (rid, token) = (s(&r["id"]), s(&r["request_token"]));
        let code = code_for(&v, &notifier, &rid).await;
        let stored_hash = stored(&v, &rid).await.code_hash.unwrap();
        assert!(stored_hash.starts_with("$argon2id$"), "{stored_hash}");
        assert!(!stored_hash.contains(&code));
        v.clock.advance_days(1);
        let notifier = v.token("notifier").await;
        let (st, b) = verify(&v, &token, &rid, &code).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::BAD_REQUEST, "code_expired".into())
        );

        // A code works once.
        let (_, r) = anon(&v, &by_email("erasure", "gdpr", "ada@example.com")).await;
        let (rid, token) = (s(&r["id"]), s(&r["request_token"]));
        let code = code_for(&v, &notifier, &rid).await;
        let (st, b) = verify(&v, &token, &rid, &code).await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "awaiting_approval");
        let (st, b) = verify(&v, &token, &rid, &code).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::CONFLICT, "already_verified".into())
        );
        assert!(stored(&v, &rid).await.code_hash.is_none());
    })
    .await;
}

#[tokio::test]
async fn r19_a_denial_has_a_reason_and_under_the_gdpr_the_right_to_complain() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;
        let (rid, token, view) = file_and_verify(
            &v,
            &notifier,
            &by_email("erasure", "gdpr", "ada@example.com"),
        )
        .await;
        assert_eq!(view["status"], "awaiting_approval");
        let deny = format!("/v1/requests/{rid}/deny");

        let (st, b) = v.post(&dpo, &deny, &json!({})).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::BAD_REQUEST, "reason_required".into())
        );
        let (st, b) = v.post(&dpo, &deny, &json!({"reason": "because"})).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::BAD_REQUEST, "invalid_reason".into())
        );
        let (st, b) = v
            .post(&helpdesk, &deny, &json!({"reason": "excessive"}))
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        let (st, d) = v
            .post(
                &dpo,
                &deny,
                &json!({"reason": "manifestly_unfounded", "note": "Filed ten times this week."}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{d}");
        assert_eq!(d["status"], "denied");

        let (_, mine) = v.get(&token, &format!("/v1/requests/{rid}")).await;
        assert_eq!(mine["status"], "denied");
        assert_eq!(mine["denial"]["reason"], "manifestly_unfounded");
        assert!(s(&mine["denial"]["complaint"]["right"]).contains("supervisory authority"));
        assert_eq!(mine["denial"]["complaint"]["contact"], "dpo@example.com");

        // A denied request stays denied.
        for (path, body) in [
            (format!("/v1/requests/{rid}/approve"), json!({})),
            (deny.clone(), json!({"reason": "other"})),
            (format!("/v1/requests/{rid}/extend"), json!({"reason": "x"})),
        ] {
            let (st, b) = v.post(&dpo, &path, &body).await;
            assert_eq!(
                (st, s(&b["code"])),
                (StatusCode::CONFLICT, "request_closed".into()),
                "{path}"
            );
        }
        // The customer is told.
        let msgs = outbox(&v, &notifier).await;
        let outcome = of_request(&msgs, "request_outcome", &rid);
        assert_eq!(outcome.len(), 1);
        assert_eq!(
            outcome[0]["body"]["denial"]["reason"],
            "manifestly_unfounded"
        );
        assert_eq!(outcome[0]["to"]["address"], "ada@example.com");
        let denied: Vec<_> = v
            .audit()
            .await
            .into_iter()
            .filter(|e| {
                e.draft.action == "request.denied" && e.draft.reasons.contains_key("denial_reason")
            })
            .collect();
        assert_eq!(
            denied[0].draft.reasons["denial_reason"],
            "manifestly_unfounded"
        );
        assert!(!audit_text(&v).await.contains("ten times"));

        // CCPA denials carry the reason; the GDPR complaint note is not theirs.
        let c2 = v.create(&helpdesk, &ada()).await;
        let (_, r2) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "ccpa", &c2))
            .await;
        let (_, d2) = v
            .post(
                &dpo,
                &format!("/v1/requests/{}/deny", s(&r2["id"])),
                &json!({"reason": "legal_obligation"}),
            )
            .await;
        assert_eq!(d2["denial"]["reason"], "legal_obligation");
        assert!(d2["denial"].get("complaint").is_none());
    })
    .await;
}

#[tokio::test]
async fn r20_request_records_are_kept_listed_and_counted_for_privacy_and_audit_only() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let auditor = v.token("auditor").await;
        let marketing = v.token("marketing_tool").await;
        let c1 = v.create(&helpdesk, &ada()).await;
        let (_, r1) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "gdpr", &c1))
            .await;
        let (_, r2) = anon(&v, &by_email("access", "gdpr", "nobody@example.com")).await;
        let (id1, id2) = (s(&r1["id"]), s(&r2["id"]));

        for t in [&helpdesk, &marketing] {
            let (st, _) = v.get(t, "/v1/requests").await;
            assert_eq!(st, StatusCode::FORBIDDEN);
            let (st, _) = v.get(t, &format!("/v1/requests/{id1}")).await;
            assert_eq!(st, StatusCode::FORBIDDEN);
            let (st, _) = v.get(t, "/v1/requests/metrics").await;
            assert_eq!(st, StatusCode::FORBIDDEN);
        }
        let (st, all) = v.get(&auditor, "/v1/requests").await;
        assert_eq!(st, StatusCode::OK, "{all}");
        let listed: Vec<String> = all["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| s(&r["id"]))
            .collect();
        assert!(listed.contains(&id1) && listed.contains(&id2));
        let r = all["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id1.as_str())
            .unwrap();
        assert_eq!(r["kind"], "erasure");
        assert_eq!(r["channel"], "api");
        assert_eq!(r["customer_id"], c1.as_str());
        assert!(r.get("received_at").is_some() && r.get("responded_at").is_some());
        let (_, waiting) = v.get(&dpo, "/v1/requests?status=awaiting_approval").await;
        let w: Vec<String> = waiting["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| s(&r["id"]))
            .collect();
        assert_eq!(w, vec![id1.clone()]);
        let (_, access) = v.get(&dpo, "/v1/requests?kind=access").await;
        assert_eq!(access["requests"].as_array().unwrap().len(), 1);
        let (st, b) = v.get(&dpo, "/v1/requests?status=lost").await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::BAD_REQUEST, "unknown_status".into())
        );

        // Overdue: open past the deadline.
        let (_, none) = v.get(&dpo, "/v1/requests?overdue=true").await;
        assert!(none["requests"].as_array().unwrap().is_empty());
        v.clock.advance_days(32);
        let (dpo, auditor) = (v.token("dpo").await, v.token("auditor").await);
        let (_, late) = v.get(&dpo, "/v1/requests?overdue=true").await;
        let late: Vec<String> = late["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| s(&r["id"]))
            .collect();
        assert!(late.contains(&id1), "{late:?}");
        let (_, d) = v
            .post(
                &dpo,
                &format!("/v1/requests/{id1}/deny"),
                &json!({"reason": "excessive"}),
            )
            .await;
        assert_eq!(d["status"], "denied");
        let (_, late) = v.get(&dpo, "/v1/requests?overdue=true").await;
        assert!(
            !late["requests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == id1.as_str())
        );

        // Yearly metrics per kind.
        let year = at(&r1["received_at"]).year();
        let (st, m) = v
            .get(&auditor, &format!("/v1/requests/metrics?year={year}"))
            .await;
        assert_eq!(st, StatusCode::OK, "{m}");
        assert_eq!(m["kinds"]["erasure"]["received"], 1);
        assert_eq!(m["kinds"]["erasure"]["denied"], 1);
        assert_eq!(m["kinds"]["erasure"]["completed"], 0);
        let median = m["kinds"]["erasure"]["median_days"].as_f64().unwrap();
        assert!((31.9..=32.1).contains(&median), "{median}");
        assert_eq!(m["kinds"]["access"]["received"], 1);
        assert_eq!(m["total"]["received"], 2);
        let (_, other) = v
            .get(&auditor, &format!("/v1/requests/metrics?year={}", year - 1))
            .await;
        assert_eq!(other["total"]["received"], 0);

        // Kept for at least 24 months.
        v.clock.advance_days(25 * 31);
        let auditor = v.token("auditor").await;
        let view = stored_view(&v, &auditor, &id1).await;
        assert_eq!(view["denial"]["reason"], "excessive");
        let acts: Vec<String> = v
            .audit()
            .await
            .into_iter()
            .map(|e| e.draft.action)
            .collect();
        for a in ["request.list", "request.metrics", "request.read"] {
            assert!(acts.iter().any(|x| x == a), "{a} audited");
        }
    })
    .await;
}

#[tokio::test]
async fn request_tokens_open_their_own_request_and_nothing_else() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let id = v.create(&helpdesk, &ada()).await;
        let (_, a) = anon(&v, &by_email("erasure", "gdpr", "ada@example.com")).await;
        let (_, b) = anon(&v, &by_email("access", "gdpr", "ada@example.com")).await;
        let token = s(&a["request_token"]);
        let (st, body) = v
            .get(&token, &format!("/v1/requests/{}", s(&b["id"])))
            .await;
        assert_eq!(
            (st, s(&body["code"])),
            (StatusCode::FORBIDDEN, "token_not_for_request".into())
        );
        for path in [
            format!("/v1/customers/{id}?purpose=support"),
            "/v1/requests".to_owned(),
            "/v1/requests/metrics".to_owned(),
            "/v1/outbox".to_owned(),
            "/v1/audit".to_owned(),
        ] {
            let (st, _) = v.get(&token, &path).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
        }
        let (st, _) = v
            .post(
                &token,
                &format!("/v1/requests/{}/approve", s(&a["id"])),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let (st, _) = v
            .post(
                &token,
                "/v1/requests",
                &by_email("access", "gdpr", "ada@example.com"),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let (st, _) = v
            .get("pvr_made-up", &format!("/v1/requests/{}", s(&a["id"])))
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let (st, _) = v
            .get(&token, &format!("/v1/requests/{}", s(&a["id"])))
            .await;
        assert_eq!(st, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn duplicate_open_requests_are_merged() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        let c = v.create(&helpdesk, &ada()).await;
        let (_, first) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "gdpr", &c))
            .await;
        let (st, again) = v
            .post(&helpdesk, "/v1/requests", &staff("erasure", "gdpr", &c))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{again}");
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["merged"], true);
        // The customer files the same: once verified it joins the open one.
        let (rid, token, view) = file_and_verify(
            &v,
            &notifier,
            &by_email("erasure", "gdpr", "ada@example.com"),
        )
        .await;
        assert_eq!(view["id"], rid.as_str());
        assert_eq!(view["status"], "awaiting_approval");
        let staff_view = stored_view(&v, &dpo, &rid).await;
        assert_eq!(staff_view["status"], "merged");
        assert_eq!(staff_view["merged_into"], first["id"]);
        let (_, list) = v.get(&dpo, "/v1/requests?status=awaiting_approval").await;
        assert_eq!(list["requests"].as_array().unwrap().len(), 1);
        // Its requester follows the one it joined.
        let (_, d) = v
            .post(
                &dpo,
                &format!("/v1/requests/{}/deny", s(&first["id"])),
                &json!({"reason": "legal_claims"}),
            )
            .await;
        assert_eq!(d["status"], "denied");
        let (_, mine) = v.get(&token, &format!("/v1/requests/{rid}")).await;
        assert_eq!(mine["status"], "denied");
        assert_eq!(mine["denial"]["reason"], "legal_claims");
        // A different kind is not a duplicate.
        let (_, other) = v
            .post(&dpo, "/v1/requests", &staff("restriction", "gdpr", &c))
            .await;
        assert_ne!(other["id"], first["id"]);
    })
    .await;
}

// ---------------------------------------------------------------------------
// Subject state
// ---------------------------------------------------------------------------

#[tokio::test]
async fn r10_an_objection_to_marketing_withholds_every_marketing_read() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let marketing = v.token("marketing_tool").await;
        let notifier = v.token("notifier").await;
        let mut body = ada();
        body["fields"]["email"]["purposes"] = json!(["support", "marketing.email"]);
        body["consents"] = json!([given("marketing")]);
        let id = v.create(&helpdesk, &body).await;
        let read = format!("/v1/customers/{id}/fields/email?purpose=marketing.email");
        let (st, _) = v.get(&marketing, &read).await;
        assert_eq!(st, StatusCode::OK);

        for (purpose, code) in [
            (None, "purpose_required"),
            (Some("billing"), "objection_not_applicable"),
            (Some("astrology"), "unknown_purpose"),
        ] {
            let mut b = by_email("objection", "gdpr", "ada@example.com");
            if let Some(p) = purpose {
                b["purpose"] = json!(p);
            }
            let (st, e) = anon(&v, &b).await;
            assert_eq!((st, s(&e["code"])), (StatusCode::BAD_REQUEST, code.into()));
        }
        let mut objection = by_email("objection", "gdpr", "ada@example.com");
        objection["purpose"] = json!("marketing");
        let (rid, _, done) = file_and_verify(&v, &notifier, &objection).await;
        assert_eq!(done["status"], "completed", "{done}");
        let (st, b) = v.get(&marketing, &read).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::FORBIDDEN, "objected".into())
        );
        let (_, p) = v
            .get(
                &marketing,
                &format!("/v1/customers/{id}?purpose=marketing.email"),
            )
            .await;
        assert_eq!(withheld(&p, "email"), "objected");
        // Whatever the consent says: it is still granted.
        let (_, consents) = v
            .get(&helpdesk, &format!("/v1/customers/{id}/consents"))
            .await;
        assert_eq!(consents["current"][0]["status"], "granted");
        // Other purposes are untouched.
        let (_, p) = v
            .get(&helpdesk, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(p["fields"]["email"], "ada@example.com");
        let objections: Vec<_> = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.action == "subject.objection")
            .collect();
        assert_eq!(objections[0].draft.purpose.as_deref(), Some("marketing"));
        assert_eq!(objections[0].draft.reasons["request"], rid);

        // Withdrawn: marketing reads are served again.
        objection["lift"] = json!(true);
        let (_, _, done) = file_and_verify(&v, &notifier, &objection).await;
        assert_eq!(done["status"], "completed");
        let (st, _) = v.get(&marketing, &read).await;
        assert_eq!(st, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn r11_r12_r13_r14_opt_out_limit_gpc_and_opting_back_in() {
    for backend in backends() {
        let v = partner_vault(backend).await;
        let partner = v.token("partner_portal").await;
        let notifier = v.token("notifier").await;
        let customer = |email: &str| {
            json!({"fields": {
                "email": {"value": email, "purposes": ["support", "partner_sharing"]},
                "health_note": {"value": "asthma", "purposes": ["analytics"]}},
                "consents": [given("partner_sharing"), given("analytics")]})
        };
        let grace = v.create(&partner, &customer("grace@example.com")).await;
        let sharing = format!("/v1/customers/{grace}?purpose=partner_sharing");
        let analytics = format!("/v1/customers/{grace}?purpose=analytics");
        let (_, p) = v.get(&partner, &sharing).await;
        assert_eq!(p["fields"]["email"], "grace@example.com", "{p}");
        let (_, p) = v.get(&partner, &analytics).await;
        assert_eq!(p["fields"]["health_note"], "asthma", "{p}");

        // R12: an opt-out completes at once, without verification.
        let (st, r) = anon(&v, &by_email("opt_out_sale", "ccpa", "grace@example.com")).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["status"], "completed");
        let (st, nobody) = anon(&v, &by_email("opt_out_sale", "ccpa", "nobody@example.com")).await;
        assert_eq!(
            (st, nobody["status"].clone()),
            (StatusCode::ACCEPTED, json!("completed"))
        );
        assert_eq!(keys(&r), keys(&nobody));
        let (_, mine) = v
            .get(
                &s(&r["request_token"]),
                &format!("/v1/requests/{}", s(&r["id"])),
            )
            .await;
        let (_, theirs) = v
            .get(
                &s(&nobody["request_token"]),
                &format!("/v1/requests/{}", s(&nobody["id"])),
            )
            .await;
        assert_eq!(mine["result"], theirs["result"]);
        assert!(
            of_request(
                &outbox(&v, &notifier).await,
                "verification_code",
                &s(&r["id"])
            )
            .is_empty()
        );
        // R13: sale/sharing purposes are withheld after the opt-out.
        let (_, p) = v.get(&partner, &sharing).await;
        assert!(p["fields"].get("email").is_none(), "{p}");
        assert_eq!(withheld(&p, "email"), "opted_out");

        // R12/R13: limiting sensitive data, also at once.
        let (_, r) = anon(
            &v,
            &by_email("limit_sensitive", "ccpa", "grace@example.com"),
        )
        .await;
        assert_eq!(r["status"], "completed");
        let (_, p) = v.get(&partner, &analytics).await;
        assert_eq!(withheld(&p, "health_note"), "limited", "{p}");

        // R14: opting back in takes a request and a separate confirmation.
        let mut opt_in = by_email("opt_out_sale", "ccpa", "grace@example.com");
        opt_in["lift"] = json!(true);
        let (_, r) = anon(&v, &opt_in).await;
        assert_eq!(r["status"], "verifying");
        let (_, p) = v.get(&partner, &sharing).await;
        assert_eq!(
            withheld(&p, "email"),
            "opted_out",
            "not before the confirmation"
        );
        let msgs = outbox(&v, &notifier).await;
        let confirm = of_request(&msgs, "verification_code", &s(&r["id"]));
        assert_eq!(confirm[0]["body"]["purpose"], "confirm_request");
        let (st, done) = verify(
            &v,
            &s(&r["request_token"]),
            &s(&r["id"]),
            &s(&confirm[0]["body"]["code"]),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "completed");
        let (_, p) = v.get(&partner, &sharing).await;
        assert_eq!(p["fields"]["email"], "grace@example.com");

        // R11: Sec-GPC from an identified customer records an opt-out
        // without further checks, whatever the request itself is.
        let henry = v.create(&partner, &customer("henry@example.com")).await;
        let (st, r) = anon_gpc(&v, &by_email("access", "ccpa", "henry@example.com")).await;
        assert_eq!(st, StatusCode::ACCEPTED);
        assert_eq!(r["status"], "verifying");
        let (_, p) = v
            .get(
                &partner,
                &format!("/v1/customers/{henry}?purpose=partner_sharing"),
            )
            .await;
        assert_eq!(withheld(&p, "email"), "opted_out", "{p}");
        let gpc: Vec<_> = v
            .audit()
            .await
            .into_iter()
            .filter(|e| {
                e.draft.action == "subject.opt_out_sale"
                    && e.draft.customer_id.as_deref() == Some(henry.as_str())
            })
            .collect();
        assert_eq!(gpc[0].draft.reasons["source"], "global_privacy_control");
        // Unidentified: nothing to record, the same answer.
        let (st, r) = anon_gpc(&v, &by_email("access", "ccpa", "nobody@example.com")).await;
        assert_eq!(
            (st, r["status"].clone()),
            (StatusCode::ACCEPTED, json!("verifying"))
        );
    }
}

#[tokio::test]
async fn r33_restriction_withholds_reads_keeps_the_data_and_lifting_notifies_first() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        let mut body = ada();
        body["fields"]["email"]["purposes"] = json!(["support", "legal.claims"]);
        let id = v.create(&helpdesk, &body).await;
        let support = format!("/v1/customers/{id}?purpose=support");

        let (_, _, done) = file_and_verify(
            &v,
            &notifier,
            &by_email("restriction", "gdpr", "ada@example.com"),
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        let (st, p) = v.get(&helpdesk, &support).await;
        assert_eq!(st, StatusCode::OK);
        assert!(p["fields"].as_object().unwrap().is_empty(), "{p}");
        assert_eq!(withheld(&p, "email"), "restricted", "{p}");
        let (st, b) = v
            .get(
                &helpdesk,
                &format!("/v1/customers/{id}/fields/email?purpose=support"),
            )
            .await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::FORBIDDEN, "restricted".into())
        );
        // Allowed under restriction (legal claims), and still stored.
        let (_, p) = v
            .get(&dpo, &format!("/v1/customers/{id}?purpose=legal.claims"))
            .await;
        assert_eq!(p["fields"]["email"], "ada@example.com");
        let record = v
            .state
            .store
            .customer_record(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.fields.len(), 2);

        // Only the controller lifts it.
        let mut lift = by_email("restriction", "gdpr", "ada@example.com");
        lift["lift"] = json!(true);
        let (st, b) = anon(&v, &lift).await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::BAD_REQUEST, "lift_not_allowed".into())
        );
        let lift =
            json!({"kind": "restriction", "regulation": "gdpr", "customer_id": id, "lift": true});
        let (st, _) = v.post(&helpdesk, "/v1/requests", &lift).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, r) = v.post(&dpo, "/v1/requests", &lift).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["status"], "verified");
        // First the customer is told; until the notice is delivered the
        // restriction holds.
        let (_, p) = v.get(&helpdesk, &support).await;
        assert!(p["fields"].as_object().unwrap().is_empty());
        let msgs = outbox(&v, &notifier).await;
        let notice = of_request(&msgs, "restriction_lift_notice", &s(&r["id"]));
        assert_eq!(notice.len(), 1);
        assert_eq!(notice[0]["to"]["address"], "ada@example.com");
        let (st, ack) = v
            .post(
                &notifier,
                &format!("/v1/outbox/{}/ack", s(&notice[0]["id"])),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{ack}");
        let (_, p) = v.get(&helpdesk, &support).await;
        assert_eq!(p["fields"]["email"], "ada@example.com");
        let view = stored_view(&v, &dpo, &s(&r["id"])).await;
        assert_eq!(view["status"], "completed");
        assert_eq!(view["result"]["restricted"], false);
        // Acknowledged: the payload is gone, a second ack answers the same.
        assert!(
            outbox(&v, &notifier)
                .await
                .iter()
                .all(|m| m["id"] != notice[0]["id"])
        );
        let (st, _) = v
            .post(
                &notifier,
                &format!("/v1/outbox/{}/ack", s(&notice[0]["id"])),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let acts: Vec<String> = v
            .audit()
            .await
            .into_iter()
            .map(|e| e.draft.action)
            .collect();
        let queued = acts
            .iter()
            .position(|a| a == "request.lift_notice_queued")
            .unwrap();
        let lifted = acts
            .iter()
            .position(|a| a == "subject.restriction_lifted")
            .unwrap();
        assert!(queued < lifted);
    })
    .await;
}

// ---------------------------------------------------------------------------
// Recipients
// ---------------------------------------------------------------------------

#[tokio::test]
async fn r32_each_recipient_gets_a_notice_of_rectification_and_restriction() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        let marketing = v.token("marketing_tool").await;
        let billing = v.token("billing_system").await;
        let mut body = ada();
        body["fields"]["email"]["purposes"] = json!(["support", "billing", "marketing.email"]);
        body["consents"] = json!([given("marketing")]);
        let id = v.create(&helpdesk, &body).await;
        // Reads by recipients are disclosures; a helpdesk read is not.
        v.get(
            &marketing,
            &format!("/v1/customers/{id}?purpose=marketing.email"),
        )
        .await;
        v.get(
            &billing,
            &format!("/v1/customers/{id}/fields/email?purpose=billing"),
        )
        .await;
        v.get(&billing, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        v.get(&helpdesk, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        let disclosed = v
            .state
            .store
            .disclosures(id.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(disclosed.len(), 3);
        let mut roles: Vec<&str> = disclosed
            .iter()
            .map(|d| d.recipient_role.as_str())
            .collect();
        roles.dedup();
        assert_eq!(roles, ["marketing_tool", "billing_system"]);
        assert_eq!(disclosed[0].fields, ["email"]);

        let mut rect = staff("rectification", "gdpr", &id);
        rect["changes"] = json!({"fields": {"email": {"value": "ada.lovelace@example.com"}}});
        let (st, r) = v.post(&dpo, "/v1/requests", &rect).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        // The DPO may not PATCH this value: the rectification waits for
        // approval (requests.process) like any change the filer could not make.
        assert_eq!(r["status"], "awaiting_approval", "{r}");
        let (st, r) = v
            .post(
                &dpo,
                &format!("/v1/requests/{}/approve", s(&r["id"])),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{r}");
        assert_eq!(r["status"], "completed", "{r}");
        let view = stored_view(&v, &dpo, &s(&r["id"])).await;
        assert_eq!(view["result"]["recipients_notified"], 2);
        let msgs = outbox(&v, &notifier).await;
        let notices = of_request(&msgs, "recipient_notice", &s(&r["id"]));
        assert_eq!(notices.len(), 2);
        let mut to: Vec<String> = notices
            .iter()
            .map(|n| s(&n["to"]["recipient_role"]))
            .collect();
        to.sort();
        assert_eq!(to, ["billing_system", "marketing_tool"]);
        for n in &notices {
            assert_eq!(n["body"]["notice"], "rectification");
            assert_eq!(n["body"]["customer_id"], id.as_str());
            assert_eq!(n["body"]["fields"], json!(["email"]));
            let text = n.to_string();
            assert!(
                !text.contains("ada@example.com") && !text.contains("lovelace"),
                "{text}"
            );
        }
        // R34: reads return the new value; the old one is gone.
        let (_, p) = v
            .get(&billing, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        assert_eq!(p["fields"]["email"], "ada.lovelace@example.com");
        let (_, found) = v
            .post(
                &helpdesk,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ada@example.com"}),
            )
            .await;
        assert!(found["customers"].as_array().unwrap().is_empty());

        let (_, r) = v
            .post(&dpo, "/v1/requests", &staff("restriction", "gdpr", &id))
            .await;
        assert_eq!(r["status"], "completed");
        let msgs = outbox(&v, &notifier).await;
        let notices = of_request(&msgs, "recipient_notice", &s(&r["id"]));
        assert_eq!(notices.len(), 2);
        assert!(notices.iter().all(|n| n["body"]["notice"] == "restriction"));

        // Erasure: one notice per recipient, kept after the erasure (it holds
        // no personal value).
        let (_, e) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "gdpr", &id))
            .await;
        let (st, done) = v
            .post(
                &dpo,
                &format!("/v1/requests/{}/approve", s(&e["id"])),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{done}");
        let msgs = outbox(&v, &notifier).await;
        let notices = of_request(&msgs, "recipient_notice", &s(&e["id"]));
        assert_eq!(notices.len(), 2, "{msgs:?}");
        assert!(notices.iter().all(|n| n["body"]["notice"] == "erasure"));
    })
    .await;
}

// ---------------------------------------------------------------------------
// Erasure through a request
// ---------------------------------------------------------------------------

#[tokio::test]
async fn r26_r28_an_erasure_request_from_intake_to_receipt() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        let billing = v.token("billing_system").await;
        let mut body = ada();
        body["fields"]["email"]["purposes"] = json!(["support"]);
        let id = v.create(&helpdesk, &body).await;

        let (rid, token, view) = file_and_verify(
            &v,
            &notifier,
            &by_email("erasure", "gdpr", "ada@example.com"),
        )
        .await;
        assert_eq!(view["status"], "awaiting_approval");
        let (st, done) = v
            .post(&dpo, &format!("/v1/requests/{rid}/approve"), &json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["result"]["status"], "erased");
        assert!(done["result"]["receipt_id"].is_string());
        let (_, mine) = v.get(&token, &format!("/v1/requests/{rid}")).await;
        assert_eq!(mine["result"], done["result"]);
        // R26: 404, not found by the former email, audited without values.
        let (st, _) = v
            .get(&helpdesk, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (_, found) = v
            .post(
                &helpdesk,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ada@example.com"}),
            )
            .await;
        assert!(found["customers"].as_array().unwrap().is_empty());
        let audit = v.audit().await;
        assert!(audit.iter().any(|e| e.draft.action == "request.completed"
            && e.draft.customer_id.as_deref() == Some(id.as_str())));
        assert!(!audit_text(&v).await.contains("ada@example.com"));
        // A request on the erased customer: staff get 404, a customer the
        // usual answer.
        let (st, b) = v
            .post(&dpo, "/v1/requests", &staff("access", "gdpr", &id))
            .await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::NOT_FOUND, "customer_not_found".into())
        );
        let (st, b) = anon(&v, &by_email("access", "gdpr", "ada@example.com")).await;
        assert_eq!(
            (st, b["status"].clone()),
            (StatusCode::ACCEPTED, json!("verifying"))
        );

        // R28: a value kept by a legal obligation survives as partially erased.
        let kept = v.create(&helpdesk, &ada()).await; // email for support and billing
        let (_, r) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "gdpr", &kept))
            .await;
        let (st, done) = v
            .post(
                &dpo,
                &format!("/v1/requests/{}/approve", s(&r["id"])),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "partially_completed");
        assert_eq!(done["result"]["status"], "partially_erased");
        let retained = &done["result"]["retained"][0];
        assert_eq!(retained["field"], "email");
        assert_eq!(retained["purpose"], "billing");
        assert_eq!(retained["basis"], "legal_obligation");
        let (_, p) = v
            .get(&billing, &format!("/v1/customers/{kept}?purpose=billing"))
            .await;
        assert_eq!(p["fields"]["email"], "ada@example.com");
        let (st, _) = v
            .get(&helpdesk, &format!("/v1/customers/{kept}?purpose=support"))
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn r26_an_access_request_exports_and_after_erasure_the_export_holds_only_the_receipt() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        let mut body = ada();
        body["fields"]["email"]["purposes"] = json!(["support"]);
        let id = v.create(&helpdesk, &body).await;
        let (_, pending) = anon(&v, &by_email("portability", "gdpr", "ada@example.com")).await;
        let (st, b) = v
            .get(
                &s(&pending["request_token"]),
                &format!("/v1/requests/{}/export", s(&pending["id"])),
            )
            .await;
        assert_eq!(
            (st, s(&b["code"])),
            (StatusCode::CONFLICT, "export_not_ready".into())
        );

        // Access needs no approval: verified, it is carried out at once.
        let (rid, token, done) = file_and_verify(
            &v,
            &notifier,
            &by_email("access", "gdpr", "ada@example.com"),
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        let export = format!("/v1/requests/{rid}/export");
        assert_eq!(done["result"]["export"], export.as_str());
        let (st, package) = v.get(&token, &export).await;
        assert_eq!(st, StatusCode::OK, "{package}");
        assert!(package.to_string().contains("ada@example.com"));
        // Built live at each download: the same data (the access log has
        // grown by the first download meanwhile).
        let (st, same) = v.get(&dpo, &export).await;
        assert_eq!((st, &same["data"]), (StatusCode::OK, &package["data"]));
        for t in [&helpdesk, &s(&pending["request_token"])] {
            let (st, _) = v.get(t, &export).await;
            assert_eq!(st, StatusCode::FORBIDDEN);
        }
        // No copy is kept: the package is built from live data at each
        // download, so a value rectified since is never served stale.
        assert!(
            v.state
                .store
                .request_export(rid.parse().unwrap())
                .await
                .unwrap()
                .is_none()
        );
        let (st, _) = v
            .patch(
                &helpdesk,
                &format!("/v1/customers/{id}?purpose=support"),
                &json!({"fields": {"email": {"value": "ada.byron@example.com"}}}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, fresh) = v.get(&token, &export).await;
        assert_eq!(st, StatusCode::OK, "{fresh}");
        assert!(
            fresh.to_string().contains("ada.byron@example.com"),
            "{fresh}"
        );
        assert!(!fresh.to_string().contains("ada@example.com"), "{fresh}");
        // The customer was told, with no value but the address.
        let msgs = outbox(&v, &notifier).await;
        let told = of_request(&msgs, "request_outcome", &rid);
        assert_eq!(told[0]["body"]["status"], "completed");

        // Erased: the same export now holds only the receipt.
        let (_, e) = v
            .post(&dpo, "/v1/requests", &staff("erasure", "gdpr", &id))
            .await;
        let (st, erased) = v
            .post(
                &dpo,
                &format!("/v1/requests/{}/approve", s(&e["id"])),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{erased}");
        let (st, after) = v.get(&token, &export).await;
        assert_eq!(st, StatusCode::OK, "{after}");
        assert_eq!(after["erased"], true);
        assert_eq!(
            after["receipt"]["receipt_id"],
            erased["result"]["receipt_id"]
        );
        assert!(!after.to_string().contains("ada@example.com"));
        assert!(!after.to_string().contains("ada.byron@example.com"));
        let exported = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.action == "request.exported" && e.draft.decision == "allowed")
            .count();
        assert_eq!(exported, 4);
    })
    .await;
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_requests_get_a_stable_code_and_change_nothing() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let auditor = v.token("auditor").await;
        let notifier = v.token("notifier").await;
        let id = v.create(&helpdesk, &ada()).await;
        let before = v.audit().await.len();
        let ident = json!({"field": "email", "value": "ada@example.com"});
        let cases: Vec<(Value, StatusCode, &str)> = vec![
            (json!({"kind": "forget_me", "regulation": "gdpr", "identifier": ident}), StatusCode::BAD_REQUEST, "unknown_kind"),
            (json!({"kind": "erasure", "identifier": ident}), StatusCode::BAD_REQUEST, "regulation_required"),
            (json!({"kind": "erasure", "regulation": "lgpd", "identifier": ident}), StatusCode::BAD_REQUEST, "unknown_regulation"),
            (json!({"kind": "erasure", "regulation": "gdpr"}), StatusCode::BAD_REQUEST, "identifier_required"),
            (json!({"kind": "erasure", "regulation": "gdpr", "identifier": {"field": "name", "value": "Ada"}}), StatusCode::BAD_REQUEST, "field_not_searchable"),
            (json!({"kind": "erasure", "regulation": "gdpr", "identifier": {"field": "shoe_size", "value": "7"}}), StatusCode::BAD_REQUEST, "unknown_field"),
            (json!({"kind": "erasure", "regulation": "gdpr", "identifier": {"field": "email", "value": "not-an-email"}}), StatusCode::BAD_REQUEST, "invalid_value"),
            (json!({"kind": "access", "regulation": "gdpr", "identifier": ident, "lift": true}), StatusCode::BAD_REQUEST, "lift_not_allowed"),
            (json!({"kind": "rectification", "regulation": "gdpr", "identifier": ident}), StatusCode::BAD_REQUEST, "changes_required"),
            (json!({"kind": "rectification", "regulation": "gdpr", "identifier": ident, "changes": {"fields": {"shoe_size": {"value": "7"}}}}), StatusCode::BAD_REQUEST, "unknown_field"),
            (json!({"kind": "rectification", "regulation": "gdpr", "identifier": ident, "changes": {"fields": {"phone": {"value": "call me"}}}}), StatusCode::BAD_REQUEST, "invalid_value"),
            (json!({"kind": "erasure", "regulation": "gdpr", "identifier": ident, "favourite_colour": "red"}), StatusCode::BAD_REQUEST, "invalid_request"),
            (json!({"kind": "erasure", "regulation": "gdpr", "customer_id": id}), StatusCode::UNAUTHORIZED, "unauthenticated"),
        ];
        for (body, status, code) in &cases {
            let (st, b) = anon(&v, body).await;
            assert_eq!((st, s(&b["code"])), (*status, code.to_string()), "{body}");
            assert!(!b.to_string().contains("not-an-email") && !b.to_string().contains("call me"));
        }
        let staff_cases: Vec<(&str, Value, StatusCode, &str)> = vec![
            (&dpo, json!({"kind": "erasure", "regulation": "gdpr", "customer_id": Uuid::now_v7()}), StatusCode::NOT_FOUND, "customer_not_found"),
            (&dpo, json!({"kind": "erasure", "regulation": "gdpr"}), StatusCode::BAD_REQUEST, "identifier_required"),
            (&dpo, json!({"kind": "erasure", "regulation": "gdpr", "customer_id": "zd-4711"}), StatusCode::BAD_REQUEST, "invalid_id"),
            (&auditor, json!({"kind": "erasure", "regulation": "gdpr", "customer_id": id}), StatusCode::FORBIDDEN, "capability_required"),
            (&dpo, json!({"kind": "erasure", "regulation": "gdpr", "customer_id": id, "verified_by": "Passport no. 123"}), StatusCode::BAD_REQUEST, "invalid_request"),
        ];
        for (t, body, status, code) in &staff_cases {
            let (st, b) = v.post(t, "/v1/requests", body).await;
            assert_eq!((st, s(&b["code"])), (*status, code.to_string()), "{body}");
        }
        let (st, b) = v.get(&dpo, &format!("/v1/requests/{}", Uuid::now_v7())).await;
        assert_eq!((st, s(&b["code"])), (StatusCode::NOT_FOUND, "request_not_found".into()));
        let (st, b) = v.get(&dpo, "/v1/requests/zd-4711").await;
        assert_eq!((st, s(&b["code"])), (StatusCode::BAD_REQUEST, "invalid_id".into()));

        // Nothing was filed, sent or recorded as done.
        let (_, list) = v.get(&dpo, "/v1/requests").await;
        assert!(list["requests"].as_array().unwrap().is_empty());
        assert!(outbox(&v, &notifier).await.is_empty());
        // (A filing for an unknown customer is audited as not found.)
        let recorded: Vec<(String, String)> = v.audit().await[before..]
            .iter()
            .map(|e| (e.draft.action.clone(), e.draft.decision.clone()))
            .collect();
        assert!(
            !recorded.iter().any(|(a, d)| (a == "request.received" && d == "allowed")
                || a == "request.completed"
                || a == "request.code_sent"),
            "{recorded:?}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// The outbox webhook
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Hook {
    calls: Arc<Mutex<u32>>,
    received: Arc<Mutex<Vec<Value>>>,
}

/// A webhook receiver that fails its first call (503), then accepts.
async fn webhook_receiver() -> (String, Hook) {
    let hook = Hook::default();
    let h = hook.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let h = h.clone();
            async move {
                let first = {
                    let mut calls = h.calls.lock().unwrap();
                    *calls += 1;
                    *calls == 1
                };
                if first {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                h.received.lock().unwrap().push(body);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), hook)
}

#[tokio::test]
async fn the_outbox_webhook_retries_with_backoff_and_never_blocks_a_request() {
    for backend in backends() {
        let (url, hook) = webhook_receiver().await;
        let v = TestVault::start_adjusted(backend, |settings, _| {
            settings.outbox_webhook_url = Some(url.clone());
        })
        .await;
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;
        let (st, r) = anon(&v, &by_email("erasure", "gdpr", "ada@example.com")).await;
        assert_eq!(st, StatusCode::ACCEPTED);
        let deadline = Instant::now() + Duration::from_secs(30);
        let delivered = loop {
            let got = hook.received.lock().unwrap().first().cloned();
            if let Some(d) = got {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook never received the code"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(
            *hook.calls.lock().unwrap() >= 2,
            "the first attempt failed and was retried"
        );
        assert_eq!(delivered["kind"], "verification_code");
        assert_eq!(delivered["to"]["address"], "ada@example.com");
        assert_eq!(delivered["request_id"], r["id"]);
        // Delivered: acknowledged, no longer waiting for the notifier.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !outbox(&v, &notifier).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the delivery was never acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (st, b) = verify(
            &v,
            &s(&r["request_token"]),
            &s(&r["id"]),
            &s(&delivered["body"]["code"]),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let acts: Vec<String> = v
            .audit()
            .await
            .into_iter()
            .map(|e| e.draft.action)
            .collect();
        assert!(acts.iter().filter(|a| *a == "outbox.send").count() >= 2);
        assert!(acts.iter().any(|a| a == "outbox.acknowledged"));
    }
    // A webhook that is down delays delivery, nothing else.
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |settings, _| {
            settings.outbox_webhook_url = Some("http://127.0.0.1:9/hook".into());
        })
        .await;
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;
        let (st, r) = anon(&v, &by_email("erasure", "gdpr", "ada@example.com")).await;
        assert_eq!(st, StatusCode::ACCEPTED);
        let code = code_for(&v, &notifier, &s(&r["id"])).await;
        let (st, _) = verify(&v, &s(&r["request_token"]), &s(&r["id"]), &code).await;
        assert_eq!(st, StatusCode::OK);
    }
}

/// A certificate authority made for one test (rcgen on ring) and a server
/// certificate it signed for 127.0.0.1 (DER, and PEM for other servers).
pub struct TestPki {
    pub ca_pem: String,
    pub cert: rustls::pki_types::CertificateDer<'static>,
    pub key: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn test_pki(name: &str) -> TestPki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &*ca).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Accepts TCP connections and completes a TLS handshake on each; the
/// handshakes that fail (the client refused the certificate) are counted.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    refused: Arc<AtomicU32>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => return (tls, addr),
                Err(_) => {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An HTTPS webhook receiver on 127.0.0.1 presenting `pki`'s server
/// certificate; it accepts every POST (204). Its URL, what it received and
/// the number of refused handshakes.
async fn tls_webhook_receiver(pki: &TestPki) -> (String, Hook, Arc<AtomicU32>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![pki.cert.clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key.clone_key()),
    )
    .unwrap();
    let hook = Hook::default();
    let h = hook.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let h = h.clone();
            async move {
                *h.calls.lock().unwrap() += 1;
                h.received.lock().unwrap().push(body);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let refused = Arc::new(AtomicU32::new(0));
    let listener = TlsListener {
        tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        refused: Arc::clone(&refused),
    };
    let addr = listener.tcp.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("https://{addr}/hook"), hook, refused)
}

/// A vault whose webhook is `url`, trusting the CA in `ca_pem` (written to
/// `outbox_webhook_ca_file`) beside the system's CA store.
async fn vault_with_https_webhook(backend: Backend, url: &str, ca_pem: &str) -> TestVault {
    TestVault::start_adjusted(backend, |settings, dir| {
        let file = dir.join("hooks-ca.pem");
        std::fs::write(&file, ca_pem).unwrap();
        settings.outbox_webhook_url = Some(url.to_owned());
        settings.outbox_webhook_ca_file = Some(file);
    })
    .await
}

#[tokio::test]
async fn the_outbox_webhook_delivers_over_https_only_to_a_trusted_certificate() {
    pii_vault::install_tls_provider();
    let company = test_pki("company");
    for backend in backends() {
        let (url, hook, refused) = tls_webhook_receiver(&company).await;
        let v = vault_with_https_webhook(backend, &url, &company.ca_pem).await;
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;
        let (st, r) = anon(&v, &by_email("erasure", "gdpr", "ada@example.com")).await;
        assert_eq!(st, StatusCode::ACCEPTED);
        let deadline = Instant::now() + Duration::from_secs(30);
        let delivered = loop {
            let got = hook.received.lock().unwrap().first().cloned();
            if let Some(d) = got {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "the HTTPS webhook never received the code"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(delivered["kind"], "verification_code");
        assert_eq!(delivered["to"]["address"], "ada@example.com");
        assert_eq!(delivered["request_id"], r["id"]);
        assert_eq!(
            refused.load(Ordering::SeqCst),
            0,
            "every handshake completed"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !outbox(&v, &notifier).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the HTTPS delivery was never acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let acts: Vec<String> = v
            .audit()
            .await
            .into_iter()
            .map(|e| e.draft.action)
            .collect();
        assert!(acts.iter().any(|a| a == "outbox.acknowledged"));
    }
    // The same trusted CA, but a server whose certificate another CA signed:
    // every handshake is refused, nothing is delivered, the message waits.
    let stranger = test_pki("stranger");
    for backend in backends() {
        let (url, hook, refused) = tls_webhook_receiver(&stranger).await;
        let v = vault_with_https_webhook(backend, &url, &company.ca_pem).await;
        let helpdesk = v.token("helpdesk").await;
        let notifier = v.token("notifier").await;
        v.create(&helpdesk, &ada()).await;
        let (st, _) = anon(&v, &by_email("erasure", "gdpr", "ada@example.com")).await;
        assert_eq!(st, StatusCode::ACCEPTED);
        // The first attempt and the retry 2 s later.
        let deadline = Instant::now() + Duration::from_secs(30);
        while refused.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "the webhook was not retried");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(*hook.calls.lock().unwrap(), 0, "no request got through");
        assert!(hook.received.lock().unwrap().is_empty());
        let waiting = outbox(&v, &notifier).await;
        assert_eq!(waiting.len(), 1, "the message waits, unacknowledged");
        let acts: Vec<String> = v
            .audit()
            .await
            .into_iter()
            .map(|e| e.draft.action)
            .collect();
        assert!(acts.iter().filter(|a| *a == "outbox.send").count() >= 2);
        assert!(!acts.iter().any(|a| a == "outbox.acknowledged"));
    }
}

#[tokio::test]
async fn a_webhook_ca_file_that_holds_no_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("hooks-ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let mut settings = settings(&format!(
        "sqlite://{}",
        dir.path().join("vault.db").display()
    ));
    settings.tombstone_file = Some(dir.path().join("vault.tombstones"));
    settings.outbox_webhook_url = Some("https://127.0.0.1:9/hook".into());
    settings.outbox_webhook_ca_file = Some(ca.clone());
    let clock = Arc::new(TestClock::default());
    let err = pii_vault::build_state(settings.clone(), clock.clone(), false)
        .await
        .err()
        .expect("the vault refuses to start");
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
    settings.outbox_webhook_ca_file = Some(dir.path().join("missing.pem"));
    let err = pii_vault::build_state(settings, clock, false)
        .await
        .err()
        .expect("the vault refuses to start");
    assert!(
        err.to_string()
            .contains("cannot read outbox_webhook_ca_file"),
        "{err}"
    );
}
