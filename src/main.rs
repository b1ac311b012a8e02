//! The `pii-vault` command: parse, set up logging, load settings, run.

use pii_vault::audit::{Action, Decision};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use pii_vault::audit::EventDraft;
use pii_vault::audit::sequencer::commit_now;
use pii_vault::clock::{Clock, SystemClock};
use pii_vault::config::Settings;
use pii_vault::policy::Policy;
use pii_vault::store::{Mutation, Unit};
use pii_vault::vault::RootKeyOrigin;
use pii_vault::{crypto, telemetry};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "pii-vault",
    version,
    about = "A customer-data vault: encrypted fields, purpose-bound access, consent, data subject requests and a verifiable audit trail."
)]
struct Cli {
    /// Configuration file (default: ./pii-vault.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Refuse to start without an explicitly configured root key.
        #[arg(long)]
        production: bool,
    },
    /// Create or upgrade the database schema and the keyring, finish
    /// interrupted erasures and erase again customers listed in the
    /// tombstone file (after restoring an older backup), then exit.
    Migrate,
    /// Import a portability export into an EMPTY vault: the same customer,
    /// values, purposes (with their collection times) and consents.
    Import {
        /// The export package (JSON) of an access or portability request.
        file: PathBuf,
    },
    /// Run the retention sweeper once: remove purposes whose retention
    /// ended, delete values left without one, audit each deletion.
    Sweep {
        /// Sweep as of this time instead of now, e.g. 2031-01-01T00:00:00Z.
        #[arg(long, value_name = "RFC3339")]
        as_of: Option<String>,
    },
    /// Validate policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage machine clients.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Manage people who log in with a password.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Rotate and retire keys: KEK versions, the root key, the signing key.
    Keys {
        #[command(subcommand)]
        command: pii_vault::keys::cli::KeysCommand,
    },
    /// The audit trail: export, public keys, offline verification,
    /// checkpoints, retention.
    Audit {
        #[command(subcommand)]
        command: pii_vault::audit::cli::AuditCommand,
    },
    /// Run the load benchmark (starts its own vault unless --target is given).
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Benchmark a running vault at this URL instead of starting one.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// With --target: `role=client_id:secret` (helpdesk required; dpo for erase, admin for rewrap).
    #[arg(long = "credentials", value_name = "ROLE=ID:SECRET")]
    credentials: Vec<String>,
    /// Database for the vault the benchmark starts (default: SQLite in a temporary directory).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Policy directory for the vault the benchmark starts.
    #[arg(long, default_value = "./policies")]
    policy_dir: PathBuf,
    /// Customers to seed before measuring.
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Comma-separated scenarios: read, read-field, create, search, mixed, erase, export, rewrap.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "read,read-field,create,search,mixed,erase,export,rewrap"
    )]
    scenarios: Vec<String>,
    /// PID of a targeted server, for its memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check a policy directory; exit 0 when valid, 1 with every problem otherwise.
    Check {
        /// Directory of *.toml policy files (default: the configured policy_dir).
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Create a client; prints its id and secret once.
    Add(ClientAdd),
    /// Disable a client: its tokens stop working at once.
    Disable {
        /// The client id.
        id: Uuid,
    },
}

