//! The staff console's sessions and sign-in (`/console/`): the session
//! service on both backends (sign-in checks and throttling shared with the
//! password grant, idle and absolute expiry by the vault's clock, sign-out
//! and disabling a user end the session server-side, only a hash of the
//! id is stored, audit events).

use pii_vault::auth::session::{self, Refused};
use pii_vault::clock::Clock;
use pii_vault::store::{Mutation, Unit};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::helpers::*;

pub const PASSWORD: &str = "correct horse battery";

/// A user `name` with `role` and [`PASSWORD`].
pub async fn user(v: &TestVault, name: &str, role: &str) -> Uuid {
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

/// Whether the session id `id` still signs its user in.
async fn live(v: &TestVault, id: &str) -> bool {
    session::lookup(&v.state, id, "rid-test", None)
        .await
        .expect("lookup runs")
        .is_some()
}

/// Whether the database holds the session id `id` (by its hash).
async fn stored(v: &TestVault, id: &str) -> bool {
    let hash = pii_vault::crypto::sha256_hex(id);
    v.state
        .store
        .console_session(&hash)
        .await
        .unwrap()
        .is_some()
}

/// The session `id` is over server-side: it signs nobody in and the
/// database no longer holds it.
async fn assert_session_gone(v: &TestVault, id: &str) {
    assert!(!live(v, id).await, "the session still signs in");
    assert!(!stored(v, id).await, "the session is still stored");
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
        assert!(!live(&v, &other).await);
        // Audited with the user as the actor.
        assert!(in_trail(&v, "console.sign_in", "allowed", id).await);
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
        assert!(live(&v, &s.id).await);
        v.clock.advance_secs(14 * 60);
        assert!(
            live(&v, &s.id).await,
            "the last use counts, not the sign-in"
        );
        v.clock.advance_secs(15 * 60);
        assert_session_gone(&v, &s.id).await;

        // Absolute: busy all along, it still ends 8 hours after sign-in.
        let s = sign_in(&v, "dana", PASSWORD).await.unwrap();
        for _ in 0..(8 * 60 / 10 - 1) {
            v.clock.advance_secs(10 * 60);
            assert!(live(&v, &s.id).await);
        }
        v.clock.advance_secs(10 * 60);
        assert_session_gone(&v, &s.id).await;
    })
    .await;
}

