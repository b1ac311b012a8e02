//! The versioned AES-256-GCM envelope shared by every encryption in the
//! vault: field values under a customer's DEK, DEKs and sealed secrets under a
//! KEK, KEKs and the index secret under the root key.
//!
//! Layout: `[format version = 1][nonce: 12 bytes][ciphertext || tag: 16 bytes]`.
//! The format version is also the last byte of every AAD, so an envelope
//! cannot be replayed under another version's rules.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use zeroize::Zeroizing;

use super::CryptoError;

/// The only envelope format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Length of every symmetric key in the vault (AES-256, HMAC-SHA256 secrets).
pub const KEY_LEN: usize = 32;

const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Smallest valid envelope: header and tag around an empty plaintext.
pub const MIN_ENVELOPE_LEN: usize = HEADER_LEN + TAG_LEN;

/// 32 bytes of key material, heap-allocated and zeroized on drop.
pub(crate) type KeyBytes = SecretBox<[u8; KEY_LEN]>;

/// Fills `out` from the operating system's CSPRNG.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| CryptoError::RandomFailure)
}

/// A fresh random 256-bit key.
pub(crate) fn random_key() -> Result<KeyBytes, CryptoError> {
    let mut key = KeyBytes::new(Box::new([0u8; KEY_LEN]));
    fill_random(key.expose_secret_mut())?;
    Ok(key)
}

/// Copies an unwrapped key into protected storage, checking its length.
pub(crate) fn key_from_slice(bytes: &[u8]) -> Result<KeyBytes, CryptoError> {
    if bytes.len() != KEY_LEN {
        return Err(CryptoError::InvalidKeyLength);
    }
    let mut key = KeyBytes::new(Box::new([0u8; KEY_LEN]));
    key.expose_secret_mut().copy_from_slice(bytes);
    Ok(key)
}

/// An AES-256-GCM key, expanded once when the owning key object is built.
#[derive(Clone)]
pub(crate) struct AeadKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey([redacted])")
    }
}

impl AeadKey {
    pub(crate) fn new(key: &KeyBytes) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose_secret())
            .map_err(|_| CryptoError::InvalidKeyLength)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Encrypts `plaintext` with a fresh random nonce; `aad` must come from
    /// an [`AadBuilder`] so that it ends with the format version.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;

        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                out.get_mut(HEADER_LEN..)
                    .ok_or(CryptoError::EncryptionFailed)?,
            )
            .map_err(|_| CryptoError::EncryptionFailed)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts and authenticates an envelope produced by [`AeadKey::seal`]
    /// with the same `aad`.
    pub(crate) fn open(
        &self,
        aad: &[u8],
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if envelope.len() < MIN_ENVELOPE_LEN {
            return Err(CryptoError::DecryptionFailed);
        }
        let (header, body) = envelope.split_at(HEADER_LEN);
        let (version, nonce) = header.split_at(1);
        if version != [FORMAT_VERSION] {
            return Err(CryptoError::UnsupportedFormat);
        }
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::DecryptionFailed)?;

        let mut buf = Zeroizing::new(body.to_vec());
        let plaintext_len = self
            .key
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| CryptoError::DecryptionFailed)?
            .len();
        buf.truncate(plaintext_len);
        Ok(buf)
    }
}

/// Builds an AAD: a fixed domain label, the context fields, then the format
/// version. Variable-length parts are length-prefixed so that no two
/// different contexts serialise to the same bytes.
pub(crate) struct AadBuilder {
    buf: Vec<u8>,
}

impl AadBuilder {
    pub(crate) fn new(domain: &'static str) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(domain.as_bytes());
        Self { buf }
    }

    pub(crate) fn bytes(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub(crate) fn i64(mut self, value: i64) -> Self {
        self.buf.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Appends `u16 BE length || bytes`.
    pub(crate) fn prefixed(mut self, bytes: &[u8]) -> Result<Self, CryptoError> {
        let len =
            u16::try_from(bytes.len()).map_err(|_| CryptoError::InvalidInput("name too long"))?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        Ok(self)
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.push(FORMAT_VERSION);
        self.buf
    }
}
