//! The key hierarchy: root key → keyring of KEKs → one DEK per customer.
//!
//! The root key (the "master key" of the configuration) is never stored by
//! the vault; it only wraps the KEKs (and the blind-index secret). KEKs wrap
//! the per-customer DEKs and a few small secrets such as the signing key.
//! DEKs encrypt field values. Changing the root key rewraps only the
//! keyring; rotating the KEK rewraps only DEKs; no field value is ever
//! re-encrypted.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use secrecy::ExposeSecret;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::CryptoError;
use super::envelope::{AadBuilder, AeadKey, KEY_LEN, KeyBytes, key_from_slice, random_key};

const AAD_KEK: &str = "pii-vault/kek/v1";
const AAD_DEK: &str = "pii-vault/dek/v1";
const AAD_SEALED: &str = "pii-vault/sealed/v1";
const AAD_FIELD: &str = "pii-vault/field/v1";
const FINGERPRINT_CONTEXT: &[u8] = b"pii-vault root key fingerprint";

/// The 256-bit root key. Only wraps the keyring; never stored by the vault.
pub struct RootKey {
    aead: AeadKey,
    fingerprint: String,
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([redacted])")
    }
}

impl RootKey {
    /// Parses standard base64 of exactly 32 bytes; surrounding whitespace
    /// (for example a trailing newline in a key file) is ignored.
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(s.trim())
                .map_err(|_| CryptoError::InvalidKeyEncoding)?,
        );
        Self::from_key_bytes(&key_from_slice(&decoded)?)
    }

    /// A fresh random root key and its base64 form (for the key file).
    pub fn generate() -> Result<(Self, String), CryptoError> {
        let bytes = random_key()?;
        let encoded = STANDARD.encode(bytes.expose_secret());
        Ok((Self::from_key_bytes(&bytes)?, encoded))
    }

    /// Hex of the first 8 bytes of SHA-256("pii-vault root key fingerprint"
    /// || key). Stored beside the keyring so that a wrong root key can be
    /// told apart from corrupt data.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn from_key_bytes(bytes: &KeyBytes) -> Result<Self, CryptoError> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(FINGERPRINT_CONTEXT);
        ctx.update(bytes.expose_secret());
        let hash = ctx.finish();
        Ok(Self {
            aead: AeadKey::new(bytes)?,
            fingerprint: hex::encode(hash.as_ref().get(..8).unwrap_or_default()),
        })
    }

    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.aead.seal(aad, plaintext)
    }

    pub(crate) fn open(
        &self,
        aad: &[u8],
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.aead.open(aad, envelope)
    }
}

fn kek_aad(version: i64) -> Vec<u8> {
    AadBuilder::new(AAD_KEK).i64(version).finish()
}

/// One unwrapped key-encryption key of the keyring.
#[derive(Clone)]
pub struct Kek {
    version: i64,
    aead: AeadKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Kek {
    /// The keyring version of this KEK.
    pub fn version(&self) -> i64 {
        self.version
    }
}

/// Creates KEK `version` and returns it with its wrapped form (to store).
pub fn new_kek(root: &RootKey, version: i64) -> Result<(Kek, Vec<u8>), CryptoError> {
    let bytes = random_key()?;
    let wrapped = root.seal(&kek_aad(version), bytes.expose_secret())?;
    let kek = Kek {
        version,
        aead: AeadKey::new(&bytes)?,
    };
    Ok((kek, wrapped))
}

/// Unwraps stored KEK `version`. Fails with a wrong root key, a wrong
/// version or tampered bytes.
pub fn unwrap_kek(root: &RootKey, version: i64, wrapped: &[u8]) -> Result<Kek, CryptoError> {
    let plain = root.open(&kek_aad(version), wrapped)?;
    let bytes = key_from_slice(&plain)?;
    Ok(Kek {
        version,
        aead: AeadKey::new(&bytes)?,
    })
}

/// Re-encrypts a wrapped KEK from `old_root` to `new_root` (root key change).
pub fn rewrap_kek(
    old_root: &RootKey,
    new_root: &RootKey,
    version: i64,
    wrapped: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let aad = kek_aad(version);
    let plain = old_root.open(&aad, wrapped)?;
    if plain.len() != KEY_LEN {
        return Err(CryptoError::InvalidKeyLength);
    }
    new_root.seal(&aad, &plain)
}

/// A customer's data key: 32 random bytes, zeroized on drop.
pub struct Dek {
    bytes: KeyBytes,
    aead: AeadKey,
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek([redacted])")
    }
}

