//! COCO files as the evaluator reads them: the instances (ground-truth) file with its
//! images, categories and annotations, and the results file with detections.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::EvalError;
use super::polygon;
use super::rle::Rle;

/// One photo of the annotation file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: i64,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub file_name: String,
}

/// One category (class) of the annotation file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: i64,
    pub name: String,
}

/// The run counts of an RLE segmentation: a plain list or COCO's compressed string.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RleCounts {
    Uncompressed(Vec<u32>),
    Compressed(String),
}

/// Polygon coordinates beyond this many pixels from the origin are refused: they would
/// make rasterisation trace absurdly long outlines.
pub const MAX_COORDINATE: f64 = 1e5;

/// A region: polygons (flat `[x0, y0, x1, y1, …]` lists) or an RLE mask of `size`
/// `[height, width]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Segmentation {
    Polygons(Vec<Vec<f64>>),
    Rle { size: [u32; 2], counts: RleCounts },
}

/// A ground-truth object.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub id: i64,
    pub image_id: i64,
    pub category_id: i64,
    pub iscrowd: bool,
    pub area: f64,
    pub bbox: [f64; 4],
    pub segmentation: Option<Segmentation>,
}

/// A COCO instances file.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Vec<Image>,
    pub categories: Vec<Category>,
    pub annotations: Vec<Annotation>,
}

/// One detection of a COCO results file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub image_id: i64,
    pub category_id: i64,
    pub bbox: [f64; 4],
    pub score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
}

#[derive(Deserialize)]
struct RawDataset {
    images: Vec<Image>,
    #[serde(default)]
    categories: Vec<Category>,
    #[serde(default)]
    annotations: Vec<RawAnnotation>,
}

#[derive(Deserialize)]
struct RawAnnotation {
    id: i64,
    image_id: i64,
    category_id: i64,
    #[serde(default)]
    iscrowd: Value,
    area: f64,
    bbox: Vec<f64>,
    #[serde(default)]
    segmentation: Value,
}

#[derive(Deserialize)]
struct RawDetection {
    image_id: i64,
    category_id: i64,
    bbox: Vec<f64>,
    score: f64,
    #[serde(default)]
    segmentation: Value,
}

impl Dataset {
    /// Reads and checks an instances file.
    pub fn from_json(text: &str) -> Result<Dataset, EvalError> {
        let raw: RawDataset = serde_json::from_str(text).map_err(|source| EvalError::Json {
            what: "annotation file",
            source,
        })?;
        for image in &raw.images {
            let pixels = u64::from(image.width) * u64::from(image.height);
            if pixels == 0 || pixels > u64::from(u32::MAX) {
                return Err(EvalError::BadImageSize {
                    image_id: image.id,
                    width: image.width,
                    height: image.height,
                });
            }
        }
        let image_ids: HashSet<i64> = raw.images.iter().map(|i| i.id).collect();
        let mut annotations = Vec::with_capacity(raw.annotations.len());
        for a in raw.annotations {
            if !image_ids.contains(&a.image_id) {
                return Err(EvalError::UnknownAnnotationImage {
                    id: a.id,
                    image_id: a.image_id,
                });
            }
            if !a.area.is_finite() {
                return Err(EvalError::BadArea { id: a.id });
            }
            let bbox = parse_bbox(&a.bbox).ok_or_else(|| EvalError::BadBbox {
                what: "annotation",
                id: a.id,
                got: format!("{:?}", a.bbox),
            })?;
            let segmentation = parse_segmentation(&a.segmentation).map_err(|reason| {
                EvalError::BadSegmentation {
                    what: "annotation",
                    id: a.id,
                    reason,
                }
            })?;
            annotations.push(Annotation {
                id: a.id,
                image_id: a.image_id,
                category_id: a.category_id,
                iscrowd: truthy(&a.iscrowd),
                area: a.area,
                bbox,
                segmentation,
            });
        }
        Ok(Dataset {
            images: raw.images,
            categories: raw.categories,
            annotations,
        })
    }

    /// The images by id.
    pub fn images_by_id(&self) -> HashMap<i64, &Image> {
        self.images.iter().map(|i| (i.id, i)).collect()
    }
}

