//! Customers: collection, purpose-bound reads, search, rectification, bad input.

use pii_vault::audit::{Action, Decision, EventDraft};
use pii_vault::clock::Clock;
use pii_vault::store::{Mutation, RequestMutation, Unit};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use sqlx::Connection;

#[tokio::test]
async fn r1_read_without_purpose_is_refused_and_audited() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let (s, body) = v.get(&t, &format!("/v1/customers/{id}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "purpose_required");
        assert!(body.get("fields").is_none());
        let denied: Vec<_> = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.action == "customer.read" && e.draft.decision == "denied")
            .collect();
        assert_eq!(denied.len(), 1, "{:?}", v.backend);
        assert_eq!(denied[0].draft.reasons["purpose"], "purpose_required");
        assert_eq!(denied[0].draft.customer_id.as_deref(), Some(id.as_str()));
    })
    .await;
}

#[tokio::test]
async fn r2_undeclared_purpose_is_refused() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let (s, body) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=astrology"))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "unknown_purpose");
        // A role that may not read for a declared purpose: 403.
        let (s, body) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=billing"))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(body["code"], "purpose_not_permitted");
    })
    .await;
}

#[tokio::test]
async fn r3_phone_for_callbacks_is_not_served_for_marketing() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let marketing = v.token("marketing_tool").await;
        let id = v.create(&helpdesk, &ada()).await;

        let (s, body) = v
            .get(
                &helpdesk,
                &format!("/v1/customers/{id}?purpose=support.callback"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["fields"]["phone"], "+393331234567");
        // The email was collected for support, which serves support.callback.
        assert_eq!(body["fields"]["email"], "ada@example.com");

        let (s, body) = v
            .get(
                &marketing,
                &format!("/v1/customers/{id}/fields/phone?purpose=marketing.sms"),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(body["code"], "not_collected_for_purpose");
        assert!(!body.to_string().contains("1234567") && !body.to_string().contains("123 4567"));

        let (s, body) = v
            .get(
                &marketing,
                &format!("/v1/customers/{id}?purpose=marketing.sms"),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body["fields"], json!({}));
        let withheld = body["withheld"].as_array().unwrap();
        assert!(
            withheld.contains(&json!({"field": "phone", "reason": "not_collected_for_purpose"}))
        );
    })
    .await;
}

#[tokio::test]
async fn reading_for_support_masks_the_phone_and_hides_values_collected_for_callbacks_only() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let body = json!({"fields": {
            "phone": {"value": "+39 333 123 4567", "purposes": ["support"]},
            "support_note": {"value": "prefers mornings", "purposes": ["support"]}}});
        let id = v.create(&t, &body).await;
        let (s, p) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(p["fields"]["phone"], "•••• 4567");
        assert_eq!(p["fields"]["support_note"], "prefers mornings");
        // For callbacks the helpdesk sees the phone in full.
        let (_, p) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=support.callback"))
            .await;
        assert_eq!(p["fields"]["phone"], "+393331234567");

        // A value collected only for support.callback does not serve support.
        let id2 = v.create(&t, &ada()).await;
        let (_, p) = v
            .get(&t, &format!("/v1/customers/{id2}?purpose=support"))
            .await;
        assert!(p["fields"].get("phone").is_none());
        assert!(
            p["withheld"]
                .as_array()
                .unwrap()
                .contains(&json!({"field": "phone", "reason": "not_collected_for_purpose"}))
        );
    })
    .await;
}

#[tokio::test]
async fn r4_undeclared_field_is_refused_and_nothing_is_stored() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let before = v.audit().await.len();
        let body = json!({"fields": {
            "email": {"value": "ada@example.com", "purposes": ["support"]},
            "shoe_size": {"value": "42", "purposes": ["support"]}}});
        let (s, b) = v.post(&t, "/v1/customers?purpose=support", &body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "unknown_field");
        assert_eq!(b["field"], "shoe_size");
        let (_, found) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ada@example.com"}),
            )
            .await;
        assert_eq!(found["customers"], json!([]), "nothing was half-written");
        let creates = v.audit().await[before..]
            .iter()
            .filter(|e| e.draft.action == "customer.create" && e.draft.decision == "allowed")
            .count();
        assert_eq!(creates, 0);
    })
    .await;
}

