//! The operator console over HTTP (the browser test drives the same pages in Chromium):
//! login with a key, the session cookie, pages, CSRF-checked actions, refusals.

use foodseg_api::local::{LocalApi, api_key};
use foodseg_engine::{JobStatus, Scope};
use foodseg_testkit::{finished_job, new_job};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use sqlx::PgPool;

use crate::common::setup;

/// A client that shows redirects instead of following them.
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(foodseg_http::client_builder()?
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// A form post (`application/x-www-form-urlencoded`) with the session cookie, if any.
pub(crate) async fn post_form(
    url: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> anyhow::Result<reqwest::Response> {
    post_form_with(url, cookie, fields, &[]).await
}

/// [`post_form`] with more headers.
async fn post_form_with(
    url: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> anyhow::Result<reqwest::Response> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = client()?
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Ok(request.send().await?)
}

/// Posts the login form as the console's own page does (a browser says where the form
/// came from); the answer.
async fn login(api: &LocalApi, key: &str) -> anyhow::Result<reqwest::Response> {
    post_form_with(
        &api.url("/console/login"),
        None,
        &[("key", key)],
        &[("sec-fetch-site", "same-origin"), ("origin", &api.base_url)],
    )
    .await
}

/// Logs in; the `name=value` of the session cookie.
pub(crate) async fn session(api: &LocalApi, key: &str) -> anyhow::Result<String> {
    let res = login(api, key).await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = res.headers()[SET_COOKIE].to_str()?.to_string();
    Ok(cookie.split(';').next().unwrap_or_default().to_string())
}

pub(crate) async fn page(
    api: &LocalApi,
    cookie: &str,
    path: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let res = client()?
        .get(api.url(path))
        .header(COOKIE, cookie)
        .send()
        .await?;
    Ok((res.status(), res.text().await?))
}

/// The CSRF token in a page's forms.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap_or_default().to_string()
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_key_logs_in_once_and_the_cookie_carries_the_session(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let submitter = api_key(&api.store, "mfr", &[Scope::Submit]).await?;

    // Without a session, pages send to the login page and actions are refused.
    let res = client()?.get(api.url("/console")).send().await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/console/login");
    let res = client()?
        .post(api.url(&format!(
            "/console/jobs/{}/cancel",
            foodseg_engine::JobId::new()
        )))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Wrong keys are refused on the login page, with the reason.
    let res = login(&api, "fsk_not-a-key").await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(SET_COOKIE).is_none());
    assert!(res.text().await?.contains("Unknown or revoked API key."));
    let res = login(&api, &submitter).await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await?.contains("lacks scope operator"));

    // The login form is taken only from the console's own origin: another site's form, or
    // a request that says nothing of its origin, opens no session.
    for headers in [
        &[][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "https://evil.example.org")][..],
        &[("origin", "null")][..],
    ] {
        let res = post_form_with(
            &api.url("/console/login"),
            None,
            &[("key", &operator)],
            headers,
        )
        .await?;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(res.headers().get(SET_COOKIE).is_none(), "{headers:?}");
    }
    // A browser without Sec-Fetch-Site still sends Origin.
    let res = post_form_with(
        &api.url("/console/login"),
        None,
        &[("key", &operator)],
        &[("origin", &api.base_url)],
    )
    .await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // An operator key opens a session: Secure (by default, whatever the scheme),
    // HttpOnly, SameSite=Strict, only under /console.
    let res = login(&api, &operator).await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/console");
    let set = res.headers()[SET_COOKIE].to_str()?.to_string();
    for part in [
        "foodseg_console=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Secure",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains(&operator), "the cookie is not the key");
    let cookie = set.split(';').next().unwrap().to_string();

    let res = client()?
        .get(api.url("/console"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"]
        .to_str()?
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await?;
    assert!(html.contains("Jobs by model and state"), "{html}");
    assert!(html.contains("key <b>ops</b>"));

    // Logging out needs the CSRF token, and ends the session.
    let res = post_form(
        &api.url("/console/logout"),
        Some(&cookie),
        &[("csrf", "forged")],
    )
    .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post_form(
        &api.url("/console/logout"),
        Some(&cookie),
        &[("csrf", &csrf_of(&html))],
    )
    .await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (status, _) = page(&api, &cookie, "/console").await?;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Revoking the key ends its sessions.
    let cookie = session(&api, &operator).await?;
    assert_eq!(page(&api, &cookie, "/console").await?.0, StatusCode::OK);
    api.store.revoke_api_key("ops").await?;
    assert_eq!(
        page(&api, &cookie, "/console").await?.0,
        StatusCode::SEE_OTHER
    );

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn jobs_are_listed_searched_shown_and_acted_on(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let cookie = session(&api, &operator).await?;
    let finished = finished_job(&api.store).await?;
    let queued = api
        .store
        .enqueue(&new_job("https://img.example.org/queued.jpg"), "test")
        .await?
        .id;

    let (status, html) = page(&api, &cookie, "/console/jobs").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&finished.to_string()) && html.contains(&queued.to_string()));
    let (_, html) = page(&api, &cookie, "/console/jobs?status=queued").await?;
    assert!(html.contains(&queued.to_string()) && !html.contains(&finished.to_string()));
    let (_, html) = page(
        &api,
        &cookie,
        "/console/jobs?q=https%3A%2F%2Fimg.example.org%2Fqueued.jpg",
    )
    .await?;
    assert!(html.contains(&queued.to_string()) && !html.contains(&finished.to_string()));
    // A job id in the search box opens the job.
    let res = client()?
        .get(api.url(&format!("/console/jobs?q={queued}")))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(res.headers()[LOCATION], format!("/console/jobs/{queued}"));
    // Bad filters get a clear 400.
    let (status, html) = page(&api, &cookie, "/console/jobs?status=done&from=yesterday").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("is not one of queued, running, succeeded, failed"),
        "{html}"
    );
    let (status, _) = page(&api, &cookie, "/console/jobs/not-a-job").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The queued job's page offers cancel; a forged form is refused, the real one works.
    let (status, html) = page(&api, &cookie, &format!("/console/jobs/{queued}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"cancel\"") && !html.contains("id=\"redeliver\""));
    let cancel = api.url(&format!("/console/jobs/{queued}/cancel"));
    let res = post_form(&cancel, Some(&cookie), &[("csrf", "forged")]).await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        api.store.get(queued).await?.unwrap().status,
        JobStatus::Queued
    );
    let res = post_form(&cancel, Some(&cookie), &[("csrf", &csrf_of(&html))]).await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let job = api.store.get(queued).await?.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.message, "cancelled by operator");
    let events = api.store.events(queued).await?;
    assert_eq!(events.last().unwrap().actor, "console:ops");
    // Cancelling twice is a conflict, shown as such.
    let res = post_form(&cancel, Some(&cookie), &[("csrf", &csrf_of(&html))]).await?;
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // The finished job's webhook is still pending: no redeliver yet.
    let (_, html) = page(&api, &cookie, &format!("/console/jobs/{finished}")).await?;
    assert!(html.contains("MFR.Job.SUCCESS") && !html.contains("id=\"redeliver\""));
    assert!(html.contains("msg_"), "the pending delivery is listed");

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_worker_registry_is_an_operator_route_and_on_the_overview(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    api.store
        .heartbeat(&foodseg_engine::store::WorkerInfo {
            id: "gpu-worker-1".into(),
            models: vec!["yolov5s-seg-coco".into()],
            concurrency: 4,
            version: "1.2.3".into(),
        })
        .await?;
    let res = client()?.get(api.url("/workers")).send().await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client()?
        .get(api.url("/workers"))
        .bearer_auth(&operator)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["workers"][0]["id"], "gpu-worker-1");
    assert_eq!(body["workers"][0]["models"][0], "yolov5s-seg-coco");
    assert_eq!(body["workers"][0]["live"], true);

    let cookie = session(&api, &operator).await?;
    let (_, html) = page(&api, &cookie, "/console").await?;
    assert!(
        html.contains("gpu-worker-1") && html.contains(">live<"),
        "{html}"
    );

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_job_list_pages_by_key_without_gaps_or_repeats(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let cookie = session(&api, &operator).await?;
    let mut ids = Vec::new();
    for i in 0..55 {
        let job = new_job(&format!("https://img.example.org/{i}.jpg"));
        ids.push(api.store.enqueue(&job, "test").await?.id.to_string());
    }
    let links = |html: &str| -> Vec<String> {
        html.split("class=\"job-link\" href=\"/console/jobs/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or_default().to_string())
            .collect()
    };
    let (_, first) = page(&api, &cookie, "/console/jobs?status=queued").await?;
    let mut seen = links(&first);
    assert_eq!(seen.len(), 50);
    let older = first
        .split("id=\"older\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to older jobs")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(older.contains("status=queued"), "{older}");
    let (status, second) = page(&api, &cookie, &older).await?;
    assert_eq!(status, StatusCode::OK);
    seen.extend(links(&second));
    assert!(!second.contains("id=\"older\""), "{older}");
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, every job once");
    let (status, html) = page(&api, &cookie, "/console/jobs?before=bm9wZQ").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("not one the console made"), "{html}");

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
