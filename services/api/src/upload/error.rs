//! Why an upload was refused. The JSON body is the api's usual
//! `{"error": {"code", "message", "field"?}}`; errors shared with `/enqueue` (unknown
//! model, webhook URL, database) answer exactly as there.

use salvo::http::StatusCode;
use salvo::oapi::{self, Components, EndpointOutRegister, Operation, ToSchema};
use salvo::prelude::*;

use super::Foreign;
use crate::error::{ApiError, ErrorBody, ErrorDetail};

/// A refused or failed upload.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the image is over the {limit}-byte upload limit{}", in_mib(*.limit))]
    TooLarge { limit: usize },
    #[error(
        "the request carries no image: send the image bytes as the body, or as the `file` part of a multipart/form-data body"
    )]
    EmptyImage,
    #[error("the multipart/form-data body has no `file` part")]
    MissingFilePart,
    #[error("the multipart/form-data body cannot be read: {0}")]
    InvalidMultipart(String),
    #[error("cannot read the request body: {0}")]
    BodyUnreadable(String),
    #[error(
        "the uploaded bytes are {}, not an image; send a JPEG, PNG or WebP image",
        what_arrived(*detected)
    )]
    NotAnImage { detected: Foreign },
    #[error("filename {reason}")]
    InvalidFilename { reason: String },
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl UploadError {
    pub fn status(&self) -> StatusCode {
        use UploadError::*;
        match self {
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            EmptyImage | MissingFilePart | InvalidMultipart(_) | BodyUnreadable(_) => {
                StatusCode::BAD_REQUEST
            }
            NotAnImage { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidFilename { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Api(e) => e.status(),
        }
    }

    pub fn code(&self) -> &'static str {
        use UploadError::*;
        match self {
            TooLarge { .. } => "payload_too_large",
            EmptyImage => "empty_image",
            MissingFilePart => "missing_file",
            InvalidMultipart(_) => "invalid_multipart",
            BodyUnreadable(_) => "unreadable_body",
            NotAnImage { .. } => "unsupported_media_type",
            InvalidFilename { .. } => "invalid_filename",
            Api(e) => e.code(),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        match self {
            UploadError::Api(e) => e.body(),
            other => ErrorBody {
                error: ErrorDetail {
                    code: other.code().to_string(),
                    message: other.to_string(),
                    field: match other {
                        UploadError::InvalidFilename { .. } => Some("filename".into()),
                        UploadError::MissingFilePart => Some("file".into()),
                        _ => None,
                    },
                    known_ids: None,
                    items: None,
                },
            },
        }
    }
}

/// What the client sent instead of an image; a URL is pointed to the endpoint for URLs.
fn what_arrived(detected: Foreign) -> &'static str {
    match detected {
        Foreign::Url => "a URL (send image URLs to POST /enqueue)",
        other => other.description(),
    }
}

#[async_trait]
impl Writer for UploadError {
    async fn write(self, req: &mut Request, depot: &mut Depot, res: &mut Response) {
        match self {
            UploadError::Api(e) => e.write(req, depot, res).await,
            other => {
                tracing::debug!(code = other.code(), error = %other, "upload rejected");
                res.status_code(other.status());
                res.render(Json(other.body()));
            }
        }
    }
}

impl EndpointOutRegister for UploadError {
    fn register(components: &mut Components, operation: &mut Operation) {
        crate::error::register_key_answers(components, operation);
        crate::error::register_rate_limit(components, operation);
        let schema = ErrorBody::to_schema(components);
        for (status, brief) in [
            (
                "400",
                "No image in the body, no `file` part, or an unreadable body",
            ),
            (
                "408",
                "The body did not arrive within FOODSEG_UPLOAD_BODY_TIMEOUT (30 s by default)",
            ),
            ("413", "Image over the upload limit (20 MiB by default)"),
            (
                "415",
                "The bytes are not a JPEG, PNG or WebP image (the message says what they are)",
            ),
            (
                "422",
                "Invalid filename or webhook_url, or unknown model_id",
            ),
            ("503", "Database unavailable"),
        ] {
            operation.responses.insert(
                status,
                oapi::Response::new(brief)
                    .add_content("application/json", oapi::Content::new(schema.clone())),
            );
        }
    }
}

/// ` (20 MiB)` for limits of whole mebibytes; nothing otherwise.
fn in_mib(limit: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if limit >= MIB && limit.is_multiple_of(MIB) {
        format!(" ({} MiB)", limit / MIB)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_limit_is_stated_exactly() {
        let message = |limit| UploadError::TooLarge { limit }.to_string();
        assert_eq!(
            message(20 * 1024 * 1024),
            "the image is over the 20971520-byte upload limit (20 MiB)"
        );
        assert_eq!(
            message(1000),
            "the image is over the 1000-byte upload limit"
        );
    }
}
