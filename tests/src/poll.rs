//! Bounded polling instead of sleeping.
//!
//! Much of what tests observe happens asynchronously (audit records written in batches, a
//! backend going away after its client disconnects, a listener appearing after a reload). A test
//! polls for the condition with a deadline: it finishes as soon as the condition holds, and
//! when it never does, the error says what was last seen.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Interval between two checks.
const INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Ok(Ok(value))`, for at most `timeout`. `Ok(Err(state))`
/// means "not yet" (the state is reported if time runs out); `Err` aborts at once.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<std::result::Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let state = match check().await? {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}; last seen: {state}");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// The blocking form of [`eventually`].
pub fn eventually_blocking<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = match check()? {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}; last seen: {state}");
        }
        std::thread::sleep(INTERVAL);
    }
}
