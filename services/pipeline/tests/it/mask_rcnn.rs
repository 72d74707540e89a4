//! Mask R-CNN layout through the real ONNX Runtime, with tiny generated graphs whose
//! outputs are known (tests/fixtures/make_mask_rcnn.py).

use crate::common::{fixture_model, session_options};
use foodseg_pipeline::{DecodedImage, ImageType, Item, Segmenter};
use image::{DynamicImage, RgbImage};

/// Runs a fixture model on a blank `size`x`size` image (letterbox scale 64/size).
fn run(model_dir: &str, size: u32) -> Vec<Item> {
    let model = fixture_model(model_dir);
    let segmenter =
        Segmenter::load_models([&model], &session_options()).expect("load fixture model");
    let image = DecodedImage::from_dynamic(
        DynamicImage::ImageRgb8(RgbImage::new(size, size)),
        ImageType::Png,
    );
    segmenter
        .segment(&model, &image, "blank.png")
        .expect("segment")
        .items
}

fn bbox_corners(item: &Item) -> [f64; 4] {
    let [x, y, w, h] = item.bbox;
    [x, y, x + w, y + h]
}

#[test]
fn full_image_masks_map_back_through_the_letterbox() {
    // 128x128 image → input 64x64 at scale 0.5: original = input * 2.
    let items = run("mask-rcnn-full", 128);
    assert_eq!(
        items.len(),
        2,
        "the 0.05 score detection is below the threshold: {items:?}"
    );

    let apple = &items[0];
    assert_eq!(
        (apple.category_id, apple.category_name.as_str()),
        (101, "apple")
    );
    assert!((apple.score - 0.9).abs() < 1e-6);
    assert_eq!(bbox_corners(apple), [16.0, 16.0, 48.0, 80.0]);
    // Mask is the input rectangle [8,24)x[8,40), i.e. 32x64 original pixels.
    assert!(apple.area.abs_diff(32 * 64) <= 64, "area {}", apple.area);
    assert_eq!(apple.polygons.len(), 1);
    let xs: Vec<i32> = apple.polygons[0].iter().map(|p| p[0]).collect();
    let ys: Vec<i32> = apple.polygons[0].iter().map(|p| p[1]).collect();
    let (min_x, max_x) = (xs.iter().min().copied(), xs.iter().max().copied());
    let (min_y, max_y) = (ys.iter().min().copied(), ys.iter().max().copied());
    assert!(
        min_x.is_some_and(|v| (15..=17).contains(&v))
            && max_x.is_some_and(|v| (46..=48).contains(&v)),
        "{xs:?}"
    );
    assert!(
        min_y.is_some_and(|v| (15..=17).contains(&v))
            && max_y.is_some_and(|v| (78..=80).contains(&v)),
        "{ys:?}"
    );

    let cheese = &items[1];
    assert_eq!((cheese.category_id, cheese.id), (103, 1));
    assert_eq!(bbox_corners(cheese), [60.0, 60.0, 120.0, 100.0]);
    assert!(cheese.area.abs_diff(60 * 40) <= 100, "area {}", cheese.area);
    assert!(
        items
            .iter()
            .all(|i| i.size == [128, 128] && i.image_id == "blank.png")
    );
}

#[test]
fn per_box_masks_cover_their_box() {
    // 64x64 image: letterbox is the identity.
    let items = run("mask-rcnn-per-box", 64);
    assert_eq!(items.len(), 2, "{items:?}");
    let apple = &items[0];
    assert_eq!(bbox_corners(apple), [8.0, 8.0, 24.0, 40.0]);
    assert_eq!(apple.area, 16 * 32, "the whole box");
    // Detection 2's grid is set on its left half only: box [30,60)x[30,50) → 15x20 px.
    let cheese = &items[1];
    assert_eq!(cheese.category_name, "cheese");
    assert!(cheese.area.abs_diff(15 * 20) <= 20, "area {}", cheese.area);
    let max_x = cheese.polygons.iter().flatten().map(|p| p[0]).max();
    assert!(
        max_x.is_some_and(|x| (43..=46).contains(&x)),
        "{:?}",
        cheese.polygons
    );
}
