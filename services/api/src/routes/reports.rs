//! Operator reports: the daily reconciliation reports, the finished jobs whose webhook
//! has not been delivered, and the worker registry.

use foodseg_engine::document::format_time;
use foodseg_engine::store::{
    Cursor, DeliveryRow, ReconciliationRow, WORKER_LIVE_WITHIN, WorkerRow,
};
use salvo::oapi::ToSchema;
use salvo::oapi::extract::QueryParam;
use salvo::prelude::*;
use serde::Serialize;

use crate::error::ApiError;
use crate::paging::{Page, parse_limit, parse_time};
use crate::request::{ready_state, with_deadline};

/// Reports listed by `GET /reconciliations` unless `limit` says otherwise.
const DEFAULT_REPORTS: i64 = 30;

pub fn router() -> Router {
    Router::new()
        .push(Router::with_path("reconciliations").get(reconciliations))
        .push(Router::with_path("undelivered").get(undelivered))
        .push(Router::with_path("workers").get(workers))
}

/// The worker registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct Workers {
    /// Live workers first, then stopped and silent ones (dead, or cut off from Postgres)
    /// until they are forgotten a day after their last heartbeat.
    pub workers: Vec<Worker>,
}

/// One registered worker process.
#[derive(Debug, Serialize, ToSchema)]
pub struct Worker {
    /// `FOODSEG_WORKER_ID` (or the host name).
    pub id: String,
    /// Registry names of the models it serves.
    pub models: Vec<String>,
    /// Jobs it runs at once.
    pub concurrency: i32,
    pub version: String,
    pub started_at: String,
    pub heartbeat_at: String,
    /// When it stopped cleanly, if it did.
    pub stopped_at: Option<String>,
    /// Not stopped, and its last heartbeat is recent (within 30 s; workers beat every
    /// 10 s).
    pub live: bool,
}

impl From<WorkerRow> for Worker {
    fn from(w: WorkerRow) -> Self {
        Worker {
            id: w.id,
            models: w.models,
            concurrency: w.concurrency,
            version: w.version,
            started_at: format_time(w.started_at),
            heartbeat_at: format_time(w.heartbeat_at),
            stopped_at: w.stopped_at.map(format_time),
            live: w.live,
        }
    }
}

/// The registered workers: the models each serves and whether its heartbeat is recent.
///
/// Needs an API key with scope `operator`.
#[endpoint(tags("operator"), security(("bearer" = [])))]
async fn workers(depot: &mut Depot) -> Result<KeyedJson<Workers>, ApiError> {
    let state = ready_state(depot)?;
    let rows = with_deadline(state.store.workers(WORKER_LIVE_WITHIN)).await?;
    Ok(KeyedJson(Workers {
        workers: rows.into_iter().map(Worker::from).collect(),
    }))
}

/// The daily reconciliation reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reconciliations {
    /// Newest first.
    pub reports: Vec<Reconciliation>,
}

/// One day's reconciliation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reconciliation {
    /// The UTC day reported, `YYYY-MM-DD` (the pass runs after it ended).
    pub day: String,
    /// When the pass ran, RFC 3339.
    pub started_at: String,
    /// What it counted, for the UTC day `day`: `jobs` (the jobs created that day, per
    /// state when the pass ran: `status`, `count`), `redriven_24h`, `lost_failed_24h`,
    /// `republished_24h`, `deliveries_failed_24h` (that day's), and the backlogs when the
    /// pass ran, `deliveries_pending` and `outbox_unpublished`.
    pub report: serde_json::Value,
}

impl From<ReconciliationRow> for Reconciliation {
    fn from(r: ReconciliationRow) -> Self {
        Reconciliation {
            day: r.day.to_string(),
            started_at: format_time(r.started_at),
            report: r.report,
        }
    }
}

/// Finished jobs whose webhook has not been delivered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Undelivered {
    /// Oldest delivery first.
    pub webhooks: Vec<UndeliveredWebhook>,
    /// Pass as `after` (with the same `since`) for the next page; null when the page is
    /// empty and no `after` was given.
    pub cursor: Option<String>,
    /// Whether the page was full: more may follow.
    pub has_more: bool,
}

