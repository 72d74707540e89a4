//! `foodseg reconcile --since 24h`: finished jobs whose webhook has not been delivered.

use std::time::SystemTime;

use crate::cli::ReconcileArgs;
use crate::client::{ApiClient, UndeliveredWebhook};
use crate::error::CliError;
use crate::table::Table;

pub async fn run(client: ApiClient, args: ReconcileArgs) -> Result<(), CliError> {
    let since = SystemTime::now()
        .checked_sub(args.since)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let since = humantime::format_rfc3339_micros(since).to_string();
    let mut webhooks = Vec::new();
    let mut cursor = None;
    loop {
        let page = client.undelivered(&since, cursor.as_deref()).await?;
        webhooks.extend(page.webhooks);
        if !page.has_more {
            break;
        }
        cursor = page.cursor;
    }
    if args.json {
        for w in &webhooks {
            println!("{}", serde_json::to_string(&json(w)).unwrap_or_default());
        }
    } else if webhooks.is_empty() {
        println!("every webhook since {since} was delivered");
    } else {
        print!("{}", table(&webhooks));
        let failed = webhooks.iter().filter(|w| w.status == "failed").count();
        println!(
            "{} undelivered since {since}: {failed} failed, {} pending",
            webhooks.len(),
            webhooks.len() - failed
        );
    }
    if webhooks.is_empty() {
        Ok(())
    } else {
        Err(CliError::Undelivered(webhooks.len()))
    }
}

fn json(w: &UndeliveredWebhook) -> serde_json::Value {
    serde_json::json!({
        "job_id": w.job_id,
        "status": w.status,
        "attempts": w.attempts,
        "next_attempt_at": w.next_attempt_at,
        "last_error": w.last_error,
        "created_at": w.created_at,
    })
}

fn table(webhooks: &[UndeliveredWebhook]) -> String {
    let mut t = Table::new(&[
        ("job", false),
        ("webhook", false),
        ("attempts", true),
        ("finished", false),
        ("next attempt / last error", false),
    ]);
    for w in webhooks {
        let note = match (&w.next_attempt_at, &w.last_error) {
            (Some(next), Some(e)) => format!("{next} (last: {e})"),
            (Some(next), None) => next.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        t.row(vec![
            w.job_id.clone(),
            w.status.clone(),
            w.attempts.to_string(),
            w.created_at.clone(),
            note,
        ]);
    }
    t.render()
}
