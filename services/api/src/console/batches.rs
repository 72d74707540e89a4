//! The console's batches page (`/console/batches`): the latest batches (`POST /v2/jobs`),
//! newest first, each with its owner key, priority, a progress bar with its jobs per
//! state, the estimated time to finish, and a Cancel button while jobs of it are still
//! queued (a CSRF-checked form post, recorded as `console:<key name>`).

use askama::Template;
use chrono::Utc;
use foodseg_engine::BatchId;
use foodseg_engine::store::{BatchCancel, BatchProgress};
use salvo::prelude::*;

use super::page::{ConsoleError, render};
use super::pages::chrome;
use super::session::session;
use super::views::{Chrome, seconds, when};
use crate::error::ApiError;
use crate::request::{ready_state, with_deadline};

/// Batches the page lists.
const LISTED: i64 = 50;

/// One batch, formatted.
pub struct BatchLine {
    pub id: String,
    pub owner: String,
    pub priority: &'static str,
    pub size: i32,
    pub created: String,
    /// Jobs finished, succeeded or failed (the progress bar's value).
    pub done: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub eta: String,
    pub finished: String,
    pub cancelled: String,
    pub cancelled_by: String,
    pub can_cancel: bool,
}

impl From<BatchProgress> for BatchLine {
    fn from(b: BatchProgress) -> Self {
        let eta = match (b.finished_at, b.eta_seconds()) {
            (Some(_), _) => String::new(),
            (None, Some(s)) => seconds(s),
            (None, None) => "–".into(),
        };
        BatchLine {
            id: b.id.to_string(),
            owner: b.owner_name.clone().unwrap_or_else(|| {
                if b.owner_key_id.is_some() {
                    "(deleted key)".into()
                } else {
                    "(no key)".into()
                }
            }),
            priority: b.priority.as_str(),
            size: b.size,
            created: when(b.created_at),
            done: b.succeeded + b.failed,
            queued: b.queued,
            running: b.running,
            succeeded: b.succeeded,
            failed: b.failed,
            eta,
            finished: b.finished_at.map(when).unwrap_or_default(),
            cancelled: b.cancelled_at.map(when).unwrap_or_default(),
            cancelled_by: b.cancelled_by.unwrap_or_default(),
            can_cancel: b.queued > 0,
        }
    }
}

#[derive(Template)]
#[template(path = "console/batches.html")]
pub struct BatchesPage {
    pub chrome: Chrome,
    pub generated: String,
    pub notice: Option<&'static str>,
    /// The one batch asked for (`?batch=`), when the page shows only it.
    pub only: Option<String>,
    pub batches: Vec<BatchLine>,
}

/// The notice the page shows after a form (`?done=`); unknown values show none.
pub fn notice(done: &str) -> Option<&'static str> {
    match done {
        "cancelled" => Some(
            "Batch cancelled: its queued jobs ended MFR.Job.ERROR and their webhooks are queued; \
             running jobs finish on their own.",
        ),
        "unchanged" => Some("Nothing to cancel: no job of the batch was still queued."),
        _ => None,
    }
}

/// `GET /console/batches` (`?batch=ID`: only that batch)
#[handler]
pub async fn list(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match batches_page(req, depot).await {
        Ok(page) => render(res, StatusCode::OK, &page),
        Err(e) => e.write_to(res),
    }
}

async fn batches_page(req: &Request, depot: &Depot) -> Result<BatchesPage, ConsoleError> {
    let chrome = chrome(depot)?;
    let state = ready_state(depot)?;
    let only = req
        .query::<String>("batch")
        .map(|raw| raw.trim().to_string())
        .filter(|raw| !raw.is_empty());
    let batches = match &only {
        Some(raw) => {
            let id = parse_batch(raw)?;
            let batch = with_deadline(state.store.batch(id, None))
                .await?
                .ok_or_else(|| ApiError::BatchNotFound(raw.clone()))?;
            vec![batch]
        }
        None => with_deadline(state.store.batches(None, LISTED)).await?,
    };
    Ok(BatchesPage {
        chrome,
        generated: when(Utc::now()),
        notice: req.query::<String>("done").and_then(|done| notice(&done)),
        only,
        batches: batches.into_iter().map(BatchLine::from).collect(),
    })
}

fn parse_batch(raw: &str) -> Result<BatchId, ConsoleError> {
    raw.parse()
        .map_err(|_| ApiError::BatchNotFound(raw.to_string()).into())
}

/// `POST /console/batches/{batch_id}/cancel`
#[handler]
pub async fn cancel(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match run_cancel(req, depot).await {
        Ok(done) => res.render(Redirect::other(format!("/console/batches?done={done}"))),
        Err(e) => e.write_to(res),
    }
}

async fn run_cancel(req: &mut Request, depot: &Depot) -> Result<&'static str, ConsoleError> {
    let session = session(depot)?.clone();
    session.check_csrf(req.form::<String>("csrf").await.as_deref())?;
    let state = ready_state(depot)?;
    let raw = req.param::<String>("batch_id").unwrap_or_default();
    let id = parse_batch(&raw)?;
    let actor = session.actor();
    match with_deadline(state.store.cancel_batch(id, None, &actor)).await? {
        BatchCancel::NotFound => Err(ApiError::BatchNotFound(raw).into()),
        BatchCancel::Cancelled(jobs) if jobs.is_empty() => Ok("unchanged"),
        BatchCancel::Cancelled(jobs) => {
            // The cancelled jobs queued finished-job messages: publish now.
            state.waker.wake();
            tracing::info!(batch_id = %id, cancelled = jobs.len(), actor = %actor, "batch cancelled from the console");
            Ok("cancelled")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foodseg_engine::Priority;

    fn progress() -> BatchProgress {
        BatchProgress {
            id: BatchId::new(),
            owner_key_id: None,
            owner_name: None,
            priority: Priority::Bulk,
            size: 10,
            created_at: Utc::now(),
            cancelled_at: None,
            cancelled_by: None,
            queued: 4,
            running: 1,
            succeeded: 3,
            failed: 2,
            finished_recently: 5,
            window_seconds: 10.0,
            finished_at: None,
        }
    }

    #[test]
    fn a_running_batch_shows_its_progress_and_eta() {
        let line = BatchLine::from(progress());
        assert_eq!((line.done, line.size), (5, 10));
        assert_eq!(line.eta, "10.0 s");
        assert_eq!(line.owner, "(no key)");
        assert!(line.can_cancel);
    }

    #[test]
    fn a_finished_batch_offers_no_cancel() {
        let b = BatchProgress {
            queued: 0,
            running: 0,
            succeeded: 8,
            finished_at: Some(Utc::now()),
            owner_name: Some("backfill".into()),
            ..progress()
        };
        let line = BatchLine::from(b);
        assert!(!line.can_cancel);
        assert!(line.eta.is_empty() && !line.finished.is_empty());
        assert_eq!(line.owner, "backfill");
    }

    #[test]
    fn notices_are_fixed_texts() {
        assert!(notice("cancelled").unwrap().contains("MFR.Job.ERROR"));
        assert_eq!(notice("<script>"), None);
    }
}
