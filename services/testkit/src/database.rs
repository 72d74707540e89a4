//! The per-test database `#[sqlx::test]` made, as a URL a service process connects to.

use anyhow::Context;
use sqlx::PgPool;

/// The URL of `pool`'s database: `DATABASE_URL`'s server with the test's database name.
pub fn database_url_of(pool: &PgPool) -> anyhow::Result<String> {
    let db = pool
        .connect_options()
        .get_database()
        .context("the test pool has no database name")?
        .to_string();
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").context("DATABASE_URL")?)?;
    url.set_path(&db);
    Ok(url.to_string())
}
