//! Sniffing and decoding bytes made by machine: arbitrary bytes, signatures followed by
//! anything, the real photos truncated anywhere or with bytes changed, inserted or
//! removed, and small images encoded here and mutated the same way. Whatever arrives,
//! the answer is an image within the pixel limit or an error that names the problem;
//! never a panic, and a cut-off file never yields a different picture.

use std::io::Cursor;
use std::sync::OnceLock;

use foodseg_pipeline::sniff::sniff;
use foodseg_pipeline::{DecodeError, DecodeLimits, DecodedImage, Foreign, ImageType, decode};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::common::fixture_bytes;

const FIXTURES: [&str; 2] = ["fruits.jpg", "coffee.png"];

fn fixture(name: &str) -> &'static [u8] {
    static BYTES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let all = BYTES.get_or_init(|| FIXTURES.iter().map(|n| fixture_bytes(n)).collect());
    &all[FIXTURES.iter().position(|n| *n == name).expect("a fixture")]
}

/// The fixture decoded whole, under the default limits.
fn fixture_image(name: &str) -> &'static RgbImage {
    static IMAGES: OnceLock<Vec<RgbImage>> = OnceLock::new();
    let all = IMAGES.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|n| decode(fixture(n), &DecodeLimits::default()).expect(n).image)
            .collect()
    });
    &all[FIXTURES.iter().position(|n| *n == name).expect("a fixture")]
}

/// Pixel limits: tiny, around the fixtures' sizes (512x480, 600x400), and the default.
fn limits() -> impl Strategy<Value = DecodeLimits> {
    prop_oneof![
        1 => 1u64..=64,
        2 => 64u64..5_000,
        1 => Just(240_000u64),
        1 => Just(245_760u64),
        2 => 200_000u64..3_000_000,
        1 => Just(12_000_000u64),
        2 => Just(DecodeLimits::default().max_pixels),
    ]
    .prop_map(|max_pixels| DecodeLimits { max_pixels })
}

/// A small image (1 to 24 px a side, noise or flat colour) encoded as JPEG, PNG or WebP.
fn small_image() -> impl Strategy<Value = Vec<u8>> {
    (1u32..=24, 1u32..=24, any::<u64>(), any::<bool>(), 0..3u8).prop_map(
        |(w, h, seed, flat, format)| {
            let image = RgbImage::from_fn(w, h, |x, y| {
                let v = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(u64::from(if flat { 0 } else { x * 31 + y * 17 }))
                    .to_le_bytes();
                Rgb([v[3], v[5], v[7]])
            });
            let format = [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP][format as usize];
            let mut out = Cursor::new(Vec::new());
            DynamicImage::ImageRgb8(image)
                .write_to(&mut out, format)
                .expect("encode a small image");
            out.into_inner()
        },
    )
}

/// One change to a file: cut, bytes overwritten, inserted or removed.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Overwrite(Vec<(Index, u8)>),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Truncate),
        3 => proptest::collection::vec((any::<Index>(), any::<u8>()), 1..8).prop_map(Mutation::Overwrite),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..64)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..256).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

/// Mutations landing in the first 2 KiB (the headers) half of the time.
fn apply(bytes: &[u8], mutation: &Mutation, head_only: bool) -> Vec<u8> {
    let span = if head_only {
        bytes.len().min(2048)
    } else {
        bytes.len()
    };
    let mut out = bytes.to_vec();
    match mutation {
        Mutation::Truncate(at) => out.truncate(at.index(bytes.len())),
        Mutation::Overwrite(changes) => {
            for (at, byte) in changes {
                out[at.index(span)] = *byte;
            }
        }
        Mutation::Insert(at, inserted) => {
            let at = at.index(span + 1);
            out.splice(at..at, inserted.iter().copied());
        }
        Mutation::Remove(at, n) => {
            let at = at.index(span);
            out.drain(at..(at + n).min(out.len()));
        }
    }
    out
}

