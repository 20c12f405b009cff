//! Bounded waiting for tests: every wait has a deadline, so a broken test fails instead of
//! hanging.

use std::future::Future;
use std::time::Duration;

/// A condition did not hold in time.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The deadline.
        after: Duration,
    },
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
pub async fn until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Result<(), WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timeout_error(what, timeout));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the async `condition` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(
    timeout: Duration,
    what: &str,
    mut condition: F,
) -> Result<(), WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timeout_error(what, timeout));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Blocks, calling `f` every `every` until it returns `Some` or `timeout` passes (for tests
/// without a runtime, or inside `block_in_place`).
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, WaitError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if std::time::Instant::now() >= deadline {
            return Err(timeout_error(what, timeout));
        }
        std::thread::sleep(every);
    }
}

/// Blocks, checking `condition` every 50 ms until it holds or `timeout` passes.
pub fn poll_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Result<(), WaitError> {
    poll(timeout, Duration::from_millis(50), what, || {
        condition().then_some(())
    })
}

fn timeout_error(what: &str, after: Duration) -> WaitError {
    WaitError::Timeout {
        what: what.to_owned(),
        after,
    }
}
