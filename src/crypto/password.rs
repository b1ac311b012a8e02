//! Passwords, one-time codes and high-entropy secrets.
//!
//! Low-entropy secrets (user passwords, verification codes) are hashed with
//! argon2id at the OWASP parameters. High-entropy secrets (client secrets,
//! request tokens: 256 random bits) are stored as plain SHA-256, which is
//! enough for them and cheap to check. Hashing is slow by design: call these
//! from `spawn_blocking`, not on an async worker.

use std::sync::OnceLock;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, PasswordHasher as _, PasswordVerifier as _,
    Version,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};
use zeroize::{Zeroize, Zeroizing};

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

/// The working memory of one argon2id computation at the vault's
/// parameters (19 MiB), allocated once and reused: the password work
/// threads each keep one, so hashing allocates nothing and the memory held
/// for it is fixed (a fresh 19 MiB allocation per hash is left resident by
/// the allocator, per thread).
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    pub fn new() -> Self {
        HashMemory(vec![Block::new(); ARGON2_M_COST_KIB as usize])
    }

    /// Runs `f` on the memory, then wipes it (it holds values derived from
    /// the password).
    fn with<T>(&mut self, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let out = f(&mut self.0);
        for b in &mut self.0 {
            b.zeroize();
        }
        out
    }
}

impl Default for HashMemory {
    fn default() -> Self {
        Self::new()
    }
}

/// [`hash_password`] in `memory`: the same PHC string (16-byte random salt,
/// 32-byte output), no allocation of the working memory.
pub fn hash_password_in(memory: &mut HashMemory, password: &str) -> Result<String, CryptoError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|_| CryptoError::PasswordHash)?;
    let mut salt = [0u8; 16];
    fill_random(&mut salt)?;
    let mut out = Zeroizing::new([0u8; 32]);
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    memory
        .with(|m| {
            hasher.hash_password_into_with_memory(password.as_bytes(), &salt, out.as_mut(), m)
        })
        .map_err(|_| CryptoError::PasswordHash)?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| CryptoError::PasswordHash)?,
        salt: Some(Salt::new(&salt).map_err(|_| CryptoError::PasswordHash)?),
        hash: Some(Output::new(out.as_ref()).map_err(|_| CryptoError::PasswordHash)?),
    };
    Ok(phc.to_string())
}

/// [`verify_password`] in `memory`. A hash whose parameters need more
/// memory than `memory` holds (none the vault writes) is checked the
/// allocating way.
pub fn verify_password_in(memory: &mut HashMemory, phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm.as_str() != ARGON2ID_IDENT.as_str() {
        return false;
    }
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.block_count() > memory.0.len() {
        return verify_password(phc, password);
    }
    let Ok(version) = Version::try_from(parsed.version.unwrap_or(0x13)) else {
        return false;
    };
    let hasher = Argon2::new(Algorithm::Argon2id, version, params);
    let mut out = Zeroizing::new(vec![0u8; expected.as_ref().len()]);
    let hashed = memory.with(|m| {
        hasher.hash_password_into_with_memory(password.as_bytes(), salt, out.as_mut_slice(), m)
    });
    // `Output`'s equality is constant-time.
    hashed.is_ok() && Output::new(&out).is_ok_and(|o| &o == expected)
}

/// [`dummy_verify`] in `memory`.
pub fn dummy_verify_in(memory: &mut HashMemory, password: &str) {
    if let Some(phc) = dummy_hash() {
        let _ = verify_password_in(memory, phc, password);
    }
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
    fn hashing_in_reused_memory_matches_the_allocating_way() {
        let mut memory = HashMemory::new();
        let a = hash_password_in(&mut memory, "123456").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_eq!(a.len(), hash_password("123456").unwrap().len());
        assert!(verify_password(&a, "123456"), "read the usual way");
        assert!(!verify_password(&a, "123457"));
        let b = hash_password("654321").unwrap();
        assert!(
            verify_password_in(&mut memory, &b, "654321"),
            "and the other way"
        );
        assert!(!verify_password_in(&mut memory, &b, "654320"));
        assert!(
            verify_password_in(&mut memory, &a, "123456"),
            "memory reused"
        );
        assert!(!verify_password_in(&mut memory, "not a hash", "x"));
        let argon2i = a.replacen("$argon2id$", "$argon2i$", 1);
        assert!(!verify_password_in(&mut memory, &argon2i, "123456"));
        dummy_verify_in(&mut memory, "anything");
        assert!(
            memory.0.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)),
            "wiped"
        );
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
