//! COCO files as the evaluator reads them: the instances (ground-truth) file with its
//! images, categories and annotations, and the results file with detections.

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
        let mut annotations = Vec::with_capacity(raw.annotations.len());
        for a in raw.annotations {
            if !raw.images.iter().any(|i| i.id == a.image_id) {
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

    /// The image with this id.
    pub fn image(&self, id: i64) -> Option<&Image> {
        self.images.iter().find(|i| i.id == id)
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
    for (index, d) in detections.iter().enumerate() {
        if dataset.image(d.image_id).is_none() {
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