/// Reads and checks a results file (a JSON array of detections). Detections must refer
/// to images of `dataset`.
pub fn detections_from_json(text: &str, dataset: &Dataset) -> Result<Vec<Detection>, EvalError> {
    let raw: Vec<RawDetection> = serde_json::from_str(text).map_err(|source| EvalError::Json {
        what: "results file",
        source,
    })?;
    let mut out = Vec::with_capacity(raw.len());
    for (index, d) in raw.into_iter().enumerate() {
        let id = index as i64;
        let bbox = parse_bbox(&d.bbox).ok_or_else(|| EvalError::BadBbox {
            what: "detection",
            id,
            got: format!("{:?}", d.bbox),
        })?;
        if !d.score.is_finite() {
            return Err(EvalError::BadScore { index });
        }
        let segmentation =
            parse_segmentation(&d.segmentation).map_err(|reason| EvalError::BadSegmentation {
                what: "detection",
                id,
                reason,
            })?;
        out.push(Detection {
            image_id: d.image_id,
            category_id: d.category_id,
            bbox,
            score: d.score,
            segmentation,
        });
    }
    check_detection_images(&out, dataset)?;
    Ok(out)
}

/// Every detection must belong to an image of the annotation file.
pub fn check_detection_images(
    detections: &[Detection],
    dataset: &Dataset,
) -> Result<(), EvalError> {
    let images = dataset.images_by_id();
    for (index, d) in detections.iter().enumerate() {
        if !images.contains_key(&d.image_id) {
            return Err(EvalError::UnknownDetectionImage {
                index,
                image_id: d.image_id,
            });
        }
    }
    Ok(())
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|v| v != 0.0),
        _ => false,
    }
}

fn parse_bbox(values: &[f64]) -> Option<[f64; 4]> {
    let bbox: [f64; 4] = values.try_into().ok()?;
    bbox.iter().all(|v| v.is_finite()).then_some(bbox)
}

fn parse_segmentation(value: &Value) -> Result<Option<Segmentation>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Array(polygons) => {
            let mut out = Vec::with_capacity(polygons.len());
            for polygon in polygons {
                let Value::Array(coords) = polygon else {
                    return Err("segmentation polygons must be lists of numbers".into());
                };
                let coords: Option<Vec<f64>> = coords.iter().map(Value::as_f64).collect();
                match coords {
                    Some(c) if c.iter().all(|v| v.is_finite()) => out.push(c),
                    _ => return Err("segmentation polygons must be lists of numbers".into()),
                }
            }
            Ok(Some(Segmentation::Polygons(out)))
        }
        Value::Object(map) => {
            let size = map
                .get("size")
                .and_then(Value::as_array)
                .and_then(|s| {
                    let v: Option<Vec<u32>> = s
                        .iter()
                        .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                        .collect();
                    <[u32; 2]>::try_from(v?).ok()
                })
                .ok_or("RLE segmentation needs \"size\": [height, width]")?;
            let counts = match map.get("counts") {
                Some(Value::String(s)) => RleCounts::Compressed(s.clone()),
                Some(Value::Array(list)) => {
                    let counts: Option<Vec<u32>> = list
                        .iter()
                        .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                        .collect();
                    RleCounts::Uncompressed(
                        counts.ok_or("RLE counts must be non-negative integers")?,
                    )
                }
                _ => return Err("RLE segmentation needs \"counts\" (a list or a string)".into()),
            };
            Ok(Some(Segmentation::Rle { size, counts }))
        }
        _ => Err("segmentation must be a list of polygons or an RLE object".into()),
    }
}