fn field_aad(customer: Uuid, field: &str) -> Result<Vec<u8>, CryptoError> {
    Ok(AadBuilder::new(AAD_FIELD)
        .bytes(customer.as_bytes())
        .prefixed(field.as_bytes())?
        .finish())
}

impl Dek {
    /// A fresh random data key.
    pub fn generate() -> Result<Self, CryptoError> {
        Self::from_bytes(random_key()?)
    }

    fn from_bytes(bytes: KeyBytes) -> Result<Self, CryptoError> {
        let aead = AeadKey::new(&bytes)?;
        Ok(Self { bytes, aead })
    }

    /// Encrypts one field value of `customer`. The envelope only decrypts
    /// for the same customer and field name.
    pub fn encrypt_field(
        &self,
        customer: Uuid,
        field: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.aead.seal(&field_aad(customer, field)?, plaintext)
    }

    /// Decrypts one field value of `customer`.
    pub fn decrypt_field(
        &self,
        customer: Uuid,
        field: &str,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.aead.open(&field_aad(customer, field)?, envelope)
    }
}

fn dek_aad(customer: Uuid, kek_version: i64) -> Vec<u8> {
    AadBuilder::new(AAD_DEK)
        .bytes(customer.as_bytes())
        .i64(kek_version)
        .finish()
}

fn sealed_aad(label: &str, kek_version: i64) -> Result<Vec<u8>, CryptoError> {
    Ok(AadBuilder::new(AAD_SEALED)
        .prefixed(label.as_bytes())?
        .i64(kek_version)
        .finish())
}

struct KeyringInner {
    keks: BTreeMap<i64, Kek>,
    active: i64,
}

/// Every unwrapped KEK by version, and which one is active. Cloning is cheap
/// (shared); build a new `Keyring` to pick up a new active version.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<KeyringInner>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.versions())
            .field("active", &self.inner.active)
            .finish()
    }
}

impl Keyring {
    /// Fails if `active` is not among `keks` or a version appears twice.
    pub fn new(keks: Vec<Kek>, active: i64) -> Result<Self, CryptoError> {
        let mut map = BTreeMap::new();
        for kek in keks {
            let version = kek.version;
            if map.insert(version, kek).is_some() {
                return Err(CryptoError::DuplicateKeyVersion(version));
            }
        }
        if !map.contains_key(&active) {
            return Err(CryptoError::UnknownKeyVersion(active));
        }
        Ok(Self {
            inner: Arc::new(KeyringInner { keks: map, active }),
        })
    }

    /// A new keyring with `kek` added (or replacing the same version) and
    /// `active` as the active version; `self` is unchanged. Used after
    /// creating a KEK during rotation.
    pub fn with_kek(&self, kek: Kek, active: i64) -> Result<Self, CryptoError> {
        let mut keks = self.inner.keks.clone();
        keks.insert(kek.version, kek);
        if !keks.contains_key(&active) {
            return Err(CryptoError::UnknownKeyVersion(active));
        }
        Ok(Self {
            inner: Arc::new(KeyringInner { keks, active }),
        })
    }

    /// A new keyring with the same KEKs and `active` as the active version.
    pub fn with_active(&self, active: i64) -> Result<Self, CryptoError> {
        if !self.has_version(active) {
            return Err(CryptoError::UnknownKeyVersion(active));
        }
        Ok(Self {
            inner: Arc::new(KeyringInner {
                keks: self.inner.keks.clone(),
                active,
            }),
        })
    }

    /// The version new DEKs and sealed secrets are wrapped with.
    pub fn active_version(&self) -> i64 {
        self.inner.active
    }

    /// All loaded versions, ascending.
    pub fn versions(&self) -> Vec<i64> {
        self.inner.keks.keys().copied().collect()
    }

    /// Whether KEK `version` is loaded.
    pub fn has_version(&self, version: i64) -> bool {
        self.inner.keks.contains_key(&version)
    }

