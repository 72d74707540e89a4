//! Maintenance: the periodic sweep that repairs what crashes and lost messages leave
//! behind (and purges uploads and idempotency keys no longer needed), and the daily reconciliation report.

pub mod idempotency;
pub mod reconcile;
pub mod sweeper;
pub mod uploads;
pub mod workers;