#[derive(Args)]
struct ClientAdd {
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

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user; the password is read from standard input.
    Add {
        #[arg(long)]
        username: String,
        /// A role declared in the policy (dpo, auditor, …).
        #[arg(long)]
        role: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Policy {
        command: PolicyCommand::Check { dir },
    } = &cli.command
    {
        return policy_check(cli.config.as_deref(), dir.clone());
    }
    if let Command::Bench(args) = cli.command {
        return bench(args);
    }
    if let Command::Audit {
        command: pii_vault::audit::cli::AuditCommand::Verify { public_key, export },
    } = &cli.command
    {
        return pii_vault::audit::cli::verify_command(public_key, export);
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pii-vault: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(&settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pii-vault: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pii-vault: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    telemetry::init_tracing("text");
    let opts = pii_vault::bench::Options {
        target: args.target,
        credentials: args.credentials,
        database_url: args.database_url,
        policy_dir: args.policy_dir,
        customers: args.customers,
        connections: args.connections.max(1),
        duration: std::time::Duration::from_secs(args.duration.max(1)),
        scenarios: args.scenarios,
        server_pid: args.server_pid,
    };
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(pii_vault::bench::run(opts)));
    match report {
        Ok(r) if args.json => match serde_json::to_string_pretty(&r) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pii-vault bench: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(r) => {
            print!("{}", pii_vault::bench::table(&r));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pii-vault bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn policy_check(config: Option<&std::path::Path>, dir: Option<PathBuf>) -> ExitCode {
    let dir = match dir {
        Some(d) => d,
        None => match Settings::load(config) {
            Ok(s) => s.policy_dir,
            Err(e) => {
                eprintln!("pii-vault: {e}");
                return ExitCode::from(2);
            }
        },
    };
    match Policy::load_dir(&dir) {
        Ok(p) => {
            println!(
                "{}: valid ({} purposes, {} fields, {} roles)",
                dir.display(),
                p.purposes.len(),
                p.fields.len(),
                p.roles.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match command {
        Command::Serve { production } => serve(settings, clock, production).await,
        Command::Migrate => {
            let opened = pii_vault::open(&settings, clock.as_ref(), false, true).await?;
            warn_dev_key(&opened.origin);
            println!(
                "database schema and keyring are up to date ({})",
                opened.store.backend()
            );
            pii_vault::requests::erasure::recover_command(&opened, &settings, clock.as_ref()).await
        }
        Command::Import { file } => {
            pii_vault::requests::export::import_command(&settings, clock.as_ref(), &file).await
        }
        Command::Sweep { as_of } => {
            pii_vault::retention::sweep_command(&settings, clock, as_of.as_deref()).await
        }
        Command::Clients {
            command: ClientsCommand::Add(args),
        } => clients_add(settings, clock, args).await,
        Command::Clients {
            command: ClientsCommand::Disable { id },
        } => {
            let opened = pii_vault::open(&settings, clock.as_ref(), false, false).await?;
            let unit = Unit {
                mutations: vec![Mutation::SetClientDisabled { id, disabled: true }],
                events: vec![cli_event(Action::ClientDisable).reason("client_id", &id.to_string())],
            };
            commit_now(opened.store.as_ref(), clock.as_ref(), unit)
                .await
                .map_err(|e| match e {
                    pii_vault::audit::CommitError::NotFound => {
                        anyhow::anyhow!("no client with id {id}")
                    }
                    other => anyhow::anyhow!("cannot disable the client: {other}"),
                })?;
            println!("client {id} disabled; its tokens no longer work");
            Ok(())
        }
        Command::Users {
            command: UsersCommand::Add { username, role },
        } => users_add(settings, clock, username, role).await,
        Command::Keys { command } => pii_vault::keys::cli::run(command, settings, clock).await,
        Command::Audit { command } => pii_vault::audit::cli::run(command, &settings, clock).await,
        Command::Policy { .. } | Command::Bench(_) => Ok(()),
    }
}

fn cli_event(action: Action) -> EventDraft {
    pii_vault::actor::Actor::cli().event(action, Decision::Allowed)
}

fn warn_dev_key(origin: &RootKeyOrigin) {
    if let RootKeyOrigin::DevelopmentFile { path, created } = origin {
        let verb = if *created { "created" } else { "using" };
        tracing::warn!(
            "{verb} a DEVELOPMENT root key at {} — anyone who can read that file and the database \
             can read every value. For production set PII_VAULT_MASTER_KEY_FILE and run `serve --production`.",
            path.display()
        );
    }
}

async fn serve(settings: Settings, clock: Arc<dyn Clock>, production: bool) -> anyhow::Result<()> {
    let listen = settings.listen.clone();
    let (state, origin) = pii_vault::build_state(settings, clock, production).await?;
    warn_dev_key(&origin);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, backend = state.store.backend(), "pii-vault listening");
    eprintln!(
        "pii-vault listening on http://{addr}\n\
         Create a first client:  pii-vault clients add --name helpdesk --role helpdesk\n\
         then get a token:       curl -s http://{addr}/v1/token -H 'content-type: application/json' \\\n\
         \x20                        -d '{{\"grant_type\":\"client_credentials\",\"client_id\":\"…\",\"client_secret\":\"…\"}}'"
    );
    pii_vault::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("pii-vault stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn clients_add(
    settings: Settings,
    clock: Arc<dyn Clock>,
    args: ClientAdd,
) -> anyhow::Result<()> {
    let opened = pii_vault::open(&settings, clock.as_ref(), false, true).await?;
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
    commit_now(opened.store.as_ref(), clock.as_ref(), unit)
        .await
        .map_err(|e| match e {
            pii_vault::audit::CommitError::Conflict(_) => {
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

async fn users_add(
    settings: Settings,
    clock: Arc<dyn Clock>,
    username: String,
    role: String,
) -> anyhow::Result<()> {
    let opened = pii_vault::open(&settings, clock.as_ref(), false, true).await?;
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
    commit_now(opened.store.as_ref(), clock.as_ref(), unit)
        .await
        .map_err(|e| match e {
            pii_vault::audit::CommitError::Conflict(_) => {
                anyhow::anyhow!("a user named {username:?} already exists")
            }
            other => anyhow::anyhow!("cannot create the user: {other}"),
        })?;
    println!("user {username} created (id {id}, role {role})");
    Ok(())
}
