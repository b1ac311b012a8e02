//! Key rotation without downtime (issue 5): KEK rotation under traffic,
//! background and command-line rewrap (also killed half way), retiring old
//! versions, root key rotation, signing key rotation, several processes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pii_vault::clock::{Clock, SystemClock};
use pii_vault::crypto::Dek;
use pii_vault::keys::{Actor, Committer};
use pii_vault::store::{Mutation, Unit, ValuePurpose};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const YEAR_MICROS: i64 = 365 * 86_400_000_000;

/// Customers written straight through the sequencer (fast), each with one
/// email readable for `support`, wrapped by the vault's active KEK.
async fn seed(v: &TestVault, n: usize, tag: &str) -> Vec<(String, String)> {
    let keys = &v.state.keys;
    let now = v.clock.now_micros();
    let mut out = Vec::with_capacity(n);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(250) {
        let keyring = keys.keyring();
        let mut mutations = Vec::new();
        for i in chunk {
            let id = Uuid::now_v7();
            let email = format!("{tag}-{i}-{}@example.com", &id.simple().to_string()[24..]);
            let dek = Dek::generate().unwrap();
            let (kek_version, wrapped_dek) = keyring.wrap_dek(id, &dek).unwrap();
            mutations.push(Mutation::InsertCustomer {
                id,
                external_id: None,
                kek_version,
                wrapped_dek,
                at: now,
            });
            mutations.push(Mutation::PutField {
                customer_id: id,
                field: "email".into(),
                ciphertext: dek.encrypt_field(id, "email", email.as_bytes()).unwrap(),
                collected_by: "seed".into(),
                channel: None,
                notice_version: None,
                at: now,
                purposes: vec![ValuePurpose {
                    purpose: "support".into(),
                    collected_at: now,
                    expires_at: now + 10 * YEAR_MICROS,
                }],
                blind_index: Some(keys.index.blind_index("email", &email).to_vec()),
            });
            out.push((id.to_string(), email));
        }
        v.state
            .sequencer
            .commit(Unit {
                mutations,
                events: vec![],
            })
            .await
            .unwrap();
    }
    out
}

