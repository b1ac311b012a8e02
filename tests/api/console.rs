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

// ---------------------------------------------------------------------------
// The console's pages over HTTP
// ---------------------------------------------------------------------------

use crate::pages::{CSP, PageClient};

/// Signs `name` in on the console's form; answers the browser.
async fn signed_in(v: &TestVault, name: &str) -> PageClient {
    let mut c = PageClient::new(&v.base);
    let a = c
        .submit(
            "/console/",
            "/console/",
            &[("username", name), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/console/");
    assert!(c.cookie("pv_console").is_some(), "a session cookie");
    c
}

/// An erasure filed and verified by the helpdesk through the API, waiting
/// for the DPO.
async fn awaiting(v: &TestVault) -> String {
    let helpdesk = v.token("helpdesk").await;
    let customer = v.create(&helpdesk, &ada()).await;
    let (st, b) = v
        .post(
            &helpdesk,
            "/v1/requests",
            &json!({"kind": "erasure", "regulation": "gdpr", "customer_id": customer,
                    "verified_by": "id_document_checked"}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// The request as the API shows it to the privacy team.
async fn api_view(v: &TestVault, id: &str) -> serde_json::Value {
    let dpo = v.token("dpo").await;
    let (st, b) = v.get(&dpo, &format!("/v1/requests/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b
}

/// The actor of the last `action` event about request `id`.
async fn actor_of(v: &TestVault, action: &str, id: &str) -> String {
    v.audit()
        .await
        .into_iter()
        .rfind(|e| {
            e.draft.action == action
                && e.draft.reasons.get("request").map(String::as_str) == Some(id)
        })
        .unwrap_or_else(|| panic!("a {action} event for {id}"))
        .draft
        .actor
}

/// The password grant's access token for `name`.
async fn password_token(v: &TestVault, name: &str) -> String {
    let resp = v
        .http
        .post(v.url("/v1/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("grant_type", "password"),
                ("username", name),
                ("password", PASSWORD),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (st, b) = split(resp).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_sign_in_form_follows_the_contract_and_the_session_cookie_has_its_flags() {
    let v = TestVault::start(Backend::Sqlite).await;
    user(&v, "dana", "dpo").await;
    let mut c = PageClient::new(&v.base);
    let form = c.get("/console/").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body
            .contains("<input type=\"text\" id=\"username\" name=\"username\"")
    );
    assert!(
        form.body
            .contains("<input type=\"password\" id=\"password\" name=\"password\"")
    );
    assert_eq!(form.header("content-security-policy"), CSP);
    assert!(
        !form
            .header("content-security-policy")
            .contains("unsafe-inline")
    );

    // A wrong password: the form again with the error, no session.
    let wrong = c
        .submit(
            "/console/",
            "/console/",
            &[("username", "dana"), ("password", "wrong")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("role=\"alert\""));
    assert!(c.cookie("pv_console").is_none());

    let a = c
        .submit(
            "/console/",
            "/console/",
            &[("username", "dana"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let set = a.set_cookie("pv_console").expect("session cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/console"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let home = c.get("/console/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("action=\"/console/sign-out\""));
    assert_eq!(home.header("content-security-policy"), CSP);

    // Behind TLS the cookie is Secure.
    let v = TestVault::start_adjusted(Backend::Sqlite, |s, _| {
        s.public_url = Some("https://privacy.example.com".into());
    })
    .await;
    user(&v, "dana", "dpo").await;
    let mut c = PageClient::new(&v.base);
    let a = c
        .submit(
            "/console/",
            "/console/",
            &[("username", "dana"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let set = a.set_cookie("pv_console").expect("session cookie");
    assert!(set.contains("Secure"), "{set}");
}

#[tokio::test]
async fn a_forged_console_post_is_refused_and_changes_nothing() {
    on_each_backend(|v| async move {
        user(&v, "dana", "dpo").await;
        let id = awaiting(&v).await;
        let mut c = signed_in(&v, "dana").await;
        let path = format!("/console/requests/{id}");
        // The session cookie but no token, then a made-up token, then the
        // sign-in form's token (bound to the browser, not the session).
        let none = c.post(&path, &[("action", "approve")]).await;
        assert_eq!(none.status, StatusCode::FORBIDDEN);
        let zeros = "00".repeat(32);
        let made_up = c
            .post(&path, &[("csrf", &zeros), ("action", "approve")])
            .await;
        assert_eq!(made_up.status, StatusCode::FORBIDDEN);
        // The refusal is the console's page, leading back to the console.
        assert!(
            made_up.body.contains("data-back=\"console\""),
            "{}",
            made_up.body
        );
        let mut stranger = PageClient::new(&v.base);
        let theirs = stranger.get("/console/").await.csrf();
        let stolen = c
            .post(&path, &[("csrf", &theirs), ("action", "approve")])
            .await;
        assert_eq!(stolen.status, StatusCode::FORBIDDEN);
        assert_eq!(api_view(&v, &id).await["status"], "awaiting_approval");
        assert!(
            v.audit()
                .await
                .iter()
                .all(|e| e.draft.action != "request.approved"),
            "no approval"
        );
    })
    .await;
}

#[tokio::test]
async fn approve_deny_and_extend_on_the_request_page_act_as_the_api_does() {
    on_each_backend(|v| async move {
        user(&v, "dana", "dpo").await;
        let mut c = signed_in(&v, "dana").await;
        let bearer = password_token(&v, "dana").await;

        // The page's forms: fixed buttons, each with a reason where needed.
        let approve_id = awaiting(&v).await;
        let path = format!("/console/requests/{approve_id}");
        let page = c.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for action in ["approve", "deny", "extend"] {
            assert!(
                page.body
                    .contains(&format!("name=\"action\" value=\"{action}\"")),
                "{action}"
            );
        }
        assert!(page.body.contains("name=\"reason\""));
        let csrf = page.csrf();

        // Approve: carried out like the API's approval.
        let a = c
            .post(&path, &[("csrf", &csrf), ("action", "approve")])
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert_eq!(a.location(), path);
        let api_id = awaiting(&v).await;
        let (st, b) = v
            .post(
                &bearer,
                &format!("/v1/requests/{api_id}/approve"),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (page_view, api) = (api_view(&v, &approve_id).await, api_view(&v, &api_id).await);
        assert_eq!(page_view["status"], api["status"]);
        assert_eq!(page_view["result"]["status"], api["result"]["status"]);
        assert_eq!(
            page_view["result"]["retained"][0]["field"],
            api["result"]["retained"][0]["field"]
        );
        assert_eq!(
            actor_of(&v, "request.approved", &approve_id).await,
            actor_of(&v, "request.approved", &api_id).await
        );
        let shown = c.get(&path).await;
        assert!(shown.body.contains("data-step=\"approved\""));

        // Deny without a reason: refused, nothing changes; with one: denied.
        let deny_id = awaiting(&v).await;
        let path = format!("/console/requests/{deny_id}");
        let none = c
            .post(
                &path,
                &[("csrf", &csrf), ("action", "deny"), ("reason", "")],
            )
            .await;
        assert_eq!(none.status, StatusCode::BAD_REQUEST);
        assert_eq!(api_view(&v, &deny_id).await["status"], "awaiting_approval");
        let d = c
            .post(
                &path,
                &[
                    ("csrf", &csrf),
                    ("action", "deny"),
                    ("reason", "excessive"),
                    ("note", ""),
                ],
            )
            .await;
        assert_eq!(d.status, StatusCode::SEE_OTHER, "{}", d.body);
        let denied = api_view(&v, &deny_id).await;
        assert_eq!(denied["status"], "denied");
        assert_eq!(denied["denial"]["reason"], "excessive", "{denied}");
        let api_id = awaiting(&v).await;
        let (st, b) = v
            .post(
                &bearer,
                &format!("/v1/requests/{api_id}/deny"),
                &json!({"reason": "excessive"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(
            actor_of(&v, "request.denied", &deny_id).await,
            actor_of(&v, "request.denied", &api_id).await
        );

        // Extend with a reason: the deadline moves once.
        let extend_id = awaiting(&v).await;
        let before = api_view(&v, &extend_id).await;
        let path = format!("/console/requests/{extend_id}");
        let e = c
            .post(
                &path,
                &[
                    ("csrf", &csrf),
                    ("action", "extend"),
                    ("reason", "complex request"),
                ],
            )
            .await;
        assert_eq!(e.status, StatusCode::SEE_OTHER, "{}", e.body);
        let after = api_view(&v, &extend_id).await;
        assert_eq!(after["extended"], true, "{after}");
        assert_ne!(after["due_at"], before["due_at"]);
        let api_id = awaiting(&v).await;
        let (st, b) = v
            .post(
                &bearer,
                &format!("/v1/requests/{api_id}/extend"),
                &json!({"reason": "complex request"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        // The same new deadline, counted from each request's receipt.
        let span = |r: &serde_json::Value| {
            let at = |k: &str| pii_vault::clock::parse_rfc3339(r[k].as_str().unwrap()).unwrap();
            at("due_at") - at("received_at")
        };
        assert_eq!(span(&after), span(&b), "the same extension");
        assert_eq!(
            actor_of(&v, "request.extended", &extend_id).await,
            actor_of(&v, "request.extended", &api_id).await
        );
    })
    .await;
}

#[tokio::test]
async fn a_role_without_requests_process_is_refused_the_queue_and_an_auditor_verifies() {
    on_each_backend(|v| async move {
        user(&v, "hal", "helpdesk").await;
        let aude = user(&v, "aude", "auditor").await;
        let id = awaiting(&v).await;
        let mut helpdesk = signed_in(&v, "hal").await;
        let q = helpdesk.get("/console/requests").await;
        assert_eq!(q.status, StatusCode::FORBIDDEN);
        assert!(!q.body.contains(&id));
        assert_eq!(q.header("content-security-policy"), CSP);
        let r = helpdesk.get(&format!("/console/requests/{id}")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        let mut auditor = signed_in(&v, "aude").await;
        let page = auditor.get("/console/audit/verify").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("data-verify=\"ok\""), "{}", page.body);
        assert_eq!(page.header("content-security-policy"), CSP);
        // Verifying is audited with the auditor as the actor.
        assert!(
            v.audit()
                .await
                .iter()
                .any(|e| e.draft.action == "audit.verify" && e.draft.actor == aude.to_string()),
            "the verification is in the trail as aude's"
        );
    })
    .await;
}
