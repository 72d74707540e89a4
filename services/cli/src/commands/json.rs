//! JSON as the commands print it (`--json`).

/// Pretty JSON of a job document (serialising a parsed document cannot fail).
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