/// Reads the customer for `support` and checks its email.
async fn check_read(v: &TestVault, token: &str, id: &str, email: &str) {
    let (status, body) = v
        .get(token, &format!("/v1/customers/{id}?purpose=support"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fields"]["email"], email, "customer {id}");
}

async fn check_all(v: &TestVault, token: &str, customers: &[(String, String)]) {
    for chunk in customers.chunks(32) {
        futures::future::join_all(chunk.iter().map(|(id, e)| check_read(v, token, id, e))).await;
    }
}

async fn status(v: &TestVault, admin: &str) -> Value {
    let (s, body) = v.get(admin, "/v1/keys").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}

/// Waits until GET /v1/keys says every live data key is on the active version.
async fn wait_rewrap_complete(v: &TestVault, admin: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = status(v, admin).await;
        if st["rewrap"]["complete"] == true {
            return st;
        }
        assert!(Instant::now() < deadline, "rewrap did not finish: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn version(st: &Value, v: i64) -> &Value {
    st["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["version"] == v)
        .unwrap_or_else(|| panic!("no version {v} in {st}"))
}

/// Key events carry versions, key ids, fingerprints and counts only (and
/// the address the staff caller called from).
fn assert_no_key_material(events: &[pii_vault::audit::StoredEvent]) {
    for e in events
        .iter()
        .filter(|e| e.draft.action.starts_with("keys."))
    {
        for (k, val) in &e.draft.reasons {
            if k == "client_addr" {
                assert!(val.parse::<std::net::IpAddr>().is_ok(), "{k}={val}");
                continue;
            }
            let ok = val
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ',' || c == '_' || c.is_ascii_lowercase());
            assert!(ok && val.len() <= 64, "{}: {k}={val}", e.draft.action);
        }
    }
}

#[tokio::test]
async fn rotation_and_rewrap_while_clients_read_and_write() {
    on_each_backend(|v| async move {
        let admin = v.token("admin").await;
        let helpdesk = v.token("helpdesk").await;
        let seeded = seed(&v, 1200, "seed").await;
        let stop = AtomicBool::new(false);

        let worker = |w: usize| {
            let (v, helpdesk, seeded, stop) = (&v, &helpdesk, &seeded, &stop);
            async move {
                let mut mine: Vec<(String, String)> = Vec::new();
                let mut reads = 0usize;
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let email = format!("w{w}-{n}@example.com");
                    let id = v
                        .create(
                            helpdesk,
                            &json!({"fields": {"email": {"value": email, "purposes": ["support"]}}}),
                        )
                        .await;
                    mine.push((id, email));
                    let (id, email) = if n.is_multiple_of(2) {
                        &mine[(n * 7919) % mine.len()]
                    } else {
                        &seeded[(n * 104_729 + w) % seeded.len()]
                    };
                    check_read(v, helpdesk, id, email).await;
                    reads += 1;
                }
                (mine, reads)
            }
        };
        let driver = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (s, r) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
            assert_eq!(s, StatusCode::CREATED, "{r}");
            assert_eq!(r["version"], 2);
            assert_eq!(r["previous"], 1);
            let st = wait_rewrap_complete(&v, &admin).await;
            assert_eq!(st["active_version"], 2);
            let (s, r) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
            assert_eq!(s, StatusCode::CREATED, "{r}");
            assert_eq!(r["version"], 3);
            wait_rewrap_complete(&v, &admin).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.store(true, Ordering::SeqCst);
        };
        let (results, ()) =
            futures::future::join(futures::future::join_all((0..6).map(worker)), driver).await;
        let reads: usize = results.iter().map(|(_, r)| r).sum();
        assert!(reads > 0);
        let written: Vec<(String, String)> = results.into_iter().flat_map(|(m, _)| m).collect();

        let st = wait_rewrap_complete(&v, &admin).await;
        assert_eq!(st["active_version"], 3);
        assert_eq!(version(&st, 1)["data_keys"], 0);
        assert_eq!(version(&st, 2)["data_keys"], 0);
        let live = version(&st, 3)["data_keys"].as_i64().unwrap();
        assert_eq!(live as usize, seeded.len() + written.len());
        let rv1 = st["rewrap"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["version"] == 1)
            .unwrap();
        assert!(rv1["total"].as_i64().unwrap() >= 1200, "{rv1}");
        assert_eq!(rv1["done"], rv1["total"]);
        assert_eq!(rv1["remaining"], 0);

        check_all(&v, &helpdesk, &seeded).await;
        check_all(&v, &helpdesk, &written).await;
        // Search (blind index) is unaffected: the index secret never changed.
        let (s, found) = v
            .post(
                &helpdesk,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": seeded[7].1}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{found}");
        assert_eq!(found["customers"][0]["id"], seeded[7].0);

        let events = v.audit().await;
        assert_eq!(
            events
                .iter()
                .filter(|e| e.draft.action == "keys.rotate")
                .count(),
            2
        );
        let rewrapped_from_1: usize = events
            .iter()
            .filter(|e| e.draft.action == "keys.rewrap")
            .filter(|e| e.draft.reasons.get("from_version").map(String::as_str) == Some("1"))
            .map(|e| e.draft.reasons["data_keys"].parse::<usize>().unwrap())
            .sum();
        assert!(rewrapped_from_1 >= 1200, "{rewrapped_from_1}");
        assert_no_key_material(&events);
        let (s, verify) = {
            let auditor = v.token("auditor").await;
            v.get(&auditor, "/v1/audit/verify").await
        };
        if s == StatusCode::OK {
            assert_eq!(verify["ok"], true, "{verify}");
        }
    })
    .await;
}

#[tokio::test]
async fn retire_is_refused_while_in_use_and_allowed_after_rewrap() {
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |s, _| s.rewrap_background = false).await;
        let admin = v.token("admin").await;
        let helpdesk = v.token("helpdesk").await;
        let customers = seed(&v, 30, "r").await;

        // The active version cannot be retired.
        let (s, e) = v.post(&admin, "/v1/keys/1/retire", &json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(e["code"], "key_version_active");

        let (s, r) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        let st = status(&v, &admin).await;
        assert_eq!(st["active_version"], 2);
        assert_eq!(version(&st, 1)["data_keys"], 30);
        assert_eq!(
            version(&st, 1)["signing_keys"],
            2,
            "the checkpoint key and the token key"
        );
        assert_eq!(version(&st, 1)["retirable"], false);
        assert_eq!(st["rewrap"]["complete"], false);
        assert_eq!(st["rewrap"]["pending"], 30);

        // New data keys use version 2 at once.
        let id = v
            .create(
                &helpdesk,
                &json!({"fields": {"email": {"value": "new@example.com", "purposes": ["support"]}}}),
            )
            .await;
        let (s, c) = v.get(&admin, &format!("/v1/keys?customer_id={id}")).await;
        assert_eq!(s, StatusCode::OK, "{c}");
        assert_eq!(c["customer"]["data_key"], "active");
        assert_eq!(c["customer"]["kek_version"], 2);

        let (s, e) = v.post(&admin, "/v1/keys/1/retire", &json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        assert_eq!(e["code"], "key_version_in_use");
        assert!(e["detail"].as_str().unwrap().contains("30 data key"), "{e}");

        // Rewrap (what the background task and `keys rewrap` run).
        let report = pii_vault::keys::run_pass(
            &v.state.keys,
            v.state.store.as_ref(),
            &Committer::Sequencer(&v.state.sequencer),
            v.state.clock.as_ref(),
            7,
            Duration::ZERO,
            &Actor::system(),
            &|| true,
            &mut |_| {},
        )
        .await
        .unwrap();
        assert_eq!(report.rewrapped, 30);
        assert_eq!(report.signing_keys, 2);
        assert_eq!(report.failed, 0);
        let st = status(&v, &admin).await;
        assert_eq!(st["rewrap"]["complete"], true);
        assert_eq!(version(&st, 1)["data_keys"], 0);
        assert_eq!(version(&st, 1)["signing_keys"], 0);
        let rv = &st["rewrap"]["versions"][0];
        assert_eq!(
            (
                rv["version"].as_i64(),
                rv["total"].as_i64(),
                rv["done"].as_i64()
            ),
            (Some(1), Some(30), Some(30))
        );

        // Moments after the rotation other processes may still use version 1.
        let (s, e) = v.post(&admin, "/v1/keys/1/retire", &json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        assert_eq!(e["code"], "key_version_recently_active");
        assert!(version(&st, 1)["retirable_from"].is_string());

        v.clock.advance_days(1);
        let admin = v.token("admin").await;
        let helpdesk = v.token("helpdesk").await;
        let st = status(&v, &admin).await;
        assert_eq!(version(&st, 1)["retirable"], true);
        let (s, r) = v.post(&admin, "/v1/keys/1/retire", &json!({})).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["version"], 1);
        let st = status(&v, &admin).await;
        assert_eq!(version(&st, 1)["retired"], true);
        assert!(version(&st, 1)["retired_at"].is_string());
        assert_eq!(version(&st, 1)["retirable"], false);

        let (s, e) = v.post(&admin, "/v1/keys/1/retire", &json!({})).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::CONFLICT, Some("key_version_retired"))
        );
        let (s, e) = v.post(&admin, "/v1/keys/2/retire", &json!({})).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::CONFLICT, Some("key_version_active"))
        );
        let (s, e) = v.post(&admin, "/v1/keys/9/retire", &json!({})).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("key_version_not_found"))
        );
        let (s, _) = v.post(&admin, "/v1/keys/x/retire", &json!({})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        check_all(&v, &helpdesk, &customers).await;

        // Erased customers show a destroyed data key.
        let (gone, _) = &customers[3];
        let literal = match backend {
            Backend::Sqlite => format!("X'{}'", Uuid::parse_str(gone).unwrap().simple()),
            Backend::Postgres => format!("'{gone}'"),
        };
        v.exec(&format!(
            "UPDATE customers SET wrapped_dek = NULL WHERE id = {literal}"
        ))
        .await;
        let (s, c) = v.get(&admin, &format!("/v1/keys?customer_id={gone}")).await;
        assert_eq!(s, StatusCode::OK, "{c}");
        assert_eq!(c["customer"]["data_key"], "destroyed");
        assert!(c["customer"].get("kek_version").is_none());
        let (s, c) = v
            .get(&admin, &format!("/v1/keys?customer_id={}", customers[4].0))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            (
                c["customer"]["data_key"].as_str(),
                c["customer"]["kek_version"].as_i64()
            ),
            (Some("active"), Some(2))
        );
        let (s, e) = v
            .get(&admin, &format!("/v1/keys?customer_id={}", Uuid::now_v7()))
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("customer_not_found"))
        );
        let (s, e) = v.get(&admin, "/v1/keys?customer_id=nope").await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_id"))
        );

        // Gauges.
        let metrics = v
            .http
            .get(v.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("pii_vault_keys_active_version"),
            "{metrics}"
        );
        assert!(
            metrics.contains("pii_vault_keys_rewrap_remaining"),
            "{metrics}"
        );
        assert!(metrics.contains("pii_vault_keys_data_keys"), "{metrics}");

        // Only admins; refusals are audited.
        let (s, e) = v.post(&helpdesk, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("capability_required"))
        );
        let (s, _) = v.get(&helpdesk, "/v1/keys").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let events = v.audit().await;
        for action in ["keys.rotate", "keys.rewrap", "keys.retire"] {
            assert!(
                events
                    .iter()
                    .any(|e| e.draft.action == action && e.draft.decision == "allowed"),
                "{action}"
            );
        }
        assert!(events.iter().any(|e| e.draft.action == "keys.retire"
            && e.draft.decision == "denied"
            && e.draft.reasons.get("error").map(String::as_str) == Some("key_version_in_use")));
        assert!(
            events
                .iter()
                .any(|e| e.draft.action == "keys.rotate" && e.draft.decision == "denied")
        );
        assert_no_key_material(&events);

        // The vault restarts with version 1 destroyed and serves everything.
        let (dir, url) = v.stop().await;
        let v = TestVault::start_with(backend, dir, url).await;
        let helpdesk = v.token("helpdesk").await;
        check_all(&v, &helpdesk, &customers[4..]).await;
        assert_eq!(v.state.keys.keyring().versions(), vec![2]);
    }
}

