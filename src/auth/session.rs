//! People signing in with a vault user: the password check the token
//! endpoint's password grant uses ([`verify_user`]), and the server-side
//! sessions of the staff console.
//!
//! A console session is a random 32-byte id the browser keeps in a cookie;
//! the database holds only its SHA-256 (`console_sessions`), so a copy of
//! the database signs nobody in. A session ends
//! - after [`IDLE_SECS`] without a request, or [`ABSOLUTE_SECS`] after
//!   sign-in, whichever comes first (by the vault's clock);
//! - at sign-out (the row is deleted);
//! - when its user is disabled (the row is deleted with the change, and a
//!   lookup refuses a disabled user anyway) or their password is reset
//!   after sign-in.
//!
//! Sign-in is throttled exactly like the password grant of `POST
//! /v1/token` (the same per-name counter of failures, [`crate::state::Throttle`])
//! and every attempt is audited: `console.sign_in` allowed or denied (with
//! `error` `invalid_credentials` or `too_many_attempts`), `console.sign_out`.

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::actor::{Actor, ClientAddr};
use crate::audit::{Action, Decision, EventDraft};
use crate::crypto;
use crate::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::{Mutation, PrincipalKind, PrincipalRow, Unit};

/// A session ends after this long without a request.
pub const IDLE_SECS: i64 = 15 * 60;
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_SECS: i64 = 8 * 3600;
/// A session's last use is written at most this often (each request reads
/// the session; fewer writes, at the cost of this much idle slack).
const TOUCH_EVERY_SECS: i64 = 30;

/// Longer usernames are refused before any lookup (as by the token endpoint).
pub const MAX_NAME_BYTES: usize = 256;

const MICROS: i64 = 1_000_000;

/// The user `username` with `password`, if the password is right and the
/// user is enabled. An unknown name is verified against a dummy hash, so
/// the answer takes as long; both run through the one limiter of password
/// work (503 when it is full).
pub async fn verify_user(
    state: &AppState,
    username: &str,
    password: Zeroizing<String>,
) -> ServiceResult<Option<PrincipalRow>> {
    let row = state.store.user_by_name(username).await?;
    let phc = row.as_ref().map(|r| r.credential.clone());
    let right = state.password_work.verify_or_dummy(phc, password).await?;
    Ok(row.filter(|r| right && !r.disabled))
}

/// A session just started: the id goes into the cookie, nowhere else.
pub struct Started {
    pub id: Zeroizing<String>,
    pub actor: Actor,
}

/// Why a sign-in was refused.
#[derive(Debug)]
pub enum Refused {
    /// Wrong username or password (the same for both).
    InvalidCredentials,
    /// Too many failures for this name: seconds to wait.
    Throttled(u64),
}

/// The SHA-256 (hex) of a session id: what the database holds.
fn hash(id: &str) -> String {
    crypto::sha256_hex(id)
}

fn new_id() -> ServiceResult<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| ServiceError::internal("no randomness for a session id"))?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}

