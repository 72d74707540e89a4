//! The `model.toml` schema and its validation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ManifestError;

/// One model's manifest, as written in `models/<name>/model.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique model name; also accepted as a `model_id`.
    pub name: String,
    /// Other accepted `model_id` values. The first one is the model's primary id.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// ONNX file, relative to the manifest's directory.
    pub file: PathBuf,
    #[serde(default)]
    pub description: Option<String>,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub thresholds: Thresholds,
    #[serde(default)]
    pub polygons: PolygonSpec,
    /// Categories in the model's class-index order.
    pub categories: Vec<Category>,
}

/// How an image becomes the model's input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input tensor name; the session's first input when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The long side of the image is scaled to this many pixels.
    pub size: u32,
    /// Both input sides are padded up to a multiple of this.
    #[serde(default = "default_stride")]
    pub stride: u32,
    /// Letterbox padding value (0..=255, before scaling).
    #[serde(default = "default_pad")]
    pub letterbox_pad: u8,
    /// Multiplier from 0..255 pixel values to model units (1/255 for 0..1).
    pub scale: f32,
    /// Optional per-channel mean subtracted after scaling.
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    /// Optional per-channel standard deviation divided by after the mean.
    #[serde(default)]
    pub std: Option<[f32; 3]>,
    #[serde(default)]
    pub channels: ChannelOrder,
    #[serde(default)]
    pub layout: TensorLayout,
}

fn default_stride() -> u32 {
    32
}

fn default_pad() -> u8 {
    114
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorLayout {
    #[default]
    Nchw,
}

/// The model's output tensors and how to read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OutputSpec {
    /// YOLOv5-seg (`layout = "yolo-seg"`): one detection tensor
    /// `[1, anchors, 5 + classes + coefficients]`, a row per anchor (cx, cy, w, h in input
    /// pixels, objectness, class probabilities, mask coefficients; the score is
    /// objectness × class probability), and a prototype tensor `[1, coefficients, H/4, W/4]`.
    /// NMS happens in the worker.
    YoloSeg {
        detections: String,
        prototypes: String,
        mask_coefficients: usize,
    },
    /// Ultralytics YOLOv8/YOLO11-seg (`layout = "yolov8-seg"`, what `yolo export
    /// format=onnx` writes): the detection tensor is transposed,
    /// `[1, 4 + classes + coefficients, anchors]`, a column per anchor (cx, cy, w, h in
    /// input pixels, class scores that are final — no objectness —, mask coefficients),
    /// and the same prototype tensor `[1, coefficients, H/4, W/4]`. NMS happens in the
    /// worker.
    #[serde(rename = "yolov8-seg")]
    Yolov8Seg {
        detections: String,
        prototypes: String,
        mask_coefficients: usize,
    },
    /// Mask R-CNN as torchvision/mmdeploy export it: boxes `[N,4]` (x1,y1,x2,y2 in input
    /// pixels; or `[N,5]` with the score last when `scores` is absent), labels `[N]`,
    /// scores `[N]`, masks `[N,1,H,W]`. A leading batch axis of 1 is accepted.
    MaskRcnn {
        boxes: String,
        labels: String,
        #[serde(default)]
        scores: Option<String>,
        masks: String,
        mask_kind: MaskKind,
        /// Subtracted from a label to get the category index (1 when label 0 is background).
        #[serde(default)]
        label_offset: i64,
    },
}

impl OutputSpec {
    /// The layout's name as `model.toml` writes it (`layout = "..."`).
    pub fn layout_name(&self) -> &'static str {
        match self {
            Self::YoloSeg { .. } => "yolo-seg",
            Self::Yolov8Seg { .. } => "yolov8-seg",
            Self::MaskRcnn { .. } => "mask-rcnn",
        }
    }
}

/// What a Mask R-CNN mask tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskKind {
    /// Probabilities over the whole input image (torchvision).
    FullImage,
    /// A small probability grid (e.g. 28x28) covering the detection's box (mmdeploy).
    PerBox,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Minimum detection score kept.
    pub confidence: f32,
    /// IoU above which a lower-scoring box of the same class is suppressed.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// Mask probability at or above which a pixel belongs to the instance.
    #[serde(default = "default_mask")]
    pub mask: f32,
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
}

fn default_nms_iou() -> f32 {
    0.45
}

fn default_mask() -> f32 {
    0.5
}

