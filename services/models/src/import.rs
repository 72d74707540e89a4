//! Recognising an exported YOLO segmentation model from what its ONNX file declares (its
//! inputs, outputs and metadata, as [`OnnxSummary`]; reading them needs ONNX Runtime, so
//! the pipeline crate does that), and writing the `model.toml` it needs. This is the pure
//! part of `foodseg-worker models import`.
//!
//! Recognised: raw (not end-to-end) exports with one float32 image input `[1, 3, S, S]` (or with dynamic dimensions and
//! Ultralytics' `imgsz` metadata) and exactly two float32 outputs, mask prototypes
//! `[1, C, h, w]` and detections, either Ultralytics YOLOv8/YOLO11-seg's
//! `[1, 4 + classes + C, anchors]` (`yolov8-seg`) or YOLOv5-seg's
//! `[1, anchors, 5 + classes + C]` (`yolo-seg`), with the class names in the metadata
//! (`names`, see [`crate::parse_class_names`]); their number settles which layout the
//! detections have. Anything else is [`Unrecognised`], with a message saying what was
//! found: such a model's manifest is written by hand (docs/models.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::coco::coco_id;
use crate::manifest::{
    Category, ChannelOrder, InputSpec, Manifest, MaskKind, OutputSpec, PolygonSpec, TensorLayout,
    Thresholds,
};
use crate::names::parse_class_names;

/// Minimum detection score of an imported model (Ultralytics' `conf` default).
pub const CONFIDENCE: f32 = 0.25;
/// NMS IoU of an imported model, for both layouts. YOLOv5 uses 0.45; `yolo predict` of
/// YOLOv8/YOLO11 uses 0.7, which keeps more overlapping boxes of one class. The service
/// returns items to people, so it keeps YOLOv5's stricter value (and the shipped model's)
/// for both; raise `nms_iou` in the written manifest to match `yolo predict`.
pub const NMS_IOU: f32 = 0.45;
/// Mask probability threshold (Ultralytics binarises masks at 0.5).
pub const MASK: f32 = 0.5;
/// Most detections kept per image.
pub const MAX_DETECTIONS: usize = 100;
/// Input stride when the input size is dynamic and the metadata names none.
pub const DEFAULT_STRIDE: u32 = 32;
/// Letterbox padding value (Ultralytics' grey).
pub const LETTERBOX_PAD: u8 = 114;

/// One input or output of an ONNX graph, as ONNX Runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSummary {
    pub name: String,
    /// ONNX element type name: `float32`, `float16`, `int64`, …
    pub element_type: String,
    /// The dimensions; `None` for a dynamic (symbolic) one.
    pub shape: Vec<Option<u64>>,
}

impl TensorSummary {
    /// The shape as messages show it, `?` for a dynamic dimension: `[1, 116, ?]`.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or_else(|| "?".to_owned(), |d| d.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    }

    fn described(&self) -> String {
        format!("{} {} {}", self.name, self.element_type, self.shape_text())
    }
}

/// What an ONNX file declares: its inputs and outputs in graph order, and its custom
/// metadata (the model's `metadata_props`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxSummary {
    pub inputs: Vec<TensorSummary>,
    pub outputs: Vec<TensorSummary>,
    pub metadata: BTreeMap<String, String>,
}

/// What the imported model is to be called.
#[derive(Debug, Clone, Copy)]
pub struct ImportRequest<'a> {
    /// The model's name (its directory under the models directory).
    pub name: &'a str,
    pub aliases: &'a [String],
    /// The imported file's name, for the manifest's description when the model has none.
    pub source: &'a str,
}

/// A recognised model: its manifest, validated, and what was found on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognised {
    pub manifest: Manifest,
    /// The model takes one fixed input size (Ultralytics' default, non-dynamic export):
    /// then `input.stride` equals `input.size`, so every image is padded to the square.
    pub fixed_input: bool,
    /// Every class name is a COCO-80 name, and the category ids are COCO's; otherwise
    /// they are 1…N in class order.
    pub coco_ids: bool,
    /// The detections and prototypes outputs as found, for the report.
    pub detections: TensorSummary,
    pub prototypes: TensorSummary,
}

impl Recognised {
    /// The layout's name as `model.toml` writes it.
    pub fn layout(&self) -> &'static str {
        self.manifest.output.layout_name()
    }
}

