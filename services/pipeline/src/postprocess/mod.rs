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
    pub mask: Mask,
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

/// Turns raw outputs into detections sorted by descending score.
pub fn detections(
    model: &Model,
    outputs: &RawOutputs,
    letterbox: &Letterbox,
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
