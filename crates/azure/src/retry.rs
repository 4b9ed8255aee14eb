//! Bounded retries with exponential backoff and full jitter for transient failures inside one
//! release attempt, and the injectable clock used for token expiry and certificate validity.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{ErrorClass, SkrError};

/// How often and how patiently a step is retried when it fails transiently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, at least 1.
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub initial_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts, 250 ms doubling up to 4 s.
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// `attempts` attempts without waiting between them (for tests).
    pub fn immediate(attempts: u32) -> Self {
        Self {
            attempts,
            initial_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    /// The upper bound of the delay before retry number `retry` (from 0).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }

    /// The delay before retry number `retry`: uniformly random in `[ceiling / 2, ceiling]`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let mut random = [0u8; 4];
        // Without randomness the delay is the ceiling, which is still a valid backoff.
        if aws_lc_rs::rand::fill(&mut random).is_err() {
            return ceiling;
        }
        let fraction = f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX);
        half + (ceiling - half).mul_f64(fraction)
    }

    /// Runs `op` until it succeeds, fails with a non-transient error, or the attempts are used
    /// up; returns the last error then.
    pub async fn run<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T, SkrError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SkrError>>,
    {
        let attempts = self.attempts.max(1);
        let mut retry = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(err) if err.class() == ErrorClass::Transient && retry + 1 < attempts => {
                    let delay = self.delay(retry);
                    tracing::debug!(step = what, retry, ?delay, error = %err, "retrying");
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    retry += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// The wall clock, replaceable in tests so that token expiry and certificate validity can be
/// checked at a pinned time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(SystemTime::now))
    }

    /// A clock that always reads `time`.
    pub fn fixed(time: SystemTime) -> Self {
        Self(Arc::new(move || time))
    }

    /// A clock that reads `now()`.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock(..)")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::{ErrorKind, Step};

    #[test]
    fn delays_double_and_are_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.ceiling(0), Duration::from_millis(250));
        assert_eq!(policy.ceiling(2), Duration::from_secs(1));
        assert_eq!(policy.ceiling(10), Duration::from_secs(4));
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(4));
        for retry in 0..6 {
            let delay = policy.delay(retry);
            assert!(delay >= policy.ceiling(retry) / 2 && delay <= policy.ceiling(retry));
        }
    }

    fn status(code: u16) -> SkrError {
        SkrError::new(
            Step::Release,
            ErrorKind::Status {
                url: "u".into(),
                status: code,
                code: None,
                message: None,
            },
        )
    }

    #[tokio::test]
    async fn retries_transient_errors_only_and_boundedly() {
        let calls = AtomicU32::new(0);
        let err = RetryPolicy::immediate(3)
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(status(503))
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.class(), ErrorClass::Transient);

        calls.store(0, Ordering::SeqCst);
        RetryPolicy::immediate(3)
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(status(403))
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let value = RetryPolicy::immediate(3)
            .run("t", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(status(429))
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 7);
    }
}
