//! Running a test body with a time limit and showing server logs when it fails.
//!
//! What makes an integration failure debuggable is the proxy's and the database's own account
//! of what happened. A test body runs inside [`watch`]: if it returns an error, the error gains
//! the tails of the relevant log files; if it panics (an `assert!`), the tails are printed to
//! stderr (which the test runner shows for failing tests) before the panic continues; if it
//! hangs, it is stopped after the limit instead of hanging the suite.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow};
use futures_util::FutureExt;

/// The longest a single test body may run.
pub const TEST_TIME_LIMIT: Duration = Duration::from_secs(240);

/// Lines of each log shown on failure.
const TAIL_LINES: usize = 60;

/// Runs `test` for at most `limit`, attaching the tails of `logs` to any failure.
pub async fn watch<F, T>(logs: &[(String, PathBuf)], limit: Duration, test: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    match AssertUnwindSafe(tokio::time::timeout(limit, test))
        .catch_unwind()
        .await
    {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(error))) => Err(anyhow!("{error:?}\n\n{}", log_tails(logs))),
        Ok(Err(_)) => Err(anyhow!(
            "the test did not finish within {limit:?}\n\n{}",
            log_tails(logs)
        )),
        Err(panic) => {
            eprintln!("{}", log_tails(logs));
            std::panic::resume_unwind(panic)
        }
    }
}

/// The tails of `logs`, labelled.
pub fn log_tails(logs: &[(String, PathBuf)]) -> String {
    logs.iter()
        .map(|(label, path)| {
            format!(
                "---- {label}: {} (last {TAIL_LINES} lines) ----\n{}",
                path.display(),
                crate::process::tail(path, TAIL_LINES)
            )
        })
        .collect::<Vec<_>>()
        .join("")
}
