//! `/metrics`: the RED histogram labels requests by the route template salvo matched
//! (never the raw path), and the api's series are described and present from the start.

use sqlx::PgPool;

use crate::common::setup;

#[sqlx::test(migrations = "../../migrations")]
async fn requests_are_measured_by_route_template(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let http = foodseg_http::client()?;
    let id = uuid::Uuid::now_v7();
    let status = http.get(api.url(&format!("/status/{id}"))).send().await?;
    assert_eq!(status.status(), reqwest::StatusCode::NOT_FOUND);
    let unmatched = http.get(api.url(&format!("/nothing/{id}"))).send().await?;
    assert_eq!(unmatched.status(), reqwest::StatusCode::NOT_FOUND);

    let text = http.get(api.url("/metrics")).send().await?.text().await?;
    let series = |route: &str| {
        text.lines().any(|l| {
            l.starts_with("foodseg_http_server_request_duration_seconds_count{")
                && l.contains(&format!("http_route=\"{route}\""))
                && l.contains("http_request_method=\"GET\"")
                && l.contains("http_response_status_code=\"404\"")
        })
    };
    assert!(series("/status/{job_id}"), "{text}");
    assert!(series("unmatched"), "{text}");
    assert!(
        !text.contains(&id.to_string()),
        "a raw path leaked into a label: {text}"
    );
    for name in [
        "foodseg_http_server_request_duration_seconds",
        "foodseg_jobs_enqueued_total",
        "foodseg_api_idempotent_replays_total",
        "foodseg_outbox_published_total",
        "foodseg_outbox_publish_failures_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}: {text}"
        );
    }
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