#[tokio::test]
async fn r9_consent_based_purpose_needs_consent() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let body = json!({"fields": {"email": {"value": "ada@example.com", "purposes": ["marketing.email"]}}});
        let (s, b) = v.post(&t, "/v1/customers?purpose=support", &body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(b["code"], "consent_required");

        // With the consent given in the same request it is accepted.
        let mut with = body.clone();
        with["consents"] = json!([{"purpose": "marketing.email", "notice_version": "2026-01",
            "notice_text_sha256": NOTICE_SHA, "language": "it", "jurisdiction": "EU"}]);
        let (s, b) = v.post(&t, "/v1/customers?purpose=support", &with).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = b["id"].as_str().unwrap();
        let marketing = v.token("marketing_tool").await;
        let (_, p) = v.get(&marketing, &format!("/v1/customers/{id}?purpose=marketing.email")).await;
        assert_eq!(p["fields"]["email"], "ada@example.com");
    })
    .await;
}

#[tokio::test]
async fn collection_rules_are_enforced() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        // phone may not be collected for billing.
        let body =
            json!({"fields": {"phone": {"value": "+393331234567", "purposes": ["billing"]}}});
        let (s, b) = v.post(&t, "/v1/customers?purpose=support", &body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "purpose_not_allowed_for_field");
        // the marketing tool may not collect at all.
        let m = v.token("marketing_tool").await;
        let (s, b) = v.post(&m, "/v1/customers?purpose=marketing", &ada()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(b["code"], "purpose_not_permitted");
        // invalid values name the field, never the value.
        let body =
            json!({"fields": {"phone": {"value": "call-me-maybe-123", "purposes": ["support"]}}});
        let (s, b) = v.post(&t, "/v1/customers?purpose=support", &body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "invalid_value");
        assert_eq!(b["field"], "phone");
        assert!(!b.to_string().contains("call-me-maybe"));
        // external ids are unique.
        let mut a = ada();
        a["external_id"] = json!("zd-dup");
        v.create(&t, &a).await;
        let (s, b) = v.post(&t, "/v1/customers?purpose=support", &a).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(b["code"], "external_id_taken");
    })
    .await;
}

#[tokio::test]
async fn search_finds_by_normalised_email_only_for_a_purpose_it_serves() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let (s, b) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "  ADA@Example.com "}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["customers"].as_array().unwrap().len(), 1);
        assert_eq!(b["customers"][0]["id"], id.as_str());
        assert_eq!(b["customers"][0]["fields"]["email"], "ada@example.com");

        let (_, b) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "bob@example.com"}),
            )
            .await;
        assert_eq!(b["customers"], json!([]));
        // The phone was collected for callbacks only: a search for support does not use it.
        let (_, b) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "phone", "value": "+393331234567"}),
            )
            .await;
        assert_eq!(b["customers"], json!([]));
        let (_, b) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support.callback",
                &json!({"field": "phone", "value": "+39 333 1234567"}),
            )
            .await;
        assert_eq!(b["customers"].as_array().unwrap().len(), 1);
        // Not searchable fields are refused.
        let (s, b) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "support_note", "value": "x"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "field_not_searchable");
    })
    .await;
}

#[tokio::test]
async fn r34_rectification_replaces_the_value_for_good() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let (s, b) = v
            .patch(
                &t,
                &format!("/v1/customers/{id}?purpose=support"),
                &json!({"fields": {"email": {"value": "ada.lovelace@example.org"}, "phone": null}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            b["fields"]["email"]["purposes"],
            json!(["billing", "support"])
        );
        let (_, p) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=support.callback"))
            .await;
        assert_eq!(p["fields"]["email"], "ada.lovelace@example.org");
        assert!(p["fields"].get("phone").is_none());
        assert!(!p.to_string().contains("ada@example.com"));
        let (_, found) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ada@example.com"}),
            )
            .await;
        assert_eq!(
            found["customers"],
            json!([]),
            "the old value's index entry is gone"
        );
        let (_, found) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ada.lovelace@example.org"}),
            )
            .await;
        assert_eq!(found["customers"].as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let body = ada();
        let send = |key: &'static str, body: Value| {
            let v = &v;
            let t = t.clone();
            async move {
                let r = v
                    .http
                    .post(v.url("/v1/customers?purpose=support"))
                    .bearer_auth(&t)
                    .header("Idempotency-Key", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                split(r).await
            }
        };
        let (s1, b1) = send("key-1", body.clone()).await;
        let (s2, b2) = send("key-1", body.clone()).await;
        assert_eq!(s1, StatusCode::CREATED);
        assert_eq!(s2, StatusCode::CREATED);
        assert_eq!(b1["id"], b2["id"], "one customer, not two");
        let creates = v
            .audit()
            .await
            .iter()
            .filter(|e| e.draft.action == "customer.create")
            .count();
        assert_eq!(creates, 1);
        let mut other = body.clone();
        other["external_id"] = json!("zd-other");
        let (s3, b3) = send("key-1", other).await;
        assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(b3["code"], "idempotency_key_reused");
    })
    .await;
}

