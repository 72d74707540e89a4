//! Image bytes to an upright RGB8 image: format sniffing, a pixel cap checked from the
//! header before any pixel is decoded, decoder memory limits, truncation detection and
//! EXIF orientation. JPEGs are decoded by libjpeg-turbo ([`crate::jpeg`]), and a large
//! one at a reduced DCT scale (n/8 of each side) when the caller only needs a given size,
//! which skips most of the inverse DCT and colour conversion work of a phone photo.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::jpeg;
use crate::sniff::{Foreign, ImageType, sniff};

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
    /// The pixels: the whole image, at full resolution or at a reduced JPEG scale.
    pub image: RgbImage,
    pub kind: ImageType,
    /// Upright `[width, height]` of the image at full resolution: the size results are
    /// reported in, whatever the scale of `image`.
    pub original: [u32; 2],
    /// Time spent in [`decode`]; zero for images built from a [`DynamicImage`].
    pub decode_time: Duration,
}

impl DecodedImage {
    /// Full-resolution upright width.
    pub fn width(&self) -> u32 {
        self.original[0]
    }

    /// Full-resolution upright height.
    pub fn height(&self) -> u32 {
        self.original[1]
    }

    /// Wraps an already decoded image (already upright, at full resolution).
    pub fn from_dynamic(image: DynamicImage, kind: ImageType) -> Self {
        let image = image.into_rgb8();
        Self {
            original: [image.width(), image.height()],
            image,
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
    #[error(
        "content is {}, not an image (JPEG, PNG or WebP expected)",
        detected.media_type()
    )]
    NotAnImage { detected: Foreign },
    #[error("image is {width}x{height} px, over the {} limit", pixel_count(*max_pixels))]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("image has no pixels ({width}x{height})")]
    ZeroSize { width: u32, height: u32 },
    #[error("image data is truncated ({kind} ends before its end marker)", kind = .0.mime())]
    Truncated(ImageType),
    #[error("cannot decode {kind} image: {source}", kind = .kind.mime())]
    Corrupt {
        kind: ImageType,
        #[source]
        source: image::ImageError,
    },
}

/// A pixel limit for people: whole megapixels (`50 MP`), else pixels (`4096 px`).
fn pixel_count(pixels: u64) -> String {
    if pixels >= 1_000_000 && pixels.is_multiple_of(1_000_000) {
        format!("{} MP", pixels / 1_000_000)
    } else {
        format!("{pixels} px")
    }
}

impl DecodeError {
    /// Whether retrying cannot help (always true for decoding).
    pub fn is_permanent(&self) -> bool {
        true
    }
}

/// Decodes image bytes into an upright RGB8 image at full resolution.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, DecodeError> {
    decode_covering(bytes, limits, None)
}

/// Decodes image bytes into an upright RGB8 image whose long side is at least `cover`
/// pixels (or the full image when it is smaller): a JPEG larger than that is decoded at
/// the smallest DCT scale (n/8) that still covers it; other formats at full resolution.
/// [`DecodedImage::original`] keeps the full size.
pub fn decode_to_cover(
    bytes: &[u8],
    limits: &DecodeLimits,
    cover: u32,
) -> Result<DecodedImage, DecodeError> {
    decode_covering(bytes, limits, Some(cover))
}

fn decode_covering(
    bytes: &[u8],
    limits: &DecodeLimits,
    cover: Option<u32>,
) -> Result<DecodedImage, DecodeError> {
    let span = tracing::info_span!(
        "decode",
        bytes = bytes.len(),
        format = tracing::field::Empty,
        width = tracing::field::Empty,
        height = tracing::field::Empty,
        decoded_width = tracing::field::Empty
    );
    let _enter = span.enter();
    let start = Instant::now();

    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let kind = sniff(bytes).map_err(|detected| DecodeError::NotAnImage { detected })?;
    span.record("format", kind.mime());
    if is_truncated(kind, bytes) {
        return Err(DecodeError::Truncated(kind));
    }
    let corrupt = |source| corrupt(kind, source);

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format(kind));
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
    // libjpeg-turbo for JPEGs; the `image` crate for the rest and for what it refuses.
    let turbo = match kind {
        ImageType::Jpeg => {
            let eighths = cover.map_or(8, |cover| jpeg::covering_eighths(width, height, cover));
            jpeg::decode(bytes, width, height, eighths)
        }
        _ => None,
    };
    let mut image = match turbo {
        Some(image) => DynamicImage::ImageRgb8(image),
        None => DynamicImage::from_decoder(decoder).map_err(corrupt)?,
    };
    image.apply_orientation(orientation);
    let image = image.into_rgb8();
    span.record("decoded_width", image.width());
    let original = if swaps_axes(orientation) {
        [height, width]
    } else {
        [width, height]
    };

    Ok(DecodedImage {
        image,
        kind,
        original,
        decode_time: start.elapsed(),
    })
}

/// Whether applying `orientation` turns a width × height image into height × width.
fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// The `image` crate's decoder for `kind`.
fn format(kind: ImageType) -> ImageFormat {
    match kind {
        ImageType::Jpeg => ImageFormat::Jpeg,
        ImageType::Png => ImageFormat::Png,
        ImageType::WebP => ImageFormat::WebP,
    }
}

fn corrupt(kind: ImageType, source: image::ImageError) -> DecodeError {
    match &source {
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated(kind)
        }
        _ => DecodeError::Corrupt { kind, source },
    }
}

/// Checks the container's end marker, since decoders may fill missing data silently.
fn is_truncated(kind: ImageType, bytes: &[u8]) -> bool {
    match kind {
        ImageType::Jpeg => !jpeg_has_eoi(bytes),
        ImageType::Png => !png_has_iend(bytes),
        ImageType::WebP => {
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
