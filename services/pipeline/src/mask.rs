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
