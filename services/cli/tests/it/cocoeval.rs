//! The evaluator against pycocotools, the reference COCO evaluation: the same annotation
//! and results files go through both, and every summary number and per-category AP must
//! agree within 1e-4, for boxes and masks. pycocotools comes from PyPI into a virtual
//! environment prepared by `scripts/pycocotools-venv.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use foodseg_cli::eval::dataset::detections_from_json;
use foodseg_cli::eval::rle::Rle;
use foodseg_cli::eval::{Dataset, IouType, evaluate};
use serde_json::{Value, json};

const TOLERANCE: f64 = 1e-4;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

/// The python of the pycocotools environment, installing it when missing.
pub(crate) fn reference_python() -> anyhow::Result<PathBuf> {
    let out = Command::new("bash")
        .arg(scripts().join("pycocotools-venv.sh"))
        .output()
        .context("running scripts/pycocotools-venv.sh")?;
    if !out.status.success() {
        bail!(
            "pycocotools-venv.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// pycocotools' numbers (`scripts/cocoeval.py`) for an annotation and a results file.
pub(crate) fn reference_numbers(
    python: &Path,
    truth: &Path,
    detections: &Path,
) -> anyhow::Result<Value> {
    let out = Command::new(python)
        .arg(scripts().join("cocoeval.py"))
        .arg(truth)
        .arg(detections)
        .output()?;
    if !out.status.success() {
        bail!(
            "cocoeval.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// One evaluation scenario: an instances file and a results file.
struct Case {
    name: String,
    truth: Value,
    detections: Vec<Value>,
}

/// Runs both evaluations on `case` and lists every number that differs.
fn compare(python: &Path, case: &Case) -> anyhow::Result<Vec<String>> {
    let dir = std::env::temp_dir().join(format!(
        "foodseg-cocoeval-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let truth_text = serde_json::to_string(&case.truth)?;
    let dets_text = serde_json::to_string(&case.detections)?;
    std::fs::write(dir.join("gt.json"), &truth_text)?;
    std::fs::write(dir.join("dets.json"), &dets_text)?;
    let reference = reference_numbers(python, &dir.join("gt.json"), &dir.join("dets.json"))
        .with_context(|| case.name.clone())?;
    std::fs::remove_dir_all(&dir)?;

    let dataset = Dataset::from_json(&truth_text)?;
    let detections = detections_from_json(&dets_text, &dataset)?;
    let mut differences = Vec::new();
    for iou_type in [IouType::Bbox, IouType::Segm] {
        let ours = evaluate(&dataset, &detections, iou_type)?;
        let theirs = &reference[iou_type.name()];
        let mut check = |what: String, ours: f64, theirs: Option<f64>| match theirs {
            Some(t) if (ours - t).abs() <= TOLERANCE => {}
            _ => differences.push(format!(
                "{} {} {what}: ours {ours}, pycocotools {theirs:?}",
                case.name,
                iou_type.name()
            )),
        };
        for (name, value) in ours.stats.named() {
            check(name.to_string(), value, theirs[name].as_f64());
        }
        for c in &ours.per_category {
            check(
                format!("AP of category {}", c.id),
                c.ap,
                theirs["per_category"][c.id.to_string()].as_f64(),
            );
        }
        let categories = theirs["per_category"].as_object().map_or(0, |m| m.len());
        if categories != ours.per_category.len() {
            differences.push(format!(
                "{}: {} categories, pycocotools {categories}",
                case.name,
                ours.per_category.len()
            ));
        }
    }
    Ok(differences)
}

fn run_cases(cases: &[Case]) -> anyhow::Result<()> {
    let python = reference_python()?;
    let mut differences = Vec::new();
    for case in cases {
        differences.extend(compare(&python, case)?);
    }
    if !differences.is_empty() {
        bail!("evaluations differ:\n{}", differences.join("\n"));
    }
    Ok(())
}

// ----- building blocks -----

fn rect(x: f64, y: f64, w: f64, h: f64) -> Vec<f64> {
    vec![x, y, x + w, y, x + w, y + h, x, y + h]
}

fn poly_bbox(polygons: &[Vec<f64>]) -> [f64; 4] {
    let xs = polygons.iter().flat_map(|p| p.iter().step_by(2).copied());
    let ys = polygons
        .iter()
        .flat_map(|p| p.iter().skip(1).step_by(2).copied());
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    [x0, y0, x1 - x0, y1 - y0]
}

fn images(sizes: &[(i64, u32, u32)]) -> Value {
    Value::Array(
        sizes
            .iter()
            .map(|&(id, w, h)| json!({"id": id, "width": w, "height": h, "file_name": format!("{id}.jpg")}))
            .collect(),
    )
}

fn categories(n: i64) -> Value {
    Value::Array(
        (1..=n)
            .map(|id| json!({"id": id, "name": format!("food{id}")}))
            .collect(),
    )
}

/// A ground-truth polygon object; its area is the box area scaled by `fill`.
fn truth_poly(id: i64, image: i64, cat: i64, polygons: Vec<Vec<f64>>, fill: f64) -> Value {
    let bbox = poly_bbox(&polygons);
    json!({"id": id, "image_id": image, "category_id": cat, "iscrowd": 0,
           "area": bbox[2] * bbox[3] * fill, "bbox": bbox, "segmentation": polygons})
}

/// A ground-truth mask object from pixels; `compressed` picks the counts form.
fn truth_mask(
    id: i64,
    image: i64,
    cat: i64,
    (w, h): (u32, u32),
    inside: impl Fn(u32, u32) -> bool,
    crowd: bool,
    compressed: bool,
) -> Value {
    let mut pixels = Vec::with_capacity((w * h) as usize);
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for x in 0..w {
        for y in 0..h {
            let p = inside(x, y);
            if p {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
            pixels.push(p);
        }
    }
    let rle = Rle::from_pixels(h, w, &pixels).expect("mask size");
    let counts = if compressed {
        json!(rle.to_compressed())
    } else {
        json!(rle.counts)
    };
    json!({"id": id, "image_id": image, "category_id": cat, "iscrowd": i32::from(crowd),
           "area": rle.area(), "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
           "segmentation": {"size": [h, w], "counts": counts}})
}

fn det_poly(image: i64, cat: i64, polygons: Vec<Vec<f64>>, score: f64) -> Value {
    let bbox = poly_bbox(&polygons);
    json!({"image_id": image, "category_id": cat, "bbox": bbox, "score": score,
           "segmentation": polygons})
}

fn det_box(image: i64, cat: i64, bbox: [f64; 4], score: f64) -> Value {
    json!({"image_id": image, "category_id": cat, "bbox": bbox, "score": score})
}

fn shift(polygon: &[f64], dx: f64, dy: f64) -> Vec<f64> {
    polygon
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 2 == 0 { v + dx } else { v + dy })
        .collect()
}

fn dataset(sizes: &[(i64, u32, u32)], cats: i64, annotations: Vec<Value>) -> Value {
    json!({"images": images(sizes), "categories": categories(cats), "annotations": annotations})
}

// ----- hand-written cases -----

fn perfect() -> Case {
    let a = rect(10.0, 10.0, 40.0, 30.0);
    let b = vec![60.0, 20.0, 90.0, 25.0, 80.0, 60.0, 55.0, 50.0];
    let c = rect(5.5, 40.25, 20.0, 15.5);
    Case {
        name: "perfect match".into(),
        truth: dataset(
            &[(1, 120, 80), (2, 100, 100)],
            2,
            vec![
                truth_poly(1, 1, 1, vec![a.clone()], 1.0),
                truth_poly(2, 1, 2, vec![b.clone()], 0.6),
                truth_poly(3, 2, 1, vec![c.clone()], 1.0),
            ],
        ),
        detections: vec![
            det_poly(1, 1, vec![a], 0.9),
            det_poly(1, 2, vec![b], 0.8),
            det_poly(2, 1, vec![c], 0.7),
        ],
    }
}

fn shifted() -> Case {
    let base = rect(20.0, 20.0, 40.0, 40.0);
    let mut truths = Vec::new();
    let mut dets = Vec::new();
    for (i, d) in [0.0, 2.0, 4.5, 8.0, 13.0, 21.0].into_iter().enumerate() {
        let id = i as i64 + 1;
        truths.push(truth_poly(id, id, 1, vec![base.clone()], 1.0));
        dets.push(det_poly(
            id,
            1,
            vec![shift(&base, d, d / 2.0)],
            0.95 - 0.1 * i as f64,
        ));
    }
    let sizes: Vec<(i64, u32, u32)> = (1..=6).map(|i| (i, 100, 100)).collect();
    Case {
        name: "shifted boxes".into(),
        truth: dataset(&sizes, 1, truths),
        detections: dets,
    }
}

fn missed_and_extra() -> Case {
    let objects = [
        rect(5.0, 5.0, 30.0, 30.0),
        rect(50.0, 5.0, 30.0, 40.0),
        rect(10.0, 60.0, 60.0, 30.0),
    ];
    let truths = objects
        .iter()
        .enumerate()
        .map(|(i, p)| truth_poly(i as i64 + 1, 1, 1, vec![p.clone()], 1.0))
        .collect();
    Case {
        name: "missed and extra detections".into(),
        truth: dataset(&[(1, 100, 100)], 1, truths),
        detections: vec![
            det_poly(1, 1, vec![rect(60.0, 50.0, 20.0, 20.0)], 0.99),
            det_poly(1, 1, vec![shift(&objects[0], 1.0, 0.0)], 0.9),
            det_poly(1, 1, vec![rect(0.0, 0.0, 10.0, 10.0)], 0.8),
            det_poly(1, 1, vec![shift(&objects[1], 0.0, 3.0)], 0.6),
            det_box(1, 1, [52.0, 6.0, 30.0, 40.0], 0.6),
        ],
    }
}

fn crowd() -> Case {
    let size = (160, 120);
    Case {
        name: "crowd regions".into(),
        truth: dataset(
            &[(1, 160, 120)],
            1,
            vec![
                truth_mask(
                    1,
                    1,
                    1,
                    size,
                    |x, y| (20..90).contains(&x) && (10..70).contains(&y),
                    true,
                    false,
                ),
                truth_poly(2, 1, 1, vec![rect(100.0, 60.0, 40.0, 40.0)], 1.0),
                truth_poly(3, 1, 1, vec![rect(30.0, 30.0, 20.0, 20.0)], 1.0),
            ],
        ),
        detections: vec![
            det_poly(1, 1, vec![rect(25.0, 15.0, 20.0, 20.0)], 0.95),
            det_poly(1, 1, vec![rect(30.0, 30.0, 20.0, 20.0)], 0.9),
            det_poly(1, 1, vec![rect(60.0, 40.0, 25.0, 25.0)], 0.85),
            det_poly(1, 1, vec![rect(101.0, 61.0, 40.0, 39.0)], 0.5),
            det_poly(1, 1, vec![rect(80.0, 60.0, 30.0, 30.0)], 0.4),
        ],
    }
}

fn areas() -> Case {
    let small = rect(10.0, 10.0, 12.0, 10.0);
    let medium = rect(40.0, 10.0, 50.0, 40.0);
    let large = rect(100.0, 100.0, 150.0, 120.0);
    let tiny = rect(200.0, 20.0, 20.0, 20.0);
    Case {
        name: "small, medium and large areas".into(),
        truth: dataset(
            &[(1, 300, 260)],
            1,
            vec![
                truth_poly(1, 1, 1, vec![small.clone()], 1.0),
                truth_poly(2, 1, 1, vec![medium.clone()], 1.0),
                truth_poly(3, 1, 1, vec![large.clone()], 1.0),
                truth_poly(4, 1, 1, vec![tiny.clone()], 1.0),
            ],
        ),
        detections: vec![
            det_poly(1, 1, vec![shift(&small, 1.0, 1.0)], 0.6),
            det_poly(1, 1, vec![shift(&medium, 3.0, 0.0)], 0.9),
            det_poly(1, 1, vec![shift(&large, 10.0, 12.0)], 0.7),
            det_poly(1, 1, vec![rect(150.0, 20.0, 40.0, 35.0)], 0.8),
            det_poly(1, 1, vec![rect(5.0, 200.0, 6.0, 6.0)], 0.75),
            det_poly(1, 1, vec![shift(&tiny, 12.0, 0.0)], 0.65),
        ],
    }
}

fn rle_truth() -> Case {
    let size = (90, 70);
    let disc = |cx: f64, cy: f64, r: f64| {
        move |x: u32, y: u32| (f64::from(x) - cx).powi(2) + (f64::from(y) - cy).powi(2) <= r * r
    };
    Case {
        name: "polygon and RLE ground truth".into(),
        truth: dataset(
            &[(1, 90, 70), (2, 90, 70)],
            2,
            vec![
                truth_mask(1, 1, 1, size, disc(30.0, 30.0, 15.0), false, true),
                truth_mask(2, 1, 2, size, disc(65.0, 45.0, 12.0), false, false),
                truth_poly(
                    3,
                    2,
                    1,
                    vec![
                        rect(5.0, 5.0, 20.0, 20.0),
                        vec![40.0, 40.0, 70.0, 42.0, 55.0, 65.0],
                    ],
                    0.8,
                ),
                truth_mask(
                    4,
                    2,
                    2,
                    size,
                    |x, y| (x / 7 + y / 9) % 3 == 0 && x > 40,
                    false,
                    true,
                ),
            ],
        ),
        detections: vec![
            det_poly(
                1,
                1,
                vec![vec![15.0, 30.0, 30.0, 15.0, 45.0, 30.0, 30.0, 45.0]],
                0.9,
            ),
            det_poly(1, 1, vec![rect(16.0, 16.0, 28.0, 28.0)], 0.8),
            det_poly(1, 2, vec![rect(53.5, 33.5, 24.0, 24.0)], 0.7),
            det_poly(2, 1, vec![rect(5.0, 5.0, 20.0, 20.0)], 0.95),
            det_poly(2, 1, vec![vec![40.0, 40.0, 70.0, 42.0, 55.0, 65.0]], 0.6),
            det_poly(2, 2, vec![rect(41.0, 0.0, 49.0, 70.0)], 0.5),
        ],
    }
}

fn category_without_truth() -> Case {
    let a = rect(10.0, 10.0, 30.0, 30.0);
    Case {
        name: "a category with no ground truth".into(),
        truth: dataset(
            &[(1, 80, 80)],
            3,
            vec![truth_poly(1, 1, 1, vec![a.clone()], 1.0)],
        ),
        detections: vec![
            det_poly(1, 1, vec![a.clone()], 0.9),
            det_poly(1, 2, vec![shift(&a, 5.0, 5.0)], 0.8),
            det_poly(1, 7, vec![a], 0.99),
        ],
    }
}

fn many_detections() -> Case {
    let truths = (0..12)
        .map(|i| {
            let (x, y) = (f64::from(i % 4) * 50.0, f64::from(i / 4) * 50.0);
            truth_poly(
                i64::from(i) + 1,
                1,
                1,
                vec![rect(x + 5.0, y + 5.0, 40.0, 40.0)],
                1.0,
            )
        })
        .collect();
    let detections = (0..130)
        .map(|i| {
            let (x, y) = (f64::from(i % 4) * 50.0, f64::from((i / 4) % 3) * 50.0);
            let jitter = f64::from(i % 7);
            let score = f64::from((i * 37) % 100) / 100.0;
            det_poly(
                1,
                1,
                vec![rect(x + 3.0 + jitter, y + 6.0, 40.0, 38.0)],
                score,
            )
        })
        .collect();
    Case {
        name: "more than 100 detections".into(),
        truth: dataset(&[(1, 200, 150)], 1, truths),
        detections,
    }
}

#[test]
fn agrees_with_pycocotools_on_handwritten_cases() -> anyhow::Result<()> {
    run_cases(&[
        perfect(),
        shifted(),
        missed_and_extra(),
        crowd(),
        areas(),
        rle_truth(),
        category_without_truth(),
        many_detections(),
    ])
}

// ----- seeded random cases -----

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A star-shaped polygon around (cx, cy) with radii up to `r`.
fn blob(rng: &mut Rng, cx: f64, cy: f64, r: f64) -> Vec<f64> {
    let n = 3 + rng.below(8);
    (0..n)
        .flat_map(|i| {
            let angle = std::f64::consts::TAU * i as f64 / n as f64;
            let radius = r * rng.range(0.5, 1.0);
            [cx + radius * angle.cos(), cy + radius * angle.sin()]
        })
        .collect()
}

fn random_case(seed: u64) -> Case {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let n_images = 1 + rng.below(4) as i64;
    let n_cats = 1 + rng.below(3) as i64;
    let mut sizes = Vec::new();
    let mut truths = Vec::new();
    let mut dets = Vec::new();
    let mut next_id = 1;
    for image in 1..=n_images {
        let (w, h) = (60 + rng.below(240) as u32, 60 + rng.below(200) as u32);
        sizes.push((image, w, h));
        for _ in 0..rng.below(8) {
            let cat = 1 + rng.below(n_cats as u64) as i64;
            let r = rng.range(3.0, f64::from(w.min(h)) / 2.0);
            let (cx, cy) = (rng.range(0.0, f64::from(w)), rng.range(0.0, f64::from(h)));
            let kind = rng.below(10);
            let polygon = blob(&mut rng, cx, cy, r);
            if kind < 7 {
                truths.push(truth_poly(
                    next_id,
                    image,
                    cat,
                    vec![polygon.clone()],
                    rng.range(0.4, 1.0),
                ));
            } else {
                let crowd = kind == 9;
                truths.push(truth_mask(
                    next_id,
                    image,
                    cat,
                    (w, h),
                    |x, y| (f64::from(x) - cx).powi(2) + (f64::from(y) - cy).powi(2) <= r * r,
                    crowd,
                    kind.is_multiple_of(2),
                ));
            }
            next_id += 1;
            // Detections of this object: none, one or a few, more or less off.
            for _ in 0..rng.below(4) {
                let off = rng.range(0.0, r * 0.6);
                let moved = shift(&polygon, rng.range(-off, off), rng.range(-off, off));
                let score = (rng.range(0.05, 1.0) * 20.0).round() / 20.0;
                let det_cat = if rng.below(8) == 0 {
                    1 + rng.below(n_cats as u64 + 1) as i64
                } else {
                    cat
                };
                if rng.below(6) == 0 {
                    dets.push(det_box(
                        image,
                        det_cat,
                        poly_bbox(std::slice::from_ref(&moved)),
                        score,
                    ));
                } else {
                    dets.push(det_poly(image, det_cat, vec![moved], score));
                }
            }
        }
        // False positives.
        for _ in 0..rng.below(5) {
            let r = rng.range(2.0, 40.0);
            let (cx, cy) = (rng.range(0.0, f64::from(w)), rng.range(0.0, f64::from(h)));
            let polygon = blob(&mut rng, cx, cy, r);
            let cat = 1 + rng.below(n_cats as u64) as i64;
            dets.push(det_poly(
                image,
                cat,
                vec![polygon],
                (rng.range(0.0, 1.0) * 100.0).round() / 100.0,
            ));
        }
    }
    if dets.is_empty() {
        dets.push(det_box(1, 1, [0.0, 0.0, 10.0, 10.0], 0.5));
    }
    Case {
        name: format!("random case {seed}"),
        truth: dataset(&sizes, n_cats, truths),
        detections: dets,
    }
}

#[test]
fn agrees_with_pycocotools_on_random_cases() -> anyhow::Result<()> {
    let cases: Vec<Case> = (1..=16).map(random_case).collect();
    run_cases(&cases)
}
