//! `foodseg status <job_id>`.

use crate::cli::StatusArgs;
use crate::client::ApiClient;
use crate::error::CliError;
use crate::table::{items_table, job_header};

pub async fn run(client: ApiClient, args: StatusArgs) -> Result<(), CliError> {
    let doc = client.status(&args.job_id).await?;
    if args.json {
        println!("{}", super::json::to_json(&doc));
        return Ok(());
    }
    let items = doc.items()?;
    println!("{}", job_header(&doc, items.len()));
    println!("image: {}", doc.request.image_url);
    if !items.is_empty() {
        print!("{}", items_table(&items));
    }
    Ok(())
}
