//! The real YOLOv5s-seg model through the real ONNX Runtime on real photos.

use crate::common::{decode_fixture, fixture_bytes, repository_registry, session_options};
use foodseg_models::Registry;
use foodseg_pipeline::polygons::mask_polygons;
use foodseg_pipeline::postprocess::{Detection, MaskResolution, detections, detections_at, iou};
use foodseg_pipeline::{DecodeLimits, DecodedImage, Item, Segmenter, decode, decode_to_cover};
use image::{GrayImage, Luma};
use imageproc::drawing::draw_polygon_mut;
use imageproc::point::Point;
use std::sync::OnceLock;

fn setup() -> &'static (Registry, Segmenter) {
    static SETUP: OnceLock<(Registry, Segmenter)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let registry = repository_registry();
        let model = registry.resolve(Some("124096")).expect("model 124096");
        let segmenter =
            Segmenter::load_models([model], &session_options()).expect("load yolov5s-seg");
        (registry, segmenter)
    })
}

fn segment(name: &str) -> Vec<Item> {
    let (registry, segmenter) = setup();
    let model = registry.resolve(Some("124096")).expect("model");
    let image = decode_fixture(name);
    let result = segmenter.segment(model, &image, name).expect("segment");
    for item in &result.items {
        eprintln!(
            "{name}: {} {:.3} {:?} area {}",
            item.category_name, item.score, item.bbox, item.area
        );
    }
    result.items
}

fn assert_near(item: &Item, corners: [f64; 4]) {
    let [x, y, w, h] = item.bbox;
    let got = [x, y, x + w, y + h];
    for (g, e) in got.iter().zip(corners) {
        assert!(
            (g - e).abs() <= 10.0,
            "bbox {got:?} not within 10 px of {corners:?}"
        );
    }
}

fn assert_inside(items: &[Item]) {
    for item in items {
        let [w, h] = item.size;
        assert!(!item.polygons.is_empty(), "{item:?}");
        for polygon in &item.polygons {
            assert!(polygon.len() >= 3);
            for &[x, y] in polygon {
                assert!(
                    x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h,
                    "point {x},{y} outside {w}x{h}"
                );
            }
        }
        assert_eq!(item.iscrowd, 0);
    }
}

#[test]
fn fruits_has_an_orange() {
    let items = segment("fruits.jpg");
    assert_inside(&items);
    assert!(
        items
            .iter()
            .all(|i| i.size == [512, 480] && i.image_id == "fruits.jpg")
    );
    let orange = items
        .iter()
        .find(|i| i.category_id == 55 && i.score >= 0.8)
        .expect("an orange with score >= 0.8");
    assert_eq!(orange.category_name, "orange");
    assert_near(orange, [317.0, 246.0, 511.0, 476.0]);
    assert!(orange.area > 20_000, "area {}", orange.area);
    let ids: Vec<u64> = items.iter().map(|i| i.id).collect();
    assert_eq!(ids, (0..items.len() as u64).collect::<Vec<_>>());
}

#[test]
fn coffee_has_a_cup() {
    let items = segment("coffee.png");
    assert_inside(&items);
    let cup = items
        .iter()
        .find(|i| i.category_id == 47 && i.score >= 0.7)
        .expect("a cup with score >= 0.7");
    assert_eq!(cup.category_name, "cup");
    assert_near(cup, [169.0, 20.0, 418.0, 278.0]);
    assert!(items.iter().any(|i| i.category_name == "dining table"));
}

/// Polygons, filled, cover the same pixels as the mask they came from.
#[test]
fn polygons_match_masks() {
    let (registry, segmenter) = setup();
    let model = registry.resolve(Some("124096")).expect("model");
    for name in ["fruits.jpg", "coffee.png"] {
        let image = decode_fixture(name);
        let input = segmenter.preprocess(model, &image).expect("preprocess");
        let outputs = segmenter.infer(model, &input).expect("inference");
        let found = detections(model, &outputs, &input.letterbox).expect("detections");
        assert!(!found.is_empty());
        for detection in &found {
            let polygons = mask_polygons(&detection.mask, 1.0, image.width(), image.height());
            let mut canvas = GrayImage::new(image.width(), image.height());
            for polygon in &polygons {
                let points: Vec<Point<i32>> =
                    polygon.iter().map(|&[x, y]| Point::new(x, y)).collect();
                draw_polygon_mut(&mut canvas, &points, Luma([255]));
            }
            // Polygons are outer borders only, so compare with the mask's holes filled.
            let filled = fill_holes(&detection.mask, image.width(), image.height());
            let (mut inter, mut union) = (0u64, 0u64);
            for (x, y, p) in canvas.enumerate_pixels() {
                let a = p.0[0] != 0;
                let b = filled.get_pixel(x, y).0[0] != 0;
                inter += u64::from(a && b);
                union += u64::from(a || b);
            }
            let iou = inter as f64 / union.max(1) as f64;
            eprintln!(
                "{name}: class {} area {} polygon IoU {iou:.3}",
                detection.class_index,
                detection.mask.area()
            );
            assert!(
                iou >= 0.9,
                "{name}: polygon/mask IoU {iou:.3} for class {}",
                detection.class_index
            );
            // The mask lies inside the detection box.
            let m = &detection.mask;
            assert!(
                m.x as f32 >= detection.bbox[0].floor()
                    && (m.x + m.width) as f32 <= detection.bbox[2].ceil()
            );
        }
    }
}

