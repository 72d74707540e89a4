//! YOLO-seg outputs, in YOLOv5's layout (a row per anchor) or Ultralytics YOLOv8/YOLO11's
//! (transposed: a column per anchor, no objectness): decode anchors, per-class NMS, then
//! masks from prototype coefficients evaluated only inside each kept box. The two layouts
//! differ only in where an anchor's values are and how its score is made, which
//! [`Anchors`] hides from the rest.

use foodseg_models::Thresholds;
use ndarray::ArrayD;

use super::detection::{Detection, PostprocessError, box_to_original, contiguous};
use super::nms::{Candidate, nms};
use crate::mask::{grid_len, pixel_span, sample_mask, sample_positions};
use crate::preprocess::Letterbox;

/// Largest number of candidates considered by NMS.
const MAX_NMS_CANDIDATES: usize = 30_000;
/// Prototype cells per input pixel (the prototypes are at 1/4 input resolution).
const PROTO_STRIDE: f32 = 4.0;

/// How the detection tensor holds its anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// YOLOv5-seg: `[1, anchors, 5 + classes + coefficients]`, a row per anchor of
    /// cx, cy, w, h, objectness, class probabilities, coefficients.
    V5,
    /// YOLOv8/YOLO11-seg: `[1, 4 + classes + coefficients, anchors]`, a column per anchor
    /// of cx, cy, w, h, final class scores, coefficients.
    V8,
}

impl Layout {
    /// Values per anchor before the class scores (the box, and YOLOv5's objectness).
    fn class_start(self) -> usize {
        match self {
            Self::V5 => 5,
            Self::V8 => 4,
        }
    }
}

pub(super) struct Tensors<'a> {
    pub detections: &'a ArrayD<f32>,
    pub prototypes: &'a ArrayD<f32>,
    pub detections_name: &'a str,
    pub prototypes_name: &'a str,
}

pub(super) fn detections(
    layout: Layout,
    tensors: Tensors<'_>,
    classes: usize,
    coefficients: usize,
    thresholds: &Thresholds,
    letterbox: &Letterbox,
    scale: f32,
) -> Result<Vec<Detection>, PostprocessError> {
    let per_anchor = layout.class_start() + classes + coefficients;
    let det_shape = tensors.detections.shape();
    let anchors = match (layout, det_shape) {
        (Layout::V5, &[1, anchors, row]) if row == per_anchor => anchors,
        (Layout::V8, &[1, column, anchors]) if column == per_anchor => anchors,
        _ => {
            return Err(PostprocessError::Shape {
                name: tensors.detections_name.into(),
                shape: det_shape.to_vec(),
                expected: match layout {
                    Layout::V5 => format!(
                        "[1, anchors, {per_anchor}] (5 + {classes} classes + {coefficients} \
                         coefficients)"
                    ),
                    Layout::V8 => format!(
                        "[1, {per_anchor}, anchors] (4 + {classes} classes + {coefficients} \
                         coefficients)"
                    ),
                },
            });
        }
    };
    let proto_shape = tensors.prototypes.shape();
    if proto_shape.len() != 4
        || proto_shape[0] != 1
        || proto_shape[1] != coefficients
        || proto_shape[2] == 0
        || proto_shape[3] == 0
    {
        return Err(PostprocessError::Shape {
            name: tensors.prototypes_name.into(),
            shape: proto_shape.to_vec(),
            expected: format!("[1, {coefficients}, height/4, width/4]"),
        });
    }
    let rows = Anchors::new(
        layout,
        contiguous(tensors.detections_name, tensors.detections)?,
        anchors,
        classes,
    );
    let protos = Prototypes {
        data: contiguous(tensors.prototypes_name, tensors.prototypes)?,
        count: coefficients,
        height: proto_shape[2],
        width: proto_shape[3],
    };

    let candidates = rows.candidates(thresholds.confidence);
    let kept = nms(candidates, thresholds.nms_iou, thresholds.max_detections);
    let logit_threshold = logit(thresholds.mask);
    Ok(kept
        .into_iter()
        .map(|c| {
            let coeffs = rows.coefficients(c.row, coefficients);
            let bbox = box_to_original(letterbox, c.bbox);
            let mask = protos.mask(&coeffs, c.bbox, bbox, letterbox, scale, logit_threshold);
            Detection {
                class_index: c.class_index,
                score: c.score,
                bbox,
                mask,
                mask_scale: scale,
            }
        })
        .collect())
}

