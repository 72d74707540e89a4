//! Instance masks in original-image pixels, stored only over the detection's box.

/// A binary mask covering `width`x`height` pixels whose top-left corner is at
/// (`x`, `y`) in the original image; pixels outside it are background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// Row-major, 1 for foreground and 0 for background.
    pub data: Vec<u8>,
}

impl Mask {
    /// Foreground pixel count.
    pub fn area(&self) -> u64 {
        self.data.iter().map(|&v| u64::from(v)).sum()
    }

    /// Whether the original-image pixel (`x`, `y`) is foreground.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        if x < self.x || y < self.y {
            return false;
        }
        let (dx, dy) = (x - self.x, y - self.y);
        if dx >= self.width || dy >= self.height {
            return false;
        }
        self.data[(dy * self.width + dx) as usize] != 0
    }
}

/// Mask pixels per original pixel for a model that saw the image at `letterbox_scale`
/// input pixels per original pixel: the original resolution when the image was
/// enlarged (or kept) for the model, else the model-input resolution. A mask finer than
/// the input would only interpolate the prototypes further at a large cost on phone
/// photos, so contours are traced at this resolution and mapped to original pixels.
pub fn mask_scale(letterbox_scale: f32) -> f32 {
    letterbox_scale.clamp(f32::MIN_POSITIVE, 1.0)
}

/// Mask pixels along an original side of `len` pixels at `scale`.
pub fn grid_len(len: u32, scale: f32) -> u32 {
    if scale >= 1.0 {
        len
    } else {
        ((len as f32 * scale).ceil() as u32).clamp(1, len.max(1))
    }
}

/// Pixel range `[start, end)` in a dimension of `size` pixels covered by `[lo, hi]`.
pub(crate) fn pixel_span(lo: f32, hi: f32, size: u32) -> (u32, u32) {
    let start = lo.floor().clamp(0.0, size as f32) as u32;
    let end = hi.ceil().clamp(0.0, size as f32) as u32;
    (start, end.max(start))
}

/// Bilinear sampling positions (index pair and weight of the second) for pixel centres
/// `start..end` of the original image mapped onto a grid of `len` cells, where original
/// coordinate `o` lands on grid coordinate `o * a + b`.
pub(crate) fn sample_positions(
    start: u32,
    end: u32,
    a: f32,
    b: f32,
    len: usize,
) -> Vec<(usize, usize, f32)> {
    let last = len.saturating_sub(1);
    (start..end)
        .map(|o| {
            let g = ((o as f32 + 0.5) * a + b).clamp(0.0, last as f32);
            let i0 = (g.floor() as usize).min(last);
            let i1 = (i0 + 1).min(last);
            (i0, i1, g - i0 as f32)
        })
        .collect()
}

