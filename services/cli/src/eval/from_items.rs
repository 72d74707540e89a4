//! Job items as COCO detections: categories looked up by name in the annotation file,
//! boxes and scores as they are, polygons flattened to `[x0, y0, x1, y1, …]`.

use std::collections::BTreeMap;

use super::dataset::{Dataset, Detection, Image, Segmentation};
use crate::document::Item;

/// Detections, the items left out because the annotation file has no category of their
/// name (counted per name), and the images whose items were computed on another size
/// than the annotation file gives (their coordinates cannot line up).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Converted {
    pub detections: Vec<Detection>,
    pub unknown: BTreeMap<String, usize>,
    pub other_size: Vec<String>,
}

/// Converts the items found on `image`, adding to `into`.
pub fn add_items(dataset: &Dataset, image: &Image, items: &[Item], into: &mut Converted) {
    if items.iter().any(|i| i.size != [image.width, image.height]) {
        into.other_size.push(image.file_name.clone());
    }
    for item in items {
        let Some(category) = dataset
            .categories
            .iter()
            .find(|c| c.name == item.category_name)
        else {
            *into.unknown.entry(item.category_name.clone()).or_default() += 1;
            continue;
        };
        let polygons: Vec<Vec<f64>> = item
            .polygons
            .iter()
            .filter(|p| p.len() >= 3)
            .map(|p| p.iter().flat_map(|&[x, y]| [x, y]).collect())
            .collect();
        into.detections.push(Detection {
            image_id: image.id,
            category_id: category.id,
            bbox: item.bbox,
            score: item.score,
            segmentation: (!polygons.is_empty()).then_some(Segmentation::Polygons(polygons)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::dataset::Category;

    fn item(name: &str) -> Item {
        Item {
            id: 0,
            image_id: String::new(),
            category_id: 55,
            category_name: name.into(),
            score: 0.8,
            bbox: [1.0, 2.0, 3.0, 4.0],
            area: 12.0,
            iscrowd: 0,
            polygons: vec![vec![[1.0, 2.0], [4.0, 2.0], [4.0, 6.0]], vec![[0.0, 0.0]]],
            size: [10, 10],
        }
    }

    #[test]
    fn items_map_by_category_name_and_unknown_ones_are_counted() {
        let image = Image {
            id: 3,
            width: 10,
            height: 10,
            file_name: "a.jpg".into(),
        };
        let dataset = Dataset {
            images: vec![image.clone()],
            categories: vec![Category {
                id: 9,
                name: "orange".into(),
            }],
            annotations: vec![],
        };
        let mut out = Converted::default();
        add_items(
            &dataset,
            &image,
            &[item("orange"), item("cup"), item("cup")],
            &mut out,
        );
        assert_eq!(out.detections.len(), 1);
        let d = &out.detections[0];
        assert_eq!((d.image_id, d.category_id, d.score), (3, 9, 0.8));
        assert_eq!(
            d.segmentation,
            Some(Segmentation::Polygons(vec![vec![
                1.0, 2.0, 4.0, 2.0, 4.0, 6.0
            ]]))
        );
        assert_eq!(out.unknown.get("cup"), Some(&2));
        assert!(out.other_size.is_empty());
        let mut moved = item("orange");
        moved.size = [20, 10];
        add_items(&dataset, &image, &[moved], &mut out);
        assert_eq!(out.other_size, vec!["a.jpg".to_string()]);
    }
}
