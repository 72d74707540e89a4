//! The `foodseg` binary against the real stack.

mod against_stack;
mod front;
mod reconcile;
