//! `POST /v2/uploads`: the checks an uploaded image passes before anything is written —
//! its size, its type (sniffed from the bytes by the pipeline's [`sniff`], whatever the
//! client declared) and its file name — and the limits they apply. Pure: no I/O.

mod error;
mod filename;
mod receive;

pub use error::UploadError;
pub use filename::{MAX_FILENAME_BYTES, check_filename};
pub use foodseg_pipeline::sniff::{Foreign, ImageType, sniff};
pub use receive::{Received, discard, receive};

use std::time::Duration;

/// Default `FOODSEG_UPLOAD_MAX_BYTES`: 20 MiB.
pub const DEFAULT_MAX_BYTES: usize = 20 * 1024 * 1024;

/// An upload is purged this long after it was stored whatever its job's state (the
/// scheduler purges it sooner, once its job finished and the retention passed).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Bytes a multipart envelope may add around the image (boundaries, part headers, small
/// text fields).
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// Default `FOODSEG_UPLOAD_BODY_TIMEOUT`: how long an upload's whole body may take.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How large uploads may be, how long their bodies may take, and how long they are kept
/// at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest accepted image (`FOODSEG_UPLOAD_MAX_BYTES`).
    pub max_bytes: usize,
    /// A body not fully received this long after the upload was admitted is answered
    /// 408 and its slot freed (`FOODSEG_UPLOAD_BODY_TIMEOUT`).
    pub body_timeout: Duration,
    /// Hard maximum age of a stored upload.
    pub max_age: Duration,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// Checks an image's bytes: not empty, within `limits`, and a JPEG, PNG or WebP.
pub fn check_image(bytes: &[u8], limits: &UploadLimits) -> Result<ImageType, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::EmptyImage);
    }
    if bytes.len() > limits.max_bytes {
        return Err(UploadError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    sniff(bytes).map_err(|detected| UploadError::NotAnImage { detected })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00";

    #[test]
    fn images_within_the_cap_pass() {
        let limits = UploadLimits::default();
        assert_eq!(check_image(JPEG, &limits).unwrap(), ImageType::Jpeg);
    }

    #[test]
    fn empty_oversized_and_foreign_bytes_are_refused() {
        let small = UploadLimits {
            max_bytes: 8,
            ..UploadLimits::default()
        };
        assert!(matches!(
            check_image(b"", &small),
            Err(UploadError::EmptyImage)
        ));
        assert!(matches!(
            check_image(JPEG, &small),
            Err(UploadError::TooLarge { limit: 8 })
        ));
        let e = check_image(b"<html><body>", &UploadLimits::default()).unwrap_err();
        assert_eq!(e.code(), "unsupported_media_type");
        assert_eq!(
            e.to_string(),
            "the uploaded bytes are HTML, not an image; send a JPEG, PNG or WebP image"
        );
        let e = check_image(b"https://x.org/dish.jpg", &UploadLimits::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("are a URL (send image URLs to POST /enqueue), not an image"),
            "{e}"
        );
    }
}
