//! The api follows the models directory: a model added while it runs is accepted without
//! a restart.

use std::time::Duration;

use crate::common::{post_json, setup_with};

use foodseg_models::Registry;
use foodseg_runtime::ModelsWatch;
use foodseg_testkit::{TestModels, wait_until};
use reqwest::StatusCode;
use sqlx::PgPool;

const DEADLINE: Duration = Duration::from_secs(15);

#[sqlx::test(migrations = "../../migrations")]
async fn a_model_added_to_the_directory_is_accepted_without_a_restart(
    pool: PgPool,
) -> anyhow::Result<()> {
    let models = TestModels::new(&[("alpha", &["a1"])])?;
    let (tb, api) = setup_with(&pool, |parts| {
        parts.registry = Registry::load(&models.dir).expect("test models load");
        parts.models_watch = Some((
            ModelsWatch::new(models.dir.clone(), Some(Duration::from_millis(100))),
            None,
        ));
    })
    .await?;
    let body = |model: &str| {
        format!(r#"{{"image_url": "http://127.0.0.1:9/a.jpg", "model_id": "{model}"}}"#)
    };
    let (status, answer) = post_json(&api, "/enqueue", None, &body("b1")).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    // A second model directory appears beside the first.
    let added = TestModels::new(&[("beta", &["b1"])])?;
    std::fs::rename(added.dir.join("beta"), models.dir.join("beta"))?;
    let accepted = wait_until(DEADLINE, || async {
        let (status, answer) = post_json(&api, "/enqueue", None, &body("b1")).await?;
        anyhow::Ok((status == StatusCode::OK).then_some(answer))
    })
    .await?;
    assert_eq!(accepted["model_identifier"], "b1");
    // The first model is still there.
    let (status, answer) = post_json(&api, "/enqueue", None, &body("a1")).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
