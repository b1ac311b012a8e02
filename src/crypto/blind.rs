//! Blind indexes for `searchable` fields.
//!
//! One random 32-byte index secret is stored wrapped by the root key. The
//! per-field HMAC-SHA256 keys are derived from it with HKDF-SHA256
//! (salt "pii-vault blind index v1", info = field name), so the same value
//! in two fields gives unrelated index entries. Because the secret is stored
//! rather than derived from the root key, changing the root key only rewraps
//! it and every blind index stays valid.
//!
//! The MAC keys of the tamper-evidence logs (`crate::tamper`) come from the
//! same stored secret through a separate HKDF-SHA256 extraction (salt
//! "pii-vault tamper evidence v1", info = the log's name): they need the
//! root key to compute, survive a root key rotation, and share nothing with
//! the index keys.

use std::fmt;

use ring::{hkdf, hmac};
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::CryptoError;
use super::envelope::{AadBuilder, KEY_LEN, key_from_slice, random_key};
use super::keys::RootKey;

const AAD_INDEX_SECRET: &str = "pii-vault/blind-index/v1";
const HKDF_SALT: &[u8] = b"pii-vault blind index v1";
const TAMPER_SALT: &[u8] = b"pii-vault tamper evidence v1";

fn index_secret_aad() -> Vec<u8> {
    AadBuilder::new(AAD_INDEX_SECRET).finish()
}

/// The unwrapped index secret, held as its HKDF pseudo-random key so that a
/// per-field key costs one HMAC to derive.
#[derive(Clone)]
pub struct IndexKeys {
    prk: hmac::Key,
    /// HKDF-Extract(salt "pii-vault tamper evidence v1", secret).
    tamper: hkdf::Prk,
}

impl fmt::Debug for IndexKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKeys([redacted])")
    }
}

impl IndexKeys {
    fn from_secret(secret: &[u8]) -> Self {
        // HKDF-Extract (RFC 5869 §2.2): PRK = HMAC-SHA256(salt, secret).
        let salt = hmac::Key::new(hmac::HMAC_SHA256, HKDF_SALT);
        let prk = Zeroizing::new(hmac::sign(&salt, secret).as_ref().to_vec());
        Self {
            prk: hmac::Key::new(hmac::HMAC_SHA256, &prk),
            tamper: hkdf::Salt::new(hkdf::HKDF_SHA256, TAMPER_SALT).extract(secret),
        }
    }

    /// The HMAC-SHA256 key of a tamper-evidence log: HKDF-Expand of the
    /// tamper PRK with info = `log` (`tombstones`, `witness`), 32 bytes.
    pub fn tamper_key(&self, log: &[u8]) -> hmac::Key {
        let info = [log];
        match self.tamper.expand(&info, hmac::HMAC_SHA256) {
            Ok(okm) => hmac::Key::from(okm),
            // Only an output longer than 255 blocks fails; 32 bytes cannot.
            Err(_) => hmac::Key::new(hmac::HMAC_SHA256, &[]),
        }
    }

    /// HKDF-Expand (RFC 5869 §2.3) of one 32-byte block with info = field
    /// name: T(1) = HMAC-SHA256(PRK, info || 0x01).
    fn field_key(&self, field: &str) -> hmac::Key {
        let mut ctx = hmac::Context::with_key(&self.prk);
        ctx.update(field.as_bytes());
        ctx.update(&[1u8]);
        let okm = Zeroizing::new(ctx.sign().as_ref().to_vec());
        hmac::Key::new(hmac::HMAC_SHA256, &okm)
    }

