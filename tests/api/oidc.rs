//! External identity providers: a provider on loopback (discovery and
//! JWKS served by a small axum server, keys made with ring: Ed25519, ECDSA
//! P-256 and a fixed RSA test key) signs tokens; the vault accepts the good
//! ones and refuses every bad one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use pii_vault::clock::Clock;
use pii_vault::config::IdentityProvider;
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use crate::helpers::{TestVault, ada, backends};

const SUBJECT: &str = "00u1staff7";

/// What the provider publishes, and how often its keys were fetched.
struct Published {
    issuer: String,
    jwks: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
}

struct Idp {
    issuer: String,
    published: Arc<Published>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn discovery(State(p): State<Arc<Published>>) -> Json<Value> {
    Json(json!({
        "issuer": p.issuer,
        "jwks_uri": format!("{}keys", p.issuer),
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
}

async fn jwks(State(p): State<Arc<Published>>) -> Json<Value> {
    p.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "keys": p.jwks.lock().unwrap().clone() }))
}

impl Idp {
    /// A provider on 127.0.0.1 publishing `keys`.
    async fn start(keys: &[&TestKey]) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/", listener.local_addr().unwrap());
        let published = Arc::new(Published {
            issuer: issuer.clone(),
            jwks: Mutex::new(keys.iter().map(|k| k.jwk()).collect()),
            jwks_fetches: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(jwks))
            .with_state(Arc::clone(&published));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp {
            issuer,
            published,
            server,
        }
    }

    fn publish(&self, keys: &[&TestKey]) {
        *self.published.jwks.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    fn fetches(&self) -> usize {
        self.published.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The `[[identity_providers]]` entry for this provider (keys found by
    /// discovery).
    fn settings(&self) -> IdentityProvider {
        IdentityProvider {
            issuer: self.issuer.clone(),
            audience: "pii-vault".into(),
            jwks_uri: None,
            role_claim: "groups".into(),
            roles: [
                ("vault-helpdesk".to_owned(), "helpdesk".to_owned()),
                ("vault-auditor".to_owned(), "auditor".to_owned()),
            ]
            .into(),
        }
    }

    /// Good claims for a helpdesk agent at the vault's `now`.
    fn claims(&self, now: i64) -> Value {
        json!({
            "iss": self.issuer, "aud": ["pii-vault", "other-app"], "sub": SUBJECT,
            "iat": now, "nbf": now, "exp": now + 300,
            "groups": ["everyone", "vault-helpdesk"],
        })
    }
}

enum Pair {
    Ed(Ed25519KeyPair),
    Es(EcdsaKeyPair),
    Rs(RsaKeyPair),
}

struct TestKey {
    kid: String,
    pair: Pair,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    fn ed25519(kid: &str) -> TestKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        TestKey {
            kid: kid.into(),
            pair: Pair::Ed(pair),
        }
    }

    fn p256(kid: &str) -> TestKey {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap();
        TestKey {
            kid: kid.into(),
            pair: Pair::Es(pair),
        }
    }

    /// The fixed RSA test key of `tests/fixtures/`.
    fn rsa(kid: &str) -> TestKey {
        let pem = include_str!("../fixtures/oidc-test-rsa-2048.pem");
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let der = STANDARD.decode(body).unwrap();
        TestKey {
            kid: kid.into(),
            pair: Pair::Rs(RsaKeyPair::from_pkcs8(&der).unwrap()),
        }
    }

    fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Ed(_) => "EdDSA",
            Pair::Es(_) => "ES256",
            Pair::Rs(_) => "RS256",
        }
    }

    /// The public key's bytes: what an attacker would try as an HMAC secret.
    fn public_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Ed(p) => p.public_key().as_ref().to_vec(),
            Pair::Es(p) => p.public_key().as_ref().to_vec(),
            Pair::Rs(p) => p.public_key().as_ref().to_vec(),
        }
    }

    fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Ed(p) => json!({"kty": "OKP", "crv": "Ed25519", "use": "sig",
                "kid": self.kid, "x": b64(p.public_key().as_ref())}),
            Pair::Es(p) => {
                let point = p.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Pair::Rs(p) => {
                let public: signature::RsaPublicKeyComponents<Vec<u8>> = p.public().into();
                json!({"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                    "n": b64(&public.n), "e": b64(&public.e)})
            }
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": self.alg(), "kid": self.kid});
        craft(&header, claims, |msg| match &self.pair {
            Pair::Ed(p) => p.sign(msg).as_ref().to_vec(),
            Pair::Es(p) => p.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
            Pair::Rs(p) => {
                let mut sig = vec![0; p.public().modulus_len()];
                p.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    msg,
                    &mut sig,
                )
                .unwrap();
                sig
            }
        })
    }
}