/// A model the import cannot describe; the message says what was found and that the
/// manifest is then written by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{problem}. This is not a model `foodseg-worker models import` recognises: write its \
     model.toml by hand (docs/models.md describes the manifest and the layouts it reads)"
)]
pub struct Unrecognised {
    pub problem: String,
}

fn refuse<T>(problem: impl Into<String>) -> Result<T, Unrecognised> {
    Err(Unrecognised {
        problem: problem.into(),
    })
}

/// Recognises the layout, input and classes of an exported model and builds its manifest
/// (named and aliased as `request` says), validated with [`Manifest::validate`].
pub fn recognise(
    summary: &OnnxSummary,
    request: &ImportRequest<'_>,
) -> Result<Recognised, Unrecognised> {
    if let Some(task) = summary.metadata.get("task")
        && task != "segment"
    {
        return refuse(format!(
            "the model's metadata says task = {task:?}; only instance segmentation models \
             (Ultralytics task \"segment\", `yolov8n-seg.pt` and the like) can be served"
        ));
    }
    if let Some(how) = end_to_end(&summary.metadata) {
        return refuse(format!(
            "the model is an end-to-end export ({how}): its output holds final detections, \
             not the raw anchors the worker decodes and suppresses itself; export it without \
             NMS (`nms=False`, and `end2end=False` for NMS-free heads such as YOLO26's)"
        ));
    }
    let (input, size, stride, fixed_input) = input(summary)?;
    let (detections, prototypes) = outputs(summary)?;
    let coefficients = match prototypes.shape.as_slice() {
        [batch, Some(c), _, _] if batch_of_one(*batch) && *c > 0 => *c,
        _ => {
            return refuse(format!(
                "the mask prototypes output {} is not [1, coefficients, height, width]",
                prototypes.described()
            ));
        }
    };
    let names = match summary.metadata.get("names") {
        Some(text) => parse_class_names(text).map_err(|e| Unrecognised {
            problem: format!("the model's metadata `names` cannot be read: {e}"),
        })?,
        None => {
            return refuse(
                "the model's metadata has no class names (`names`, which Ultralytics' export \
                 writes)",
            );
        }
    };
    let output = layout(detections, prototypes, names.len() as u64, coefficients)?;

    let coco_ids = names.iter().all(|n| coco_id(n).is_some());
    let categories = names
        .iter()
        .enumerate()
        .map(|(index, name)| Category {
            category_id: if coco_ids {
                coco_id(name).unwrap_or_default()
            } else {
                index as i64 + 1
            },
            category_name: name.clone(),
        })
        .collect();
    let description = summary
        .metadata
        .get("description")
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("imported from {}", request.source));
    let manifest = Manifest {
        name: request.name.to_owned(),
        aliases: request.aliases.to_vec(),
        file: PathBuf::from("model.onnx"),
        description: Some(description),
        input: InputSpec {
            name: Some(input.name.clone()),
            size,
            stride,
            letterbox_pad: LETTERBOX_PAD,
            scale: 1.0 / 255.0,
            mean: None,
            std: None,
            channels: ChannelOrder::Rgb,
            layout: TensorLayout::Nchw,
        },
        output,
        thresholds: Thresholds {
            confidence: CONFIDENCE,
            nms_iou: NMS_IOU,
            mask: MASK,
            max_detections: MAX_DETECTIONS,
        },
        polygons: PolygonSpec::default(),
        categories,
    };
    manifest.validate().map_err(|problem| Unrecognised {
        problem: format!("the manifest it would get is invalid: {problem}"),
    })?;
    Ok(Recognised {
        manifest,
        fixed_input,
        coco_ids,
        detections: detections.clone(),
        prototypes: prototypes.clone(),
    })
}

/// Whether Ultralytics' metadata says the outputs are final detections: `end2end` is
/// `True` (NMS-free heads), or the export `args` have `'nms': True`. Says which.
fn end_to_end(metadata: &BTreeMap<String, String>) -> Option<&'static str> {
    if metadata.get("end2end").is_some_and(|v| v.trim() == "True") {
        return Some("metadata end2end = True");
    }
    let args = metadata.get("args")?.parse::<py_literal::Value>().ok()?;
    let py_literal::Value::Dict(args) = args else {
        return None;
    };
    args.iter()
        .any(|(key, value)| {
            matches!(key, py_literal::Value::String(k) if k == "nms")
                && matches!(value, py_literal::Value::Boolean(true))
        })
        .then_some("exported with nms=True")
}

