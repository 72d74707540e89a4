//! Receiving an upload's body: the image, raw or as the `file` part of a
//! multipart/form-data body, read chunk by chunk into one buffer — one copy of its bytes
//! in memory, never more than the limit — plus the small text fields a multipart form
//! may carry instead of query parameters.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use salvo::Request;
use salvo::http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use super::{MULTIPART_OVERHEAD, UploadError, UploadLimits};

/// Largest text field of a multipart form (`model_id`, `webhook_url`, `filename`).
const MAX_TEXT_FIELD: usize = 8 * 1024;

/// What the body carried.
#[derive(Debug)]
pub struct Received {
    pub bytes: Bytes,
    /// The multipart part's file name, or the form's `filename` field.
    pub filename: Option<String>,
    pub model_id: Option<String>,
    pub webhook_url: Option<String>,
}

/// Reads the image from `req`'s body, refusing more than `limits.max_bytes` of image
/// (before reading, when the declared length already says so).
pub async fn receive(req: &mut Request, limits: &UploadLimits) -> Result<Received, UploadError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let too_large = || UploadError::TooLarge {
        limit: limits.max_bytes,
    };
    let boundary = multer::parse_boundary(&content_type).ok();
    let envelope = if boundary.is_some() {
        MULTIPART_OVERHEAD
    } else {
        0
    };
    if declared.is_some_and(|n| n > limits.max_bytes.saturating_add(envelope)) {
        return Err(too_large());
    }
    let body = chunks(req);
    match boundary {
        None => {
            let bytes = collect(body, limits.max_bytes, declared).await?;
            Ok(Received {
                bytes,
                filename: None,
                model_id: None,
                webhook_url: None,
            })
        }
        Some(boundary) => read_form(body, boundary, limits).await,
    }
}

/// Reads and drops `req`'s body, at most as much as an upload may send and for at most
/// the body timeout: a refusal answered before the body was read would otherwise reach a
/// client still sending it as a reset connection instead of the answer. Costs no memory
/// beyond one chunk.
pub async fn discard(req: &mut Request, limits: &UploadLimits) {
    let limit = limits.max_bytes.saturating_add(MULTIPART_OVERHEAD);
    let mut body = std::pin::pin!(chunks(req));
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = body.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(limits.body_timeout, drain).await;
}

/// The request body as a stream of data chunks.
fn chunks(req: &mut Request) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    req.take_body().filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(e) => Some(Err(e)),
        }
    })
}

/// Concatenates `stream` into one buffer of at most `max` bytes.
async fn collect<E: std::fmt::Display>(
    stream: impl Stream<Item = Result<Bytes, E>>,
    max: usize,
    size_hint: Option<usize>,
) -> Result<Bytes, UploadError> {
    let mut stream = std::pin::pin!(stream);
    let mut buffer = BytesMut::with_capacity(size_hint.unwrap_or(0).min(max));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| UploadError::BodyUnreadable(e.to_string()))?;
        if buffer.len() + chunk.len() > max {
            return Err(UploadError::TooLarge { limit: max });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

async fn read_form(
    body: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    boundary: String,
    limits: &UploadLimits,
) -> Result<Received, UploadError> {
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream((limits.max_bytes + MULTIPART_OVERHEAD) as u64)
            .per_field(limits.max_bytes as u64),
    );
    let mut form = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut received = Received {
        bytes: Bytes::new(),
        filename: None,
        model_id: None,
        webhook_url: None,
    };
    let mut file_seen = false;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(form_error(e, limits)),
        };
        match field.name().unwrap_or("") {
            "file" if !file_seen => {
                file_seen = true;
                received.filename = field.file_name().map(str::to_string);
                let stream = field.map(|chunk| chunk.map_err(|e| form_error(e, limits)));
                received.bytes = collect_form(stream, limits.max_bytes).await?;
            }
            name @ ("model_id" | "webhook_url" | "filename") => {
                let name = name.to_string();
                let text = collect(field, MAX_TEXT_FIELD, None).await.map_err(|_| {
                    UploadError::InvalidMultipart(format!(
                        "field {name} is over {MAX_TEXT_FIELD} bytes"
                    ))
                })?;
                let text = String::from_utf8(text.to_vec()).map_err(|_| {
                    UploadError::InvalidMultipart(format!("field {name} is not UTF-8 text"))
                })?;
                match name.as_str() {
                    "model_id" => received.model_id = Some(text),
                    "webhook_url" => received.webhook_url = Some(text),
                    _ => {
                        received.filename.get_or_insert(text);
                    }
                }
            }
            // Other parts are read past (bounded by the whole-stream limit) and ignored.
            _ => {
                let mut field = field;
                while let Some(chunk) = field.chunk().await.transpose() {
                    chunk.map_err(|e| form_error(e, limits))?;
                }
            }
        }
    }
    if !file_seen {
        return Err(UploadError::MissingFilePart);
    }
    Ok(received)
}

/// Like [`collect`], for a stream whose errors are already upload errors.
async fn collect_form(
    stream: impl Stream<Item = Result<Bytes, UploadError>>,
    max: usize,
) -> Result<Bytes, UploadError> {
    let mut stream = std::pin::pin!(stream);
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buffer.len() + chunk.len() > max {
            return Err(UploadError::TooLarge { limit: max });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

fn form_error(e: multer::Error, limits: &UploadLimits) -> UploadError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            UploadError::TooLarge {
                limit: limits.max_bytes,
            }
        }
        other => UploadError::InvalidMultipart(other.to_string()),
    }
}