/// Fills a mask over `[x0,x1)x[y0,y1)` by bilinearly sampling `grid` (row-major,
/// `grid_width` columns) at the given positions and comparing with `threshold`.
pub(crate) fn sample_mask(
    grid: &[f32],
    grid_width: usize,
    (x0, y0): (u32, u32),
    cols: &[(usize, usize, f32)],
    rows: &[(usize, usize, f32)],
    threshold: f32,
) -> Mask {
    let mut data = Vec::with_capacity(cols.len() * rows.len());
    for &(r0, r1, fy) in rows {
        let top = &grid[r0 * grid_width..(r0 + 1) * grid_width];
        let bottom = &grid[r1 * grid_width..(r1 + 1) * grid_width];
        data.extend(cols.iter().map(|&(c0, c1, fx)| {
            let t = top[c0] + (top[c1] - top[c0]) * fx;
            let b = bottom[c0] + (bottom[c1] - bottom[c0]) * fx;
            u8::from(t + (b - t) * fy >= threshold)
        }));
    }
    Mask {
        x: x0,
        y: y0,
        width: cols.len() as u32,
        height: rows.len() as u32,
        data,
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Floats of every kind: ordinary coordinates, the edges of a grid, huge, infinite, NaN.
    fn any_f32() -> impl Strategy<Value = f32> {
        prop_oneof![
            4 => -10.0..700.0f32,
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
            1 => Just(f32::MAX),
            1 => any::<f32>(),
        ]
    }

    fn mask() -> impl Strategy<Value = Mask> {
        (0u32..12, 0u32..12)
            .prop_flat_map(|(w, h)| {
                (
                    prop_oneof![0..100u32, Just(u32::MAX - w), any::<u32>()],
                    prop_oneof![0..100u32, Just(u32::MAX - h), any::<u32>()],
                    Just((w, h)),
                    proptest::collection::vec(0..=1u8, (w * h) as usize),
                )
            })
            .prop_map(|(x, y, (width, height), data)| Mask {
                x: x.min(u32::MAX - width),
                y: y.min(u32::MAX - height),
                width,
                height,
                data,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `contains` answers for any pixel of the image, in or out of the mask's box,
        /// and `area` counts what it contains.
        #[test]
        fn contains_reads_the_box_and_nothing_else(
            mask in mask(),
            probes in proptest::collection::vec((any::<u32>(), any::<u32>(), -2i64..14, -2i64..14), 0..32),
        ) {
            let (x0, y0) = (i64::from(mask.x), i64::from(mask.y));
            let mut area = 0;
            for dy in 0..i64::from(mask.height) {
                for dx in 0..i64::from(mask.width) {
                    let inside = mask.contains((x0 + dx) as u32, (y0 + dy) as u32);
                    prop_assert_eq!(inside, mask.data[(dy * i64::from(mask.width) + dx) as usize] != 0);
                    area += u64::from(inside);
                }
            }
            prop_assert_eq!(mask.area(), area);
            for (x, y, dx, dy) in probes {
                // Anywhere, and just around the box.
                for (x, y) in [(i64::from(x), i64::from(y)), (x0 + dx, y0 + dy)] {
                    let (Ok(px), Ok(py)) = (u32::try_from(x), u32::try_from(y)) else { continue };
                    let in_box = (x0..x0 + i64::from(mask.width)).contains(&x)
                        && (y0..y0 + i64::from(mask.height)).contains(&y);
                    if !in_box {
                        prop_assert!(!mask.contains(px, py));
                    }
                }
            }
        }

        /// A box's pixel range stays inside the image whatever the box (reversed, off the
        /// image, infinite, NaN) and covers every pixel a finite box touches.
        #[test]
        fn pixel_spans_stay_in_the_image(lo in any_f32(), hi in any_f32(), size in prop_oneof![0..2000u32, Just(u32::MAX)]) {
            let (start, end) = pixel_span(lo, hi, size);
            prop_assert!(start <= end && end <= size, "{start}..{end} of {size}");
            if lo.is_finite() && hi.is_finite() && lo >= 0.0 && hi <= size as f32 && lo <= hi && size < 1 << 24 {
                prop_assert_eq!(start, lo.floor() as u32);
                prop_assert_eq!(end, hi.ceil() as u32);
            }
        }

        /// Sampling positions are valid grid indices, neighbours or equal, with a weight
        /// in [0, 1], for any mapping; a mask sampled from them has one 0/1 value per
        /// pixel, foreground where all four neighbouring cells are over the threshold
        /// and background where all are under it.
        #[test]
        fn sampling_stays_on_the_grid(
            (grid_w, grid_h) in (1usize..9, 1usize..9),
            (x0, xn, y0, yn) in (0u32..1000, 0u32..20, 0u32..1000, 0u32..20),
            (ax, bx, ay, by) in (any_f32(), any_f32(), any_f32(), any_f32()),
            cells in proptest::collection::vec(-32i8..32, 81),
            threshold in -32i8..32,
        ) {
            let cols = sample_positions(x0, x0 + xn, ax, bx, grid_w);
            let rows = sample_positions(y0, y0 + yn, ay, by, grid_h);
            prop_assert_eq!(cols.len(), xn as usize);
            prop_assert_eq!(rows.len(), yn as usize);
            for (positions, len, finite) in [
                (&cols, grid_w, ax.is_finite() && bx.is_finite()),
                (&rows, grid_h, ay.is_finite() && by.is_finite()),
            ] {
                for &(i0, i1, weight) in positions {
                    prop_assert!(i0 < len && i1 < len && (i1 == i0 || i1 == i0 + 1));
                    if finite {
                        prop_assert!((0.0..=1.0).contains(&weight), "{weight}");
                    }
                }
            }
            // Grid values and threshold are eighths: a corner over or under the threshold
            // is so by 1/8 at least, far more than interpolation can round off.
            let grid: Vec<f32> = cells[..grid_w * grid_h].iter().map(|&c| f32::from(c) / 8.0).collect();
            let threshold = f32::from(threshold) / 8.0;
            let mask = sample_mask(&grid, grid_w, (x0, y0), &cols, &rows, threshold);
            prop_assert_eq!((mask.x, mask.y, mask.width, mask.height), (x0, y0, xn, yn));
            prop_assert_eq!(mask.data.len(), (xn * yn) as usize);
            for (i, &value) in mask.data.iter().enumerate() {
                prop_assert!(value <= 1);
                let ((r0, r1, fy), (c0, c1, fx)) = (rows[i / xn as usize], cols[i % xn as usize]);
                if fx.is_nan() || fy.is_nan() {
                    continue;
                }
                let corners = [(r0, c0), (r0, c1), (r1, c0), (r1, c1)].map(|(r, c)| grid[r * grid_w + c]);
                if corners.iter().all(|&v| v > threshold) {
                    prop_assert_eq!(value, 1, "{:?} over {}", corners, threshold);
                }
                if corners.iter().all(|&v| v < threshold) {
                    prop_assert_eq!(value, 0, "{:?} under {}", corners, threshold);
                }
            }
        }
    }
}
