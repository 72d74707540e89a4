//! `foodseg eval` against the real stack: the two fixture photos with hand-drawn ground
//! truth go through the api and worker; the detections and metrics files are written,
//! the table printed, the numbers agree with pycocotools on the written detections, and
//! a second run compares itself with the first.

use std::path::Path;

use foodseg_api::local::start_api;
use foodseg_cli::eval::report::MetricsFile;
use foodseg_cli::eval::{Dataset, Segmentation};
use foodseg_testkit::TestBus;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::against_stack::{fixture, foodseg, scratch_dir, text, worker_config};
use crate::cocoeval::{reference_numbers, reference_python};

/// Rough outlines of the fixture photos' objects, drawn by hand.
fn ground_truth() -> Value {
    let objects: [(i64, i64, u32, u32, Vec<f64>); 4] = [
        // The orange wedge in the middle of fruits.jpg.
        (
            1,
            1,
            512,
            480,
            vec![
                75.0, 250.0, 100.0, 150.0, 170.0, 80.0, 240.0, 45.0, 265.0, 90.0, 300.0, 200.0,
                340.0, 320.0, 345.0, 440.0, 300.0, 470.0, 200.0, 460.0, 140.0, 420.0, 100.0, 330.0,
            ],
        ),
        // The whole orange cut off at the top left.
        (
            2,
            1,
            512,
            480,
            vec![
                0.0, 20.0, 40.0, 0.0, 110.0, 0.0, 150.0, 50.0, 150.0, 95.0, 0.0, 100.0,
            ],
        ),
        // The cup of coffee.png, handle included.
        (
            3,
            2,
            600,
            400,
            vec![
                175.0, 60.0, 230.0, 25.0, 330.0, 20.0, 395.0, 50.0, 405.0, 110.0, 380.0, 200.0,
                330.0, 250.0, 270.0, 285.0, 240.0, 300.0, 200.0, 300.0, 195.0, 260.0, 190.0, 200.0,
                178.0, 130.0,
            ],
        ),
        // The spoon beside it.
        (
            4,
            2,
            600,
            400,
            vec![
                330.0, 250.0, 370.0, 220.0, 395.0, 150.0, 410.0, 70.0, 422.0, 70.0, 410.0, 160.0,
                400.0, 230.0, 405.0, 290.0, 380.0, 320.0, 345.0, 325.0, 325.0, 300.0,
            ],
        ),
    ];
    let category = |id: i64| match id {
        1 | 2 => 1,
        3 => 2,
        _ => 3,
    };
    let annotations: Vec<Value> = objects
        .iter()
        .map(|(id, image, w, h, polygon)| {
            let xs = polygon.iter().step_by(2);
            let ys = polygon.iter().skip(1).step_by(2);
            let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let area = Segmentation::Polygons(vec![polygon.clone()])
                .to_rle(*h, *w)
                .map_or(0, |m| m.area());
            json!({"id": id, "image_id": image, "category_id": category(*id), "iscrowd": 0,
                   "area": area, "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [polygon]})
        })
        .collect();
    json!({
        "images": [
            {"id": 1, "file_name": "fruits.jpg", "width": 512, "height": 480},
            {"id": 2, "file_name": "coffee.png", "width": 600, "height": 400},
        ],
        "categories": [
            {"id": 1, "name": "orange"},
            {"id": 2, "name": "cup"},
            {"id": 3, "name": "spoon"},
        ],
        "annotations": annotations,
    })
}

#[sqlx::test(migrations = "../../migrations")]
async fn eval_writes_detections_and_metrics_and_compares_runs(pool: PgPool) -> anyhow::Result<()> {
    let bus = TestBus::new().await?;
    let api = start_api(pool.clone(), bus.subjects.clone(), &bus.url).await?;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(foodseg_worker::run(
        worker_config(&pool, &bus)?,
        shutdown.clone(),
    ));
    let dir = scratch_dir();
    let truth = dir.join("gt.json");
    std::fs::write(&truth, serde_json::to_string_pretty(&ground_truth())?)?;
    let photos = fixture("fruits.jpg");
    let photos = photos.parent().unwrap_or(Path::new("."));
    let (first, second) = (dir.join("first"), dir.join("second"));
    let arg = |p: &Path| p.to_string_lossy().into_owned();
    let base = [
        "eval".to_string(),
        "--annotations".into(),
        arg(&truth),
        "--images".into(),
        arg(photos),
        "--concurrency".into(),
        "2".into(),
        "--timeout".into(),
        "180".into(),
    ];

    let mut args: Vec<String> = base.to_vec();
    args.extend(["--out".into(), arg(&first)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = foodseg(&api, &args).await?;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("2 of 2 images evaluated"), "{stdout}");
    assert!(!stdout.contains("cannot line up"), "{stdout}");
    for row in ["AP50", "AR100", "AP orange", "AP cup"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no {row} row in:\n{stdout}"
        );
    }

    // The files: COCO results of known categories, and metrics pycocotools agrees with.
    let dets_path = first.join("detections.json");
    let detections: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&dets_path)?)?;
    assert!(!detections.is_empty(), "no detections in {stdout}");
    for d in &detections {
        assert!(
            [1, 2, 3].contains(&d["category_id"].as_i64().unwrap_or(0)),
            "{d}"
        );
        assert!([1, 2].contains(&d["image_id"].as_i64().unwrap_or(0)), "{d}");
        assert_eq!(d["bbox"].as_array().map(Vec::len), Some(4), "{d}");
        assert!(
            d["score"].is_number() && d["segmentation"].is_array(),
            "{d}"
        );
    }
    let metrics: MetricsFile =
        serde_json::from_str(&std::fs::read_to_string(first.join("metrics.json"))?)?;
    let expected = reference_numbers(&reference_python()?, &truth, &dets_path)?;
    for (kind, stats) in [("bbox", metrics.bbox), ("segm", metrics.segm)] {
        for (name, value) in stats.named() {
            let theirs = expected[kind][name].as_f64().unwrap_or(f64::NAN);
            assert!(
                (value - theirs).abs() <= 1e-4,
                "{kind} {name}: ours {value}, pycocotools {theirs}"
            );
        }
    }
    // The written files evaluate to the same numbers when read back.
    let dataset = Dataset::from_json(&std::fs::read_to_string(&truth)?)?;
    let reread = foodseg_cli::eval::dataset::detections_from_json(
        &std::fs::read_to_string(&dets_path)?,
        &dataset,
    )?;
    assert_eq!(reread.len(), detections.len());
    // The oranges and the cup are found well enough to score at IoU 0.5.
    assert!(metrics.per_category["orange"].bbox > 0.0, "{stdout}");
    assert!(metrics.per_category["cup"].bbox > 0.0, "{stdout}");

    // A second run compared with the first.
    let mut args: Vec<String> = base.to_vec();
    args.extend([
        "--out".into(),
        arg(&second),
        "--compare".into(),
        arg(&first),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = foodseg(&api, &args).await?;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("change against"), "{stdout}");
    let compared = stdout
        .split("change against")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(compared.contains("change"), "{stdout}");
    // The same model on the same photos: next to no change.
    let ap_change = compared
        .lines()
        .find(|l| l.starts_with("AP "))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|c| c.parse::<f64>().ok());
    assert!(ap_change.is_some_and(|c| c.abs() < 0.05), "{stdout}");

    // A missing comparison fails before any work.
    let mut args: Vec<String> = base.to_vec();
    args.extend([
        "--out".into(),
        arg(&dir.join("third")),
        "--compare".into(),
        arg(&dir.join("nowhere")),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = foodseg(&api, &args).await?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("metrics.json"),
        "{}",
        text(&out.stderr)
    );

    shutdown.cancel();
    worker.await??;
    api.stop().await?;
    bus.cleanup().await;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