/// A batch dimension the pipeline can feed: 1 or dynamic.
fn batch_of_one(dim: Option<u64>) -> bool {
    matches!(dim, None | Some(1))
}

/// The image input: its size, the stride its sides are padded to, and whether the size
/// is fixed.
fn input(summary: &OnnxSummary) -> Result<(&TensorSummary, u32, u32, bool), Unrecognised> {
    let [input] = summary.inputs.as_slice() else {
        let found: Vec<String> = summary.inputs.iter().map(|i| i.described()).collect();
        return refuse(format!(
            "the model has {} inputs ({}); an exported YOLO model has one, the image",
            summary.inputs.len(),
            found.join("; ")
        ));
    };
    let [batch, channels, height, width] = input.shape.as_slice() else {
        return refuse(format!(
            "the input {} is not an image tensor [1, 3, height, width]",
            input.described()
        ));
    };
    if !batch_of_one(*batch) || !matches!(channels, None | Some(3)) {
        return refuse(format!(
            "the input {} is not an image tensor [1, 3, height, width]",
            input.described()
        ));
    }
    if input.element_type != "float32" {
        return refuse(format!(
            "the input {} is not float32 (a half-precision export, `half=True`?); export \
             in float32",
            input.described()
        ));
    }
    let side = |dim: u64| u32::try_from(dim).ok().filter(|&s| s > 0);
    match (height, width) {
        (Some(h), Some(w)) if h == w => {
            let size = side(*h).ok_or_else(|| Unrecognised {
                problem: format!("the input {} has no usable size", input.described()),
            })?;
            // The model takes only this size: every image is padded to the full square.
            Ok((input, size, size, true))
        }
        (Some(h), Some(w)) => refuse(format!(
            "the input {} is {w}x{h}, not square; export with one square size \
             (`imgsz=640`)",
            input.described()
        )),
        _ => {
            let size = match summary.metadata.get("imgsz").map(|s| square_size(s)) {
                Some(Ok(size)) => size,
                Some(Err(problem)) => {
                    return refuse(format!(
                        "the input {} has a dynamic size and {problem}",
                        input.described()
                    ));
                }
                None => {
                    return refuse(format!(
                        "the input {} has a dynamic size and the metadata names no `imgsz` \
                         to use; export with a fixed size or set input.size by hand",
                        input.described()
                    ));
                }
            };
            let stride = match summary.metadata.get("stride") {
                Some(s) => s
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| Unrecognised {
                        problem: format!("the metadata `stride` {s:?} is not a positive integer"),
                    })?,
                None => DEFAULT_STRIDE,
            };
            if [height, width]
                .iter()
                .any(|d| d.is_some_and(|d| d != u64::from(size)))
            {
                return refuse(format!(
                    "the input {} does not match the metadata's imgsz {size}",
                    input.described()
                ));
            }
            if !size.is_multiple_of(stride) {
                return refuse(format!(
                    "the metadata's imgsz {size} is not a multiple of its stride {stride}"
                ));
            }
            Ok((input, size, stride, false))
        }
    }
}

/// Ultralytics' `imgsz` metadata: `[640, 640]` (or `640`), square.
fn square_size(text: &str) -> Result<u32, String> {
    let side = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let sides: Option<Vec<u32>> = match serde_json::from_str::<serde_json::Value>(text.trim()) {
        Ok(serde_json::Value::Array(items)) => items.iter().map(side).collect(),
        Ok(value) => side(&value).map(|s| vec![s]),
        Err(_) => None,
    };
    match sides.as_deref() {
        Some([s]) if *s > 0 => Ok(*s),
        Some([h, w]) if h == w && *h > 0 => Ok(*h),
        Some([_, _]) => Err(format!("the metadata's imgsz {text:?} is not square")),
        _ => Err(format!(
            "the metadata's imgsz {text:?} is not a size like [640, 640]"
        )),
    }
}

