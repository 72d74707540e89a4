//! The console's pages as typed templates (`templates/console/*.html`, checked and
//! compiled into the binary by askama; every value is HTML-escaped) and the small view
//! models they show.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use chrono::{DateTime, Utc};
use foodseg_engine::store::{
    DeliveryView, FinishedStats, JobEventRow, JobSummary, StateCount, WebhookBacklog, WorkerRow,
};
use foodseg_engine::{JobStatus, Priority};
use serde::Deserialize;

/// `2026-11-29 14:35:08 UTC`.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Seconds as a short duration (`850 ms`, `3.2 s`, `4 min`).
pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

fn maybe_seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "–".to_string(), seconds)
}

/// What every logged-in page shows in its header.
pub struct Chrome {
    pub key_name: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

/// Jobs of one model by state.
pub struct ModelRow {
    pub model: String,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub live_workers: i64,
}

impl ModelRow {
    /// Pivots the per-state counts into one row per model (models sorted).
    pub fn from_counts(counts: &[StateCount], live: &[(String, i64)]) -> Vec<ModelRow> {
        fn row<'a>(rows: &'a mut BTreeMap<String, ModelRow>, model: &str) -> &'a mut ModelRow {
            rows.entry(model.to_string()).or_insert_with(|| ModelRow {
                model: model.to_string(),
                queued: 0,
                running: 0,
                succeeded: 0,
                failed: 0,
                live_workers: 0,
            })
        }
        let mut rows = BTreeMap::new();
        for c in counts {
            let row = row(&mut rows, &c.model);
            match c.status {
                JobStatus::Queued => row.queued = c.jobs,
                JobStatus::Running => row.running = c.jobs,
                JobStatus::Succeeded => row.succeeded = c.jobs,
                JobStatus::Failed => row.failed = c.jobs,
            }
        }
        for (model, n) in live {
            row(&mut rows, model).live_workers = *n;
        }
        rows.into_values().collect()
    }
}

/// The last hour's finished jobs, formatted.
pub struct StatsView {
    pub finished: i64,
    pub failed: i64,
    pub failure_rate: String,
    pub queue_wait_p50: String,
    pub queue_wait_p95: String,
    pub processing_p50: String,
    pub processing_p95: String,
}

impl From<FinishedStats> for StatsView {
    fn from(s: FinishedStats) -> Self {
        let failure_rate = if s.finished == 0 {
            "–".to_string()
        } else {
            format!("{:.1} %", 100.0 * s.failed as f64 / s.finished as f64)
        };
        StatsView {
            finished: s.finished,
            failed: s.failed,
            failure_rate,
            queue_wait_p50: maybe_seconds(s.queue_wait_p50),
            queue_wait_p95: maybe_seconds(s.queue_wait_p95),
            processing_p50: maybe_seconds(s.processing_p50),
            processing_p95: maybe_seconds(s.processing_p95),
        }
    }
}

pub struct WorkerView {
    pub id: String,
    pub models: String,
    pub concurrency: i32,
    pub version: String,
    pub started: String,
    pub heartbeat: String,
    pub live: bool,
    pub stopped: bool,
}

impl From<WorkerRow> for WorkerView {
    fn from(w: WorkerRow) -> Self {
        WorkerView {
            id: w.id,
            models: w.models.join(", "),
            concurrency: w.concurrency,
            version: w.version,
            started: when(w.started_at),
            heartbeat: when(w.heartbeat_at),
            live: w.live,
            stopped: w.stopped_at.is_some(),
        }
    }
}

/// The jobs waiting in one priority lane.
pub struct LaneView {
    pub priority: &'static str,
    pub queued: i64,
    /// How long the oldest of them has waited (`–` when none waits).
    pub oldest: String,
}

impl LaneView {
    pub fn new(priority: Priority, queued: i64, oldest: Duration) -> Self {
        LaneView {
            priority: priority.as_str(),
            queued,
            oldest: if queued == 0 {
                "–".into()
            } else {
                seconds(oldest.as_secs_f64())
            },
        }
    }
}

