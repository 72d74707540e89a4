//! What bytes are, judged from their first bytes alone (a declared Content-Type is not
//! trusted: image hosts and clients often send `application/octet-stream` or worse).
//! Accepted images are an [`ImageType`]; anything else is named by a [`Foreign`] kind
//! so an error message can say what arrived instead. Pure: no I/O.

/// An image type the pipeline decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Png,
    WebP,
}

impl ImageType {
    /// The media type, e.g. `image/jpeg`.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::WebP => "image/webp",
        }
    }

    /// A file name extension, e.g. for uploads sent without a name.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::WebP => "webp",
        }
    }
}

/// Content that is not an accepted image, as far as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    Gif,
    Bmp,
    Tiff,
    Pdf,
    Zip,
    Gzip,
    /// A RIFF container holding something other than WebP (WAV, AVI, …).
    Riff,
    /// HEIC/HEIF, the default format of iPhone photos.
    Heif,
    Avif,
    /// An ISO base media file that is no still image (MP4, MOV, …).
    IsoMedia,
    Html,
    Svg,
    Xml,
    Json,
    /// Text starting with an `http(s)://` address.
    Url,
    Text,
    Binary,
}

impl Foreign {
    /// The media type, for messages and logs read by operators (`text/html`).
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Gif => "image/gif",
            Self::Bmp => "image/bmp",
            Self::Tiff => "image/tiff",
            Self::Pdf => "application/pdf",
            Self::Zip => "application/zip",
            Self::Gzip => "application/gzip",
            Self::Riff | Self::Binary => "application/octet-stream",
            Self::Heif => "image/heic",
            Self::Avif => "image/avif",
            Self::IsoMedia => "video/mp4",
            Self::Html => "text/html",
            Self::Svg => "image/svg+xml",
            Self::Xml => "application/xml",
            Self::Json => "application/json",
            Self::Url | Self::Text => "text/plain",
        }
    }

    /// A short phrase for people ("the uploaded bytes are HTML, not an image").
    pub fn description(self) -> &'static str {
        match self {
            Self::Gif => "a GIF image",
            Self::Bmp => "a BMP image",
            Self::Tiff => "a TIFF image",
            Self::Pdf => "a PDF document",
            Self::Zip => "a ZIP archive",
            Self::Gzip => "gzip-compressed data",
            Self::Riff => "a RIFF file that is not WebP",
            Self::Heif => "a HEIC/HEIF image",
            Self::Avif => "an AVIF image",
            Self::IsoMedia => "an ISO media file (video or HEIF)",
            Self::Html => "HTML",
            Self::Svg => "an SVG image (vector images are not supported)",
            Self::Xml => "XML",
            Self::Json => "JSON",
            Self::Url => "a URL",
            Self::Text => "text",
            Self::Binary => "binary data of an unknown type",
        }
    }
}

/// How many leading bytes are looked at.
const HEAD: usize = 512;

/// The image type of `bytes` from their signature, or what they are instead. Empty
/// bytes are [`Foreign::Text`]; callers that must tell "nothing" apart check first.
pub fn sniff(bytes: &[u8]) -> Result<ImageType, Foreign> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(ImageType::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(ImageType::Png)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Ok(ImageType::WebP)
    } else {
        Err(foreign(bytes))
    }
}

/// Names content that is not an accepted image from its first bytes.
fn foreign(bytes: &[u8]) -> Foreign {
    let head = &bytes[..bytes.len().min(HEAD)];
    let signatures: &[(&[u8], Foreign)] = &[
        (b"GIF87a", Foreign::Gif),
        (b"GIF89a", Foreign::Gif),
        (b"II*\0", Foreign::Tiff),
        (b"MM\0*", Foreign::Tiff),
        (b"%PDF", Foreign::Pdf),
        (b"PK\x03\x04", Foreign::Zip),
        (b"\x1f\x8b", Foreign::Gzip),
        (b"RIFF", Foreign::Riff),
    ];
    if let Some(&(_, kind)) = signatures.iter().find(|(m, _)| head.starts_with(m)) {
        return kind;
    }
    // "BM" alone starts plenty of text; a BMP has a 14-byte file header.
    if head.starts_with(b"BM") && head.len() >= 14 {
        return Foreign::Bmp;
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return match &head[8..12] {
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" => {
                Foreign::Heif
            }
            b"avif" | b"avis" => Foreign::Avif,
            _ => Foreign::IsoMedia,
        };
    }
    let Some(text) = as_text(head, bytes.len() > head.len()) else {
        return Foreign::Binary;
    };
    let lower = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || lower.contains("<body")
        || lower.contains("<head")
    {
        Foreign::Html
    } else if lower.starts_with("<svg") || (lower.starts_with("<?xml") && lower.contains("<svg")) {
        Foreign::Svg
    } else if lower.starts_with("<?xml") {
        Foreign::Xml
    } else if lower.starts_with('{') || lower.starts_with('[') {
        Foreign::Json
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        Foreign::Url
    } else {
        Foreign::Text
    }
}

