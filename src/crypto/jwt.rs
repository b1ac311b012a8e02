//! Access tokens: EdDSA (Ed25519) JWTs, signed and verified with `ring`.
//!
//! `jsonwebtoken` ≥ 10 has no crypto of its own without a backend feature;
//! [`install_jwt_provider`] plugs in a `ring`-backed provider that knows
//! EdDSA only, so `ring` stays the vault's single crypto library and every
//! other algorithm (`HS*`, `RS*`, `ES*`, `PS*`) is refused.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Validation};
use ring::digest;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use super::CryptoError;
use super::envelope::fill_random;
use super::signing::{PUBLIC_KEY_LEN, SigningKey};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const JWT_LEEWAY_SECS: i64 = 30;

/// Tokens longer than this are rejected before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

type JwtResult<T> = jsonwebtoken::errors::Result<T>;

struct RingEdDsaSigner(Ed25519KeyPair);

impl signature::Signer<Vec<u8>> for RingEdDsaSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for RingEdDsaSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct RingEdDsaVerifier(UnparsedPublicKey<Vec<u8>>);

impl signature::Verifier<Vec<u8>> for RingEdDsaVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        self.0
            .verify(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingEdDsaVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// `EncodingKey::from_ed_der` holds a PKCS#8 document.
fn ring_signer(algorithm: &Algorithm, key: &EncodingKey) -> JwtResult<Box<dyn JwtSigner>> {
    if *algorithm != Algorithm::EdDSA {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    if key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let pair =
        Ed25519KeyPair::from_pkcs8(key.as_bytes()).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(RingEdDsaSigner(pair)))
}

/// `DecodingKey::from_ed_der` / `from_ed_components` hold the raw 32-byte
/// public key.
fn ring_verifier(algorithm: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    if *algorithm != Algorithm::EdDSA {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    if key.family() != AlgorithmFamily::Ed {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let bytes = key.try_get_as_bytes()?;
    if bytes.len() != PUBLIC_KEY_LEN {
        return Err(ErrorKind::InvalidEddsaKey.into());
    }
    Ok(Box::new(RingEdDsaVerifier(UnparsedPublicKey::new(
        &ED25519,
        bytes.to_vec(),
    ))))
}

fn no_rsa_components(_: &[u8]) -> JwtResult<(Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn no_ec_components(_: &[u8], _: Algorithm) -> JwtResult<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn ed_public_from_pkcs8(pkcs8: &[u8], curve: &EllipticCurve) -> JwtResult<Vec<u8>> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(pair.public_key().as_ref().to_vec())
}

fn ring_digest(data: &[u8], hash: ThumbprintHash) -> JwtResult<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: ring_signer,
    verifier_factory: ring_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: no_rsa_components,
        rsa_pub_components_from_public_key: no_rsa_components,
        ec_pub_components_from_private_key: no_ec_components,
        ed_pub_components_from_private_key: ed_public_from_pkcs8,
        compute_digest: ring_digest,
    },
};

/// Installs the `ring`-backed EdDSA-only provider as jsonwebtoken's process
/// default. Idempotent; call at start-up ([`TokenKeys::new`] calls it too).
pub fn install_jwt_provider() {
    // Err means a provider is already installed (by an earlier call).
    let _ = RING_PROVIDER.install_default();
}

/// The claims of a vault access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Client id or user id.
    pub sub: String,
    /// Role name from the policy.
    pub role: String,
    /// `"client"` or `"user"`.
    pub kind: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique token id (random, 128 bits, base64url).
    pub jti: String,
}

