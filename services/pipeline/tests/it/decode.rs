//! Decoding real and malformed images.

use crate::common::{decode_fixture, fixture_bytes};
use foodseg_pipeline::{DecodeError, DecodeLimits, ImageType, decode};

#[test]
fn decodes_fixtures_with_their_sizes() {
    let fruits = decode_fixture("fruits.jpg");
    assert_eq!(
        (fruits.width(), fruits.height(), fruits.kind),
        (512, 480, ImageType::Jpeg)
    );
    let coffee = decode_fixture("coffee.png");
    assert_eq!(
        (coffee.width(), coffee.height(), coffee.kind),
        (600, 400, ImageType::Png)
    );
}

#[test]
fn truncated_jpeg_is_an_error() {
    let bytes = fixture_bytes("fruits.jpg");
    let err = decode(&bytes[..bytes.len() / 2], &DecodeLimits::default()).expect_err("truncated");
    assert!(
        matches!(err, DecodeError::Truncated(ImageType::Jpeg)),
        "{err:?}"
    );
    assert!(err.to_string().contains("image data is truncated"), "{err}");
    assert!(err.is_permanent());
}

#[test]
fn truncated_png_is_an_error() {
    let bytes = fixture_bytes("coffee.png");
    let err = decode(&bytes[..bytes.len() / 2], &DecodeLimits::default()).expect_err("truncated");
    assert!(err.to_string().contains("image data is truncated"), "{err}");
}

#[test]
fn html_is_named_as_such() {
    let html =
        b"<!DOCTYPE html>\n<html><head><title>Not Found</title></head><body>nope</body></html>";
    let err = decode(html, &DecodeLimits::default()).expect_err("html");
    assert_eq!(
        err.to_string(),
        "content is text/html, not an image (JPEG, PNG or WebP expected)"
    );
    let err = decode(b"GIF89a\x01\x00\x01\x00", &DecodeLimits::default()).expect_err("gif");
    assert!(err.to_string().contains("image/gif"), "{err}");
    let err = decode(b"", &DecodeLimits::default()).expect_err("empty");
    assert!(matches!(err, DecodeError::Empty));
}

/// A PNG whose header claims `width`x`height`, followed by a tiny IDAT and IEND.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn oversized_header_is_refused_before_decoding() {
    let err = decode(&png_header(40_000, 40_000), &DecodeLimits::default()).expect_err("too large");
    assert_eq!(
        err.to_string(),
        "image is 40000x40000 px, over the 50 MP limit"
    );
    let limits = DecodeLimits { max_pixels: 100 };
    let err = decode(&fixture_bytes("fruits.jpg"), &limits).expect_err("over a small cap");
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                width: 512,
                height: 480,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "image is 512x480 px, over the 100 px limit"
    );
    let limits = DecodeLimits {
        max_pixels: 2_500_000,
    };
    let err = decode(&png_header(2000, 2000), &limits).expect_err("over 2.5 MP");
    assert_eq!(
        err.to_string(),
        "image is 2000x2000 px, over the 2500000 px limit"
    );
}

/// Inserts an APP1 Exif segment with the given orientation right after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2a\x00\x00\x00\x08"); // big-endian, IFD0 at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let original = decode_fixture("fruits.jpg");
    let rotated = decode(
        &with_exif_orientation(&fixture_bytes("fruits.jpg"), 6),
        &DecodeLimits::default(),
    )
    .expect("rotated jpeg");
    assert_eq!((rotated.width(), rotated.height()), (480, 512));
    // Orientation 6 is a 90° clockwise rotation: the original's bottom-left pixel is
    // now the top-left one.
    let a = original.image.get_pixel(0, 479).0;
    let b = rotated.image.get_pixel(0, 0).0;
    assert!(
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 2),
        "{a:?} vs {b:?}"
    );
}

/// Mean absolute difference per channel between two images of one size.
fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

fn encode_jpeg(image: &image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut out, 90,
        ))
        .expect("encode jpeg");
    out
}

#[test]
fn jpeg_pixels_agree_with_the_image_crate() {
    let bytes = fixture_bytes("fruits.jpg");
    let ours = decode_fixture("fruits.jpg");
    let theirs = image::load_from_memory(&bytes)
        .expect("image crate")
        .into_rgb8();
    let diff = mean_abs_diff(&ours.image, &theirs);
    assert!(diff < 1.0, "mean abs difference {diff}");
}

#[test]
fn large_jpeg_is_decoded_at_the_smallest_covering_scale() {
    let fruits = image::load_from_memory(&fixture_bytes("fruits.jpg")).expect("fruits");
    let large = fruits.resize_exact(2560, 2400, image::imageops::FilterType::Triangle);
    let bytes = encode_jpeg(&large);

    // 2/8 of 2560 is 640, the least that covers a 640 model input.
    let reduced =
        foodseg_pipeline::decode_to_cover(&bytes, &DecodeLimits::default(), 640).expect("cover");
    assert_eq!(reduced.image.dimensions(), (640, 600));
    assert_eq!(reduced.original, [2560, 2400]);
    let expected = fruits
        .resize_exact(640, 600, image::imageops::FilterType::Triangle)
        .into_rgb8();
    let diff = mean_abs_diff(&reduced.image, &expected);
    assert!(diff < 6.0, "mean abs difference {diff}");

    // 3/8 for 900: 960 wide.
    let three = foodseg_pipeline::decode_to_cover(&bytes, &DecodeLimits::default(), 900)
        .expect("cover 900");
    assert_eq!(three.image.dimensions(), (960, 900));

    // Turned upright after the reduced decode; results are reported at the full size.
    let rotated = foodseg_pipeline::decode_to_cover(
        &with_exif_orientation(&bytes, 6),
        &DecodeLimits::default(),
        640,
    )
    .expect("rotated");
    assert_eq!(rotated.image.dimensions(), (600, 640));
    assert_eq!(rotated.original, [2400, 2560]);

    // Without a size to cover, the full image.
    let full = decode(&bytes, &DecodeLimits::default()).expect("full");
    assert_eq!(full.image.dimensions(), (2560, 2400));
}

#[test]
fn grey_jpeg_decodes_to_grey_rgb() {
    let grey = image::load_from_memory(&fixture_bytes("fruits.jpg"))
        .expect("fruits")
        .grayscale();
    let decoded = decode(&encode_jpeg(&grey), &DecodeLimits::default()).expect("grey jpeg");
    assert_eq!(decoded.image.dimensions(), (512, 480));
    assert!(decoded.image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    assert!(
        decoded
            .image
            .pixels()
            .any(|p| p[0] != decoded.image.get_pixel(0, 0)[0])
    );
}
