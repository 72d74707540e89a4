//! Comparing two answers for one image — the served model's items and a candidate's —
//! per category name: the items of each, and the items both found. Two items match when
//! they have the same category and their masks overlap with an IoU of at least
//! [`MATCH_IOU`]; matching is greedy by score and one-to-one: the candidate's items, best
//! score first, each take the unmatched item of the model with the highest IoU.
//!
//! A mask is its item's polygons filled on the original image's pixel grid (where the
//! polygons are) by `imageproc`, over the box of the polygons' points: a pixel belongs to
//! it when it lies inside a polygon or on its outline. The IoU of two items counts pixels
//! where their boxes overlap.

use std::collections::BTreeMap;

use foodseg_engine::store::ClassCounts;
use foodseg_pipeline::Item;
use imageproc::drawing::{draw_line_segment_mut, draw_polygon_mut};
use imageproc::image::{GrayImage, Luma};
use imageproc::point::Point;

/// The mask IoU at or above which two items of the same category match.
pub const MATCH_IOU: f64 = 0.5;

/// Per category name either answer has: items of the model, items of the candidate, and
/// matched pairs.
pub fn compare(model: &[Item], candidate: &[Item]) -> BTreeMap<String, ClassCounts> {
    let mut classes: BTreeMap<String, (Vec<&Item>, Vec<&Item>)> = BTreeMap::new();
    for item in model {
        let class = classes.entry(item.category_name.clone()).or_default();
        class.0.push(item);
    }
    for item in candidate {
        let class = classes.entry(item.category_name.clone()).or_default();
        class.1.push(item);
    }
    classes
        .into_iter()
        .map(|(name, (ours, theirs))| {
            let counts = ClassCounts {
                model: ours.len() as i64,
                candidate: theirs.len() as i64,
                matched: matched(&ours, &theirs) as i64,
            };
            (name, counts)
        })
        .collect()
}

/// Greedy one-to-one matching of one category's items (see the module's documentation).
fn matched(model: &[&Item], candidate: &[&Item]) -> usize {
    if model.is_empty() || candidate.is_empty() {
        return 0;
    }
    let by_score = |items: &[&Item]| {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| items[b].score.total_cmp(&items[a].score));
        order
    };
    let model_order = by_score(model);
    let ours: Vec<Raster> = model.iter().map(|i| Raster::of(&i.polygons)).collect();
    let mut taken = vec![false; model.len()];
    let mut matched = 0;
    for j in by_score(candidate) {
        let theirs = Raster::of(&candidate[j].polygons);
        let mut best: Option<(usize, f64)> = None;
        for &i in &model_order {
            if taken[i] {
                continue;
            }
            let iou = ours[i].iou(&theirs);
            if iou >= MATCH_IOU && best.is_none_or(|(_, b)| iou > b) {
                best = Some((i, iou));
            }
        }
        if let Some((i, _)) = best {
            taken[i] = true;
            matched += 1;
        }
    }
    matched
}

/// An item's filled polygons over the box of their points.
#[derive(Debug, Clone, PartialEq)]
struct Raster {
    /// Original-image coordinates of the box's top-left pixel.
    left: i64,
    top: i64,
    pixels: GrayImage,
    area: u64,
}

impl Default for Raster {
    fn default() -> Self {
        Raster {
            left: 0,
            top: 0,
            pixels: GrayImage::new(0, 0),
            area: 0,
        }
    }
}

impl Raster {
    fn of(polygons: &[Vec<[i32; 2]>]) -> Raster {
        let points = || polygons.iter().flatten();
        let (Some(left), Some(right), Some(top), Some(bottom)) = (
            points().map(|p| p[0]).min(),
            points().map(|p| p[0]).max(),
            points().map(|p| p[1]).min(),
            points().map(|p| p[1]).max(),
        ) else {
            return Raster::default();
        };
        let width = u32::try_from(i64::from(right) - i64::from(left) + 1).unwrap_or(0);
        let height = u32::try_from(i64::from(bottom) - i64::from(top) + 1).unwrap_or(0);
        let mut pixels = GrayImage::new(width, height);
        for polygon in polygons.iter().filter(|p| !p.is_empty()) {
            let outline: Vec<Point<i32>> = polygon
                .iter()
                .map(|p| Point::new(p[0] - left, p[1] - top))
                .collect();
            match outline.as_slice() {
                // A point or a segment: its pixels, which a fill would leave out.
                [first, .., last] if outline.len() < 3 => draw_line_segment_mut(
                    &mut pixels,
                    (first.x as f32, first.y as f32),
                    (last.x as f32, last.y as f32),
                    Luma([1]),
                ),
                [only] => pixels.put_pixel(only.x as u32, only.y as u32, Luma([1])),
                _ => draw_polygon_mut(&mut pixels, &outline, Luma([1])),
            }
        }
        let area = pixels.pixels().filter(|p| p.0[0] != 0).count() as u64;
        Raster {
            left: i64::from(left),
            top: i64::from(top),
            pixels,
            area,
        }
    }