/// The detection tensor read anchor by anchor, whichever its layout: value `field` of
/// anchor `a` is at `a * anchor_stride + field * field_stride`.
struct Anchors<'a> {
    data: &'a [f32],
    layout: Layout,
    anchors: usize,
    classes: usize,
    anchor_stride: usize,
    field_stride: usize,
}

impl<'a> Anchors<'a> {
    fn new(layout: Layout, data: &'a [f32], anchors: usize, classes: usize) -> Self {
        let per_anchor = data.len().checked_div(anchors).unwrap_or(0);
        let (anchor_stride, field_stride) = match layout {
            Layout::V5 => (per_anchor, 1),
            Layout::V8 => (1, anchors),
        };
        Self {
            data,
            layout,
            anchors,
            classes,
            anchor_stride,
            field_stride,
        }
    }

    fn value(&self, anchor: usize, field: usize) -> f32 {
        self.data[anchor * self.anchor_stride + field * self.field_stride]
    }

    /// Anchors whose score passes the threshold, with their best class: YOLOv5's score is
    /// objectness × the best class probability (anchors of low objectness are skipped
    /// unread), YOLOv8's the best class score itself.
    fn candidates(&self, confidence: f32) -> Vec<Candidate> {
        let class_start = self.layout.class_start();
        let mut out = Vec::new();
        for anchor in 0..self.anchors {
            let objectness = match self.layout {
                Layout::V5 => self.value(anchor, 4),
                Layout::V8 => 1.0,
            };
            if objectness < confidence {
                continue;
            }
            let (class_index, class_score) = (0..self.classes)
                .map(|k| self.value(anchor, class_start + k))
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, s)| if s > best.1 { (i, s) } else { best },
                );
            let score = objectness * class_score;
            if score < confidence || !score.is_finite() {
                continue;
            }
            let (cx, cy) = (self.value(anchor, 0), self.value(anchor, 1));
            let (w, h) = (self.value(anchor, 2) / 2.0, self.value(anchor, 3) / 2.0);
            out.push(Candidate {
                class_index,
                score,
                bbox: [cx - w, cy - h, cx + w, cy + h],
                row: anchor,
            });
        }
        if out.len() > MAX_NMS_CANDIDATES {
            out.sort_by(|a, b| b.score.total_cmp(&a.score));
            out.truncate(MAX_NMS_CANDIDATES);
        }
        out
    }

    /// The mask coefficients of an anchor.
    fn coefficients(&self, anchor: usize, count: usize) -> Vec<f32> {
        let start = self.layout.class_start() + self.classes;
        (start..start + count)
            .map(|field| self.value(anchor, field))
            .collect()
    }
}

struct Prototypes<'a> {
    /// `[count, height, width]`, row-major.
    data: &'a [f32],
    count: usize,
    height: usize,
    width: usize,
}

