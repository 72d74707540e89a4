//! Image to model input: letterbox resize (aspect kept, padded only up to the stride
//! multiple the model needs, padding centred) and conversion to a normalised NCHW f32
//! tensor, plus the transform that maps model coordinates back to the original image.

use foodseg_models::{ChannelOrder, InputSpec};
use image::RgbImage;
use image::imageops;

/// The geometric mapping between the original image and the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Model-input pixels per original pixel.
    pub scale: f32,
    /// Padding on the left / top of the input, in input pixels.
    pub pad_x: f32,
    pub pad_y: f32,
    /// Size of the resized image inside the input.
    pub resized_width: u32,
    pub resized_height: u32,
    /// Model input size (resized plus padding).
    pub input_width: u32,
    pub input_height: u32,
    /// Original (upright) image size.
    pub image_width: u32,
    pub image_height: u32,
}

impl Letterbox {
    /// Computes the letterbox of a `width`x`height` image for `spec`.
    pub fn new(width: u32, height: u32, spec: &InputSpec) -> Self {
        let long = width.max(height).max(1);
        let scale = spec.size as f32 / long as f32;
        let resized = |side: u32| ((side as f32 * scale).round() as u32).clamp(1, spec.size);
        let (resized_width, resized_height) = (resized(width), resized(height));
        let stride = spec.stride.max(1);
        let input_width = resized_width.div_ceil(stride) * stride;
        let input_height = resized_height.div_ceil(stride) * stride;
        Self {
            scale,
            pad_x: ((input_width - resized_width) / 2) as f32,
            pad_y: ((input_height - resized_height) / 2) as f32,
            resized_width,
            resized_height,
            input_width,
            input_height,
            image_width: width,
            image_height: height,
        }
    }

    /// Maps a point in model-input pixels to original-image pixels (not clamped).
    pub fn to_original(&self, x: f32, y: f32) -> (f32, f32) {
        ((x - self.pad_x) / self.scale, (y - self.pad_y) / self.scale)
    }
}

/// A model input tensor with its letterbox.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// `[1, 3, input_height, input_width]`, row-major.
    pub tensor: Vec<f32>,
    pub letterbox: Letterbox,
}

impl Preprocessed {
    pub fn shape(&self) -> [usize; 4] {
        [
            1,
            3,
            self.letterbox.input_height as usize,
            self.letterbox.input_width as usize,
        ]
    }
}

/// Letterboxes `image` and converts it to the model's normalised NCHW tensor.
///
/// The letterbox is that of the full-resolution `original` `[width, height]`; `image`
/// is the whole picture at that size or smaller (a JPEG decoded at a reduced scale),
/// so coordinates map back to the original either way.
///
/// Resizing is bilinear with OpenCV's `INTER_LINEAR` pixel-centre convention (what
/// YOLO-style models are trained with), fused with normalisation and written straight
/// into the tensor. Images shrunk by more than 2x are first reduced with a box filter
/// to avoid aliasing.
pub fn preprocess(image: &RgbImage, original: [u32; 2], spec: &InputSpec) -> Preprocessed {
    let letterbox = Letterbox::new(original[0], original[1], spec);
    let (rw, rh) = (letterbox.resized_width, letterbox.resized_height);
    let reduced;
    let source = if image.width() > 2 * rw && image.height() > 2 * rh {
        reduced = imageops::thumbnail(image, 2 * rw, 2 * rh);
        &reduced
    } else {
        image
    };

    let luts = channel_luts(spec);
    let (iw, ih) = (
        letterbox.input_width as usize,
        letterbox.input_height as usize,
    );
    let plane = iw * ih;
    let mut tensor = vec![0.0f32; 3 * plane];
    for (channel, lut) in luts.iter().enumerate() {
        tensor[channel * plane..(channel + 1) * plane].fill(lut[usize::from(spec.letterbox_pad)]);
    }

    let (sw, sh) = (source.width() as usize, source.height() as usize);
    let cols: Vec<(usize, usize, f32)> = taps(rw as usize, sw)
        .map(|(a, b, f)| (a * 3, b * 3, f))
        .collect();
    let src = source.as_raw();
    let stride = sw * 3;
    let (px, py) = (letterbox.pad_x as usize, letterbox.pad_y as usize);
    let (plane0, rest) = tensor.split_at_mut(plane);
    let (plane1, plane2) = rest.split_at_mut(plane);
    let mut row_buf = vec![[0u8; 3]; rw as usize];
    for (row, (r0, r1, fy)) in taps(rh as usize, sh).enumerate() {
        let top = &src[r0 * stride..(r0 + 1) * stride];
        let bottom = &src[r1 * stride..(r1 + 1) * stride];
        interpolate_row(top, bottom, fy, &cols, &mut row_buf);
        let start = (row + py) * iw + px;
        let end = start + rw as usize;
        let (d0, d1, d2) = (
            &mut plane0[start..end],
            &mut plane1[start..end],
            &mut plane2[start..end],
        );
        match spec.channels {
            ChannelOrder::Rgb => write_row::<0, 2>(&row_buf, &luts, d0, d1, d2),
            ChannelOrder::Bgr => write_row::<2, 0>(&row_buf, &luts, d0, d1, d2),
        }
    }
    Preprocessed { tensor, letterbox }
}

