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
use crate::store::{Mutation, PrincipalKind, PrincipalRow, Store, Unit};

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Create a client; prints its id and secret once.
    Add(ClientAdd),
    /// Disable a client: no new token is issued, and tokens already issued
    /// stop working within a second (the command waits that long).
    Disable {
        /// The client's id or name.
        #[arg(value_name = "ID|NAME")]
        client: String,
    },
    /// List the clients: id, name, role, whether disabled (never a secret).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Replace a client's secret; prints the new one once. Tokens issued
    /// with the old secret stop working within a second, and the old
    /// secret is refused from then on.
    RotateSecret {
        /// The client's id or name.
        #[arg(value_name = "ID|NAME")]
        client: String,
        /// Print {"client_id": …, "client_secret": …}.
        #[arg(long)]
        json: bool,
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
        ClientsCommand::Disable { client } => disable(&settings, clock.as_ref(), &client).await,
        ClientsCommand::List { json } => list(&settings, clock.as_ref(), json).await,
        ClientsCommand::RotateSecret { client, json } => {
            rotate_secret(&settings, clock.as_ref(), &client, json).await
        }
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
    print_secret(id, &secret, args.json);
    Ok(())
}

/// Prints a client's id and its secret, shown only this once.
fn print_secret(id: Uuid, secret: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"client_id": id.to_string(), "client_secret": secret})
        );
    } else {
        println!("client_id:     {id}");
        println!("client_secret: {secret}");
        println!("(the secret is shown only now; store it in your secret manager)");
    }
}

/// Finds a client by id or, failing that, by name.
async fn find_client(store: &dyn Store, client: &str) -> anyhow::Result<PrincipalRow> {
    let by_id = match Uuid::parse_str(client) {
        Ok(id) => store
            .principal(PrincipalKind::Client, id)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the client: {e}"))?,
        Err(_) => None,
    };
    let found = match by_id {
        Some(row) => Some(row),
        None => store
            .client_by_name(client)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the client: {e}"))?,
    };
    found.ok_or_else(|| anyhow::anyhow!("no client with id or name {client:?}"))
}

/// Lists the clients, by name.
async fn list(settings: &Settings, clock: &dyn Clock, json: bool) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let rows = opened
        .store
        .principals(PrincipalKind::Client)
        .await
        .map_err(|e| anyhow::anyhow!("cannot list the clients: {e}"))?;
    super::print_principals(&rows, json, "client")
}

/// Replaces a client's secret and prints the new one once. Recorded as
/// `client.rotate_secret`. The change time is rounded up to a whole second
/// (tokens carry `iat` in seconds), and the command returns once every
/// serving process refuses the old tokens.
async fn rotate_secret(
    settings: &Settings,
    clock: &dyn Clock,
    client: &str,
    json: bool,
) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let row = find_client(opened.store.as_ref(), client).await?;
    let secret = crypto::generate_secret()?;
    let unit = Unit {
        mutations: vec![Mutation::SetClientSecret {
            id: row.id,
            secret_sha256: crypto::sha256_hex(&secret),
            at: super::users::next_whole_second(clock.now_micros()),
        }],
        events: vec![
            cli_event(Action::ClientRotateSecret).reason("client_id", &row.id.to_string()),
        ],
    };
    commit_now(opened.store.as_ref(), clock, unit)
        .await
        .map_err(|e| match e {
            CommitError::NotFound => anyhow::anyhow!("no client with id or name {client:?}"),
            other => anyhow::anyhow!("cannot replace the secret: {other}"),
        })?;
    super::users::settle().await;
    print_secret(row.id, &secret, json);
    Ok(())
}

/// Disables a client. Recorded as `client.disable`.
async fn disable(settings: &Settings, clock: &dyn Clock, client: &str) -> anyhow::Result<()> {
    let opened = crate::open(settings, clock, false, false).await?;
    let id = find_client(opened.store.as_ref(), client).await?.id;
    let unit = Unit {
        mutations: vec![Mutation::SetClientDisabled { id, disabled: true }],
        events: vec![cli_event(Action::ClientDisable).reason("client_id", &id.to_string())],
    };
    commit_now(opened.store.as_ref(), clock, unit)
        .await
        .map_err(|e| match e {
            CommitError::NotFound => anyhow::anyhow!("no client with id or name {client:?}"),
            other => anyhow::anyhow!("cannot disable the client: {other}"),
        })?;
    super::users::settle().await;
    println!("client {id} disabled; its tokens no longer work");
    Ok(())
}