/// The detections (rank 3) and prototypes (rank 4) outputs.
fn outputs(summary: &OnnxSummary) -> Result<(&TensorSummary, &TensorSummary), Unrecognised> {
    let found = || {
        summary
            .outputs
            .iter()
            .map(|o| o.described())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let [a, b] = summary.outputs.as_slice() else {
        return refuse(format!(
            "the model has {} outputs ({}); a YOLO segmentation export has two, detections \
             and mask prototypes (Mask R-CNN and other layouts are not recognised)",
            summary.outputs.len(),
            found()
        ));
    };
    let (detections, prototypes) = match (a.shape.len(), b.shape.len()) {
        (3, 4) => (a, b),
        (4, 3) => (b, a),
        _ => {
            return refuse(format!(
                "the outputs ({}) are not a detections tensor of rank 3 and mask prototypes \
                 of rank 4",
                found()
            ));
        }
    };
    if let Some(other) = [detections, prototypes]
        .into_iter()
        .find(|o| o.element_type != "float32")
    {
        return refuse(format!(
            "the output {} is not float32 (a half-precision export, `half=True`?)",
            other.described()
        ));
    }
    Ok((detections, prototypes))
}

/// Which layout the detections have, given the class count of the names.
fn layout(
    detections: &TensorSummary,
    prototypes: &TensorSummary,
    classes: u64,
    coefficients: u64,
) -> Result<OutputSpec, Unrecognised> {
    let (batch, d1, d2) = match detections.shape.as_slice() {
        [batch, d1, d2] => (batch, d1, d2),
        _ => return refuse(format!("{} is not of rank 3", detections.described())),
    };
    if !batch_of_one(*batch) {
        return refuse(format!(
            "the detections output {} has a batch dimension other than 1",
            detections.described()
        ));
    }
    let v8_rows = 4 + classes + coefficients;
    let v5_rows = 5 + classes + coefficients;
    let is_v8 = *d1 == Some(v8_rows);
    let is_v5 = *d2 == Some(v5_rows);
    let names = (
        detections.name.clone(),
        prototypes.name.clone(),
        coefficients as usize,
    );
    match (is_v8, is_v5) {
        (true, false) => Ok(OutputSpec::Yolov8Seg {
            detections: names.0,
            prototypes: names.1,
            mask_coefficients: names.2,
        }),
        (false, true) => Ok(OutputSpec::YoloSeg {
            detections: names.0,
            prototypes: names.1,
            mask_coefficients: names.2,
        }),
        (true, true) => refuse(format!(
            "the detections output {} fits both yolov8-seg ([1, {v8_rows}, anchors]) and \
             yolo-seg ([1, anchors, {v5_rows}]) for {classes} classes",
            detections.described()
        )),
        (false, false) => {
            let mut hint = String::new();
            if let Some(d1) = d1.filter(|&d| d > 4 + coefficients) {
                let _ = write!(
                    hint,
                    "; read as yolov8-seg it holds {} classes",
                    d1 - 4 - coefficients
                );
            }
            if let Some(d2) = d2.filter(|&d| d > 5 + coefficients) {
                let _ = write!(
                    hint,
                    "; read as yolo-seg it holds {} classes",
                    d2 - 5 - coefficients
                );
            }
            refuse(format!(
                "the detections output {} fits neither layout for the {classes} class names \
                 of the metadata and {coefficients} mask coefficients: yolov8-seg is \
                 [1, {v8_rows}, anchors], yolo-seg [1, anchors, {v5_rows}]{hint}",
                detections.described()
            ))
        }
    }
}

/// Where the imported file came from, for the manifest's header.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    /// The imported file's name.
    pub file: &'a str,
    /// Its SHA-256, lowercase hex.
    pub sha256: &'a str,
}

