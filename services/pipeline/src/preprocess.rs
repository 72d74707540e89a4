//! Image to model input: letterbox resize (aspect kept, padded only up to the stride
//! multiple the model needs, padding centred) and conversion to a normalised NCHW f32
//! tensor, plus the transform that maps model coordinates back to the original image.

use foodseg_models::{ChannelOrder, InputSpec};
use image::RgbImage;
use image::imageops::{self, FilterType};

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

    /// Maps a point in original-image pixels to model-input pixels.
    pub fn to_input(&self, x: f32, y: f32) -> (f32, f32) {
        (x * self.scale + self.pad_x, y * self.scale + self.pad_y)
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
pub fn preprocess(image: &RgbImage, spec: &InputSpec) -> Preprocessed {
    let letterbox = Letterbox::new(image.width(), image.height(), spec);
    let resized_storage;
    let resized =
        if (image.width(), image.height()) == (letterbox.resized_width, letterbox.resized_height) {
            image
        } else {
            resized_storage = imageops::resize(
                image,
                letterbox.resized_width,
                letterbox.resized_height,
                FilterType::Triangle,
            );
            &resized_storage
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

    let (rw, rh) = (resized.width() as usize, resized.height() as usize);
    let (px, py) = (letterbox.pad_x as usize, letterbox.pad_y as usize);
    let (plane0, rest) = tensor.split_at_mut(plane);
    let (plane1, plane2) = rest.split_at_mut(plane);
    let src_rows = resized.as_raw().chunks_exact(rw * 3).take(rh);
    for (row, src) in src_rows.enumerate() {
        let start = (row + py) * iw + px;
        let dst0 = &mut plane0[start..start + rw];
        let dst1 = &mut plane1[start..start + rw];
        let dst2 = &mut plane2[start..start + rw];
        match spec.channels {
            ChannelOrder::Rgb => write_row::<0, 2>(src, &luts, dst0, dst1, dst2),
            ChannelOrder::Bgr => write_row::<2, 0>(src, &luts, dst0, dst1, dst2),
        }
    }
    Preprocessed { tensor, letterbox }
}

/// Writes one row of interleaved 8-bit pixels into three planes; `FIRST`/`LAST` pick the
/// source channels of planes 0 and 2 (RGB or BGR).
#[inline]
fn write_row<const FIRST: usize, const LAST: usize>(
    src: &[u8],
    luts: &[[f32; 256]; 3],
    dst0: &mut [f32],
    dst1: &mut [f32],
    dst2: &mut [f32],
) {
    let pixels = src.chunks_exact(3).zip(dst0).zip(dst1).zip(dst2);
    for (((px, d0), d1), d2) in pixels {
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
