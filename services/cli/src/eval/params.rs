//! The standard COCO evaluation parameters: IoU thresholds, recall points, area ranges
//! and detection limits, computed the way numpy's `linspace` computes them so that
//! threshold comparisons agree bit for bit with the reference implementation.

/// The kind of overlap measured between a detection and a ground-truth object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouType {
    /// Box overlap.
    Bbox,
    /// Mask overlap.
    Segm,
}

impl IouType {
    /// The name COCO tools use for it (`bbox`, `segm`).
    pub fn name(self) -> &'static str {
        match self {
            IouType::Bbox => "bbox",
            IouType::Segm => "segm",
        }
    }
}

/// Area ranges in square pixels, inclusive at both ends: all, small, medium, large.
pub const AREA_RANGES: [(f64, f64); 4] = [
    (0.0, 1e10),
    (0.0, 32.0 * 32.0),
    (32.0 * 32.0, 96.0 * 96.0),
    (96.0 * 96.0, 1e10),
];

/// Index of the "all areas" range in [`AREA_RANGES`].
pub const AREA_ALL: usize = 0;

/// Detection limits per image, ascending.
pub const MAX_DETS: [usize; 3] = [1, 10, 100];

/// `numpy.linspace(start, stop, num)` with its endpoint rule.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let step = (stop - start) / div;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = values.last_mut() {
        *last = stop;
    }
    values
}

/// IoU thresholds 0.50, 0.55, …, 0.95.
pub fn iou_thresholds() -> Vec<f64> {
    linspace(0.5, 0.95, 10)
}

/// Recall points 0.00, 0.01, …, 1.00.
pub fn recall_thresholds() -> Vec<f64> {
    linspace(0.0, 1.0, 101)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_have_the_standard_shape() {
        let t = iou_thresholds();
        assert_eq!(t.len(), 10);
        assert_eq!(t[0], 0.5);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[9], 0.95);
        let r = recall_thresholds();
        assert_eq!(r.len(), 101);
        assert_eq!(r[100], 1.0);
    }
}
