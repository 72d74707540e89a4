//! `foodseg submit-dir <dir> --base-url URL`: the directory's images, already served under
//! URL, sent as batches of up to 1,000 jobs (`POST /v2/jobs`), followed with a progress
//! bar (`GET /v2/batches/{id}`) until every job has finished or `--timeout` has passed,
//! then read back (`GET /status/{job_id}`) for the summary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use indicatif::ProgressBar;
use tokio::time::Instant;
use url::Url;

use super::dir_files::{Outcome, display_name, progress_bar, write_overlay_for};
use crate::backoff::Backoff;
use crate::batch::{BatchJob, BatchProgress, MAX_JOBS, Priority, file_url};
use crate::cli::SubmitDirArgs;
use crate::client::ApiClient;
use crate::document::JobDocument;
use crate::error::CliError;

/// Tries of a batch the API could not take (unreachable, 5xx); its keys make a retry safe.
const SEND_TRIES: u32 = 3;

/// Where one file's job stands.
enum Slot {
    /// Its batch has not been answered.
    Unsent,
    Job(Box<JobDocument>),
    /// No job, and why.
    Failed(String),
}

pub async fn run(
    client: &ApiClient,
    args: &SubmitDirArgs,
    base: &Url,
    files: Vec<PathBuf>,
) -> Vec<Outcome> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.job.timeout);
    let priority = args.priority.unwrap_or(Priority::Bulk);
    let jobs: Vec<BatchJob> = files
        .iter()
        .map(|path| {
            BatchJob::new(
                file_url(base, &display_name(path)),
                args.job.model.as_deref(),
                args.job.webhook.as_deref(),
            )
        })
        .collect();
    let bar = progress_bar(jobs.len());
    let mut slots: Vec<Slot> = jobs.iter().map(|_| Slot::Unsent).collect();
    let mut batches: Vec<String> = Vec::new();
    let count = jobs.len().div_ceil(MAX_JOBS);
    for (n, start) in (0..jobs.len()).step_by(MAX_JOBS).enumerate() {
        bar.set_message(format!("sending batch {} of {count}", n + 1));
        let indices: Vec<usize> = (start..jobs.len().min(start + MAX_JOBS)).collect();
        // A resent batch answers the batch it repeats: follow that one once.
        if let Some(id) = send(client, &jobs, indices, priority, &mut slots).await
            && !batches.contains(&id)
        {
            batches.push(id);
        }
    }
    follow(client, &batches, deadline, &bar).await;
    read_back(
        client,
        &mut slots,
        deadline,
        usize::from(args.parallel),
        &bar,
    )
    .await;
    bar.finish_and_clear();

    let elapsed = started.elapsed().as_secs_f64();
    let outcomes = files.into_iter().zip(slots).map(|(path, slot)| {
        let result = match slot {
            Slot::Unsent => Err("not sent".to_string()),
            Slot::Failed(why) => Err(why),
            Slot::Job(doc) if !doc.status().is_terminal() => Err(CliError::Timeout {
                job_id: doc.job_id,
                seconds: args.job.timeout,
                status: doc.status,
            }
            .to_string()),
            Slot::Job(doc) => Ok(*doc),
        };
        (path, result, elapsed)
    });
    let Some(dir) = args.overlay_dir.as_deref() else {
        return outcomes.collect();
    };
    futures::stream::iter(outcomes)
        .map(|(path, result, elapsed)| async move {
            let result = match result {
                Ok(doc) => match write_overlay_for(client, &doc, &path, dir).await {
                    Ok(()) => Ok(doc),
                    Err(e) => Err(e.to_string()),
                },
                Err(why) => Err(why),
            };
            (path, result, elapsed)
        })
        .buffer_unordered(usize::from(args.parallel))
        .collect()
        .await
}

/// Whether a failed request may work when tried again (the API unreachable, or a 5xx).
fn transient(e: &CliError) -> bool {
    matches!(e, CliError::Unreachable { .. })
        || matches!(e, CliError::Api { status, .. } if *status >= 500)
}

/// Sends the jobs at `indices` as one batch and puts the answered documents in their
/// slots; the batch's id. Jobs the API names as invalid fail with the reason and the rest
/// are sent again without them (a refused batch writes nothing).
async fn send(
    client: &ApiClient,
    jobs: &[BatchJob],
    mut indices: Vec<usize>,
    priority: Priority,
    slots: &mut [Slot],
) -> Option<String> {
    let mut tries = 1;
    loop {
        let batch: Vec<BatchJob> = indices.iter().map(|&i| jobs[i].clone()).collect();
        let why = match client.submit_batch(&batch, priority).await {
            Ok(answer) if answer.jobs.len() == indices.len() => {
                for (&i, doc) in indices.iter().zip(answer.jobs) {
                    slots[i] = Slot::Job(Box::new(doc));
                }
                return Some(answer.batch_id);
            }
            Ok(answer) => format!(
                "the API answered {} jobs to a batch of {}",
                answer.jobs.len(),
                indices.len()
            ),
            Err(CliError::InvalidItems { message, items }) => {
                let refused: HashMap<usize, String> = items
                    .into_iter()
                    .filter(|p| p.index < indices.len())
                    .map(|p| (p.index, format!("{} ({})", p.message, p.code)))
                    .collect();
                if refused.is_empty() {
                    message
                } else {
                    let mut kept = Vec::with_capacity(indices.len());
                    for (at, i) in indices.into_iter().enumerate() {
                        match refused.get(&at) {
                            Some(why) => slots[i] = Slot::Failed(why.clone()),
                            None => kept.push(i),
                        }
                    }
                    indices = kept;
                    if indices.is_empty() {
                        return None;
                    }
                    continue;
                }
            }
            Err(e) if transient(&e) && tries < SEND_TRIES => {
                tokio::time::sleep(Duration::from_secs(1 << tries)).await;
                tries += 1;
                continue;
            }
            Err(e) => e.to_string(),
        };
        for i in indices {
            slots[i] = Slot::Failed(why.clone());
        }
        return None;
    }
}

