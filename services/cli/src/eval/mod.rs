//! COCO evaluation of detections against an instances file, as the reference COCO
//! tools compute it (bbox and segm IoU types): reading the files, masks from polygons
//! and RLE, matching, precision/recall and the standard summary numbers; plus job items
//! as detections and the metrics file of an evaluation run.

pub mod accumulate;
pub mod boxes;
pub mod dataset;
pub mod error;
pub mod evaluate;
pub mod from_items;
pub mod matching;
pub mod params;
pub mod polygon;
pub mod report;
pub mod rle;
pub mod summary;

pub use dataset::{Annotation, Category, Dataset, Detection, Image, RleCounts, Segmentation};
pub use error::EvalError;
pub use evaluate::evaluate;
pub use params::IouType;
pub use summary::{CategoryAp, Metrics, Stats};
