//! `pii-vault users …`: the people who log in with a password.
//!
//! Passwords are read from standard input (one line), never from the
//! command line, where `ps` and shell history would show them. `disable`
//! and `set-password` return once the change is in force: a serving
//! process looks the user up on every call but may reuse a verified caller
//! for up to [`TTL`] (`src/auth/cache.rs`), so they wait that long after
//! the commit.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::cli_event;
use crate::audit::sequencer::commit_now;
use crate::audit::{Action, CommitError};
use crate::auth::cache::TTL;
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto;
use crate::store::{Mutation, PrincipalRow, Store, Unit};

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from standard input.
    Add {
        #[arg(long)]
        username: String,
        /// A role declared in the policy (dpo, auditor, …).
        #[arg(long)]
        role: String,
    },
    /// Disable a user: no new token is issued, and tokens already issued
    /// stop working within a second (the command waits that long).
    Disable {
        /// The user's name.
        username: String,
    },
    /// Reset a user's password, read from standard input (never from the
    /// command line). Tokens issued before the reset stop working; the old
    /// password is refused from then on.
    SetPassword {
        /// The user's name.
        username: String,
    },
    /// List the users: id, name, role, whether disabled (never a password).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `users` subcommand.
pub async fn run(
    command: UsersCommand,
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add { username, role } => {
            add(&settings, clock.as_ref(), username, role).await
        }
        UsersCommand::Disable { username } => disable(&settings, clock.as_ref(), &username).await,
        UsersCommand::SetPassword { username } => {
            set_password(&settings, clock.as_ref(), &username).await
        }
        UsersCommand::List { json } => {
            let opened = crate::open(&settings, clock.as_ref(), false, false).await?;
            let rows = opened
                .store
                .principals(crate::store::PrincipalKind::User)
                .await
                .map_err(|e| anyhow::anyhow!("cannot list the users: {e}"))?;
            super::print_principals(&rows, json, "user")
        }
    }
}

/// Creates a user whose password (at least 12 characters) is read from
/// standard input and stored as an Argon2 hash. Recorded as `user.create`.
async fn add(
    settings: &Settings,
    clock: &dyn Clock,
    username: String,
    role: String,
) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, true).await?;
    if opened.policy.role(&role).is_none() {
        anyhow::bail!("role {role:?} is not declared in the policy");
    }
    let valid_name = !username.is_empty()
        && username.len() <= 64
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if !valid_name {
        anyhow::bail!("--username must be 1–64 characters of letters, digits and . _ - @");
    }
    let password = read_password()?;
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password)).await??;
    let id = Uuid::now_v7();
    let unit = Unit {
        mutations: vec![Mutation::InsertUser {
            id,
            username: username.clone(),
            role: role.clone(),
            password_hash: hash,
            at: clock.now_micros(),
        }],
        events: vec![
            cli_event(Action::UserCreate)
                .reason("user_id", &id.to_string())
                .reason("role", &role),
        ],
    };
    commit_now(opened.store.as_ref(), clock, unit)
        .await
        .map_err(|e| match e {
            CommitError::Conflict(_) => {
                anyhow::anyhow!("a user named {username:?} already exists")
            }
            other => anyhow::anyhow!("cannot create the user: {other}"),
        })?;
    println!("user {username} created (id {id}, role {role})");
    Ok(())
}

/// Disables a user. Recorded as `user.disable`.
async fn disable(settings: &Settings, clock: &dyn Clock, username: &str) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let user = find_user(opened.store.as_ref(), username).await?;
    let unit = Unit {
        mutations: vec![Mutation::SetUserDisabled {
            id: user.id,
            disabled: true,
        }],
        events: vec![cli_event(Action::UserDisable).reason("user_id", &user.id.to_string())],
    };
    commit_now(opened.store.as_ref(), clock, unit)
        .await
        .map_err(|e| match e {
            CommitError::NotFound => anyhow::anyhow!("no user named {username:?}"),
            other => anyhow::anyhow!("cannot disable the user: {other}"),
        })?;
    settle().await;
    println!(
        "user {username} disabled (id {}); its tokens no longer work",
        user.id
    );
    Ok(())
}

/// Replaces a user's password with one read from standard input (argon2id,
/// as `users add`). Recorded as `user.set_password`.
///
/// The reset time is rounded up to a whole second: tokens carry `iat` in
/// seconds, so every token issued before the command ran is refused, and
/// one issued after it returned is accepted.
async fn set_password(
    settings: &Settings,
    clock: &dyn Clock,
    username: &str,
) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let user = find_user(opened.store.as_ref(), username).await?;
    let password = read_password()?;
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password)).await??;
    let unit = Unit {
        mutations: vec![Mutation::SetUserPassword {
            id: user.id,
            password_hash: hash,
            at: next_whole_second(clock.now_micros()),
        }],
        events: vec![cli_event(Action::UserSetPassword).reason("user_id", &user.id.to_string())],
    };
    commit_now(opened.store.as_ref(), clock, unit)
        .await
        .map_err(|e| match e {
            CommitError::NotFound => anyhow::anyhow!("no user named {username:?}"),
            other => anyhow::anyhow!("cannot set the password: {other}"),
        })?;
    settle().await;
    println!(
        "password of user {username} replaced (id {}); tokens issued before now no longer work",
        user.id
    );
    Ok(())
}

async fn find_user(store: &dyn Store, username: &str) -> anyhow::Result<PrincipalRow> {
    store
        .user_by_name(username)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the user: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("no user named {username:?}"))
}

/// Waits until a change committed just before is in force everywhere: the
/// cache of verified callers has expired (and a reset time rounded up to
/// the next second has passed).
pub(super) async fn settle() {
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
}

/// `micros` rounded up to a whole second.
pub(super) fn next_whole_second(micros: i64) -> i64 {
    let second = 1_000_000;
    match micros.rem_euclid(second) {
        0 => micros,
        rest => micros.saturating_add(second - rest),
    }
}

/// Reads a new password: one line of standard input, checked by
/// [`check_password`].
fn read_password() -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("password (at least {MIN_PASSWORD_CHARS} characters, then Enter):");
    }
    let mut line = Zeroizing::new(String::with_capacity(256));
    stdin.lock().read_line(&mut line)?;
    let password = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    check_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

/// Refuses an empty or too short password, with a message saying why.
fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err(
            "no password given: write it as one line on standard input (it is never taken from \
             the command line)"
                .into(),
        );
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is too short: it must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_passwords_are_refused_with_a_reason() {
        assert!(check_password("").unwrap_err().contains("standard input"));
        let short = check_password("elevenchars").unwrap_err();
        assert!(short.contains("at least 12 characters"), "{short}");
        assert!(check_password("twelve chars").is_ok());
        // Characters, not bytes.
        assert!(check_password("ééééééééééé").is_err());
    }

    #[test]
    fn reset_times_round_up_to_a_whole_second() {
        assert_eq!(next_whole_second(5_000_000), 5_000_000);
        assert_eq!(next_whole_second(5_000_001), 6_000_000);
        assert_eq!(next_whole_second(5_999_999), 6_000_000);
    }
}
