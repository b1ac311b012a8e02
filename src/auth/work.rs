//! The one limiter of password work. Every argon2id hash or verification
//! on a request path (intake codes, code checks, the password grant and its
//! dummy verification for unknown names) runs through [`PasswordWork`]: a
//! few at once (`max_concurrent`, each holding 19 MiB for its duration),
//! a short queue behind them (`max_waiting` callers, each waiting at most
//! `max_wait`), and beyond that 503 `unavailable` with `Retry-After`. So a
//! flood of unauthenticated requests costs a fixed amount of memory and of
//! CPU, however many arrive at once.
//!
//! The work runs on `max_concurrent` threads of its own, not on tokio's
//! blocking pool, and each thread keeps one 19 MiB working memory
//! ([`HashMemory`]) that every hash it runs reuses. A fresh 19 MiB
//! allocation per hash is left resident by the allocator (glibc grows a
//! thread's arena by about 200 MiB before it reuses the space), and tokio's
//! pool has up to 512 threads; this way the memory held for password work
//! is `max_concurrent` × 19 MiB, allocated on first use.
//!
//! The permit travels with the work onto its thread: a caller that gives up
//! (a timeout, a closed connection) does not free its place until the hash
//! it started has finished.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use zeroize::Zeroizing;

use crate::crypto::password::{self as pw, HashMemory};
use crate::error::{ServiceError, ServiceResult};

/// Callers allowed to wait, per running hash.
const WAITING_PER_PERMIT: usize = 8;
/// The longest a caller waits for its turn.
const MAX_WAIT: Duration = Duration::from_secs(5);

pub struct PasswordWork {
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    max_waiting: usize,
    max_wait: Duration,
    waiting: AtomicUsize,
    gauge: Arc<Gauge>,
    /// The threads' queue (never longer than `max_concurrent`: a job is
    /// sent only with a permit). Dropping it ends the threads.
    jobs: Option<mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce(&mut HashMemory) + Send>;

/// Starts `n` threads that run jobs until the sender is dropped. `None`
/// when not even one could be started.
fn start_threads(n: usize) -> Option<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let mut started = 0;
    for i in 0..n {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new()
            .name(format!("password-work-{i}"))
            .spawn(move || {
                let mut memory: Option<HashMemory> = None;
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(job) = job else { break };
                    let memory = memory.get_or_insert_with(HashMemory::new);
                    // A panicking job loses its answer, not the thread.
                    let run = std::panic::AssertUnwindSafe(|| job(memory));
                    let _ = std::panic::catch_unwind(run);
                }
            });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::error!(error = %e, "cannot start a password work thread"),
        }
    }
    (started > 0).then_some(tx)
}

/// Hashes running now, and the most that ever ran at once.
#[derive(Default)]
struct Gauge {
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl std::fmt::Debug for PasswordWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordWork")
            .field("max_concurrent", &self.max_concurrent)
            .field("max_waiting", &self.max_waiting)
            .finish()
    }
}

/// Decrements the running count when the work ends, even by a panic.
struct Running(Arc<Gauge>);

impl Running {
    fn start(gauge: &Arc<Gauge>) -> Self {
        let now = gauge.running.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.peak.fetch_max(now, Ordering::SeqCst);
        Running(Arc::clone(gauge))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes a waiter's place; gives it back when dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PasswordWork {
    /// At most `max_concurrent` hashes at once (at least 1), `max_waiting`
    /// callers queued behind them for at most `max_wait` each.
    pub fn new(max_concurrent: usize, max_waiting: usize, max_wait: Duration) -> Self {
        let max_concurrent = max_concurrent.max(1);
        PasswordWork {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            max_waiting,
            max_wait,
            waiting: AtomicUsize::new(0),
            gauge: Arc::default(),
            jobs: start_threads(max_concurrent),
        }
    }

    /// As many hashes at once as the machine has CPUs, between 2 and 4; a
    /// queue of 8 callers per hash, each waiting at most 5 seconds.
    pub fn for_this_machine() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let n = cpus.clamp(2, 4);
        Self::new(n, n * WAITING_PER_PERMIT, MAX_WAIT)
    }

    /// The most hashes that run at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// The most callers that wait for their turn.
    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// The most hashes that ever ran at once through this limiter.
    pub fn peak(&self) -> usize {
        self.gauge.peak.load(Ordering::SeqCst)
    }

    /// A new argon2id hash of `secret` (a PHC string).
    pub async fn hash(&self, secret: Zeroizing<String>) -> ServiceResult<String> {
        self.run(move |m| pw::hash_password_in(m, &secret))
            .await?
            .map_err(ServiceError::internal)
    }