#[test]
fn segmenter_runs_from_spawn_blocking() {
    let (registry, segmenter) = setup();
    let model = registry.resolve(None).expect("default model").clone();
    let segmenter = segmenter.clone();
    let image = decode_fixture("coffee.png");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || segmenter.segment(&model, &image, "coffee.png")).await
    });
    let segmentation = result.expect("join").expect("segment");
    assert!(!segmentation.items.is_empty());
    // Every stage after decoding was timed (their values are never compared: tests do
    // not assert wall-clock times).
    assert!(!segmentation.timings.preprocess.is_zero());
    assert!(!segmentation.timings.inference.is_zero());
}

/// The mask as a full-image bitmap with every background region not connected to the
/// image border (a hole) set to foreground.
fn fill_holes(mask: &foodseg_pipeline::mask::Mask, width: u32, height: u32) -> GrayImage {
    let (w, h) = (width as i64 + 2, height as i64 + 2);
    let inside = |x: i64, y: i64| x >= 1 && y >= 1 && x <= width as i64 && y <= height as i64;
    let fg = |x: i64, y: i64| inside(x, y) && mask.contains((x - 1) as u32, (y - 1) as u32);
    let mut outside = vec![false; (w * h) as usize];
    let mut stack = vec![(0i64, 0i64)];
    while let Some((x, y)) = stack.pop() {
        if x < 0 || y < 0 || x >= w || y >= h || outside[(y * w + x) as usize] || fg(x, y) {
            continue;
        }
        outside[(y * w + x) as usize] = true;
        stack.extend([(x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)]);
    }
    GrayImage::from_fn(width, height, |x, y| {
        let (px, py) = (x as i64 + 1, y as i64 + 1);
        Luma([if outside[(py * w + px) as usize] {
            0
        } else {
            255
        }])
    })
}

/// A 4032x3024 JPEG (a phone photo's size) made from fruits.jpg.
fn large_jpeg() -> Vec<u8> {
    let small = image::load_from_memory(&fixture_bytes("fruits.jpg"))
        .expect("fixture")
        .crop_imm(0, 48, 512, 384)
        .to_rgb8();
    let large = image::imageops::resize(&small, 4032, 3024, image::imageops::FilterType::Triangle);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&large)
        .expect("encode");
    bytes
}

/// Foreground agreement of a mask at the model's resolution with one in original pixels,
/// over every original pixel either covers.
fn mask_iou(scaled: &Detection, original: &Detection) -> f64 {
    let s = scaled.mask_scale;
    let (a, b) = (&scaled.mask, &original.mask);
    let to_original = |v: u32| (v as f32 / s).floor() as u32;
    let x0 = b.x.min(to_original(a.x));
    let y0 = b.y.min(to_original(a.y));
    let x1 = (b.x + b.width).max(to_original(a.x + a.width) + 1);
    let y1 = (b.y + b.height).max(to_original(a.y + a.height) + 1);
    let (mut both, mut either) = (0u64, 0u64);
    for y in y0..y1 {
        let gy = ((y as f32 + 0.5) * s) as u32;
        for x in x0..x1 {
            let fast = a.contains(((x as f32 + 0.5) * s) as u32, gy);
            let full = b.contains(x, y);
            both += u64::from(fast && full);
            either += u64::from(fast || full);
        }
    }
    both as f64 / either.max(1) as f64
}

