//! The real YOLOv5s-seg model through the real ONNX Runtime on real photos.

use crate::common::{decode_fixture, repository_registry, session_options};
use foodseg_models::Registry;
use foodseg_pipeline::polygons::mask_polygons;
use foodseg_pipeline::postprocess::detections;
use foodseg_pipeline::{Item, Segmenter};
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
    assert!(items.iter().any(|i| i.category_name == "dining_table"));
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
