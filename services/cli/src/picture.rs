//! Reading local image files: format sniffing and decoding upright (EXIF orientation
//! applied, as the worker does, so result coordinates line up).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::CliError;

/// Extensions `submit-dir` picks up.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// A local image file, read and recognised.
pub struct LocalImage {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

impl LocalImage {
    /// Reads `path` and checks by its bytes that it is a JPEG, PNG or WebP.
    pub fn read(path: &Path) -> Result<Self, CliError> {
        let bytes = std::fs::read(path).map_err(|source| CliError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let content_type = sniff(&bytes).ok_or_else(|| CliError::NotAnImage {
            path: path.to_path_buf(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            content_type,
        })
    }

    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into())
    }
}

/// The MIME type of a supported image, from its leading bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        ImageFormat::Jpeg => Some("image/jpeg"),
        ImageFormat::Png => Some("image/png"),
        ImageFormat::WebP => Some("image/webp"),
        _ => None,
    }
}

/// Decodes to RGB with the EXIF orientation applied. `what` names the source in errors.
pub fn decode_upright(bytes: &[u8], what: &str) -> Result<RgbImage, CliError> {
    let err = |source| CliError::Decode {
        what: what.to_string(),
        source,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(image::ImageError::IoError(e)))?;
    let mut decoder = reader.into_decoder().map_err(err)?;
    let orientation = decoder.orientation().map_err(err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(err)?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

/// Whether a path looks like an image `submit-dir` should take.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        RgbImage::new(w, h)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn sniffs_by_content_not_name() {
        assert_eq!(sniff(&png_bytes(2, 2)), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0rest"), Some("image/jpeg"));
        assert_eq!(sniff(b"hello, I am text"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn decodes_and_reports_garbage() {
        assert_eq!(
            decode_upright(&png_bytes(3, 2), "x").unwrap().dimensions(),
            (3, 2)
        );
        let e = decode_upright(b"\xff\xd8\xffnot really", "bad.jpg").unwrap_err();
        assert!(
            e.to_string().starts_with("cannot decode image bad.jpg"),
            "{e}"
        );
    }

    #[test]
    fn reading_missing_or_non_image_files_fails_clearly() {
        let missing = Path::new("/nonexistent/dir/photo.jpg");
        let e = LocalImage::read(missing).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("cannot read /nonexistent/dir/photo.jpg"),
            "{e}"
        );

        let path = std::env::temp_dir().join(format!("foodseg-cli-{}.jpg", uuid::Uuid::new_v4()));
        std::fs::write(&path, b"not an image").unwrap();
        let e = LocalImage::read(&path).err().unwrap();
        assert!(matches!(e, CliError::NotAnImage { .. }));
        assert!(
            e.to_string()
                .ends_with("is not an image (expected JPEG, PNG or WebP)")
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn extension_filter() {
        assert!(has_image_extension(Path::new("a/B.JPG")));
        assert!(has_image_extension(Path::new("x.webp")));
        assert!(!has_image_extension(Path::new("notes.txt")));
        assert!(!has_image_extension(Path::new("noext")));
    }
}