/// Whether a cookie value could be a session id (43 base64url characters).
pub fn well_formed(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A refused attempt is by nobody yet: the address is recorded hashed.
fn refusal(request_id: &str, addr: &Option<ClientAddr>, error: &str) -> EventDraft {
    let ev = EventDraft::new(
        "anonymous",
        "none",
        Action::ConsoleSignIn,
        Decision::Denied,
        request_id,
    )
    .reason("error", error);
    match addr {
        Some(a) => a.mark(ev, false),
        None => ev,
    }
}

/// Signs `username` in: a new session, or why not.
pub async fn sign_in(
    state: &AppState,
    username: &str,
    password: Zeroizing<String>,
    request_id: &str,
    addr: Option<ClientAddr>,
) -> ServiceResult<Result<Started, Refused>> {
    let kind = PrincipalKind::User;
    if username.is_empty() || username.len() > MAX_NAME_BYTES {
        let ev = refusal(request_id, &addr, "invalid_credentials");
        state.sequencer.commit(Unit::event(ev)).await?;
        return Ok(Err(Refused::InvalidCredentials));
    }
    if let Some(wait) = state.throttle.check(kind, username) {
        let ev = refusal(request_id, &addr, "too_many_attempts");
        state.sequencer.commit(Unit::event(ev)).await?;
        return Ok(Err(Refused::Throttled(wait)));
    }
    let Some(user) = verify_user(state, username, password).await? else {
        state.throttle.failure(kind, username);
        let ev = refusal(request_id, &addr, "invalid_credentials");
        state.sequencer.commit(Unit::event(ev)).await?;
        return Ok(Err(Refused::InvalidCredentials));
    };
    state.throttle.success(kind, username);
    let now = state.clock.now_micros();
    let id = new_id()?;
    let actor = Actor::staff(
        kind,
        user.id.to_string(),
        user.role.clone(),
        request_id.to_owned(),
    )
    .from_addr(addr);
    let unit = Unit {
        mutations: vec![
            Mutation::PruneConsoleSessions {
                idle_before: now - IDLE_SECS * MICROS,
                started_before: now - ABSOLUTE_SECS * MICROS,
            },
            Mutation::InsertConsoleSession {
                id_hash: hash(&id),
                user_id: user.id,
                at: now,
            },
        ],
        events: vec![actor.event(Action::ConsoleSignIn, Decision::Allowed)],
    };
    state.sequencer.commit(unit).await?;
    Ok(Ok(Started { id, actor }))
}

/// The signed-in user of session `id`, as the actor of this request; `None`
/// when there is no such session or it has ended (an ended session's row
/// is deleted here).
pub async fn lookup(
    state: &AppState,
    id: &str,
    request_id: &str,
    addr: Option<ClientAddr>,
) -> ServiceResult<Option<Actor>> {
    if !well_formed(id) {
        return Ok(None);
    }
    let id_hash = hash(id);
    let Some(row) = state.store.console_session(&id_hash).await? else {
        return Ok(None);
    };
    let now = state.clock.now_micros();
    let user = state
        .store
        .principal(PrincipalKind::User, row.user_id)
        .await?;
    let live = now < row.last_seen_at + IDLE_SECS * MICROS
        && now < row.created_at + ABSOLUTE_SECS * MICROS
        && user.as_ref().is_some_and(|u| {
            !u.disabled
                && u.password_changed_at
                    .is_none_or(|changed| changed <= row.created_at)
        });
    let user = match user {
        Some(u) if live => u,
        _ => {
            let unit = Unit {
                mutations: vec![Mutation::DeleteConsoleSession { id_hash }],
                events: vec![],
            };
            state.sequencer.commit(unit).await?;
            return Ok(None);
        }
    };
    if now - row.last_seen_at >= TOUCH_EVERY_SECS * MICROS {
        let unit = Unit {
            mutations: vec![Mutation::TouchConsoleSession { id_hash, at: now }],
            events: vec![],
        };
        state.sequencer.commit(unit).await?;
    }
    Ok(Some(
        Actor::staff(
            PrincipalKind::User,
            user.id.to_string(),
            user.role,
            request_id.to_owned(),
        )
        .from_addr(addr),
    ))
}

/// Ends session `id` server-side (its cookie is worthless from now on).
pub async fn sign_out(state: &AppState, id: &str, actor: &Actor) -> ServiceResult<()> {
    let unit = Unit {
        mutations: vec![Mutation::DeleteConsoleSession { id_hash: hash(id) }],
        events: vec![actor.event(Action::ConsoleSignOut, Decision::Allowed)],
    };
    state.sequencer.commit(unit).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_well_formed() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert_ne!(*a, *b);
        assert!(well_formed(&a) && well_formed(&b));
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}=", &a[..42])));
    }

    #[test]
    fn the_database_holds_only_a_hash() {
        let id = new_id().unwrap();
        let h = hash(&id);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(id.as_str()));
    }
}
