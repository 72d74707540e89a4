//! Polygon and box rasterisation into masks, exactly as COCO's mask API does it: the
//! outline is traced on a grid five times finer than the pixels, the points where it
//! crosses pixel-column centres are kept, and the mask is read off those crossings.
//! The same pixels come out as in the reference tools, so areas and IoUs agree.

use super::rle::Rle;

const SCALE: f64 = 5.0;

/// The mask of a polygon given as flat `[x0, y0, x1, y1, …]` coordinates (a trailing odd
/// number is ignored) on an image of `height` × `width` pixels. Needs at least one point.
pub fn rasterize(flat: &[f64], height: u32, width: u32) -> Rle {
    let k = flat.len() / 2;
    let scaled = |v: f64| (SCALE * v + 0.5) as i64;
    let mut xs: Vec<i64> = (0..k).map(|j| scaled(flat[2 * j])).collect();
    let mut ys: Vec<i64> = (0..k).map(|j| scaled(flat[2 * j + 1])).collect();
    if let (Some(&x0), Some(&y0)) = (xs.first(), ys.first()) {
        xs.push(x0);
        ys.push(y0);
    }

    // Dense outline points on the fine grid.
    let mut u: Vec<i64> = Vec::new();
    let mut v: Vec<i64> = Vec::new();
    for j in 0..k {
        let (mut x_start, mut x_end, mut y_start, mut y_end) = (xs[j], xs[j + 1], ys[j], ys[j + 1]);
        let dx = (x_end - x_start).abs();
        let dy = (y_start - y_end).abs();
        let flip = (dx >= dy && x_start > x_end) || (dx < dy && y_start > y_end);
        if flip {
            std::mem::swap(&mut x_start, &mut x_end);
            std::mem::swap(&mut y_start, &mut y_end);
        }
        if dx >= dy {
            let slope = if dx == 0 {
                0.0
            } else {
                (y_end - y_start) as f64 / dx as f64
            };
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + x_start);
                v.push((y_start as f64 + slope * t as f64 + 0.5) as i64);
            }
        } else {
            let slope = (x_end - x_start) as f64 / dy as f64;
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + y_start);
                u.push((x_start as f64 + slope * t as f64 + 0.5) as i64);
            }
        }
    }

    // Crossings of pixel-column centres, back on the pixel grid.
    let h = i64::from(height);
    let w = f64::from(width);
    let mut starts: Vec<u64> = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = if u[j] < u[j - 1] { u[j] } else { u[j] - 1 } as f64;
        let xd = (xd + 0.5) / SCALE - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > w - 1.0 {
            continue;
        }
        let yd = v[j].min(v[j - 1]) as f64;
        let yd = ((yd + 0.5) / SCALE - 0.5).clamp(0.0, h as f64).ceil();
        // Column-major pixel index of the crossing.
        starts.push((xd as i64 * h + yd as i64) as u64);
    }
    starts.push(u64::from(height) * u64::from(width));
    starts.sort_unstable();

    // Run lengths between consecutive crossings; empty runs merge their neighbours.
    let mut previous = 0u64;
    let mut gaps: Vec<u64> = Vec::with_capacity(starts.len());
    for s in starts {
        gaps.push(s - previous);
        previous = s;
    }
    let mut counts: Vec<u32> = Vec::with_capacity(gaps.len());
    let mut iter = gaps.into_iter();
    if let Some(first) = iter.next() {
        counts.push(first as u32);
    }
    while let Some(gap) = iter.next() {
        if gap > 0 {
            counts.push(gap as u32);
        } else if let Some(next) = iter.next()
            && let Some(last) = counts.last_mut()
        {
            *last += next as u32;
        }
    }
    Rle {
        height,
        width,
        counts,
    }
}

/// The mask of a box `[x, y, width, height]`, traced as its four-corner polygon.
pub fn rasterize_box(bbox: [f64; 4], height: u32, width: u32) -> Rle {
    let [x, y, w, h] = bbox;
    let (xe, ye) = (x + w, y + h);
    rasterize(&[x, y, x, ye, xe, ye, xe, y], height, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(rle: &Rle) -> Vec<u8> {
        let mut out = Vec::new();
        let mut value = 0u8;
        for &c in &rle.counts {
            out.extend(std::iter::repeat_n(value, c as usize));
            value ^= 1;
        }
        out
    }

    #[test]
    fn a_square_covers_its_pixels() {
        // Corners on pixel boundaries: (1,1)-(3,3) covers pixels x,y in {1,2}.
        let rle = rasterize(&[1.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 3.0], 4, 4);
        assert_eq!(rle.area(), 4);
        let px = pixels(&rle);
        assert_eq!(px.len(), 16);
        for x in 0..4 {
            for y in 0..4 {
                let inside = (1..3).contains(&x) && (1..3).contains(&y);
                assert_eq!(px[x * 4 + y] == 1, inside, "pixel ({x},{y})");
            }
        }
    }

    #[test]
    fn a_box_outside_the_image_is_empty() {
        let rle = rasterize_box([10.0, 10.0, 5.0, 5.0], 4, 4);
        assert_eq!(rle.area(), 0);
        assert_eq!(rle.counts.iter().map(|&c| u64::from(c)).sum::<u64>(), 16);
    }
}
