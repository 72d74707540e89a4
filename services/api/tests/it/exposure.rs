//! What the api exposes with no security setting, tried as an attacker would: bodies
//! that trickle, webhook URLs with tokens in operator answers, floods of made-up keys,
//! and the console cookie.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use foodseg_api::local::LocalApi;
use foodseg_engine::domain::{EndpointLimits, Health, HealthPolicy};
use foodseg_engine::store::{AttemptRecord, ClaimOutcome};
use foodseg_engine::{AttemptOutcome, Scope};
use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{fixture, json_of, new_key, setup, setup_with};

/// Sends an upload's head declaring 20 MB under `token`, then one byte every 100 ms
/// (for at most a minute); the status of the answer.
async fn trickle(addr: SocketAddr, token: String) -> anyhow::Result<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /v2/uploads?filename=slow.jpg HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: image/jpeg\r\n\
         Content-Length: 20000000\r\n\r\n\u{ff}"
    );
    write.write_all(head.as_bytes()).await?;
    let writer = tokio::spawn(async move {
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write.write_all(b"\xd8").await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    writer.abort();
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP answer: {line:?}"))
}

/// An upload of the fixture photo under `token`; its status.
async fn upload(api: &LocalApi, token: &str) -> anyhow::Result<StatusCode> {
    let res = foodseg_http::client()?
        .post(api.url("/v2/uploads?filename=fruits.jpg"))
        .bearer_auth(token)
        .body(std::fs::read(fixture("fruits.jpg"))?)
        .send()
        .await?;
    Ok(res.status())
}

#[sqlx::test(migrations = "../../migrations")]
async fn trickled_uploads_end_408_and_never_lock_out_another_caller(
    pool: PgPool,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(8);
    let (tb, api) = setup_with(&pool, |parts| {
        parts.uploads.body_timeout = timeout;
        parts.limits.uploads_in_flight = 8;
    })
    .await?;
    let a = new_key(&api, &[Scope::Submit]).await?;
    let b = new_key(&api, &[Scope::Submit]).await?;
    // Five uploads of A trickle their bodies: A may hold four of the eight slots (half),
    // so one of them is refused.
    let tricklers: Vec<_> = (0..5)
        .map(|_| tokio::spawn(trickle(api.addr, a.clone())))
        .collect();
    // B's upload is served while A's trickle on.
    assert_eq!(upload(&api, &b).await?, StatusCode::OK);
    assert!(
        tricklers.iter().filter(|t| !t.is_finished()).count() >= 4,
        "B's upload was answered while A's four held their slots"
    );
    let mut statuses = Vec::new();
    for t in tricklers {
        statuses.push(t.await??);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![408, 408, 408, 408, 429], "{statuses:?}");
    // The slots are free again.
    assert_eq!(upload(&api, &a).await?, StatusCode::OK);
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn no_operator_answer_shows_a_webhook_urls_token(pool: PgPool) -> anyhow::Result<()> {
    const SECRET: &str = "s3cr3t-t0ken";
    let (tb, api) = setup(&pool).await?;
    let operator = new_key(&api, &[Scope::Operator]).await?;
    let start = Utc::now() - chrono::Duration::seconds(1);
    let mut job = foodseg_testkit::new_job(&format!(
        "https://img.example.org/dish.jpg?X-Amz-Signature={SECRET}"
    ));
    job.webhook_url = Some(format!(
        "https://user:{SECRET}@hooks.example.org/mfr?token={SECRET}"
    ));
    let job = api.store.enqueue(&job, "test").await?;
    let ClaimOutcome::Claimed { fence, .. } = api
        .store
        .claim(job.id, "w", Duration::from_secs(60))
        .await?
    else {
        anyhow::bail!("job not claimed");
    };
    api.store
        .succeed(&fence, &serde_json::json!([]), "test-version")
        .await?;
    // One failed attempt whose error quotes the URL, as a transport error might.
    let claimed = api
        .store
        .claim_due_deliveries(10, Duration::from_secs(30), &EndpointLimits::default())
        .await?;
    anyhow::ensure!(claimed.len() == 1, "one delivery due");
    api.store
        .record_attempt(
            &claimed[0],
            &AttemptRecord {
                started_at: Utc::now(),
                latency: Duration::from_millis(12),
                status_code: None,
                error: Some(format!(
                    "error sending request for url (https://hooks.example.org/mfr?token={SECRET})"
                )),
                outcome: AttemptOutcome::Retry,
                next_attempt_at: Some(Utc::now() + chrono::Duration::minutes(5)),
            },
            &Health::Down { retry_after: None },
            &HealthPolicy::default(),
            "test",
        )
        .await?;
    api.store.reconcile(Utc::now().date_naive()).await?;

    let since = start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let http = foodseg_http::client()?;
    let mut answers = Vec::new();
    for (method, path) in [
        (reqwest::Method::GET, format!("/jobs/{}/events", job.id)),
        (reqwest::Method::GET, format!("/jobs/{}/deliveries", job.id)),
        (reqwest::Method::POST, format!("/jobs/{}/redeliver", job.id)),
        (
            reqwest::Method::GET,
            format!("/undelivered?since={}", since.replace('+', "%2B")),
        ),
        (reqwest::Method::GET, "/reconciliations".to_string()),
        (reqwest::Method::GET, "/workers".to_string()),
    ] {
        let res = http
            .request(method.clone(), api.url(&path))
            .bearer_auth(&operator)
            .send()
            .await?;
        let (status, body) = json_of(res).await?;
        assert!(
            status.is_success() || status == StatusCode::CONFLICT,
            "{method} {path}: {status} {body}"
        );
        answers.push((path, body.to_string()));
    }
    let deliveries = &answers[1].1;
    assert!(
        deliveries.contains("hooks.example.org/mfr?token=REDACTED"),
        "{deliveries}"
    );
    assert!(answers[3].1.contains("token=REDACTED"), "{}", answers[3].1);
    for (path, body) in &answers {
        assert!(!body.contains(SECRET), "{path} shows the secret: {body}");
    }
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn made_up_keys_are_refused_per_address_and_then_not_looked_up(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (tb, api) = setup_with(&pool, |parts| {
        parts.limits.unauthorized = Some("3/1m".parse().expect("a rate"));
    })
    .await?;
    let operator = new_key(&api, &[Scope::Operator]).await?;
    let from = |ip: &str| -> anyhow::Result<reqwest::Client> {
        Ok(foodseg_http::client_builder()?
            .local_address(ip.parse::<std::net::IpAddr>()?)
            .build()?)
    };
    let get = |client: reqwest::Client, token: String| {
        let url = api.url("/workers");
        async move {
            let res = client.get(url).bearer_auth(token).send().await?;
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            anyhow::Ok((res.status(), retry_after))
        }
    };
    let attacker = from("127.0.0.1")?;
    let well_formed = format!("fsk_{}", "A".repeat(43));
    for token in ["not-a-token", &well_formed, "fsk_short"] {
        let (status, _) = get(attacker.clone(), token.to_string()).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
    }
    // Its budget of refused keys is spent: 429 before any lookup, whatever it sends.
    for token in [well_formed.clone(), operator.clone()] {
        let (status, retry_after) = get(attacker.clone(), token).await?;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s <= 60)));
    }
    // Another address is not affected.
    let (status, _) = get(from("127.0.0.2")?, operator).await?;
    assert_eq!(status, StatusCode::OK);
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

/// Logs in to the console as its own page does; the `Set-Cookie` answered.
async fn console_cookie(api: &LocalApi, key: &str) -> anyhow::Result<String> {
    let res = foodseg_http::client_builder()?
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(api.url("/console/login"))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("key", key)
                .finish(),
        )
        .send()
        .await?;
    anyhow::ensure!(res.status() == StatusCode::SEE_OTHER, "{}", res.status());
    Ok(res.headers()[SET_COOKIE].to_str()?.to_string())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_console_cookie_is_secure_unless_plain_http_is_asked_for(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = new_key(&api, &[Scope::Operator]).await?;
    let cookie = console_cookie(&api, &operator).await?;
    assert!(cookie.contains("; Secure"), "{cookie}");
    api.stop().await?;
    let (insecure_tb, api) =
        setup_with(&pool, |parts| parts.access.console_insecure_cookie = true).await?;
    let cookie = console_cookie(&api, &operator).await?;
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    api.stop().await?;
    tb.cleanup().await;
    insecure_tb.cleanup().await;
    Ok(())
}
