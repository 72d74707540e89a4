//! Shadow runs for operators: `GET /shadow` (who may call it, the numbers it answers from
//! the rows the store holds, what bad parameters get, its OpenAPI entry) and the
//! console's Shadow page.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use foodseg_api::local::{LocalApi, api_key};
use foodseg_engine::store::{ClassCounts, NewShadowResult};
use foodseg_engine::{JobId, Scope};
use foodseg_models::Registry;
use foodseg_testkit::{TestBus, TestModels, new_job};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::{get_json, setup_with};
use crate::console::{page, session};

/// The api on a registry of two models: the shipped one's name and aliases, and a
/// candidate (`candidate-x`, alias `cx`).
async fn start(pool: &PgPool) -> anyhow::Result<(TestModels, TestBus, LocalApi)> {
    let models = TestModels::new(&[
        ("yolov5s-seg-coco", &["124096", "yolov5s-seg"]),
        ("candidate-x", &["cx"]),
    ])?;
    let (tb, api) = setup_with(pool, |parts| {
        parts.registry = Registry::load(&models.dir).expect("test models load");
    })
    .await?;
    Ok((models, tb, api))
}

/// A job made through the store, and its shadow run on `candidate-x`.
async fn shadowed(
    api: &LocalApi,
    seconds: (f64, f64),
    classes: &[(&str, i64, i64, i64)],
) -> anyhow::Result<JobId> {
    let job = api
        .store
        .enqueue(&new_job("https://img.example.org/dish.jpg"), "test")
        .await?;
    let classes: BTreeMap<String, ClassCounts> = classes
        .iter()
        .map(|(name, model, candidate, matched)| {
            let counts = ClassCounts {
                model: *model,
                candidate: *candidate,
                matched: *matched,
            };
            ((*name).to_string(), counts)
        })
        .collect();
    let recorded = api
        .store
        .insert_shadow_result(&NewShadowResult {
            job_id: job.id,
            model_name: "yolov5s-seg-coco".into(),
            model_version: "a".repeat(64),
            candidate: "candidate-x".into(),
            candidate_version: "b".repeat(64),
            items: serde_json::json!([]),
            model_seconds: seconds.0,
            candidate_seconds: seconds.1,
            classes,
        })
        .await?;
    assert!(recorded);
    Ok(job.id)
}

fn near(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-9)
}

