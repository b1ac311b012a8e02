//! `pii-vault keys …`: the key operations from the command line. They work
//! beside running vault processes: those pick up a new KEK version or signing
//! key within `keyring_poll_secs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::actor::Actor;
use crate::answer::Answer;
use crate::clock::Clock;
use crate::config::{Settings, read_key_file, write_key_file};
use crate::crypto::RootKey;
use crate::keys::{Committer, ops, rewrap};
use crate::store::{KeyUse, Store};
use crate::vault::Keys;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Show KEK versions (data keys each wraps, whether it can be retired),
    /// rewrap progress and signing keys.
    Status {
        /// Print the status as JSON (the same document as GET /v1/keys).
        #[arg(long)]
        json: bool,
        /// Also show whether this customer's data key exists, and its KEK version.
        #[arg(long, value_name = "ID")]
        customer_id: Option<Uuid>,
    },
    /// Add a KEK version and make it active. New data keys are wrapped with
    /// it at once; run `keys rewrap` (or let serving processes do it in the
    /// background) to move the existing ones.
    Rotate,
    /// Rewrap every data key still wrapped by an older KEK version with the
    /// active one, printing progress. Safe to interrupt and run again: it
    /// continues where it stopped.
    Rewrap,
    /// Destroy an old KEK version's key material. Refused while it is active
    /// or still wraps a data key or the signing key.
    Retire {
        /// The KEK version to retire.
        version: i64,
    },
    /// Replace the root key: rewraps every KEK and the blind-index secret
    /// with the new key in one transaction. Afterwards only the new key
    /// opens the vault.
    RotateRoot {
        /// File with the new root key (base64 of 32 bytes, mode 0600). If it
        /// does not exist, a new key is generated and written there.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Make a new Ed25519 key sign audit checkpoints. The old public key
    /// stays published (`/v1/audit/public-key`) for older checkpoints.
    /// Access tokens have a key of their own: `rotate-token-signing`.
    RotateSigning,
    /// Make a new Ed25519 key sign access tokens. The old public key stays
    /// in `/.well-known/jwks.json`, and its tokens are accepted, until they
    /// expire. The checkpoint-signing key is left alone.
    RotateTokenSigning {
        /// Refuse the old key's tokens at once (suspected leak of the
        /// token-signing key): every client and user must log in again.
        #[arg(long)]
        revoke_previous: bool,
    },
}

/// Runs one `keys` subcommand on the opened vault, committing directly.
pub async fn run(
    command: KeysCommand,
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let opened = crate::open(&settings, clock.as_ref(), false, false).await?;
    let store = opened.store.as_ref();
    let on = Vault {
        keys: &opened.keys,
        store,
        committer: Committer::Direct {
            store,
            clock: clock.as_ref(),
        },
        clock: clock.as_ref(),
        settings: &settings,
        actor: Actor::cli(),
    };
    match command {
        KeysCommand::Status { json, customer_id } => status(&on, json, customer_id).await,
        KeysCommand::Rotate => rotate(&on).await,
        KeysCommand::Rewrap => rewrap_to_completion(&on).await,
        KeysCommand::Retire { version } => retire(&on, version).await,
        KeysCommand::RotateRoot { new_key_file } => rotate_root(&on, &new_key_file).await,
        KeysCommand::RotateSigning => rotate_signing(&on, KeyUse::Checkpoint, false).await,
        KeysCommand::RotateTokenSigning { revoke_previous } => {
            rotate_signing(&on, KeyUse::Token, revoke_previous).await
        }
    }
}

/// What every key operation works on: the opened vault, committing
/// directly as the command line's operator.
struct Vault<'a> {
    keys: &'a Keys,
    store: &'a dyn Store,
    committer: Committer<'a>,
    clock: &'a dyn Clock,
    settings: &'a Settings,
    actor: Actor,
}

