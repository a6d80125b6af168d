//! A bounded gate in front of dedicated threads for slow crypto (argon2id, bulk age). At most
//! `permits` jobs run at once, so a flood of reports or logins cannot take every core from health
//! checks and reviewers; at most `max_waiting` wait, beyond which callers are told to come back
//! later.
//!
//! The jobs run on threads of their own, one per permit, at a lower scheduling priority (Linux
//! nice [`CRYPTO_NICE`]) than the threads that serve requests: when a login flood keeps every
//! core busy with argon2id, a reviewer's list or a health check still gets the CPU first, and
//! when nothing else runs the jobs get all of it (benches/reviewer_load.rs measures both).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, oneshot};
use tracing::Span;

/// How much lower than the request threads the crypto threads are scheduled (Linux nice: 0 is
/// normal, 19 the lowest). At 10, a runnable request thread gets about nine tenths of a core
/// that it shares with a crypto thread.
pub const CRYPTO_NICE: i32 = 10;

/// Why a job did not run to completion.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Too many jobs are already waiting: shed load instead of queueing without bound.
    #[error("too many cryptographic jobs are waiting")]
    Saturated,
    /// The job panicked, or its thread is gone.
    #[error("a cryptographic job did not complete")]
    Aborted,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The gate. Cheap to clone; clones share the same permits and threads, which end when the
/// last clone is dropped.
#[derive(Clone)]
pub struct CryptoPool {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    jobs: mpsc::Sender<Job>,
}

struct WaitingGuard(Arc<AtomicUsize>);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CryptoPool {
    /// A gate that runs `permits` jobs at once, on as many threads, and lets `max_waiting` more
    /// wait.
    ///
    /// # Panics
    /// If the operating system refuses to start a thread.
    pub fn new(permits: usize, max_waiting: usize) -> Self {
        let permits = permits.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..permits {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("crypto-{index}"))
                .spawn(move || crypto_thread(&queue))
                .expect("the operating system refused a crypto thread");
        }
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            jobs,
        }
    }

    /// Whether a job submitted now would be refused with [`PoolError::Saturated`]: lets a
    /// caller shed a request before doing the work that leads up to its job.
    pub fn is_saturated(&self) -> bool {
        self.waiting.load(Ordering::Acquire) >= self.max_waiting
    }

    /// Runs `job` on a crypto thread once a permit is free. If the caller is dropped while the
    /// job runs, the job still finishes and only then releases its permit.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = {
            if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(PoolError::Saturated);
            }
            let _waiting = WaitingGuard(self.waiting.clone());
            self.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| PoolError::Aborted)?
        };
        let (done, result) = oneshot::channel();
        let span = Span::current();
        let task: Job = Box::new(move || {
            let _permit = permit;
            // A panic drops `done` unsent, which the caller sees as `Aborted`; the thread lives.
            if let Ok(value) = catch_unwind(AssertUnwindSafe(|| span.in_scope(job))) {
                let _ = done.send(value);
            }
        });
        self.jobs.send(task).map_err(|_| PoolError::Aborted)?;
        result.await.map_err(|_| PoolError::Aborted)
    }
}

/// One crypto thread: lowers its own priority, then runs jobs until every sender is gone.
fn crypto_thread(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for the next job, never while one runs.
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux the nice value belongs to the thread (see setpriority(2), "Bugs"), so this lowers
    // only this crypto thread. Refusal (a sandbox without the call) costs priority, not safety.
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), CRYPTO_NICE) {
        tracing::debug!(%error, "could not lower the priority of a crypto thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// Yields to the runtime until `condition` holds, at most 10,000 times: long enough for any
    /// spawned task on this runtime to reach its next await, without measuring time.
    async fn yield_until(condition: impl Fn() -> bool) -> bool {
        for _ in 0..10_000 {
            if condition() {
                return true;
            }
            tokio::task::yield_now().await;
        }
        condition()
    }

    #[tokio::test]
    async fn jobs_beyond_the_queue_are_refused_and_the_rest_complete() {
        let pool = CryptoPool::new(1, 1);
        // The slow job tells the test it holds the only permit, then waits to be released.
        let (started, slow_has_started) = oneshot::channel();
        let (release, released) = mpsc::channel::<()>();
        let slow = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started.send(());
                    // An error means the test ended without releasing the job: end it anyway.
                    let _ = released.recv();
                })
                .await
            }
        });
        slow_has_started.await.unwrap();
        assert!(
            !pool.is_saturated(),
            "a running job still counts as waiting"
        );
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 2).await }
        });
        assert!(
            yield_until(|| pool.is_saturated()).await,
            "the second job never queued"
        );
        // Refused at once, on its first poll, rather than left waiting for the permit.
        let refused = pool.run(|| 3).now_or_never();
        assert!(matches!(refused, Some(Err(PoolError::Saturated))));
        assert!(pool.is_saturated());
        release.send(()).unwrap();
        slow.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 2);
        assert!(!pool.is_saturated());
        assert_eq!(pool.run(|| 4).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_frees_its_permit() {
        let pool = CryptoPool::new(1, 4);
        assert!(matches!(
            pool.run(|| panic!("boom")).await,
            Err(PoolError::Aborted)
        ));
        assert_eq!(pool.run(|| 1).await.unwrap(), 1);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn jobs_run_on_threads_of_lower_priority_than_the_caller() {
        let pool = CryptoPool::new(1, 4);
        let caller = rustix::process::getpriority_process(None).unwrap();
        let (name, nice) = pool
            .run(|| {
                let thread = rustix::thread::gettid();
                let name = std::thread::current().name().map(str::to_owned);
                (
                    name,
                    rustix::process::getpriority_process(Some(thread)).unwrap(),
                )
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("crypto-0"));
        assert_eq!(nice, (caller + CRYPTO_NICE).min(19));
    }
}
