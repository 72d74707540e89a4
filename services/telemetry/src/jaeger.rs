//! Links from a trace id to the trace in Jaeger (or any UI with a per-trace URL).

/// Default Jaeger UI link, for a local all-in-one.
pub const DEFAULT_JAEGER_URL_TEMPLATE: &str = "http://localhost:16686/trace/{trace_id}";

/// Builds trace links from a template holding `{trace_id}`
/// (`FOODSEG_JAEGER_URL_TEMPLATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaegerLinks {
    template: String,
}

impl Default for JaegerLinks {
    fn default() -> Self {
        JaegerLinks::new(DEFAULT_JAEGER_URL_TEMPLATE)
    }
}

impl JaegerLinks {
    pub fn new(template: impl Into<String>) -> Self {
        JaegerLinks {
            template: template.into(),
        }
    }

    /// From `FOODSEG_JAEGER_URL_TEMPLATE`, else the default.
    pub fn from_env() -> Self {
        match std::env::var("FOODSEG_JAEGER_URL_TEMPLATE") {
            Ok(t) if !t.trim().is_empty() => JaegerLinks::new(t.trim()),
            _ => JaegerLinks::default(),
        }
    }

    /// The link to `trace_id`; `None` unless it is a valid W3C trace id (32 lowercase hex,
    /// not all zeros), so a corrupt value never becomes a misleading link. A template
    /// without `{trace_id}` gets the id appended.
    pub fn link(&self, trace_id: &str) -> Option<String> {
        if !crate::trace::is_valid_trace_id(trace_id) {
            return None;
        }
        Some(if self.template.contains("{trace_id}") {
            self.template.replace("{trace_id}", trace_id)
        } else {
            format!("{}{trace_id}", self.template)
        })
    }

    pub fn template(&self) -> &str {
        &self.template
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn default_template_points_at_local_jaeger() {
        assert_eq!(
            JaegerLinks::default().link(ID).as_deref(),
            Some("http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn custom_template_places_the_id() {
        let links = JaegerLinks::new("https://ops.example/jaeger/trace/{trace_id}?uiFind=x");
        assert_eq!(
            links.link(ID).as_deref(),
            Some("https://ops.example/jaeger/trace/4bf92f3577b34da6a3ce929d0e0e4736?uiFind=x")
        );
        assert_eq!(
            JaegerLinks::new("http://j/t/").link(ID).as_deref(),
            Some("http://j/t/4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn invalid_ids_get_no_link() {
        let links = JaegerLinks::default();
        assert_eq!(links.link(""), None);
        assert_eq!(links.link("00000000000000000000000000000000"), None);
        assert_eq!(links.link("4BF92F3577B34DA6A3CE929D0E0E4736"), None);
        assert_eq!(links.link("../../admin"), None);
    }
}