#[sqlx::test(migrations = "../../migrations")]
async fn only_operator_keys_compare_shadow_runs(pool: PgPool) -> anyhow::Result<()> {
    let (_models, tb, api) = start(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    let submitter = api_key(&api.store, "mfr", &[Scope::Submit]).await?;
    let path = "/shadow?model=124096&candidate=cx";

    let (status, error) = get_json(&api, path, None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
    assert_eq!(error["error"]["code"], "unauthorized");
    let (status, error) = get_json(&api, path, Some(&submitter)).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");

    let (status, answer) = get_json(&api, path, Some(&operator)).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["model"], "yolov5s-seg-coco",
        "aliases resolve to names"
    );
    assert_eq!(answer["candidate"], "candidate-x");
    assert_eq!(answer["jobs"], 0);
    assert_eq!(answer["classes"], serde_json::json!([]));
    assert_eq!(answer["overall"]["agreement"], Value::Null);
    assert_eq!(answer["model_seconds"]["p50"], Value::Null);
    // The default window is the last 24 hours.
    let since: chrono::DateTime<Utc> = answer["since"].as_str().unwrap_or_default().parse()?;
    let back = Utc::now() - since;
    assert!(
        back >= Duration::hours(24) && back < Duration::hours(24) + Duration::minutes(1),
        "{since}"
    );

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_comparison_adds_up_the_shadow_runs_of_the_pair(pool: PgPool) -> anyhow::Result<()> {
    let (_models, tb, api) = start(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    shadowed(&api, (0.2, 0.4), &[("orange", 2, 2, 2), ("apple", 1, 0, 0)]).await?;
    shadowed(&api, (0.4, 0.8), &[("orange", 1, 2, 1)]).await?;
    shadowed(&api, (0.6, 1.2), &[]).await?;

    let (status, answer) = get_json(
        &api,
        "/shadow?model=yolov5s-seg&candidate=candidate-x",
        Some(&operator),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["jobs"], 3, "{answer:#}");
    assert_eq!(
        answer["agreement_measure"],
        "f1: 2 * matched / (model_items + candidate_items)"
    );
    let classes = answer["classes"].as_array().expect("classes");
    assert_eq!(classes.len(), 2, "{answer:#}");
    let orange = &classes[0];
    assert_eq!(orange["class"], "orange", "most items first");
    assert_eq!(
        (
            &orange["model_items"],
            &orange["candidate_items"],
            &orange["matched"]
        ),
        (&Value::from(3), &Value::from(4), &Value::from(3))
    );
    assert!(near(&orange["agreement"], 6.0 / 7.0), "{orange}");
    assert_eq!(classes[1]["class"], "apple");
    assert!(near(&classes[1]["agreement"], 0.0));
    let overall = &answer["overall"];
    assert_eq!(overall["model_items"], 4);
    assert_eq!(overall["candidate_items"], 4);
    assert_eq!(overall["matched"], 3);
    assert!(near(&overall["agreement"], 0.75), "{overall}");
    assert!(near(&answer["model_seconds"]["p50"], 0.4));
    assert!(near(&answer["model_seconds"]["p95"], 0.58));
    assert!(near(&answer["candidate_seconds"]["p50"], 0.8));
    assert!(near(&answer["candidate_seconds"]["p95"], 1.16));
    let versions = answer["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["model_version"], "a".repeat(64));
    assert_eq!(versions[0]["candidate_version"], "b".repeat(64));
    assert_eq!(versions[0]["jobs"], 3);

    // The other way round is another pair (none), and a later window has no run.
    let (_, swapped) = get_json(&api, "/shadow?model=cx&candidate=124096", Some(&operator)).await?;
    assert_eq!(swapped["jobs"], 0);
    let later = (Utc::now() + Duration::hours(1))
        .to_rfc3339()
        .replace('+', "%2B");
    let (status, none) = get_json(
        &api,
        &format!("/shadow?model=124096&candidate=cx&since={later}"),
        Some(&operator),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(none["jobs"], 0);

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn bad_parameters_get_clear_errors(pool: PgPool) -> anyhow::Result<()> {
    let (_models, tb, api) = start(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;
    for (query, field) in [
        ("model=nope&candidate=cx", "model"),
        ("model=124096&candidate=nope", "candidate"),
    ] {
        let (status, error) = get_json(&api, &format!("/shadow?{query}"), Some(&operator)).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {error}");
        assert_eq!(error["error"]["code"], "unknown_model", "{query}");
        assert_eq!(error["error"]["field"], field, "{query}");
        let known = error["error"]["known_ids"].as_array().expect("known ids");
        assert!(known.contains(&Value::from("cx")), "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("\"nope\"")),
            "{error}"
        );
    }
    let (status, error) = get_json(
        &api,
        "/shadow?model=124096&candidate=cx&since=yesterday",
        Some(&operator),
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["code"], "invalid_parameter");
    assert_eq!(error["error"]["field"], "since");
    for query in ["model=124096", "candidate=cx", ""] {
        let (status, error) = get_json(&api, &format!("/shadow?{query}"), Some(&operator)).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {error}");
    }

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn openapi_documents_the_shadow_route(pool: PgPool) -> anyhow::Result<()> {
    let (_models, tb, api) = start(&pool).await?;
    let doc: Value = foodseg_http::client()?
        .get(api.url("/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let op = &doc["paths"]["/shadow"]["get"];
    assert!(op.is_object(), "no GET /shadow in {:#}", doc["paths"]);
    assert!(op["security"][0]["bearer"].is_array(), "{op:#}");
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(params, ["model", "candidate", "since"], "{op:#}");
    for status in ["200", "400", "401", "403", "422", "503"] {
        assert!(op["responses"][status].is_object(), "{status} missing");
    }
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_shadow_page_lists_the_pairs_and_compares_one(pool: PgPool) -> anyhow::Result<()> {
    let (_models, tb, api) = start(&pool).await?;
    let operator = api_key(&api.store, "ops", &[Scope::Operator]).await?;

    let client = foodseg_http::client_builder()?
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let res = client.get(api.url("/console/shadow")).send().await?;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "an operator session first"
    );
    assert_eq!(res.headers()[LOCATION], "/console/login");

    let cookie = session(&api, &operator).await?;
    let (status, html) = page(&api, &cookie, "/console/shadow").await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<h1>Shadow runs"), "{html}");
    assert!(html.contains("id=\"no-shadow\""), "the empty state: {html}");
    assert!(
        !html.contains("id=\"classes\""),
        "nothing to compare: {html}"
    );
    let (_, overview) = page(&api, &cookie, "/console").await?;
    assert!(
        overview.contains("href=\"/console/shadow\""),
        "linked from the nav"
    );

    shadowed(&api, (0.2, 0.3), &[("orange", 2, 2, 2), ("apple", 2, 0, 0)]).await?;
    // The pair that ran last is compared by default.
    let (status, html) = page(&api, &cookie, "/console/shadow").await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("data-pair=\"yolov5s-seg-coco/candidate-x\""),
        "{html}"
    );
    assert!(
        html.contains("yolov5s-seg-coco vs candidate-x <small>1 job(s)</small>"),
        "{html}"
    );
    let row = |class: &str| {
        html.split(&format!("data-class=\"{class}\""))
            .nth(1)
            .and_then(|rest| rest.split("</tr>").next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {class} row in {html}"))
    };
    let orange = row("orange");
    assert!(
        orange.contains("<td class=\"agreement\">1.00</td>"),
        "{orange}"
    );
    let apple = row("apple");
    assert!(apple.contains("0.00"), "{apple}");
    assert!(
        html.contains("<tr data-class=\"apple\" class=\"warn\">"),
        "{html}"
    );
    assert!(html.contains("200 ms"), "model p50: {html}");
    assert!(html.contains("300 ms"), "candidate p50: {html}");
    assert!(
        html.contains("<code>aaaaaaaaaaaa</code>"),
        "short versions: {html}"
    );

    // Asked for by alias, the same pair; a window after the runs shows none.
    let (status, by_alias) =
        page(&api, &cookie, "/console/shadow?model=124096&candidate=cx").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(by_alias.contains("data-class=\"orange\""), "{by_alias}");
    let later = (Utc::now() + Duration::hours(1))
        .to_rfc3339()
        .replace('+', "%2B");
    let (_, empty) = page(
        &api,
        &cookie,
        &format!("/console/shadow?model=124096&candidate=cx&since={later}"),
    )
    .await?;
    assert!(empty.contains("id=\"no-classes\""), "{empty}");
    assert!(
        empty.contains("class=\"dim\""),
        "no run of the pair in the window: {empty}"
    );

    for (query, expected) in [
        ("model=nope&candidate=cx", "unknown model"),
        ("model=124096", "name both a model and a candidate"),
        ("since=yesterday", "RFC 3339"),
    ] {
        let (status, html) = page(&api, &cookie, &format!("/console/shadow?{query}")).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {html}");
        assert!(html.contains(expected), "{query}: {html}");
    }

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
