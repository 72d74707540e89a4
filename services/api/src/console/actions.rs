//! The console's actions on a job, each a CSRF-checked form post that ends on the job's
//! page: redeliver its webhook, retry a failed job with a new attempt budget, cancel a
//! queued job. Every action is recorded in the job's event log with the key that did it.

use foodseg_engine::store::{Action, Redelivery};
use salvo::prelude::*;

use super::page::{ConsoleError, path_job};
use super::session::session;
use crate::request::{ready_state, with_deadline};

/// The notice a job page shows after an action (`?done=`); unknown values show none.
pub fn notice(done: &str) -> Option<&'static str> {
    match done {
        "redelivered" => Some("Webhook redelivery queued: a new delivery with a new webhook-id."),
        "retried" => Some("Job sent back to the queue with a new attempt budget."),
        "cancelled" => Some("Job cancelled: it ended MFR.Job.ERROR and its webhook is queued."),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Redeliver,
    Retry,
    Cancel,
}

/// `POST /console/jobs/{job_id}/redeliver`
#[handler]
pub async fn redeliver(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    act(Kind::Redeliver, req, depot, res).await
}

/// `POST /console/jobs/{job_id}/retry`
#[handler]
pub async fn retry(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    act(Kind::Retry, req, depot, res).await
}

/// `POST /console/jobs/{job_id}/cancel`
#[handler]
pub async fn cancel(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    act(Kind::Cancel, req, depot, res).await
}

async fn act(kind: Kind, req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match run(kind, req, depot).await {
        Ok((job_id, done)) => res.render(Redirect::other(format!(
            "/console/jobs/{job_id}?done={done}"
        ))),
        Err(e) => e.write_to(res),
    }
}

async fn run(
    kind: Kind,
    req: &mut Request,
    depot: &Depot,
) -> Result<(foodseg_engine::JobId, &'static str), ConsoleError> {
    let session = session(depot)?.clone();
    session.check_csrf(req.form::<String>("csrf").await.as_deref())?;
    let state = ready_state(depot)?;
    let job = path_job(req, &state).await?;
    let actor = session.actor();
    let done = match kind {
        Kind::Redeliver => match with_deadline(state.store.redeliver(job.id, &actor)).await? {
            Redelivery::Created(_) => "redelivered",
            Redelivery::NotFound => {
                return Err(crate::error::ApiError::JobNotFound(job.id.to_string()).into());
            }
            Redelivery::NotFinished(status) => {
                return Err(ConsoleError::Conflict(format!(
                    "job {} has not finished ({}); its webhook goes out when it does",
                    job.id,
                    status.mfr_status()
                )));
            }
            Redelivery::NoWebhook => {
                return Err(ConsoleError::Conflict(format!(
                    "job {} has no webhook_url",
                    job.id
                )));
            }
            Redelivery::Pending => {
                return Err(ConsoleError::Conflict(format!(
                    "a delivery of job {} is still pending; redeliver once it has ended",
                    job.id
                )));
            }
        },
        Kind::Retry => {
            let action = state.store.resubmit(job.id, &actor, state.max_attempts);
            outcome(job.id, with_deadline(action).await?, "retried", "failed")?
        }
        Kind::Cancel => {
            let action = state.store.cancel(job.id, &actor);
            outcome(job.id, with_deadline(action).await?, "cancelled", "queued")?
        }
    };
    // A retry queues a dispatch message, a cancel a finished-job message: publish now.
    state.waker.wake();
    tracing::info!(job_id = %job.id, actor = %actor, action = ?kind, "operator action from the console");
    Ok((job.id, done))
}

fn outcome(
    job_id: foodseg_engine::JobId,
    action: Action,
    done: &'static str,
    needs: &str,
) -> Result<&'static str, ConsoleError> {
    match action {
        Action::Done(_) => Ok(done),
        Action::NotFound => Err(crate::error::ApiError::JobNotFound(job_id.to_string()).into()),
        Action::WrongState(status) => Err(ConsoleError::Conflict(format!(
            "job {job_id} is {} ({}); only a {needs} job can be {done}",
            status.as_str(),
            status.mfr_status()
        ))),
        Action::DeliveryPending => Err(ConsoleError::Conflict(format!(
            "a webhook delivery of job {job_id} is still pending; retry once it has ended"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_fixed_texts() {
        assert!(notice("cancelled").unwrap().contains("MFR.Job.ERROR"));
        assert_eq!(notice("<script>"), None);
    }
}