    fn kek(&self, version: i64) -> Result<&Kek, CryptoError> {
        self.inner
            .keks
            .get(&version)
            .ok_or(CryptoError::UnknownKeyVersion(version))
    }

    fn active(&self) -> Result<&Kek, CryptoError> {
        self.kek(self.inner.active)
    }

    /// Wraps `dek` for `customer` with the active KEK; returns the KEK
    /// version to store beside the wrapped key.
    pub fn wrap_dek(&self, customer: Uuid, dek: &Dek) -> Result<(i64, Vec<u8>), CryptoError> {
        let kek = self.active()?;
        let wrapped = kek
            .aead
            .seal(&dek_aad(customer, kek.version), dek.bytes.expose_secret())?;
        Ok((kek.version, wrapped))
    }

    /// Unwraps the DEK of `customer` stored under KEK `kek_version`.
    pub fn unwrap_dek(
        &self,
        customer: Uuid,
        kek_version: i64,
        wrapped: &[u8],
    ) -> Result<Dek, CryptoError> {
        let kek = self.kek(kek_version)?;
        let plain = kek.aead.open(&dek_aad(customer, kek_version), wrapped)?;
        Dek::from_bytes(key_from_slice(&plain)?)
    }

    /// Re-wraps a customer's DEK from KEK `kek_version` to the active KEK
    /// (background rotation). The field values are untouched.
    pub fn rewrap_dek(
        &self,
        customer: Uuid,
        kek_version: i64,
        wrapped: &[u8],
    ) -> Result<(i64, Vec<u8>), CryptoError> {
        let dek = self.unwrap_dek(customer, kek_version, wrapped)?;
        self.wrap_dek(customer, &dek)
    }

    /// Encrypts a small secret (e.g. the signing key) under the active KEK,
    /// bound to `purpose_label`.
    pub fn seal(
        &self,
        purpose_label: &str,
        plaintext: &[u8],
    ) -> Result<(i64, Vec<u8>), CryptoError> {
        let kek = self.active()?;
        let sealed = kek
            .aead
            .seal(&sealed_aad(purpose_label, kek.version)?, plaintext)?;
        Ok((kek.version, sealed))
    }

