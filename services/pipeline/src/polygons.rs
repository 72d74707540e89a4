//! Masks to polygons: outer contours (one per connected part), simplified with
//! Douglas–Peucker, in original-image pixel coordinates.

use image::GrayImage;
use imageproc::contours::{BorderType, find_contours};
use imageproc::geometry::approximate_polygon_dp;
use imageproc::point::Point;

use crate::mask::Mask;

/// A polygon as `[x, y]` pixel coordinates, not repeating its first point.
pub type Polygon = Vec<[i32; 2]>;

/// One polygon per connected part of `mask` (holes are not reported), simplified with
/// `tolerance` pixels and clamped into an `image_width`x`image_height` image. Parts
/// that simplify to fewer than 3 points are dropped.
pub fn mask_polygons(
    mask: &Mask,
    tolerance: f64,
    image_width: u32,
    image_height: u32,
) -> Vec<Polygon> {
    if mask.width == 0 || mask.height == 0 {
        return Vec::new();
    }
    // One pixel of background around the mask so parts touching its edge close properly.
    let (w, h) = (mask.width + 2, mask.height + 2);
    let mut padded = GrayImage::new(w, h);
    for (row, src) in mask.data.chunks_exact(mask.width as usize).enumerate() {
        let start = ((row + 1) * w as usize) + 1;
        let dst = &mut padded.as_mut()[start..start + mask.width as usize];
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = if s != 0 { 255 } else { 0 };
        }
    }

    let max_x = image_width.saturating_sub(1) as i32;
    let max_y = image_height.saturating_sub(1) as i32;
    let (ox, oy) = (mask.x as i32 - 1, mask.y as i32 - 1);
    find_contours::<i32>(&padded)
        .into_iter()
        .filter(|c| c.border_type == BorderType::Outer && c.points.len() >= 3)
        .filter_map(|contour| {
            let ring = if tolerance > 0.0 {
                simplify_ring(&contour.points, tolerance)
            } else {
                contour.points
            };
            let mut points: Polygon = ring
                .iter()
                .map(|p| [(p.x + ox).clamp(0, max_x), (p.y + oy).clamp(0, max_y)])
                .collect();
            points.dedup();
            if points.len() > 1 && points.first() == points.last() {
                points.pop();
            }
            (points.len() >= 3).then_some(points)
        })
        .collect()
}

/// Douglas–Peucker on a closed contour (`ring` does not repeat its first point). The
/// ring is cut at its first point and at the point farthest from it, and each half is
/// simplified as an open curve, so no half has coinciding ends. A ring lying within
/// `tolerance` of its first point collapses to that point.
fn simplify_ring(ring: &[Point<i32>], tolerance: f64) -> Vec<Point<i32>> {
    let start = ring[0];
    let squared_distance = |p: &Point<i32>| {
        let (dx, dy) = (i64::from(p.x - start.x), i64::from(p.y - start.y));
        dx * dx + dy * dy
    };
    // The last of equally far points, as a walk around the ring would find it.
    let Some((far, far_squared)) = ring
        .iter()
        .map(squared_distance)
        .enumerate()
        .max_by_key(|&(_, d)| d)
    else {
        return Vec::new();
    };
    if (far_squared as f64).sqrt() <= tolerance {
        return vec![start];
    }
    let mut back = ring[far..].to_vec();
    back.push(start);
    let mut simplified = approximate_polygon_dp(&ring[..=far], tolerance, false);
    simplified.pop(); // the farthest point starts the second half
    simplified.extend(approximate_polygon_dp(&back, tolerance, false));
    simplified.pop(); // the ring's first point again
    simplified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(x: u32, y: u32, width: u32, rows: &[&str]) -> Mask {
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        Mask {
            x,
            y,
            width,
            height: rows.len() as u32,
            data,
        }
    }

    #[test]
    fn one_polygon_per_part_in_image_coordinates() {
        let m = mask(10, 20, 8, &["###.....", "###...##", "###...##", "........"]);
        let mut polygons = mask_polygons(&m, 0.0, 100, 100);
        polygons.sort();
        assert_eq!(polygons.len(), 2, "{polygons:?}");
        let square = &polygons[0];
        assert!(
            square.contains(&[10, 20]) && square.contains(&[12, 22]),
            "{square:?}"
        );
        let small = &polygons[1];
        assert!(
            small.contains(&[16, 21]) && small.contains(&[17, 22]),
            "{small:?}"
        );
    }

    #[test]
    fn holes_are_not_polygons_and_slivers_are_dropped() {
        let m = mask(
            0,
            0,
            5,
            &["#####", "#...#", "#...#", "#####", ".....", "#...."],
        );
        let polygons = mask_polygons(&m, 1.0, 5, 6);
        assert_eq!(polygons.len(), 1, "{polygons:?}");
        assert_eq!(polygons[0].len(), 4, "{polygons:?}");
    }

    #[test]
    fn simplification_keeps_corners_and_one_pixel_spikes() {
        let m = mask(
            0,
            0,
            9,
            &[
                "...######",
                "...######",
                "...######",
                "#########",
                "...######",
                "...######",
            ],
        );
        let polygons = mask_polygons(&m, 1.0, 9, 6);
        assert_eq!(polygons.len(), 1, "{polygons:?}");
        let polygon = &polygons[0];
        for corner in [[3, 0], [8, 0], [8, 5], [3, 5], [0, 3]] {
            assert!(polygon.contains(&corner), "{corner:?} in {polygon:?}");
        }
        assert!(polygon.len() <= 9, "{polygon:?}");
    }

    #[test]
    fn parts_within_the_tolerance_of_a_point_are_dropped() {
        let m = mask(0, 0, 3, &["##.", "##.", "..."]);
        assert!(mask_polygons(&m, 2.0, 3, 3).is_empty());
        assert_eq!(mask_polygons(&m, 0.5, 3, 3).len(), 1);
    }
}