#[tokio::test]
async fn a_data_key_under_a_retired_version_is_refused_by_the_database() {
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |s, _| s.rewrap_background = false).await;
        let admin = v.token("admin").await;
        let (s, _) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(s, StatusCode::CREATED);
        // Both signing keys (checkpoint, token) are sealed under version 1 until rewrapped.
        let report = pii_vault::keys::run_pass(
            &v.state.keys,
            v.state.store.as_ref(),
            &Committer::Sequencer(&v.state.sequencer),
            v.state.clock.as_ref(),
            100,
            Duration::ZERO,
            &Actor::system(),
            &|| true,
            &mut |_| {},
        )
        .await
        .unwrap();
        assert_eq!(report.signing_keys, 2);
        v.clock.advance_days(1);
        let admin = v.token("admin").await;
        let (s, r) = v.post(&admin, "/v1/keys/1/retire", &json!({})).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        // A process that has not yet seen the rotation would wrap with v1.
        let stale = pii_vault::crypto::Keyring::new(
            vec![
                pii_vault::crypto::new_kek(&pii_vault::crypto::RootKey::generate().unwrap().0, 1)
                    .unwrap()
                    .0,
            ],
            1,
        )
        .unwrap();
        let id = Uuid::now_v7();
        let (kek_version, wrapped_dek) = stale.wrap_dek(id, &Dek::generate().unwrap()).unwrap();
        let r = v
            .state
            .sequencer
            .commit(Unit {
                mutations: vec![Mutation::InsertCustomer {
                    id,
                    external_id: None,
                    kek_version,
                    wrapped_dek,
                    at: v.clock.now_micros(),
                }],
                events: vec![],
            })
            .await;
        assert!(
            r.is_err(),
            "{backend:?}: a data key under a retired KEK was stored"
        );
        // Still serving.
        let helpdesk = v.token("helpdesk").await;
        let id = v
            .create(
                &helpdesk,
                &json!({"fields": {"email": {"value": "after@example.com", "purposes": ["support"]}}}),
            )
            .await;
        check_read(&v, &helpdesk, &id, "after@example.com").await;
    }
}

