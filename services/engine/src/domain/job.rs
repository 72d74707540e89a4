//! A job's states, its legal transitions and the backoff between its attempts.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;

/// Internal state of a job (Postgres type `job_status`). The v1 API shows it as an
/// `MFR.Job.*` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "job_status", rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    /// Every state, in the order a job goes through them.
    pub const ALL: [JobStatus; 4] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
    ];

    /// The value stored in `jobs.status` (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    /// The status string of the MFR v1 contract.
    pub fn mfr_status(self) -> &'static str {
        match self {
            JobStatus::Queued => "MFR.Job.QUEUED",
            JobStatus::Running => "MFR.Job.IN_PROGRESS",
            JobStatus::Succeeded => "MFR.Job.SUCCESS",
            JobStatus::Failed => "MFR.Job.ERROR",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The api accepted the request.
    Enqueue,
    /// A worker took a lease on a queued job (attempt + 1).
    Claim,
    /// The worker wrote a result.
    Succeed,
    /// A permanent failure, or transient failures with no attempt left.
    Fail,
    /// A transient failure with attempts left: back to the queue after a delay.
    Retry,
    /// The worker is shutting down and hands the job back.
    Release,
    /// The sweeper found the lease expired and attempts left.
    Redrive,
    /// An operator cancelled a queued job: it ends failed, with its webhook.
    Cancel,
    /// An operator sent a failed job back to the queue with a new attempt budget.
    Resubmit,
    /// The sweeper gave up on a queued job: no worker has served its model for
    /// `FOODSEG_MAX_QUEUE_WAIT`. It ends failed, with its webhook.
    Expire,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Enqueue => "enqueue",
            Transition::Claim => "claim",
            Transition::Succeed => "succeed",
            Transition::Fail => "fail",
            Transition::Retry => "retry",
            Transition::Release => "release",
            Transition::Redrive => "redrive",
            Transition::Cancel => "cancel",
            Transition::Resubmit => "resubmit",
            Transition::Expire => "expire",
        }
    }
}

impl Transition {
    /// Whether the attempt that ends with this transition counts against the job's
    /// budget. A worker that hands a job back because it is shutting down (scale-in, a
    /// deploy) did not fail it: the budget is for failures and lost workers.
    pub fn spends_attempt(self) -> bool {
        !matches!(self, Transition::Release)
    }
}

/// A transition that the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {transition:?} from {from:?}")]
pub struct IllegalTransition {
    pub from: Option<JobStatus>,
    pub transition: Transition,
}

/// The state a transition leads to, if it is legal from `from` (`None` = no job yet).
pub fn next_status(
    from: Option<JobStatus>,
    transition: Transition,
) -> Result<JobStatus, IllegalTransition> {
    use JobStatus::*;
    use Transition::*;
    let to = match (from, transition) {
        (None, Enqueue) => Queued,
        (Some(Queued), Claim) => Running,
        (Some(Running), Succeed) => Succeeded,
        (Some(Running), Fail) => Failed,
        (Some(Running), Retry) => Queued,
        (Some(Running), Release) => Queued,
        (Some(Running), Redrive) => Queued,
        (Some(Queued), Cancel) => Failed,
        (Some(Failed), Resubmit) => Queued,
        (Some(Queued), Expire) => Failed,
        _ => return Err(IllegalTransition { from, transition }),
    };
    Ok(to)
}

/// The wait before a job's next attempt after a transient failure: exponential, bounded,
/// jittered. How many attempts a job gets is its own `max_attempts`
/// ([`Attempt::has_next_within`](crate::domain::Attempt::has_next_within)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// 2 s before the second attempt, doubling, at most 60 s.
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(60)),
        }
    }
}

impl RetryPolicy {
    /// The delay before the attempt after `attempt` (1-based); `jitter` in `[0, 1]`.
    pub fn delay_after(&self, attempt: crate::domain::Attempt, jitter: f64) -> Duration {
        self.backoff
            .delay(attempt.as_u32().saturating_sub(1), jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_maps_to_stored_and_contract_strings() {
        for s in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(JobStatus::Queued.mfr_status(), "MFR.Job.QUEUED");
        assert_eq!(JobStatus::Running.mfr_status(), "MFR.Job.IN_PROGRESS");
        assert_eq!(JobStatus::Succeeded.mfr_status(), "MFR.Job.SUCCESS");
        assert_eq!(JobStatus::Failed.mfr_status(), "MFR.Job.ERROR");
    }

    #[test]
    fn legal_transitions() {
        use JobStatus::*;
        use Transition::*;
        assert_eq!(next_status(None, Enqueue), Ok(Queued));
        assert_eq!(next_status(Some(Queued), Claim), Ok(Running));
        assert_eq!(next_status(Some(Running), Succeed), Ok(Succeeded));
        assert_eq!(next_status(Some(Running), Fail), Ok(Failed));
        for t in [Retry, Release, Redrive] {
            assert_eq!(next_status(Some(Running), t), Ok(Queued));
        }
        assert_eq!(next_status(Some(Queued), Cancel), Ok(Failed));
        assert_eq!(next_status(Some(Failed), Resubmit), Ok(Queued));
        assert_eq!(next_status(Some(Queued), Expire), Ok(Failed));
    }

    #[test]
    fn only_a_release_gives_the_attempt_back() {
        use Transition::*;
        for t in [
            Claim, Succeed, Fail, Retry, Redrive, Cancel, Resubmit, Expire,
        ] {
            assert!(t.spends_attempt(), "{t:?}");
        }
        assert!(!Release.spends_attempt());
    }

    #[test]
    fn terminal_states_accept_only_an_operators_resubmit() {
        use Transition::*;
        for from in [JobStatus::Succeeded, JobStatus::Failed] {
            for t in [
                Enqueue, Claim, Succeed, Fail, Retry, Release, Redrive, Cancel, Expire,
            ] {
                assert!(next_status(Some(from), t).is_err(), "{from} {t:?}");
            }
        }
        assert!(next_status(Some(JobStatus::Succeeded), Resubmit).is_err());
        assert!(next_status(Some(JobStatus::Running), Cancel).is_err());
        assert!(next_status(Some(JobStatus::Queued), Transition::Succeed).is_err());
        assert!(next_status(None, Transition::Claim).is_err());
    }

    #[test]
    fn retry_backoff_doubles_and_is_bounded() {
        use crate::domain::Attempt;
        let p = RetryPolicy::default();
        assert_eq!(p.delay_after(Attempt::new(1), 1.0), Duration::from_secs(2));
        assert_eq!(p.delay_after(Attempt::new(2), 1.0), Duration::from_secs(4));
        assert_eq!(
            p.delay_after(Attempt::new(30), 1.0),
            Duration::from_secs(60)
        );
        assert_eq!(p.delay_after(Attempt::new(2), 0.0), Duration::from_secs(2));
    }
}
