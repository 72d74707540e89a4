//! Mask R-CNN outputs as torchvision or mmdeploy export them: boxes, labels, scores and
//! per-detection masks (full-image probabilities or a small grid over each box). NMS is
//! already in the graph.

use foodseg_models::{MaskKind, Thresholds};
use ndarray::ArrayD;

use super::detection::{Detection, PostprocessError, box_to_original, contiguous};
use crate::mask::{pixel_span, sample_mask, sample_positions};
use crate::preprocess::Letterbox;
use crate::session::OutputTensor;

pub(super) struct Tensors<'a> {
    pub boxes: (&'a str, &'a ArrayD<f32>),
    pub labels: (&'a str, &'a OutputTensor),
    pub scores: Option<(&'a str, &'a ArrayD<f32>)>,
    pub masks: (&'a str, &'a ArrayD<f32>),
}

pub(super) fn detections(
    tensors: Tensors<'_>,
    mask_kind: MaskKind,
    label_offset: i64,
    classes: usize,
    thresholds: &Thresholds,
    letterbox: &Letterbox,
) -> Result<Vec<Detection>, PostprocessError> {
    let (boxes_name, boxes) = tensors.boxes;
    let box_shape = boxes.shape();
    let box_width = box_shape.last().copied().unwrap_or(0);
    let with_score = tensors.scores.is_none();
    if box_width != if with_score { 5 } else { 4 } || leading_ones(box_shape, 2) {
        return Err(PostprocessError::Shape {
            name: boxes_name.into(),
            shape: box_shape.to_vec(),
            expected: if with_score {
                "[N, 5] (x1, y1, x2, y2, score)"
            } else {
                "[N, 4] (x1, y1, x2, y2)"
            }
            .into(),
        });
    }
    let box_data = contiguous(boxes_name, boxes)?;
    let count = box_data.len() / box_width;

    let labels = labels(tensors.labels, count)?;
    let scores: Vec<f32> = match tensors.scores {
        Some((name, array)) => {
            let data = contiguous(name, array)?;
            if data.len() != count || leading_ones(array.shape(), 1) {
                return Err(shape_error(name, array.shape(), format!("[{count}]")));
            }
            data.to_vec()
        }
        None => box_data.chunks_exact(5).map(|b| b[4]).collect(),
    };

    let (masks_name, masks) = tensors.masks;
    let mask_shape = masks.shape();
    let (grid_h, grid_w) = match mask_shape {
        [.., h, w] if *h > 0 && *w > 0 => (*h, *w),
        _ => (0, 0),
    };
    let mask_data = contiguous(masks_name, masks)?;
    if grid_h == 0 || mask_data.len() != count * grid_h * grid_w {
        return Err(shape_error(
            masks_name,
            mask_shape,
            format!("[{count}, 1, H, W]"),
        ));
    }
    let plane = grid_h * grid_w;

    let mut order: Vec<usize> = (0..count)
        .filter(|&i| scores[i] >= thresholds.confidence)
        .collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));

    let mut out = Vec::new();
    for i in order {
        if out.len() >= thresholds.max_detections {
            break;
        }
        let class_index = labels[i] - label_offset;
        let Some(class_index) = usize::try_from(class_index).ok().filter(|&c| c < classes) else {
            tracing::warn!(
                label = labels[i],
                "model label outside the category list; detection dropped"
            );
            continue;
        };
        let b = &box_data[i * box_width..i * box_width + 4];
        let input_box = [b[0], b[1], b[2], b[3]];
        let bbox = box_to_original(letterbox, input_box);
        let (x0, x1) = pixel_span(bbox[0], bbox[2], letterbox.image_width);
        let (y0, y1) = pixel_span(bbox[1], bbox[3], letterbox.image_height);
        let grid = &mask_data[i * plane..(i + 1) * plane];
        // Original coordinate o lands on grid coordinate o * a + b (then minus 0.5 for
        // cell centres): through the letterbox into input pixels, then into the grid.
        let (ax, bx, ay, by) = match mask_kind {
            MaskKind::FullImage => {
                let sx = grid_w as f32 / letterbox.input_width as f32;
                let sy = grid_h as f32 / letterbox.input_height as f32;
                (
                    letterbox.scale * sx,
                    letterbox.pad_x * sx - 0.5,
                    letterbox.scale * sy,
                    letterbox.pad_y * sy - 0.5,
                )
            }
            MaskKind::PerBox => {
                let sx = grid_w as f32 / (input_box[2] - input_box[0]).max(1e-3);
                let sy = grid_h as f32 / (input_box[3] - input_box[1]).max(1e-3);
                (
                    letterbox.scale * sx,
                    (letterbox.pad_x - input_box[0]) * sx - 0.5,
                    letterbox.scale * sy,
                    (letterbox.pad_y - input_box[1]) * sy - 0.5,
                )
            }
        };
        let cols = sample_positions(x0, x1, ax, bx, grid_w);
        let rows = sample_positions(y0, y1, ay, by, grid_h);
        let mask = sample_mask(grid, grid_w, (x0, y0), &cols, &rows, thresholds.mask);
        out.push(Detection {
            class_index,
            score: scores[i],
            bbox,
            mask,
            mask_scale: 1.0,
        });
    }
    Ok(out)
}

/// True when the axes before the last `trailing` ones are not all 1 (a batch above 1).
fn leading_ones(shape: &[usize], trailing: usize) -> bool {
    shape.len() < trailing || shape[..shape.len() - trailing].iter().any(|&d| d != 1)
}

fn shape_error(name: &str, shape: &[usize], expected: String) -> PostprocessError {
    PostprocessError::Shape {
        name: name.into(),
        shape: shape.to_vec(),
        expected,
    }
}

fn labels(
    (name, tensor): (&str, &OutputTensor),
    count: usize,
) -> Result<Vec<i64>, PostprocessError> {
    let (shape, labels): (&[usize], Vec<i64>) = match tensor {
        OutputTensor::I64(array) => (array.shape(), array.iter().copied().collect()),
        OutputTensor::F32(array) => (
            array.shape(),
            array.iter().map(|&v| v.round() as i64).collect(),
        ),
    };
    if labels.len() != count || leading_ones(shape, 1) {
        return Err(shape_error(name, shape, format!("[{count}]")));
    }
    Ok(labels)
}
