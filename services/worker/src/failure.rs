//! How a job's failure is classified: permanent failures end the job at once with a
//! message that says what was wrong; transient ones are retried with backoff, bounded.

use std::fmt;

/// Why one attempt of a job did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Retrying cannot help (404, not an image, over a cap, truncated, refused address).
    Permanent(String),
    /// Retrying may help (image host 5xx or timeout, connection error, out of memory,
    /// a crash while processing).
    Transient(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Permanent(r) | Failure::Transient(r) => r,
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, Failure::Permanent(_))
    }

    /// A blocking task that panicked or was cancelled: the job may succeed on a retry.
    pub fn from_join(stage: &str, e: tokio::task::JoinError) -> Self {
        if e.is_panic() {
            Self::from_panic(stage, e.into_panic())
        } else {
            Failure::Transient(format!("{stage} was cancelled"))
        }
    }

    /// Work that panicked: the job may succeed on a retry.
    pub fn from_panic(stage: &str, panic: Box<dyn std::any::Any + Send>) -> Self {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Failure::Transient(format!("worker crashed during {stage}: {text}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}
