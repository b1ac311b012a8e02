//! CSRF protection for every POST form of the pages.
//!
//! A signed double-submit token: the browser holds a random value in the
//! `pv_csrf` cookie (HttpOnly, SameSite=Strict), and every form carries, in
//! its hidden `csrf` field, a keyed MAC of that value under a key derived
//! from the vault's blind-index secret. A POST whose `csrf` field is not
//! the MAC of its own cookie is refused with 403 before the handler runs
//! ([`super::Form`]). Another site can neither read the cookie nor compute
//! the MAC, and a SameSite=Strict cookie is not even sent on its POSTs.
//!
//! [`token`] and [`check`] take the value the token is bound to, so a page
//! with a session (the console) may bind it to the session instead.

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

use crate::state::AppState;

/// The cookie holding the random value tokens are bound to.
pub const COOKIE: &str = "pv_csrf";
/// The form field.
pub const FIELD: &str = "csrf";
/// Blind-index derivation label (not a policy field name, which is
/// `[a-z][a-z0-9_]*`).
const LABEL: &str = "pii-vault/csrf/v1";

/// A fresh random binding value (for the cookie): 32 bytes, base64url.
pub fn new_binding() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether a cookie value is one [`new_binding`] could have made.
pub fn well_formed(binding: &str) -> bool {
    binding.len() == 43
        && binding
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The form token bound to `binding`.
pub fn token(state: &AppState, binding: &str) -> String {
    hex::encode(state.keys.index.blind_index(LABEL, binding))
}

/// Whether `submitted` is the token bound to `binding` (constant time).
pub fn check(state: &AppState, binding: &str, submitted: &str) -> bool {
    let expected = token(state, binding);
    expected.len() == submitted.len()
        && expected
            .bytes()
            .zip(submitted.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_random_and_well_formed() {
        let a = new_binding().unwrap();
        let b = new_binding().unwrap();
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}!", &a[..42])));
    }
}
