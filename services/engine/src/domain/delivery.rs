//! Webhook deliveries: their states and what one attempt can lead to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// State of a webhook delivery (Postgres type `delivery_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "delivery_status", rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer came.
    Delivered,
    /// No attempt left, 410 Gone, or the URL was refused.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one attempt led to (Postgres type `attempt_outcome`; also a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "attempt_outcome", rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// A 2xx answer: the delivery is done.
    Delivered,
    /// Not delivered; another attempt is scheduled.
    Retry,
    /// The receiver answered 410 Gone: no more attempts.
    Gone,
    /// Not delivered and no attempt left (schedule exhausted or URL refused).
    Failed,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Gone => "gone",
            AttemptOutcome::Failed => "failed",
        }
    }

    /// The delivery's state after an attempt with this outcome.
    pub fn delivery_status(self) -> DeliveryStatus {
        match self {
            AttemptOutcome::Delivered => DeliveryStatus::Delivered,
            AttemptOutcome::Retry => DeliveryStatus::Pending,
            AttemptOutcome::Gone | AttemptOutcome::Failed => DeliveryStatus::Failed,
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_delivery_states() {
        assert_eq!(
            AttemptOutcome::Delivered.delivery_status(),
            DeliveryStatus::Delivered
        );
        assert_eq!(
            AttemptOutcome::Retry.delivery_status(),
            DeliveryStatus::Pending
        );
        assert_eq!(
            AttemptOutcome::Gone.delivery_status(),
            DeliveryStatus::Failed
        );
        assert_eq!(
            AttemptOutcome::Failed.delivery_status(),
            DeliveryStatus::Failed
        );
        assert_eq!(AttemptOutcome::Gone.as_str(), "gone");
        assert_eq!(
            serde_json::to_value(DeliveryStatus::Pending).unwrap(),
            "pending"
        );
    }
}