#[tokio::test]
async fn signing_key_rotation_keeps_old_tokens_until_they_expire() {
    on_each_backend(|v| async move {
        let admin = v.token("admin").await;
        let helpdesk = v.token("helpdesk").await;
        let old_kid = v.state.keys.tokens().signing_key().kid().to_owned();
        let (s, r) = v
            .post(&admin, "/v1/keys/token-signing/rotate", &json!({}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        let new_kid = r["kid"].as_str().unwrap().to_owned();
        assert_eq!(r["previous_kid"], old_kid);
        assert_ne!(new_kid, old_kid);
        assert_eq!(v.state.keys.tokens().signing_key().kid(), new_kid);
        let published: Vec<String> = v
            .state
            .keys
            .tokens()
            .public_keys()
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(published, vec![new_kid.clone(), old_kid.clone()]);

        // Tokens signed by the old key still work; new ones carry the new kid.
        let (s, _) = v.get(&admin, "/v1/keys").await;
        assert_eq!(s, StatusCode::OK);
        let id = v
            .create(
                &helpdesk,
                &json!({"fields": {"email": {"value": "s@example.com", "purposes": ["support"]}}}),
            )
            .await;
        let fresh = v.token("helpdesk").await;
        let header = jsonwebtoken_header_kid(&fresh);
        assert_eq!(header, new_kid);
        check_read(&v, &fresh, &id, "s@example.com").await;

        let st = status(&v, &admin).await;
        let keys = st["token_signing_keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        let old = keys.iter().find(|k| k["kid"] == old_kid).unwrap();
        assert_eq!(old["active"], false);
        assert_eq!(old["accepted_for_tokens"], true);
        assert!(
            old.get("kek_version").is_none(),
            "old private key destroyed: {old}"
        );
        let new = keys.iter().find(|k| k["kid"] == new_kid).unwrap();
        assert_eq!(new["active"], true);

        // After a restart the same holds.
        let backend = v.backend;
        let (dir, url) = v.stop().await;
        let v = TestVault::start_with(backend, dir, url).await;
        check_read(&v, &helpdesk, &id, "s@example.com").await;
        assert_eq!(v.state.keys.tokens().signing_key().kid(), new_kid);

        // Once every token of the old key has expired it is no longer
        // accepted, but stays published for older checkpoints.
        v.clock.advance_days(1);
        let admin = v.token("admin").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = status(&v, &admin).await;
            let old = st["token_signing_keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == old_kid)
                .unwrap()
                .clone();
            if old["accepted_for_tokens"] == false {
                break;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Checked at a time when the token itself was still valid.
        let iat = token_claim(&helpdesk, "iat");
        let deadline = Instant::now() + Duration::from_secs(30);
        while v.state.keys.tokens().verify(&helpdesk, iat + 1).is_ok() {
            assert!(Instant::now() < deadline, "old kid still accepted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            v.state
                .keys
                .tokens()
                .public_keys()
                .iter()
                .any(|(k, _)| *k == old_kid)
        );
        // After a suspected leak: the replaced key's tokens are refused at once.
        let (s, r) = v
            .post(
                &admin,
                "/v1/keys/token-signing/rotate?revoke_previous=true",
                &json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(r["previous_kid"], new_kid);
        let (s, e) = v.get(&admin, "/v1/keys").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
        let admin = v.token("admin").await;
        assert_eq!(jsonwebtoken_header_kid(&admin), r["kid"].as_str().unwrap());
        let st = status(&v, &admin).await;
        let revoked = st["token_signing_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == new_kid)
            .unwrap();
        assert_eq!(revoked["accepted_for_tokens"], false);
        assert_eq!(v.state.keys.tokens().public_keys().len(), 3);
        let events = v.audit().await;
        assert!(
            events
                .iter()
                .any(|e| e.draft.action == "keys.rotate_token_signing"
                    && e.draft.reasons.get("kid") == Some(&new_kid)
                    && e.draft.reasons.get("previous_kid") == Some(&old_kid))
        );
        assert_no_key_material(&events);
    })
    .await;
}

fn token_claim(token: &str, claim: &str) -> i64 {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v[claim].as_i64().unwrap()
}

fn jsonwebtoken_header_kid(token: &str) -> String {
    use base64::Engine;
    let head = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn other_processes_pick_up_a_new_version_and_signing_key_within_seconds() {
    for backend in backends() {
        let a = TestVault::start(backend).await;
        let b = TestVault::start_with(
            backend,
            tempfile::tempdir().unwrap(),
            a.database_url.clone(),
        )
        .await;
        let admin = a.token("admin").await;
        let helpdesk = a.token("helpdesk").await;
        let (s, _) = a.post(&admin, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(a.state.keys.keyring().active_version(), 2);
        let id = a
            .create(
                &helpdesk,
                &json!({"fields": {"email": {"value": "p@example.com", "purposes": ["support"]}}}),
            )
            .await;
        // B may not have loaded version 2 yet: it answers 503 (retry) and
        // reloads at once; never a 500 or a wrong value.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, body) = b
                .get(&helpdesk, &format!("/v1/customers/{id}?purpose=support"))
                .await;
            if s == StatusCode::OK {
                assert_eq!(body["fields"]["email"], "p@example.com");
                break;
            }
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while b.state.keys.keyring().active_version() != 2 {
            assert!(Instant::now() < deadline, "B did not pick up version 2");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let id = b
            .create(
                &helpdesk,
                &json!({"fields": {"email": {"value": "q@example.com", "purposes": ["support"]}}}),
            )
            .await;
        let (_, c) = a.get(&admin, &format!("/v1/keys?customer_id={id}")).await;
        assert_eq!(c["customer"]["kek_version"], 2);

        let (s, r) = a
            .post(&admin, "/v1/keys/token-signing/rotate", &json!({}))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let deadline = Instant::now() + Duration::from_secs(30);
        while b.state.keys.tokens().signing_key().kid() != r["kid"] {
            assert!(
                Instant::now() < deadline,
                "B did not pick up the signing key"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A token from B (new key) works on A, and the old token on both.
        let from_b = b.token("helpdesk").await;
        check_read(&a, &from_b, &id, "q@example.com").await;
        check_read(&b, &helpdesk, &id, "q@example.com").await;
    }
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

fn pv(dir: &Path, db: &str) -> Command {
    vault_cmd(dir, db, "warn")
}

/// Runs `c` until it exits (at most 60 s); (success, stderr).
async fn run_to_exit(c: Command) -> (bool, String) {
    tokio::task::spawn_blocking(move || run_to_exit_blocking(c))
        .await
        .unwrap()
}

fn run_to_exit_blocking(mut c: Command) -> (bool, String) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.success(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn keys_commands_have_help() {
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        "status",
        "rotate",
        "rewrap",
        "retire",
        "rotate-root",
        "rotate-signing",
        "rotate-token-signing",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pii-vault"))
            .current_dir(dir.path())
            .args(["keys", sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "keys {sub} --help");
        assert!(!out.stdout.is_empty());
    }
}

/// Every seeded value decrypts with the keys the vault loads now; returns
/// how many data keys are still on a version other than `active`.
async fn verify_database(url: &str, customers: &[(String, String)]) -> (i64, i64) {
    let settings = settings(url);
    let opened = pii_vault::open(&settings, &SystemClock, false, false)
        .await
        .expect("vault opens");
    let keyring = opened.keys.keyring();
    let active = keyring.active_version();
    let mut on_old = 0;
    for (id, email) in customers {
        let id: Uuid = id.parse().unwrap();
        let rec = opened.store.customer_record(id).await.unwrap().unwrap();
        let version = rec.customer.kek_version.unwrap();
        if version != active {
            on_old += 1;
        }
        let dek = keyring
            .unwrap_dek(id, version, rec.customer.wrapped_dek.as_ref().unwrap())
            .unwrap_or_else(|e| panic!("customer {id} (version {version}): {e}"));
        let field = rec.fields.iter().find(|f| f.field == "email").unwrap();
        let plain = dek.decrypt_field(id, "email", &field.ciphertext).unwrap();
        assert_eq!(plain.as_slice(), email.as_bytes());
    }
    (active, on_old)
}

#[tokio::test]
async fn rewrap_killed_at_several_points_resumes_and_finishes() {
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |s, _| s.rewrap_background = false).await;
        let customers = seed(&v, 3000, "kill").await;
        let admin = v.token("admin").await;
        let (s, _) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(s, StatusCode::CREATED);
        let (dir, url) = v.stop().await;
        let (active, mut remaining) = verify_database(&url, &customers).await;
        assert_eq!((active, remaining), (2, 3000));

        // Kill `keys rewrap` (and once a serving process's background
        // rewrap) after different delays; after each kill every value still
        // decrypts and the remainder never grows.
        let mut progressed = Vec::new();
        for (round, delay_ms) in [150u64, 400, 1500, 700, 1000].into_iter().enumerate() {
            let mut c = pv(dir.path(), &url);
            c.env("PII_VAULT_REWRAP_BATCH_SIZE", "40")
                .env("PII_VAULT_REWRAP_PAUSE_MS", "15");
            if round == 2 {
                c.arg("serve");
            } else {
                c.args(["keys", "rewrap"]);
            }
            let mut child = c
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let (active, left) = verify_database(&url, &customers).await;
            assert_eq!(active, 2);
            assert!(left <= remaining, "round {round}: {left} > {remaining}");
            progressed.push(remaining - left);
            remaining = left;
        }
        eprintln!(
            "{backend:?}: data keys rewrapped per killed run: {progressed:?}, left {remaining}"
        );

        let mut c = pv(dir.path(), &url);
        c.args(["keys", "rewrap"]);
        let out = run_ok(c).await;
        assert!(
            out.contains("every live data key is wrapped by KEK version 2"),
            "{out}"
        );
        let (active, left) = verify_database(&url, &customers).await;
        assert_eq!((active, left), (2, 0));

        // The status command agrees, and the rewrap was audited per batch.
        let mut c = pv(dir.path(), &url);
        c.args(["keys", "status", "--json"]);
        let st: Value = serde_json::from_str(&run_ok(c).await).unwrap();
        assert_eq!(st["rewrap"]["complete"], true, "{st}");
        assert_eq!(version(&st, 1)["data_keys"], 0);
        assert_eq!(version(&st, 2)["data_keys"], 3000);
        let v = TestVault::start_with(backend, dir, url).await;
        let events = v.audit().await;
        let total: usize = events
            .iter()
            .filter(|e| e.draft.action == "keys.rewrap")
            .filter_map(|e| e.draft.reasons.get("data_keys"))
            .map(|n| n.parse::<usize>().unwrap())
            .sum();
        assert_eq!(total, 3000, "every committed batch has its event");
        let helpdesk = v.token("helpdesk").await;
        check_all(&v, &helpdesk, &customers[..200]).await;
    }
}

#[tokio::test]
async fn after_rotate_root_only_the_new_root_key_opens_the_vault() {
    for backend in backends() {
        let v = TestVault::start(backend).await;
        let customers = seed(&v, 20, "root").await;
        let (dir, url) = v.stop().await;
        let new_key = dir.path().join("new-root.key");

        // Same key: refused, nothing changes.
        let old_file = dir.path().join("old-root.key");
        std::fs::write(&old_file, format!("{}\n", root_key_b64())).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&old_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut c = pv(dir.path(), &url);
        c.args(["keys", "rotate-root", "--new-key-file"])
            .arg(&old_file);
        let (ok, err) = run_to_exit(c).await;
        assert!(!ok && err.contains("already in use"), "{err}");

        let mut c = pv(dir.path(), &url);
        c.args(["keys", "rotate-root", "--new-key-file"])
            .arg(&new_key);
        let out = run_ok(c).await;
        assert!(out.contains("root key replaced"), "{out}");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&new_key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // The old key is refused, with a message that says why.
        let mut c = pv(dir.path(), &url);
        c.arg("serve");
        let (ok, err) = run_to_exit(c).await;
        assert!(!ok, "serve started with the old root key");
        assert!(err.contains("rotate-root"), "{err}");

        // The new key opens it (command line and server).
        let mut c = pv(dir.path(), &url);
        c.env_remove("PII_VAULT_MASTER_KEY")
            .env("PII_VAULT_MASTER_KEY_FILE", &new_key)
            .args(["keys", "status", "--json"]);
        let st: Value = serde_json::from_str(&run_ok(c).await).unwrap();
        assert_eq!(st["root_key_current"], true);
        let new_b64 = std::fs::read_to_string(&new_key).unwrap().trim().to_owned();
        let fingerprint = pii_vault::crypto::RootKey::from_base64(&new_b64)
            .unwrap()
            .fingerprint();
        assert_eq!(st["root_fingerprint"], fingerprint);

        let v = TestVault::start_with_adjusted(backend, dir, url, |s, _| {
            s.master_key = Some(new_b64.clone().into());
        })
        .await;
        let helpdesk = v.token("helpdesk").await;
        check_all(&v, &helpdesk, &customers).await;
        let (s, found) = v
            .post(
                &helpdesk,
                "/v1/customers/search?purpose=support",
                &json!({"field": "email", "value": customers[5].1}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{found}");
        assert_eq!(found["customers"][0]["id"], customers[5].0);
        // A KEK rotation after the root change is wrapped by the new key.
        let admin = v.token("admin").await;
        let (s, r) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        let events = v.audit().await;
        let ev = events
            .iter()
            .find(|e| e.draft.action == "keys.rotate_root")
            .expect("keys.rotate_root event");
        assert_eq!(ev.draft.reasons["root_fingerprint"], fingerprint);
        assert_no_key_material(&events);
        let (dir, url) = v.stop().await;
        let v = TestVault::start_with_adjusted(backend, dir, url, |s, _| {
            s.master_key = Some(new_b64.clone().into());
        })
        .await;
        let helpdesk = v.token("helpdesk").await;
        check_all(&v, &helpdesk, &customers).await;
        assert_eq!(v.state.keys.keyring().versions(), vec![1, 2]);
    }
}

/// Rough rewrap speed (data keys per second) of `pii-vault keys rewrap`.
/// Run: `cargo test --release --test api keys::rewrap_speed -- --ignored --nocapture`
/// (`REWRAP_SPEED_N` customers, default 100000).
#[tokio::test]
#[ignore]
async fn rewrap_speed() {
    let n: usize = std::env::var("REWRAP_SPEED_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |s, _| s.rewrap_background = false).await;
        seed(&v, n, "speed").await;
        let admin = v.token("admin").await;
        let (s, _) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(s, StatusCode::CREATED);
        let (dir, url) = v.stop().await;
        for (batch, pause) in [("500", "0"), ("500", "5")] {
            if pause == "5" {
                let v = TestVault::start_adjusted(backend, |s, _| {
                    s.rewrap_background = false;
                    s.database_url = url.clone().into();
                })
                .await;
                let admin = v.token("admin").await;
                let (s, _) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
                assert_eq!(s, StatusCode::CREATED);
                v.stop().await;
            }
            let mut c = pv(dir.path(), &url);
            c.env("PII_VAULT_REWRAP_BATCH_SIZE", batch)
                .env("PII_VAULT_REWRAP_PAUSE_MS", pause)
                .args(["keys", "rewrap"]);
            let out = run_ok(c).await;
            let line = out
                .lines()
                .find(|l| l.starts_with("rewrapped"))
                .unwrap_or_default();
            eprintln!("{backend:?} n={n} batch={batch} pause={pause}ms: {line}");
        }
    }
}

#[tokio::test]
async fn a_running_vault_follows_a_root_key_rotation_through_its_key_file() {
    for backend in backends() {
        let v = TestVault::start_adjusted(backend, |s, dir| {
            let file = dir.join("root.key");
            std::fs::write(&file, format!("{}\n", root_key_b64())).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            s.master_key = None;
            s.master_key_file = Some(file);
        })
        .await;
        let admin = v.token("admin").await;
        let helpdesk = v.token("helpdesk").await;
        let customers = seed(&v, 10, "follow").await;

        // Another process replaces the root key.
        let (new_root, new_b64) = pii_vault::crypto::RootKey::generate().unwrap();
        let old_root = pii_vault::crypto::RootKey::from_base64(&root_key_b64()).unwrap();
        pii_vault::keys::rotate_root(
            v.state.store.as_ref(),
            &SystemClock,
            &old_root,
            &new_root,
            &Actor::cli(),
        )
        .await
        .unwrap();

        // Still serving with the keys it holds; a KEK rotation is refused
        // (it would be wrapped by the replaced root key).
        check_all(&v, &helpdesk, &customers).await;
        let (s, e) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::CONFLICT, Some("root_key_changed"))
        );
        let st = status(&v, &admin).await;
        assert_eq!(st["root_key_current"], false);

        // The key file is replaced in place: the process picks the new key up.
        let file = v.dir.path().join("root.key");
        std::fs::write(&file, format!("{new_b64}\n")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while v.state.keys.root.load().fingerprint() != new_root.fingerprint() {
            assert!(
                Instant::now() < deadline,
                "the new root key was not picked up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (s, r) = v.post(&admin, "/v1/keys/rotate", &json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        let st = wait_rewrap_complete(&v, &admin).await;
        assert_eq!(st["root_key_current"], true);
        check_all(&v, &helpdesk, &customers).await;

        // The key endpoints are in the OpenAPI document.
        let doc: Value = v
            .http
            .get(v.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for path in [
            "/v1/keys",
            "/v1/keys/rotate",
            "/v1/keys/{version}/retire",
            "/v1/keys/signing/rotate",
            "/v1/keys/token-signing/rotate",
        ] {
            assert!(
                doc["paths"].get(path).is_some(),
                "{path} missing from /openapi.json"
            );
        }
        let (s, e) = v
            .post(
                &admin,
                "/v1/keys/signing/rotate?revoke_previous=maybe",
                &json!({}),
            )
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request"))
        );
    }
}
