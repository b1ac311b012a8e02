//! The sequencer: the one path by which changes and audit events reach the
//! database. Requests hand it a [`Unit`] and wait; it gathers whatever units
//! are waiting into one batch, commits the batch in one transaction (group
//! commit: one fsync for many requests) and answers each caller only once
//! its unit is durable. If the commit fails every caller in the batch gets
//! [`CommitError::Unavailable`] and nothing of theirs was stored; the next
//! batch simply tries again, so the sequencer recovers by itself once the
//! database is back.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::store::{ChainHead, Mutation, Store, StoreError, Unit, UnitOutcome};

use super::StoredEvent;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// A constraint refused this unit's change (nothing of it was stored).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row this unit changes does not exist.
    #[error("not found")]
    NotFound,
    /// The batch could not be made durable.
    #[error("audit trail unavailable")]
    Unavailable,
}

struct Job {
    unit: Unit,
    reply: oneshot::Sender<Result<Vec<StoredEvent>, CommitError>>,
    /// When the unit was handed over: the audit lag runs from here to durable.
    enqueued: Instant,
}

/// Handle to the sequencer task. Cheap to clone.
#[derive(Clone)]
pub struct Sequencer {
    tx: mpsc::Sender<Job>,
    /// Counts committed units that changed a principal (e.g. disabled a
    /// client); caches of authenticated callers compare against it.
    principal_epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Sequencer {
    /// Starts the sequencer task on the current runtime.
    pub fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 8);
        tokio::spawn(run(store, clock, rx, max_batch.max(1)));
        Sequencer {
            tx,
            principal_epoch: Arc::default(),
        }
    }

    /// See [`Sequencer::principal_epoch`]'s field: read it before looking a
    /// principal up, store it with what was cached.
    pub fn principal_epoch(&self) -> u64 {
        self.principal_epoch
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Commits one unit and waits until it is durable.
    pub async fn commit(&self, unit: Unit) -> Result<Vec<StoredEvent>, CommitError> {
        let changes_principal = unit.mutations.iter().any(Mutation::changes_principal);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                unit,
                reply,
                enqueued: Instant::now(),
            })
            .await
            .map_err(|_| CommitError::Unavailable)?;
        let result = rx.await.map_err(|_| CommitError::Unavailable)?;
        if changes_principal && result.is_ok() {
            self.principal_epoch
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        result
    }

    /// Commits many units, each on its own (its own savepoint and outcome,
    /// in the order given), and waits until every one is durable or
    /// refused. They are handed over together, so they share commits.
    pub async fn commit_all(&self, units: Vec<Unit>) -> Vec<Result<Vec<StoredEvent>, CommitError>> {
        let changes_principal = units
            .iter()
            .any(|u| u.mutations.iter().any(Mutation::changes_principal));
        let mut waiting = Vec::with_capacity(units.len());
        for unit in units {
            let (reply, rx) = oneshot::channel();
            let job = Job {
                unit,
                reply,
                enqueued: Instant::now(),
            };
            waiting.push(match self.tx.send(job).await {
                Ok(()) => Some(rx),
                Err(_) => None,
            });
        }
        let mut outcomes = Vec::with_capacity(waiting.len());
        for rx in waiting {
            outcomes.push(match rx {
                Some(rx) => rx.await.unwrap_or(Err(CommitError::Unavailable)),
                None => Err(CommitError::Unavailable),
            });
        }
        if changes_principal && outcomes.iter().any(Result::is_ok) {
            self.principal_epoch
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        outcomes
    }
}

/// Commits a unit directly, without a running sequencer (command-line tools).
pub async fn commit_now(
    store: &dyn Store,
    clock: &dyn Clock,
    unit: Unit,
) -> Result<Vec<StoredEvent>, CommitError> {
    let outcomes = store
        .commit_batch(std::slice::from_ref(&unit), clock.now_micros())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "audit append failed");
            CommitError::Unavailable
        })?;
    outcomes
        .into_iter()
        .next()
        .ok_or(CommitError::Unavailable)?
        .map_err(unit_error)
}

fn unit_error(e: StoreError) -> CommitError {
    match e {
        StoreError::Conflict(what) => CommitError::Conflict(what),
        StoreError::NotFound => CommitError::NotFound,
        StoreError::Database(_) | StoreError::Config(_) => CommitError::Unavailable,
    }
}

async fn run(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    // The head the last commit left: the next batch links on from it
    // without reading it first (the store checks it is still the head).
    let mut head: Option<ChainHead> = None;
    loop {
        let n = rx.recv_many(&mut jobs, max_batch).await;
        if n == 0 {
            return; // every handle dropped: shutting down
        }
        metrics::gauge!("pii_vault_audit_queue_depth").set(rx.len() as f64);
        let units: Vec<Unit> = jobs
            .iter_mut()
            .map(|j| std::mem::take(&mut j.unit))
            .collect();
        let started = Instant::now();
        let result = store
            .commit_batch_after(&units, clock.now_micros(), head.as_ref())
            .await
            .map(|(outcomes, after)| {
                head = Some(after);
                outcomes
            });
        metrics::histogram!("pii_vault_audit_batch_size").record(n as f64);
        metrics::histogram!("pii_vault_audit_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                let appended: usize = outcomes
                    .iter()
                    .map(|o: &UnitOutcome| o.as_ref().map(Vec::len).unwrap_or(0))
                    .sum();
                metrics::counter!("pii_vault_audit_events_total").increment(appended as u64);
                for (job, outcome) in jobs.drain(..).zip(outcomes) {
                    metrics::histogram!("pii_vault_audit_lag_seconds")
                        .record(job.enqueued.elapsed().as_secs_f64());
                    // A caller that gave up (timeout, disconnect) is not an error.
                    let _ = job.reply.send(outcome.map_err(unit_error));
                }
            }
            Err(e) => {
                // Whatever the failed commit left, the next one reads it.
                head = None;
                metrics::counter!("pii_vault_audit_append_failures_total").increment(1);
                tracing::error!(error = %e, batch = n, "audit batch failed; callers get 503");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(CommitError::Unavailable));
                }
            }
        }
    }
}

/// Where a unit goes: the serving process's sequencer, or straight to the
/// store (command-line tools, which run without one). Key operations and
/// erasures take one, so the same code serves both.
pub enum Committer<'a> {
    Sequencer(&'a Sequencer),
    Direct {
        store: &'a dyn Store,
        clock: &'a dyn Clock,
    },
}

impl Committer<'_> {
    pub async fn commit(&self, unit: Unit) -> Result<Vec<StoredEvent>, CommitError> {
        match self {
            Committer::Sequencer(s) => s.commit(unit).await,
            Committer::Direct { store, clock } => commit_now(*store, *clock, unit).await,
        }
    }
}
