//! Greedy per-class non-maximum suppression.

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// A candidate box with its class and score.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub class_index: usize,
    pub score: f32,
    pub bbox: [f32; 4],
    /// Row of the candidate in the model output.
    pub row: usize,
}

/// Keeps the best-scoring candidates, dropping any that overlap a kept candidate of the
/// same class by more than `iou_threshold`; at most `max_keep` are returned, best first.
pub(crate) fn nms(
    mut candidates: Vec<Candidate>,
    iou_threshold: f32,
    max_keep: usize,
) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        if kept.len() >= max_keep {
            break;
        }
        let suppressed = kept.iter().any(|k| {
            k.class_index == candidate.class_index && iou(&k.bbox, &candidate.bbox) > iou_threshold
        });
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(class_index: usize, score: f32, bbox: [f32; 4]) -> Candidate {
        Candidate {
            class_index,
            score,
            bbox,
            row: 0,
        }
    }

    #[test]
    fn suppresses_overlaps_within_a_class_only() {
        let kept = nms(
            vec![
                candidate(0, 0.5, [0.0, 0.0, 10.0, 10.0]),
                candidate(0, 0.9, [1.0, 1.0, 11.0, 11.0]),
                candidate(1, 0.8, [1.0, 1.0, 11.0, 11.0]),
                candidate(0, 0.4, [50.0, 50.0, 60.0, 60.0]),
            ],
            0.45,
            10,
        );
        let scores: Vec<f32> = kept.iter().map(|c| c.score).collect();
        assert_eq!(scores, [0.9, 0.8, 0.4]);
    }

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = [0.0, 0.0, 2.0, 2.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[3.0, 3.0, 4.0, 4.0]), 0.0);
    }
}
