//! Run-length encoded binary masks in COCO's layout: column-major pixels, counts
//! alternating runs of 0s and 1s starting with 0s. Area, union, IoU and the compact
//! string form (LEB128-like, 6 bits per character) as COCO's mask API defines them.

/// A binary mask of `height` × `width` pixels as alternating run lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    pub height: u32,
    pub width: u32,
    pub counts: Vec<u32>,
}

impl Rle {
    /// A mask from run lengths, checked to cover exactly `height` × `width` pixels.
    pub fn new(height: u32, width: u32, counts: Vec<u32>) -> Result<Rle, String> {
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let pixels = u64::from(height) * u64::from(width);
        if total != pixels {
            return Err(format!(
                "RLE counts cover {total} pixels but the mask is {height}x{width} ({pixels} pixels)"
            ));
        }
        Ok(Rle {
            height,
            width,
            counts,
        })
    }

    /// Decodes COCO's compressed counts string.
    pub fn from_compressed(height: u32, width: u32, text: &str) -> Result<Rle, String> {
        let bytes = text.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let mut x: i64 = 0;
            let mut k = 0u32;
            loop {
                let Some(&byte) = bytes.get(p) else {
                    return Err("compressed RLE string ends in the middle of a count".into());
                };
                if !(48..=111).contains(&byte) {
                    return Err(format!(
                        "compressed RLE string has an invalid character {:?}",
                        byte as char
                    ));
                }
                if k >= 12 {
                    return Err("compressed RLE string has a count that is too long".into());
                }
                let c = i64::from(byte - 48);
                x |= (c & 0x1f) << (5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            if counts.len() > 2 {
                x += i64::from(counts[counts.len() - 2]);
            }
            let count = u32::try_from(x)
                .map_err(|_| format!("compressed RLE string decodes to an invalid count {x}"))?;
            counts.push(count);
        }
        Rle::new(height, width, counts)
    }

    /// Encodes a mask given as column-major pixels (`pixels[x * height + y]`).
    pub fn from_pixels(height: u32, width: u32, pixels: &[bool]) -> Result<Rle, String> {
        let mut counts = Vec::new();
        let mut value = false;
        let mut run = 0u32;
        for &p in pixels {
            if p != value {
                counts.push(run);
                run = 0;
                value = p;
            }
            run += 1;
        }
        counts.push(run);
        Rle::new(height, width, counts)
    }

    /// COCO's compressed counts string.
    pub fn to_compressed(&self) -> String {
        let mut out = String::new();
        for (i, &count) in self.counts.iter().enumerate() {
            let mut x = i64::from(count);
            if i > 2 {
                x -= i64::from(self.counts[i - 2]);
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                out.push(char::from(c + 48));
                if !more {
                    break;
                }
            }
        }
        out
    }

    /// Number of foreground pixels.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| u64::from(c))
            .sum()
    }

    /// The union of masks of the same size (an empty mask for none).
    pub fn union(height: u32, width: u32, masks: &[Rle]) -> Rle {
        let mut acc = Rle {
            height,
            width,
            counts: vec![height * width],
        };
        for mask in masks {
            let mut counts: Vec<u32> = Vec::new();
            let mut value = false;
            let mut run = 0u32;
            walk(&acc, mask, |len, a, b| {
                let v = a || b;
                if v != value {
                    counts.push(run);
                    run = 0;
                    value = v;
                }
                run += len;
            });
            counts.push(run);
            acc = Rle {
                height,
                width,
                counts,
            };
        }
        acc
    }

    /// Overlap of a detection with a ground-truth mask: intersection over union, or over
    /// the detection's area when the ground truth is a crowd region.
    pub fn iou(detection: &Rle, truth: &Rle, crowd: bool) -> f64 {
        let mut inter = 0u64;
        let mut union = 0u64;
        walk(detection, truth, |len, a, b| {
            if a || b {
                union += u64::from(len);
            }
            if a && b {
                inter += u64::from(len);
            }
        });
        if inter == 0 {
            return 0.0;
        }
        if crowd {
            union = detection.area();
        }
        inter as f64 / union as f64
    }
}

/// Walks two masks of equal pixel count in step, calling `f(length, in_a, in_b)` for each
/// stretch where neither changes value.
fn walk(a: &Rle, b: &Rle, mut f: impl FnMut(u32, bool, bool)) {
    let (mut ia, mut ib) = (0usize, 0usize);
    let (mut ra, mut rb) = (0u32, 0u32);
    // Each index starts "before" its first run: value flips to false on the first load.
    let (mut va, mut vb) = (true, true);
    loop {
        while ra == 0 {
            let Some(&c) = a.counts.get(ia) else { return };
            ra = c;
            va = !va;
            ia += 1;
        }
        while rb == 0 {
            let Some(&c) = b.counts.get(ib) else { return };
            rb = c;
            vb = !vb;
            ib += 1;
        }
        let len = ra.min(rb);
        f(len, va, vb);
        ra -= len;
        rb -= len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(h: u32, w: u32, counts: &[u32]) -> Rle {
        Rle::new(h, w, counts.to_vec()).unwrap()
    }

    #[test]
    fn area_counts_the_ones() {
        assert_eq!(mask(2, 3, &[1, 2, 1, 2]).area(), 4);
        assert_eq!(mask(2, 3, &[0, 6]).area(), 6);
        assert_eq!(mask(2, 3, &[6]).area(), 0);
    }

    #[test]
    fn union_and_iou_follow_the_pixels() {
        let a = mask(1, 6, &[0, 3, 3]);
        let b = mask(1, 6, &[2, 3, 1]);
        assert_eq!(
            Rle::union(1, 6, &[a.clone(), b.clone()]).counts,
            vec![0, 5, 1]
        );
        assert!((Rle::iou(&a, &b, false) - 1.0 / 5.0).abs() < 1e-12);
        assert!((Rle::iou(&a, &b, true) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(Rle::iou(&a, &mask(1, 6, &[4, 2]), false), 0.0);
    }

    #[test]
    fn compressed_strings_decode() {
        // [0, 6] delta-free, then [3, 3] and so on: "06" is 0 then 6.
        assert_eq!(Rle::from_compressed(2, 3, "06").unwrap().counts, vec![0, 6]);
        assert!(Rle::from_compressed(2, 3, "0").is_err());
        assert!(Rle::from_compressed(2, 3, "0~").is_err());
    }

    #[test]
    fn compressed_strings_round_trip() {
        let pixels: Vec<bool> = (0..600).map(|i| (i * 7 % 13) < 5 || i > 500).collect();
        let rle = Rle::from_pixels(20, 30, &pixels).unwrap();
        let text = rle.to_compressed();
        assert_eq!(Rle::from_compressed(20, 30, &text).unwrap(), rle);
        assert_eq!(rle.area(), pixels.iter().filter(|&&p| p).count() as u64);
    }

    #[test]
    fn counts_must_cover_the_mask() {
        assert!(Rle::new(2, 3, vec![1, 2]).is_err());
    }
}
