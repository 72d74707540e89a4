//! Why a URL may not be fetched: refused for good, or its host cannot be resolved now.

use super::Blocked;

/// Why [`NetPolicy::check_url`](super::NetPolicy::check_url) or a guarded client refused a
/// URL. The guarded client's resolver and redirect policy fail with this error, so it can
/// be found in a request error's causes with [`Refusal::find`].
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("has no host")]
    NoHost,
    /// The host is an IP address the policy refuses.
    #[error("{0}")]
    Address(Blocked),
    /// Every address the host name resolves to is refused; `blocked` is the first.
    #[error("{host} resolves to {blocked}")]
    Resolves { host: String, blocked: Blocked },
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("resolving {host} timed out")]
    LookupTimeout { host: String },
}

impl Refusal {
    /// Refused for good (no retry can pass), rather than unresolvable right now.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Scheme(_) | Self::NoHost | Self::Address(_) | Self::Resolves { .. } => true,
            Self::Lookup { .. } | Self::NoAddress { .. } | Self::LookupTimeout { .. } => false,
        }
    }

    /// The refusal among `error` and its causes, looking inside `io::Error`s too (which
    /// hold their inner error apart from their source).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(refusal) = e.downcast_ref::<Refusal>() {
                return Some(refusal);
            }
            cause = match e.downcast_ref::<std::io::Error>() {
                Some(io) => io
                    .get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
        None
    }
}