/// The signing key in use plus every public key accepted for verification,
/// by key id.
pub struct TokenKeys {
    signing: SigningKey,
    encoded_header: String,
    verify_keys: HashMap<String, DecodingKey>,
    public_keys: Vec<(String, [u8; PUBLIC_KEY_LEN])>,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_kid", &self.signing.kid())
            .field(
                "accepted_kids",
                &self.public_keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenKeys {
    /// `also_accept` lists earlier public keys (kid, key) still accepted
    /// after a signing-key rotation. The signing key's own entry wins over
    /// an `also_accept` entry with the same kid.
    pub fn new(
        signing: SigningKey,
        also_accept: Vec<(String, [u8; 32])>,
        issuer: String,
        audience: String,
    ) -> Self {
        install_jwt_provider();
        let header = serde_json::json!({ "typ": "JWT", "alg": "EdDSA", "kid": signing.kid() });
        let encoded_header = URL_SAFE_NO_PAD.encode(header.to_string());

        let mut public_keys = vec![(signing.kid().to_owned(), signing.public_key())];
        for (kid, key) in also_accept {
            if !public_keys.iter().any(|(k, _)| *k == kid) {
                public_keys.push((kid, key));
            }
        }
        let verify_keys = public_keys
            .iter()
            .map(|(kid, key)| (kid.clone(), DecodingKey::from_ed_der(key)))
            .collect();
        Self {
            signing,
            encoded_header,
            verify_keys,
            public_keys,
            issuer,
            audience,
        }
    }

    /// Adds public keys that are published (for checkpoints signed before a
    /// signing-key rotation) but no longer accepted for tokens: their tokens
    /// have expired. Keys already listed are left as they are.
    pub fn with_published(mut self, published_only: Vec<(String, [u8; 32])>) -> Self {
        for (kid, key) in published_only {
            if !self.public_keys.iter().any(|(k, _)| *k == kid) {
                self.public_keys.push((kid, key));
            }
        }
        self
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Every accepted public key (kid, key), the signing key first; what the
    /// vault publishes.
    pub fn public_keys(&self) -> &[(String, [u8; 32])] {
        &self.public_keys
    }

    /// The public keys whose tokens are accepted (the signing key first):
    /// what the JWKS publishes.
    pub fn accepted_keys(&self) -> impl Iterator<Item = &(String, [u8; 32])> {
        self.public_keys
            .iter()
            .filter(|(kid, _)| self.verify_keys.contains_key(kid))
    }

    /// Issues a token valid from `now` for `lifetime_secs` seconds; header
    /// `alg: EdDSA` with the signing key's `kid`.
    pub fn issue(
        &self,
        sub: &str,
        role: &str,
        kind: &str,
        now: i64,
        lifetime_secs: i64,
    ) -> Result<(String, Claims), CryptoError> {
        if lifetime_secs <= 0 {
            return Err(CryptoError::InvalidInput("token lifetime must be positive"));
        }
        let exp = now
            .checked_add(lifetime_secs)
            .ok_or(CryptoError::InvalidInput("token lifetime out of range"))?;
        let mut jti = [0u8; 16];
        fill_random(&mut jti)?;
        let claims = Claims {
            sub: sub.to_owned(),
            role: role.to_owned(),
            kind: kind.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp,
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| CryptoError::TokenEncoding)?;

        // Same serialisation as `jsonwebtoken::encode`, but signed with the
        // key pair parsed once instead of re-parsing PKCS#8 per token.
        let mut token = String::with_capacity(self.encoded_header.len() + payload.len() * 2 + 90);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok((token, claims))
    }

    /// Verifies signature (EdDSA only, key chosen by `kid`), issuer,
    /// audience, and `exp`/`nbf` against `now` with [`JWT_LEEWAY_SECS`].
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, CryptoError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(CryptoError::InvalidToken("token too long"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| CryptoError::InvalidToken("malformed token"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(CryptoError::InvalidToken("algorithm not allowed"));
        }
        if header.crit.is_some() {
            return Err(CryptoError::InvalidToken("unsupported critical header"));
        }
        let kid = header
            .kid
            .ok_or(CryptoError::InvalidToken("missing key id"))?;
        let key = self
            .verify_keys
            .get(&kid)
            .ok_or(CryptoError::InvalidToken("unknown key id"))?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_aud = true;
        // jsonwebtoken would compare exp/nbf with the system clock; both are
        // checked below against the caller's `now` instead.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = JWT_LEEWAY_SECS.unsigned_abs();

        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            CryptoError::InvalidToken(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::MissingRequiredClaim(_) => "missing claim",
                ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                    "algorithm not allowed"
                }
                _ => "malformed token",
            })
        })?;
        let claims = data.claims;

        if claims.iss != self.issuer {
            return Err(CryptoError::InvalidToken("wrong issuer"));
        }
        if claims.aud != self.audience {
            return Err(CryptoError::InvalidToken("wrong audience"));
        }
        if now > claims.exp.saturating_add(JWT_LEEWAY_SECS) {
            return Err(CryptoError::TokenExpired);
        }
        if claims.nbf > now.saturating_add(JWT_LEEWAY_SECS) {
            return Err(CryptoError::TokenNotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::hmac;
    use serde_json::json;

    const ISS: &str = "pii-vault";
    const AUD: &str = "pii-vault-api";
    const NOW: i64 = 1_000_000; // far from the system clock on purpose

    /// A fresh signing key and its PKCS#8 document, so a test can load the
    /// same key twice.
    fn new_key() -> (SigningKey, Vec<u8>) {
        let (key, pkcs8) = SigningKey::generate().unwrap();
        (key, pkcs8.to_vec())
    }

    fn keys_for(pkcs8: &[u8], iss: &str, aud: &str) -> TokenKeys {
        let signing = SigningKey::from_pkcs8(pkcs8).unwrap();
        TokenKeys::new(signing, vec![], iss.into(), aud.into())
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn craft(
        header: serde_json::Value,
        claims: &serde_json::Value,
        sign: impl Fn(&[u8]) -> Vec<u8>,
    ) -> String {
        let msg = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = sign(msg.as_bytes());
        format!("{msg}.{}", b64(&sig))
    }

    fn claims_json(now: i64) -> serde_json::Value {
        json!({
            "sub": "client-1", "role": "helpdesk", "kind": "client",
            "iss": ISS, "aud": AUD, "iat": now, "nbf": now, "exp": now + 300,
            "jti": "abc"
        })
    }

    #[test]
    fn issue_then_verify() {
        let (key, _) = new_key();
        let kid = key.kid().to_owned();
        let keys = TokenKeys::new(key, vec![], ISS.into(), AUD.into());
        let (token, claims) = keys
            .issue("client-1", "helpdesk", "client", NOW, 900)
            .unwrap();
        assert_eq!(claims.iat, NOW);
        assert_eq!(claims.nbf, NOW);
        assert_eq!(claims.exp, NOW + 900);
        assert_eq!(claims.iss, ISS);
        assert_eq!(claims.aud, AUD);
        assert_eq!(claims.jti.len(), 22);

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));

        assert_eq!(keys.verify(&token, NOW).unwrap(), claims);
        assert_eq!(keys.verify(&token, NOW + 600).unwrap(), claims);

        let (other, _) = keys
            .issue("client-1", "helpdesk", "client", NOW, 900)
            .unwrap();
        assert_ne!(token, other, "jti must be unique");
    }

    #[test]
    fn expiry_is_checked_against_now_with_leeway() {
        let keys = TokenKeys::new(new_key().0, vec![], ISS.into(), AUD.into());
        let (token, claims) = keys.issue("u", "dpo", "user", NOW, 60).unwrap();
        assert!(keys.verify(&token, claims.exp + JWT_LEEWAY_SECS).is_ok());
        assert_eq!(
            keys.verify(&token, claims.exp + JWT_LEEWAY_SECS + 1)
                .unwrap_err(),
            CryptoError::TokenExpired
        );
    }

    #[test]
    fn future_nbf_is_rejected() {
        let keys = TokenKeys::new(new_key().0, vec![], ISS.into(), AUD.into());
        let (token, _) = keys.issue("u", "dpo", "user", NOW, 600).unwrap();
        assert!(keys.verify(&token, NOW - JWT_LEEWAY_SECS).is_ok());
        assert_eq!(
            keys.verify(&token, NOW - JWT_LEEWAY_SECS - 1).unwrap_err(),
            CryptoError::TokenNotYetValid
        );
    }

    #[test]
    fn wrong_issuer_or_audience_is_rejected() {
        let (_, pkcs8) = new_key();
        let issuer = keys_for(&pkcs8, ISS, AUD);
        let (token, _) = issuer.issue("u", "dpo", "user", NOW, 600).unwrap();
        assert_eq!(
            keys_for(&pkcs8, "someone-else", AUD)
                .verify(&token, NOW)
                .unwrap_err(),
            CryptoError::InvalidToken("wrong issuer")
        );
        assert_eq!(
            keys_for(&pkcs8, ISS, "another-api")
                .verify(&token, NOW)
                .unwrap_err(),
            CryptoError::InvalidToken("wrong audience")
        );
    }

    #[test]
    fn unknown_kid_is_rejected_and_also_accept_works() {
        let (old, _) = new_key();
        let old_kid = old.kid().to_owned();
        let old_pub = old.public_key();
        let old_keys = TokenKeys::new(old, vec![], ISS.into(), AUD.into());
        let (token, _) = old_keys.issue("u", "dpo", "user", NOW, 600).unwrap();

        let rotated = TokenKeys::new(new_key().0, vec![], ISS.into(), AUD.into());
        assert_eq!(
            rotated.verify(&token, NOW).unwrap_err(),
            CryptoError::InvalidToken("unknown key id")
        );

        let accepting = TokenKeys::new(
            new_key().0,
            vec![(old_kid, old_pub)],
            ISS.into(),
            AUD.into(),
        );
        assert!(accepting.verify(&token, NOW).is_ok());
        assert_eq!(accepting.public_keys().len(), 2);
    }

    #[test]
    fn published_only_keys_are_listed_but_not_accepted() {
        let (old, _) = new_key();
        let old_kid = old.kid().to_owned();
        let old_pub = old.public_key();
        let old_keys = TokenKeys::new(old, vec![], ISS.into(), AUD.into());
        let (token, _) = old_keys.issue("u", "dpo", "user", NOW, 600).unwrap();

        let keys = TokenKeys::new(new_key().0, vec![], ISS.into(), AUD.into())
            .with_published(vec![(old_kid.clone(), old_pub)]);
        assert_eq!(keys.public_keys().len(), 2);
        assert!(keys.public_keys().iter().any(|(k, _)| *k == old_kid));
        assert_eq!(keys.accepted_keys().count(), 1);
        assert!(keys.accepted_keys().all(|(k, _)| *k != old_kid));
        assert_eq!(
            keys.verify(&token, NOW).unwrap_err(),
            CryptoError::InvalidToken("unknown key id")
        );
    }

    #[test]
    fn missing_kid_is_rejected() {
        let (key, pkcs8) = new_key();
        let keys = keys_for(&pkcs8, ISS, AUD);
        let token = craft(
            json!({"alg": "EdDSA", "typ": "JWT"}),
            &claims_json(NOW),
            |m| key.sign(m),
        );
        assert_eq!(
            keys.verify(&token, NOW).unwrap_err(),
            CryptoError::InvalidToken("missing key id")
        );
    }

    #[test]
    fn alg_none_is_rejected() {
        let (key, pkcs8) = new_key();
        let keys = keys_for(&pkcs8, ISS, AUD);
        let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid()});
        let token = craft(header.clone(), &claims_json(NOW), |_| Vec::new());
        assert!(keys.verify(&token, NOW).is_err());
        let unsigned = token.trim_end_matches('.').to_owned();
        assert!(keys.verify(&unsigned, NOW).is_err());
    }

