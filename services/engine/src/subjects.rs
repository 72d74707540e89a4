//! NATS subject and stream names. Tests use a unique prefix so runs never share a stream.

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

    /// Where a job for `model_name` is dispatched.
    pub fn job(&self, model_name: &str) -> String {
        format!("{}.jobs.segment.{}", self.prefix, model_name)
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