/// The `model.toml` text of a recognised model: a header naming the imported file and
/// its SHA-256, then every section written out, categories one block per class like the
/// shipped manifests. Parsing it gives back `recognised.manifest` (any layout, though
/// [`recognise`] gives YOLO ones only).
pub fn manifest_toml(recognised: &Recognised, provenance: Provenance<'_>) -> String {
    let m = &recognised.manifest;
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut t = String::new();
    let file = provenance.file.replace(['\n', '\r'], " ");
    let _ = writeln!(t, "# Written by `foodseg-worker models import` from {file}");
    let _ = writeln!(t, "# (SHA-256 {}).", provenance.sha256);
    let _ = writeln!(
        t,
        "# docs/models.md describes every field; edit by hand as needed."
    );
    let _ = writeln!(t, "name = {}", q(&m.name));
    let aliases: Vec<String> = m.aliases.iter().map(|a| q(a)).collect();
    let _ = writeln!(t, "aliases = [{}]", aliases.join(", "));
    let _ = writeln!(t, "file = {}", q(&m.file.to_string_lossy()));
    if let Some(description) = &m.description {
        let _ = writeln!(t, "description = {}", q(description));
    }

    let input = &m.input;
    let _ = writeln!(t, "\n[input]");
    if let Some(name) = &input.name {
        let _ = writeln!(t, "name = {}", q(name));
    }
    let _ = writeln!(t, "size = {}", input.size);
    if recognised.fixed_input {
        let _ = writeln!(
            t,
            "# The model takes only {0}x{0} inputs: every image is padded to the square.",
            input.size
        );
    } else {
        let _ = writeln!(
            t,
            "# The model takes any size: sides are padded up to a multiple of the stride."
        );
    }
    let _ = writeln!(t, "stride = {}", input.stride);
    let _ = writeln!(t, "letterbox_pad = {}", input.letterbox_pad);
    if input.scale == 1.0 / 255.0 {
        let _ = writeln!(t, "scale = 0.00392156862745098 # 1/255");
    } else {
        let _ = writeln!(t, "scale = {:?}", input.scale);
    }
    let channels = match input.channels {
        ChannelOrder::Rgb => "rgb",
        ChannelOrder::Bgr => "bgr",
    };
    let _ = writeln!(t, "channels = {}", q(channels));
    let _ = writeln!(t, "layout = \"nchw\"");

    let _ = writeln!(t, "\n[output]");
    let _ = writeln!(
        t,
        "# Found: detections {}, prototypes {}.",
        recognised.detections.shape_text(),
        recognised.prototypes.shape_text()
    );
    let _ = writeln!(t, "layout = {}", q(m.output.layout_name()));
    match &m.output {
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
            let _ = writeln!(t, "detections = {}", q(detections));
            let _ = writeln!(t, "prototypes = {}", q(prototypes));
            let _ = writeln!(t, "mask_coefficients = {mask_coefficients}");
        }
        OutputSpec::MaskRcnn {
            boxes,
            labels,
            scores,
            masks,
            mask_kind,
            label_offset,
        } => {
            let _ = writeln!(t, "boxes = {}", q(boxes));
            let _ = writeln!(t, "labels = {}", q(labels));
            if let Some(scores) = scores {
                let _ = writeln!(t, "scores = {}", q(scores));
            }
            let _ = writeln!(t, "masks = {}", q(masks));
            let kind = match mask_kind {
                MaskKind::FullImage => "full-image",
                MaskKind::PerBox => "per-box",
            };
            let _ = writeln!(t, "mask_kind = {}", q(kind));
            let _ = writeln!(t, "label_offset = {label_offset}");
        }
    }

    let th = &m.thresholds;
    let _ = writeln!(t, "\n[thresholds]");
    let _ = writeln!(t, "confidence = {:?}", th.confidence);
    let _ = writeln!(
        t,
        "# `yolo predict` uses 0.7 for YOLOv8/YOLO11, keeping more overlapping boxes."
    );
    let _ = writeln!(t, "nms_iou = {:?}", th.nms_iou);
    let _ = writeln!(t, "mask = {:?}", th.mask);
    let _ = writeln!(t, "max_detections = {}", th.max_detections);

    let _ = writeln!(t, "\n[polygons]");
    let _ = writeln!(
        t,
        "# Douglas-Peucker tolerance in pixels of the original image."
    );
    let _ = writeln!(t, "tolerance_px = {:?}", m.polygons.tolerance_px);

    let _ = writeln!(
        t,
        "\n# Categories in the model's class-index order, named as its metadata `names` has"
    );
    if recognised.coco_ids {
        let _ = writeln!(
            t,
            "# them; every name is a COCO-80 name, so the ids are COCO's category ids."
        );
    } else {
        let _ = writeln!(
            t,
            "# them; ids 1…N in class order (not every name is a COCO-80 name)."
        );
    }
    for (index, c) in m.categories.iter().enumerate() {
        let _ = writeln!(t, "\n[[categories]] # {index}");
        let _ = writeln!(t, "category_id = {}", c.category_id);
        let _ = writeln!(t, "category_name = {}", q(&c.category_name));
    }
    t
}
