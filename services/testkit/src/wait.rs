//! Polling a condition until it holds or a deadline passes: the one poller of the test
//! suites (never sleep to sequence a test).

use std::future::Future;
use std::time::Duration;

use anyhow::bail;

/// What a [`wait_until`] check returns: `bool` (done or not), `Option<T>` (the value once
/// it is there), or either inside a `Result` (an error ends the wait at once).
pub trait Check {
    type Value;
    /// `Ok(Some(value))` when done, `Ok(None)` to keep waiting, `Err` to give up.
    fn outcome(self) -> anyhow::Result<Option<Self::Value>>;
}

impl Check for bool {
    type Value = ();
    fn outcome(self) -> anyhow::Result<Option<()>> {
        Ok(self.then_some(()))
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn outcome(self) -> anyhow::Result<Option<T>> {
        Ok(self)
    }
}

impl<C: Check, E: Into<anyhow::Error>> Check for Result<C, E> {
    type Value = C::Value;
    fn outcome(self) -> anyhow::Result<Option<C::Value>> {
        self.map_err(Into::into)?.outcome()
    }
}

/// Calls `check` every few milliseconds until it returns `true` / `Some(value)`, and
/// returns that value; fails once `deadline` has passed without success, or as soon as
/// the check returns an error.
///
/// ```ignore
/// let row = wait_until(Duration::from_secs(5), || async { store.get(id).await.map(|j| j.filter(done)) })
///     .await
///     .context("the job to finish")?;
/// ```
pub async fn wait_until<F, Fut, C>(deadline: Duration, mut check: F) -> anyhow::Result<C::Value>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
    C: Check,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut interval = Duration::from_millis(2);
    loop {
        if let Some(value) = check().await.outcome()? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= until {
            bail!("condition still false after {deadline:?}");
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(50));
    }
}