    /// Decrypts a secret produced by [`Keyring::seal`] with the same label.
    pub fn open(
        &self,
        purpose_label: &str,
        kek_version: i64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let kek = self.kek(kek_version)?;
        kek.aead
            .open(&sealed_aad(purpose_label, kek_version)?, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::envelope::FORMAT_VERSION;

    fn customer() -> Uuid {
        Uuid::now_v7()
    }

    fn keyring(versions: &[i64], active: i64) -> (RootKey, Keyring) {
        let (root, _) = RootKey::generate().unwrap();
        let keks = versions
            .iter()
            .map(|v| new_kek(&root, *v).unwrap().0)
            .collect();
        (root, Keyring::new(keks, active).unwrap())
    }

    #[test]
    fn field_round_trip() {
        let dek = Dek::generate().unwrap();
        let c = customer();
        let env = dek.encrypt_field(c, "email", b"ada@example.com").unwrap();
        assert_eq!(env[0], FORMAT_VERSION);
        assert_eq!(env.len(), 1 + 12 + b"ada@example.com".len() + 16);
        let plain = dek.decrypt_field(c, "email", &env).unwrap();
        assert_eq!(plain.as_slice(), b"ada@example.com");
    }

    #[test]
    fn empty_value_round_trips() {
        let dek = Dek::generate().unwrap();
        let c = customer();
        let env = dek.encrypt_field(c, "note", b"").unwrap();
        assert!(dek.decrypt_field(c, "note", &env).unwrap().is_empty());
    }

    #[test]
    fn ciphertext_moved_to_another_customer_fails() {
        let dek = Dek::generate().unwrap();
        let env = dek.encrypt_field(customer(), "email", b"x@y.z").unwrap();
        assert_eq!(
            dek.decrypt_field(customer(), "email", &env).unwrap_err(),
            CryptoError::DecryptionFailed
        );
    }

    #[test]
    fn ciphertext_moved_to_another_field_fails() {
        let dek = Dek::generate().unwrap();
        let c = customer();
        let env = dek.encrypt_field(c, "email", b"x@y.z").unwrap();
        assert_eq!(
            dek.decrypt_field(c, "backup_email", &env).unwrap_err(),
            CryptoError::DecryptionFailed
        );
    }

    #[test]
    fn two_encryptions_of_one_value_differ() {
        let dek = Dek::generate().unwrap();
        let c = customer();
        let a = dek.encrypt_field(c, "phone", b"+4915112345678").unwrap();
        let b = dek.encrypt_field(c, "phone", b"+4915112345678").unwrap();
        assert_ne!(a, b);
        assert_ne!(a[1..13], b[1..13], "nonces must differ");
    }

    #[test]
    fn wrong_dek_fails() {
        let c = customer();
        let env = Dek::generate()
            .unwrap()
            .encrypt_field(c, "name", b"Ada")
            .unwrap();
        let other = Dek::generate().unwrap();
        assert!(other.decrypt_field(c, "name", &env).is_err());
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_fails() {
        let dek = Dek::generate().unwrap();
        let c = customer();
        let env = dek.encrypt_field(c, "name", b"Ada Lovelace").unwrap();
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(dek.decrypt_field(c, "name", &bad).is_err(), "flip at {i}");
        }
        for len in 0..env.len() {
            assert!(
                dek.decrypt_field(c, "name", &env[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let mut longer = env.clone();
        longer.push(0);
        assert!(dek.decrypt_field(c, "name", &longer).is_err());
    }

    #[test]
    fn unknown_format_version_is_reported() {
        let dek = Dek::generate().unwrap();
        let c = customer();
        let mut env = dek.encrypt_field(c, "name", b"Ada").unwrap();
        env[0] = 2;
        assert_eq!(
            dek.decrypt_field(c, "name", &env).unwrap_err(),
            CryptoError::UnsupportedFormat
        );
    }

    #[test]
    fn dek_wrap_unwrap_round_trip() {
        let (_, ring) = keyring(&[1], 1);
        let c = customer();
        let dek = Dek::generate().unwrap();
        let env = dek.encrypt_field(c, "email", b"a@b.c").unwrap();
        let (version, wrapped) = ring.wrap_dek(c, &dek).unwrap();
        assert_eq!(version, 1);
        let back = ring.unwrap_dek(c, version, &wrapped).unwrap();
        assert_eq!(back.bytes.expose_secret(), dek.bytes.expose_secret());
        assert_eq!(
            back.decrypt_field(c, "email", &env).unwrap().as_slice(),
            b"a@b.c"
        );
    }

    #[test]
    fn dek_unwrap_with_wrong_customer_fails() {
        let (_, ring) = keyring(&[1], 1);
        let dek = Dek::generate().unwrap();
        let (version, wrapped) = ring.wrap_dek(customer(), &dek).unwrap();
        assert_eq!(
            ring.unwrap_dek(customer(), version, &wrapped).unwrap_err(),
            CryptoError::DecryptionFailed
        );
    }

    #[test]
    fn dek_unwrap_with_wrong_kek_version_fails() {
        let (_, ring) = keyring(&[1, 2], 2);
        let c = customer();
        let dek = Dek::generate().unwrap();
        let (version, wrapped) = ring.wrap_dek(c, &dek).unwrap();
        assert_eq!(version, 2);
        assert_eq!(
            ring.unwrap_dek(c, 1, &wrapped).unwrap_err(),
            CryptoError::DecryptionFailed
        );
        assert_eq!(
            ring.unwrap_dek(c, 3, &wrapped).unwrap_err(),
            CryptoError::UnknownKeyVersion(3)
        );
    }

    #[test]
    fn same_version_number_from_another_kek_fails() {
        let (_, ring_a) = keyring(&[1], 1);
        let (_, ring_b) = keyring(&[1], 1);
        let c = customer();
        let (v, wrapped) = ring_a.wrap_dek(c, &Dek::generate().unwrap()).unwrap();
        assert!(ring_b.unwrap_dek(c, v, &wrapped).is_err());
    }

    #[test]
    fn rotation_rewraps_dek_to_active_version() {
        let (root, _) = RootKey::generate().unwrap();
        let (k1, w1) = new_kek(&root, 1).unwrap();
        let old = Keyring::new(vec![k1], 1).unwrap();
        let c = customer();
        let dek = Dek::generate().unwrap();
        let env = dek.encrypt_field(c, "email", b"a@b.c").unwrap();
        let (v1, wrapped1) = old.wrap_dek(c, &dek).unwrap();

        let (k2, _) = new_kek(&root, 2).unwrap();
        let k1 = unwrap_kek(&root, 1, &w1).unwrap();
        let new = Keyring::new(vec![k1, k2], 2).unwrap();
        assert_eq!(new.versions(), vec![1, 2]);
        let (v2, wrapped2) = new.rewrap_dek(c, v1, &wrapped1).unwrap();
        assert_eq!(v2, 2);
        let back = new.unwrap_dek(c, v2, &wrapped2).unwrap();
        assert_eq!(
            back.decrypt_field(c, "email", &env).unwrap().as_slice(),
            b"a@b.c"
        );
        assert!(old.unwrap_dek(c, v2, &wrapped2).is_err());
    }

    #[test]
    fn with_kek_and_with_active_switch_versions() {
        let (root, ring) = keyring(&[1], 1);
        let c = customer();
        let (_, wrapped_v1) = ring.wrap_dek(c, &Dek::generate().unwrap()).unwrap();

        let (k2, _) = new_kek(&root, 2).unwrap();
        let rotated = ring.with_kek(k2, 2).unwrap();
        assert_eq!(ring.versions(), vec![1]);
        assert_eq!(rotated.versions(), vec![1, 2]);
        assert_eq!(rotated.active_version(), 2);
        assert!(rotated.unwrap_dek(c, 1, &wrapped_v1).is_ok());
        assert_eq!(rotated.wrap_dek(c, &Dek::generate().unwrap()).unwrap().0, 2);

        let back = rotated.with_active(1).unwrap();
        assert_eq!(back.active_version(), 1);
        assert_eq!(
            rotated.with_active(9).unwrap_err(),
            CryptoError::UnknownKeyVersion(9)
        );
        let (k3, _) = new_kek(&root, 3).unwrap();
        assert!(ring.with_kek(k3, 4).is_err());
    }

    #[test]
    fn keyring_rejects_missing_active_and_duplicates() {
        let (root, _) = RootKey::generate().unwrap();
        let k1 = new_kek(&root, 1).unwrap().0;
        assert_eq!(
            Keyring::new(vec![k1], 2).unwrap_err(),
            CryptoError::UnknownKeyVersion(2)
        );
        let a = new_kek(&root, 1).unwrap().0;
        let b = new_kek(&root, 1).unwrap().0;
        assert_eq!(
            Keyring::new(vec![a, b], 1).unwrap_err(),
            CryptoError::DuplicateKeyVersion(1)
        );
        assert!(Keyring::new(vec![], 1).is_err());
    }

    #[test]
    fn kek_unwrap_with_wrong_root_or_version_fails() {
        let (root, _) = RootKey::generate().unwrap();
        let (other, _) = RootKey::generate().unwrap();
        let (_, wrapped) = new_kek(&root, 7).unwrap();
        assert!(unwrap_kek(&root, 7, &wrapped).is_ok());
        assert_eq!(
            unwrap_kek(&other, 7, &wrapped).unwrap_err(),
            CryptoError::DecryptionFailed
        );
        assert_eq!(
            unwrap_kek(&root, 8, &wrapped).unwrap_err(),
            CryptoError::DecryptionFailed
        );
    }

    #[test]
    fn rewrap_kek_moves_to_new_root() {
        let (old_root, _) = RootKey::generate().unwrap();
        let (new_root, _) = RootKey::generate().unwrap();
        let (kek, wrapped) = new_kek(&old_root, 3).unwrap();
        let ring_before = Keyring::new(vec![kek], 3).unwrap();
        let c = customer();
        let (v, wrapped_dek) = ring_before.wrap_dek(c, &Dek::generate().unwrap()).unwrap();

        let rewrapped = rewrap_kek(&old_root, &new_root, 3, &wrapped).unwrap();
        assert!(unwrap_kek(&old_root, 3, &rewrapped).is_err());
        let kek = unwrap_kek(&new_root, 3, &rewrapped).unwrap();
        assert_eq!(kek.version(), 3);
        // Same KEK: DEKs wrapped before the root key change still unwrap.
        let ring_after = Keyring::new(vec![kek], 3).unwrap();
        assert!(ring_after.unwrap_dek(c, v, &wrapped_dek).is_ok());
        // A wrong old root cannot rewrap.
        assert!(rewrap_kek(&new_root, &old_root, 3, &wrapped).is_err());
    }

    #[test]
    fn seal_open_round_trip_bound_to_label_and_version() {
        let (_, ring) = keyring(&[1, 2], 2);
        let (v, sealed) = ring.seal("signing-key", b"pkcs8 bytes").unwrap();
        assert_eq!(v, 2);
        assert_eq!(
            ring.open("signing-key", v, &sealed).unwrap().as_slice(),
            b"pkcs8 bytes"
        );
        assert!(ring.open("webhook-secret", v, &sealed).is_err());
        assert!(ring.open("signing-key", 1, &sealed).is_err());
    }

    #[test]
    fn root_key_parsing() {
        let (_, encoded) = RootKey::generate().unwrap();
        assert!(RootKey::from_base64(&format!("  {encoded}\n")).is_ok());
        assert_eq!(
            RootKey::from_base64(&STANDARD.encode([1u8; 31])).unwrap_err(),
            CryptoError::InvalidKeyLength
        );
        assert_eq!(
            RootKey::from_base64(&STANDARD.encode([1u8; 33])).unwrap_err(),
            CryptoError::InvalidKeyLength
        );
        let bad = format!("{}!", &encoded[..encoded.len() - 1]);
        let err = RootKey::from_base64(&bad).unwrap_err();
        assert_eq!(err, CryptoError::InvalidKeyEncoding);
        assert!(!err.to_string().contains(&encoded[..8]));
    }

    #[test]
    fn root_key_fingerprint() {
        let (key, encoded) = RootKey::generate().unwrap();
        let bytes = STANDARD.decode(&encoded).unwrap();
        let mut input = b"pii-vault root key fingerprint".to_vec();
        input.extend_from_slice(&bytes);
        let expected = hex::encode(&digest::digest(&digest::SHA256, &input).as_ref()[..8]);
        assert_eq!(key.fingerprint(), expected);
        assert_eq!(key.fingerprint().len(), 16);
        assert_eq!(
            RootKey::from_base64(&encoded).unwrap().fingerprint(),
            expected
        );
        assert_ne!(RootKey::generate().unwrap().0.fingerprint(), expected);
    }

    fn assert_redacted(debug: &str, secret: &[u8]) {
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(!debug.contains(&hex::encode(secret)));
        assert!(!debug.contains(&STANDARD.encode(secret)));
        for window in secret.windows(4) {
            assert!(!debug.contains(&hex::encode(window)), "{debug}");
            let listed = format!("{window:?}");
            assert!(!debug.contains(listed.trim_matches(['[', ']'])), "{debug}");
        }
    }

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let (root, encoded) = RootKey::generate().unwrap();
        let root_bytes = STANDARD.decode(&encoded).unwrap();
        assert_redacted(&format!("{root:?}"), &root_bytes);
        assert!(!format!("{root:?}").contains(&encoded));

        let dek = Dek::generate().unwrap();
        assert_redacted(&format!("{dek:?}"), dek.bytes.expose_secret());

        let (kek, _) = new_kek(&root, 1).unwrap();
        let debug = format!("{kek:?}");
        assert!(debug.contains("[redacted]") && debug.contains("version"));
        let ring = Keyring::new(vec![kek], 1).unwrap();
        assert!(!format!("{ring:?}").is_empty());
    }

    #[test]
    fn error_messages_carry_no_plaintext() {
        let dek = Dek::generate().unwrap();
        let c = customer();
        let env = dek.encrypt_field(c, "name", b"SECRET-NAME").unwrap();
        let err = dek.decrypt_field(c, "other", &env).unwrap_err();
        assert_eq!(err.to_string(), "decryption failed");
    }
}