/// The idempotency records: a keyed fingerprint (no plain hash of a body
/// that holds personal values), gone after `idempotency_ttl_hours`, and
/// deleted with the customer by an erasure.
#[tokio::test]
async fn idempotency_records_are_keyed_expire_and_go_with_the_customer() {
    on_each_backend(|v| async move {
        let dpo = v.token("dpo").await;
        let create = |key: &'static str, body: Value| {
            let v = &v;
            async move {
                let t = v.token("helpdesk").await;
                let r = v
                    .http
                    .post(v.url("/v1/customers?purpose=support"))
                    .bearer_auth(&t)
                    .header("Idempotency-Key", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                split(r).await
            }
        };
        let rows = |key: &'static str| {
            let url = v.database_url.clone();
            async move {
                let sql = "SELECT request_hash FROM idempotency_keys WHERE key = $1";
                if url.starts_with("sqlite") {
                    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    sqlx::query_scalar::<_, Vec<u8>>(sql)
                        .bind(key)
                        .fetch_all(&mut c)
                        .await
                        .unwrap()
                } else {
                    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::query_scalar::<_, Vec<u8>>(sql)
                        .bind(key)
                        .fetch_all(&mut c)
                        .await
                        .unwrap()
                }
            }
        };
        let mut body = ada();
        body["fields"]["email"]["purposes"] = json!(["support"]);
        let (st, created) = create("keyed-1", body.clone()).await;
        assert_eq!(st, StatusCode::CREATED, "{created}");
        // Anyone holding the database cannot confirm a guessed body: the
        // fingerprint is not the SHA-256 of what the vault hashed.
        let input: pii_vault::customers::CreateCustomer =
            serde_json::from_value(body.clone()).unwrap();
        let mut plain = b"POST /v1/customers".to_vec();
        plain.push(0);
        plain.extend(serde_json::to_vec(&input).unwrap());
        let guessed = ring::digest::digest(&ring::digest::SHA256, &plain);
        let stored = rows("keyed-1").await;
        assert_eq!(stored.len(), 1);
        assert_ne!(
            stored[0].as_slice(),
            guessed.as_ref(),
            "a plain SHA-256 of the body"
        );
        // Erasure deletes the customer's records.
        let id = created["id"].as_str().unwrap().to_owned();
        let (st, _) = v
            .send(
                reqwest::Method::DELETE,
                &dpo,
                &format!("/v1/customers/{id}"),
                &Value::Null,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        assert!(rows("keyed-1").await.is_empty(), "erasure left the record");
        // Expiry: after idempotency_ttl_hours (24) the sweeper deletes the
        // record and the key is free for another request.
        let (st, _) = create("keyed-2", ada()).await;
        assert_eq!(st, StatusCode::CREATED);
        v.clock.advance_days(1);
        let mut other = ada();
        other["external_id"] = json!("zd-after-a-day");
        let (st, b) = create("keyed-2", other.clone()).await;
        assert_eq!(st, StatusCode::CREATED, "an expired key is free: {b}");
        let ctx = pii_vault::requests::erasure::Ctx::from_state(&v.state);
        v.clock.advance_days(2);
        use pii_vault::clock::Clock;
        pii_vault::retention::sweep(&ctx, v.clock.now_micros(), |_| {})
            .await
            .unwrap();
        assert!(
            rows("keyed-2").await.is_empty(),
            "the sweeper left an expired record"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_a_problem_with_a_stable_code_and_no_echo() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let url = v.url("/v1/customers?purpose=support");
        let raw = |body: &'static str, ct: &'static str| {
            let v = &v;
            let t = t.clone();
            let url = url.clone();
            async move {
                let r = v.http.post(url).bearer_auth(&t).header("content-type", ct).body(body).send().await.unwrap();
                let ct = r.headers().get("content-type").map(|h| h.to_str().unwrap().to_owned());
                let (s, b) = split(r).await;
                (s, b, ct)
            }
        };
        let (s, b, ct) = raw("{\"fields\": {", "application/json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "invalid_request");
        assert_eq!(ct.as_deref(), Some("application/problem+json"));
        let (s, b, _) = raw(r#"{"fields": {}, "nickname": "canary-nick-77"}"#, "application/json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "invalid_request");
        assert!(!b.to_string().contains("canary-nick-77"));
        let (s, b, _) = raw(r#"{"fields": {"email": {"value": 393331234567, "purposes": ["support"]}}}"#, "application/json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(!b.to_string().contains("393331234567"), "{b}");
        let (s, b, _) = raw(r#"{"fields": {}}"#, "text/plain").await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(b["code"], "unsupported_media_type");

        let big = json!({"fields": {"support_note": {"value": "x".repeat(2 * 1024 * 1024), "purposes": ["support"]}}});
        let (s, b) = v.post(&t, "/v1/customers?purpose=support", &big).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(b["code"], "payload_too_large");

        let (s, b) = v.get(&t, "/v1/customers/not-a-uuid?purpose=support").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "invalid_id");
        let (s, b) = v.get(&t, "/v1/customers/0190f6a0-0000-7000-8000-000000000000?purpose=support").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(b["code"], "customer_not_found");
    })
    .await;
}

/// `POST /v1/customers/batch`: each customer is stored (or refused) as
/// `POST /v1/customers` would store it, in order, without the refused ones
/// keeping the others out; each is audited like a single create.
#[tokio::test]
async fn a_batch_stores_each_customer_as_a_create_would_and_reports_each_in_order() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let first = ada();
        let mut with_consent = json!({"external_id": "zd-batch-2", "channel": "web",
            "notice_version": "2026-01",
            "fields": {
                "email": {"value": "grace@example.com", "purposes": ["support", "marketing.email"]},
                "phone": {"value": "+41 79 555 01 02", "purposes": ["support.callback"]}}});
        with_consent["consents"] = json!([{"purpose": "marketing.email", "notice_version": "2026-01",
            "notice_text_sha256": NOTICE_SHA, "language": "en", "jurisdiction": "EU"}]);
        let batch = json!([
            first,
            {"fields": {"favourite_bird": {"value": "kakapo", "purposes": ["support"]}}},
            with_consent,
            // The same external id as the first: refused alone.
            {"external_id": first["external_id"], "channel": "chat",
             "fields": {"email": {"value": "twin@example.com", "purposes": ["support"]}}},
            // Consent-based purpose without the consent.
            {"fields": {"email": {"value": "nina@example.com", "purposes": ["marketing.email"]}}},
        ]);
        let (s, b) = v
            .post(&t, "/v1/customers/batch?purpose=support", &batch)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let results = b["results"].as_array().unwrap();
        assert_eq!(results.len(), 5, "{b}");
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r["index"], i, "{b}");
        }
        assert_eq!(results[0]["status"], 201, "{b}");
        assert_eq!(results[2]["status"], 201, "{b}");
        assert_eq!(results[1]["status"], 400);
        assert_eq!(results[1]["problem"]["code"], "unknown_field");
        assert_eq!(results[1]["problem"]["status"], 400);
        assert!(results[1].get("id").is_none());
        assert_eq!(results[3]["status"], 409);
        assert_eq!(results[3]["problem"]["code"], "external_id_taken");
        assert_eq!(results[4]["status"], 422);
        assert_eq!(results[4]["problem"]["code"], "consent_required");
        // No value is echoed, not even in a problem.
        for value in ["kakapo", "twin@example.com", "nina@example.com", "grace@"] {
            assert!(!b.to_string().contains(value), "{value} in {b}");
        }

        // The stored customers read back like any other.
        let a = results[0]["id"].as_str().unwrap();
        let c = results[2]["id"].as_str().unwrap();
        let (s, p) = v
            .get(&t, &format!("/v1/customers/{a}?purpose=support"))
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["fields"]["email"], "ada@example.com");
        assert_eq!(p["external_id"], first["external_id"]);
        let (s, p) = v
            .get(&t, &format!("/v1/customers/{c}?purpose=support.callback"))
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["fields"]["phone"], "+41795550102");
        let marketing = v.token("marketing_tool").await;
        let (_, p) = v
            .get(
                &marketing,
                &format!("/v1/customers/{c}?purpose=marketing.email"),
            )
            .await;
        assert_eq!(p["fields"]["email"], "grace@example.com", "{p}");
        let (s, found) = v
            .post(
                &t,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "Grace@Example.com"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(found["customers"][0]["id"], c);
        // Only the two were stored.
        assert_eq!(v.state.store.customer_count().await.unwrap(), 2);

        // Audited per customer, as a single create is.
        let audit = v.audit().await;
        let created: Vec<_> = audit
            .iter()
            .filter(|e| e.draft.action == "customer.create" && e.draft.decision == "allowed")
            .collect();
        assert_eq!(created.len(), 2);
        assert_eq!(created[0].draft.customer_id.as_deref(), Some(a));
        assert_eq!(created[1].draft.customer_id.as_deref(), Some(c));
        assert_eq!(created[0].draft.purpose.as_deref(), Some("support"));
        assert_eq!(created[0].draft.fields, ["email", "phone"]);
        let grants: Vec<_> = audit
            .iter()
            .filter(|e| e.draft.action == "consent.grant")
            .collect();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].draft.customer_id.as_deref(), Some(c));
        // Each refused customer is a refusal in the trail, named by its index.
        let refused: Vec<(String, String)> = audit
            .iter()
            .filter(|e| e.draft.action == "customer.create" && e.draft.decision != "allowed")
            .map(|e| {
                (
                    e.draft.reasons["batch_index"].clone(),
                    e.draft.reasons["error"].clone(),
                )
            })
            .collect();
        let expected = [
            ("1", "unknown_field"),
            ("3", "external_id_taken"),
            ("4", "consent_required"),
        ];
        assert_eq!(
            refused,
            expected.map(|(i, c)| (i.to_owned(), c.to_owned())),
            "{refused:?}"
        );
    })
    .await;
}

