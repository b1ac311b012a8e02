//! The vault's Ed25519 signing key: signs JWTs and audit checkpoints. The
//! private key is stored as a PKCS#8 v2 document sealed under the active KEK
//! (label [`SIGNING_KEY_LABEL`]); the public key is published.

use std::fmt;

use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use super::CryptoError;

/// The [`super::Keyring::seal`] label under which the PKCS#8 document is stored.
pub const SIGNING_KEY_LABEL: &str = "signing-key";

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// An Ed25519 key pair with its key id.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    kid: String,
    public_key: [u8; PUBLIC_KEY_LEN],
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The key id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, public_key);
    hex::encode(hash.as_ref().get(..8).unwrap_or_default())
}

impl SigningKey {
    /// A fresh key pair and its PKCS#8 v2 document (to seal and store).
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), CryptoError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| CryptoError::RandomFailure)?;
        let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
        Ok((Self::from_pkcs8(&pkcs8)?, pkcs8))
    }

    /// Loads a key pair from a PKCS#8 v2 document (private and public key).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidSigningKey)?;
        let mut public_key = [0u8; PUBLIC_KEY_LEN];
        if pair.public_key().as_ref().len() != PUBLIC_KEY_LEN {
            return Err(CryptoError::InvalidSigningKey);
        }
        public_key.copy_from_slice(pair.public_key().as_ref());
        Ok(Self {
            kid: key_id(&public_key),
            pair,
            public_key,
        })
    }

    /// The key id (first 16 hex digits of SHA-256 of the public key).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The 64-byte Ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}

/// Verifies an Ed25519 signature against a raw 32-byte public key.
pub fn verify_ed25519(public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    public_key.len() == PUBLIC_KEY_LEN
        && UnparsedPublicKey::new(&ED25519, public_key)
            .verify(msg, sig)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_sign_verify() {
        let (key, pkcs8) = SigningKey::generate().unwrap();
        let loaded = SigningKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(loaded.kid(), key.kid());
        assert_eq!(key.kid().len(), 16);
        assert_eq!(key.kid(), key_id(&key.public_key()));

        let sig = key.sign(b"checkpoint 42");
        assert_eq!(sig.len(), 64);
        assert!(verify_ed25519(&key.public_key(), b"checkpoint 42", &sig));
        assert!(verify_ed25519(&loaded.public_key(), b"checkpoint 42", &sig));
        assert!(!verify_ed25519(&key.public_key(), b"checkpoint 43", &sig));

        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(!verify_ed25519(&key.public_key(), b"checkpoint 42", &bad));

        let (other, _) = SigningKey::generate().unwrap();
        assert_ne!(other.kid(), key.kid());
        assert!(!verify_ed25519(&other.public_key(), b"checkpoint 42", &sig));
        assert!(!verify_ed25519(
            &key.public_key()[..31],
            b"checkpoint 42",
            &sig
        ));
    }

    #[test]
    fn rejects_invalid_pkcs8() {
        assert_eq!(
            SigningKey::from_pkcs8(b"not a key").unwrap_err(),
            CryptoError::InvalidSigningKey
        );
        let (_, pkcs8) = SigningKey::generate().unwrap();
        let mut bad = pkcs8.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1; // public key no longer matches the seed
        assert!(SigningKey::from_pkcs8(&bad).is_err());
    }

    #[test]
    fn debug_shows_kid_only() {
        let (key, pkcs8) = SigningKey::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("[redacted]") && debug.contains(key.kid()));
        assert!(!debug.contains(&hex::encode(pkcs8.as_slice())));
        for window in pkcs8.windows(4).skip(16) {
            assert!(!debug.contains(&hex::encode(window)), "{debug}");
        }
    }
}
