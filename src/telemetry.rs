//! Logs and metrics. Log lines carry the route and the request id, never a
//! personal value, token or secret (handlers log codes and ids only).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Starts logging to stderr. `RUST_LOG` sets the level (default `info`).
pub fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second initialisation (tests) is not an error.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The thread that folds histogram samples into their buckets.
const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Installs the Prometheus recorder once per process, with the thread that
/// keeps it from growing.
pub fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            // Histogram samples pile up in the recorder until they are
            // folded into their buckets: by a scrape of /metrics, or here,
            // so that a vault nobody scrapes does not grow without bound.
            let upkeep = handle.clone();
            let started = std::thread::Builder::new()
                .name(UPKEEP_THREAD.into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            Some(handle)
        })
        .clone()
}

/// Buckets (seconds, or events for batch sizes) of every histogram: latencies
/// are exported as Prometheus histograms, which aggregate across processes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 100.0,
    1000.0,
];

/// The failure counters an operator alerts on: exported from start-up (at 0),
/// so an alert on `rate(…)` or `increase(…)` works before the first failure.
pub const FAILURE_COUNTERS: &[(&str, &str)] = &[
    (
        "pii_vault_audit_append_failures_total",
        "Audit batches that could not be made durable (the requests in them failed)",
    ),
    (
        "pii_vault_erasure_log_purge_failures_total",
        "Erasures after which the database's log could not be purged of deleted values",
    ),
    (
        "pii_vault_password_work_refused_total",
        "Password checks refused because the password-work limiter was full",
    ),
];

/// `# HELP` lines for every metric, and the failure counters at 0.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for (name, help) in FAILURE_COUNTERS {
        describe_counter!(*name, *help);
        metrics::counter!(*name).absolute(0);
    }
    describe_counter!(
        "pii_vault_http_requests_total",
        "HTTP requests by matched route, method (other for unknown methods) and status"
    );
    describe_histogram!(
        "pii_vault_http_request_seconds",
        Unit::Seconds,
        "HTTP request latency by matched route"
    );
    describe_counter!(
        "pii_vault_access_decisions_total",
        "Access decisions by decision and reason"
    );
    describe_counter!("pii_vault_audit_events_total", "Audit events appended");
    describe_gauge!(
        "pii_vault_audit_queue_depth",
        "Units waiting for the audit sequencer"
    );
    describe_histogram!("pii_vault_audit_batch_size", "Units per audit commit");
    describe_histogram!(
        "pii_vault_audit_commit_seconds",
        Unit::Seconds,
        "Duration of one audit commit"
    );
    describe_histogram!(
        "pii_vault_audit_lag_seconds",
        Unit::Seconds,
        "Time from a unit's submission to its commit"
    );
    describe_gauge!(
        "pii_vault_tombstone_log_broken",
        "1 while the tombstone log fails verification"
    );
    describe_gauge!(
        "pii_vault_audit_witness_mismatch",
        "1 while the audit witness disagrees with the database"
    );
    describe_gauge!("pii_vault_keys_active_version", "The active KEK version");
    describe_gauge!("pii_vault_keys_data_keys", "Data keys per KEK version");
    describe_gauge!(
        "pii_vault_keys_rewrap_total",
        "Data keys to rewrap per old KEK version"
    );
    describe_gauge!(
        "pii_vault_keys_rewrap_done",
        "Data keys rewrapped per old KEK version"
    );
    describe_gauge!(
        "pii_vault_keys_rewrap_remaining",
        "Data keys still wrapped by an old KEK version"
    );
    describe_counter!(
        "pii_vault_keys_rewrapped_total",
        "Data keys rewrapped to the active KEK"
    );
}

#[cfg(test)]
mod tests {
    /// Histogram samples are folded into their buckets by a thread of the
    /// process, whether or not anything scrapes /metrics.
    #[test]
    fn the_recorder_comes_with_the_thread_that_keeps_it_from_growing() {
        assert!(super::metrics_handle().is_some());
        // A new thread names itself once it runs: until then it carries its
        // parent's name, so look again for a while.
        let mut threads = Vec::new();
        for _ in 0..200 {
            threads = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect();
            if threads.iter().any(|name| name == super::UPKEEP_THREAD) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("no {} thread: {threads:?}", super::UPKEEP_THREAD);
    }
}
