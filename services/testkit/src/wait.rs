//! Polling a condition until it holds or a deadline passes.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;

/// What a [`wait_until`] check returns: `bool` (done or not) or `Option<T>` (the value
/// once it is there).
pub trait Check {
    type Value;
    fn into_value(self) -> Option<Self::Value>;
}

impl Check for bool {
    type Value = ();
    fn into_value(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn into_value(self) -> Option<T> {
        self
    }
}

/// Calls `check` every few milliseconds until it returns `true` / `Some(value)`, and
/// returns that value; fails once `deadline` has passed without success.
///
/// ```ignore
/// let row = wait_until(Duration::from_secs(5), || async { fetch_row().await.ok().flatten() }).await?;
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
        if let Some(value) = check().await.into_value() {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= until {
            bail!("condition still false after {deadline:?}");
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(50));
    }
}
