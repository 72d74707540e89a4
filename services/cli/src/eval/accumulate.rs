//! Precision and recall over all images: per category, area range and detection limit,
//! detections of all images ranked by score, precision made monotone and read at the
//! 101 recall points.

use super::matching::ImageEval;

/// Precision at every recall point and final recall, indexed
/// `[threshold][recall point][category][area range][detection limit]` and
/// `[threshold][category][area range][detection limit]`. -1 where undefined (no
/// ground truth to find).
#[derive(Debug, Clone)]
pub struct Accumulated {
    pub precision: Vec<Vec<Vec<Vec<Vec<f64>>>>>,
    pub recall: Vec<Vec<Vec<Vec<f64>>>>,
}

/// Accumulates `evals[category][area range]` (one entry per image, `None` where the image
/// has neither ground truth nor detections of that category).
pub fn accumulate(
    evals: &[Vec<Vec<Option<ImageEval>>>],
    thresholds: &[f64],
    recall_points: &[f64],
    area_count: usize,
    max_dets: &[usize],
) -> Accumulated {
    let (t_count, r_count, k_count, m_count) = (
        thresholds.len(),
        recall_points.len(),
        evals.len(),
        max_dets.len(),
    );
    let mut precision =
        vec![vec![vec![vec![vec![-1.0; m_count]; area_count]; k_count]; r_count]; t_count];
    let mut recall = vec![vec![vec![vec![-1.0; m_count]; area_count]; k_count]; t_count];

    for (k, per_area) in evals.iter().enumerate() {
        for (a, per_image) in per_area.iter().enumerate().take(area_count) {
            let images: Vec<&ImageEval> = per_image.iter().flatten().collect();
            if images.is_empty() {
                continue;
            }
            let truths = images
                .iter()
                .flat_map(|e| e.truth_ignored.iter())
                .filter(|&&ignored| !ignored)
                .count();
            if truths == 0 {
                continue;
            }
            for (m, &max_det) in max_dets.iter().enumerate() {
                // (score, image, position in image) of the first `max_det` per image.
                let mut ranked: Vec<(f64, usize, usize)> = Vec::new();
                for (i, e) in images.iter().enumerate() {
                    for (d, &score) in e.scores.iter().enumerate().take(max_det) {
                        ranked.push((score, i, d));
                    }
                }
                ranked.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or(std::cmp::Ordering::Equal));

                for t in 0..t_count {
                    let mut tp = 0.0;
                    let mut fp = 0.0;
                    let mut rc: Vec<f64> = Vec::with_capacity(ranked.len());
                    let mut pr: Vec<f64> = Vec::with_capacity(ranked.len());
                    for &(_, i, d) in &ranked {
                        let e = images[i];
                        if e.ignored[t][d] {
                            // Neither true nor false positive, yet still a ranked entry.
                        } else if e.matches[t][d] != 0 {
                            tp += 1.0;
                        } else {
                            fp += 1.0;
                        }
                        rc.push(tp / truths as f64);
                        pr.push(tp / (fp + tp + f64::EPSILON));
                    }
                    recall[t][k][a][m] = rc.last().copied().unwrap_or(0.0);
                    for i in (1..pr.len()).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    for (r, &point) in recall_points.iter().enumerate() {
                        let at = rc.partition_point(|&v| v < point);
                        let value = match pr.get(at) {
                            Some(&p) => p,
                            None => 0.0,
                        };
                        precision[t][r][k][a][m] = value;
                    }
                }
            }
        }
    }
    Accumulated { precision, recall }
}
