//! Integration tests of the pipeline: real photos, real ONNX Runtime, a local HTTP
//! server for downloads. One binary; one module per area.

mod common;
mod decode;
mod fetch;
mod malformed_images;
mod mask_rcnn;
mod session_errors;
mod yolo_seg;
