//! The segmentation pipeline of foodseg, usable without Postgres or NATS: fetch an image
//! ([`fetch`]), tell from its bytes what it is ([`sniff`]), decode it safely
//! ([`decode`]), letterbox it into a model tensor ([`preprocess`]), run the model with
//! ONNX Runtime ([`session`], loaded from `ORT_DYLIB_PATH`), turn YOLO-seg (YOLOv5 or
//! YOLOv8/YOLO11 layout) or Mask R-CNN outputs into masks in original-image coordinates
//! ([`postprocess`]), and masks into simplified polygons ([`polygons`]) and v1 contract
//! items ([`item`]). [`Segmenter`] holds the sessions and runs the stages after decoding,
//! timing them; each stage is also callable alone so a worker can overlap fetch/decode of
//! the next image with inference of the current one. [`inspect`] reads what an ONNX file
//! declares, for importing a model.

pub mod decode;
pub mod fetch;
pub mod inspect;
pub mod item;
pub mod jpeg;
pub mod mask;
pub mod polygons;
pub mod postprocess;
pub mod preprocess;
pub mod runtime;
pub mod segmenter;
pub mod session;
pub mod sniff;

pub use decode::{DecodeError, DecodeLimits, DecodedImage, decode, decode_to_cover};
pub use fetch::{AddressRefused, FetchError, FetchLimits, Fetched, fetch};
pub use item::{Item, image_id_from_url};
pub use preprocess::{Letterbox, Preprocessed};
pub use runtime::RuntimeError;
pub use segmenter::{SegmentError, Segmentation, Segmenter, StageTimings};
pub use session::{Device, InferenceError, ModelSession, SessionError, SessionOptions};
pub use sniff::{Foreign, ImageType};
