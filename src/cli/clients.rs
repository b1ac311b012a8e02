//! `pii-vault clients …`: the machine clients that call the API.

use std::sync::Arc;

use clap::{Args, Subcommand};
use uuid::Uuid;

use super::cli_event;
use crate::audit::sequencer::commit_now;
use crate::audit::{Action, CommitError};
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto;
use crate::store::{Mutation, Unit};

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Create a client; prints its id and secret once.
    Add(ClientAdd),
    /// Disable a client: its tokens stop working at once.
    Disable {
        /// The client id.
        id: Uuid,
    },
}

#[derive(Debug, Args)]
pub struct ClientAdd {
    /// A unique name, e.g. the tool's name.
    #[arg(long)]
    name: String,
    /// A role declared in the policy (helpdesk, marketing_tool, …).
    #[arg(long)]
    role: String,
    /// Print {"client_id": …, "client_secret": …}.
    #[arg(long)]
    json: bool,
}

/// Runs one `clients` subcommand.
pub async fn run(
    command: ClientsCommand,
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    match command {
        ClientsCommand::Add(args) => add(&settings, clock.as_ref(), args).await,
        ClientsCommand::Disable { id } => disable(&settings, clock.as_ref(), id).await,
    }
}

/// Creates a client with a fresh secret (stored as its SHA-256) and prints
/// the secret once. Recorded as `client.create`.
async fn add(settings: &Settings, clock: &dyn Clock, args: ClientAdd) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, true).await?;
    if opened.policy.role(&args.role).is_none() {
        anyhow::bail!(
            "role {:?} is not declared in the policy (declared: {})",
            args.role,
            opened
                .policy
                .roles
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if args.name.is_empty() || args.name.len() > 100 {
        anyhow::bail!("--name must be 1–100 characters");
    }
    let id = Uuid::now_v7();
    let secret = crypto::generate_secret()?;
    let unit = Unit {
        mutations: vec![Mutation::InsertClient {
            id,
            name: args.name.clone(),
            role: args.role.clone(),
            secret_sha256: crypto::sha256_hex(&secret),
            at: clock.now_micros(),
        }],
        events: vec![
            cli_event(Action::ClientCreate)
                .reason("client_id", &id.to_string())
                .reason("role", &args.role),
        ],
    };
    commit_now(opened.store.as_ref(), clock, unit)
        .await
        .map_err(|e| match e {
            CommitError::Conflict(_) => {
                anyhow::anyhow!("a client named {:?} already exists", args.name)
            }
            other => anyhow::anyhow!("cannot create the client: {other}"),
        })?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"client_id": id.to_string(), "client_secret": secret})
        );
    } else {
        println!("client_id:     {id}");
        println!("client_secret: {secret}");
        println!("(the secret is shown only now; store it in your secret manager)");
    }
    Ok(())
}

/// Disables a client. Recorded as `client.disable`.
async fn disable(settings: &Settings, clock: &dyn Clock, id: Uuid) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let unit = Unit {
        mutations: vec![Mutation::SetClientDisabled { id, disabled: true }],
        events: vec![cli_event(Action::ClientDisable).reason("client_id", &id.to_string())],
    };
    commit_now(opened.store.as_ref(), clock, unit)
        .await
        .map_err(|e| match e {
            CommitError::NotFound => anyhow::anyhow!("no client with id {id}"),
            other => anyhow::anyhow!("cannot disable the client: {other}"),
        })?;
    println!("client {id} disabled; its tokens no longer work");
    Ok(())
}
