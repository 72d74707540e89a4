//! Following the models directory while a service runs: on SIGHUP, and every
//! `FOODSEG_MODELS_POLL` when its files changed, the registry is loaded afresh and handed
//! to the service, which puts the new models and versions in place without a restart.

use std::path::PathBuf;
use std::time::Duration;

use foodseg_models::{Fingerprint, Registry};
use tokio_util::sync::CancellationToken;

/// The models directory as last loaded, and how often to look at it again.
#[derive(Debug, Clone)]
pub struct ModelsWatch {
    dir: PathBuf,
    poll: Option<Duration>,
    seen: Fingerprint,
}

impl ModelsWatch {
    /// Takes the directory's fingerprint now: call it before loading the registry the
    /// service starts with, so that a change made in between is noticed. `poll` of `None`
    /// leaves SIGHUP as the only trigger.
    pub fn new(dir: PathBuf, poll: Option<Duration>) -> Self {
        let seen = Fingerprint::of(&dir).unwrap_or_default();
        ModelsWatch { dir, poll, seen }
    }

    /// Until `stop`: on SIGHUP, and at every poll that finds the directory's files
    /// changed, loads the registry (off the async threads: it hashes every ONNX file) and
    /// awaits `apply` with it. A directory that does not load is logged and left alone
    /// until it changes again or the next SIGHUP; the service keeps what it had.
    pub async fn run<F, Fut>(mut self, stop: CancellationToken, mut apply: F)
    where
        F: FnMut(Registry) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut hangup = hangup_signal();
        let mut tick = tokio::time::interval(self.poll.unwrap_or(Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let forced = tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick(), if self.poll.is_some() => false,
                Some(()) = recv(&mut hangup) => true,
            };
            let dir = self.dir.clone();
            let seen = self.seen.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let now = Fingerprint::of(&dir).unwrap_or_default();
                if !forced && now == seen {
                    return None;
                }
                Some((now, Registry::load(&dir)))
            })
            .await;
            match loaded {
                Ok(None) => {}
                Ok(Some((now, Ok(registry)))) => {
                    self.seen = now;
                    tracing::info!(dir = %self.dir.display(), forced, "models directory changed; loading it");
                    apply(registry).await;
                }
                Ok(Some((now, Err(e)))) => {
                    self.seen = now;
                    tracing::error!(dir = %self.dir.display(), error = %foodseg_engine::error_chain(&e),
                        "the models directory changed but does not load; keeping the models in use");
                }
                Err(e) => tracing::error!(error = %e, "loading the models directory crashed"),
            }
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; models reload by polling only"))
        .ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

/// The next SIGHUP; never, without a listener.
async fn recv(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    std::future::pending().await
}