fn craft(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let msg = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(msg.as_bytes());
    format!("{msg}.{}", b64(&sig))
}

fn now(v: &TestVault) -> i64 {
    v.clock.now_micros() / 1_000_000
}

/// A vault trusting `idp`, with one customer; returns the vault and the
/// customer's profile path.
async fn vault_for(backend: crate::helpers::Backend, idp: &Idp) -> (TestVault, String) {
    let settings = idp.settings();
    let v = TestVault::start_adjusted(backend, move |s, _| {
        s.identity_providers = vec![settings];
    })
    .await;
    let own = v.token("helpdesk").await;
    let id = v.create(&own, &ada()).await;
    (v, format!("/v1/customers/{id}?purpose=support"))
}

/// Status and code of reading the profile with `token`.
async fn read(v: &TestVault, path: &str, token: &str) -> (StatusCode, Value) {
    v.get(token, path).await
}

fn assert_unauthenticated(got: (StatusCode, Value), case: &str) {
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{case}: {}", got.1);
    assert_eq!(got.1["code"], "unauthenticated", "{case}");
}

#[tokio::test]
async fn a_providers_token_of_each_key_type_reads_a_profile_and_is_audited_by_name() {
    for backend in backends() {
        let keys = [
            TestKey::ed25519("ed-1"),
            TestKey::p256("ec-1"),
            TestKey::rsa("rsa-1"),
        ];
        let idp = Idp::start(&keys.iter().collect::<Vec<_>>()).await;
        let (v, path) = vault_for(backend, &idp).await;
        for key in &keys {
            let token = key.sign(&idp.claims(now(&v)));
            let (status, body) = read(&v, &path, &token).await;
            assert_eq!(status, StatusCode::OK, "{}: {body}", key.alg());
            assert_eq!(
                body["fields"]["email"],
                "ada@example.com",
                "{}: {body}",
                key.alg()
            );
        }
        let actor = format!("oidc:{}#{SUBJECT}", idp.issuer);
        let reads: Vec<_> = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.action == "customer.read" && e.draft.decision == "allowed")
            .filter(|e| e.draft.actor == actor)
            .collect();
        assert_eq!(
            reads.len(),
            3,
            "one read per token, named by issuer and subject"
        );
        assert!(reads.iter().all(|e| e.draft.role == "helpdesk"));
        assert!(
            reads[0].draft.reasons.contains_key("client_addr"),
            "staff: the address"
        );
        assert_eq!(idp.fetches(), 1, "keys fetched once and cached");
    }
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    for backend in backends() {
        let key = TestKey::ed25519("ed-1");
        let idp = Idp::start(&[&key]).await;
        let (v, path) = vault_for(backend, &idp).await;
        for aud in [json!("other-app"), json!(["other-app"]), json!([])] {
            let mut claims = idp.claims(now(&v));
            claims["aud"] = aud.clone();
            assert_unauthenticated(read(&v, &path, &key.sign(&claims)).await, &aud.to_string());
        }
        let mut claims = idp.claims(now(&v));
        claims.as_object_mut().unwrap().remove("aud");
        assert_unauthenticated(read(&v, &path, &key.sign(&claims)).await, "no aud");
        // The same token with the right audience works: the refusal was the aud.
        let ok = read(&v, &path, &key.sign(&idp.claims(now(&v)))).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    }
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_token_is_refused() {
    for backend in backends() {
        let key = TestKey::p256("ec-1");
        let idp = Idp::start(&[&key]).await;
        let (v, path) = vault_for(backend, &idp).await;
        let t = now(&v);
        let mut expired = idp.claims(t);
        expired["iat"] = json!(t - 3_600);
        expired["nbf"] = json!(t - 3_600);
        expired["exp"] = json!(t - 600);
        assert_unauthenticated(read(&v, &path, &key.sign(&expired)).await, "expired");
        let mut early = idp.claims(t);
        early["nbf"] = json!(t + 600);
        assert_unauthenticated(read(&v, &path, &key.sign(&early)).await, "nbf ahead");
        let mut no_exp = idp.claims(t);
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_unauthenticated(read(&v, &path, &key.sign(&no_exp)).await, "no exp");
    }
}