/// A job's latest webhook delivery, still pending or failed for good.
#[derive(Debug, Serialize, ToSchema)]
pub struct UndeliveredWebhook {
    pub job_id: String,
    pub delivery_id: String,
    /// Standard Webhooks `webhook-id`.
    pub webhook_id: String,
    /// The webhook URL, redacted as everywhere operators see one: no userinfo, every
    /// query value `REDACTED`.
    pub url: String,
    /// `pending` (retries continue) or `failed` (no attempts left).
    pub status: String,
    pub attempts: i32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    /// When the delivery was created (the job finished, or an operator asked again).
    pub created_at: String,
}

impl From<DeliveryRow> for UndeliveredWebhook {
    fn from(d: DeliveryRow) -> Self {
        let pending = d.status == foodseg_engine::DeliveryStatus::Pending;
        UndeliveredWebhook {
            job_id: d.job_id.to_string(),
            delivery_id: d.id.to_string(),
            webhook_id: d.webhook_id,
            url: foodseg_http::redact::url(&d.url),
            status: d.status.as_str().to_string(),
            attempts: d.attempts,
            next_attempt_at: pending.then(|| format_time(d.next_attempt_at)),
            last_error: d.last_error.as_deref().map(foodseg_http::redact::urls_in),
            created_at: format_time(d.created_at),
        }
    }
}

/// The daily reconciliation reports, newest first.
///
/// `limit`: how many days (default 30, at most 1,000). Needs an API key with scope
/// `operator`.
#[endpoint(tags("operator"), security(("bearer" = [])))]
async fn reconciliations(
    limit: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<KeyedJson<Reconciliations>, ApiError> {
    let limit = limit
        .into_inner()
        .map(|l| parse_limit(&l))
        .transpose()?
        .unwrap_or(DEFAULT_REPORTS);
    let state = ready_state(depot)?;
    let rows = with_deadline(state.store.reconciliations(limit)).await?;
    Ok(KeyedJson(Reconciliations {
        reports: rows.into_iter().map(Reconciliation::from).collect(),
    }))
}

/// Finished jobs whose webhook has not been delivered.
///
/// Each job's latest delivery, when it is still pending or failed for good, created at
/// or after `since` (RFC 3339), oldest first, `limit` per page (default 100, at most
/// 1,000), paged with `after` as `/v2/jobs` is. Needs an API key with scope `operator`.
#[endpoint(tags("operator"), security(("bearer" = [])))]
async fn undelivered(
    since: QueryParam<String, true>,
    limit: QueryParam<String, false>,
    after: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<KeyedJson<Undelivered>, ApiError> {
    let since = parse_time("since", &since.into_inner())?;
    let page = Page::parse(limit.into_inner(), after.into_inner())?;
    let state = ready_state(depot)?;
    let rows = with_deadline(state.store.undelivered(since, page.cursor, page.limit)).await?;
    let (cursor, has_more) = page.next(&rows, Cursor::after_delivery);
    Ok(KeyedJson(Undelivered {
        webhooks: rows.into_iter().map(UndeliveredWebhook::from).collect(),
        cursor,
        has_more,
    }))
}

/// A JSON answer of a route that needs an API key: documents the 401 and 403 beside it.
pub struct KeyedJson<T>(pub T);

#[async_trait]
impl<T: Serialize + Send> Writer for KeyedJson<T> {
    async fn write(self, req: &mut Request, depot: &mut Depot, res: &mut Response) {
        Json(self.0).write(req, depot, res).await;
    }
}

impl<T: ToSchema + Serialize + Send + 'static> salvo::oapi::EndpointOutRegister for KeyedJson<T> {
    fn register(components: &mut salvo::oapi::Components, operation: &mut salvo::oapi::Operation) {
        Json::<T>::register(components, operation);
        crate::error::register_key_answers(components, operation);
    }
}