async fn status(on: &Vault<'_>, json: bool, customer_id: Option<Uuid>) -> anyhow::Result<()> {
    let status = ops::status(on.keys, on.store, on.clock, on.settings, customer_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no customer with that id"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(())
}

async fn rotate(on: &Vault<'_>) -> anyhow::Result<()> {
    let r = ops::rotate(
        on.keys,
        on.store,
        &on.committer,
        on.clock,
        &on.actor,
        &Answer::none(),
    )
    .await?;
    println!(
        "KEK version {} is active (replacing version {}). Serving processes use it within \
         {} s. Existing data keys: run `pii-vault keys rewrap`, or let `serve` rewrap them \
         in the background; `pii-vault keys status` shows the progress.",
        r.version, r.previous, on.settings.keyring_poll_secs
    );
    Ok(())
}

async fn retire(on: &Vault<'_>, version: i64) -> anyhow::Result<()> {
    let r = ops::retire(
        Some(on.keys),
        on.store,
        &on.committer,
        on.clock,
        on.settings,
        version,
        &on.actor,
        &Answer::none(),
    )
    .await?;
    println!(
        "KEK version {} retired at {}: its key material is destroyed.",
        r.version, r.retired_at
    );
    Ok(())
}

async fn rotate_root(on: &Vault<'_>, new_key_file: &Path) -> anyhow::Result<()> {
    let (new_root, created) = new_root_key(new_key_file)?;
    let old_root = on.keys.root.load_full();
    let r = ops::rotate_root(on.store, on.clock, &old_root, &new_root, &on.actor).await?;
    if created {
        println!(
            "generated a new root key in {} (mode 0600)",
            new_key_file.display()
        );
    }
    println!(
        "root key replaced: {} KEK version(s) and the blind-index secret are now wrapped \
         by the new key (fingerprint {}; previous {}). The previous root key no longer \
         opens this vault: set PII_VAULT_MASTER_KEY_FILE={} for every vault process and \
         restart them (a process whose key file was replaced in place picks it up by \
         itself), then destroy the old key.",
        r.kek_versions,
        r.fingerprint,
        r.previous_fingerprint,
        new_key_file.display()
    );
    Ok(())
}

async fn rotate_signing(
    on: &Vault<'_>,
    key_use: KeyUse,
    revoke_previous: bool,
) -> anyhow::Result<()> {
    let r = ops::rotate_signing(
        key_use,
        on.keys,
        on.store,
        &on.committer,
        on.clock,
        on.settings,
        revoke_previous,
        &on.actor,
        &Answer::none(),
    )
    .await?;
    if revoke_previous {
        println!(
            "tokens signed by {} are refused from now on",
            r.previous_kid
        );
    }
    let what = match key_use {
        KeyUse::Checkpoint => "checkpoint-signing",
        KeyUse::Token => "token-signing",
    };
    println!(
        "{what} key {} is active (replacing {}); serving processes sign with it within \
         {} s. Public key (base64url): {}",
        r.kid, r.previous_kid, on.settings.keyring_poll_secs, r.public_key
    );
    Ok(())
}

/// Reads the new root key, or generates it when the file does not exist.
fn new_root_key(path: &Path) -> anyhow::Result<(RootKey, bool)> {
    if path.exists() {
        let text = read_key_file(path).map_err(anyhow::Error::msg)?;
        let key = RootKey::from_base64(text.expose_secret())
            .map_err(|_| anyhow::anyhow!("{} is not base64 of 32 bytes", path.display()))?;
        return Ok((key, false));
    }
    let (key, b64) = RootKey::generate()?;
    write_key_file(path, &SecretString::from(b64)).map_err(anyhow::Error::msg)?;
    Ok((key, true))
}

/// Rewraps until every live data key is on the active KEK version, printing
/// progress at most once a second; resumable when interrupted.
async fn rewrap_to_completion(on: &Vault<'_>) -> anyhow::Result<()> {
    let (keys, store, clock, settings) = (on.keys, on.store, on.clock, on.settings);
    let started = Instant::now();
    let mut total = 0u64;
    let mut signing = 0u64;
    let mut failed = 0u64;
    let mut last_print = Instant::now();
    for _ in 0..10 {
        if !rewrap::has_work(keys, store).await? {
            break;
        }
        let mut print = |p: &rewrap::BatchProgress| {
            if p.done >= p.total || last_print.elapsed() >= Duration::from_secs(1) {
                last_print = Instant::now();
                let pct = if p.total == 0 {
                    100.0
                } else {
                    p.done as f64 * 100.0 / p.total as f64
                };
                println!(
                    "version {} -> {}: {}/{} data keys ({pct:.1}%)",
                    p.from_version, p.to_version, p.done, p.total
                );
            }
        };
        let report = rewrap::run_pass(
            keys,
            store,
            &on.committer,
            clock,
            settings.rewrap_batch_size,
            Duration::from_millis(settings.rewrap_pause_ms),
            &on.actor,
            &|| true,
            &mut print,
        )
        .await
        .context("rewrap stopped (run it again to continue)")?;
        total += report.rewrapped;
        signing += report.signing_keys;
        failed += report.failed;
        if !report.skipped_versions.is_empty() {
            anyhow::bail!(
                "data keys under KEK version(s) {:?} that this process could not load; run again",
                report.skipped_versions
            );
        }
        if report.failed > 0 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { total as f64 / secs } else { 0.0 };
    println!(
        "rewrapped {total} data key(s) and {signing} signing key(s) in {secs:.1} s ({rate:.0} data keys/s)"
    );
    if failed > 0 {
        anyhow::bail!(
            "{failed} data key(s) could not be unwrapped and stay on their version (see the log)"
        );
    }
    let active = keys.keyring().active_version();
    let usage = store.kek_usage().await?;
    let pending: i64 = usage
        .iter()
        .filter(|u| u.kek_version != active)
        .map(|u| u.data_keys)
        .sum();
    if pending > 0 {
        anyhow::bail!("{pending} data key(s) are still on another version; run again");
    }
    println!("every live data key is wrapped by KEK version {active}");
    Ok(())
}

fn print_status(s: &ops::KeyStatus) {
    println!("root key fingerprint: {}", s.root_fingerprint);
    println!("active KEK version:   {}", s.active_version);
    println!();
    println!("KEK versions:");
    for v in &s.versions {
        let state = if v.active {
            "active".to_owned()
        } else if v.retired {
            format!("retired {}", v.retired_at.as_deref().unwrap_or_default())
        } else if v.retirable {
            "retirable now".to_owned()
        } else if v.data_keys > 0 || v.signing_keys > 0 {
            "in use: rewrap pending".to_owned()
        } else {
            format!(
                "retirable from {}",
                v.retirable_from.as_deref().unwrap_or_default()
            )
        };
        println!(
            "  {:>4}  created {}  data keys {:>9}  signing keys {}  {state}",
            v.version, v.created_at, v.data_keys, v.signing_keys
        );
    }
    println!();
    if s.rewrap.complete {
        println!("rewrap: complete");
    } else {
        println!("rewrap: {} data key(s) pending", s.rewrap.pending);
    }
    for r in &s.rewrap.versions {
        println!(
            "  version {:>4}: {}/{} done, {} remaining",
            r.version, r.done, r.total, r.remaining
        );
    }
    println!();
    println!("signing keys:");
    for k in &s.signing_keys {
        println!(
            "  {}  {}  created {}{}",
            k.kid,
            if k.active {
                "active"
            } else if k.accepted_for_tokens {
                "replaced (its tokens still accepted)"
            } else {
                "replaced (published for older checkpoints)"
            },
            k.created_at,
            k.retired_at
                .as_deref()
                .map(|r| format!(", replaced {r}"))
                .unwrap_or_default()
        );
    }
    if let Some(c) = &s.customer {
        println!();
        match c.kek_version {
            Some(v) => println!(
                "customer {}: data key {} (KEK version {v})",
                c.customer_id, c.data_key
            ),
            None => println!("customer {}: data key {}", c.customer_id, c.data_key),
        }
    }
}