    fn contains(&self, x: i64, y: i64) -> bool {
        let (Ok(px), Ok(py)) = (u32::try_from(x - self.left), u32::try_from(y - self.top)) else {
            return false;
        };
        self.pixels
            .get_pixel_checked(px, py)
            .is_some_and(|p| p.0[0] != 0)
    }

    /// Pixels in both.
    fn intersection(&self, other: &Raster) -> u64 {
        let right = |r: &Raster| r.left + i64::from(r.pixels.width());
        let bottom = |r: &Raster| r.top + i64::from(r.pixels.height());
        let (x0, x1) = (self.left.max(other.left), right(self).min(right(other)));
        let (y0, y1) = (self.top.max(other.top), bottom(self).min(bottom(other)));
        let mut both = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                if self.contains(x, y) && other.contains(x, y) {
                    both += 1;
                }
            }
        }
        both
    }

    /// Intersection over union; 0 when both are empty.
    fn iou(&self, other: &Raster) -> f64 {
        let both = self.intersection(other);
        let union = self.area + other.area - both;
        if union == 0 {
            0.0
        } else {
            both as f64 / union as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_iou(a: &Item, b: &Item) -> f64 {
        Raster::of(&a.polygons).iou(&Raster::of(&b.polygons))
    }

    /// A `w`×`h`-pixel rectangle whose top-left pixel is (`x`, `y`).
    fn rect(x: i32, y: i32, w: i32, h: i32) -> Vec<[i32; 2]> {
        vec![
            [x, y],
            [x + w - 1, y],
            [x + w - 1, y + h - 1],
            [x, y + h - 1],
        ]
    }

    fn item(class: &str, score: f64, polygons: Vec<Vec<[i32; 2]>>) -> Item {
        let xs = polygons.iter().flatten().map(|p| f64::from(p[0]));
        let ys = polygons.iter().flatten().map(|p| f64::from(p[1]));
        let (x0, x1) = (xs.clone().fold(f64::MAX, f64::min), xs.fold(0.0, f64::max));
        let (y0, y1) = (ys.clone().fold(f64::MAX, f64::min), ys.fold(0.0, f64::max));
        Item {
            id: 0,
            image_id: "x.jpg".into(),
            category_id: 1,
            category_name: class.into(),
            score,
            bbox: [x0, y0, x1 - x0, y1 - y0],
            area: 0,
            iscrowd: 0,
            polygons,
            size: [640, 480],
        }
    }

    #[test]
    fn rectangles_cover_their_pixels() {
        let r = Raster::of(&[rect(2, 3, 10, 4)]);
        assert_eq!(r.area, 40);
        assert!(r.contains(2, 3) && r.contains(11, 6));
        assert!(!r.contains(1, 3) && !r.contains(12, 6) && !r.contains(2, 7));
        // A triangle: its rows narrow to the apex.
        let t = Raster::of(&[vec![[0, 0], [4, 4], [0, 4]]]);
        assert!(t.contains(0, 0) && !t.contains(1, 0));
        assert!(t.contains(4, 4) && !t.contains(4, 3));
        assert_eq!(t.area, 1 + 2 + 3 + 4 + 5);
        // Nothing, and a degenerate outline, which still has its pixels.
        assert_eq!(Raster::of(&[]).area, 0);
        assert_eq!(Raster::of(&[vec![[5, 5], [9, 5]]]).area, 5);
        assert_eq!(Raster::of(&[vec![[5, 5]]]).area, 1);
    }

    #[test]
    fn several_parts_and_overlapping_parts_count_once() {
        let two = Raster::of(&[rect(0, 0, 4, 4), rect(10, 0, 4, 4)]);
        assert_eq!(two.area, 32);
        assert!(two.contains(3, 0) && !two.contains(4, 0) && two.contains(10, 0));
        let overlapping = Raster::of(&[rect(0, 0, 4, 4), rect(2, 0, 4, 4)]);
        assert_eq!(overlapping.area, 24);
    }

    #[test]
    fn iou_of_shifted_squares() {
        let a = item("x", 0.9, vec![rect(0, 0, 10, 10)]);
        assert_eq!(mask_iou(&a, &a), 1.0);
        let half = item("x", 0.9, vec![rect(5, 0, 10, 10)]);
        assert!((mask_iou(&a, &half) - 50.0 / 150.0).abs() < 1e-12);
        let far = item("x", 0.9, vec![rect(100, 100, 10, 10)]);
        assert_eq!(mask_iou(&a, &far), 0.0);
        let inside = item("x", 0.9, vec![rect(0, 0, 10, 6)]);
        assert!((mask_iou(&a, &inside) - 0.6).abs() < 1e-12);
        let empty = item("x", 0.9, vec![]);
        assert_eq!(mask_iou(&empty, &empty), 0.0);
    }

    #[test]
    fn the_same_answer_matches_every_item() {
        let items = vec![
            item("orange", 0.9, vec![rect(0, 0, 50, 40)]),
            item("orange", 0.8, vec![rect(60, 0, 30, 30)]),
            item(
                "apple",
                0.7,
                vec![rect(0, 100, 20, 20), rect(40, 100, 5, 5)],
            ),
        ];
        let classes = compare(&items, &items);
        assert_eq!(
            classes,
            BTreeMap::from([
                (
                    "apple".to_string(),
                    ClassCounts {
                        model: 1,
                        candidate: 1,
                        matched: 1
                    }
                ),
                (
                    "orange".to_string(),
                    ClassCounts {
                        model: 2,
                        candidate: 2,
                        matched: 2
                    }
                ),
            ])
        );
        assert!(compare(&[], &[]).is_empty());
    }

    #[test]
    fn matches_need_the_same_class_and_enough_overlap() {
        let model = vec![
            item("orange", 0.9, vec![rect(0, 0, 10, 10)]),
            item("pizza", 0.9, vec![rect(100, 0, 10, 10)]),
        ];
        let candidate = vec![
            // Same place, other class.
            item("apple", 0.9, vec![rect(0, 0, 10, 10)]),
            // Same class, IoU 1/3.
            item("pizza", 0.9, vec![rect(105, 0, 10, 10)]),
        ];
        let classes = compare(&model, &candidate);
        assert_eq!(classes.len(), 3);
        assert_eq!(classes["orange"].matched, 0);
        assert_eq!((classes["apple"].model, classes["apple"].candidate), (0, 1));
        assert_eq!(classes["pizza"].matched, 0);
        // IoU 0.6 is a match.
        let closer = vec![item("pizza", 0.5, vec![rect(100, 0, 10, 6)])];
        assert_eq!(compare(&model, &closer)["pizza"].matched, 1);
    }

    #[test]
    fn matching_is_one_to_one_and_greedy_by_score() {
        let model = vec![item("orange", 0.9, vec![rect(0, 0, 10, 10)])];
        let twice = vec![
            item("orange", 0.6, vec![rect(0, 0, 10, 10)]),
            item("orange", 0.7, vec![rect(0, 0, 10, 9)]),
        ];
        let c = compare(&model, &twice)["orange"];
        assert_eq!((c.model, c.candidate, c.matched), (1, 2, 1));

        // The best-scored candidate item chooses first, taking the model item it overlaps
        // most, even when the other candidate item could match nothing else.
        let model = vec![
            item("orange", 0.5, vec![rect(0, 0, 10, 10)]),
            item("orange", 0.5, vec![rect(0, 0, 10, 14)]),
        ];
        // IoUs: tall 100/130 with the first, 130/140 with the second; low 60/140 and
        // 100/140.
        let tall = |score| item("orange", score, vec![rect(0, 0, 10, 13)]);
        let low = |score| item("orange", score, vec![rect(0, 4, 10, 10)]);
        assert_eq!(compare(&model, &[tall(0.9), low(0.3)])["orange"].matched, 1);
        assert_eq!(compare(&model, &[tall(0.3), low(0.9)])["orange"].matched, 2);
    }
}
