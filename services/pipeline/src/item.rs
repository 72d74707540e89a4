//! The v1 result item (the contract MFR reads): one COCO-style object per detected
//! instance.

use foodseg_models::Model;
use serde::{Deserialize, Serialize};

use crate::polygons::{Polygon, scaled_mask_polygons};
use crate::postprocess::Detection;

/// One segmented instance, serialized exactly as the v1 contract's `response` items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Position in the response list.
    pub id: u64,
    /// The image URL path's file name.
    pub image_id: String,
    pub category_id: i64,
    pub category_name: String,
    pub score: f64,
    /// `[x, y, width, height]` in original-image pixels.
    pub bbox: [f64; 4],
    /// Mask area in original-image pixels.
    pub area: u64,
    pub iscrowd: u8,
    /// One `[[x, y], ...]` list per connected part, in original-image pixels.
    pub polygons: Vec<Polygon>,
    /// `[width, height]` of the original (upright) image.
    pub size: [u32; 2],
}

/// The last path segment of an image URL (`https://h/a/dc3fa181.jpeg?x=1` → `dc3fa181.jpeg`).
pub fn image_id_from_url(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut segments| segments.next_back())
        .filter(|s| !s.is_empty())
        .map_or_else(String::new, str::to_owned)
}

/// Items for detections (best first), skipping any whose mask yields no polygon.
pub fn build_items(
    model: &Model,
    detections: &[Detection],
    image_id: &str,
    size: [u32; 2],
    tolerance_px: f64,
) -> Vec<Item> {
    let mut items = Vec::with_capacity(detections.len());
    for detection in detections {
        let Some(category) = model.category(detection.class_index) else {
            continue;
        };
        let polygons = scaled_mask_polygons(
            &detection.mask,
            detection.mask_scale,
            tolerance_px,
            size[0],
            size[1],
        );
        if polygons.is_empty() {
            tracing::debug!(category = %category.category_name, "detection without a usable mask dropped");
            continue;
        }
        let [x1, y1, x2, y2] = detection.bbox;
        items.push(Item {
            id: items.len() as u64,
            image_id: image_id.to_owned(),
            category_id: category.category_id,
            category_name: category.category_name.clone(),
            score: round(f64::from(detection.score), 4),
            bbox: [
                round(f64::from(x1), 2),
                round(f64::from(y1), 2),
                round(f64::from(x2 - x1), 2),
                round(f64::from(y2 - y1), 2),
            ],
            area: detection.area(),
            iscrowd: 0,
            polygons,
            size,
        });
    }
    items
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_id_is_the_last_path_segment() {
        let url = url::Url::parse("https://cdn.example/a/b/dc3fa181.jpeg?sig=1").expect("url");
        assert_eq!(image_id_from_url(&url), "dc3fa181.jpeg");
        let url = url::Url::parse("https://cdn.example/").expect("url");
        assert_eq!(image_id_from_url(&url), "");
    }

    #[test]
    fn serializes_with_contract_field_names() {
        let item = Item {
            id: 0,
            image_id: "x.jpg".into(),
            category_id: 55,
            category_name: "orange".into(),
            score: 0.83,
            bbox: [1.0, 2.0, 3.0, 4.0],
            area: 10,
            iscrowd: 0,
            polygons: vec![vec![[0, 0], [2, 0], [2, 2]]],
            size: [512, 480],
        };
        let json = serde_json::to_value(&item).expect("json");
        let expected = serde_json::json!({
            "id": 0, "image_id": "x.jpg", "category_id": 55, "category_name": "orange",
            "score": 0.83, "bbox": [1.0, 2.0, 3.0, 4.0], "area": 10, "iscrowd": 0,
            "polygons": [[[0, 0], [2, 0], [2, 2]]], "size": [512, 480]
        });
        assert_eq!(json, expected);
    }
}