#[tokio::test]
async fn an_unknown_kid_is_refused_and_refetches_at_most_once_a_minute() {
    for backend in backends() {
        let published = TestKey::ed25519("ed-1");
        let idp = Idp::start(&[&published]).await;
        let (v, path) = vault_for(backend, &idp).await;
        let ok = read(&v, &path, &published.sign(&idp.claims(now(&v)))).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
        assert_eq!(idp.fetches(), 1);

        // Tokens naming key ids the provider never published: refused, and
        // a flood of them within the minute fetches nothing more.
        for i in 0..20 {
            let ghost = TestKey::ed25519(&format!("ghost-{i}"));
            let token = ghost.sign(&idp.claims(now(&v)));
            assert_unauthenticated(read(&v, &path, &token).await, "unknown kid");
        }
        assert_eq!(idp.fetches(), 1, "no refetch within a minute");

        // The provider publishes a new key: within the minute it is not
        // fetched yet; after it, an unknown kid fetches the set again.
        let new = TestKey::ed25519("ed-2");
        idp.publish(&[&published, &new]);
        let token = new.sign(&idp.claims(now(&v)));
        assert_unauthenticated(read(&v, &path, &token).await, "not refetched yet");
        assert_eq!(idp.fetches(), 1);
        v.clock.advance_days(1);
        let token = new.sign(&idp.claims(now(&v)));
        let ok = read(&v, &path, &token).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
        assert_eq!(idp.fetches(), 2);
    }
}

