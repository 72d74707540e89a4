//! Per image and category: overlaps between detections and ground truth, and the greedy
//! matching of detections (highest score first) to ground-truth objects at every IoU
//! threshold, with crowd regions and objects outside the area range ignored.

/// A ground-truth object reduced to what matching needs.
#[derive(Debug, Clone)]
pub struct Truth {
    pub id: i64,
    pub area: f64,
    pub crowd: bool,
}

/// A detection reduced to what matching needs.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Position in the results file plus one (never 0).
    pub id: i64,
    pub area: f64,
    pub score: f64,
}

/// Matching outcome for one image, category and area range.
#[derive(Debug, Clone)]
pub struct ImageEval {
    /// Scores of the detections, highest first.
    pub scores: Vec<f64>,
    /// Per IoU threshold, per detection: the matched ground-truth id (0 = unmatched).
    pub matches: Vec<Vec<i64>>,
    /// Per IoU threshold, per detection: whether the detection is ignored.
    pub ignored: Vec<Vec<bool>>,
    /// Per ground-truth object: whether it is ignored.
    pub truth_ignored: Vec<bool>,
}

/// Indices of `detections` ordered by descending score, ties in original order.
pub fn by_score(detections: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..detections.len()).collect();
    order.sort_by(|&a, &b| {
        detections[b]
            .score
            .partial_cmp(&detections[a].score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    order
}

/// Matches `detections` (already sorted by score and cut to the detection limit) with
/// `truths`, given `ious[d][g]`, within the area range `range`.
pub fn evaluate_image(
    truths: &[Truth],
    detections: &[Candidate],
    ious: &[Vec<f64>],
    range: (f64, f64),
    thresholds: &[f64],
) -> Option<ImageEval> {
    if truths.is_empty() && detections.is_empty() {
        return None;
    }
    let outside = |area: f64| area < range.0 || area > range.1;
    let ignore: Vec<bool> = truths.iter().map(|g| g.crowd || outside(g.area)).collect();
    // Ground truth not ignored first, keeping the original order within each group.
    let mut order: Vec<usize> = (0..truths.len()).collect();
    order.sort_by_key(|&g| ignore[g]);
    let truth_ignored: Vec<bool> = order.iter().map(|&g| ignore[g]).collect();

    let t_count = thresholds.len();
    let mut matches = vec![vec![0i64; detections.len()]; t_count];
    let mut ignored = vec![vec![false; detections.len()]; t_count];
    if !truths.is_empty() && !detections.is_empty() {
        for (t, &threshold) in thresholds.iter().enumerate() {
            let mut truth_taken = vec![false; truths.len()];
            for (d, _) in detections.iter().enumerate() {
                let mut best = threshold.min(1.0 - 1e-10);
                let mut matched: Option<usize> = None;
                for (gi, &g) in order.iter().enumerate() {
                    if truth_taken[gi] && !truths[g].crowd {
                        continue;
                    }
                    if let Some(m) = matched
                        && !truth_ignored[m]
                        && truth_ignored[gi]
                    {
                        break;
                    }
                    let iou = ious[d][g];
                    if iou < best {
                        continue;
                    }
                    best = iou;
                    matched = Some(gi);
                }
                if let Some(m) = matched {
                    ignored[t][d] = truth_ignored[m];
                    matches[t][d] = truths[order[m]].id;
                    truth_taken[m] = true;
                }
            }
        }
    }
    for t in 0..t_count {
        for (d, det) in detections.iter().enumerate() {
            if matches[t][d] == 0 && outside(det.area) {
                ignored[t][d] = true;
            }
        }
    }
    Some(ImageEval {
        scores: detections.iter().map(|d| d.score).collect(),
        matches,
        ignored,
        truth_ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(id: i64, crowd: bool) -> Truth {
        Truth {
            id,
            area: 100.0,
            crowd,
        }
    }

    fn det(id: i64, score: f64) -> Candidate {
        Candidate {
            id,
            area: 100.0,
            score,
        }
    }

    #[test]
    fn sorting_by_score_is_stable() {
        let dets = [det(1, 0.5), det(2, 0.9), det(3, 0.5)];
        assert_eq!(by_score(&dets), vec![1, 0, 2]);
    }

    #[test]
    fn a_truth_is_matched_once_and_a_crowd_many_times() {
        let thresholds = [0.5];
        let dets = [det(1, 0.9), det(2, 0.8)];
        let ious = vec![vec![0.9], vec![0.8]];
        let e = evaluate_image(&[truth(7, false)], &dets, &ious, (0.0, 1e10), &thresholds).unwrap();
        assert_eq!(e.matches[0], vec![7, 0]);
        let e = evaluate_image(&[truth(7, true)], &dets, &ious, (0.0, 1e10), &thresholds).unwrap();
        assert_eq!(e.matches[0], vec![7, 7]);
        assert_eq!(e.ignored[0], vec![true, true]);
    }
}