/// For each of `dst` output positions: the two source indices and the weight of the
/// second, with pixel centres aligned (`src = (dst + 0.5) * src_len / dst_len - 0.5`).
fn taps(dst: usize, src: usize) -> impl Iterator<Item = (usize, usize, f32)> {
    let ratio = src as f32 / dst.max(1) as f32;
    let last = src.saturating_sub(1);
    (0..dst).map(move |d| {
        let s = ((d as f32 + 0.5) * ratio - 0.5).clamp(0.0, last as f32);
        let i0 = (s as usize).min(last);
        (i0, (i0 + 1).min(last), s - i0 as f32)
    })
}

/// Bilinear interpolation of one output row from two source rows (interleaved RGB).
#[inline]
fn interpolate_row(
    top: &[u8],
    bottom: &[u8],
    fy: f32,
    cols: &[(usize, usize, f32)],
    out: &mut [[u8; 3]],
) {
    for (&(a, b, fx), px) in cols.iter().zip(out.iter_mut()) {
        let (Some(ta), Some(tb), Some(ba), Some(bb)) = (
            top.get(a..a + 3),
            top.get(b..b + 3),
            bottom.get(a..a + 3),
            bottom.get(b..b + 3),
        ) else {
            continue;
        };
        for c in 0..3 {
            let t = f32::from(ta[c]) + (f32::from(tb[c]) - f32::from(ta[c])) * fx;
            let u = f32::from(ba[c]) + (f32::from(bb[c]) - f32::from(ba[c])) * fx;
            px[c] = (t + (u - t) * fy + 0.5) as u8;
        }
    }
}

/// Writes one row of RGB pixels into three planes; `FIRST`/`LAST` pick the source
/// channels of planes 0 and 2 (RGB or BGR).
#[inline]
fn write_row<const FIRST: usize, const LAST: usize>(
    pixels: &[[u8; 3]],
    luts: &[[f32; 256]; 3],
    dst0: &mut [f32],
    dst1: &mut [f32],
    dst2: &mut [f32],
) {
    for (((px, d0), d1), d2) in pixels.iter().zip(dst0).zip(dst1).zip(dst2) {
        *d0 = luts[0][usize::from(px[FIRST])];
        *d1 = luts[1][usize::from(px[1])];
        *d2 = luts[2][usize::from(px[LAST])];
    }
}

/// Per-output-channel tables from an 8-bit value to the normalised model value,
/// (mean and std are given in model channel order).
fn channel_luts(spec: &InputSpec) -> [[f32; 256]; 3] {
    let mean = spec.mean.unwrap_or([0.0; 3]);
    let std = spec.std.unwrap_or([1.0; 3]);
    let mut luts = [[0.0f32; 256]; 3];
    for (out, lut) in luts.iter_mut().enumerate() {
        for (v, slot) in lut.iter_mut().enumerate() {
            *slot = (v as f32 * spec.scale - mean[out]) / std[out];
        }
    }
    luts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InputSpec {
        InputSpec {
            name: None,
            size: 640,
            stride: 32,
            letterbox_pad: 114,
            scale: 1.0 / 255.0,
            mean: None,
            std: None,
            channels: ChannelOrder::Rgb,
            layout: foodseg_models::TensorLayout::Nchw,
        }
    }

    #[test]
    fn letterbox_pads_only_to_the_stride() {
        let lb = Letterbox::new(512, 480, &spec());
        assert_eq!((lb.resized_width, lb.resized_height), (640, 600));
        assert_eq!((lb.input_width, lb.input_height), (640, 608));
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 4.0));
        assert_eq!(lb.to_original(320.0, 4.0), (256.0, 0.0));
        let lb = Letterbox::new(4000, 1000, &spec());
        assert_eq!((lb.input_width, lb.input_height), (640, 160));
    }

    #[test]
    fn tensor_is_planar_normalised_and_padded() {
        let image = RgbImage::from_pixel(512, 480, image::Rgb([255, 0, 51]));
        let out = preprocess(&image, [512, 480], &spec());
        assert_eq!(out.shape(), [1, 3, 608, 640]);
        let plane = 608 * 640;
        let pad = 114.0 / 255.0;
        assert!((out.tensor[0] - pad).abs() < 1e-6);
        let centre = 300 * 640 + 320;
        assert_eq!(out.tensor[centre], 1.0);
        assert_eq!(out.tensor[plane + centre], 0.0);
        assert!((out.tensor[2 * plane + centre] - 0.2).abs() < 1e-6);
        assert!((out.tensor[2 * plane + 607 * 640] - pad).abs() < 1e-6);
    }
}