/// Follows the batches on the bar until none has a queued or running job, or the
/// deadline. A batch that cannot be read (no API key) is left to [`read_back`].
async fn follow(client: &ApiClient, batches: &[String], deadline: Instant, bar: &ProgressBar) {
    let mut latest: HashMap<&str, BatchProgress> = HashMap::new();
    let mut open: Vec<&str> = batches.iter().map(String::as_str).collect();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5), 1.5);
    while !open.is_empty() {
        let mut still = Vec::with_capacity(open.len());
        for id in open {
            match client.batch(id).await {
                Ok(progress) => {
                    if !progress.is_finished() {
                        still.push(id);
                    }
                    latest.insert(id, progress);
                }
                Err(e) if transient(&e) => still.push(id),
                Err(_) => {}
            }
        }
        open = still;
        if !latest.is_empty() {
            show(bar, latest.values());
        }
        let now = Instant::now();
        if open.is_empty() || now >= deadline {
            return;
        }
        let pause = backoff.next().unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(pause.min(deadline - now)).await;
    }
}

/// The batches' jobs done of all on the bar, with the counts and the estimate.
fn show<'a>(bar: &ProgressBar, batches: impl Iterator<Item = &'a BatchProgress> + Clone) {
    let sum = |f: fn(&BatchProgress) -> u64| batches.clone().map(f).sum::<u64>();
    bar.set_length(sum(|b| b.size));
    bar.set_position(sum(BatchProgress::done));
    bar.set_message(progress_message(
        sum(|b| b.counts.queued),
        sum(|b| b.counts.in_progress),
        sum(|b| b.counts.error),
        eta(batches),
    ));
}

/// The time left: the longest of the unfinished batches' estimates, when each has one.
fn eta<'a>(batches: impl Iterator<Item = &'a BatchProgress>) -> Option<f64> {
    let mut longest = 0.0_f64;
    for b in batches.filter(|b| !b.is_finished()) {
        longest = longest.max(b.eta_seconds?);
    }
    Some(longest)
}

fn progress_message(queued: u64, running: u64, failed: u64, eta: Option<f64>) -> String {
    let eta = match eta {
        Some(s) if s > 0.0 => {
            let left = Duration::from_secs(s.round() as u64);
            format!(" · about {} left", humantime::format_duration(left))
        }
        _ => String::new(),
    };
    format!("{queued} queued · {running} running · {failed} failed{eta}")
}

/// Reads every unfinished job's document (`--parallel` at a time) until all have
/// finished or the deadline has passed; at least once.
async fn read_back(
    client: &ApiClient,
    slots: &mut [Slot],
    deadline: Instant,
    parallel: usize,
    bar: &ProgressBar,
) {
    let mut backoff = Backoff::polling();
    bar.set_length(slots.len() as u64);
    bar.set_message("reading the results");
    loop {
        let open: Vec<(usize, String)> = unfinished(slots);
        bar.set_position((slots.len() - open.len()) as u64);
        if open.is_empty() {
            return;
        }
        let read: Vec<(usize, Result<JobDocument, CliError>)> = futures::stream::iter(open)
            .map(|(i, id)| async move { (i, client.status(&id).await) })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        for (i, result) in read {
            match result {
                Ok(doc) => slots[i] = Slot::Job(Box::new(doc)),
                Err(e) if transient(&e) => {}
                Err(e) => slots[i] = Slot::Failed(e.to_string()),
            }
        }
        let left = unfinished(slots).len();
        bar.set_position((slots.len() - left) as u64);
        let now = Instant::now();
        if left == 0 || now >= deadline {
            return;
        }
        let pause = backoff.next().unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(pause.min(deadline - now)).await;
    }
}

/// The slots whose job has not finished, with its id.
fn unfinished(slots: &[Slot]) -> Vec<(usize, String)> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(i, slot)| match slot {
            Slot::Job(doc) if !doc.status().is_terminal() => Some((i, doc.job_id.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchCounts;

    fn progress(queued: u64, eta_seconds: Option<f64>) -> BatchProgress {
        BatchProgress {
            batch_id: "b".into(),
            size: 10,
            counts: BatchCounts {
                queued,
                success: 10 - queued,
                ..BatchCounts::default()
            },
            eta_seconds,
            finished_at: None,
        }
    }

    #[test]
    fn the_estimate_is_the_longest_and_only_when_every_batch_has_one() {
        let batches = [
            progress(3, Some(30.0)),
            progress(5, Some(90.0)),
            progress(0, None),
        ];
        assert_eq!(eta(batches.iter()), Some(90.0));
        let batches = [progress(3, Some(30.0)), progress(5, None)];
        assert_eq!(eta(batches.iter()), None);
    }

    #[test]
    fn the_message_counts_the_states() {
        assert_eq!(
            progress_message(640, 8, 3, Some(2209.1)),
            "640 queued · 8 running · 3 failed · about 36m 49s left"
        );
        assert_eq!(
            progress_message(0, 0, 1, Some(0.0)),
            "0 queued · 0 running · 1 failed"
        );
    }

    #[test]
    fn outages_are_transient_refusals_are_not() {
        let api = |status| CliError::Api {
            status,
            code: "x".into(),
            message: "x".into(),
        };
        assert!(transient(&api(503)));
        assert!(!transient(&api(401)));
        assert!(!transient(&CliError::InvalidItems {
            message: "x".into(),
            items: Vec::new(),
        }));
    }
}
