//! The v1 webhook body: the job document serialised to JSON text, then that text
//! serialised again as a JSON string literal (`"{\"job_id\":...}"`). MFR's Rails
//! controller finds it under `params[:_json]` and `JSON.parse`s it.

use foodseg_engine::JobDocument;

/// The body of a v1 webhook for `document`.
pub fn encode(document: &JobDocument) -> String {
    // A JobDocument has only string keys and finite numbers from Postgres, and a String
    // always serialises, so neither step can fail; fall back to a valid empty document
    // string rather than panicking should that ever change.
    let text = serde_json::to_string(document).unwrap_or_else(|_| "{}".to_string());
    serde_json::to_string(&text).unwrap_or_else(|_| "\"{}\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use foodseg_engine::document::JobRequest;

    fn document() -> JobDocument {
        JobDocument {
            job_id: "0193f6c2-0000-7000-8000-000000000000".into(),
            created_at: "2026-11-28T10:00:00.123456Z".into(),
            updated_at: "2026-11-28T10:00:01.523456Z".into(),
            processing_time: Some(1.4),
            status: "MFR.Job.SUCCESS".into(),
            message: "Job completed \"ok\"".into(),
            request: JobRequest {
                image_url: "https://x/a.jpg".into(),
                webhook_url: Some("https://mfr/hook".into()),
            },
            response: serde_json::json!([{"id": 0, "category_name": "apple"}]),
            model_identifier: "124096".into(),
            api_version: "v1.0".into(),
        }
    }

    #[test]
    fn body_is_the_document_as_a_json_string_literal() {
        let body = encode(&document());
        assert!(body.starts_with("\"{\\\"job_id\\\":"), "{body}");
        // What Rails does: the outer JSON is a string (lands under `_json`), whose text is
        // the document.
        let outer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let inner = outer.as_str().expect("outer JSON is a string");
        let doc: JobDocument = serde_json::from_str(inner).unwrap();
        assert_eq!(doc, document());
    }
}
