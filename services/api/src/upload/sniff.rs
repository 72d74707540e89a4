//! What uploaded bytes are, judged from their first bytes (the client's Content-Type is
//! not trusted: curl and browsers often send `application/octet-stream`).

/// An image type the pipeline decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
}

impl ImageType {
    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Webp => "image/webp",
        }
    }

    /// File name extension, for uploads sent without a name.
    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpg",
            ImageType::Png => "png",
            ImageType::Webp => "webp",
        }
    }
}

/// The image type of `bytes`, from their signature; `None` when they are no JPEG, PNG or
/// WebP.
pub fn sniff(bytes: &[u8]) -> Option<ImageType> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageType::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageType::Png)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(ImageType::Webp)
    } else {
        None
    }
}

/// A short description of what bytes that are not a supported image look like, for the
/// error message ("the uploaded bytes are HTML, not …").
pub fn describe(bytes: &[u8]) -> &'static str {
    let head = &bytes[..bytes.len().min(512)];
    let ftyp_brand = (head.len() >= 12 && &head[4..8] == b"ftyp").then(|| &head[8..12]);
    if let Some(kind) = match () {
        _ if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") => Some("a GIF image"),
        _ if head.starts_with(b"BM") && head.len() >= 14 => Some("a BMP image"),
        _ if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") => Some("a TIFF image"),
        _ if head.starts_with(b"%PDF") => Some("a PDF document"),
        _ if head.starts_with(b"PK\x03\x04") => Some("a ZIP archive"),
        _ if head.starts_with(&[0x1F, 0x8B]) => Some("gzip-compressed data"),
        _ if head.starts_with(b"RIFF") => Some("a RIFF file that is not WebP"),
        _ => None,
    } {
        return kind;
    }
    if let Some(brand) = ftyp_brand {
        return match brand {
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc" => "a HEIC/HEIF image",
            b"avif" | b"avis" => "an AVIF image",
            _ => "an ISO media file (video or HEIF)",
        };
    }
    let Ok(text) = std::str::from_utf8(head).or_else(|e| {
        // A multi-byte character cut at 512 bytes still counts as text.
        std::str::from_utf8(&head[..e.valid_up_to()]).map_err(|_| ())
    }) else {
        return "binary data of an unknown type";
    };
    if text.len() + 4 < head.len() || text.contains('\0') {
        return "binary data of an unknown type";
    }
    let lower = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") || lower.contains("<body")
    {
        "HTML"
    } else if lower.starts_with("<svg") || (lower.starts_with("<?xml") && lower.contains("<svg")) {
        "an SVG image (vector images are not supported)"
    } else if lower.starts_with("<?xml") {
        "XML"
    } else if lower.starts_with('{') || lower.starts_with('[') {
        "JSON"
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        "a URL (send image URLs to POST /enqueue)"
    } else {
        "text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_of_the_supported_types() {
        assert_eq!(sniff(b"\xff\xd8\xff\xdb..."), Some(ImageType::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageType::Png));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(ImageType::Webp));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"\xff\xd8"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn fixtures_are_recognised() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline/tests/fixtures");
        for (name, kind) in [
            ("fruits.jpg", ImageType::Jpeg),
            ("coffee.png", ImageType::Png),
        ] {
            let bytes = std::fs::read(dir.join(name)).expect("fixture");
            assert_eq!(sniff(&bytes), Some(kind), "{name}");
        }
    }

    #[test]
    fn other_content_is_named() {
        assert_eq!(describe(b"<!DOCTYPE html><html>"), "HTML");
        assert_eq!(describe(b"\n  <html lang=en>"), "HTML");
        assert_eq!(describe(b"{\"image_url\": \"x\"}"), "JSON");
        assert_eq!(describe(b"GIF89a\x01\0"), "a GIF image");
        assert_eq!(describe(b"%PDF-1.7"), "a PDF document");
        assert_eq!(describe(b"\0\0\0\x18ftypheic\0\0\0\0"), "a HEIC/HEIF image");
        assert_eq!(describe(b"\0\0\0\x1cftypavif\0\0\0\0"), "an AVIF image");
        assert_eq!(
            describe(b"<svg xmlns="),
            "an SVG image (vector images are not supported)"
        );
        assert_eq!(describe(b"hello there"), "text");
        assert_eq!(
            describe(&[0u8, 1, 2, 3, 250, 251, 252, 0, 0]),
            "binary data of an unknown type"
        );
    }
}
