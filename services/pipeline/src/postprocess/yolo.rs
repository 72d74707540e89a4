//! YOLO-seg outputs: decode anchors, per-class NMS, then masks from prototype
//! coefficients evaluated only inside each kept box.

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

pub(super) struct Tensors<'a> {
    pub detections: &'a ArrayD<f32>,
    pub prototypes: &'a ArrayD<f32>,
    pub detections_name: &'a str,
    pub prototypes_name: &'a str,
}

pub(super) fn detections(
    tensors: Tensors<'_>,
    classes: usize,
    coefficients: usize,
    thresholds: &Thresholds,
    letterbox: &Letterbox,
    scale: f32,
) -> Result<Vec<Detection>, PostprocessError> {
    let row_len = 5 + classes + coefficients;
    let det_shape = tensors.detections.shape();
    if det_shape.len() != 3 || det_shape[0] != 1 || det_shape[2] != row_len {
        return Err(PostprocessError::Shape {
            name: tensors.detections_name.into(),
            shape: det_shape.to_vec(),
            expected: format!(
                "[1, anchors, {row_len}] (5 + {classes} classes + {coefficients} coefficients)"
            ),
        });
    }
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
    let rows = contiguous(tensors.detections_name, tensors.detections)?;
    let protos = Prototypes {
        data: contiguous(tensors.prototypes_name, tensors.prototypes)?,
        count: coefficients,
        height: proto_shape[2],
        width: proto_shape[3],
    };

    let candidates = candidates(rows, row_len, classes, thresholds.confidence);
    let kept = nms(candidates, thresholds.nms_iou, thresholds.max_detections);
    let logit_threshold = logit(thresholds.mask);
    Ok(kept
        .into_iter()
        .map(|c| {
            let row = &rows[c.row * row_len..(c.row + 1) * row_len];
            let coeffs = &row[5 + classes..];
            let bbox = box_to_original(letterbox, c.bbox);
            let mask = protos.mask(coeffs, c.bbox, bbox, letterbox, scale, logit_threshold);
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

/// Anchors whose best class score (objectness × class probability) passes the threshold.
fn candidates(rows: &[f32], row_len: usize, classes: usize, confidence: f32) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (index, row) in rows.chunks_exact(row_len).enumerate() {
        let objectness = row[4];
        if objectness < confidence {
            continue;
        }
        let (class_index, class_score) =
            row[5..5 + classes]
                .iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, &s)| if s > best.1 { (i, s) } else { best },
                );
        let score = objectness * class_score;
        if score < confidence || !score.is_finite() {
            continue;
        }
        let (cx, cy, w, h) = (row[0], row[1], row[2] / 2.0, row[3] / 2.0);
        out.push(Candidate {
            class_index,
            score,
            bbox: [cx - w, cy - h, cx + w, cy + h],
            row: index,
        });
    }
    if out.len() > MAX_NMS_CANDIDATES {
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        out.truncate(MAX_NMS_CANDIDATES);
    }
    out
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
