//! Image bytes to an upright RGB8 image: format sniffing, a pixel cap checked from the
//! header before any pixel is decoded, decoder memory limits, truncation detection and
//! EXIF orientation.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// Image formats the pipeline accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    WebP,
}

impl ImageKind {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::WebP => "image/webp",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
            Self::WebP => ImageFormat::WebP,
        }
    }
}

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width × height, checked from the header before decoding.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 50_000_000,
        }
    }
}

/// A decoded, upright (EXIF orientation applied) RGB8 image.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub image: RgbImage,
    pub kind: ImageKind,
    /// Time spent in [`decode`]; zero for images built from a [`DynamicImage`].
    pub decode_time: Duration,
}

impl DecodedImage {
    pub fn width(&self) -> u32 {
        self.image.width()
    }

    pub fn height(&self) -> u32 {
        self.image.height()
    }

    /// Wraps an already decoded image (already upright).
    pub fn from_dynamic(image: DynamicImage, kind: ImageKind) -> Self {
        Self {
            image: image.into_rgb8(),
            kind,
            decode_time: Duration::ZERO,
        }
    }
}

/// Why bytes could not be turned into an image. Every variant is permanent: retrying
/// the same bytes gives the same answer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("image data is empty")]
    Empty,
    #[error("content is {detected}, not an image (JPEG, PNG or WebP expected)")]
    NotAnImage { detected: &'static str },
    #[error("image is {width}x{height} px, over the {} MP limit", max_pixels / 1_000_000)]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("image has no pixels ({width}x{height})")]
    ZeroSize { width: u32, height: u32 },
    #[error("image data is truncated ({kind} ends before its end marker)", kind = .0.mime())]
    Truncated(ImageKind),
    #[error("cannot decode {kind} image: {source}", kind = .kind.mime())]
    Corrupt {
        kind: ImageKind,
        #[source]
        source: image::ImageError,
    },
}

impl DecodeError {
    /// Whether retrying cannot help (always true for decoding).
    pub fn is_permanent(&self) -> bool {
        true
    }
}

/// Decodes image bytes into an upright RGB8 image.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, DecodeError> {
    let span = tracing::info_span!(
        "decode",
        bytes = bytes.len(),
        format = tracing::field::Empty,
        width = tracing::field::Empty,
        height = tracing::field::Empty
    );
    let _enter = span.enter();
    let start = Instant::now();

    let kind = sniff(bytes)?;
    span.record("format", kind.mime());
    if is_truncated(kind, bytes) {
        return Err(DecodeError::Truncated(kind));
    }
    let corrupt = |source| corrupt(kind, source);

    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    // Header only; real limits are set once the dimensions are known to be acceptable.
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    span.record("width", width);
    span.record("height", height);
    if width == 0 || height == 0 {
        return Err(DecodeError::ZeroSize { width, height });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    // Room for a 16-bit RGBA buffer plus a converted copy.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(16));
    decoder.set_limits(decoder_limits).map_err(corrupt)?;

    let orientation = decoder.orientation().map_err(corrupt)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    image.apply_orientation(orientation);
    let image = image.into_rgb8();

    Ok(DecodedImage {
        image,
        kind,
        decode_time: start.elapsed(),
    })
}

fn corrupt(kind: ImageKind, source: image::ImageError) -> DecodeError {
    match &source {
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated(kind)
        }
        _ => DecodeError::Corrupt { kind, source },
    }
}

/// Identifies the content from its first bytes.
pub fn sniff(bytes: &[u8]) -> Result<ImageKind, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageKind::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageKind::Png);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(ImageKind::WebP);
    }
    Err(DecodeError::NotAnImage {
        detected: detect_other(bytes),
    })
}

/// Names non-accepted content well enough for an error message.
fn detect_other(bytes: &[u8]) -> &'static str {
    let magic: &[(&[u8], &str)] = &[
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"BM", "image/bmp"),
        (b"II*\0", "image/tiff"),
        (b"MM\0*", "image/tiff"),
        (b"%PDF", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
    ];
    if let Some((_, name)) = magic.iter().find(|(m, _)| bytes.starts_with(m)) {
        return name;
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = &bytes[8..12];
        if brand == b"heic" || brand == b"heix" || brand == b"mif1" || brand == b"heim" {
            return "image/heic";
        }
        if brand == b"avif" || brand == b"avis" {
            return "image/avif";
        }
        return "video/mp4";
    }
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head)
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if text.starts_with("<!doctype html")
        || text.starts_with("<html")
        || text.contains("<body")
        || text.contains("<head")
    {
        return "text/html";
    }
    if text.starts_with("<?xml") || text.starts_with("<svg") {
        return if text.contains("<svg") {
            "image/svg+xml"
        } else {
            "application/xml"
        };
    }
    if text.starts_with('{') || text.starts_with('[') {
        return "application/json";
    }
    let printable = head
        .iter()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    if printable * 10 >= head.len() * 9 {
        "text/plain"
    } else {
        "unrecognised binary data"
    }
}

/// Checks the container's end marker, since decoders may fill missing data silently.
fn is_truncated(kind: ImageKind, bytes: &[u8]) -> bool {
    match kind {
        ImageKind::Jpeg => !jpeg_has_eoi(bytes),
        ImageKind::Png => !png_has_iend(bytes),
        ImageKind::WebP => {
            let declared = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            (bytes.len() as u64) < u64::from(declared) + 8
        }
    }
}

/// True when an EOI marker follows the last start-of-scan marker. Entropy-coded data
/// never contains `FF D9` (0xFF is byte-stuffed), so this finds the real end of image,
/// not the end of an embedded thumbnail.
fn jpeg_has_eoi(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    match (last_sos, last_eoi) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// True when the file contains an IEND chunk type after the signature.
fn png_has_iend(bytes: &[u8]) -> bool {
    // IEND is the last chunk: 4-byte length, "IEND", 4-byte CRC. Allow trailing bytes.
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(4).any(|w| w == b"IEND")
}
