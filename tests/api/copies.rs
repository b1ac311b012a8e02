//! The SQLite store's in-memory copies of records (`store::record_cache`):
//! an answer is never made from a copy older than the database when its
//! audit event was committed, whoever changed the record (this server, a
//! command, another process, a statement typed by hand), and a change the
//! server commits drops its copy.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;
use pii_vault::audit::CommitError;
use pii_vault::store::{Mutation, RECORD_CHANGED, StoreError, Unit};

/// `id` as a literal in `backend`'s SQL.
fn literal(backend: Backend, id: Uuid) -> String {
    match backend {
        Backend::Sqlite => format!("X'{}'", id.simple()),
        Backend::Postgres => format!("'{id}'"),
    }
}

/// Restricts the customer (or lifts it) from outside the server.
async fn set_restricted(v: &TestVault, id: Uuid, on: bool) {
    let value = match (v.backend, on) {
        (Backend::Sqlite, on) => i32::from(on).to_string(),
        (Backend::Postgres, on) => on.to_string(),
    };
    let sql = format!(
        "UPDATE customers SET restricted = {value} WHERE id = {}",
        literal(v.backend, id)
    );
    v.exec(&sql).await;
}

/// A unit that only checks `check` (the check a read from a copy carries).
fn checking(check: Mutation) -> Unit {
    Unit {
        mutations: vec![check],
        events: Vec::new(),
    }
}

/// Each kind of change to a record's rows, made from outside the server,
/// moves its stamp: a unit checking the stamp of a copy read before is
/// refused (through the sequencer's direct writer and through the store's
/// sqlx writer alike) and nothing of it is stored.
#[tokio::test]
async fn a_copy_is_refused_after_any_change_to_the_records_rows_made_outside_the_server() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let mut body = ada();
        body["consents"] = json!([{"purpose": "marketing", "notice_version": "2026-01",
            "notice_text_sha256": NOTICE_SHA, "language": "it", "jurisdiction": "EU"}]);
        let id: Uuid = v.create(&helpdesk, &body).await.parse().unwrap();
        let store = &v.state.store;
        if v.backend == Backend::Postgres {
            // PostgreSQL keeps no copies: every read asks the database.
            store.customer_record(id).await.unwrap();
            assert!(store.record_copy(id).is_none());
            return;
        }
        let c = literal(v.backend, id);
        let changes = [
            format!("UPDATE customers SET restricted = 1 WHERE id = {c}"),
            format!("UPDATE field_values SET channel = 'phone' WHERE customer_id = {c}"),
            format!(
                "UPDATE value_purposes SET expires_at = expires_at - 1 WHERE customer_id = {c}"
            ),
            format!("INSERT INTO objections (customer_id, purpose, at) VALUES ({c}, 'marketing', 1)"),
            format!("DELETE FROM objections WHERE customer_id = {c}"),
            format!("DELETE FROM consent_events WHERE customer_id = {c}"),
            format!("DELETE FROM field_values WHERE customer_id = {c} AND field = 'phone'"),
        ];
        for (n, change) in changes.iter().enumerate() {
            store.customer_record(id).await.unwrap();
            let (_, stamp) = store.record_copy(id).expect("a copy after a read");
            // Unchanged: the check passes on either writer.
            v.state
                .sequencer
                .commit(checking(stamp.check()))
                .await
                .unwrap();
            let at = v.clock.now_micros();
            let outcome = store.commit_batch(&[checking(stamp.check())], at).await;
            assert!(outcome.unwrap()[0].is_ok(), "change {n}");

            v.exec(change).await;
            let refused = v.state.sequencer.commit(checking(stamp.check())).await;
            assert!(
                matches!(&refused, Err(CommitError::Conflict(code)) if code == RECORD_CHANGED),
                "{change}: {refused:?}"
            );
            let outcome = store.commit_batch(&[checking(stamp.check())], at).await;
            assert!(
                matches!(&outcome.unwrap()[0], Err(StoreError::Conflict(code)) if code == RECORD_CHANGED),
                "{change}"
            );
        }
        // A customer that is gone: refused too.
        store.customer_record(id).await.unwrap();
        let (_, stamp) = store.record_copy(id).unwrap();
        v.exec(&format!("DELETE FROM customers WHERE id = {c}")).await;
        let refused = v.state.sequencer.commit(checking(stamp.check())).await;
        assert!(matches!(refused, Err(CommitError::Conflict(_))), "{refused:?}");
    })
    .await;
}