/// The batch asks what a create asks of its caller: a role that may not
/// collect for the purpose is refused (and audited) once, and nothing of
/// the batch is stored; an empty batch, more than 1,000 customers or a
/// body that is not an array are refused before anything is stored.
#[tokio::test]
async fn a_batch_is_refused_to_roles_that_cannot_create_and_beyond_its_limits() {
    on_each_backend(|v| async move {
        let batch = json!([ada(), ada()]);
        for (role, purpose, code) in [
            ("marketing_tool", "support", "purpose_not_permitted"),
            ("auditor", "support", "purpose_not_permitted"),
            ("helpdesk", "analytics", "purpose_not_permitted"),
        ] {
            let t = v.token(role).await;
            let (s, b) = v
                .post(&t, &format!("/v1/customers/batch?purpose={purpose}"), &batch)
                .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{role}: {b}");
            assert_eq!(b["code"], code, "{role}");
        }
        let t = v.token("helpdesk").await;
        let (s, b) = v.post(&t, "/v1/customers/batch", &batch).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "purpose_required");
        let (s, b) = v
            .post(&t, "/v1/customers/batch?purpose=support", &json!([]))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "invalid_request");
        let (s, b) = v
            .post(&t, "/v1/customers/batch?purpose=support", &ada())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "not an array: {b}");
        assert_eq!(b["code"], "invalid_request");
        let many: Vec<Value> = (0..1_001)
            .map(|i| json!({"fields": {"support_note": {"value": format!("n{i}"), "purposes": ["support"]}}}))
            .collect();
        let (s, b) = v
            .post(&t, "/v1/customers/batch?purpose=support", &json!(many))
            .await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
        assert_eq!(b["code"], "payload_too_large");
        assert_eq!(v.state.store.customer_count().await.unwrap(), 0);
        let audit = v.audit().await;
        assert!(
            !audit
                .iter()
                .any(|e| e.draft.action == "customer.create" && e.draft.decision == "allowed")
        );
        let denied = audit
            .iter()
            .filter(|e| e.draft.action == "customer.create" && e.draft.decision == "denied")
            .count();
        // The three roles or purposes refused, and the missing purpose.
        assert_eq!(denied, 4, "one refusal per refused batch");
    })
    .await;
}