fn default_max_detections() -> usize {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolygonSpec {
    /// Douglas-Peucker tolerance in pixels of the original image; 0 keeps every contour point.
    #[serde(default = "default_tolerance")]
    pub tolerance_px: f64,
}

fn default_tolerance() -> f64 {
    1.0
}

impl Default for PolygonSpec {
    fn default() -> Self {
        Self {
            tolerance_px: default_tolerance(),
        }
    }
}

/// One class of the model: its id and name in the client's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub category_id: i64,
    pub category_name: String,
}

impl Manifest {
    /// Reads, parses and validates a manifest file.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates manifest text; `path` is used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|source| ManifestError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        manifest
            .validate()
            .map_err(|problem| ManifestError::Invalid {
                path: path.to_owned(),
                problem,
            })?;
        Ok(manifest)
    }

    /// The ids this model answers to: its name, then its aliases.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    /// Checks everything that parsing alone cannot; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty".into());
        }
        let mut ids = HashSet::new();
        for id in self.ids() {
            if id.trim().is_empty() {
                return Err("an alias is empty".into());
            }
            if !ids.insert(id) {
                return Err(format!("id {id:?} appears more than once in name/aliases"));
            }
        }
        if self.file.as_os_str().is_empty() {
            return Err("`file` is empty".into());
        }
        self.validate_input()?;
        self.validate_output()?;
        self.validate_thresholds()?;
        let tolerance = self.polygons.tolerance_px;
        if !tolerance.is_finite() || tolerance < 0.0 {
            return Err(format!(
                "polygons.tolerance_px must be >= 0, got {tolerance}"
            ));
        }
        self.validate_categories()
    }

    fn validate_input(&self) -> Result<(), String> {
        let input = &self.input;
        if input.stride == 0 {
            return Err("input.stride must be > 0".into());
        }
        if input.size == 0 || !input.size.is_multiple_of(input.stride) {
            return Err(format!(
                "input.size must be a positive multiple of input.stride ({}), got {}",
                input.stride, input.size
            ));
        }
        if !input.scale.is_finite() || input.scale <= 0.0 {
            return Err(format!("input.scale must be > 0, got {}", input.scale));
        }
        if let Some(std) = input.std
            && std.iter().any(|s| !s.is_finite() || *s <= 0.0)
        {
            return Err(format!("input.std values must be > 0, got {std:?}"));
        }
        if let Some(mean) = input.mean
            && mean.iter().any(|m| !m.is_finite())
        {
            return Err(format!("input.mean values must be finite, got {mean:?}"));
        }
        Ok(())
    }

    fn validate_output(&self) -> Result<(), String> {
        match &self.output {
            OutputSpec::YoloSeg {
                detections,
                prototypes,
                mask_coefficients,
            }
            | OutputSpec::Yolov8Seg {
                detections,
                prototypes,
                mask_coefficients,
            } => {
                if detections.is_empty() || prototypes.is_empty() {
                    return Err("output tensor names must not be empty".into());
                }
                if *mask_coefficients == 0 {
                    return Err("output.mask_coefficients must be > 0".into());
                }
            }
            OutputSpec::MaskRcnn {
                boxes,
                labels,
                scores,
                masks,
                label_offset,
                ..
            } => {
                let names = [Some(boxes), Some(labels), scores.as_ref(), Some(masks)];
                if names.iter().flatten().any(|n| n.is_empty()) {
                    return Err("output tensor names must not be empty".into());
                }
                if *label_offset < 0 {
                    return Err(format!(
                        "output.label_offset must be >= 0, got {label_offset}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_thresholds(&self) -> Result<(), String> {
        let t = &self.thresholds;
        let unit = |name: &str, v: f32| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                Err(format!("thresholds.{name} must be in (0, 1], got {v}"))
            }
        };
        unit("confidence", t.confidence)?;
        unit("nms_iou", t.nms_iou)?;
        unit("mask", t.mask)?;
        if t.max_detections == 0 {
            return Err("thresholds.max_detections must be > 0".into());
        }
        Ok(())
    }

    fn validate_categories(&self) -> Result<(), String> {
        if self.categories.is_empty() {
            return Err("`categories` is empty".into());
        }
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for (index, c) in self.categories.iter().enumerate() {
            if c.category_name.trim().is_empty() {
                return Err(format!("category {index} has an empty category_name"));
            }
            if !ids.insert(c.category_id) {
                return Err(format!(
                    "category {index}: category_id {} is used twice",
                    c.category_id
                ));
            }
            if !names.insert(c.category_name.as_str()) {
                return Err(format!(
                    "category {index}: category_name {:?} is used twice",
                    c.category_name
                ));
            }
        }
        Ok(())
    }
}
