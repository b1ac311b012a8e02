//! `pii-vault users …`: the people who log in with a password.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use clap::Subcommand;
use uuid::Uuid;

use super::cli_event;
use crate::audit::sequencer::commit_now;
use crate::audit::{Action, CommitError};
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto;
use crate::store::{Mutation, Unit};

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
    if std::io::stdin().is_terminal() {
        eprintln!("password (then Enter):");
    }
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = zeroize::Zeroizing::new(password.trim_end_matches(['\r', '\n']).to_owned());
    if password.chars().count() < 12 {
        anyhow::bail!("the password must have at least 12 characters");
    }
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