    /// Whether `secret` matches `phc`.
    pub async fn verify(&self, phc: String, secret: Zeroizing<String>) -> ServiceResult<bool> {
        self.run(move |m| pw::verify_password_in(m, &phc, &secret))
            .await
    }

    /// Whether `secret` matches `phc`; with no `phc` (an unknown name) the
    /// same work against a dummy hash, and `false`.
    pub async fn verify_or_dummy(
        &self,
        phc: Option<String>,
        secret: Zeroizing<String>,
    ) -> ServiceResult<bool> {
        self.run(move |m| match phc {
            Some(phc) => pw::verify_password_in(m, &phc, &secret),
            None => {
                pw::dummy_verify_in(m, &secret);
                false
            }
        })
        .await
    }

    /// Runs `work` on one of the threads once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let permit = self.permit().await?;
        let gauge = Arc::clone(&self.gauge);
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let out = {
                let _running = Running::start(&gauge);
                work(memory)
            };
            drop(permit);
            let _ = tx.send(out);
        });
        match &self.jobs {
            Some(jobs) => jobs
                .send(job)
                .map_err(|_| ServiceError::internal("the password work threads are gone"))?,
            // No thread of our own could be started: tokio's pool instead.
            None => {
                tokio::task::spawn_blocking(move || job(&mut HashMemory::new()));
            }
        }
        rx.await
            .map_err(|_| ServiceError::internal("a password work job panicked"))
    }

    async fn permit(&self) -> ServiceResult<OwnedSemaphorePermit> {
        if let Ok(p) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let _place = Waiting(&self.waiting);
        match tokio::time::timeout(self.max_wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(busy()),
        }
    }
}

fn busy() -> ServiceError {
    metrics::counter!("pii_vault_password_work_refused_total").increment(1);
    ServiceError::unavailable().detail("too many password checks at once; retry shortly")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// A gate the work waits at until the test opens it.
    #[derive(Default)]
    struct Gate(std::sync::Mutex<bool>, std::sync::Condvar);

    impl Gate {
        fn wait(&self) {
            let mut open = self.0.lock().unwrap();
            while !*open {
                open = self.1.wait(open).unwrap();
            }
        }
        fn open(&self) {
            *self.0.lock().unwrap() = true;
            self.1.notify_all();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_max_concurrent_and_a_bounded_queue() {
        let work = Arc::new(PasswordWork::new(2, 3, Duration::from_secs(60)));
        let gate = Arc::new(Gate::default());
        let mut calls = Vec::new();
        for _ in 0..20 {
            let (work, gate) = (Arc::clone(&work), Arc::clone(&gate));
            calls.push(tokio::spawn(
                async move { work.run(move |_| gate.wait()).await },
            ));
        }
        // With the gate closed: two run, three wait, fifteen are refused.
        loop {
            let done = calls.iter().filter(|c| c.is_finished()).count();
            if done == 15
                && work.gauge.running.load(Ordering::SeqCst) == 2
                && work.waiting.load(Ordering::SeqCst) == 3
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gate.open();
        let (mut ok, mut busy) = (0, 0);
        for c in calls {
            match c.await.unwrap() {
                Ok(()) => ok += 1,
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::Unavailable);
                    assert_eq!(e.retry_after, Some(1));
                    busy += 1;
                }
            }
        }
        assert_eq!((ok, busy), (5, 15));
        assert_eq!(work.peak(), 2);
        assert_eq!(work.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(work.gauge.running.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_max_wait() {
        let work = PasswordWork::new(1, 4, Duration::from_millis(20));
        let held = Arc::clone(&work.permits).acquire_owned().await.unwrap();
        let e = work.run(|_| ()).await.unwrap_err();
        assert_eq!(e.code, "unavailable");
        drop(held);
        work.run(|_| ()).await.unwrap();
        assert_eq!(work.peak(), 1);
    }

    #[tokio::test]
    async fn hashes_verify_and_the_dummy_never_matches() {
        let work = PasswordWork::for_this_machine();
        assert!((2..=4).contains(&work.max_concurrent()));
        let phc = work.hash(Zeroizing::new("123456".into())).await.unwrap();
        assert!(
            work.verify(phc.clone(), Zeroizing::new("123456".into()))
                .await
                .unwrap()
        );
        assert!(
            !work
                .verify(phc.clone(), Zeroizing::new("654321".into()))
                .await
                .unwrap()
        );
        assert!(
            !work
                .verify_or_dummy(None, Zeroizing::new("123456".into()))
                .await
                .unwrap()
        );
        assert!(
            work.verify_or_dummy(Some(phc), Zeroizing::new("123456".into()))
                .await
                .unwrap()
        );
    }
}