#[derive(Template)]
#[template(path = "console/overview.html")]
pub struct OverviewPage {
    pub chrome: Chrome,
    pub generated: String,
    pub lanes: Vec<LaneView>,
    pub models: Vec<ModelRow>,
    pub stats: StatsView,
    pub backlog: WebhookBacklog,
    pub workers: Vec<WorkerView>,
}

/// One line of the job list.
pub struct JobLine {
    pub id: String,
    pub status: &'static str,
    pub mfr_status: &'static str,
    pub model: String,
    pub image_url: String,
    pub message: String,
    pub attempt: i32,
    pub created: String,
    pub processing: String,
}

impl From<JobSummary> for JobLine {
    fn from(j: JobSummary) -> Self {
        JobLine {
            id: j.id.to_string(),
            status: j.status.as_str(),
            mfr_status: j.status.mfr_status(),
            model: j.model_name,
            image_url: foodseg_http::redact::url(&j.image_url).to_string(),
            message: j.message,
            attempt: j.attempt,
            created: when(j.created_at),
            processing: maybe_seconds(j.processing_time),
        }
    }
}

/// The job list's filter form, as sent (echoed back into the form).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilterForm {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub before: String,
}

#[derive(Template)]
#[template(path = "console/jobs.html")]
pub struct JobsPage {
    pub chrome: Chrome,
    pub form: FilterForm,
    pub statuses: [&'static str; 4],
    pub jobs: Vec<JobLine>,
    /// The query string of the next (older) page.
    pub older: Option<String>,
}

/// One item of a result, ready to draw.
pub struct ItemView {
    pub index: usize,
    pub label: String,
    pub score: String,
    /// One `x,y x,y …` list per polygon.
    pub polygons: Vec<String>,
    pub bbox: [f64; 4],
    /// Where the label sits (top left of the box, inside the image).
    pub label_x: f64,
    pub label_y: f64,
    pub color: usize,
}

/// The v1 result item, as far as the console draws it.
#[derive(Debug, Deserialize)]
struct ResultItem {
    category_name: String,
    score: f64,
    bbox: [f64; 4],
    #[serde(default)]
    polygons: Vec<Vec<[f64; 2]>>,
    #[serde(default)]
    size: Option<[u32; 2]>,
}

/// The items of a job's `response` and the image size they are drawn on; nothing when
/// the response is absent or not a list of v1 items.
pub fn items_of(response: Option<&serde_json::Value>) -> (Vec<ItemView>, Option<[u32; 2]>) {
    let Some(items) = response
        .cloned()
        .and_then(|v| serde_json::from_value::<Vec<ResultItem>>(v).ok())
    else {
        return (Vec::new(), None);
    };
    let size = items.iter().find_map(|i| i.size);
    let font = size.map_or(16.0, |[w, h]| (w.max(h) as f64 / 40.0).max(12.0));
    let views = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let [x, y, _, _] = item.bbox;
            ItemView {
                index,
                label: item.category_name,
                score: format!("{:.2}", item.score),
                polygons: item
                    .polygons
                    .iter()
                    .map(|poly| {
                        poly.iter()
                            .map(|[px, py]| format!("{px:.1},{py:.1}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect(),
                bbox: item.bbox,
                label_x: x + 2.0,
                label_y: (y + font).max(font),
                color: index % 8,
            }
        })
        .collect();
    (views, size)
}

pub struct EventLine {
    pub at: String,
    pub from: String,
    pub to: &'static str,
    pub attempt: i32,
    pub actor: String,
    pub detail: String,
}

impl From<JobEventRow> for EventLine {
    fn from(e: JobEventRow) -> Self {
        EventLine {
            at: when(e.at),
            from: e
                .from_status
                .map_or_else(|| "–".into(), |s| s.as_str().into()),
            to: e.to_status.as_str(),
            attempt: e.attempt.get(),
            actor: e.actor,
            detail: e.detail.unwrap_or_default(),
        }
    }
}

pub struct AttemptLine {
    pub attempt: i32,
    pub started: String,
    pub latency: String,
    pub status_code: String,
    pub outcome: &'static str,
    pub error: String,
}

pub struct DeliveryBlock {
    pub webhook_id: String,
    pub url: String,
    pub status: &'static str,
    pub attempts: i32,
    pub created: String,
    pub next_attempt: String,
    pub last_error: String,
    pub attempt_log: Vec<AttemptLine>,
}

impl From<DeliveryView> for DeliveryBlock {
    fn from(view: DeliveryView) -> Self {
        let next_attempt = view.next_attempt_at().map(when).unwrap_or_default();
        let d = view.delivery;
        DeliveryBlock {
            webhook_id: d.webhook_id,
            url: foodseg_http::redact::url(&d.url).to_string(),
            status: d.status.as_str(),
            attempts: d.attempts,
            created: when(d.created_at),
            next_attempt,
            last_error: d.last_error.unwrap_or_default(),
            attempt_log: view
                .attempt_log
                .into_iter()
                .map(|a| AttemptLine {
                    attempt: a.attempt,
                    started: when(a.started_at),
                    latency: seconds(a.latency_ms / 1000.0),
                    status_code: a.status_code.map(|c| c.to_string()).unwrap_or_default(),
                    outcome: a.outcome.as_str(),
                    error: a.error.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// A job's facts, formatted.
pub struct JobFacts {
    pub id: String,
    pub status: &'static str,
    pub mfr_status: &'static str,
    pub model: String,
    pub model_id: String,
    /// The first 12 hex digits of the result's model version; empty before a result.
    pub model_version: String,
    pub priority: &'static str,
    pub batch_id: Option<String>,
    pub image_url: String,
    pub webhook_url: String,
    pub message: String,
    pub last_error: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub created: String,
    pub started: String,
    pub finished: String,
    pub processing: String,
    pub trace_id: String,
    pub trace_url: Option<String>,
}

#[derive(Template)]
#[template(path = "console/job.html")]
pub struct JobPage {
    pub chrome: Chrome,
    pub job: JobFacts,
    pub notice: Option<&'static str>,
    pub items: Vec<ItemView>,
    pub size: Option<[u32; 2]>,
    pub events: Vec<EventLine>,
    pub deliveries: Vec<DeliveryBlock>,
    pub can_cancel: bool,
    pub can_retry: bool,
    pub can_redeliver: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_read_from_a_v1_response_and_drawn_in_image_pixels() {
        let response = serde_json::json!([{
            "id": 0, "image_id": "fruits.jpg", "category_id": 55, "category_name": "orange",
            "score": 0.91, "bbox": [317.0, 246.0, 194.0, 230.0], "area": 30000, "iscrowd": 0,
            "polygons": [[[317.0, 246.0], [511.0, 246.0], [400.5, 476.0]]], "size": [512, 480]
        }]);
        let (items, size) = items_of(Some(&response));
        assert_eq!(size, Some([512, 480]));
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].label, "orange");
        assert_eq!(items[0].score, "0.91");
        assert_eq!(items[0].polygons, ["317.0,246.0 511.0,246.0 400.5,476.0"]);
    }

    #[test]
    fn anything_else_draws_nothing() {
        for response in [None, Some(serde_json::json!({"error": "x"}))] {
            let (items, size) = items_of(response.as_ref());
            assert!(items.is_empty());
            assert_eq!(size, None);
        }
    }

    #[test]
    fn an_empty_lane_has_no_oldest_wait() {
        let lane = LaneView::new(Priority::Bulk, 0, Duration::ZERO);
        assert_eq!((lane.priority, lane.oldest.as_str()), ("bulk", "–"));
        let lane = LaneView::new(Priority::Interactive, 3, Duration::from_secs(42));
        assert_eq!(lane.oldest, "42.0 s");
    }

    #[test]
    fn pages_escape_what_they_show() {
        let page = ErrorPage {
            status: 400,
            reason: "Bad Request",
            message: "<script>alert(1)</script>".into(),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
    }
}
