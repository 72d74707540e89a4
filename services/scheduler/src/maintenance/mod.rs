//! Maintenance: the periodic sweep that repairs what crashes and lost messages leave
//! behind (and purges uploads, idempotency keys and finished jobs no longer needed), and
//! the daily reconciliation report.

pub mod idempotency;
pub mod reconcile;
pub mod retention;
pub mod sweeper;
pub mod uploads;
pub mod workers;