/// The limit a `TooLarge` message states, in pixels.
fn stated_limit(message: &str) -> Option<u64> {
    let limit = message.split("over the ").nth(1)?.strip_suffix(" limit")?;
    if let Some(mp) = limit.strip_suffix(" MP") {
        mp.parse::<u64>().ok()?.checked_mul(1_000_000)
    } else {
        limit.strip_suffix(" px")?.parse().ok()
    }
}

/// Decodes `bytes`: a success is an image of the sniffed type within the limit; an error
/// is permanent and its message names the problem.
fn check_decode(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<Option<DecodedImage>, TestCaseError> {
    let sniffed = sniff(bytes);
    let result = decode(bytes, limits);
    let error = match result {
        Ok(image) => {
            let (w, h) = (image.width(), image.height());
            prop_assert!(w > 0 && h > 0);
            prop_assert!(
                u64::from(w) * u64::from(h) <= limits.max_pixels,
                "{w}x{h} over {limits:?}"
            );
            prop_assert_eq!(Ok(image.kind), sniffed);
            return Ok(Some(image));
        }
        Err(e) => e,
    };
    let message = error.to_string();
    prop_assert!(error.is_permanent());
    match &error {
        DecodeError::Empty => {
            prop_assert!(bytes.is_empty());
            prop_assert!(message.contains("empty"), "{}", message);
        }
        DecodeError::NotAnImage { detected } => {
            prop_assert_eq!(sniffed, Err(*detected));
            prop_assert!(message.contains("not an image"), "{}", message);
            prop_assert!(message.contains(detected.media_type()), "{}", message);
        }
        DecodeError::TooLarge {
            width,
            height,
            max_pixels,
        } => {
            prop_assert_eq!(*max_pixels, limits.max_pixels);
            prop_assert!(u64::from(*width) * u64::from(*height) > limits.max_pixels);
            prop_assert!(
                message.contains(&format!("{width}x{height}")),
                "{}",
                message
            );
            prop_assert_eq!(
                stated_limit(&message),
                Some(limits.max_pixels),
                "{}",
                message
            );
        }
        DecodeError::ZeroSize { width, height } => {
            prop_assert!(*width == 0 || *height == 0);
            prop_assert!(message.contains("no pixels"), "{}", message);
        }
        DecodeError::Truncated(kind) => {
            prop_assert_eq!(sniffed, Ok(*kind));
            prop_assert!(
                message.contains("truncated") && message.contains(kind.mime()),
                "{}",
                message
            );
        }
        DecodeError::Corrupt { kind, .. } => {
            prop_assert_eq!(sniffed, Ok(*kind));
            prop_assert!(
                message.starts_with("cannot decode") && message.contains(kind.mime()),
                "{}",
                message
            );
            // The decoder's own reason follows the colon.
            prop_assert!(
                message
                    .split_once(": ")
                    .is_some_and(|(_, why)| !why.trim().is_empty()),
                "{}",
                message
            );
        }
    }
    Ok(None)
}

/// Signatures `sniff` must recognise whatever follows them.
const SIGNATURES: &[(&[u8], Result<ImageType, Foreign>)] = &[
    (b"\xff\xd8\xff", Ok(ImageType::Jpeg)),
    (b"\x89PNG\r\n\x1a\n", Ok(ImageType::Png)),
    (b"GIF87a", Err(Foreign::Gif)),
    (b"GIF89a", Err(Foreign::Gif)),
    (b"II*\0", Err(Foreign::Tiff)),
    (b"MM\0*", Err(Foreign::Tiff)),
    (b"%PDF", Err(Foreign::Pdf)),
    (b"PK\x03\x04", Err(Foreign::Zip)),
    (b"\x1f\x8b", Err(Foreign::Gzip)),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A known signature is recognised whatever follows it; a RIFF file is WebP exactly
    /// when its form type says so.
    #[test]
    fn signatures_are_recognised(
        which in 0..SIGNATURES.len(),
        size in any::<[u8; 4]>(),
        form in prop_oneof![Just(*b"WEBP"), Just(*b"WAVE"), Just(*b"AVI "), any::<[u8; 4]>()],
        rest in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let (signature, kind) = SIGNATURES[which];
        prop_assert_eq!(sniff(&[signature, &rest].concat()), kind);
        let riff = [b"RIFF".as_slice(), &size, &form, &rest].concat();
        let want = if &form == b"WEBP" { Ok(ImageType::WebP) } else { Err(Foreign::Riff) };
        prop_assert_eq!(sniff(&riff), want);
    }

    /// Arbitrary bytes, and text-like bytes, are sniffed and decoded without a panic;
    /// only bytes with an image signature are called images.
    #[test]
    fn arbitrary_bytes_are_decoded_or_named(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            "[ -~\\t\\n\\u{e9}\\u{feff}]{0,300}".prop_map(String::into_bytes),
            (0..SIGNATURES.len(), proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(|(i, rest)| [SIGNATURES[i].0, &rest].concat()),
            // A RIFF header declaring this many bytes, a WebP chunk and anything after.
            (
                prop_oneof![0u32..100, any::<u32>()],
                prop_oneof![Just(*b"VP8 "), Just(*b"VP8L"), Just(*b"VP8X"), any::<[u8; 4]>()],
                proptest::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(|(size, chunk, rest)| {
                    [b"RIFF".as_slice(), &size.to_le_bytes(), b"WEBP", &chunk, &rest].concat()
                }),
        ],
        limits in limits(),
    ) {
        match sniff(&bytes) {
            Ok(ImageType::Jpeg) => prop_assert!(bytes.starts_with(b"\xff\xd8\xff")),
            Ok(ImageType::Png) => prop_assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n")),
            Ok(ImageType::WebP) => prop_assert!(bytes.starts_with(b"RIFF") && bytes[8..12] == *b"WEBP"),
            Err(kind) => {
                prop_assert!(!kind.description().is_empty() && kind.media_type().contains('/'));
            }
        }
        check_decode(&bytes, &limits)?;
    }

    /// Small encoded images decode to their size; changed, they decode or fail cleanly.
    #[test]
    fn small_images_survive_mutation(
        original in small_image(),
        mutation in mutation(),
        head_only in any::<bool>(),
        limits in limits(),
    ) {
        let whole = check_decode(&original, &DecodeLimits::default())?;
        let Some(whole) = whole else {
            return Err(TestCaseError::fail("an encoded image decodes"));
        };
        // Under any limit it is within, it decodes just the same.
        let pixels = u64::from(whole.width()) * u64::from(whole.height());
        for max_pixels in [pixels, pixels + 1, limits.max_pixels.max(pixels)] {
            let again = decode(&original, &DecodeLimits { max_pixels });
            prop_assert!(again.as_ref().is_ok_and(|a| a.image == whole.image), "{:?} under {}", again.err(), max_pixels);
        }
        let bytes = apply(&original, &mutation, head_only);
        check_decode(&bytes, &limits)?;
    }
}

proptest! {
    // Each case decodes a real photo (a few tens of milliseconds).
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The real photos, cut anywhere (often within their last bytes, where the end
    /// markers are): an error, or (cut after the image's end) the very same picture.
    #[test]
    fn truncated_photos_are_refused(
        which in 0..FIXTURES.len(),
        cut in prop_oneof![any::<Index>().prop_map(Ok), (0usize..=16).prop_map(Err)],
        limits in limits(),
    ) {
        let name = FIXTURES[which];
        let bytes = fixture(name);
        // Anywhere, or this many bytes short of the end.
        let keep = cut.map_or_else(|short| bytes.len() - short, |at| at.index(bytes.len() + 1));
        let cut = &bytes[..keep];
        if let Some(image) = check_decode(cut, &limits)? {
            prop_assert!(&image.image == fixture_image(name), "{} cut at {} decodes to another picture", name, cut.len());
        }
    }

    /// The real photos with bytes changed, inserted or removed, often in their headers.
    #[test]
    fn mutated_photos_decode_or_fail_cleanly(
        which in 0..FIXTURES.len(),
        mutation in mutation(),
        head_only in any::<bool>(),
        limits in limits(),
    ) {
        let bytes = apply(fixture(FIXTURES[which]), &mutation, head_only);
        check_decode(&bytes, &limits)?;
    }
}
