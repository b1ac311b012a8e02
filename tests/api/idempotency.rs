//! `Idempotency-Key`: every POST with an effect stores its answer in the
//! same database unit as the effect, so no moment exists where the effect
//! is stored and the answer is not (a crash there would make the retry
//! repeat the effect).
//!
//! Shown without a crash: a trigger makes storing an answer fail. The
//! effect must then be rolled back with it and the caller told so (5xx);
//! the retry without the trigger has the effect exactly once, and a second
//! retry replays the first answer.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// From now on, storing an answer fails (the answer is an UPDATE of the
/// claimed key's row; claims and releases are not).
async fn fail_answers(v: &TestVault) {
    match v.backend {
        Backend::Sqlite => {
            v.exec(
                "CREATE TRIGGER answer_fail BEFORE UPDATE ON idempotency_keys \
                 BEGIN SELECT RAISE(ABORT, 'simulated: the answer cannot be stored'); END;",
            )
            .await
        }
        Backend::Postgres => {
            v.exec(
                "CREATE OR REPLACE FUNCTION answer_fail() RETURNS trigger AS $$ BEGIN \
                 RAISE EXCEPTION 'simulated: the answer cannot be stored'; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER answer_fail BEFORE UPDATE ON idempotency_keys \
                 FOR EACH ROW EXECUTE FUNCTION answer_fail();",
            )
            .await
        }
    }
}

async fn allow_answers(v: &TestVault) {
    match v.backend {
        Backend::Sqlite => v.exec("DROP TRIGGER answer_fail").await,
        Backend::Postgres => v.exec("DROP TRIGGER answer_fail ON idempotency_keys").await,
    }
}

/// Audit events of `action`: each effect of these routes records one, in
/// its own unit.
async fn recorded(v: &TestVault, action: &str) -> usize {
    v.audit()
        .await
        .iter()
        .filter(|e| e.draft.action == action)
        .count()
}

/// POST `path` under `key` while answers cannot be stored: 5xx and no
/// `action` recorded. Then without the fault: the effect once, and a
/// second retry replays the first answer. Returns the answer.
async fn once_with_its_answer(
    v: &TestVault,
    token: &str,
    path: &str,
    body: &Value,
    action: &str,
) -> (StatusCode, Value) {
    let key = format!("key-{action}-{}", uuid::Uuid::now_v7());
    let before = recorded(v, action).await;
    fail_answers(v).await;
    let (s, b, _) = post_keyed(v, token, path, &key, body).await;
    allow_answers(v).await;
    assert!(
        s.is_server_error(),
        "POST {path}: the answer was not stored, yet the caller got {s} {b}"
    );
    assert_eq!(
        recorded(v, action).await,
        before,
        "POST {path}: the effect ({action}) stayed without its answer"
    );

    let (s1, b1, h1) = post_keyed(v, token, path, &key, body).await;
    assert!(s1.is_success(), "POST {path} retried: {s1} {b1}");
    assert!(h1.get("idempotent-replayed").is_none(), "POST {path}");
    assert_eq!(recorded(v, action).await, before + 1, "POST {path}: once");

    let (s2, b2, h2) = post_keyed(v, token, path, &key, body).await;
    assert_eq!((s2, &b2), (s1, &b1), "POST {path}: the first answer");
    assert_eq!(h2["idempotent-replayed"], "true", "POST {path}");
    assert_eq!(recorded(v, action).await, before + 1, "POST {path}: once");
    (s1, b1)
}

#[tokio::test]
async fn customers_consents_and_holds_store_their_answer_with_their_effect() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let (s, created) = once_with_its_answer(
            &v,
            &helpdesk,
            "/v1/customers?purpose=support",
            &ada(),
            "customer.create",
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let id = created["id"].as_str().unwrap().to_owned();
        let (_, found) = v
            .post(
                &helpdesk,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": "ada@example.com"}),
            )
            .await;
        assert_eq!(found["customers"].as_array().unwrap().len(), 1, "{found}");

        let consents = format!("/v1/customers/{id}/consents");
        let (s, _) = once_with_its_answer(
            &v,
            &helpdesk,
            &consents,
            &consent("marketing.email", "grant"),
            "consent.grant",
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let (_, ledger) = v.get(&helpdesk, &consents).await;
        assert_eq!(ledger["events"].as_array().unwrap().len(), 1, "{ledger}");

        let hold = json!({"customer_id": id, "fields": ["email"], "reason": "Case 2026-118",
                          "basis": "legal_claims", "review_at": "2099-01-01T00:00:00Z"});
        let (s, _) =
            once_with_its_answer(&v, &dpo, "/v1/legal-holds", &hold, "legal_hold.create").await;
        assert_eq!(s, StatusCode::CREATED);
        let (_, holds) = v
            .get(&dpo, &format!("/v1/legal-holds?customer_id={id}"))
            .await;
        assert_eq!(holds["holds"].as_array().unwrap().len(), 1, "{holds}");
    })
    .await;
}