impl Prototypes<'_> {
    /// The instance mask over the box, in a grid of `scale` mask pixels per original
    /// pixel: mask logits (coefficients · prototypes) are computed only on the prototype
    /// cells around the box, sampled bilinearly at each mask pixel centre and thresholded.
    fn mask(
        &self,
        coeffs: &[f32],
        input_box: [f32; 4],
        original_box: [f32; 4],
        letterbox: &Letterbox,
        scale: f32,
        logit_threshold: f32,
    ) -> crate::mask::Mask {
        let (grid_w, grid_h) = (
            grid_len(letterbox.image_width, scale),
            grid_len(letterbox.image_height, scale),
        );
        let (x0, x1) = pixel_span(original_box[0] * scale, original_box[2] * scale, grid_w);
        let (y0, y1) = pixel_span(original_box[1] * scale, original_box[3] * scale, grid_h);

        // Prototype cells covering the box, one cell of margin for interpolation.
        let cell =
            |v: f32, len: usize| ((v / PROTO_STRIDE - 0.5).floor().max(0.0) as usize).min(len - 1);
        let (u0, v0) = (
            cell(input_box[0], self.width).saturating_sub(1),
            cell(input_box[1], self.height).saturating_sub(1),
        );
        let u1 = (cell(input_box[2], self.width) + 2).min(self.width);
        let v1 = (cell(input_box[3], self.height) + 2).min(self.height);
        let (gw, gh) = (u1.saturating_sub(u0).max(1), v1.saturating_sub(v0).max(1));

        let plane = self.height * self.width;
        let mut grid = vec![0.0f32; gw * gh];
        for (k, &c) in coeffs.iter().enumerate().take(self.count) {
            let proto = &self.data[k * plane..(k + 1) * plane];
            for (gy, out_row) in grid.chunks_exact_mut(gw).enumerate() {
                let start = (v0 + gy).min(self.height - 1) * self.width + u0;
                let src = &proto[start..(start + gw).min(proto.len())];
                for (o, &p) in out_row.iter_mut().zip(src) {
                    *o += c * p;
                }
            }
        }

        // Mask pixel centre m is original o = m / scale, which maps to input
        // o*letterbox.scale + pad, and to prototype grid (input / 4 - 0.5) minus the
        // crop origin.
        let a = letterbox.scale / PROTO_STRIDE / scale;
        let cols = sample_positions(
            x0,
            x1,
            a,
            letterbox.pad_x / PROTO_STRIDE - 0.5 - u0 as f32,
            gw,
        );
        let rows = sample_positions(
            y0,
            y1,
            a,
            letterbox.pad_y / PROTO_STRIDE - 0.5 - v0 as f32,
            gh,
        );
        sample_mask(&grid, gw, (x0, y0), &cols, &rows, logit_threshold)
    }
}

