//! The file name of an upload: it becomes the job's `image_id`, so it is kept as the
//! client sent it except for any directory part, and refused when it cannot be one.

use super::{ImageType, UploadError};

/// Longest accepted file name, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;

/// The name to store for an upload: the last path component of `raw` (clients sometimes
/// send `C:\photos\dish.jpg`), or `upload.<ext>` when none was given.
pub fn check_filename(raw: Option<&str>, image: ImageType) -> Result<String, UploadError> {
    let invalid = |reason: &str| UploadError::InvalidFilename {
        reason: reason.to_string(),
    };
    let name = raw
        .map(|r| r.rsplit(['/', '\\']).next().unwrap_or(r).trim())
        .unwrap_or("");
    if name.is_empty() {
        if raw.is_some_and(|r| !r.trim().is_empty()) {
            return Err(invalid("names a directory, not a file"));
        }
        return Ok(format!("upload.{}", image.extension()));
    }
    if name == "." || name == ".." {
        return Err(invalid("names a directory, not a file"));
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(invalid(&format!(
            "is {} bytes long, over the {MAX_FILENAME_BYTES}-byte limit",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: Option<&str>) -> String {
        check_filename(raw, ImageType::Png).unwrap()
    }

    #[test]
    fn names_are_kept_without_their_directories() {
        assert_eq!(ok(Some("dish.jpeg")), "dish.jpeg");
        assert_eq!(ok(Some("my dish #2.jpg")), "my dish #2.jpg");
        assert_eq!(ok(Some("../../etc/passwd")), "passwd");
        assert_eq!(ok(Some(r"C:\photos\soup.png")), "soup.png");
        assert_eq!(ok(Some("  café.webp ")), "café.webp");
    }

    #[test]
    fn missing_names_get_one_from_the_type() {
        assert_eq!(ok(None), "upload.png");
        assert_eq!(ok(Some("")), "upload.png");
        assert_eq!(ok(Some("  ")), "upload.png");
    }

    #[test]
    fn unusable_names_are_refused() {
        for raw in ["photos/", "..", "a\nb.jpg", &"x".repeat(300)] {
            let e = check_filename(Some(raw), ImageType::Jpeg).unwrap_err();
            assert_eq!(e.code(), "invalid_filename", "{raw:?}");
        }
    }
}
