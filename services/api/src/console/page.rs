//! How console pages are answered: rendered templates with the console's security
//! headers, [`ConsoleError`], every way a console request can fail, shown as a page
//! with the status code an API client would get, and the job a page's path names.

use askama::Template;
use salvo::http::HeaderValue;
use salvo::prelude::*;

use foodseg_engine::{Job, JobId};

use super::views::ErrorPage;
use crate::error::ApiError;
use crate::request::with_deadline;
use crate::state::AppState;

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("log in first")]
    NotLoggedIn,
    #[error("this form is stale or did not come from the console; reload the page and try again")]
    Csrf,
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the image cannot be shown: {0}")]
    Image(String),
}

impl From<foodseg_engine::StoreError> for ConsoleError {
    fn from(e: foodseg_engine::StoreError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Api(e) => e.status(),
            ConsoleError::NotLoggedIn => StatusCode::UNAUTHORIZED,
            ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::BadInput(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::Image(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Answers with the error page.
    pub fn write_to(self, res: &mut Response) {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "console request failed");
        }
        render(
            res,
            status,
            &ErrorPage {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("Error"),
                message: self.to_string(),
            },
        );
    }
}

/// Renders `page` with `status`.
pub fn render(res: &mut Response, status: StatusCode, page: &impl Template) {
    match page.render() {
        Ok(html) => {
            res.status_code(status);
            res.render(Text::Html(html));
        }
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
            res.render(Text::Plain("console page could not be rendered"));
        }
    }
}

/// The console's answers: no caching, no framing, scripts and styles only from the
/// console itself.
#[handler]
pub async fn security_headers(res: &mut Response) {
    let headers = res.headers_mut();
    let set = |headers: &mut salvo::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "same-origin");
    // The photo and the static files replace this with their own.
    set(headers, "cache-control", "no-store");
}

/// The job the path names (`{job_id}`), or a 404.
pub async fn path_job(req: &Request, state: &AppState) -> Result<Job, ConsoleError> {
    let raw = req.param::<String>("job_id").unwrap_or_default();
    let not_found = || ApiError::JobNotFound(raw.clone());
    let id: JobId = raw.parse().map_err(|_| not_found())?;
    Ok(with_deadline(state.store.get(id))
        .await?
        .ok_or_else(not_found)?)
}
