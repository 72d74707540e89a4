//! `GET /v2/jobs`: the reconciliation feed. Job documents changed since a time, oldest
//! change first, keyset-paged with an opaque cursor, so a client catches up on what it
//! missed without polling `/status` once per job.

use std::time::Duration;

use foodseg_engine::document::V2JobDocument;
use foodseg_engine::store::Cursor;
use foodseg_engine::{JobStatus, Scope};
use salvo::oapi::extract::QueryParam;
use salvo::oapi::{self, ToSchema};
use salvo::prelude::*;
use serde::Serialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::paging::{Page, parse_time};
use crate::request::{ready_state, with_deadline};

/// Changes younger than this are left for the next page (see [`Store::jobs_changed`]).
///
/// [`Store::jobs_changed`]: foodseg_engine::Store::jobs_changed
pub const SETTLE: Duration = Duration::from_secs(2);
pub fn router() -> Router {
    Router::with_path("v2/jobs").get(job_feed)
}

/// A page of the feed.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(name = "JobFeed"))]
pub struct JobFeed {
    /// Job documents (as `/status/{job_id}` answers them, with the result's model version),
    /// oldest change first.
    pub jobs: Vec<V2JobDocument>,
    /// Pass as `after` to read on from the last job of this page; null when the page is
    /// empty and no `after` was given.
    pub cursor: Option<String>,
    /// Whether the page was full: more changes may be waiting now.
    pub has_more: bool,
}

#[async_trait]
impl Writer for JobFeed {
    async fn write(self, _req: &mut Request, _depot: &mut Depot, res: &mut Response) {
        res.render(Json(self));
    }
}

impl salvo::oapi::EndpointOutRegister for JobFeed {
    fn register(components: &mut salvo::oapi::Components, operation: &mut salvo::oapi::Operation) {
        let schema = JobFeed::to_schema(components);
        operation.responses.insert(
            "200",
            oapi::Response::new("A page of job documents")
                .add_content("application/json", oapi::Content::new(schema)),
        );
        crate::error::register_key_answers(components, operation);
        crate::error::register_rate_limit(components, operation);
    }
}

/// Jobs changed since a time: the reconciliation feed.
///
/// Answers the job documents whose last change (`updated_at`) is at or after
/// `updated_since`, oldest first, at most `limit` (default 100, at most 1,000) per page.
/// To read on, pass the answer's `cursor` as `after` with the same `updated_since`; a
/// job changed again later appears again, after the jobs changed before it. Changes are
/// listed once they are 2 seconds old, so a page never skips a change still being
/// written. Needs an API key, always: a key with scope `submit` reads the jobs it owns
/// (those it created, and the keyless v1 jobs when it is `FOODSEG_V1_OWNER`), a key with
/// scope `operator` reads every job. Rate-limited per key (`FOODSEG_LIMIT_FEED`).
#[endpoint(tags("v2"), security(("bearer" = [])))]
async fn job_feed(
    updated_since: QueryParam<String, true>,
    status: QueryParam<String, false>,
    limit: QueryParam<String, false>,
    after: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<JobFeed, ApiError> {
    let since = parse_time("updated_since", &updated_since.into_inner())?;
    let statuses = status
        .into_inner()
        .map(|s| parse_statuses(&s))
        .transpose()?
        .unwrap_or_default();
    let page = Page::parse(limit.into_inner(), after.into_inner())?;
    let state = ready_state(depot)?;
    let caller = crate::auth::caller(depot);
    state.limits.check(crate::limits::Route::Feed, caller)?;
    // The guard let only keys through; an operator key reads every job.
    let owner = match caller {
        Some(Caller::Key(key)) if key.has_scope(Scope::Operator) => None,
        Some(Caller::Key(key)) => Some(key.id),
        _ => {
            return Err(ApiError::Unauthorized {
                reason: "this route needs an API key: send Authorization: Bearer <token>",
                token_given: false,
            });
        }
    };
    let jobs = with_deadline(state.store.jobs_changed(
        since,
        page.cursor,
        &statuses,
        owner,
        SETTLE,
        page.limit,
    ))
    .await?;
    let (cursor, has_more) = page.next(&jobs, Cursor::after_job);
    Ok(JobFeed {
        jobs: jobs.iter().map(V2JobDocument::from).collect(),
        cursor,
        has_more,
    })
}

/// A comma-separated list of `MFR.Job.*` statuses.
fn parse_statuses(raw: &str) -> Result<Vec<JobStatus>, ApiError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            JobStatus::ALL
                .into_iter()
                .find(|status| status.mfr_status() == s)
                .ok_or_else(|| ApiError::InvalidParameter {
                    param: "status",
                    reason: format!(
                        "has {s:?}; statuses are MFR.Job.QUEUED, MFR.Job.IN_PROGRESS, \
                         MFR.Job.SUCCESS and MFR.Job.ERROR, comma-separated"
                    ),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_checked() {
        assert_eq!(
            parse_statuses("MFR.Job.SUCCESS, MFR.Job.ERROR").unwrap(),
            vec![JobStatus::Succeeded, JobStatus::Failed]
        );
        assert!(parse_statuses("succeeded").is_err());
    }
}