impl Segmentation {
    /// The mask of this region on an image of `height` × `width` pixels: polygons are
    /// rasterised and merged; RLE masks must have the image's size.
    pub fn to_rle(&self, height: u32, width: u32) -> Result<Rle, String> {
        match self {
            Segmentation::Polygons(polygons) => {
                let first = polygons.first().ok_or("segmentation has no polygon")?;
                if polygons.iter().flatten().any(|v| v.abs() > MAX_COORDINATE) {
                    return Err(format!(
                        "segmentation has a coordinate beyond {MAX_COORDINATE} pixels"
                    ));
                }
                let parts: Vec<Rle> = if first.len() == 4 {
                    // Two-point "polygons" are read as boxes, as the reference tools do.
                    let mut boxes = Vec::with_capacity(polygons.len());
                    for p in polygons {
                        let b: [f64; 4] = p.as_slice().try_into().map_err(|_| {
                            "segmentation mixes 4-number boxes with polygons".to_string()
                        })?;
                        boxes.push(polygon::rasterize_box(b, height, width));
                    }
                    boxes
                } else if first.len() < 4 {
                    return Err("segmentation polygon has fewer than 3 points".into());
                } else {
                    let mut parts = Vec::with_capacity(polygons.len());
                    for p in polygons {
                        if p.len() < 2 {
                            return Err("segmentation polygon has no point".into());
                        }
                        parts.push(polygon::rasterize(p, height, width));
                    }
                    parts
                };
                Ok(Rle::union(height, width, &parts))
            }
            Segmentation::Rle { size, counts } => {
                let [h, w] = *size;
                if (h, w) != (height, width) {
                    return Err(format!(
                        "RLE size {h}x{w} differs from the image size {height}x{width}"
                    ));
                }
                match counts {
                    RleCounts::Uncompressed(c) => Rle::new(h, w, c.clone()),
                    RleCounts::Compressed(s) => Rle::from_compressed(h, w, s),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "images": [{"id": 1, "width": 10, "height": 8, "file_name": "a.jpg"}],
        "categories": [{"id": 3, "name": "orange"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 4.0,
             "bbox": [1, 1, 2, 2], "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]},
            {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 1, "area": 80.0,
             "bbox": [0, 0, 10, 8], "segmentation": {"size": [8, 10], "counts": [0, 80]}},
            {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": true, "area": 80.0,
             "bbox": [0, 0, 10, 8], "segmentation": {"size": [8, 10], "counts": "0`2"}}
        ]
    }"#;

    fn with(field: &str, replacement: &str) -> String {
        GOOD.replacen(field, replacement, 1)
    }

    fn error(text: &str) -> String {
        match Dataset::from_json(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_polygons_both_rle_forms_and_crowds() {
        let d = Dataset::from_json(GOOD).unwrap();
        assert_eq!(d.annotations.len(), 3);
        assert!(!d.annotations[0].iscrowd && d.annotations[1].iscrowd && d.annotations[2].iscrowd);
        for a in &d.annotations {
            let mask = a.segmentation.as_ref().unwrap().to_rle(8, 10).unwrap();
            let expected = if a.id == 1 { 4 } else { 80 };
            assert_eq!(mask.area(), expected, "annotation {}", a.id);
        }
    }

    #[test]
    fn malformed_files_are_errors_naming_the_record() {
        assert!(error("{").contains("annotation file is not valid COCO JSON"));
        assert!(error(&with("\"area\": 4.0,", "")).contains("missing field `area`"));
        assert!(error(&with("[1, 1, 2, 2]", "[1, 1, 2]")).contains("annotation 1: bbox"));
        assert!(
            error(&with(
                "\"image_id\": 1, \"category_id\": 3, \"iscrowd\": 0",
                "\"image_id\": 9, \"category_id\": 3, \"iscrowd\": 0"
            ))
            .contains("annotation 1 refers to image 9")
        );
        assert!(error(&with("\"width\": 10", "\"width\": 0")).contains("must be positive"));
        assert!(
            error(&with("[[1, 1, 3, 1, 3, 3, 1, 3]]", "[[1, \"a\"]]")).contains("annotation 1:")
        );
        assert!(error(&with("[0, 80]", "[0, -80]")).contains("annotation 2:"));
        assert!(
            error(&with(
                "\"size\": [8, 10], \"counts\": [0, 80]",
                "\"counts\": [0, 80]"
            ))
            .contains("size")
        );
    }

    #[test]
    fn masks_that_do_not_fit_are_errors_not_panics() {
        let d = Dataset::from_json(&with("[0, 80]", "[0, 79]")).unwrap();
        let rle = d.annotations[1]
            .segmentation
            .as_ref()
            .unwrap()
            .to_rle(8, 10);
        assert!(rle.unwrap_err().contains("cover 79 pixels"));
        let d = Dataset::from_json(&with("\"0`2\"", "\"0`\"")).unwrap();
        assert!(
            d.annotations[2]
                .segmentation
                .as_ref()
                .unwrap()
                .to_rle(8, 10)
                .is_err()
        );
        let wrong_size = Segmentation::Rle {
            size: [4, 4],
            counts: RleCounts::Uncompressed(vec![16]),
        };
        assert!(wrong_size.to_rle(8, 10).unwrap_err().contains("differs"));
        let far = Segmentation::Polygons(vec![vec![0.0, 0.0, 1e12, 0.0, 1e12, 1e12]]);
        assert!(far.to_rle(8, 10).is_err());
        assert!(Segmentation::Polygons(vec![]).to_rle(8, 10).is_err());
        assert!(
            Segmentation::Polygons(vec![vec![1.0, 2.0]])
                .to_rle(8, 10)
                .is_err()
        );
    }

    #[test]
    fn detections_must_name_known_images_and_finite_scores() {
        let d = Dataset::from_json(GOOD).unwrap();
        let ok = r#"[{"image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2], "score": 0.5}]"#;
        assert_eq!(detections_from_json(ok, &d).unwrap().len(), 1);
        let err = detections_from_json(&ok.replace("\"image_id\": 1", "\"image_id\": 2"), &d);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("detection 0 refers to image 2")
        );
        let err = detections_from_json(&ok.replace("0.5", "\"high\""), &d);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("results file is not valid COCO JSON")
        );
        assert!(detections_from_json("{}", &d).is_err());
    }
}