    #[test]
    fn hs256_with_public_key_as_secret_is_rejected() {
        let (key, pkcs8) = new_key();
        let keys = keys_for(&pkcs8, ISS, AUD);
        let public = key.public_key();
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()});
        let token = craft(header, &claims_json(NOW), |m| {
            let mac = hmac::Key::new(hmac::HMAC_SHA256, &public);
            hmac::sign(&mac, m).as_ref().to_vec()
        });
        assert_eq!(
            keys.verify(&token, NOW).unwrap_err(),
            CryptoError::InvalidToken("algorithm not allowed")
        );
        // The provider refuses HMAC even when asked directly.
        let direct = jsonwebtoken::decode::<Claims>(
            &token,
            &DecodingKey::from_secret(&public),
            &Validation::new(Algorithm::HS256),
        );
        assert!(direct.is_err());
    }

    #[test]
    fn flipped_signature_byte_is_rejected() {
        let keys = TokenKeys::new(new_key().0, vec![], ISS.into(), AUD.into());
        let (token, _) = keys.issue("u", "dpo", "user", NOW, 600).unwrap();
        let (msg, sig) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[5] ^= 0x01;
        let forged = format!("{msg}.{}", b64(&sig));
        assert_eq!(
            keys.verify(&forged, NOW).unwrap_err(),
            CryptoError::InvalidToken("bad signature")
        );
    }

    #[test]
    fn tampered_claims_are_rejected() {
        let keys = TokenKeys::new(new_key().0, vec![], ISS.into(), AUD.into());
        let (token, _) = keys.issue("u", "helpdesk", "user", NOW, 600).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["role"] = json!("admin");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        );
        assert!(keys.verify(&forged, NOW).is_err());
    }

    #[test]
    fn other_key_with_same_kid_is_rejected() {
        let (victim, pkcs8) = new_key();
        let keys = keys_for(&pkcs8, ISS, AUD);
        let (attacker, _) = new_key();
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": victim.kid()});
        let token = craft(header, &claims_json(NOW), |m| attacker.sign(m));
        assert_eq!(
            keys.verify(&token, NOW).unwrap_err(),
            CryptoError::InvalidToken("bad signature")
        );
        // Control: the same token signed by the right key passes.
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": victim.kid()});
        let good = craft(header, &claims_json(NOW), |m| victim.sign(m));
        assert!(keys.verify(&good, NOW).is_ok());
    }

    #[test]
    fn required_claims_must_be_present() {
        let (key, pkcs8) = new_key();
        let keys = keys_for(&pkcs8, ISS, AUD);
        for claim in ["exp", "nbf", "iss", "aud", "sub"] {
            let mut claims = claims_json(NOW);
            claims.as_object_mut().unwrap().remove(claim);
            let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()});
            let token = craft(header, &claims, |m| key.sign(m));
            assert!(keys.verify(&token, NOW).is_err(), "without {claim}");
        }
    }

    #[test]
    fn crit_header_and_oversized_tokens_are_rejected() {
        let (key, pkcs8) = new_key();
        let keys = keys_for(&pkcs8, ISS, AUD);
        let header = json!({"alg": "EdDSA", "kid": key.kid(), "crit": ["exp"]});
        let token = craft(header, &claims_json(NOW), |m| key.sign(m));
        assert!(keys.verify(&token, NOW).is_err());
        assert!(keys.verify(&"a".repeat(MAX_TOKEN_LEN + 1), NOW).is_err());
        assert!(keys.verify("", NOW).is_err());
        assert!(keys.verify("a.b", NOW).is_err());
    }

    #[test]
    fn provider_signs_and_verifies_through_jsonwebtoken() {
        install_jwt_provider();
        install_jwt_provider();
        let (key, pkcs8) = new_key();
        let keys = keys_for(&pkcs8, ISS, AUD);

        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        let claims: Claims = serde_json::from_value(claims_json(NOW)).unwrap();
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&pkcs8)).unwrap();
        assert_eq!(keys.verify(&token, NOW).unwrap(), claims);

        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        );
        assert!(hs.is_err());
        let wrong_family = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_secret(&pkcs8),
        );
        assert!(wrong_family.is_err());
    }

    #[test]
    fn provider_key_utils_do_not_panic() {
        let (key, pkcs8) = new_key();
        let utils = &RING_PROVIDER.key_utils;
        assert_eq!(
            (utils.ed_pub_components_from_private_key)(&pkcs8, &EllipticCurve::Ed25519).unwrap(),
            key.public_key().to_vec()
        );
        assert!((utils.rsa_pub_components_from_private_key)(&pkcs8).is_err());
        assert!((utils.ec_pub_components_from_private_key)(&pkcs8, Algorithm::ES256).is_err());
        assert_eq!(
            (utils.compute_digest)(b"abc", ThumbprintHash::SHA256).unwrap(),
            digest::digest(&digest::SHA256, b"abc").as_ref()
        );
    }

    #[test]
    fn invalid_lifetimes_are_refused() {
        let keys = TokenKeys::new(new_key().0, vec![], ISS.into(), AUD.into());
        assert!(keys.issue("u", "r", "user", NOW, 0).is_err());
        assert!(keys.issue("u", "r", "user", i64::MAX, 10).is_err());
    }

    #[test]
    fn debug_does_not_show_private_key() {
        let (key, pkcs8) = new_key();
        let keys = keys_for(&pkcs8, ISS, AUD);
        let debug = format!("{keys:?}");
        assert!(debug.contains(key.kid()));
        for window in pkcs8.windows(4).skip(16).take(32) {
            assert!(!debug.contains(&hex::encode(window)), "{debug}");
        }
    }
}