/// `Idempotency-Key` on a batch: the retry gets the first answer and
/// stores nothing again; another batch under the same key is 422.
#[tokio::test]
async fn a_batch_under_an_idempotency_key_has_one_effect() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let batch = json!([
            {"fields": {"email": {"value": "one@example.com", "purposes": ["support"]}}},
            {"fields": {"email": {"value": "two@example.com", "purposes": ["support"]}}},
        ]);
        let send = |body: Value| {
            let v = &v;
            let t = t.clone();
            async move {
                let r = v
                    .http
                    .post(v.url("/v1/customers/batch?purpose=support"))
                    .bearer_auth(&t)
                    .header("Idempotency-Key", "batch-1")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let replayed = r.headers().contains_key("idempotent-replayed");
                let (s, b) = split(r).await;
                (s, b, replayed)
            }
        };
        let (s1, b1, replayed1) = send(batch.clone()).await;
        let (s2, b2, replayed2) = send(batch.clone()).await;
        assert_eq!(s1, StatusCode::OK, "{b1}");
        assert_eq!(s2, StatusCode::OK, "{b2}");
        assert!(!replayed1 && replayed2);
        assert_eq!(b1, b2);
        assert_eq!(v.state.store.customer_count().await.unwrap(), 2);
        let (s3, b3, _) = send(json!([batch[0]])).await;
        assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(b3["code"], "idempotency_key_reused");
        assert_eq!(v.state.store.customer_count().await.unwrap(), 2);
    })
    .await;
}

