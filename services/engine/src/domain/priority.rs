//! Priority lanes: who waits for a job. A person waits for an `interactive` job; nobody
//! waits for any one `bulk` job of a backfill. Workers take interactive jobs first and
//! give bulk jobs a fixed share ([`LaneTurns`]), so backfills never starve nor delay a
//! person by more than one job per worker slot.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The lane a job waits in (Postgres type `job_priority`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "job_priority", rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(salvo::oapi::ToSchema))]
pub enum Priority {
    /// Sent by a person who waits for it: `/enqueue`, uploads, and batches that say so.
    #[default]
    Interactive,
    /// A backfill: runs when no interactive job of its model waits, and in its share.
    Bulk,
}

impl Priority {
    /// Both lanes, interactive first.
    pub const ALL: [Priority; 2] = [Priority::Interactive, Priority::Bulk];

    /// The value stored in `jobs.priority` (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Bulk => "bulk",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priority name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority must be \"interactive\" or \"bulk\"")]
pub struct UnknownPriority;

impl FromStr for Priority {
    type Err = UnknownPriority;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interactive" => Ok(Priority::Interactive),
            "bulk" => Ok(Priority::Bulk),
            _ => Err(UnknownPriority),
        }
    }
}

/// Which lane a worker asks first, so that at least one claim in `share` goes to a bulk
/// job while both lanes have work (`FOODSEG_BULK_SHARE`), and every other goes to an
/// interactive one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneTurns {
    share: u32,
    /// Interactive jobs taken since the last bulk one.
    since_bulk: u32,
}

impl LaneTurns {
    /// `share` of at least 1 (1: bulk first every time).
    pub fn new(share: u32) -> Self {
        LaneTurns {
            share: share.max(1),
            since_bulk: 0,
        }
    }

    /// The lanes in the order to ask them for the next job.
    pub fn order(&self) -> [Priority; 2] {
        if self.since_bulk + 1 >= self.share {
            [Priority::Bulk, Priority::Interactive]
        } else {
            [Priority::Interactive, Priority::Bulk]
        }
    }

    /// Records that a job of `lane` was taken.
    pub fn took(&mut self, lane: Priority) {
        match lane {
            Priority::Bulk => self.since_bulk = 0,
            Priority::Interactive => self.since_bulk = self.since_bulk.saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
        }
        assert_eq!("Bulk".parse::<Priority>(), Err(UnknownPriority));
        assert_eq!(Priority::default(), Priority::Interactive);
    }

    /// Takes `n` jobs with both lanes always full; returns how many were bulk.
    fn bulk_taken(share: u32, n: usize) -> usize {
        let mut turns = LaneTurns::new(share);
        let mut bulk = 0;
        for _ in 0..n {
            let lane = turns.order()[0];
            if lane == Priority::Bulk {
                bulk += 1;
            }
            turns.took(lane);
        }
        bulk
    }

    #[test]
    fn one_claim_in_share_goes_to_bulk_when_both_wait() {
        assert_eq!(bulk_taken(10, 100), 10);
        assert_eq!(bulk_taken(1, 7), 7);
        assert_eq!(bulk_taken(2, 10), 5);
        assert_eq!(LaneTurns::new(0).order()[0], Priority::Bulk);
    }

    #[test]
    fn an_empty_interactive_lane_does_not_reset_the_share() {
        let mut turns = LaneTurns::new(3);
        turns.took(Priority::Interactive);
        turns.took(Priority::Bulk); // interactive was empty, bulk taken second
        assert_eq!(turns.order()[0], Priority::Interactive);
    }

    proptest! {
        /// Whatever lanes the jobs came from, no `share` claims in a row are all
        /// interactive while bulk was asked first in between.
        #[test]
        fn never_more_than_share_minus_one_interactive_in_a_row(
            share in 1u32..20, n in 1usize..500,
        ) {
            let mut turns = LaneTurns::new(share);
            let mut run = 0u32;
            for _ in 0..n {
                let lane = turns.order()[0];
                run = if lane == Priority::Bulk { 0 } else { run + 1 };
                prop_assert!(run < share);
                turns.took(lane);
            }
        }
    }
}
