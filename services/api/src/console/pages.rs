//! The console's pages: the overview, the job list and a job's page.

use chrono::{DateTime, NaiveDateTime, Utc};
use foodseg_engine::store::{Cursor, JobFilter, WORKER_LIVE_WITHIN};
use foodseg_engine::{JobId, JobStatus};
use salvo::prelude::*;

use super::page::{ConsoleError, path_job, render};
use super::session::session;
use super::views::{
    Chrome, DeliveryBlock, EventLine, FilterForm, JobFacts, JobLine, JobPage, JobsPage, LaneView,
    ModelRow, OverviewPage, StatsView, WorkerView, items_of, seconds, when,
};
use crate::paging::{decode_cursor, encode_cursor};
use crate::request::{ready_state, with_deadline};

/// Jobs per page of the list.
const PAGE: i64 = 50;

pub(super) fn chrome(depot: &Depot) -> Result<Chrome, ConsoleError> {
    let s = session(depot)?;
    Ok(Chrome {
        key_name: s.key_name.clone(),
        csrf: s.csrf_token.clone(),
    })
}

/// The queue per priority lane, jobs per model and state, the last hour's timings and
/// failures, the webhook backlog and the workers.
#[handler]
pub async fn overview(depot: &mut Depot, res: &mut Response) {
    match overview_page(depot).await {
        Ok(page) => render(res, StatusCode::OK, &page),
        Err(e) => e.write_to(res),
    }
}

async fn overview_page(depot: &Depot) -> Result<OverviewPage, ConsoleError> {
    let chrome = chrome(depot)?;
    let state = ready_state(depot)?;
    let store = &state.store;
    let (lanes, counts, stats, backlog, workers, load) = tokio::try_join!(
        with_deadline(store.queue_by_priority()),
        with_deadline(store.state_counts()),
        with_deadline(store.finished_stats()),
        with_deadline(store.webhook_backlog()),
        with_deadline(store.workers(WORKER_LIVE_WITHIN)),
        with_deadline(store.model_load(WORKER_LIVE_WITHIN)),
    )?;
    let live: Vec<(String, i64)> = load
        .into_iter()
        .map(|l| (l.model, l.live_workers))
        .collect();
    Ok(OverviewPage {
        chrome,
        generated: when(Utc::now()),
        lanes: lanes
            .into_iter()
            .map(|(priority, queued, oldest)| LaneView::new(priority, queued, oldest))
            .collect(),
        models: ModelRow::from_counts(&counts, &live),
        stats: StatsView::from(stats),
        backlog,
        workers: workers.into_iter().map(WorkerView::from).collect(),
    })
}

/// The job list: filtered by status, model and creation time, or a search by job id
/// (which opens the job) or exact image URL; newest first, keyset-paged.
#[handler]
pub async fn job_list(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match jobs_page(req, depot).await {
        Ok(JobsAnswer::Page(page)) => render(res, StatusCode::OK, &*page),
        Ok(JobsAnswer::Open(id)) => res.render(Redirect::other(format!("/console/jobs/{id}"))),
        Err(e) => e.write_to(res),
    }
}

enum JobsAnswer {
    Page(Box<JobsPage>),
    Open(JobId),
}

async fn jobs_page(req: &mut Request, depot: &Depot) -> Result<JobsAnswer, ConsoleError> {
    let chrome = chrome(depot)?;
    let state = ready_state(depot)?;
    let form: FilterForm = req
        .parse_queries()
        .map_err(|e| ConsoleError::BadInput(format!("cannot read the filter: {e}")))?;
    let q = form.q.trim();
    if let Ok(id) = q.parse::<JobId>() {
        return Ok(JobsAnswer::Open(id));
    }
    let rows = if q.is_empty() {
        let filter = JobFilter {
            status: parse_status(&form.status)?,
            model: Some(form.model.trim())
                .filter(|m| !m.is_empty())
                .map(str::to_string),
            from: parse_time("from", &form.from)?,
            to: parse_time("to", &form.to)?,
        };
        let before = parse_before(&form.before)?;
        with_deadline(state.store.job_page(&filter, before, PAGE)).await?
    } else {
        with_deadline(state.store.jobs_by_image_url(q, PAGE)).await?
    };
    let older = (rows.len() as i64 == PAGE && q.is_empty())
        .then(|| rows.last().map(|j| older_query(&form, j.cursor())))
        .flatten();
    Ok(JobsAnswer::Page(Box::new(JobsPage {
        chrome,
        statuses: JobStatus::ALL.map(JobStatus::as_str),
        jobs: rows.into_iter().map(JobLine::from).collect(),
        older,
        form,
    })))
}

fn parse_status(raw: &str) -> Result<Option<JobStatus>, ConsoleError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    JobStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == raw)
        .map(Some)
        .ok_or_else(|| {
            ConsoleError::BadInput(format!(
                "status {raw:?} is not one of queued, running, succeeded, failed"
            ))
        })
}

