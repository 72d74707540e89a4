//! What can be wrong with an annotation or results file handed to the evaluator.

/// A malformed or inconsistent COCO file. Messages name the offending record.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{what} is not valid COCO JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },

    #[error("image {image_id}: width and height must be positive (got {width}x{height})")]
    BadImageSize {
        image_id: i64,
        width: u32,
        height: u32,
    },

    #[error("{what} {id}: {reason}")]
    BadSegmentation {
        what: &'static str,
        id: i64,
        reason: String,
    },

    #[error("{what} {id}: bbox must be 4 finite numbers [x, y, width, height], got {got}")]
    BadBbox {
        what: &'static str,
        id: i64,
        got: String,
    },

    #[error("annotation {id}: area must be a finite number")]
    BadArea { id: i64 },

    #[error("detection {index}: score must be a finite number")]
    BadScore { index: usize },

    #[error("annotation {id} refers to image {image_id}, which the annotation file does not list")]
    UnknownAnnotationImage { id: i64, image_id: i64 },

    #[error(
        "detection {index} refers to image {image_id}, which the annotation file does not list"
    )]
    UnknownDetectionImage { index: usize, image_id: i64 },

    #[error(
        "annotation {id} has no segmentation, so masks cannot be evaluated (bbox evaluation still can)"
    )]
    MissingSegmentation { id: i64 },
}
