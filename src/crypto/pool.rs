//! A bounded gate in front of the blocking pool for slow crypto (argon2id, bulk age). At most
//! `permits` jobs run at once, so a flood of reports cannot take every core from health checks
//! and reviewers; at most `max_waiting` wait, beyond which callers are told to come back later.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::telemetry::spawn_blocking_with_tracing;

/// Why a job did not run to completion.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Too many jobs are already waiting: shed load instead of queueing without bound.
    #[error("too many cryptographic jobs are waiting")]
    Saturated,
    /// The job panicked or was cancelled by the runtime shutting down.
    #[error("a cryptographic job did not complete")]
    Aborted,
}

/// The gate. Cheap to clone; clones share the same permits.
#[derive(Clone)]
pub struct CryptoPool {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

struct WaitingGuard(Arc<AtomicUsize>);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CryptoPool {
    /// A gate that runs `permits` jobs at once and lets `max_waiting` more wait.
    pub fn new(permits: usize, max_waiting: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
        }
    }

    /// Runs `job` on the blocking pool once a permit is free. If the caller is dropped while the
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
        spawn_blocking_with_tracing(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|_| PoolError::Aborted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_beyond_the_queue_are_refused_and_the_rest_complete() {
        let pool = CryptoPool::new(1, 1);
        let slow = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(|| std::thread::sleep(Duration::from_millis(200)))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 2).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = pool.run(|| 3).await;
        assert!(matches!(refused, Err(PoolError::Saturated)));
        slow.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 2);
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
}