use pii_vault::clock::Clock;

/// What a user sees: a read made right after another process changed the
/// customer answers the change, although the server read (and kept a copy
/// of) the record just before.
#[tokio::test]
async fn a_read_right_after_another_process_changed_the_customer_answers_the_change() {
    on_each_backend(|v| async move {
        let helpdesk = v.token("helpdesk").await;
        let id = v.create(&helpdesk, &ada()).await;
        let cid: Uuid = id.parse().unwrap();
        let profile = format!("/v1/customers/{id}?purpose=support");
        let phone = format!("/v1/customers/{id}/fields/phone?purpose=support.callback");
        let (s, p) = v.get(&helpdesk, &profile).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(p["fields"]["email"], "ada@example.com", "{p}");
        let (s, _) = v.get(&helpdesk, &phone).await;
        assert_eq!(s, StatusCode::OK);
        let search = "/v1/customers/search?purpose=support";
        let by_email = json!({"field": "email", "value": "ada@example.com"});
        let (s, b) = v.post(&helpdesk, search, &by_email).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["customers"][0]["id"], id.as_str(), "{b}");

        // Another process restricts processing: the next read withholds.
        set_restricted(&v, cid, true).await;
        let (s, p) = v.get(&helpdesk, &profile).await;
        assert_eq!(s, StatusCode::OK);
        assert!(p["fields"].as_object().unwrap().is_empty(), "{p}");
        let (s, b) = v.get(&helpdesk, &phone).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("restricted"))
        );
        // The audit trail records what was answered: nothing disclosed.
        let last = v.audit().await.pop().unwrap();
        assert_eq!(last.draft.decision, "withheld", "{last:?}");
        let (s, b) = v.post(&helpdesk, search, &by_email).await;
        assert_eq!((s, &b["customers"]), (StatusCode::OK, &json!([])), "{b}");

        set_restricted(&v, cid, false).await;
        let (s, p) = v.get(&helpdesk, &profile).await;
        assert_eq!(
            (s, &p["fields"]["email"]),
            (StatusCode::OK, &json!("ada@example.com"))
        );

        // `pii-vault sweep` in its own process, 91 days on: the callback
        // number's only purpose has run out and the value is deleted.
        let mut c = vault_cmd(v.dir.path(), &v.database_url, "warn");
        let later = pii_vault::clock::rfc3339(v.clock.now_micros() + 91 * 86_400_000_000);
        c.args(["sweep", "--as-of", &later]);
        let out = output(c).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (s, b) = v.get(&helpdesk, &phone).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("field_not_found")),
            "{b}"
        );
    })
    .await;
}

/// A change the server commits drops its copy of the record at once (an
/// erased customer's ciphertext and wrapped key do not stay in memory).
#[tokio::test]
async fn the_server_drops_its_copy_of_a_record_it_changes_or_erases() {
    on_each_backend(|v| async move {
        if v.backend == Backend::Postgres {
            return;
        }
        let helpdesk = v.token("helpdesk").await;
        let dpo = v.token("dpo").await;
        let id = v.create(&helpdesk, &ada()).await;
        let cid: Uuid = id.parse().unwrap();
        let profile = format!("/v1/customers/{id}?purpose=support");
        let store = &v.state.store;

        v.get(&helpdesk, &profile).await;
        assert!(store.record_copy(cid).is_some(), "a read keeps a copy");
        let (s, b) = v
            .patch(
                &helpdesk,
                &format!("/v1/customers/{id}?purpose=support"),
                &json!({"fields": {"email": {"value": "ada@example.org"}}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert!(store.record_copy(cid).is_none(), "an update drops the copy");
        let (_, p) = v.get(&helpdesk, &profile).await;
        assert_eq!(p["fields"]["email"], "ada@example.org", "{p}");

        assert!(store.record_copy(cid).is_some());
        let (_, receipt) = crate::erasure::delete(&v, &dpo, &format!("/v1/customers/{id}")).await;
        assert!(
            receipt["status"].as_str().unwrap().contains("erased"),
            "{receipt}"
        );
        assert!(
            store.record_copy(cid).is_none(),
            "an erasure drops the copy"
        );
        v.get(&helpdesk, &profile).await;
        assert!(
            store.record_copy(cid).is_none(),
            "an erased record is not kept"
        );
    })
    .await;
}
