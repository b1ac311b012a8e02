//! pii-vault: a customer-data vault. Personal data is encrypted field by
//! field, served only for the purposes it was collected for, and every
//! access is written to a hash-chained audit trail.
//!
//! `main.rs` only hands the parsed command line to [`cli::run`]; everything
//! else lives here so that tests run the same code the binary does. The
//! edges are [`http`] (the JSON API) and [`cli`] (the commands and the load
//! benchmark); nothing below them imports axum or `crate::http`
//! (`tests/api/layering.rs` checks it).

pub mod actor;
pub mod answer;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consent;
pub mod crypto;
pub mod customers;
pub mod error;
pub mod http;
pub mod keys;
pub mod language;
pub mod policy;
pub mod requests;
pub mod retention;
pub mod state;
pub mod store;
pub mod tamper;
pub mod telemetry;
pub mod vault;

use crate::audit::{Action, Decision};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{EventDraft, Sequencer};
use crate::clock::Clock;
use crate::config::Settings;
use crate::policy::Policy;
use crate::state::{AppState, Inner, Throttle};
use crate::store::{Store, Unit};
use crate::vault::{Keys, RootKeyOrigin};

/// Installs `ring` as the process's rustls crypto provider, so TLS (the
/// outbox webhook, the benchmark's client) runs on the crypto library the
/// rest of the vault uses; aws-lc-rs is not built. reqwest is built with
/// `rustls-no-provider`: building a client before this call panics.
/// Idempotent; [`cli::run`] and [`open`] call it first.
pub fn install_tls_provider() {
    // Err means a provider is installed already (by an earlier call).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An opened vault: store, keys and policy, as every command needs them.
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub policy: Policy,
    pub origin: RootKeyOrigin,
}

/// Opens the database (running migrations), the keys and the policy.
/// `create_key`: a missing development key may be created (serve, migrate).
pub async fn open(
    settings: &Settings,
    clock: &dyn Clock,
    production: bool,
    create_key: bool,
) -> anyhow::Result<Opened> {
    crypto::install_jwt_provider();
    install_tls_provider();
    let policy = Policy::load_dir(&settings.policy_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    for warning in &policy.warnings {
        tracing::warn!(%warning, "policy warning");
    }
    let url = settings.database_url().map_err(anyhow::Error::msg)?;
    if production && url.is_sqlite() {
        tracing::warn!("running in production mode on SQLite: one process only, no replication");
    }
    let (root, origin) =
        vault::root_key(settings, production, create_key).map_err(anyhow::Error::msg)?;
    let store = store::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = vault::open_keys(store.as_ref(), clock, root, settings)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(Opened {
        store,
        keys,
        policy,
        origin,
    })
}

/// Builds the application state and starts the audit sequencer.
pub async fn build_state(
    settings: Settings,
    clock: Arc<dyn Clock>,
    production: bool,
) -> anyhow::Result<(AppState, RootKeyOrigin)> {
    let trusted_proxies = auth::client_addr::TrustedProxies::parse(&settings.trusted_proxies)
        .map_err(anyhow::Error::msg)?;
    let opened = open(&settings, clock.as_ref(), production, true).await?;
    let identity_providers =
        auth::oidc::IdentityProviders::new(&settings.identity_providers, &opened.policy)
            .map_err(anyhow::Error::msg)?;
    let tamper = tamper::Tamper::open(&settings, &opened.keys.index, production)
        .await
        .map_err(anyhow::Error::msg)?;
    let sequencer = Sequencer::start(
        Arc::clone(&opened.store),
        Arc::clone(&clock),
        settings.audit_batch_max,
    );
    let policy_digest = policy_digest(&opened.policy);
    let ev = EventDraft::new(
        vault::SYSTEM_ACTOR,
        vault::SYSTEM_ACTOR,
        Action::PolicyLoad,
        Decision::Allowed,
        &uuid::Uuid::now_v7().to_string(),
    )
    .reason("sha256", &policy_digest);
    sequencer
        .commit(Unit::event(ev))
        .await
        .map_err(|e| anyhow::anyhow!("cannot write the policy.load audit event: {e}"))?;
    let throttle = Throttle::new(
        settings.login_max_failures,
        Duration::from_secs(settings.login_window_secs),
    );
    let rate_limit =
        auth::rate_limit::RateLimiter::new(settings.rate_limit_per_sec, settings.rate_limit_burst);
    let intake_codes = auth::rate_limit::RateLimiter::per_hour(settings.intake_codes_per_hour);
    let intake_sources =
        auth::rate_limit::RateLimiter::per_hour(settings.intake_per_source_per_hour);
    let state = AppState::new(Inner {
        store: opened.store,
        policy: Arc::new(opened.policy),
        keys: Arc::new(opened.keys),
        sequencer,
        tamper,
        clock,
        settings: Arc::new(settings),
        throttle,
        rate_limit,
        intake_codes,
        intake_sources,
        trusted_proxies,
        password_work: auth::work::PasswordWork::for_this_machine(),
        auth_cache: Default::default(),
        identity_providers,
        metrics: telemetry::metrics_handle(),
    });
    // Before serving: finish erasures a crash interrupted, and erase again
    // the customers the tombstone log lists that a restored older database
    // still holds (requests::erasure::recover). A broken log is not acted
    // on: the vault then serves no customer data (http::tamper) and says
    // why in /readyz.
    let recovery = requests::erasure::recover(&requests::erasure::Ctx::from_state(&state))
        .await
        .map_err(|e| anyhow::anyhow!("cannot complete pending erasures: {e}"))?;
    if recovery.broken.is_empty() && recovery != requests::erasure::Recovery::default() {
        tracing::warn!(
            resumed = recovery.resumed,
            re_erased = recovery.re_erased,
            tombstones_appended = recovery.appended,
            "erasures completed before serving"
        );
    }
    // The audit trail must extend the last checkpoint witnessed outside the
    // database; if it does not, the vault starts but is not ready.
    audit::checkpoint::start_witness(&state)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the audit witness: {e}"))?;
    retention::start_background(&state);
    keys::start_background(&state);
    requests::background::start_background(&state).map_err(anyhow::Error::msg)?;
    audit::start_background(&state);
    Ok((state, opened.origin))
}

/// SHA-256 of the effective policy, recorded when it is loaded.
pub fn policy_digest(policy: &Policy) -> String {
    let bytes = serde_json::to_vec(policy).unwrap_or_default();
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
}

/// Serves the API on `listener` until `shutdown` completes. Each call
/// knows its peer's address (`ConnectInfo`), from which the client address
/// is found (`auth::client_addr`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = http::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
