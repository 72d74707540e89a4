//! `GET /v2/jobs`: the reconciliation feed. Job documents changed since a time, oldest
//! change first, keyset-paged with an opaque cursor, so a client catches up on what it
//! missed without polling `/status` once per job.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use foodseg_engine::document::JobDocument;
use foodseg_engine::store::Cursor;
use foodseg_engine::{JobStatus, Scope};
use salvo::oapi::extract::QueryParam;
use salvo::oapi::{self, ToSchema};
use salvo::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::jobs::{JobDocumentSchema, with_deadline};
use super::middleware::ready_state;
use crate::auth::Caller;
use crate::error::ApiError;

/// Changes younger than this are left for the next page (see [`Store::jobs_changed`]).
///
/// [`Store::jobs_changed`]: foodseg_engine::Store::jobs_changed
pub const SETTLE: Duration = Duration::from_secs(2);
/// Jobs per page unless `limit` says otherwise, and the most `limit` may ask for.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

pub fn router() -> Router {
    Router::with_path("v2/jobs").get(job_feed)
}

/// A page of the feed.
#[derive(Debug, Serialize)]
pub struct JobFeed {
    pub jobs: Vec<JobDocument>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// A page of the feed (documentation schema of [`JobFeed`]).
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(name = "JobFeed"))]
pub struct JobFeedSchema {
    /// Job documents (as `/status/{job_id}` answers them), oldest change first.
    pub jobs: Vec<JobDocumentSchema>,
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
        let schema = JobFeedSchema::to_schema(components);
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
        jobs: jobs.iter().map(JobDocument::from).collect(),
        cursor,
        has_more,
    })
}

/// One page of a keyset-paged list: its size (`limit`, default [`DEFAULT_LIMIT`]) and
/// where the previous page stopped (`after`, a cursor this api returned).
pub(crate) struct Page {
    pub limit: i64,
    pub cursor: Option<Cursor>,
    after: Option<String>,
}

impl Page {
    pub fn parse(limit: Option<String>, after: Option<String>) -> Result<Self, ApiError> {
        Ok(Page {
            limit: limit
                .map(|l| parse_limit(&l))
                .transpose()?
                .unwrap_or(DEFAULT_LIMIT),
            cursor: after.as_deref().map(decode_cursor).transpose()?,
            after,
        })
    }

    /// The cursor to read on from (after the last row, or the one given when the page is
    /// empty) and whether the page was full.
    pub fn next<T>(self, rows: &[T], cursor_of: impl Fn(&T) -> Cursor) -> (Option<String>, bool) {
        let cursor = rows
            .last()
            .map(|row| encode_cursor(cursor_of(row)))
            .or(self.after);
        (cursor, rows.len() as i64 == self.limit)
    }
}

/// An RFC 3339 time.
pub(crate) fn parse_time(param: &'static str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::InvalidParameter {
            param,
            reason: format!("must be an RFC 3339 time such as 2026-01-31T00:00:00Z: {e}"),
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

/// A page size from 1 to [`MAX_LIMIT`].
pub(crate) fn parse_limit(raw: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| ApiError::InvalidParameter {
            param: "limit",
            reason: format!("must be a whole number from 1 to {MAX_LIMIT}"),
        })
}

/// The opaque form of a cursor: base64url of `<microseconds since 1970>.<uuid>`.
pub(crate) fn encode_cursor(cursor: Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}.{}",
        cursor.at.timestamp_micros(),
        cursor.id.simple()
    ))
}

pub(crate) fn decode_cursor(raw: &str) -> Result<Cursor, ApiError> {
    let invalid = || ApiError::InvalidParameter {
        param: "after",
        reason: "is not a cursor this api returned".into(),
    };
    let text = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| invalid())?;
    let text = String::from_utf8(text).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('.').ok_or_else(invalid)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(Cursor { at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        for bad in [
            "",
            "!!",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("1.nope"),
        ] {
            assert_eq!(decode_cursor(bad).unwrap_err().code(), "invalid_parameter");
        }
    }

    #[test]
    fn parameters_are_checked() {
        assert_eq!(
            parse_statuses("MFR.Job.SUCCESS, MFR.Job.ERROR").unwrap(),
            vec![JobStatus::Succeeded, JobStatus::Failed]
        );
        assert!(parse_statuses("succeeded").is_err());
        assert_eq!(parse_limit("1000").unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
        assert!(parse_time("t", "2026-11-29T10:00:00Z").is_ok());
        assert!(parse_time("t", "2026-11-29T10:00:00+01:00").is_ok());
        assert!(parse_time("t", "yesterday").is_err());
    }
}
