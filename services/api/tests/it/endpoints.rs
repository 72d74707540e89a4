//! Webhook endpoints for operators: `GET /endpoints`, pausing and resuming one by hand
//! (`POST /endpoints/pause`, `/endpoints/resume`) and the console's page and forms that
//! do the same; who may call them, what bad bodies get, and that an endpoint named by
//! any URL of it is the one Postgres finds.

use foodseg_api::local::{LocalApi, api_key};
use foodseg_engine::Scope;
use foodseg_testkit::finished_job;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{get_json, post_json, setup};
use crate::console::{csrf_of, page, post_form, session};

/// The endpoint of the webhook URL of [`foodseg_testkit::new_job`]
/// (`https://mfr.example.org/hook`).
const ENDPOINT: &str = "https://mfr.example.org:443";

async fn get(api: &LocalApi, key: Option<&str>) -> anyhow::Result<(StatusCode, Value)> {
    get_json(api, "/endpoints", key).await
}

async fn steer(
    api: &LocalApi,
    action: &str,
    key: &str,
    endpoint: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let body = json!({ "endpoint": endpoint }).to_string();
    post_json(api, &format!("/endpoints/{action}"), Some(key), &body).await
}

#[sqlx::test(migrations = "../../migrations")]
async fn only_operator_keys_see_and_steer_endpoints(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let submitter = api_key(&api.store, "mfr", &[Scope::Submit]).await?;
    finished_job(&api.store).await?;
    let body = json!({ "endpoint": ENDPOINT }).to_string();

    let (status, error) = get(&api, None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
    assert_eq!(get(&api, Some(&submitter)).await?.0, StatusCode::FORBIDDEN);
    for path in ["/endpoints/pause", "/endpoints/resume"] {
        let (status, error) = post_json(&api, path, None, &body).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {error}");
        assert_eq!(error["error"]["code"], "unauthorized");
        let (status, _) = post_json(&api, path, Some(&submitter), &body).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (_, listed) = get(&api, Some(&operator)).await?;
    assert_eq!(listed["endpoints"][0]["state"], "active", "{listed}");
    assert!(listed["events"].as_array().unwrap().is_empty(), "{listed}");

    for path in ["/endpoints/pause", "/endpoints/resume"] {
        let (status, answer) = post_json(&api, path, Some(&operator), &body).await?;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_operator_pauses_and_resumes_an_endpoint_by_hand(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    finished_job(&api.store).await?;

    // The finished job's webhook made the endpoint: active, its delivery waiting.
    let (status, listed) = get(&api, Some(&operator)).await?;
    assert_eq!(status, StatusCode::OK);
    let endpoint = &listed["endpoints"][0];
    assert_eq!(endpoint["endpoint"], ENDPOINT, "{listed}");
    assert_eq!(endpoint["state"], "active");
    assert_eq!(endpoint["manual"], false);
    assert_eq!(endpoint["waiting"], 1);
    assert_eq!(endpoint["in_flight"], 0);
    assert_eq!(endpoint["failures"], 0);
    assert!(endpoint["paused_at"].is_null() && endpoint["last_error"].is_null());
    assert!(endpoint["updated_at"].as_str().unwrap().ends_with('Z'));

    // Named by a URL of it (its user info, path and query are not the endpoint's).
    let (status, paused) = steer(
        &api,
        "pause",
        &operator,
        "HTTPS://someone@MFR.example.org/other/hook?token=abc",
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["changed"], true);
    let view = &paused["endpoint"];
    assert_eq!(view["endpoint"], ENDPOINT);
    assert_eq!(view["state"], "paused");
    assert_eq!(view["manual"], true);
    assert_eq!(view["paused_by"], "key:ops");
    assert!(view["paused_at"].as_str().unwrap().ends_with('Z'), "{view}");
    assert!(
        view["next_probe_at"].is_null(),
        "no probe while paused by hand"
    );
    assert_eq!(view["waiting"], 1);

    // Again: nothing changes.
    let (status, again) = steer(&api, "pause", &operator, ENDPOINT).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["changed"], false);
    assert_eq!(again["endpoint"]["state"], "paused");

    let (status, resumed) = steer(&api, "resume", &operator, ENDPOINT).await?;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["changed"], true);
    assert_eq!(resumed["endpoint"]["state"], "active");
    assert_eq!(resumed["endpoint"]["manual"], false);
    assert!(resumed["endpoint"]["paused_by"].is_null());
    let (_, again) = steer(&api, "resume", &operator, "https://mfr.example.org/hook").await?;
    assert_eq!(again["changed"], false);

    // Both changes are events, newest first, with the key that made them.
    let (_, listed) = get(&api, Some(&operator)).await?;
    let events = listed["events"].as_array().unwrap();
    let actions: Vec<_> = events.iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions, [json!("resumed"), json!("paused")], "{listed}");
    for event in events {
        assert_eq!(event["endpoint"], ENDPOINT);
        assert_eq!(event["actor"], "key:ops");
        assert!(event["at"].as_str().unwrap().ends_with('Z'));
    }

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn unknown_endpoints_and_bad_bodies_get_clear_refusals(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    finished_job(&api.store).await?;

    for action in ["pause", "resume"] {
        let (status, error) = steer(
            &api,
            action,
            &operator,
            "https://nobody.example.org/hook?token=s3cr3t",
        )
        .await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
        assert_eq!(error["error"]["code"], "endpoint_not_found");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("https://nobody.example.org:443"),
            "{message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");
    }
    let long = format!("https://h.example.org/{}", "a".repeat(3000));
    let nul = json!({ "endpoint": "https://mfr.example.org\u{0}" }).to_string();
    for (body, status, code) in [
        ("", StatusCode::BAD_REQUEST, "invalid_json"),
        ("{", StatusCode::BAD_REQUEST, "invalid_json"),
        (
            "[\"https://mfr.example.org\"]",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        ("{}", StatusCode::UNPROCESSABLE_ENTITY, "missing_field"),
        (
            r#"{"endpoint": null}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
        ),
        (
            r#"{"endpoint": 443}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
        ),
        (
            r#"{"endpoint": "  "}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_field",
        ),
        (&nul, StatusCode::UNPROCESSABLE_ENTITY, "invalid_url"),
        (
            &json!({ "endpoint": long }).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
    ] {
        let (got, error) = post_json(&api, "/endpoints/pause", Some(&operator), body).await?;
        assert_eq!(got, status, "{body:.40}: {error}");
        assert_eq!(error["error"]["code"], code, "{body:.40}");
    }
    // Nothing was paused by any of them.
    let (_, listed) = get(&api, Some(&operator)).await?;
    assert_eq!(listed["endpoints"][0]["state"], "active");

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_last_error_is_shown_without_the_urls_secrets(pool: PgPool) -> anyhow::Result<()> {
    const SECRET: &str = "s3cr3t-t0ken";
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    finished_job(&api.store).await?;
    // As the schedulers record a failed attempt whose error quotes the URL.
    sqlx::query(
        "UPDATE webhook_endpoints SET failures = 3, last_failure_at = now(), last_error = $1",
    )
    .bind(format!(
        "error sending request for url (https://mfr.example.org/hook?token={SECRET})"
    ))
    .execute(&pool)
    .await?;

    let (_, listed) = get(&api, Some(&operator)).await?;
    let endpoint = &listed["endpoints"][0];
    assert_eq!(endpoint["failures"], 3);
    assert!(endpoint["last_failure_at"].is_string(), "{endpoint}");
    let error = endpoint["last_error"].as_str().unwrap();
    assert!(error.contains("token=REDACTED"), "{error}");
    let cookie = session(&api, &operator).await?;
    let (_, html) = page(&api, &cookie, "/console/endpoints").await?;
    for shown in [listed.to_string(), html] {
        assert!(!shown.contains(SECRET), "{shown}");
    }

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn endpoints_are_paused_and_resumed_in_the_console(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let cookie = session(&api, &operator).await?;

    let (status, html) = page(&api, &cookie, "/console/endpoints").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No webhook endpoint yet"), "{html}");
    let (_, overview) = page(&api, &cookie, "/console").await?;
    assert!(
        overview.contains("href=\"/console/endpoints\""),
        "linked from the nav"
    );

    finished_job(&api.store).await?;
    let (_, html) = page(&api, &cookie, "/console/endpoints").await?;
    assert!(
        html.contains(&format!("data-endpoint=\"{ENDPOINT}\"")),
        "{html}"
    );
    assert!(html.contains(">active<") && html.contains("class=\"pause danger\""));
    let csrf = csrf_of(&html);

    // The forms need the session's CSRF token.
    let pause = api.url("/console/endpoints/pause");
    let res = post_form(
        &pause,
        Some(&cookie),
        &[("csrf", "forged"), ("endpoint", ENDPOINT)],
    )
    .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post_form(
        &pause,
        Some(&cookie),
        &[("csrf", &csrf), ("endpoint", ENDPOINT)],
    )
    .await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/console/endpoints?done=paused");
    let (_, html) = page(&api, &cookie, "/console/endpoints?done=paused").await?;
    assert!(
        html.contains("id=\"notice\"") && html.contains("paused by hand"),
        "{html}"
    );
    assert!(
        html.contains("by console:ops") && html.contains("by hand</b>"),
        "{html}"
    );
    assert!(
        html.contains("class=\"resume\""),
        "a paused endpoint offers Resume"
    );
    let view = &api.store.endpoints(10).await?[0];
    assert_eq!(view.paused_by.as_deref(), Some("console:ops"));
    assert!(view.manual);

    // Pausing again changes nothing, and says so.
    let res = post_form(
        &pause,
        Some(&cookie),
        &[("csrf", &csrf), ("endpoint", ENDPOINT)],
    )
    .await?;
    assert_eq!(res.headers()[LOCATION], "/console/endpoints?done=unchanged");

    let resume = api.url("/console/endpoints/resume");
    let res = post_form(
        &resume,
        Some(&cookie),
        &[("csrf", &csrf), ("endpoint", ENDPOINT)],
    )
    .await?;
    assert_eq!(res.headers()[LOCATION], "/console/endpoints?done=resumed");
    let (_, html) = page(&api, &cookie, "/console/endpoints?done=resumed").await?;
    assert!(html.contains("Endpoint resumed"), "{html}");
    assert!(html.contains(">active<") && html.contains("class=\"pause danger\""));
    // The events below the table, newest first.
    let events = html
        .split("id=\"endpoint-events\"")
        .nth(1)
        .unwrap_or_default();
    let resumed = events.find(">resumed<").expect("the resume is listed");
    let paused = events.find(">paused<").expect("the pause is listed");
    assert!(resumed < paused, "{events}");

    // An unknown endpoint, or none, is refused with the reason.
    let res = post_form(
        &pause,
        Some(&cookie),
        &[("csrf", &csrf), ("endpoint", "https://nobody.example.org")],
    )
    .await?;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await?.contains("no webhook endpoint"));
    let res = post_form(&pause, Some(&cookie), &[("csrf", &csrf)]).await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn openapi_documents_the_endpoint_routes(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let doc: Value = foodseg_http::client()?
        .get(api.url("/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let paths = &doc["paths"];
    let list = &paths["/endpoints"]["get"];
    assert!(list.is_object(), "no GET /endpoints in {paths:#}");
    for status in ["200", "401", "403", "503"] {
        assert!(
            list["responses"][status].is_object(),
            "GET: {status} missing"
        );
    }
    for path in ["/endpoints/pause", "/endpoints/resume"] {
        let op = &paths[path]["post"];
        assert!(op.is_object(), "no POST {path}");
        assert!(op["security"][0]["bearer"].is_array(), "{path}: {op:#}");
        let body = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(body.is_object(), "{path}: no JSON body in {op:#}");
        for status in ["200", "400", "401", "403", "404", "413", "422", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{path}: {status} missing"
            );
        }
    }
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
