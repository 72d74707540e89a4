//! JPEG decoding with libjpeg-turbo (the system's `libturbojpeg`, through the `turbojpeg`
//! crate), at full size or at a reduced DCT scale. Scaling inside the decoder (n/8 of
//! each side, n = 1…8) skips most of the inverse DCT, upsampling and colour conversion
//! of a phone photo the model only needs at a few hundred pixels.
//!
//! What libjpeg-turbo refuses or only decodes with a warning (CMYK, 12-bit, corrupt
//! entropy data) comes back as `None`: the caller decodes those bytes with the `image`
//! crate instead, whose answer — pixels or a precise error — is then the one given.

use image::RgbImage;
use turbojpeg::{Decompressor, Image, PixelFormat};

/// Eighths of each side a reduced decode may keep: 1/8 … 8/8.
const EIGHTHS: u32 = 8;

/// The DCT scale, in eighths, that decodes a `width`x`height` JPEG with its long side at
/// least `cover` pixels at the least cost: the smallest n/8 that still covers, or the
/// full size (8/8) when even that is under `cover`.
pub fn covering_eighths(width: u32, height: u32, cover: u32) -> u32 {
    let long = u64::from(width.max(height));
    (1..EIGHTHS)
        .find(|&n| scaled(long, n) >= u64::from(cover))
        .unwrap_or(EIGHTHS)
}

/// A side of `len` pixels at n/8, rounded up as libjpeg-turbo does (`TJSCALED`).
fn scaled(len: u64, eighths: u32) -> u64 {
    (len * u64::from(eighths)).div_ceil(u64::from(EIGHTHS))
}

/// Decodes `bytes`, a `width`x`height` JPEG (as its header says), to RGB8 at n/8 of its
/// size (`eighths` = n, 1…8); `None` when libjpeg-turbo cannot decode it cleanly.
pub fn decode(bytes: &[u8], width: u32, height: u32, eighths: u32) -> Option<RgbImage> {
    let eighths = eighths.clamp(1, EIGHTHS);
    let refused = |stage: &str, e: turbojpeg::Error| {
        tracing::debug!(error = %e, stage, "libjpeg-turbo refused the JPEG; decoding it with the image crate");
    };
    let mut decompressor = Decompressor::new().map_err(|e| refused("init", e)).ok()?;
    let header = decompressor
        .read_header(bytes)
        .map_err(|e| refused("header", e))
        .ok()?;
    if (header.width, header.height) != (width as usize, height as usize) {
        return None;
    }
    let w = usize::try_from(scaled(u64::from(width), eighths)).ok()?;
    let h = usize::try_from(scaled(u64::from(height), eighths)).ok()?;
    let pitch = w.checked_mul(3)?;
    let mut pixels = vec![0u8; pitch.checked_mul(h)?];
    // Given the scaled size, libjpeg-turbo picks the largest scaling factor that fits in
    // it: exactly n/8.
    let image = Image {
        pixels: pixels.as_mut_slice(),
        width: w,
        pitch,
        height: h,
        format: PixelFormat::RGB,
    };
    decompressor
        .decompress(bytes, image)
        .map_err(|e| refused("decompress", e))
        .ok()?;
    RgbImage::from_raw(u32::try_from(w).ok()?, u32::try_from(h).ok()?, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_scale_is_the_smallest_that_covers() {
        // A 12 MP phone photo for a 640 model: 1/4 gives 1008, 1/8 only 504.
        assert_eq!(covering_eighths(4032, 3024, 640), 2);
        // 1920 long: 3/8 gives 720, 2/8 only 480.
        assert_eq!(covering_eighths(1920, 1080, 640), 3);
        assert_eq!(covering_eighths(1080, 1920, 640), 3);
        // Exactly covering at n/8.
        assert_eq!(covering_eighths(5120, 100, 640), 1);
        // Under the model's size: full size.
        assert_eq!(covering_eighths(512, 480, 640), 8);
        assert_eq!(covering_eighths(700, 480, 640), 8);
        assert_eq!(covering_eighths(1, 1, 0), 1);
    }

    #[test]
    fn scaled_sides_round_up() {
        assert_eq!(scaled(4032, 2), 1008);
        assert_eq!(scaled(3024, 2), 756);
        assert_eq!(scaled(481, 1), 61);
        assert_eq!(scaled(7, 8), 7);
    }
}
