//! The whole evaluation of a results file against an instances file for one IoU type:
//! grouping by image and category, overlaps, matching, accumulation and summary.

use std::collections::BTreeMap;

use super::accumulate::accumulate;
use super::boxes;
use super::dataset::{Dataset, Detection, Image, Segmentation};
use super::error::EvalError;
use super::matching::{Candidate, ImageEval, Truth, by_score, evaluate_image};
use super::params::{AREA_RANGES, IouType, MAX_DETS, iou_thresholds, recall_thresholds};
use super::rle::Rle;
use super::summary::Metrics;

/// Ground truth and detections of one image and category.
#[derive(Default)]
struct Cell<'a> {
    truths: Vec<(Truth, &'a crate::eval::dataset::Annotation)>,
    detections: Vec<(Candidate, &'a Detection)>,
}

/// Evaluates `detections` against `dataset` the way COCO's reference evaluation does:
/// all images and categories of the annotation file; detections of other categories
/// are left out.
pub fn evaluate(
    dataset: &Dataset,
    detections: &[Detection],
    iou_type: IouType,
) -> Result<Metrics, EvalError> {
    super::dataset::check_detection_images(detections, dataset)?;
    let mut image_ids: Vec<i64> = dataset.images.iter().map(|i| i.id).collect();
    image_ids.sort_unstable();
    image_ids.dedup();
    let mut category_ids: Vec<i64> = dataset.categories.iter().map(|c| c.id).collect();
    category_ids.sort_unstable();
    category_ids.dedup();

    let mut cells: BTreeMap<(i64, i64), Cell> = BTreeMap::new();
    for a in &dataset.annotations {
        if category_ids.binary_search(&a.category_id).is_err() {
            continue;
        }
        let truth = Truth {
            id: a.id,
            area: a.area,
            crowd: a.iscrowd,
        };
        cells
            .entry((a.image_id, a.category_id))
            .or_default()
            .truths
            .push((truth, a));
    }
    for (index, d) in detections.iter().enumerate() {
        if category_ids.binary_search(&d.category_id).is_err() {
            continue;
        }
        let candidate = Candidate {
            id: index as i64 + 1,
            area: d.bbox[2] * d.bbox[3],
            score: d.score,
        };
        cells
            .entry((d.image_id, d.category_id))
            .or_default()
            .detections
            .push((candidate, d));
    }

    let images = dataset.images_by_id();
    let thresholds = iou_thresholds();
    let max_det = MAX_DETS[MAX_DETS.len() - 1];
    // evals[category][area range][image]
    let mut evals: Vec<Vec<Vec<Option<ImageEval>>>> =
        vec![vec![Vec::with_capacity(image_ids.len()); AREA_RANGES.len()]; category_ids.len()];
    for (k, &category) in category_ids.iter().enumerate() {
        for &image in &image_ids {
            let empty = Cell::default();
            let cell = cells.get(&(image, category)).unwrap_or(&empty);
            let candidates: Vec<Candidate> =
                cell.detections.iter().map(|(c, _)| c.clone()).collect();
            let order: Vec<usize> = by_score(&candidates).into_iter().take(max_det).collect();
            let kept: Vec<Candidate> = order.iter().map(|&i| candidates[i].clone()).collect();
            let truths: Vec<Truth> = cell.truths.iter().map(|(t, _)| t.clone()).collect();
            let ious = overlaps(images.get(&image).copied(), cell, &order, iou_type)?;
            for (a, &range) in AREA_RANGES.iter().enumerate() {
                evals[k][a].push(evaluate_image(&truths, &kept, &ious, range, &thresholds));
            }
        }
    }
    let accumulated = accumulate(
        &evals,
        &thresholds,
        &recall_thresholds(),
        AREA_RANGES.len(),
        &MAX_DETS,
    );
    Ok(Metrics::summarize(
        &accumulated,
        &thresholds,
        dataset,
        &category_ids,
    ))
}

/// `ious[d][g]` for the detections at `order` against all ground truth of the cell.
fn overlaps(
    image: Option<&Image>,
    cell: &Cell,
    order: &[usize],
    iou_type: IouType,
) -> Result<Vec<Vec<f64>>, EvalError> {
    if order.is_empty() || cell.truths.is_empty() {
        return Ok(Vec::new());
    }
    match iou_type {
        IouType::Bbox => Ok(order
            .iter()
            .map(|&d| {
                let det = cell.detections[d].1;
                cell.truths
                    .iter()
                    .map(|(t, a)| boxes::iou(det.bbox, a.bbox, t.crowd))
                    .collect()
            })
            .collect()),
        IouType::Segm => {
            // Every cell's image is known: annotations and detections were checked.
            let Some(image) = image else {
                return Ok(Vec::new());
            };
            let (h, w) = (image.height, image.width);
            let mut truth_masks = Vec::with_capacity(cell.truths.len());
            for (_, a) in &cell.truths {
                let segmentation = a
                    .segmentation
                    .as_ref()
                    .ok_or(EvalError::MissingSegmentation { id: a.id })?;
                let mask =
                    segmentation
                        .to_rle(h, w)
                        .map_err(|reason| EvalError::BadSegmentation {
                            what: "annotation",
                            id: a.id,
                            reason,
                        })?;
                truth_masks.push(mask);
            }
            let mut out = Vec::with_capacity(order.len());
            for &d in order {
                let (candidate, det) = &cell.detections[d];
                let mask =
                    detection_mask(det, h, w).map_err(|reason| EvalError::BadSegmentation {
                        what: "detection",
                        id: candidate.id - 1,
                        reason,
                    })?;
                out.push(
                    truth_masks
                        .iter()
                        .zip(&cell.truths)
                        .map(|(g, (t, _))| Rle::iou(&mask, g, t.crowd))
                        .collect(),
                );
            }
            Ok(out)
        }
    }
}

/// A detection's mask: its segmentation, or its box when it has none.
fn detection_mask(det: &Detection, height: u32, width: u32) -> Result<Rle, String> {
    match &det.segmentation {
        Some(s) => s.to_rle(height, width),
        None => {
            let [x, y, bw, bh] = det.bbox;
            let (x2, y2) = (x + bw, y + bh);
            Segmentation::Polygons(vec![vec![x, y, x, y2, x2, y2, x2, y]]).to_rle(height, width)
        }
    }
}