/// The fast path for a 12-megapixel photo (JPEG decoded at a reduced DCT scale, masks
/// traced at the model's resolution) agrees with the full-resolution path: every
/// confident detection is found with box IoU >= 0.95 and mask IoU >= 0.9, and items are
/// in original pixels.
#[test]
fn large_photo_fast_path_matches_full_resolution() {
    let (registry, segmenter) = setup();
    let model = registry.resolve(Some("124096")).expect("model");
    let bytes = large_jpeg();
    let fast_image = decode_to_cover(&bytes, &DecodeLimits::default(), 640).expect("fast decode");
    let full_image = decode(&bytes, &DecodeLimits::default()).expect("full decode");
    assert_eq!(fast_image.original, [4032, 3024]);
    assert_eq!(fast_image.image.dimensions(), (1008, 756), "1/4 DCT scale");
    assert_eq!(full_image.image.dimensions(), (4032, 3024));

    let run = |image: &DecodedImage, resolution| {
        let input = segmenter.preprocess(model, image).expect("preprocess");
        let outputs = segmenter.infer(model, &input).expect("infer");
        detections_at(model, &outputs, &input.letterbox, resolution).expect("postprocess")
    };
    let fast = run(&fast_image, MaskResolution::Model);
    let full = run(&full_image, MaskResolution::Original);
    assert!(fast.iter().all(|d| d.mask_scale < 0.2), "masks at 640/4032");
    assert!(full.iter().all(|d| d.mask_scale == 1.0));
    let confident: Vec<&Detection> = full.iter().filter(|d| d.score >= 0.5).collect();
    assert!(!confident.is_empty(), "the large orange is found");
    for reference in confident {
        let found = fast
            .iter()
            .filter(|d| d.class_index == reference.class_index)
            .max_by(|a, b| iou(&a.bbox, &reference.bbox).total_cmp(&iou(&b.bbox, &reference.bbox)))
            .expect("same class on the fast path");
        let box_iou = iou(&found.bbox, &reference.bbox);
        let mask_iou = mask_iou(found, reference);
        eprintln!(
            "class {}: box IoU {box_iou:.4}, mask IoU {mask_iou:.4}",
            reference.class_index
        );
        assert!(box_iou >= 0.95, "box IoU {box_iou}");
        assert!(mask_iou >= 0.9, "mask IoU {mask_iou}");
        let area = (found.area() as f64, reference.area() as f64);
        assert!((area.0 - area.1).abs() <= 0.05 * area.1, "areas {area:?}");
    }

    let items = segmenter
        .segment(model, &fast_image, "phone.jpg")
        .expect("segment")
        .items;
    assert_inside(&items);
    assert!(items.iter().all(|i| i.size == [4032, 3024]));
    let orange = items
        .iter()
        .find(|i| i.category_name == "orange" && i.score >= 0.5)
        .expect("the orange");
    let reach = orange.polygons[0].iter().map(|p| p[0]).max().unwrap_or(0);
    assert!(
        reach > 3000,
        "polygons in original pixels, reaching x={reach}"
    );
}

/// A batch gives each image the detections it gets alone, whatever else is in the
/// batch: images of one shape share the run, an image of another shape runs apart.
#[test]
fn a_batch_gives_each_image_its_own_detections() {
    let (registry, segmenter) = setup();
    let model = registry.resolve(Some("124096")).expect("model");
    let session = segmenter.session(model).expect("session");
    assert!(session.batches());
    let inputs: Vec<_> = ["fruits.jpg", "coffee.png", "fruits.jpg"]
        .into_iter()
        .map(|name| {
            segmenter
                .preprocess(model, &decode_fixture(name))
                .expect("preprocess")
        })
        .collect();
    assert_ne!(inputs[0].shape(), inputs[1].shape());
    let refs: Vec<_> = inputs.iter().collect();
    let batched = session.infer_batch(&refs).expect("batch run");
    assert_eq!(batched.len(), 3);
    for (input, outputs) in inputs.iter().zip(&batched) {
        let alone = segmenter.infer(model, input).expect("single run");
        let expected = detections(model, &alone, &input.letterbox).expect("postprocess");
        let got = detections(model, outputs, &input.letterbox).expect("postprocess");
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g.class_index, e.class_index);
            assert!(
                (g.score - e.score).abs() <= 1e-4,
                "{} vs {}",
                g.score,
                e.score
            );
            assert!(
                iou(&g.bbox, &e.bbox) >= 0.999,
                "{:?} vs {:?}",
                g.bbox,
                e.bbox
            );
            assert_eq!(g.mask, e.mask);
        }
    }
}