/// A batch's customers are committed before its answer is kept: a crash
/// in between leaves them stored and the key without an answer (the
/// restarted vault frees the claim). The retry under the same key and with
/// the same body stores none of them again and answers their ids; another
/// body under that key is another batch.
#[tokio::test]
async fn a_batch_retried_after_a_crash_before_its_answer_was_kept_stores_nothing_twice() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let batch = json!([
            {"fields": {"email": {"value": "one@example.com", "purposes": ["support"]}}},
            {"external_id": "zd-crash-2",
             "fields": {"email": {"value": "two@example.com", "purposes": ["support"]}}},
            {"fields": {}},
        ]);
        let path = "/v1/customers/batch?purpose=support";
        let (s, first, _) = post_keyed(&v, &t, path, "batch-crash", &batch).await;
        assert_eq!(s, StatusCode::OK, "{first}");
        let statuses = |b: &Value| -> Vec<u64> {
            b["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["status"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(statuses(&first), vec![201, 201, 400]);
        assert_eq!(v.state.store.customer_count().await.unwrap(), 2);
        let refusals = |events: &[pii_vault::audit::StoredEvent]| {
            events
                .iter()
                .filter(|e| {
                    e.draft.action == "customer.create"
                        && e.draft.reasons.contains_key("batch_index")
                })
                .count()
        };
        let refused_before = refusals(&v.audit().await);

        // The crash: the customers stay, the answer was never kept.
        v.exec("DELETE FROM idempotency_keys").await;
        let (s, again, headers) = post_keyed(&v, &t, path, "batch-crash", &batch).await;
        assert_eq!(s, StatusCode::OK, "{again}");
        assert!(!headers.contains_key("idempotent-replayed"));
        assert_eq!(again, first, "the same customers, under the same ids");
        assert_eq!(v.state.store.customer_count().await.unwrap(), 2);
        // The invalid customer is refused (and audited) again; the stored
        // ones are not refusals.
        assert_eq!(refusals(&v.audit().await), refused_before + 1);
        let id = first["results"][0]["id"].as_str().unwrap();
        let (s, p) = v
            .get(&t, &format!("/v1/customers/{id}?purpose=support"))
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["fields"]["email"], "one@example.com");

        // Another body under the key, once it is free: new customers.
        v.exec("DELETE FROM idempotency_keys").await;
        let other = json!([batch[0]]);
        let (s, b, _) = post_keyed(&v, &t, path, "batch-crash", &other).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(statuses(&b), vec![201]);
        assert_ne!(b["results"][0]["id"], first["results"][0]["id"]);
        assert_eq!(v.state.store.customer_count().await.unwrap(), 3);
    })
    .await;
}

