//! How a job's failure is classified: permanent failures end the job at once with a
//! message that says what was wrong; transient ones are retried with backoff, bounded.

use std::fmt;

use foodseg_engine::netguard::Refusal;
use foodseg_pipeline::{FetchError, SegmentError};

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

/// Permanent: undecodable images and model outputs that cannot be read. Transient:
/// runtime failures such as device out-of-memory, which may pass on a retry.
impl From<SegmentError> for Failure {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Postprocess(e) => {
                Failure::Permanent(format!("cannot read the model's output: {e}"))
            }
            e if e.is_permanent() => Failure::Permanent(e.to_string()),
            e => Failure::Transient(foodseg_engine::error_chain(&e)),
        }
    }
}

/// Permanent: HTTP 4xx (but 408/429), over the size cap, refused addresses, redirect
/// loops. Transient: HTTP 5xx, timeouts, connection failures (name lookups included).
impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Self {
        if let Some(refusal) = Refusal::find(&e).filter(|r| r.is_permanent()) {
            let what = match refusal {
                Refusal::Address(_) | Refusal::Resolves { .. } => "address",
                _ => "URL",
            };
            return Failure::Permanent(format!(
                "image_url redirects to a refused {what}: {refusal}"
            ));
        }
        if e.is_permanent() {
            Failure::Permanent(e.to_string())
        } else {
            Failure::Transient(foodseg_engine::error_chain(&e))
        }
    }
}

/// Runs CPU-bound work off the async threads; a panic becomes a transient failure.
pub(crate) async fn blocking<T: Send + 'static>(
    stage: &'static str,
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Failure::from_join(stage, e))?
}

#[cfg(test)]
mod tests {
    use foodseg_pipeline::DecodeError;
    use foodseg_pipeline::postprocess::PostprocessError;

    use super::*;

    #[test]
    fn stage_failures_are_classified() {
        assert_eq!(
            Failure::from(SegmentError::from(DecodeError::Empty)),
            Failure::Permanent("image data is empty".into())
        );
        let unreadable = PostprocessError::MissingOutput {
            name: "output1".into(),
        };
        assert_eq!(
            Failure::from(SegmentError::from(unreadable)),
            Failure::Permanent(
                "cannot read the model's output: model output \"output1\" is missing".into()
            )
        );
        assert!(!Failure::from(SegmentError::ModelNotLoaded("124096".into())).is_permanent());
    }
}
