//! Masks to polygons: outer contours (one per connected part), simplified with
//! Douglas–Peucker, in original-image pixel coordinates.

use image::GrayImage;
use imageproc::contours::{BorderType, find_contours};
use imageproc::geometry::approximate_polygon_dp;
use imageproc::point::Point;

use crate::mask::{Mask, grid_len};

/// A polygon as `[x, y]` pixel coordinates, not repeating its first point.
pub type Polygon = Vec<[i32; 2]>;

/// One polygon per connected part of `mask` (holes are not reported), simplified with
/// `tolerance` pixels and clamped into an `image_width`x`image_height` image. Parts
/// that simplify (or are clamped) to fewer than 3 distinct points are dropped; an empty
/// image has none.
pub fn mask_polygons(
    mask: &Mask,
    tolerance: f64,
    image_width: u32,
    image_height: u32,
) -> Vec<Polygon> {
    if mask.width == 0 || mask.height == 0 || image_width == 0 || image_height == 0 {
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
            // Clamping can fold a part reaching past the image onto its edge.
            let mut distinct = points.clone();
            distinct.sort_unstable();
            distinct.dedup();
            (distinct.len() >= 3).then_some(points)
        })
        .collect()
}

/// [`mask_polygons`] for a mask held at `scale` mask pixels per original pixel (see
/// [`crate::mask::mask_scale`]): traced and simplified at the mask's own resolution
/// (with at least one mask pixel of tolerance, which removes the grid's staircase),
/// then mapped pixel centre to pixel centre into the `image_width`x`image_height`
/// original.
pub fn scaled_mask_polygons(
    mask: &Mask,
    scale: f32,
    tolerance: f64,
    image_width: u32,
    image_height: u32,
) -> Vec<Polygon> {
    if scale >= 1.0 {
        return mask_polygons(mask, tolerance, image_width, image_height);
    }
    let (grid_w, grid_h) = (grid_len(image_width, scale), grid_len(image_height, scale));
    let s = f64::from(scale);
    let max_x = image_width.saturating_sub(1) as i32;
    let max_y = image_height.saturating_sub(1) as i32;
    let to_original =
        |v: i32, max: i32| (((f64::from(v) + 0.5) / s - 0.5).round() as i32).clamp(0, max);
    mask_polygons(mask, (tolerance * s).max(1.0), grid_w, grid_h)
        .into_iter()
        .map(|polygon| {
            polygon
                .into_iter()
                .map(|[x, y]| [to_original(x, max_x), to_original(y, max_y)])
                .collect()
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
    fn masks_at_a_reduced_scale_map_into_original_pixels() {
        // A 4x4 square at (2, 2) of a half-resolution grid over a 21x19 image.
        let m = mask(2, 2, 4, &["####", "####", "####", "####"]);
        let mut polygon = scaled_mask_polygons(&m, 0.5, 1.0, 21, 19).remove(0);
        polygon.sort_unstable();
        // Grid pixel centre g is original (g + 0.5) / 0.5 - 0.5.
        assert_eq!(polygon, [[5, 5], [5, 11], [11, 5], [11, 11]]);
        // Clamped into the image at its far edges; the identity at full scale.
        let edge = mask(8, 7, 3, &["###", "###", "###"]);
        for polygon in scaled_mask_polygons(&edge, 0.5, 1.0, 21, 19) {
            assert!(
                polygon.iter().all(|&[x, y]| x <= 20 && y <= 18),
                "{polygon:?}"
            );
        }
        assert_eq!(
            scaled_mask_polygons(&m, 1.0, 1.0, 21, 19),
            mask_polygons(&m, 1.0, 21, 19)
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
    fn parts_clamped_into_the_image_keep_three_distinct_points() {
        // Reaches past a 9x7 image: clamped onto its right edge, this part would be
        // [[8, 0], [8, 2], [8, 0], [8, 2]].
        let m = mask(62, 0, 4, &[".#..", "#.#.", "#..#"]);
        assert_eq!(mask_polygons(&m, 1.8, 9, 7), Vec::<Polygon>::new());
        let square = mask(0, 0, 3, &["###", "###", "###"]);
        assert!(mask_polygons(&square, 0.0, 0, 3).is_empty());
        assert!(mask_polygons(&square, 0.0, 3, 0).is_empty());
        assert_eq!(mask_polygons(&square, 0.0, 3, 3).len(), 1);
    }

    #[test]
    fn parts_within_the_tolerance_of_a_point_are_dropped() {
        let m = mask(0, 0, 3, &["##.", "##.", "..."]);
        assert!(mask_polygons(&m, 2.0, 3, 3).is_empty());
        assert_eq!(mask_polygons(&m, 0.5, 3, 3).len(), 1);
    }
}

#[cfg(test)]
mod properties {
    use std::collections::VecDeque;

    use super::*;
    use proptest::prelude::*;

    /// A mask placed in an image: random size up to 64x64 at a random offset (often
    /// against an image edge), filled with noise, blobs, lines, single pixels, a
    /// checkerboard or nothing at all.
    fn placed_mask() -> impl Strategy<Value = (Mask, u32, u32)> {
        (1u32..=96, 1u32..=96)
            .prop_flat_map(|(iw, ih)| {
                let (mw, mh) = (1..=iw.min(64), 1..=ih.min(64));
                (Just(iw), Just(ih), mw, mh)
            })
            .prop_flat_map(|(iw, ih, mw, mh)| {
                let at = |room: u32| prop_oneof![Just(0), Just(room), 0..=room];
                (
                    Just((iw, ih, mw, mh)),
                    at(iw - mw),
                    at(ih - mh),
                    pixels(mw, mh),
                )
            })
            .prop_map(|((iw, ih, mw, mh), x, y, data)| {
                let mask = Mask {
                    x,
                    y,
                    width: mw,
                    height: mh,
                    data,
                };
                (mask, iw, ih)
            })
    }

    /// `w`x`h` mask pixels (0 or 1) drawn from one of several patterns.
    fn pixels(w: u32, h: u32) -> impl Strategy<Value = Vec<u8>> {
        let (wi, hi) = (w as i32, h as i32);
        let n = (w * h) as usize;
        // Noise of some density, from a seed (a vector of thousands of generated
        // pixels would be slow to generate and to shrink).
        let noise = (1u64..20, any::<u64>()).prop_map(move |(twentieths, seed)| {
            let mut state = seed | 1;
            (0..n)
                .map(|_| {
                    // xorshift64
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    u8::from(state % 20 < twentieths)
                })
                .collect::<Vec<u8>>()
        });
        // Filled rectangles, discs and thick or thin lines, overlapping or not.
        let shape = (
            0..4u8,
            -2..wi + 2,
            -2..hi + 2,
            -2..wi + 2,
            -2..hi + 2,
            0..6i32,
        );
        let shapes = proptest::collection::vec(shape, 1..6).prop_map(move |shapes| {
            let mut data = vec![0u8; n];
            for (kind, x0, y0, x1, y1, r) in shapes {
                for y in 0..hi {
                    for x in 0..wi {
                        let inside = match kind {
                            0 => {
                                (x0.min(x1)..=x0.max(x1)).contains(&x)
                                    && (y0.min(y1)..=y0.max(y1)).contains(&y)
                            }
                            1 => (x - x0).pow(2) + (y - y0).pow(2) <= r * r,
                            // Distance to the segment's line within r/2, inside its box.
                            2 => {
                                let (dx, dy) = (x1 - x0, y1 - y0);
                                let cross = (dx * (y - y0) - dy * (x - x0)).abs();
                                let len = ((dx * dx + dy * dy) as f64).sqrt().max(1.0);
                                f64::from(cross) / len <= f64::from(r) / 2.0
                                    && (x0.min(x1)..=x0.max(x1)).contains(&x)
                                    && (y0.min(y1)..=y0.max(y1)).contains(&y)
                            }
                            _ => x == x0 && y == y0,
                        };
                        if inside {
                            data[(y * wi + x) as usize] = 1;
                        }
                    }
                }
            }
            data
        });
        prop_oneof![
            3 => noise,
            4 => shapes,
            1 => Just(vec![1u8; n]),
            1 => Just(vec![0u8; n]),
            1 => Just((0..n).map(|i| u8::from((i % w as usize + i / w as usize).is_multiple_of(2))).collect()),
        ]
    }

    /// Mask-local labels of the 8-connected parts and the size of each part.
    fn parts(mask: &Mask) -> (Vec<usize>, Vec<usize>) {
        let (w, h) = (mask.width as i64, mask.height as i64);
        let mut label = vec![usize::MAX; mask.data.len()];
        let mut sizes = Vec::new();
        for start in 0..mask.data.len() {
            if mask.data[start] == 0 || label[start] != usize::MAX {
                continue;
            }
            let id = sizes.len();
            let mut size = 0;
            let mut queue = VecDeque::from([start]);
            label[start] = id;
            while let Some(i) = queue.pop_front() {
                size += 1;
                let (x, y) = (i as i64 % w, i as i64 / w);
                for (dx, dy) in (-1..=1).flat_map(|dx| (-1..=1).map(move |dy| (dx, dy))) {
                    let (nx, ny) = (x + dx, y + dy);
                    if (0..w).contains(&nx) && (0..h).contains(&ny) {
                        let j = (ny * w + nx) as usize;
                        if mask.data[j] != 0 && label[j] == usize::MAX {
                            label[j] = id;
                            queue.push_back(j);
                        }
                    }
                }
            }
            sizes.push(size);
        }
        (label, sizes)
    }

    /// Mask-local pixels that are not walls and that no 4-connected path of non-wall
    /// pixels joins to the outside of the mask: what the walls enclose.
    fn enclosed(mask: &Mask, wall: &[bool]) -> Vec<bool> {
        let (w, h) = (mask.width as i64 + 2, mask.height as i64 + 2);
        let open = |x: i64, y: i64| {
            x == 0
                || y == 0
                || x == w - 1
                || y == h - 1
                || !wall[((y - 1) * (w - 2) + x - 1) as usize]
        };
        let mut outside = vec![false; (w * h) as usize];
        let mut queue = VecDeque::from([(0i64, 0i64)]);
        outside[0] = true;
        while let Some((x, y)) = queue.pop_front() {
            for (nx, ny) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] {
                if (0..w).contains(&nx) && (0..h).contains(&ny) && open(nx, ny) {
                    let i = (ny * w + nx) as usize;
                    if !outside[i] {
                        outside[i] = true;
                        queue.push_back((nx, ny));
                    }
                }
            }
        }
        (0..mask.data.len())
            .map(|i| {
                let (x, y) = (i as i64 % (w - 2) + 1, i as i64 / (w - 2) + 1);
                !wall[i] && !outside[(y * w + x) as usize]
            })
            .collect()
    }

    /// Marks in `row` (pixels `x0..x0 + row.len()` of row `y`) the pixels whose centre
    /// lies inside `polygon` (even-odd rule) or on one of its edges, in exact integer
    /// arithmetic: one pass over the edges per row.
    fn fill_row(polygon: &Polygon, y: i64, x0: i64, row: &mut [bool]) {
        let len = row.len() as i64;
        let mut mark = |x: i64| {
            if (x0..x0 + len).contains(&x) {
                row[(x - x0) as usize] = true;
            }
        };
        // Parity flips: an edge crossing the row at x_c puts every centre left of x_c
        // on the other side of it.
        let mut flips = vec![false; len as usize + 1];
        for (i, a) in polygon.iter().enumerate() {
            let b = polygon[(i + 1) % polygon.len()];
            let ([ax, ay], [bx, by]) = (a.map(i64::from), b.map(i64::from));
            if ay == by {
                if ay == y {
                    (ax.min(bx)..=ax.max(bx)).for_each(&mut mark);
                }
                continue;
            }
            if !(ay.min(by)..=ay.max(by)).contains(&y) {
                continue;
            }
            // The edge meets the row at x_c = ax + num / den.
            let (mut num, mut den) = ((y - ay) * (bx - ax), by - ay);
            if den < 0 {
                (num, den) = (-num, -den);
            }
            if num.rem_euclid(den) == 0 {
                mark(ax + num / den);
            }
            if (ay > y) != (by > y) {
                // Centres x < x_c, i.e. x < ceil(x_c).
                let ceil = ax + num.div_euclid(den) + i64::from(num.rem_euclid(den) != 0);
                flips[0] = !flips[0];
                let end = (ceil - x0).clamp(0, len) as usize;
                flips[end] = !flips[end];
            }
        }
        let mut inside = false;
        for (cell, flip) in row.iter_mut().zip(flips) {
            inside ^= flip;
            *cell |= inside;
        }
    }

    /// `[min x, min y, max x, max y]` of `polygon`.
    fn bounding_box(polygon: &Polygon) -> [i32; 4] {
        polygon.iter().fold(
            [i32::MAX, i32::MAX, i32::MIN, i32::MIN],
            |[x0, y0, x1, y1], &[x, y]| [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
        )
    }

    /// Checks that hold for every tolerance; returns the number of 8-connected parts.
    fn check_shape(
        polygons: &[Polygon],
        mask: &Mask,
        width: u32,
        height: u32,
    ) -> Result<usize, TestCaseError> {
        for polygon in polygons {
            let mut distinct = polygon.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert!(distinct.len() >= 3, "{polygon:?}");
            for &[x, y] in polygon {
                prop_assert!((0..width as i32).contains(&x), "x {x} in {polygon:?}");
                prop_assert!((0..height as i32).contains(&y), "y {y} in {polygon:?}");
                // Vertices are contour pixels, kept or dropped by simplification.
                prop_assert!(
                    mask.contains(x as u32, y as u32),
                    "[{x}, {y}] not in the mask"
                );
            }
        }
        let (_, sizes) = parts(mask);
        prop_assert!(polygons.len() <= sizes.len());
        Ok(sizes.len())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        /// With tolerance 0 a polygon is the outer border of one part, through the
        /// centres of its outermost pixels (vertices are pixel indices). So a pixel is
        /// covered exactly when its centre is inside a polygon or on its outline: every
        /// pixel of a part of 3 or more pixels, and whatever such parts enclose (holes
        /// are not reported, so holes and the islands in them are covered), and nothing
        /// else. There is no further tolerance; the outer half of each border pixel lies
        /// outside the polygon. Parts of 1 or 2 pixels have no area and yield no polygon.
        #[test]
        fn exact_polygons_cover_every_part_and_nothing_else((mask, width, height) in placed_mask()) {
            let polygons = mask_polygons(&mask, 0.0, width, height);
            check_shape(&polygons, &mask, width, height)?;
            let (label, sizes) = parts(&mask);
            let big = sizes.iter().filter(|&&s| s >= 3).count();
            prop_assert_eq!(polygons.len(), big, "one polygon per part of 3 pixels or more");
            let big: Vec<bool> = (0..mask.data.len())
                .map(|i| mask.data[i] != 0 && sizes[label[i]] >= 3)
                .collect();
            let enclosed = enclosed(&mask, &big);
            // The mask's box and one pixel around it, within the image, rasterised.
            let (x0, y0) = (mask.x.saturating_sub(1), mask.y.saturating_sub(1));
            let x1 = (mask.x + mask.width + 1).min(width);
            let y1 = (mask.y + mask.height + 1).min(height);
            let columns = (x1 - x0) as usize;
            let mut covered = vec![false; columns * (y1 - y0) as usize];
            for polygon in &polygons {
                let [_, by0, _, by1] = bounding_box(polygon);
                for y in (by0 as u32).max(y0)..=(by1 as u32).min(y1 - 1) {
                    let start = (y - y0) as usize * columns;
                    let row = &mut covered[start..start + columns];
                    fill_row(polygon, i64::from(y), i64::from(x0), row);
                }
            }
            for y in y0..y1 {
                for x in x0..x1 {
                    let local = (x >= mask.x && y >= mask.y && x < mask.x + mask.width && y < mask.y + mask.height)
                        .then(|| ((y - mask.y) * mask.width + (x - mask.x)) as usize);
                    let want = local.is_some_and(|i| big[i] || enclosed[i]);
                    let got = covered[(y - y0) as usize * columns + (x - x0) as usize];
                    prop_assert_eq!(got, want, "pixel ({}, {}) of {:?}", x, y, polygons);
                }
            }
        }

        /// Simplified polygons stay in the image, on the mask, with 3 distinct points
        /// or more, and never outnumber the exact ones.
        #[test]
        fn simplified_polygons_stay_on_the_mask(
            (mask, width, height) in placed_mask(),
            tolerance in prop_oneof![0.0..3.0f64, Just(0.5), Just(1.0), Just(1e9), Just(f64::NAN)],
        ) {
            let polygons = mask_polygons(&mask, tolerance, width, height);
            check_shape(&polygons, &mask, width, height)?;
            prop_assert!(polygons.len() <= mask_polygons(&mask, 0.0, width, height).len());
        }

        /// A mask reaching past a smaller image (or into an empty one) is clamped into it.
        #[test]
        fn points_are_clamped_into_the_image(
            (mask, _, _) in placed_mask(),
            width in 0u32..80,
            height in 0u32..80,
            tolerance in 0.0..2.0f64,
        ) {
            for polygon in mask_polygons(&mask, tolerance, width, height) {
                let mut distinct = polygon.clone();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert!(distinct.len() >= 3, "{:?}", polygon);
                for [x, y] in polygon {
                    prop_assert!(
                        (0..width as i32).contains(&x) && (0..height as i32).contains(&y),
                        "[{}, {}] outside {}x{}", x, y, width, height
                    );
                }
            }
        }
    }
}
