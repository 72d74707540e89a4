//! The whole path as MFR drives it: `POST /enqueue` on the real api (form content type,
//! JSON body), its relay, the worker, and `GET /status/:job_id`.

use std::time::Duration;

use crate::common::Env;
use crate::common::server::ImageServer;
use foodseg_testkit::wait_until;
use sqlx::PgPool;

/// A detection of `name` with score ≥ `min_score` whose box is within 12 px of `[x1,y1,x2,y2]`.
fn has_item(items: &[serde_json::Value], name: &str, min_score: f64, bbox: [f64; 4]) -> bool {
    items.iter().any(|it| {
        let b: Vec<f64> = serde_json::from_value(it["bbox"].clone()).unwrap_or_default();
        it["category_name"] == name
            && it["score"].as_f64() >= Some(min_score)
            && b.len() == 4
            && (b[0] - bbox[0]).abs() <= 12.0
            && (b[1] - bbox[1]).abs() <= 12.0
            && (b[0] + b[2] - bbox[2]).abs() <= 12.0
            && (b[1] + b[3] - bbox[3]).abs() <= 12.0
    })
}

#[sqlx::test(migrations = "../../migrations")]
async fn photos_enqueued_on_the_api_succeed_via_status(pool: PgPool) -> anyhow::Result<()> {
    let env = Env::without_relay(pool.clone()).await?;
    let api =
        foodseg_api::local::start_api(pool, env.subjects.clone(), &foodseg_testkit::nats_url())
            .await?;
    let images = ImageServer::start(0).await;
    let worker = env.start_worker(env.config("w-api", 15.0));
    let http = foodseg_http::client()?;

    let cases = [
        ("fruits.jpg", "orange", 0.8, [317.0, 246.0, 511.0, 476.0]),
        ("coffee.png", "cup", 0.7, [169.0, 20.0, 418.0, 278.0]),
    ];
    for (name, category, score, bbox) in cases {
        let body = serde_json::json!({
            "image_url": images.url(&format!("/img/{name}")),
            "model_id": "124096",
            "webhook_url": null,
        });
        let queued: serde_json::Value = http
            .post(api.url("/enqueue"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(queued["status"], "MFR.Job.QUEUED");
        let job_id = queued["job_id"].as_str().expect("job_id").to_string();

        let status_url = api.url(&format!("/status/{job_id}"));
        let doc = wait_until(Duration::from_secs(120), || async {
            let doc: serde_json::Value =
                http.get(&status_url).send().await.ok()?.json().await.ok()?;
            let done = doc["status"] == "MFR.Job.SUCCESS" || doc["status"] == "MFR.Job.ERROR";
            done.then_some(doc)
        })
        .await?;
        assert_eq!(doc["status"], "MFR.Job.SUCCESS", "{doc:#}");
        assert_eq!(doc["model_identifier"], "124096");
        let items = doc["response"].as_array().expect("items");
        assert!(items.iter().all(|it| it["image_id"] == name), "{items:#?}");
        assert!(
            has_item(items, category, score, bbox),
            "{name}: no {category} ≥ {score} near {bbox:?} in {items:#?}"
        );
    }
    worker.stop().await?;
    api.stop().await?;
    env.cleanup().await;
    Ok(())
}