/// A vault whose policy makes access requests wait for the DPO too (so
/// that approving one does not erase the customer, which deletes the
/// records of the keys that concerned them).
async fn approval_vault(backend: Backend) -> TestVault {
    TestVault::start_adjusted(backend, |settings, dir| {
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let default =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml");
        let text = std::fs::read_to_string(default).unwrap();
        let text = text.replace(
            "approval_required = [\"erasure\"]",
            "approval_required = [\"erasure\", \"access\"]",
        );
        assert!(text.contains("\"access\"]"), "the policy changed its form");
        std::fs::write(policies.join("default.toml"), text).unwrap();
        settings.policy_dir = policies;
    })
    .await
}

#[tokio::test]
async fn data_subject_requests_store_their_answer_with_their_effect() {
    for backend in backends() {
        let v = approval_vault(backend).await;
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let notifier = v.token("notifier").await;
        let customer = v.create(&helpdesk, &ada()).await;

        // The customer files without a token, and enters the code.
        let filing = json!({"kind": "access", "regulation": "gdpr",
                            "identifier": {"field": "email", "value": "ada@example.com"}});
        let (s, filed) =
            once_with_its_answer(&v, "", "/v1/requests", &filing, "request.received").await;
        assert_eq!(s, StatusCode::ACCEPTED, "{filed}");
        let id = filed["id"].as_str().unwrap().to_owned();
        let token = filed["request_token"].as_str().unwrap().to_owned();
        let (_, out) = v.get(&notifier, "/v1/outbox").await;
        let codes: Vec<&Value> = out["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "verification_code" && m["request_id"] == id.as_str())
            .collect();
        assert_eq!(codes.len(), 1, "one code: {out}");
        let code = codes[0]["body"]["code"].as_str().unwrap().to_owned();
        let message = codes[0]["id"].as_str().unwrap().to_owned();
        let (s, verified) = once_with_its_answer(
            &v,
            &token,
            &format!("/v1/requests/{id}/verify"),
            &json!({"code": code}),
            "request.verified",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(verified["status"], "awaiting_approval", "{verified}");

        // The notifier acknowledges the code's delivery.
        let (s, _) = once_with_its_answer(
            &v,
            &notifier,
            &format!("/v1/outbox/{message}/ack"),
            &json!({}),
            "outbox.acknowledged",
        )
        .await;
        assert_eq!(s, StatusCode::OK);

        // The DPO approves: the request is carried out.
        let (s, approved) = once_with_its_answer(
            &v,
            &dpo,
            &format!("/v1/requests/{id}/approve"),
            &json!({}),
            "request.approved",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(approved["status"], "completed", "{approved}");

        // Staff file for the customer, verify the requester, file the same
        // again (merged), extend and deny.
        let by_staff = json!({"kind": "access", "regulation": "gdpr", "customer_id": customer});
        let (s, filed) =
            once_with_its_answer(&v, &dpo, "/v1/requests", &by_staff, "request.received").await;
        assert_eq!(s, StatusCode::ACCEPTED, "{filed}");
        let id = filed["id"].as_str().unwrap().to_owned();
        let (s, verified) = once_with_its_answer(
            &v,
            &dpo,
            &format!("/v1/requests/{id}/verify"),
            &json!({"method": "id_document_checked"}),
            "request.verified",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(verified["status"], "awaiting_approval", "{verified}");
        let mut again = by_staff.clone();
        again["verified_by"] = json!("id_document_checked");
        let (s, merged) =
            once_with_its_answer(&v, &dpo, "/v1/requests", &again, "request.merged").await;
        assert_eq!(s, StatusCode::ACCEPTED, "{merged}");
        assert_eq!(merged["id"], id.as_str(), "{merged}");
        let (s, extended) = once_with_its_answer(
            &v,
            &dpo,
            &format!("/v1/requests/{id}/extend"),
            &json!({"reason": "many systems to search"}),
            "request.extended",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(extended["extended"], true, "{extended}");
        let (s, denied) = once_with_its_answer(
            &v,
            &dpo,
            &format!("/v1/requests/{id}/deny"),
            &json!({"reason": "manifestly_unfounded"}),
            "request.denied",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(denied["status"], "denied", "{denied}");
    }
}

#[tokio::test]
async fn key_operations_store_their_answer_with_their_effect() {
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |s, _| s.rewrap_background = false).await;
        let admin = v.token("admin").await;
        let (s, rotated) =
            once_with_its_answer(&v, &admin, "/v1/keys/rotate", &json!({}), "keys.rotate").await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(rotated["version"], 2, "{rotated}");
        let (s, _) = once_with_its_answer(
            &v,
            &admin,
            "/v1/keys/signing/rotate",
            &json!({}),
            "keys.rotate_signing",
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = once_with_its_answer(
            &v,
            &admin,
            "/v1/keys/token-signing/rotate",
            &json!({}),
            "keys.rotate_token_signing",
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);

        // Version 1 wraps nothing once rewrapped, and may be retired a
        // while after the rotation.
        pii_vault::keys::run_pass(
            &v.state.keys,
            v.state.store.as_ref(),
            &pii_vault::keys::Committer::Sequencer(&v.state.sequencer),
            v.state.clock.as_ref(),
            10,
            std::time::Duration::ZERO,
            &pii_vault::actor::Actor::system(),
            &|| true,
            &mut |_| {},
        )
        .await
        .unwrap();
        v.clock.advance_days(1);
        let admin = v.token("admin").await;
        let (s, retired) =
            once_with_its_answer(&v, &admin, "/v1/keys/1/retire", &json!({}), "keys.retire").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(retired["version"], 1, "{retired}");
    }
}

/// After an approval's unit is stored, carrying the request out may still
/// fail: the caller gets the error, but the key keeps the answer stored
/// with the approval, so a retry does not approve again; it replays.
#[tokio::test]
async fn a_failure_after_the_effect_keeps_the_answer_stored_with_it() {
    for backend in backends() {
        let v = approval_vault(backend).await;
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let customer = v.create(&helpdesk, &ada()).await;
        let filing = json!({"kind": "access", "regulation": "gdpr", "customer_id": customer,
                            "verified_by": "id_document_checked"});
        let (s, filed) = v.post(&dpo, "/v1/requests", &filing).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{filed}");
        let id = filed["id"].as_str().unwrap();
        // Completing the request (the step after the approval) fails.
        let fail_completion = match v.backend {
            Backend::Sqlite => {
                "CREATE TRIGGER complete_fail BEFORE UPDATE OF status ON requests \
                 WHEN NEW.status = 'completed' \
                 BEGIN SELECT RAISE(ABORT, 'simulated'); END;"
            }
            Backend::Postgres => {
                "CREATE FUNCTION complete_fail() RETURNS trigger AS $$ BEGIN \
                 RAISE EXCEPTION 'simulated'; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER complete_fail BEFORE UPDATE ON requests FOR EACH ROW \
                 WHEN (NEW.status = 'completed') EXECUTE FUNCTION complete_fail();"
            }
        };
        v.exec(fail_completion).await;
        let path = format!("/v1/requests/{id}/approve");
        let (s, b, _) = post_keyed(&v, &dpo, &path, "approve-1", &json!({})).await;
        assert!(s.is_server_error(), "{s} {b}");
        assert_eq!(recorded(&v, "request.approved").await, 1);
        match v.backend {
            Backend::Sqlite => v.exec("DROP TRIGGER complete_fail").await,
            Backend::Postgres => v.exec("DROP TRIGGER complete_fail ON requests").await,
        }
        let (s, b, h) = post_keyed(&v, &dpo, &path, "approve-1", &json!({})).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(h["idempotent-replayed"], "true");
        // The request as the approval left it: approved, not yet carried out.
        assert_eq!(b["status"], "verified", "{b}");
        assert!(b["approved_at"].is_string(), "{b}");
        assert_eq!(recorded(&v, "request.approved").await, 1, "approved once");
    }
}