/// A time from the form: `YYYY-MM-DDTHH:MM[:SS]` (UTC, as `datetime-local` sends it) or
/// RFC 3339.
fn parse_time(field: &str, raw: &str) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            ConsoleError::BadInput(format!(
                "{field} {raw:?} is not a time (YYYY-MM-DDTHH:MM, UTC, or RFC 3339)"
            ))
        })
}

fn parse_before(raw: &str) -> Result<Option<Cursor>, ConsoleError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    decode_cursor(raw)
        .map(Some)
        .map_err(|_| ConsoleError::BadInput("the page link is not one the console made".into()))
}

/// The query string of the page after `last`, keeping the filter.
fn older_query(form: &FilterForm, last: Cursor) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("status", &form.status),
        ("model", &form.model),
        ("from", &form.from),
        ("to", &form.to),
    ] {
        if !value.trim().is_empty() {
            query.append_pair(name, value.trim());
        }
    }
    query.append_pair("before", &encode_cursor(last));
    query.finish()
}

/// A job's page: its facts, the actions its state allows, the result drawn on the photo,
/// its event timeline and its webhook deliveries with every attempt.
#[handler]
pub async fn show_job(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match job_page(req, depot).await {
        Ok(page) => render(res, StatusCode::OK, &page),
        Err(e) => e.write_to(res),
    }
}

async fn job_page(req: &Request, depot: &Depot) -> Result<JobPage, ConsoleError> {
    let chrome = chrome(depot)?;
    let state = ready_state(depot)?;
    let job = path_job(req, &state).await?;
    let (events, deliveries) = tokio::try_join!(
        with_deadline(state.store.events(job.id)),
        with_deadline(state.store.deliveries(job.id)),
    )?;
    let pending_delivery = deliveries
        .iter()
        .any(|d| d.delivery.status == foodseg_engine::DeliveryStatus::Pending);
    let (items, size) = items_of(job.response.as_ref());
    let trace_url = job
        .trace_id
        .as_deref()
        .and_then(|id| foodseg_telemetry::JaegerLinks::from_env().link(id));
    let notice = req
        .query::<String>("done")
        .and_then(|done| super::actions::notice(&done));
    Ok(JobPage {
        chrome,
        notice,
        can_cancel: job.status == JobStatus::Queued,
        can_retry: job.status == JobStatus::Failed && !pending_delivery,
        can_redeliver: job.status.is_terminal() && job.webhook_url.is_some() && !pending_delivery,
        items,
        size,
        events: events.into_iter().map(EventLine::from).collect(),
        deliveries: deliveries.into_iter().map(DeliveryBlock::from).collect(),
        job: JobFacts {
            id: job.id.to_string(),
            status: job.status.as_str(),
            mfr_status: job.status.mfr_status(),
            model: job.model_name,
            model_id: job.model_id,
            model_version: job
                .model_version
                .as_deref()
                .map(foodseg_models::short_version)
                .unwrap_or_default()
                .to_owned(),
            priority: job.priority.as_str(),
            batch_id: job.batch_id.map(|b| b.to_string()),
            image_url: foodseg_http::redact::url(&job.image_url).to_string(),
            webhook_url: job
                .webhook_url
                .as_deref()
                .map(|u| foodseg_http::redact::url(u).to_string())
                .unwrap_or_default(),
            message: job.message,
            last_error: job.last_error.unwrap_or_default(),
            attempt: job.attempt.get(),
            max_attempts: job.max_attempts.get(),
            created: when(job.created_at),
            started: job.started_at.map(when).unwrap_or_default(),
            finished: job.finished_at.map(when).unwrap_or_default(),
            processing: job.processing_time.map(seconds).unwrap_or_default(),
            trace_id: job.trace_id.unwrap_or_default(),
            trace_url,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_are_utc_or_rfc3339_and_garbage_is_refused() {
        let t = parse_time("from", "2026-11-29T14:05").unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-29T14:05:00+00:00");
        let t = parse_time("from", "2026-11-29T15:05:00+01:00")
            .unwrap()
            .unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-29T14:05:00+00:00");
        assert_eq!(parse_time("to", " ").unwrap(), None);
        let e = parse_time("to", "yesterday").unwrap_err();
        assert!(e.to_string().contains("to \"yesterday\""), "{e}");
    }

    #[test]
    fn statuses_are_the_stored_names() {
        assert_eq!(parse_status("failed").unwrap(), Some(JobStatus::Failed));
        assert_eq!(parse_status("").unwrap(), None);
        assert!(parse_status("MFR.Job.ERROR").is_err());
    }

    #[test]
    fn the_older_link_keeps_the_filter() {
        let form = FilterForm {
            status: "failed".into(),
            model: "yolo v5".into(),
            ..FilterForm::default()
        };
        let cursor = Cursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap(),
            id: uuid::Uuid::nil(),
        };
        let q = older_query(&form, cursor);
        assert!(q.starts_with("status=failed&model=yolo+v5&before="), "{q}");
        let before = q.rsplit_once("before=").unwrap().1;
        assert_eq!(parse_before(before).unwrap(), Some(cursor));
    }
}