    /// The blind index of `normalized_value` in `field`: HMAC-SHA256 under
    /// the field's derived key. Deterministic per (index secret, field,
    /// value); the caller normalises first (lower-cased email, E.164 phone).
    pub fn blind_index(&self, field: &str, normalized_value: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.field_key(field), normalized_value.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

impl IndexKeys {
    /// A keyed digest of `data` for `context` (HMAC-SHA256 under a key
    /// derived like a field's, with info = NUL + context, which no field
    /// name can be). For fingerprints that must not let anyone holding the
    /// database confirm a guessed input (idempotency records).
    pub fn keyed_digest(&self, context: &str, data: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.field_key(&format!("\0{context}")), data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// Creates the index secret; returns its keys and its wrapped form (to store).
pub fn new_index_secret(root: &RootKey) -> Result<(IndexKeys, Vec<u8>), CryptoError> {
    let secret = random_key()?;
    let wrapped = root.seal(&index_secret_aad(), secret.expose_secret())?;
    Ok((IndexKeys::from_secret(secret.expose_secret()), wrapped))
}

/// Unwraps the stored index secret.
pub fn unwrap_index_secret(root: &RootKey, wrapped: &[u8]) -> Result<IndexKeys, CryptoError> {
    let plain = root.open(&index_secret_aad(), wrapped)?;
    let secret = key_from_slice(&plain)?;
    Ok(IndexKeys::from_secret(secret.expose_secret()))
}

/// Re-encrypts the wrapped index secret from `old_root` to `new_root`.
pub fn rewrap_index_secret(
    old_root: &RootKey,
    new_root: &RootKey,
    wrapped: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let aad = index_secret_aad();
    let plain = old_root.open(&aad, wrapped)?;
    if plain.len() != KEY_LEN {
        return Err(CryptoError::InvalidKeyLength);
    }
    new_root.seal(&aad, &plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::hkdf;

    fn root() -> RootKey {
        RootKey::generate().unwrap().0
    }

    #[test]
    fn deterministic_per_field_and_value() {
        let (keys, _) = new_index_secret(&root()).unwrap();
        let a = keys.blind_index("email", "ada@example.com");
        assert_eq!(a, keys.blind_index("email", "ada@example.com"));
        assert_ne!(a, keys.blind_index("email", "bob@example.com"));
        assert_ne!(a, keys.blind_index("backup_email", "ada@example.com"));
    }

    #[test]
    fn differs_across_index_secrets() {
        let r = root();
        let (a, _) = new_index_secret(&r).unwrap();
        let (b, _) = new_index_secret(&r).unwrap();
        assert_ne!(
            a.blind_index("email", "ada@example.com"),
            b.blind_index("email", "ada@example.com")
        );
    }

    #[test]
    fn unwrap_and_root_change_keep_indexes() {
        let old_root = root();
        let new_root = root();
        let (keys, wrapped) = new_index_secret(&old_root).unwrap();
        let expected = keys.blind_index("phone", "+4915112345678");

        let again = unwrap_index_secret(&old_root, &wrapped).unwrap();
        assert_eq!(again.blind_index("phone", "+4915112345678"), expected);

        assert_eq!(
            unwrap_index_secret(&new_root, &wrapped).unwrap_err(),
            CryptoError::DecryptionFailed
        );
        let rewrapped = rewrap_index_secret(&old_root, &new_root, &wrapped).unwrap();
        assert!(unwrap_index_secret(&old_root, &rewrapped).is_err());
        let moved = unwrap_index_secret(&new_root, &rewrapped).unwrap();
        assert_eq!(moved.blind_index("phone", "+4915112345678"), expected);
    }

    #[test]
    fn wrapped_kek_is_not_accepted_as_index_secret() {
        let r = root();
        let (_, wrapped_kek) = super::super::keys::new_kek(&r, 1).unwrap();
        assert!(unwrap_index_secret(&r, &wrapped_kek).is_err());
    }

    #[test]
    fn derivation_is_rfc5869_hkdf_then_hmac() {
        let secret = [7u8; 32];
        let keys = IndexKeys::from_secret(&secret);

        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&secret);
        let info = [b"email".as_slice()];
        let okm = prk.expand(&info, hmac::HMAC_SHA256).unwrap();
        let field_key = hmac::Key::from(okm);
        let expected = hmac::sign(&field_key, b"ada@example.com");

        assert_eq!(
            keys.blind_index("email", "ada@example.com").as_slice(),
            expected.as_ref()
        );
    }

    #[test]
    fn tamper_keys_are_hkdf_of_the_secret_per_log_and_survive_a_root_change() {
        let secret = [7u8; 32];
        let keys = IndexKeys::from_secret(&secret);
        let prk =
            hkdf::Salt::new(hkdf::HKDF_SHA256, b"pii-vault tamper evidence v1").extract(&secret);
        let info = [b"tombstones".as_slice()];
        let expected = hmac::Key::from(prk.expand(&info, hmac::HMAC_SHA256).unwrap());
        let tag = |k: &hmac::Key| hmac::sign(k, b"m").as_ref().to_vec();
        assert_eq!(tag(&keys.tamper_key(b"tombstones")), tag(&expected));
        assert_ne!(tag(&keys.tamper_key(b"witness")), tag(&expected));

        let (old_root, new_root) = (root(), root());
        let (keys, wrapped) = new_index_secret(&old_root).unwrap();
        let rewrapped = rewrap_index_secret(&old_root, &new_root, &wrapped).unwrap();
        let moved = unwrap_index_secret(&new_root, &rewrapped).unwrap();
        assert_eq!(
            tag(&moved.tamper_key(b"tombstones")),
            tag(&keys.tamper_key(b"tombstones"))
        );
    }

    #[test]
    fn debug_is_redacted() {
        let (keys, _) = new_index_secret(&root()).unwrap();
        assert_eq!(format!("{keys:?}"), "IndexKeys([redacted])");
    }
}
