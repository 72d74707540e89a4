//! What every output layout decodes to — [`Detection`] — and the helpers they share:
//! reading an output as a contiguous slice and mapping boxes back to the original image.

use crate::mask::Mask;
use crate::preprocess::Letterbox;

/// One detected instance in original-image pixels.
#[derive(Debug, Clone)]
pub struct Detection {
    /// Index into the model's category list.
    pub class_index: usize,
    pub score: f32,
    /// `[x1, y1, x2, y2]`, clamped to the image.
    pub bbox: [f32; 4],
    /// The instance mask in a grid of `mask_scale` mask pixels per original pixel.
    pub mask: Mask,
    /// 1 when `mask` is in original pixels; below 1 for images larger than the model's
    /// input (see [`crate::mask::mask_scale`]).
    pub mask_scale: f32,
}

impl Detection {
    /// Foreground area in original pixels.
    pub fn area(&self) -> u64 {
        if self.mask_scale >= 1.0 {
            self.mask.area()
        } else {
            let per_pixel = f64::from(self.mask_scale) * f64::from(self.mask_scale);
            (self.mask.area() as f64 / per_pixel).round() as u64
        }
    }
}

/// Outputs that do not match the model's manifest.
#[derive(Debug, thiserror::Error)]
pub enum PostprocessError {
    #[error("model output {name:?} is missing")]
    MissingOutput { name: String },
    #[error("model output {name:?} has shape {shape:?}; expected {expected}")]
    Shape {
        name: String,
        shape: Vec<usize>,
        expected: String,
    },
    #[error("model output {name:?} has element type {found}; expected {expected}")]
    ElementType {
        name: String,
        found: &'static str,
        expected: &'static str,
    },
}

/// A contiguous view of an output, or a shape error naming it.
pub(super) fn contiguous<'a>(
    name: &str,
    array: &'a ndarray::ArrayD<f32>,
) -> Result<&'a [f32], PostprocessError> {
    array.as_slice().ok_or_else(|| PostprocessError::Shape {
        name: name.into(),
        shape: array.shape().to_vec(),
        expected: "a contiguous tensor".into(),
    })
}

/// Maps a box in model-input pixels to original-image pixels, clamped to the image.
pub(super) fn box_to_original(letterbox: &Letterbox, [x1, y1, x2, y2]: [f32; 4]) -> [f32; 4] {
    let (w, h) = (letterbox.image_width as f32, letterbox.image_height as f32);
    let (ax, ay) = letterbox.to_original(x1, y1);
    let (bx, by) = letterbox.to_original(x2, y2);
    [
        ax.clamp(0.0, w),
        ay.clamp(0.0, h),
        bx.clamp(0.0, w),
        by.clamp(0.0, h),
    ]
}