/// The store reads a customer back whole and in a stable order: every
/// value with its ciphertext and its purposes (by field, then purpose), the
/// consent events in the order they happened, the objections by purpose.
/// On SQLite this is the store's direct read path, on PostgreSQL its pool.
#[tokio::test]
async fn the_stored_record_holds_every_value_purpose_consent_and_objection_in_order() {
    on_each_backend(|v| async move {
        let t = v.token("helpdesk").await;
        let id = v.create(&t, &ada()).await;
        let path = format!("/v1/customers/{id}/consents");
        for action in ["grant", "withdraw", "grant"] {
            let (s, b) = v.post(&t, &path, &consent("marketing.email", action)).await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
        let uuid: Uuid = id.parse().unwrap();
        for purpose in ["support", "analytics"] {
            let unit = Unit {
                mutations: vec![Mutation::Requests(RequestMutation::AddObjection {
                    customer_id: uuid,
                    purpose: purpose.into(),
                    at: 1,
                })],
                events: vec![],
            };
            v.state.sequencer.commit(unit).await.unwrap();
        }

        let record = v.state.store.customer_record(uuid).await.unwrap().unwrap();
        assert_eq!(record.customer.id, uuid);
        assert!(record.customer.wrapped_dek.is_some());
        assert_eq!(record.customer.erased_at, None);
        let fields: Vec<(&str, Vec<&str>)> = record
            .fields
            .iter()
            .map(|f| {
                let purposes = f.purposes.iter().map(|p| p.purpose.as_str()).collect();
                (f.field.as_str(), purposes)
            })
            .collect();
        assert_eq!(
            fields,
            [
                ("email", vec!["billing", "support"]),
                ("phone", vec!["support.callback"])
            ]
        );
        for f in &record.fields {
            assert_eq!(f.channel.as_deref(), Some("chat"));
            assert_eq!(f.notice_version.as_deref(), Some("2026-01"));
            assert!(f.purposes.iter().all(|p| p.expires_at > p.collected_at));
            // Stored encrypted: the plaintext is not in the ciphertext.
            assert!(!f.ciphertext.windows(3).any(|w| w == b"ada"));
        }
        // Decrypts with the customer's key: the bytes came back intact.
        let keyring = v.state.keys.keyring();
        let dek = keyring
            .unwrap_dek(
                uuid,
                record.customer.kek_version.unwrap(),
                record.customer.wrapped_dek.as_ref().unwrap(),
            )
            .unwrap();
        let plain = dek
            .decrypt_field(uuid, "email", &record.fields[0].ciphertext)
            .unwrap();
        assert_eq!(plain.as_slice(), b"ada@example.com");

        let actions: Vec<&str> = record.consents.iter().map(|c| c.action.as_str()).collect();
        assert_eq!(actions, ["grant", "withdraw", "grant"]);
        let (_, api) = v.get(&t, &path).await;
        let api_ids: Vec<String> = api["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let ids: Vec<String> = record.consents.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, api_ids);
        for c in &record.consents {
            assert_eq!(c.customer_id, uuid);
            assert_eq!(c.notice_text_sha256, NOTICE_SHA);
            assert_eq!((c.language.as_str(), c.jurisdiction.as_str()), ("it", "EU"));
            assert!(!c.explicit);
        }
        assert_eq!(record.objections, ["analytics", "support"]);
        assert!(
            v.state
                .store
                .customer_record(Uuid::now_v7())
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

/// A unit creating customer `id` (external id `crm`) with an email (blind
/// index `digest`) and a phone, each for support, and a consent event.
fn new_customer_unit(id: Uuid, crm: &str, digest: u8, at: i64) -> Unit {
    let ciphertext = vec![digest, 1, 2, 3];
    Unit {
        mutations: vec![
            Mutation::InsertCustomer {
                id,
                external_id: Some(crm.into()),
                kek_version: 1,
                wrapped_dek: vec![9; 40],
                at,
            },
            stored_value(id, "email", ciphertext.clone(), Some(vec![digest; 32]), at),
            stored_value(id, "phone", ciphertext, None, at),
            stored_grant(Uuid::now_v7(), id, at),
        ],
        events: vec![event(Action::CustomerCreate, id)],
    }
}

fn event(action: Action, id: Uuid) -> EventDraft {
    EventDraft::new("helpdesk", "helpdesk", action, Decision::Allowed, "req").customer(id)
}

/// A commit batch linked on from the head the store's last commit left (the
/// sequencer's path: on SQLite the store's direct writer takes batches of
/// new customers, values, consents, version checks and audit events) stores
/// each unit or refuses it alone, as a batch that reads the head first
/// does: a taken external id and a stale version are Conflicts, a value or
/// consent of a customer that does not exist NotFound, and the rest of the
/// batch is stored whole, its events extending the one chain. A head that
/// another writer moved meanwhile makes the batch run again from it.
#[tokio::test]
async fn a_batch_from_a_known_head_stores_or_refuses_each_unit_alone() {
    use pii_vault::store::StoreError;
    on_each_backend(|v| async move {
        let store = &v.state.store;
        let at = v.clock.now_micros();
        let head = store.audit_head().await.unwrap();
        let (a, c, nobody) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut orphan = new_customer_unit(nobody, "crm-nobody", 7, at);
        orphan.mutations.remove(0);
        let units = vec![
            new_customer_unit(a, "crm-a", 1, at),
            new_customer_unit(Uuid::now_v7(), "crm-a", 2, at),
            orphan,
            Unit {
                mutations: vec![Mutation::ExpectCustomerVersion {
                    customer_id: a,
                    versions: ",99,".into(),
                }],
                events: vec![event(Action::CustomerUpdate, a)],
            },
            Unit::event(event(Action::CustomerRead, a)),
            new_customer_unit(c, "crm-c", 3, at),
        ];
        let (outcomes, after) = store
            .commit_batch_after(&units, at, Some(&head))
            .await
            .unwrap();
        let shape: Vec<String> = outcomes
            .iter()
            .map(|o| match o {
                Ok(events) => format!("stored {}", events.len()),
                Err(StoreError::Conflict(c)) if c == pii_vault::store::VERSION_MISMATCH => {
                    "version mismatch".into()
                }
                Err(StoreError::Conflict(_)) => "conflict".into(),
                Err(StoreError::NotFound) => "not found".into(),
                Err(e) => format!("{e}"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "stored 1",
                "conflict",
                "not found",
                "version mismatch",
                "stored 1",
                "stored 1"
            ]
        );
        assert_eq!(after.seq, head.seq + 3);
        assert_eq!(store.audit_head().await.unwrap(), after);

        let mut versions = Vec::new();
        for (id, digest) in [(a, 1u8), (c, 3)] {
            let record = store.customer_record(id).await.unwrap().unwrap();
            let fields: Vec<(&str, &[u8], usize)> = record
                .fields
                .iter()
                .map(|f| (f.field.as_str(), f.ciphertext.as_slice(), f.purposes.len()))
                .collect();
            let ciphertext = [digest, 1, 2, 3];
            assert_eq!(
                fields,
                [("email", &ciphertext[..], 1), ("phone", &ciphertext[..], 1)]
            );
            assert_eq!(record.consents.len(), 1);
            versions.push(record.customer.version);
            assert_eq!(
                store
                    .find_by_blind_index("email", &[digest; 32])
                    .await
                    .unwrap(),
                [id]
            );
        }
        // The refused version check left `a` as `c`, created the same way.
        assert_eq!(versions[0], versions[1]);
        assert!(store.customer_record(nobody).await.unwrap().is_none());
        for refused in [2u8, 7] {
            let found = store.find_by_blind_index("email", &[refused; 32]).await;
            assert_eq!(found.unwrap(), Vec::<Uuid>::new());
        }

        // `head` is stale now, as if another process had appended since.
        let d = Uuid::now_v7();
        let (outcomes, last) = store
            .commit_batch_after(&[new_customer_unit(d, "crm-d", 4, at)], at, Some(&head))
            .await
            .unwrap();
        assert!(outcomes[0].is_ok(), "{outcomes:?}");
        assert_eq!(last.seq, after.seq + 1);
        assert!(store.customer_record(d).await.unwrap().is_some());
        let auditor = v.token("auditor").await;
        let (s, verified) = v.get(&auditor, "/v1/audit/verify").await;
        assert_eq!(s, StatusCode::OK, "{verified}");
        assert_eq!(verified["ok"], true, "{verified}");
    })
    .await;
}
