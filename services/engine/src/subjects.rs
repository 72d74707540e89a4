//! NATS subject and stream names. Tests use a unique prefix so runs never share a stream.

use crate::domain::Priority;

/// Names of the JetStream streams and subjects one deployment uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    /// First token of every subject, `foodseg` in production.
    pub prefix: String,
    /// Stream holding job dispatch messages (`<prefix>.jobs.>`).
    pub jobs_stream: String,
    /// Stream holding job lifecycle events (`<prefix>.events.>`).
    pub events_stream: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::with_prefix("foodseg")
    }
}

impl Subjects {
    /// Subjects and stream names derived from one prefix (`foodseg` → `FOODSEG_JOBS`).
    pub fn with_prefix(prefix: &str) -> Self {
        let upper = prefix.to_ascii_uppercase().replace(['.', '-'], "_");
        Subjects {
            prefix: prefix.to_string(),
            jobs_stream: format!("{upper}_JOBS"),
            events_stream: format!("{upper}_EVENTS"),
        }
    }

    /// Where an interactive job for `model_name` is dispatched.
    pub fn job(&self, model_name: &str) -> String {
        self.dispatch(Priority::Interactive, model_name)
    }

    /// Where a job of `priority` for `model_name` is dispatched: `<prefix>.jobs.segment.<model>`
    /// (interactive) or `<prefix>.jobs.bulk.<model>` (bulk). The SQL function `job_subject`
    /// (a migration's) writes the same names into the outbox.
    pub fn dispatch(&self, priority: Priority, model_name: &str) -> String {
        let lane = match priority {
            Priority::Interactive => "segment",
            Priority::Bulk => "bulk",
        };
        format!("{}.jobs.{lane}.{model_name}", self.prefix)
    }

    /// The model of a bulk-lane subject (`<prefix>.jobs.bulk.<model>`).
    pub fn bulk_model<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".jobs.bulk.")
    }

    /// The durable consumer the workers of `model_name` share for one lane:
    /// `worker-<model>` (interactive) or `worker-bulk-<model>` (bulk).
    pub fn consumer(lane: Priority, model_name: &str) -> String {
        match lane {
            Priority::Interactive => format!("worker-{model_name}"),
            Priority::Bulk => format!("worker-bulk-{model_name}"),
        }
    }

    /// Wildcard over the bulk lane's subjects (every model's).
    pub fn bulk_wildcard(&self) -> String {
        format!("{}.jobs.bulk.>", self.prefix)
    }

    /// Wildcard over all job dispatch subjects.
    pub fn jobs_wildcard(&self) -> String {
        format!("{}.jobs.>", self.prefix)
    }

    /// Where the event for a job reaching `status` (`succeeded`, `failed`) is published.
    pub fn job_event(&self, status: &str) -> String {
        format!("{}.events.job.{}", self.prefix, status)
    }

    /// Wildcard over all event subjects.
    pub fn events_wildcard(&self) -> String {
        format!("{}.events.>", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_names() {
        let s = Subjects::default();
        assert_eq!(
            s.job("yolov5s-seg-coco"),
            "foodseg.jobs.segment.yolov5s-seg-coco"
        );
        assert_eq!(
            s.dispatch(Priority::Bulk, "yolov5s-seg-coco"),
            "foodseg.jobs.bulk.yolov5s-seg-coco"
        );
        assert_eq!(s.bulk_wildcard(), "foodseg.jobs.bulk.>");
        assert_eq!(s.bulk_model("foodseg.jobs.bulk.m-1"), Some("m-1"));
        assert_eq!(s.bulk_model("foodseg.jobs.segment.m-1"), None);
        assert_eq!(Subjects::consumer(Priority::Bulk, "m"), "worker-bulk-m");
        assert_eq!(Subjects::consumer(Priority::Interactive, "m"), "worker-m");
        assert_eq!(s.job_event("succeeded"), "foodseg.events.job.succeeded");
        assert_eq!(s.jobs_stream, "FOODSEG_JOBS");
        assert_eq!(s.events_stream, "FOODSEG_EVENTS");
    }

    #[test]
    fn test_prefix_is_stream_safe() {
        let s = Subjects::with_prefix("t-1a2b");
        assert_eq!(s.jobs_stream, "T_1A2B_JOBS");
        assert_eq!(s.jobs_wildcard(), "t-1a2b.jobs.>");
    }
}