/// `head` as text: UTF-8 (a character `cut` by the sniffing window still counts) or,
/// for legacy encodings, at least 90% printable ASCII; never with NUL bytes.
fn as_text(head: &[u8], cut: bool) -> Option<String> {
    if head.contains(&0) {
        return None;
    }
    let utf8 = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => cut && e.error_len().is_none(),
    };
    let printable = head
        .iter()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    (utf8 || printable * 10 >= head.len() * 9).then(|| String::from_utf8_lossy(head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_of_the_accepted_types() {
        assert_eq!(sniff(b"\xff\xd8\xff\xdb..."), Ok(ImageType::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Ok(ImageType::Png));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Ok(ImageType::WebP));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), Err(Foreign::Riff));
        assert_eq!(sniff(b"\xff\xd8"), Err(Foreign::Binary));
        assert!(sniff(b"").is_err());
        assert_eq!(ImageType::WebP.mime(), "image/webp");
        assert_eq!(ImageType::Jpeg.extension(), "jpg");
    }

    #[test]
    fn fixtures_are_recognised() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for (name, kind) in [
            ("fruits.jpg", ImageType::Jpeg),
            ("coffee.png", ImageType::Png),
        ] {
            let bytes = std::fs::read(dir.join(name)).expect("fixture");
            assert_eq!(sniff(&bytes), Ok(kind), "{name}");
        }
    }

    fn named(bytes: &[u8]) -> Foreign {
        sniff(bytes).expect_err("not an accepted image")
    }

    #[test]
    fn other_content_is_named() {
        let cases: &[(&[u8], Foreign)] = &[
            (b"<!DOCTYPE html><html>", Foreign::Html),
            (b"\n  <html lang=en>", Foreign::Html),
            (b"\xef\xbb\xbf<!doctype HTML>", Foreign::Html),
            (b"{\"image_url\": \"x\"}", Foreign::Json),
            (b"[1, 2]", Foreign::Json),
            (b"GIF89a\x01\0", Foreign::Gif),
            (b"BM\x36\0\x0c\0\0\0\0\0\x36\0\0\0", Foreign::Bmp),
            (b"BMW is a car", Foreign::Text),
            (b"II*\0\x08\0\0\0", Foreign::Tiff),
            (b"%PDF-1.7", Foreign::Pdf),
            (b"PK\x03\x04\x14\0", Foreign::Zip),
            (b"\x1f\x8b\x08\0", Foreign::Gzip),
            (b"\0\0\0\x18ftypheic\0\0\0\0", Foreign::Heif),
            (b"\0\0\0\x18ftypmif1\0\0\0\0", Foreign::Heif),
            (b"\0\0\0\x1cftypavif\0\0\0\0", Foreign::Avif),
            (b"\0\0\0\x20ftypisom\0\0\0\0", Foreign::IsoMedia),
            (b"<svg xmlns=", Foreign::Svg),
            (b"<?xml version=\"1.0\"?>\n<svg>", Foreign::Svg),
            (b"<?xml version=\"1.0\"?>\n<feed>", Foreign::Xml),
            (b"https://example.org/dish.jpg\n", Foreign::Url),
            (b"hello there", Foreign::Text),
            (&[0u8, 1, 2, 3, 250, 251, 252, 0, 0], Foreign::Binary),
        ];
        for &(bytes, kind) in cases {
            assert_eq!(named(bytes), kind, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn text_is_told_from_binary() {
        // A multi-byte character cut at the sniffing window is still text.
        let cut = format!("a{}", "é".repeat(HEAD));
        assert_eq!(named(cut.as_bytes()), Foreign::Text);
        // Latin-1 HTML is not UTF-8 but still mostly ASCII.
        assert_eq!(
            named(b"<html><body>Caf\xe9 du coin, la carte du jour</body></html>"),
            Foreign::Html
        );
        assert_eq!(named(b"text\0with a NUL"), Foreign::Binary);
        assert_eq!(named(&[0xC3u8; 64]), Foreign::Binary);
        assert_eq!(named(b"\xc3"), Foreign::Binary);
    }

    #[test]
    fn names_for_messages() {
        assert_eq!(Foreign::Html.media_type(), "text/html");
        assert_eq!(Foreign::Html.description(), "HTML");
        assert_eq!(Foreign::Gif.media_type(), "image/gif");
        assert_eq!(Foreign::Gif.description(), "a GIF image");
        assert_eq!(Foreign::Pdf.description(), "a PDF document");
        assert_eq!(Foreign::Heif.description(), "a HEIC/HEIF image");
        assert_eq!(Foreign::Avif.description(), "an AVIF image");
        assert_eq!(
            Foreign::Svg.description(),
            "an SVG image (vector images are not supported)"
        );
        assert_eq!(Foreign::Text.description(), "text");
        assert_eq!(
            Foreign::Binary.description(),
            "binary data of an unknown type"
        );
    }
}
