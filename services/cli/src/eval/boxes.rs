//! Box overlap as COCO computes it: intersection over union, or over the detection's
//! area when the ground truth is a crowd region.

/// IoU of a detection box with a ground-truth box, both `[x, y, width, height]`.
pub fn iou(detection: [f64; 4], truth: [f64; 4], crowd: bool) -> f64 {
    let [dx, dy, dw, dh] = detection;
    let [gx, gy, gw, gh] = truth;
    let w = (dw + dx).min(gw + gx) - dx.max(gx);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (dh + dy).min(gh + gy) - dy.max(gy);
    if h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    let detection_area = dw * dh;
    let union = if crowd {
        detection_area
    } else {
        detection_area + gw * gh - inter
    };
    inter / union
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_of_shifted_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(a, a, false), 1.0);
        let b = [5.0, 0.0, 10.0, 10.0];
        assert!((iou(a, b, false) - 50.0 / 150.0).abs() < 1e-12);
        assert!((iou(a, b, true) - 0.5).abs() < 1e-12);
        assert_eq!(iou(a, [10.0, 0.0, 5.0, 5.0], false), 0.0);
    }
}
