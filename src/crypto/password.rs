//! Passwords, one-time codes and high-entropy secrets.
//!
//! Low-entropy secrets (user passwords, verification codes) are hashed with
//! argon2id at the OWASP parameters. High-entropy secrets (client secrets,
//! request tokens: 256 random bits) are stored as plain SHA-256, which is
//! enough for them and cheap to check. Hashing is slow by design: call these
//! from `spawn_blocking`, not on an async worker.

use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};
use zeroize::Zeroizing;

use super::CryptoError;
use super::envelope::fill_random;

/// argon2id memory cost in KiB (OWASP: 19 MiB).
pub const ARGON2_M_COST_KIB: u32 = 19_456;
/// argon2id iterations (OWASP).
pub const ARGON2_T_COST: u32 = 2;
/// argon2id parallelism (OWASP).
pub const ARGON2_P_COST: u32 = 1;

const DUMMY_PASSWORD: &str = "pii-vault dummy password for unknown users";

fn argon2() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|_| CryptoError::PasswordHash)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// argon2id (m=19456 KiB, t=2, p=1) with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let hash = argon2()?
        .hash_password(password.as_bytes())
        .map_err(|_| CryptoError::PasswordHash)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the argon2id PHC string `phc`. Malformed or
/// non-argon2id hashes never match.
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm.as_str() != ARGON2ID_IDENT.as_str() {
        return false;
    }
    let Ok(hasher) = argon2() else {
        return false;
    };
    hasher.verify_password(password.as_bytes(), &parsed).is_ok()
}

fn dummy_hash() -> Option<&'static str> {
    static DUMMY_HASH: OnceLock<Option<String>> = OnceLock::new();
    DUMMY_HASH
        .get_or_init(|| hash_password(DUMMY_PASSWORD).ok())
        .as_deref()
}

/// Computes the dummy hash ahead of the first [`dummy_verify`] (at start-up),
/// so that even the first unknown-user login costs one verification only.
pub fn prepare_dummy_hash() {
    let _ = dummy_hash();
}

/// Spends the time of one password verification against a fixed dummy hash,
/// so a login for an unknown user takes as long as one for a known user.
pub fn dummy_verify(password: &str) {
    if let Some(phc) = dummy_hash() {
        let _ = verify_password(phc, password);
    }
}

/// 256 random bits, base64url without padding (client secrets, request
/// tokens).
pub fn generate_secret() -> Result<String, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    fill_random(bytes.as_mut())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

/// Lower-case hex SHA-256: the stored form of high-entropy secrets.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, s.as_bytes()))
}

/// Compares two byte strings in time independent of where they differ.
///
/// Both inputs are MACed under a fixed key and the tags compared with
/// `ring`'s constant-time verification (ring's own slice comparison is not
/// public API).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"pii-vault constant-time comparison");
    let tag = hmac::sign(&key, a);
    hmac::verify(&key, b, tag.as_ref()).is_ok()
}

/// `n` uniformly random decimal digits (one-time verification codes). Bytes
/// ≥ 250 are rejected so that every digit is equally likely.
pub fn random_digits(n: usize) -> Result<String, CryptoError> {
    let mut out = String::with_capacity(n);
    let mut buf = Zeroizing::new(vec![0u8; n.saturating_add(8)]);
    while out.len() < n {
        fill_random(buf.as_mut_slice())?;
        for &byte in buf.iter() {
            if out.len() == n {
                break;
            }
            if byte < 250 {
                out.push(char::from(b'0' + byte % 10));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse battery staple"));
        assert!(!verify_password(&phc, "correct horse battery stapler"));
        assert!(!verify_password(&phc, ""));
    }

    #[test]
    fn same_password_hashes_differently() {
        let a = hash_password("pw").unwrap();
        let b = hash_password("pw").unwrap();
        assert_ne!(a, b);
        assert!(verify_password(&a, "pw") && verify_password(&b, "pw"));
    }

    #[test]
    fn malformed_or_foreign_hashes_never_match() {
        assert!(!verify_password("", "pw"));
        assert!(!verify_password("not a hash", "pw"));
        let phc = hash_password("pw").unwrap();
        let argon2i = phc.replacen("$argon2id$", "$argon2i$", 1);
        assert!(!verify_password(&argon2i, "pw"));
    }

    #[test]
    fn dummy_hash_is_a_real_hash() {
        prepare_dummy_hash();
        let phc = dummy_hash().unwrap();
        assert!(verify_password(phc, DUMMY_PASSWORD));
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        dummy_verify("anything");
    }

    #[test]
    fn secrets_are_256_bit_base64url() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn sha256_hex_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"token", b"tokem"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn random_digits_are_digits_and_uniform() {
        assert_eq!(random_digits(0).unwrap(), "");
        let code = random_digits(6).unwrap();
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));

        let many = random_digits(20_000).unwrap();
        let mut counts = [0usize; 10];
        for b in many.bytes() {
            counts[usize::from(b - b'0')] += 1;
        }
        // Expected 2000 each, standard deviation ≈ 42.
        for (digit, count) in counts.iter().enumerate() {
            assert!((1700..=2300).contains(count), "digit {digit}: {count}");
        }
    }
}
