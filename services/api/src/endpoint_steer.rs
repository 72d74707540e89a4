//! Pausing and resuming a webhook endpoint by hand, shared by the operator routes
//! (`POST /endpoints/pause`, `/endpoints/resume`) and the console's forms: the checks on
//! the text naming it (an endpoint as listed, or any URL of it: the store reduces it to
//! its endpoint), the change, and the endpoint as it is after the change.

use foodseg_engine::netguard::MAX_URL_LEN;
use foodseg_engine::store::{EndpointSteer, EndpointView};

use crate::error::ApiError;
use crate::request::with_deadline;
use crate::state::AppState;

/// What an operator does to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Nothing, not even probes, is sent to it until it is resumed by hand.
    Pause,
    /// Whatever paused it; its waiting deliveries become due at once.
    Resume,
}

impl Steer {
    pub fn as_str(self) -> &'static str {
        match self {
            Steer::Pause => "pause",
            Steer::Resume => "resume",
        }
    }
}

/// An endpoint after an operator's pause or resume.
#[derive(Debug, Clone)]
pub struct Steered {
    /// `scheme://host:port`.
    pub endpoint: String,
    /// The endpoint as it is now (`None` only if it was deleted meanwhile).
    pub view: Option<EndpointView>,
    /// Whether its state changed (`false`: it already was paused by hand, or active).
    pub changed: bool,
}

/// Pauses or resumes (by hand, recorded as `actor`) the endpoint `raw` names; 404
/// `endpoint_not_found` when no delivery was ever made to it, 422 when `raw` cannot be
/// an endpoint (empty, a NUL, over 2,048 characters).
pub async fn steer(
    state: &AppState,
    steer: Steer,
    raw: &str,
    actor: &str,
) -> Result<Steered, ApiError> {
    let text = check(raw)?;
    let store = &state.store;
    let outcome = match steer {
        Steer::Pause => with_deadline(store.pause_endpoint(text, actor)).await?,
        Steer::Resume => with_deadline(store.resume_endpoint_by_hand(text, actor)).await?,
    };
    let (endpoint, changed) = match outcome {
        EndpointSteer::Changed(endpoint) => (endpoint, true),
        EndpointSteer::Unchanged(endpoint) => (endpoint, false),
        EndpointSteer::NotFound => {
            return Err(ApiError::EndpointNotFound(endpoint_named(text)));
        }
    };
    tracing::info!(endpoint = %endpoint, actor, action = steer.as_str(), changed, "webhook endpoint steered by hand");
    let view = with_deadline(store.endpoint(&endpoint)).await?;
    Ok(Steered {
        endpoint,
        view,
        changed,
    })
}

/// The text of an endpoint field, trimmed: not empty, no NUL (Postgres text cannot hold
/// one), at most 2,048 characters (the longest URL accepted).
fn check(raw: &str) -> Result<&str, ApiError> {
    const FIELD: &str = "endpoint";
    let text = raw.trim();
    if text.is_empty() {
        return Err(ApiError::EmptyField { field: FIELD });
    }
    let invalid = |reason: &str| ApiError::InvalidUrl {
        field: FIELD,
        reason: reason.to_string(),
    };
    if text.contains('\0') {
        return Err(invalid("contains a NUL character"));
    }
    if text.chars().count() > MAX_URL_LEN {
        return Err(invalid("is over 2,048 characters"));
    }
    Ok(text)
}

/// What a not-found answer names: the URL's scheme, host and port when it parses, never
/// its user info, path or query (they may hold a token).
fn endpoint_named(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(url) => match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
            _ => url.scheme().to_string(),
        },
        Err(_) => "the endpoint given".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_fields_are_checked() {
        assert_eq!(check("  https://h:443 ").unwrap(), "https://h:443");
        assert_eq!(check(" ").unwrap_err().code(), "empty_field");
        assert_eq!(check("http://h\0").unwrap_err().code(), "invalid_url");
        let long = format!("https://h/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check(&long).unwrap_err().code(), "invalid_url");
    }
}