/// The logit of a probability threshold, so masks compare logits instead of sigmoids.
fn logit(p: f32) -> f32 {
    if p >= 1.0 {
        f32::INFINITY
    } else {
        (p / (1.0 - p)).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foodseg_models::{ChannelOrder, InputSpec, TensorLayout};
    use ndarray::IxDyn;

    const CLASSES: usize = 3;
    const COEFFICIENTS: usize = 2;

    /// YOLOv5 rows: cx, cy, w, h, objectness, class probabilities, coefficients.
    fn v5_rows() -> Vec<[f32; 5 + CLASSES + COEFFICIENTS]> {
        vec![
            // Two overlapping boxes of class 1: the weaker is suppressed.
            [20.0, 20.0, 16.0, 12.0, 0.9, 0.1, 0.95, 0.2, 1.0, 0.5],
            [21.0, 20.0, 16.0, 12.0, 0.8, 0.1, 0.9, 0.2, 1.0, 0.5],
            // Objectness too low: skipped whatever the class.
            [40.0, 40.0, 10.0, 10.0, 0.2, 0.0, 0.0, 1.0, 1.0, 1.0],
            // Class 2 alone, with other mask coefficients.
            [48.0, 12.0, 20.0, 18.0, 0.7, 0.05, 0.1, 0.6, 1.0, -0.5],
            // Passes objectness but not objectness × class.
            [10.0, 50.0, 8.0, 8.0, 0.5, 0.3, 0.2, 0.1, 1.0, 1.0],
        ]
    }

    fn v5_tensor() -> ArrayD<f32> {
        let rows = v5_rows();
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        ArrayD::from_shape_vec(IxDyn(&[1, rows.len(), 5 + CLASSES + COEFFICIENTS]), data)
            .expect("v5 shape")
    }

    /// The same anchors in YOLOv8's transposed layout, scores made final
    /// (objectness × class probability) and no objectness column.
    fn v8_tensor() -> ArrayD<f32> {
        let rows = v5_rows();
        let per_anchor = 4 + CLASSES + COEFFICIENTS;
        let mut data = vec![0.0f32; per_anchor * rows.len()];
        for (a, row) in rows.iter().enumerate() {
            let mut column: Vec<f32> = row[..4].to_vec();
            column.extend(row[5..5 + CLASSES].iter().map(|&p| row[4] * p));
            column.extend(&row[5 + CLASSES..]);
            for (field, value) in column.into_iter().enumerate() {
                data[field * rows.len() + a] = value;
            }
        }
        ArrayD::from_shape_vec(IxDyn(&[1, per_anchor, rows.len()]), data).expect("v8 shape")
    }

    fn prototypes() -> ArrayD<f32> {
        let (h, w) = (16, 16);
        let data: Vec<f32> = (0..COEFFICIENTS * h * w)
            .map(|i| {
                let (k, y, x) = (i / (h * w), (i / w) % h, i % w);
                if k == 0 {
                    (x as f32 - 4.0) / 4.0
                } else {
                    (y as f32 - 6.0) / 3.0
                }
            })
            .collect();
        ArrayD::from_shape_vec(IxDyn(&[1, COEFFICIENTS, h, w]), data).expect("proto shape")
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            confidence: 0.25,
            nms_iou: 0.45,
            mask: 0.5,
            max_detections: 100,
        }
    }

    fn letterbox() -> Letterbox {
        let spec = InputSpec {
            name: None,
            size: 64,
            stride: 32,
            letterbox_pad: 114,
            scale: 1.0 / 255.0,
            mean: None,
            std: None,
            channels: ChannelOrder::Rgb,
            layout: TensorLayout::Nchw,
        };
        Letterbox::new(64, 64, &spec)
    }

    fn decode(
        layout: Layout,
        detections: &ArrayD<f32>,
    ) -> Result<Vec<Detection>, PostprocessError> {
        let protos = prototypes();
        super::detections(
            layout,
            Tensors {
                detections,
                prototypes: &protos,
                detections_name: "output0",
                prototypes_name: "output1",
            },
            CLASSES,
            COEFFICIENTS,
            &thresholds(),
            &letterbox(),
            1.0,
        )
    }

    #[test]
    fn v8_columns_decode_to_the_same_detections_as_the_equivalent_v5_rows() {
        let v5 = decode(Layout::V5, &v5_tensor()).expect("v5 decode");
        let v8 = decode(Layout::V8, &v8_tensor()).expect("v8 decode");
        let summary = |found: &[Detection]| -> Vec<(usize, f32, [f32; 4])> {
            found
                .iter()
                .map(|d| (d.class_index, d.score, d.bbox))
                .collect()
        };
        assert_eq!(
            summary(&v5),
            vec![
                (1, 0.9 * 0.95, [12.0, 14.0, 28.0, 26.0]),
                (2, 0.7 * 0.6, [38.0, 3.0, 58.0, 21.0]),
            ]
        );
        assert_eq!(summary(&v8), summary(&v5));
        for (a, b) in v5.iter().zip(&v8) {
            assert!(a.mask.area() > 0, "{a:?}");
            assert_eq!(
                a.mask, b.mask,
                "the coefficients of the kept anchor, read across"
            );
        }
    }

    #[test]
    fn v8_scores_are_final_without_objectness() {
        // One anchor whose best class score, 0.3, is its score: nothing multiplies it.
        let per_anchor = 4 + CLASSES + COEFFICIENTS;
        let column = [32.0, 32.0, 8.0, 8.0, 0.3, 0.1, 0.0, 1.0, 1.0];
        let detections =
            ArrayD::from_shape_vec(IxDyn(&[1, per_anchor, 1]), column.to_vec()).expect("shape");
        let found = decode(Layout::V8, &detections).expect("decode");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].class_index, found[0].score), (0, 0.3));
        assert_eq!(found[0].bbox, [28.0, 28.0, 36.0, 36.0]);
    }

    #[test]
    fn shape_errors_say_the_expected_shape() {
        // The v5 tensor read as v8, and the v8 one as v5.
        let err = decode(Layout::V8, &v5_tensor())
            .expect_err("not v8")
            .to_string();
        assert!(
            err.contains("expected [1, 9, anchors] (4 + 3 classes + 2 coefficients)"),
            "{err}"
        );
        let err = decode(Layout::V5, &v8_tensor())
            .expect_err("not v5")
            .to_string();
        assert!(
            err.contains("expected [1, anchors, 10] (5 + 3 classes + 2 coefficients)"),
            "{err}"
        );
    }
}
