//! The `foodseg` binary against the real stack, and the COCO evaluator against
//! pycocotools.

mod against_stack;
mod cocoeval;
mod eval_against_stack;
mod front;
mod reconcile;
mod submit_dir_batches;