#[tokio::test]
async fn a_valid_token_without_a_mapped_role_is_forbidden_and_audited() {
    for backend in backends() {
        let key = TestKey::rsa("rsa-1");
        let idp = Idp::start(&[&key]).await;
        let (v, path) = vault_for(backend, &idp).await;
        for groups in [
            json!(["everyone", "vault-admins"]),
            json!("everyone"),
            json!(null),
        ] {
            let mut claims = idp.claims(now(&v));
            claims["groups"] = groups.clone();
            let (status, body) = read(&v, &path, &key.sign(&claims)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{groups}: {body}");
            assert_eq!(body["code"], "role_not_mapped", "{groups}");
        }
        let actor = format!("oidc:{}#{SUBJECT}", idp.issuer);
        let refused = v
            .audit()
            .await
            .into_iter()
            .filter(|e| e.draft.decision == "denied" && e.draft.actor == actor)
            .filter(|e| e.draft.reasons.get("error").map(String::as_str) == Some("role_not_mapped"))
            .count();
        assert_eq!(refused, 3, "each refusal recorded with the caller's name");
        // The first mapped value gives the role: an auditor may not read
        // for support, though a later value would have made them helpdesk.
        let mut claims = idp.claims(now(&v));
        claims["groups"] = json!(["everyone", "vault-auditor", "vault-helpdesk"]);
        let (status, body) = read(&v, &path, &key.sign(&claims)).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "auditor reads no profile: {body}"
        );
        assert_eq!(body["code"], "purpose_not_permitted");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_providers_public_key_is_refused() {
    for backend in backends() {
        let keys = [
            TestKey::ed25519("ed-1"),
            TestKey::p256("ec-1"),
            TestKey::rsa("rsa-1"),
        ];
        let idp = Idp::start(&keys.iter().collect::<Vec<_>>()).await;
        let (v, path) = vault_for(backend, &idp).await;
        for key in &keys {
            let jwk = key.jwk();
            let secrets = [
                key.public_bytes(),
                jwk.to_string().into_bytes(),
                jwk["x"]
                    .as_str()
                    .or(jwk["n"].as_str())
                    .unwrap()
                    .as_bytes()
                    .to_vec(),
            ];
            for secret in secrets {
                let header = json!({"typ": "JWT", "alg": "HS256", "kid": key.kid});
                let token = craft(&header, &idp.claims(now(&v)), |msg| {
                    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
                    ring::hmac::sign(&k, msg).as_ref().to_vec()
                });
                assert_unauthenticated(read(&v, &path, &token).await, key.alg());
            }
        }
        assert_eq!(idp.fetches(), 1);
    }
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    for backend in backends() {
        let key = TestKey::ed25519("ed-1");
        let idp = Idp::start(&[&key]).await;
        let (v, path) = vault_for(backend, &idp).await;
        for alg in ["none", "None", "NONE"] {
            let header = json!({"typ": "JWT", "alg": alg, "kid": key.kid});
            let token = craft(&header, &idp.claims(now(&v)), |_| Vec::new());
            assert_unauthenticated(read(&v, &path, &token).await, alg);
            // Without the signature part at all.
            let two_parts = token.trim_end_matches('.');
            assert_unauthenticated(read(&v, &path, two_parts).await, alg);
        }
        // A token whose header claims another algorithm than the key's type
        // pins is refused even when the signature is the key's.
        let good = key.sign(&idp.claims(now(&v)));
        let (_, rest) = good.split_once('.').unwrap();
        let header = json!({"typ": "JWT", "alg": "ES256", "kid": key.kid});
        let swapped = format!("{}.{rest}", b64(header.to_string().as_bytes()));
        assert_unauthenticated(read(&v, &path, &swapped).await, "alg swapped");
    }
}

#[tokio::test]
async fn a_key_rotated_at_the_provider_is_picked_up_and_the_removed_key_stops_working() {
    for backend in backends() {
        let old = TestKey::rsa("2026-old");
        let new = TestKey::p256("2026-new");
        let idp = Idp::start(&[&old]).await;
        let (v, path) = vault_for(backend, &idp).await;
        let ok = read(&v, &path, &old.sign(&idp.claims(now(&v)))).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);

        // Rotation: the provider publishes the new key beside the old one
        // and signs with it a while later.
        idp.publish(&[&old, &new]);
        v.clock.advance_days(1);
        let ok = read(&v, &path, &new.sign(&idp.claims(now(&v)))).await;
        assert_eq!(ok.0, StatusCode::OK, "new kid picked up: {}", ok.1);
        let ok = read(&v, &path, &old.sign(&idp.claims(now(&v)))).await;
        assert_eq!(ok.0, StatusCode::OK, "old key still published: {}", ok.1);

        // The provider removes the old key: once the cached set has aged,
        // tokens signed with it fail and the new key's keep working.
        idp.publish(&[&new]);
        v.clock.advance_days(1);
        let old_token = old.sign(&idp.claims(now(&v)));
        assert_unauthenticated(read(&v, &path, &old_token).await, "old key removed");
        let ok = read(&v, &path, &new.sign(&idp.claims(now(&v)))).await;
        assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
        assert_eq!(idp.fetches(), 3);
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_reported_as_unavailable_not_as_bad_credentials() {
    for backend in backends() {
        let key = TestKey::ed25519("ed-1");
        let mut idp = Idp::start(&[&key]).await;
        let (v, path) = vault_for(backend, &idp).await;
        idp.server.abort();
        let _ = (&mut idp.server).await;
        let (status, body) = read(&v, &path, &key.sign(&idp.claims(now(&v)))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "identity_provider_unavailable");
        // The vault's own tokens are not affected.
        let own = v.token("helpdesk").await;
        assert_eq!(read(&v, &path, &own).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_token_from_an_unlisted_issuer_goes_to_the_vaults_own_check_and_fails() {
    for backend in backends() {
        let key = TestKey::ed25519("ed-1");
        let idp = Idp::start(&[&key]).await;
        let (v, path) = vault_for(backend, &idp).await;
        let mut claims = idp.claims(now(&v));
        claims["iss"] = json!("https://login.evil.example/");
        assert_unauthenticated(read(&v, &path, &key.sign(&claims)).await, "other issuer");
        assert_eq!(idp.fetches(), 0, "the listed provider was not asked");
    }
}

/// Outgoing HTTPS (discovery, key sets) runs on rustls with the ring
/// provider: aws-lc-rs is not in the build at all (what `cargo tree -i
/// aws-lc-rs` shows, read from the lock file).
#[test]
fn tls_is_built_on_ring_alone() {
    let lock = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
    )
    .unwrap();
    let packages: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|n| n.trim_end_matches('"'))
        .collect();
    assert!(packages.contains(&"rustls"), "the lock file lists packages");
    assert!(packages.contains(&"ring"));
    for absent in ["aws-lc-rs", "aws-lc-sys", "aws-lc-fips-sys"] {
        assert!(!packages.contains(&absent), "{absent} is built");
    }
}