#[tokio::test]
async fn signing_out_or_disabling_the_user_ends_the_session_server_side() {
    on_each_backend(|v| async move {
        let id = user(&v, "dana", "dpo").await;
        let s = sign_in(&v, "dana", PASSWORD).await.unwrap();
        session::sign_out(&v.state, &s.id, &s.actor).await.unwrap();
        assert_session_gone(&v, &s.id).await;
        assert!(in_trail(&v, "console.sign_out", "allowed", id).await);

        let s = sign_in(&v, "dana", PASSWORD).await.unwrap();
        let unit = Unit {
            mutations: vec![Mutation::SetUserDisabled { id, disabled: true }],
            events: vec![],
        };
        v.state.sequencer.commit(unit).await.unwrap();
        assert!(!stored(&v, &s.id).await, "deleted with the change");
        assert_session_gone(&v, &s.id).await;
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

use crate::pages::{Answer, CSP, PageClient};

/// Submits the console's sign-in form (taken from `/console/`) as `c`.
async fn sign_in_form(c: &mut PageClient, name: &str, password: &str) -> Answer {
    c.submit(
        "/console/",
        "/console/",
        &[("username", name), ("password", password)],
    )
    .await
}

/// Signs `name` in on the console's form; answers the browser.
async fn signed_in(v: &TestVault, name: &str) -> PageClient {
    let mut c = PageClient::new(&v.base);
    let a = sign_in_form(&mut c, name, PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/console/");
    assert!(c.cookie("pv_console").is_some(), "a session cookie");
    c
}

/// An erasure filed and verified by the helpdesk through the API, waiting
/// for the DPO.
pub async fn awaiting(v: &TestVault) -> String {
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

/// The API's 200 answer to `GET path` with `token`.
async fn api_ok(v: &TestVault, token: &str, path: &str) -> serde_json::Value {
    let (st, b) = v.get(token, path).await;
    assert_eq!(st, StatusCode::OK, "{path}: {b}");
    b
}

/// The request as the API shows it to the privacy team.
async fn api_view(v: &TestVault, id: &str) -> serde_json::Value {
    let dpo = v.token("dpo").await;
    api_ok(v, &dpo, &format!("/v1/requests/{id}")).await
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
    let wrong = sign_in_form(&mut c, "dana", "wrong").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("role=\"alert\""));
    assert!(c.cookie("pv_console").is_none());

    let a = sign_in_form(&mut c, "dana", PASSWORD).await;
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
    let a = sign_in_form(&mut c, "dana", PASSWORD).await;
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
            in_trail(&v, "audit.verify", "allowed", aude).await,
            "the verification is in the trail as aude's"
        );
    })
    .await;
}

/// Whether the trail holds an `action` event decided `decision` with
/// `user` as the actor.
async fn in_trail(v: &TestVault, action: &str, decision: &str, user: Uuid) -> bool {
    let user = user.to_string();
    v.audit()
        .await
        .iter()
        .any(|e| e.draft.action == action && e.draft.decision == decision && e.draft.actor == user)
}

/// The last `action` event with `user` as the actor.
async fn last_by(v: &TestVault, action: &str, user: Uuid) -> pii_vault::audit::StoredEvent {
    let user = user.to_string();
    v.audit()
        .await
        .into_iter()
        .rfind(|e| e.draft.action == action && e.draft.actor == user)
        .unwrap_or_else(|| panic!("a {action} event by {user}"))
}

/// A page's text as the browser shows it (the template escapes `&`, `/`, …).
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The links of `html`, unescaped.
fn hrefs(html: &str) -> impl Iterator<Item = String> + '_ {
    html.split("href=\"")
        .skip(1)
        .map(|rest| unescape(rest.split('"').next().unwrap_or_default()))
}

/// The first link of `html` starting with `prefix`.
fn link(html: &str, prefix: &str) -> Option<String> {
    hrefs(html).find(|href| href.starts_with(prefix))
}

/// The link to the next page of a trail or access log.
fn next_page(html: &str) -> Option<String> {
    hrefs(html).find(|href| href.contains("after_seq="))
}

