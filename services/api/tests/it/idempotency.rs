//! `Idempotency-Key` on `POST /enqueue` and `POST /v2/uploads`: a retry answers the first
//! request's job, a different request with the key is refused, concurrent requests with
//! one key create one job, and keys outlive the api process.

use std::time::Duration;

use foodseg_api::local::{LocalApi, api_key};
use foodseg_engine::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{fixture, json_of, setup, start_on};

fn body(image: &str) -> String {
    json!({"image_url": format!("https://img.example.org/{image}"), "model_id": "124096"})
        .to_string()
}

/// `POST /enqueue` with an optional key; the status, the body and whether the answer
/// says it was replayed.
async fn enqueue(
    api: &LocalApi,
    key: Option<&str>,
    body: String,
) -> anyhow::Result<(StatusCode, Value, bool)> {
    let mut req = foodseg_http::client()?
        .post(api.url("/enqueue"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await?;
    let replayed = res
        .headers()
        .get("idempotency-replayed")
        .is_some_and(|v| v == "true");
    let (status, doc) = json_of(res).await?;
    Ok((status, doc, replayed))
}

async fn jobs(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM jobs"#)
        .fetch_one(pool)
        .await?)
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_retry_with_the_same_key_answers_the_first_job(pool: PgPool) -> anyhow::Result<()> {
    let (_tb, api) = setup(&pool).await?;
    let (status, first, replayed) = enqueue(&api, Some("order-1"), body("a.jpg")).await?;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!replayed);
    let (status, again, replayed) = enqueue(&api, Some("order-1"), body("a.jpg")).await?;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(replayed, "a retry is marked as replayed");
    assert_eq!(again["job_id"], first["job_id"]);
    assert_eq!(again["request"], first["request"]);
    assert_eq!(jobs(&pool).await?, 1);

    // The same body with another key, or with none, is a new job: no key, no dedup.
    let (_, other, _) = enqueue(&api, Some("order-2"), body("a.jpg")).await?;
    assert_ne!(other["job_id"], first["job_id"]);
    let (_, plain1, replayed1) = enqueue(&api, None, body("a.jpg")).await?;
    let (_, plain2, replayed2) = enqueue(&api, None, body("a.jpg")).await?;
    assert_ne!(plain1["job_id"], plain2["job_id"]);
    assert!(!replayed1 && !replayed2);
    assert_eq!(jobs(&pool).await?, 4);
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_same_key_with_another_request_is_refused(pool: PgPool) -> anyhow::Result<()> {
    let (_tb, api) = setup(&pool).await?;
    let (_, first, _) = enqueue(&api, Some("k"), body("a.jpg")).await?;
    let (status, err, _) = enqueue(&api, Some("k"), body("b.jpg")).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(first["job_id"].as_str().unwrap_or("?")),
        "{message}"
    );
    // A JSON body that differs only in spacing and key order is the same request.
    let same = r#"{ "model_id": "124096",  "image_url": "https://img.example.org/a.jpg" }"#;
    let (status, again, replayed) = enqueue(&api, Some("k"), same.into()).await?;
    assert_eq!((status, replayed), (StatusCode::OK, true), "{again}");
    assert_eq!(again["job_id"], first["job_id"]);
    assert_eq!(jobs(&pool).await?, 1);

    for bad in ["", &"k".repeat(256)] {
        let (status, err, _) = enqueue(&api, Some(bad), body("c.jpg")).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {err}");
        assert_eq!(err["error"]["code"], "invalid_idempotency_key");
    }
    let res = foodseg_http::client()?
        .post(api.url("/enqueue"))
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes("caf\u{e9}".as_bytes())?,
        )
        .body(body("c.jpg"))
        .send()
        .await?;
    let (status, err) = json_of(res).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "invalid_idempotency_key");
    assert_eq!(jobs(&pool).await?, 1);
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn twenty_concurrent_requests_with_one_key_create_one_job(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (_tb, api) = setup(&pool).await?;
    let requests = (0..20).map(|_| enqueue(&api, Some("burst"), body("a.jpg")));
    let answers = futures::future::try_join_all(requests).await?;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, doc, _)| {
            assert_eq!(*status, StatusCode::OK, "{doc}");
            doc["job_id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        answers.iter().filter(|(_, _, replayed)| !replayed).count(),
        1
    );
    assert_eq!(jobs(&pool).await?, 1);
    let events = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox"#)
        .fetch_one(&pool)
        .await?;
    assert_eq!(events, 1, "one dispatch message");
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn keys_survive_an_api_restart_and_expire(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let (_, first, _) = enqueue(&api, Some("restart"), body("a.jpg")).await?;
    api.stop().await?;

    let api = start_on(&pool, &tb, |_| {}).await?;
    let (status, again, replayed) = enqueue(&api, Some("restart"), body("a.jpg")).await?;
    assert_eq!((status, replayed), (StatusCode::OK, true), "{again}");
    assert_eq!(again["job_id"], first["job_id"]);
    api.stop().await?;

    // An api that keeps keys a microsecond: the key has expired by the next request and
    // is taken over by a new job.
    let api = start_on(&pool, &tb, |parts| {
        parts.idempotency_keep = Duration::from_micros(1);
    })
    .await?;
    let (_, short, _) = enqueue(&api, Some("brief"), body("a.jpg")).await?;
    let (status, next, replayed) = enqueue(&api, Some("brief"), body("b.jpg")).await?;
    assert_eq!((status, replayed), (StatusCode::OK, false), "{next}");
    assert_ne!(next["job_id"], short["job_id"]);
    let purged = api.store.purge_expired_idempotency_keys(100).await?;
    assert_eq!(purged, 1, "the expired key goes; the live ones stay");
    assert_eq!(jobs(&pool).await?, 3, "purging keys keeps their jobs");
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn uploads_are_deduplicated_per_api_key(pool: PgPool) -> anyhow::Result<()> {
    let (_tb, api) = setup(&pool).await?;
    let alice = api_key(&api.store, "alice", &[Scope::Submit]).await?;
    let bob = api_key(&api.store, "bob", &[Scope::Submit]).await?;
    let jpeg = std::fs::read(fixture("fruits.jpg"))?;
    let png = std::fs::read(fixture("coffee.png"))?;
    let upload = |token: &str, bytes: &[u8], key: &str| {
        let req = foodseg_http::client().map(|c| {
            c.post(api.url("/v2/uploads?filename=meal.jpg"))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .body(bytes.to_vec())
        });
        async move {
            let res = req?.send().await?;
            let replayed = res.headers().contains_key("idempotency-replayed");
            let (status, doc) = json_of(res).await?;
            anyhow::Ok((status, doc, replayed))
        }
    };
    let (status, first, _) = upload(&alice, &jpeg, "meal-7").await?;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again, replayed) = upload(&alice, &jpeg, "meal-7").await?;
    assert_eq!((status, replayed), (StatusCode::OK, true), "{again}");
    assert_eq!(again["job_id"], first["job_id"]);
    let stored = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM uploads"#)
        .fetch_one(&pool)
        .await?;
    assert_eq!(stored, 1, "a replay stores no second copy");

    // Other bytes with the same key: refused. Another API key: its own scope.
    let (status, err, _) = upload(&alice, &png, "meal-7").await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    let (status, theirs, replayed) = upload(&bob, &jpeg, "meal-7").await?;
    assert_eq!((status, replayed), (StatusCode::OK, false), "{theirs}");
    assert_ne!(theirs["job_id"], first["job_id"]);
    assert_eq!(jobs(&pool).await?, 2);
    Ok(())
}

/// `POST /enqueue` with `key` from a client bound to `from` (an address of the loopback
/// network), so the api sees that client address.
async fn enqueue_from(
    api: &LocalApi,
    from: &str,
    key: &str,
    body: String,
) -> anyhow::Result<(StatusCode, String)> {
    let client = foodseg_http::client_builder()?
        .local_address(from.parse::<std::net::IpAddr>()?)
        .build()?;
    let res = client
        .post(api.url("/enqueue"))
        .header("Idempotency-Key", key)
        .body(body)
        .send()
        .await?;
    Ok((res.status(), res.text().await?))
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_keyless_idempotency_key_belongs_to_its_client_address(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (_tb, api) = setup(&pool).await?;
    let (status, first) = enqueue_from(&api, "127.0.0.1", "meal-1234", body("a.jpg")).await?;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first: Value = serde_json::from_str(&first)?;
    let first_id = first["job_id"].as_str().unwrap_or_default().to_string();
    assert!(!first_id.is_empty());

    // Another client, the same key, another body: its own job, and nothing of the first.
    let (status, second) = enqueue_from(&api, "127.0.0.2", "meal-1234", body("b.jpg")).await?;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert!(!second.contains(&first_id), "{second}");
    let second: Value = serde_json::from_str(&second)?;
    assert_ne!(second["job_id"], first["job_id"]);
    assert_eq!(jobs(&pool).await?, 2);

    // Reused with yet another body, the 422 names only the caller's own job.
    let (status, refused) = enqueue_from(&api, "127.0.0.2", "meal-1234", body("c.jpg")).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(!refused.contains(&first_id), "{refused}");
    assert!(
        refused.contains(second["job_id"].as_str().unwrap_or("?")),
        "{refused}"
    );
    // The first client's retry still answers its own job.
    let (status, again) = enqueue_from(&api, "127.0.0.1", "meal-1234", body("a.jpg")).await?;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(again.contains(&first_id), "{again}");
    assert_eq!(jobs(&pool).await?, 2);
    Ok(())
}
