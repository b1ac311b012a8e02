//! `pii-vault serve`: the HTTP API until SIGINT or SIGTERM.

use std::sync::Arc;

use super::warn_dev_key;
use crate::clock::Clock;
use crate::config::Settings;

/// Builds the state (finishing interrupted erasures, starting the
/// background tasks), listens on `settings.listen` and serves until a
/// shutdown signal; in-flight requests complete first.
pub async fn serve(
    settings: Settings,
    clock: Arc<dyn Clock>,
    production: bool,
) -> anyhow::Result<()> {
    let listen = settings.listen.clone();
    let (state, origin) = crate::build_state(settings, clock, production).await?;
    warn_dev_key(&origin);
    // Idempotency claims of requests that were running when a process
    // died would hold their keys until they age out: a retry after a crash
    // must run (answers stored with their effect are replayed instead).
    // With several instances, a restart also frees the others' in-flight
    // claims (docs/DEPLOYMENT.md).
    let booted = state.clock.now_micros();
    state
        .sequencer
        .commit(crate::store::Unit {
            mutations: vec![crate::store::Mutation::ReleaseStaleIdempotency { before: booted }],
            events: vec![],
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot release stale idempotency claims: {e}"))?;
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
    crate::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("pii-vault stopped");
    Ok(())
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
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