/// The `data-seq` of each row of a trail or access-log page, in order.
fn seqs(html: &str) -> Vec<i64> {
    html.split("data-seq=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().expect("a seq"))
        .collect()
}

/// The `seq` of each item of the API answer's `key` list.
fn api_seqs(b: &serde_json::Value, key: &str) -> Vec<i64> {
    b[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {b}"))
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

/// The texts of the `<td>` cells in the row marked `marker`.
fn cells(html: &str, marker: &str) -> Vec<String> {
    let at = html.find(marker).unwrap_or_else(|| panic!("{marker}"));
    let row = &html[at..at + html[at..].find("</tr>").unwrap()];
    row.split("<td>")
        .skip(1)
        .map(|c| c.split("</td>").next().unwrap().to_owned())
        .collect()
}

/// A customer created by the helpdesk through the API, and read once for
/// support; its id.
async fn customer_in_use(v: &TestVault) -> String {
    let helpdesk = v.token("helpdesk").await;
    let id = v.create(&helpdesk, &ada()).await;
    api_ok(v, &helpdesk, &format!("/v1/customers/{id}?purpose=support")).await;
    id
}

#[tokio::test]
async fn the_home_page_after_sign_in_offers_what_the_role_may_do() {
    on_each_backend(|v| async move {
        user(&v, "dana", "dpo").await;
        user(&v, "aude", "auditor").await;
        let mut dpo = signed_in(&v, "dana").await;
        let home = dpo.get("/console/").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        assert!(home.body.contains("data-role=\"dpo\""), "{}", home.body);
        for shown in ["/console/requests", "/console/holds", "/console/metrics"] {
            assert!(link(&home.body, shown).is_some(), "{shown}");
        }
        assert!(link(&home.body, "/console/audit/verify").is_none());
        assert_eq!(home.header("content-security-policy"), CSP);

        let mut auditor = signed_in(&v, "aude").await;
        let home = auditor.get("/console/").await;
        assert!(home.body.contains("data-role=\"auditor\""), "{}", home.body);
        for shown in ["/console/audit", "/console/audit/verify"] {
            assert!(link(&home.body, shown).is_some(), "{shown}");
        }
        assert!(link(&home.body, "/console/holds").is_none());
    })
    .await;
}

#[tokio::test]
async fn holds_are_placed_and_released_through_the_forms_and_only_with_the_token() {
    on_each_backend(|v| async move {
        let dana = user(&v, "dana", "dpo").await;
        let customer = customer_in_use(&v).await;
        let mut c = signed_in(&v, "dana").await;
        let dpo = v.token("dpo").await;
        let api_holds = |path: String| {
            let (v, dpo) = (&v, &dpo);
            async move {
                api_ok(v, dpo, &path).await["holds"]
                    .as_array()
                    .unwrap()
                    .clone()
            }
        };
        let of_customer = format!("/v1/legal-holds?customer_id={customer}");
        let review = pii_vault::clock::rfc3339(v.clock.now_micros() + 365 * 86_400_000_000);
        let form = [
            ("customer_id", customer.as_str()),
            ("fields", "email, phone"),
            ("reason", "case 2026-114"),
            ("basis", "legal_claims"),
            ("review_at", &review[..10]),
        ];

        // Without the session's token: refused, no hold.
        let forged = c.post("/console/holds", &form).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(api_holds(of_customer.clone()).await.is_empty());

        let placed = c.submit("/console/holds", "/console/holds", &form).await;
        assert_eq!(placed.status, StatusCode::SEE_OTHER, "{}", placed.body);
        assert_eq!(
            placed.location(),
            format!("/console/holds?customer_id={customer}")
        );
        let holds = api_holds(of_customer.clone()).await;
        assert_eq!(holds.len(), 1, "{holds:?}");
        let hold = holds[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(holds[0]["fields"], json!(["email", "phone"]));
        assert_eq!(holds[0]["active"], true);
        assert_eq!(holds[0]["created_by"], dana.to_string());
        let page = c.get(&placed.location()).await;
        assert!(page.body.contains(&format!("data-hold-id=\"{hold}\"")));
        assert!(in_trail(&v, "legal_hold.create", "allowed", dana).await);

        // Releasing: the form on the page, and only with its token.
        let release = format!("/console/holds/{hold}/release");
        let forged = c.post(&release, &[]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(api_holds(of_customer.clone()).await[0]["active"], true);
        assert!(
            page.body.contains(&format!("action=\"{release}\"")),
            "a release form"
        );
        let released = c.post(&release, &[("csrf", &page.csrf())]).await;
        assert_eq!(released.status, StatusCode::SEE_OTHER, "{}", released.body);
        assert_eq!(api_holds(of_customer.clone()).await[0]["active"], false);
        assert!(api_holds("/v1/legal-holds".into()).await.is_empty());
        assert!(in_trail(&v, "legal_hold.release", "allowed", dana).await);
    })
    .await;
}

#[tokio::test]
async fn the_metrics_page_shows_the_api_figures_per_kind_for_the_year() {
    on_each_backend(|v| async move {
        let dana = user(&v, "dana", "dpo").await;
        let dpo = v.token("dpo").await;
        // One erasure open, one completed, one denied.
        awaiting(&v).await;
        let done = awaiting(&v).await;
        let (st, b) = v
            .post(&dpo, &format!("/v1/requests/{done}/approve"), &json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let denied = awaiting(&v).await;
        let (st, b) = v
            .post(
                &dpo,
                &format!("/v1/requests/{denied}/deny"),
                &json!({"reason": "excessive"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");

        let mut c = signed_in(&v, "dana").await;
        let page = c.get("/console/metrics").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let api = api_ok(&v, &dpo, "/v1/requests/metrics").await;
        assert!(page.body.contains(&format!("value=\"{}\"", api["year"])));
        let figures = [
            "received",
            "completed",
            "partially_completed",
            "denied",
            "open",
        ];
        let kinds = api["kinds"].as_object().unwrap();
        for (kind, m) in kinds.iter().map(|(k, m)| (k.as_str(), m)) {
            let shown = cells(&page.body, &format!("data-kind=\"{kind}\""));
            let want: Vec<String> = figures.iter().map(|f| m[f].to_string()).collect();
            assert_eq!(shown[..5], want[..], "{kind}");
        }
        // The approved erasure keeps what the policy retains: partially
        // completed.
        let erasure = cells(&page.body, "data-kind=\"erasure\"");
        assert_eq!(erasure[..5], ["3", "0", "1", "1", "1"], "{erasure:?}");
        let total = cells(&page.body, "data-kind=\"total\"");
        assert_eq!(total[0], api["total"]["received"].to_string());
        assert!(in_trail(&v, "request.metrics", "allowed", dana).await);
    })
    .await;
}

#[tokio::test]
async fn the_trail_page_filters_and_pages_as_the_api_does() {
    on_each_backend(|v| async move {
        let aude = user(&v, "aude", "auditor").await;
        for _ in 0..3 {
            customer_in_use(&v).await;
        }
        let bearer = v.token("auditor").await;
        let mut c = signed_in(&v, "aude").await;

        // Page by page, the same events as GET /v1/audit with the same filters.
        let filters = "action=customer.create&decision=allowed&limit=2";
        let mut page_path = format!("/console/audit?{filters}");
        let mut api_path = format!("/v1/audit?{filters}");
        let mut seen = Vec::new();
        loop {
            let page = c.get(&page_path).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            assert!(
                page.body.contains("value=\"customer.create\""),
                "filters kept"
            );
            let api = api_ok(&v, &bearer, &api_path).await;
            assert_eq!(seqs(&page.body), api_seqs(&api, "events"));
            seen.extend(seqs(&page.body));
            match (next_page(&page.body), api["next_after_seq"].as_i64()) {
                (Some(next), Some(n)) => {
                    assert!(next.contains(&format!("after_seq={n}")), "{next}");
                    assert!(next.contains("action=customer.create"), "{next}");
                    page_path = next;
                    api_path = format!("/v1/audit?{filters}&after_seq={n}");
                }
                (None, None) => break,
                other => panic!("the page and the API disagree on the next page: {other:?}"),
            }
        }
        let created: Vec<i64> = v
            .audit()
            .await
            .iter()
            .filter(|e| e.draft.action == "customer.create")
            .map(|e| e.seq)
            .collect();
        assert_eq!(seen, created);
        assert_eq!(seen.len(), 3);

        // Each search is in the trail as aude's, with its filters.
        let query = last_by(&v, "audit.query", aude).await;
        assert_eq!(query.draft.decision, "allowed");
        assert_eq!(query.draft.reasons["filter.action"], "customer.create");

        // A filter the API refuses, the page refuses, and records as aude's.
        let bad = c.get("/console/audit?action=no.such.action").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("data-back=\"console\""), "{}", bad.body);
        let (st, _) = v.get(&bearer, "/v1/audit?action=no.such.action").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        let refused = last_by(&v, "audit.query", aude).await;
        assert_eq!(refused.draft.decision, "invalid");
        assert_eq!(refused.draft.reasons["error"], "invalid_filter");
    })
    .await;
}

#[tokio::test]
async fn a_customers_access_log_page_shows_what_the_api_shows() {
    on_each_backend(|v| async move {
        let dana = user(&v, "dana", "dpo").await;
        let customer = customer_in_use(&v).await;
        let bearer = v.token("auditor").await;
        let mut c = signed_in(&v, "dana").await;
        let empty = c.get("/console/audit/access-log").await;
        assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
        assert!(seqs(&empty.body).is_empty());

        let page = c
            .get(&format!("/console/audit/access-log?customer_id={customer}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let api = api_ok(&v, &bearer, &format!("/v1/customers/{customer}/access-log")).await;
        let shown = seqs(&page.body);
        assert_eq!(shown, api_seqs(&api, "entries"));
        assert!(shown.len() >= 2, "created and read: {shown:?}");
        assert!(page.body.contains("customer.read"));
        assert!(in_trail(&v, "access_log.read", "allowed", dana).await);

        // A customer the vault never knew: not found, as through the API,
        // and recorded once each time.
        let stranger = Uuid::now_v7();
        let unknown = c
            .get(&format!("/console/audit/access-log?customer_id={stranger}"))
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert!(seqs(&unknown.body).is_empty());
        let (st, _) = v
            .get(&bearer, &format!("/v1/customers/{stranger}/access-log"))
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let stranger = stranger.to_string();
        let not_found = v
            .audit()
            .await
            .into_iter()
            .filter(|e| {
                e.draft.action == "access_log.read"
                    && e.draft.customer_id.as_deref() == Some(stranger.as_str())
            })
            .map(|e| e.draft.decision)
            .collect::<Vec<_>>();
        assert_eq!(not_found, ["not_found", "not_found"]);
    })
    .await;
}

/// GETs `path` for `c`; the answer's status, content type, disposition and body.
async fn download(c: &mut PageClient, path: &str) -> (StatusCode, String, String, String) {
    let a = c.get(path).await;
    let (ty, disposition) = (a.header("content-type"), a.header("content-disposition"));
    (a.status, ty, disposition, a.body)
}

#[tokio::test]
async fn the_public_key_and_the_export_download_as_the_api_serves_them() {
    on_each_backend(|v| async move {
        let aude = user(&v, "aude", "auditor").await;
        customer_in_use(&v).await;
        let bearer = v.token("auditor").await;
        let mut c = signed_in(&v, "aude").await;

        let (st, ty, disposition, body) = download(&mut c, "/console/audit/public-key").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(ty, "text/plain; charset=utf-8");
        assert!(disposition.starts_with("attachment;"), "{disposition}");
        let keys = api_ok(&v, &bearer, "/v1/audit/public-key").await;
        assert_eq!(body, keys["key_file"].as_str().unwrap());
        assert!(in_trail(&v, "audit.public_key", "allowed", aude).await);

        let (st, ty, disposition, body) = download(&mut c, "/console/audit/export").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(ty, "application/x-ndjson");
        assert!(
            disposition.starts_with("attachment; filename=\"pii-vault-audit-"),
            "{disposition}"
        );
        let resp = v
            .http
            .get(v.url("/v1/audit/export"))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let api = resp.text().await.unwrap();
        // Each export signs the head when it is made: the page's events are
        // the first of the API's later export, line for line, and both end
        // with a checkpoint.
        let events = |ndjson: &str| -> Vec<String> {
            ndjson
                .lines()
                .filter(|l| l.starts_with("{\"type\":\"event\""))
                .map(str::to_owned)
                .collect()
        };
        let (page_events, api_events) = (events(&body), events(&api));
        assert!(!page_events.is_empty());
        assert_eq!(page_events[..], api_events[..page_events.len()]);
        for export in [&body, &api] {
            let last = export.lines().last().unwrap();
            assert!(last.starts_with("{\"type\":\"checkpoint\""), "{last}");
        }
        assert!(in_trail(&v, "audit.export", "allowed", aude).await);
    })
    .await;
}

#[tokio::test]
async fn the_sign_out_form_ends_the_session_server_side() {
    on_each_backend(|v| async move {
        let dana = user(&v, "dana", "dpo").await;
        let mut c = signed_in(&v, "dana").await;
        let old = c.cookie("pv_console").unwrap().to_owned();

        // Without the session's token: refused, still signed in.
        let forged = c.post("/console/sign-out", &[]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(live(&v, &old).await);

        let out = c.submit("/console/", "/console/sign-out", &[]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
        assert_eq!(out.location(), "/console/");
        assert!(c.cookie("pv_console").is_none(), "the cookie is removed");
        assert_session_gone(&v, &old).await;
        assert!(in_trail(&v, "console.sign_out", "allowed", dana).await);

        // The old cookie, replayed, signs nobody in.
        let mut replay = PageClient::new(&v.base);
        replay.cookies.push(("pv_console".into(), old));
        let form = replay.get("/console/").await;
        assert_eq!(form.status, StatusCode::OK);
        assert!(form.body.contains("name=\"password\""), "the sign-in form");
        assert!(!form.body.contains("/console/sign-out"));
        let queue = replay.get("/console/requests").await;
        assert_eq!(queue.status, StatusCode::SEE_OTHER);
        assert_eq!(queue.location(), "/console/");
    })
    .await;
}

#[tokio::test]
async fn an_auditor_cannot_act_on_requests_nor_the_privacy_team_read_the_trail() {
    on_each_backend(|v| async move {
        let aude = user(&v, "aude", "auditor").await;
        let dana = user(&v, "dana", "dpo").await;
        let id = awaiting(&v).await;

        // The auditor: the request actions and the holds are refused.
        let mut auditor = signed_in(&v, "aude").await;
        let csrf = auditor.get("/console/").await.csrf();
        let path = format!("/console/requests/{id}");
        for action in ["approve", "extend"] {
            let a = auditor
                .post(
                    &path,
                    &[("csrf", &csrf), ("action", action), ("reason", "complex")],
                )
                .await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{action}: {}", a.body);
            assert!(a.body.contains("data-back=\"console\""));
        }
        assert_eq!(api_view(&v, &id).await["status"], "awaiting_approval");
        assert!(in_trail(&v, "request.approved", "denied", aude).await);
        assert!(!in_trail(&v, "request.approved", "allowed", aude).await);
        let holds = auditor.get("/console/holds").await;
        assert_eq!(holds.status, StatusCode::FORBIDDEN);
        assert!(!holds.body.contains("data-hold-id"));

        // The DPO: neither the trail, nor its verification, nor the downloads.
        let mut dpo = signed_in(&v, "dana").await;
        for page in [
            "/console/audit",
            "/console/audit/verify",
            "/console/audit/export",
            "/console/audit/public-key",
        ] {
            let a = dpo.get(page).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{page}");
            assert!(a.header("content-type").starts_with("text/html"), "{page}");
            assert!(a.header("content-disposition").is_empty(), "{page}");
            assert!(seqs(&a.body).is_empty(), "{page}");
            assert!(!a.body.contains("data-verify"), "{page}");
        }
        for action in [
            "audit.query",
            "audit.verify",
            "audit.export",
            "audit.public_key",
        ] {
            assert!(in_trail(&v, action, "denied", dana).await, "{action}");
        }
    })
    .await;
}

#[tokio::test]
async fn verify_on_a_tampered_trail_shows_the_failure_and_the_first_bad_event() {
    on_each_backend(|v| async move {
        let aude = user(&v, "aude", "auditor").await;
        customer_in_use(&v).await;
        let mut c = signed_in(&v, "aude").await;
        let before = c.get("/console/audit/verify").await;
        assert!(
            before.body.contains("data-verify=\"ok\""),
            "{}",
            before.body
        );

        // An event rewritten in the database behind the vault's back.
        let bad = v
            .audit()
            .await
            .iter()
            .find(|e| e.draft.action == "customer.read")
            .expect("the read")
            .seq;
        v.exec(&format!(
            "UPDATE audit_events SET purpose = 'marketing' WHERE seq = {bad}"
        ))
        .await;

        let page = c.get("/console/audit/verify").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body.contains("data-verify=\"failed\""),
            "{}",
            page.body
        );
        assert!(!page.body.contains("data-verify=\"ok\""));
        assert!(
            page.body.contains(&format!("data-first-bad-seq=\"{bad}\"")),
            "{}",
            page.body
        );
        assert!(
            page.body.contains(&format!("#{bad}")),
            "shown to the reader"
        );
        let bearer = v.token("auditor").await;
        let api = api_ok(&v, &bearer, "/v1/audit/verify").await;
        assert_eq!(api["first_bad_seq"], bad);
        let verified = last_by(&v, "audit.verify", aude).await;
        assert_eq!(verified.draft.reasons["ok"], "false");
        assert_eq!(verified.draft.reasons["first_bad_seq"], bad.to_string());
    })
    .await;
}
