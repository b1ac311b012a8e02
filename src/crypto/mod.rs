//! Cryptography of the vault (DESIGN.md §3). All primitives come from `ring`;
//! passwords and one-time codes use `argon2` (argon2id).
//!
//! - [`keys`]: root key → keyring of versioned KEKs → one DEK per customer,
//!   field-value encryption.
//! - [`envelope`]: the versioned AES-256-GCM envelope used for all of them.
//! - [`blind`]: blind indexes for searchable fields.
//! - [`signing`], [`jwt`]: the Ed25519 key that signs tokens and audit
//!   checkpoints, and the EdDSA-only JWT layer.
//! - [`password`]: argon2id, random secrets and codes, constant-time equality.
//!
//! Key material lives only in `secrecy`/`zeroize` types or inside `ring`
//! key objects; every key type prints as `[redacted]`, and no error carries
//! key bytes or plaintext.

pub mod blind;
pub mod envelope;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod signing;

pub use blind::{IndexKeys, new_index_secret, rewrap_index_secret, unwrap_index_secret};
pub use envelope::FORMAT_VERSION;
pub use jwt::{Claims, JWT_LEEWAY_SECS, TokenKeys, install_jwt_provider};
pub use keys::{Dek, Kek, Keyring, RootKey, new_kek, rewrap_kek, unwrap_kek};
pub use password::{
    constant_time_eq, dummy_verify, generate_secret, hash_password, prepare_dummy_hash,
    random_digits, sha256_hex, verify_password,
};
pub use signing::{SIGNING_KEY_LABEL, SigningKey, key_id, verify_ed25519};

/// Errors of the crypto layer. Messages never contain key bytes, plaintext
/// or token contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong context (customer, field,
    /// key version, label) or tampered/truncated data.
    #[error("decryption failed")]
    DecryptionFailed,
    #[error("encryption failed")]
    EncryptionFailed,
    /// The envelope's format version byte is not one this build reads.
    #[error("unsupported envelope format")]
    UnsupportedFormat,
    #[error("invalid key length")]
    InvalidKeyLength,
    #[error("invalid key encoding")]
    InvalidKeyEncoding,
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i64),
    #[error("duplicate key version {0}")]
    DuplicateKeyVersion(i64),
    #[error("random number generator failed")]
    RandomFailure,
    #[error("invalid signing key")]
    InvalidSigningKey,
    #[error("password hashing failed")]
    PasswordHash,
    #[error("token encoding failed")]
    TokenEncoding,
    /// The token is malformed, uses another algorithm, has an unknown key
    /// id, a bad signature, or the wrong issuer/audience; the reason is a
    /// fixed string, safe to log.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("token expired")]
    TokenExpired,
    #[error("token not yet valid")]
    TokenNotYetValid,
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
}
