//! Model outputs to detections in original-image coordinates, per output layout.

mod mask_rcnn;
mod nms;
mod yolo;

use foodseg_models::{Model, OutputSpec};

use crate::mask::Mask;
use crate::preprocess::Letterbox;
use crate::session::RawOutputs;

pub use nms::iou;

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

/// The resolution instance masks are built at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MaskResolution {
    /// The original image's, or the model input's when that is coarser (a photo larger
    /// than the input): what the model resolves, at a cost bounded by the input size.
    #[default]
    Model,
    /// Always the original image's (the reference the faster default is tested against).
    Original,
}

/// Turns raw outputs into detections sorted by descending score.
pub fn detections(
    model: &Model,
    outputs: &RawOutputs,
    letterbox: &Letterbox,
) -> Result<Vec<Detection>, PostprocessError> {
    detections_at(model, outputs, letterbox, MaskResolution::Model)
}

/// [`detections`] with masks at the given resolution (YOLO-seg; Mask R-CNN masks are
/// always in original pixels).
pub fn detections_at(
    model: &Model,
    outputs: &RawOutputs,
    letterbox: &Letterbox,
    resolution: MaskResolution,
) -> Result<Vec<Detection>, PostprocessError> {
    let manifest = model.manifest();
    let classes = manifest.categories.len();
    match &manifest.output {
        OutputSpec::YoloSeg {
            detections,
            prototypes,
            mask_coefficients,
        } => yolo::detections(
            yolo::Tensors {
                detections: f32_output(outputs, detections)?,
                prototypes: f32_output(outputs, prototypes)?,
                detections_name: detections,
                prototypes_name: prototypes,
            },
            classes,
            *mask_coefficients,
            &manifest.thresholds,
            letterbox,
            match resolution {
                MaskResolution::Model => crate::mask::mask_scale(letterbox.scale),
                MaskResolution::Original => 1.0,
            },
        ),
        OutputSpec::MaskRcnn {
            boxes,
            labels,
            scores,
            masks,
            mask_kind,
            label_offset,
        } => mask_rcnn::detections(
            mask_rcnn::Tensors {
                boxes: (boxes, f32_output(outputs, boxes)?),
                labels: (labels, output(outputs, labels)?),
                scores: match scores {
                    Some(name) => Some((name.as_str(), f32_output(outputs, name)?)),
                    None => None,
                },
                masks: (masks, f32_output(outputs, masks)?),
            },
            *mask_kind,
            *label_offset,
            classes,
            &manifest.thresholds,
            letterbox,
        ),
    }
}

fn output<'a>(
    outputs: &'a RawOutputs,
    name: &str,
) -> Result<&'a crate::session::OutputTensor, PostprocessError> {
    outputs
        .get(name)
        .ok_or_else(|| PostprocessError::MissingOutput { name: name.into() })
}

fn f32_output<'a>(
    outputs: &'a RawOutputs,
    name: &str,
) -> Result<&'a ndarray::ArrayD<f32>, PostprocessError> {
    match output(outputs, name)? {
        crate::session::OutputTensor::F32(array) => Ok(array),
        crate::session::OutputTensor::I64(_) => Err(PostprocessError::ElementType {
            name: name.into(),
            found: "int64",
            expected: "float32",
        }),
    }
}

/// A contiguous view of an output, or a shape error naming it.
fn contiguous<'a>(
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
fn box_to_original(letterbox: &Letterbox, [x1, y1, x2, y2]: [f32; 4]) -> [f32; 4] {
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
