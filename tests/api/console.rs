//! The staff console's sessions and sign-in (`/console/`): the session
//! service on both backends (sign-in checks and throttling shared with the
//! password grant, idle and absolute expiry by the vault's clock, sign-out
//! and disabling a user end the session server-side, only a hash of the
//! id is stored, audit events).

use pii_vault::auth::session::{self, Refused};
use pii_vault::store::{Mutation, Unit};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

/// A user `name` with `role` and [`PASSWORD`].
async fn user(v: &TestVault, name: &str, role: &str) -> Uuid {
    let hash = pii_vault::crypto::hash_password(PASSWORD).unwrap();
    let id = Uuid::now_v7();
    let unit = Unit {
        mutations: vec![Mutation::InsertUser {
            id,
            username: name.into(),
            role: role.into(),
            password_hash: hash,
            at: 0,
        }],
        events: vec![],
    };
    v.state.sequencer.commit(unit).await.unwrap();
    id
}

fn pw(s: &str) -> Zeroizing<String> {
    Zeroizing::new(s.to_owned())
}

async fn sign_in(v: &TestVault, name: &str, password: &str) -> Result<session::Started, Refused> {
    session::sign_in(&v.state, name, pw(password), "rid-test", None)
        .await
        .expect("sign-in runs")
}

#[tokio::test]
async fn a_session_is_the_signed_in_user_and_the_database_holds_only_its_hash() {
    on_each_backend(|v| async move {
        let id = user(&v, "dana", "dpo").await;
        let started = sign_in(&v, "dana", PASSWORD).await.expect("signed in");
        assert_eq!(started.actor.id, id.to_string());
        assert_eq!(started.actor.role, "dpo");
        let actor = session::lookup(&v.state, &started.id, "rid-2", None)
            .await
            .unwrap()
            .expect("live session");
        assert_eq!(
            (actor.id.as_str(), actor.role.as_str()),
            (id.to_string().as_str(), "dpo")
        );
        // The raw id is nowhere in the database; its hash is.
        let stored = v
            .state
            .store
            .console_session(&pii_vault::crypto::sha256_hex(&started.id))
            .await
            .unwrap()
            .expect("stored by hash");
        assert_eq!(stored.user_id, id);
        assert!(
            v.state
                .store
                .console_session(&started.id)
                .await
                .unwrap()
                .is_none()
        );
        // Another id is nobody.
        let other = "A".repeat(43);
        assert!(
            session::lookup(&v.state, &other, "r", None)
                .await
                .unwrap()
                .is_none()
        );
        // Audited with the user as the actor.
        let events = v.audit().await;
        assert!(events.iter().any(|e| e.draft.action == "console.sign_in"
            && e.draft.decision == "allowed"
            && e.draft.actor == id.to_string()));
    })
    .await;
}

#[tokio::test]
async fn a_wrong_password_or_unknown_name_is_refused_and_throttled_like_the_token_endpoint() {
    on_each_backend(|v| async move {
        user(&v, "dana", "dpo").await;
        assert!(matches!(
            sign_in(&v, "dana", "wrong").await,
            Err(Refused::InvalidCredentials)
        ));
        assert!(matches!(
            sign_in(&v, "nobody", "wrong").await,
            Err(Refused::InvalidCredentials)
        ));
        // The test policy allows 3 failures per name; the console and the
        // token endpoint count them together.
        sign_in(&v, "dana", "wrong").await.err().unwrap();
        let r = v
            .http
            .post(v.url("/v1/token"))
            .json(&json!({"grant_type": "password", "username": "dana", "password": "wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            matches!(sign_in(&v, "dana", PASSWORD).await, Err(Refused::Throttled(w)) if w > 0),
            "even the right password waits"
        );
        let r = v
            .http
            .post(v.url("/v1/token"))
            .json(&json!({"grant_type": "password", "username": "dana", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let denied: Vec<_> = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.action == "console.sign_in" && e.draft.decision == "denied")
            .collect();
        assert_eq!(denied.len(), 4, "every refusal is audited");
        assert!(denied.iter().all(|e| e.draft.actor == "anonymous"));
    })
    .await;
}

#[tokio::test]
async fn a_session_ends_after_15_minutes_idle_or_8_hours_in_all() {
    on_each_backend(|v| async move {
        user(&v, "dana", "dpo").await;
        // Idle: used within 15 minutes it lives on; 15 minutes unused, it ends.
        let s = sign_in(&v, "dana", PASSWORD).await.unwrap();
        v.clock.advance_secs(14 * 60);
        assert!(
            session::lookup(&v.state, &s.id, "r", None)
                .await
                .unwrap()
                .is_some()
        );
        v.clock.advance_secs(14 * 60);
        assert!(
            session::lookup(&v.state, &s.id, "r", None)
                .await
                .unwrap()
                .is_some(),
            "the last use counts, not the sign-in"
        );
        v.clock.advance_secs(15 * 60);
        assert!(
            session::lookup(&v.state, &s.id, "r", None)
                .await
                .unwrap()
                .is_none()
        );
        let hash = pii_vault::crypto::sha256_hex(&s.id);
        assert!(
            v.state
                .store
                .console_session(&hash)
                .await
                .unwrap()
                .is_none(),
            "deleted"
        );

        // Absolute: busy all along, it still ends 8 hours after sign-in.
        let s = sign_in(&v, "dana", PASSWORD).await.unwrap();
        for _ in 0..(8 * 60 / 10 - 1) {
            v.clock.advance_secs(10 * 60);
            assert!(
                session::lookup(&v.state, &s.id, "r", None)
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        v.clock.advance_secs(10 * 60);
        assert!(
            session::lookup(&v.state, &s.id, "r", None)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn signing_out_or_disabling_the_user_ends_the_session_server_side() {
    on_each_backend(|v| async move {
        let id = user(&v, "dana", "dpo").await;
        let s = sign_in(&v, "dana", PASSWORD).await.unwrap();
        session::sign_out(&v.state, &s.id, &s.actor).await.unwrap();
        assert!(
            session::lookup(&v.state, &s.id, "r", None)
                .await
                .unwrap()
                .is_none()
        );
        let hash = pii_vault::crypto::sha256_hex(&s.id);
        assert!(
            v.state
                .store
                .console_session(&hash)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            v.audit()
                .await
                .iter()
                .any(|e| e.draft.action == "console.sign_out" && e.draft.actor == id.to_string())
        );

        let s = sign_in(&v, "dana", PASSWORD).await.unwrap();
        let unit = Unit {
            mutations: vec![Mutation::SetUserDisabled { id, disabled: true }],
            events: vec![],
        };
        v.state.sequencer.commit(unit).await.unwrap();
        let hash = pii_vault::crypto::sha256_hex(&s.id);
        assert!(
            v.state
                .store
                .console_session(&hash)
                .await
                .unwrap()
                .is_none(),
            "deleted with the change"
        );
        assert!(
            session::lookup(&v.state, &s.id, "r", None)
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            sign_in(&v, "dana", PASSWORD).await,
            Err(Refused::InvalidCredentials)
        ));
    })
    .await;
}
