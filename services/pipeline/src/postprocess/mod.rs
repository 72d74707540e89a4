//! Model outputs to detections in original-image coordinates, per output layout.

mod detection;
mod mask_rcnn;
mod nms;
mod yolo;

use foodseg_models::{Model, OutputSpec};

use crate::preprocess::Letterbox;
use crate::session::RawOutputs;

pub use detection::{Detection, PostprocessError};
pub use nms::iou;

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

/// [`detections`] with masks at the given resolution (YOLO-seg, both layouts; Mask R-CNN
/// masks are always in original pixels).
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
        }
        | OutputSpec::Yolov8Seg {
            detections,
            prototypes,
            mask_coefficients,
        } => yolo::detections(
            match manifest.output {
                OutputSpec::Yolov8Seg { .. } => yolo::Layout::V8,
                _ => yolo::Layout::V5,
            },
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
