//! `POST /v2/uploads` over HTTP against the real Postgres (a database per test) and NATS
//! (streams per test): raw and multipart bodies, the size cap, type sniffing, every
//! rejection writing nothing, and the OpenAPI description the CLI looks for.

use std::time::Duration;

use crate::common::{fixture, json_of, new_key, setup, setup_with};
use foodseg_api::local::LocalApi;
use foodseg_engine::Scope;
use foodseg_testkit::{TestBus, repo_models_dir, wait_until};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sqlx::PgPool;

const DEADLINE: Duration = Duration::from_secs(15);

/// Query, body, expected status, error code and field.
type RejectCase = (
    &'static str,
    Vec<u8>,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

async fn post_raw(
    api: &LocalApi,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<(StatusCode, Value)> {
    let res = foodseg_http::client()?
        .post(api.url(&format!("/v2/uploads{query}")))
        .bearer_auth(new_key(api, &[Scope::Submit]).await?)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    json_of(res).await
}

async fn post_form(api: &LocalApi, query: &str, form: Form) -> anyhow::Result<(StatusCode, Value)> {
    let res = foodseg_http::client()?
        .post(api.url(&format!("/v2/uploads{query}")))
        .bearer_auth(new_key(api, &[Scope::Submit]).await?)
        .multipart(form)
        .send()
        .await?;
    json_of(res).await
}

/// (jobs, job_events, outbox, uploads) row counts.
async fn counts(pool: &PgPool) -> anyhow::Result<(i64, i64, i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM jobs) AS "jobs!",
                  (SELECT count(*) FROM job_events) AS "events!",
                  (SELECT count(*) FROM outbox) AS "outbox!",
                  (SELECT count(*) FROM uploads) AS "uploads!""#
    )
    .fetch_one(pool)
    .await?;
    Ok((r.jobs, r.events, r.outbox, r.uploads))
}

/// (content_type, filename, bytes, size) of a job's upload.
async fn stored(pool: &PgPool, job_id: &str) -> anyhow::Result<(String, String, Vec<u8>, i64)> {
    let r = sqlx::query!(
        "SELECT content_type, filename, bytes, size FROM uploads WHERE job_id = $1",
        job_id.parse::<foodseg_engine::JobId>()? as foodseg_engine::JobId
    )
    .fetch_one(pool)
    .await?;
    Ok((r.content_type, r.filename, r.bytes, r.size))
}

#[sqlx::test(migrations = "../../migrations")]
async fn raw_upload_queues_a_job_with_its_bytes(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let jpeg = std::fs::read(fixture("fruits.jpg"))?;
    let (status, doc) = post_raw(
        &api,
        "?filename=fruits.jpg&model_id=124096&webhook_url=https%3A%2F%2Fmfr.example.org%2Fhook",
        "image/jpeg",
        jpeg.clone(),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], "MFR.Job.QUEUED");
    assert_eq!(doc["message"], "Job queued");
    assert_eq!(doc["model_identifier"], "124096");
    assert_eq!(doc["api_version"], "v1.0");
    assert_eq!(doc["response"], Value::Null);
    let job_id = doc["job_id"].as_str().expect("job_id").to_string();
    assert_eq!(
        doc["request"]["image_url"],
        format!("upload://{job_id}/fruits.jpg")
    );
    assert_eq!(
        doc["request"]["webhook_url"],
        "https://mfr.example.org/hook"
    );

    assert_eq!(counts(&pool).await?, (1, 1, 1, 1));
    let (content_type, filename, bytes, size) = stored(&pool, &job_id).await?;
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(filename, "fruits.jpg");
    assert_eq!(size, jpeg.len() as i64);
    assert!(bytes == jpeg, "stored bytes differ from the upload");

    // The dispatch message goes out like an /enqueue's.
    let subject = tb.subjects.job("yolov5s-seg-coco");
    let msg = wait_until(DEADLINE, || async {
        tb.last_message(&subject).await.ok().flatten()
    })
    .await?;
    let payload: Value = serde_json::from_slice(&msg.payload)?;
    assert_eq!(payload["job_id"], job_id.as_str());

    // /status answers the same document.
    let status_doc: Value = foodseg_http::client()?
        .get(api.url(&format!("/status/{job_id}")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(status_doc["request"], doc["request"]);

    // curl --data-binary declares a form; the bytes are still sniffed as an image.
    // Without a filename or model_id the defaults apply.
    let png = std::fs::read(fixture("coffee.png"))?;
    let (status, doc) =
        post_raw(&api, "", "application/x-www-form-urlencoded", png.clone()).await?;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let job_id = doc["job_id"].as_str().expect("job_id").to_string();
    assert_eq!(
        doc["request"]["image_url"],
        format!("upload://{job_id}/upload.png")
    );
    assert_eq!(doc["request"]["webhook_url"], Value::Null);
    assert_eq!(doc["model_identifier"], "124096");
    let (content_type, filename, _, size) = stored(&pool, &job_id).await?;
    assert_eq!(
        (content_type.as_str(), filename.as_str(), size),
        ("image/png", "upload.png", png.len() as i64)
    );
    assert_eq!(counts(&pool).await?, (2, 2, 2, 2));
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn multipart_upload_takes_the_file_part(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let png = std::fs::read(fixture("coffee.png"))?;
    // The part's own file name and form fields stand in for the query parameters.
    let form = Form::new().text("model_id", "124096").part(
        "file",
        Part::bytes(png.clone())
            .file_name("my coffee.png")
            .mime_str("application/octet-stream")?,
    );
    let (status, doc) = post_form(&api, "", form).await?;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], "MFR.Job.QUEUED");
    assert_eq!(doc["model_identifier"], "124096");
    let job_id = doc["job_id"].as_str().expect("job_id").to_string();
    assert_eq!(
        doc["request"]["image_url"],
        format!("upload://{job_id}/my%20coffee.png")
    );
    let (content_type, filename, bytes, _) = stored(&pool, &job_id).await?;
    assert_eq!(
        (content_type.as_str(), filename.as_str()),
        ("image/png", "my coffee.png")
    );
    assert!(bytes == png, "stored bytes differ from the upload");

    // The query wins over the part's name.
    let form = Form::new().part(
        "file",
        Part::bytes(std::fs::read(fixture("fruits.jpg"))?).file_name("IMG_0001.JPG"),
    );
    let (status, doc) = post_form(&api, "?filename=dish.jpg", form).await?;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let job_id = doc["job_id"].as_str().expect("job_id").to_string();
    assert_eq!(stored(&pool, &job_id).await?.1, "dish.jpg");
    assert_eq!(counts(&pool).await?, (2, 2, 2, 2));
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn uploads_over_the_cap_get_413_and_write_nothing(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup_with(&pool, |parts| parts.uploads.max_bytes = 64 * 1024).await?;
    let jpeg = std::fs::read(fixture("fruits.jpg"))?;
    assert!(jpeg.len() > 64 * 1024);

    let (status, err) = post_raw(&api, "?filename=fruits.jpg", "image/jpeg", jpeg.clone()).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["code"], "payload_too_large");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("65536-byte"),
        "{err}"
    );

    let form = Form::new().part("file", Part::bytes(jpeg.clone()).file_name("fruits.jpg"));
    let (status, err) = post_form(&api, "", form).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["code"], "payload_too_large");

    // Far over the cap: the client still reads the answer, not a reset connection.
    let mut huge = jpeg.clone();
    huge.resize(32 * 1024 * 1024, 0);
    let (status, err) = post_raw(&api, "", "image/jpeg", huge.clone()).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    let form = Form::new().part("file", Part::bytes(huge).file_name("huge.jpg"));
    let (status, err) = post_form(&api, "", form).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");

    // Just within the cap, a multipart body passes (the envelope is not counted).
    let small = jpeg[..64 * 1024].to_vec();
    let form = Form::new().part("file", Part::bytes(small).file_name("cut.jpg"));
    let (status, doc) = post_form(&api, "", form).await?;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(counts(&pool).await?, (1, 1, 1, 1));

    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn every_rejection_says_what_is_wrong_and_writes_nothing(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let jpeg = std::fs::read(fixture("fruits.jpg"))?;
    let html = b"<!DOCTYPE html><html><body>Not found</body></html>".to_vec();

    let (status, err) = post_raw(&api, "?filename=dish.jpg", "image/jpeg", html).await?;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{err}");
    assert_eq!(err["error"]["code"], "unsupported_media_type");
    assert_eq!(
        err["error"]["message"],
        "the uploaded bytes are HTML, not an image; send a JPEG, PNG or WebP image"
    );

    let raw_cases: Vec<RejectCase> = vec![
        ("", Vec::new(), StatusCode::BAD_REQUEST, "empty_image", None),
        (
            "",
            b"GIF89a\x01\x00\x01\x00".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            "",
            br#"{"image_url":"https://x.org/a.jpg"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            "?model_id=999999",
            jpeg.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_model",
            Some("model_id"),
        ),
        (
            "?model_id=",
            jpeg.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_field",
            Some("model_id"),
        ),
        (
            "?webhook_url=ftp%3A%2F%2Fh.org%2Fw",
            jpeg.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
            Some("webhook_url"),
        ),
        (
            "?webhook_url=http%3A%2F%2F10.1.2.3%2Fw",
            jpeg.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
            Some("webhook_url"),
        ),
        (
            "?filename=photos%2F",
            jpeg.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_filename",
            Some("filename"),
        ),
        (
            "?filename=a%0Ab.jpg",
            jpeg.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_filename",
            Some("filename"),
        ),
    ];
    for (query, body, want_status, want_code, want_field) in raw_cases {
        let (status, err) = post_raw(&api, query, "application/octet-stream", body).await?;
        assert_eq!(status, want_status, "{query}: {err}");
        assert_eq!(err["error"]["code"], want_code, "{query}: {err}");
        assert_eq!(err["error"]["field"].as_str(), want_field, "{query}: {err}");
        assert!(!err["error"]["message"].as_str().unwrap_or("").is_empty());
    }

    // Multipart without a `file` part, and a file part holding text.
    let form = Form::new().part("image", Part::bytes(jpeg.clone()).file_name("a.jpg"));
    let (status, err) = post_form(&api, "", form).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "missing_file");
    let form = Form::new().part(
        "file",
        Part::bytes(b"just some notes\n".to_vec()).file_name("notes.jpg"),
    );
    let (status, err) = post_form(&api, "", form).await?;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("are text, not an image"),
        "{err}"
    );
    // A multipart declaration over a body that is not multipart.
    let (status, err) =
        post_raw(&api, "", "multipart/form-data; boundary=zzz", jpeg.clone()).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "invalid_multipart");

    assert_eq!(counts(&pool).await?, (0, 0, 0, 0));
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

#[sqlx::test(migrations = "../../migrations")]
async fn openapi_documents_the_upload_endpoint(pool: PgPool) -> anyhow::Result<()> {
    let (tb, api) = setup(&pool).await?;
    let doc: Value = foodseg_http::client()?
        .get(api.url("/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let op = &doc["paths"]["/v2/uploads"]["post"];
    assert!(op.is_object(), "no POST /v2/uploads in {:#}", doc["paths"]);
    let params: Vec<(&str, &str)> = op["parameters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["name"].as_str()?, p["in"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        params,
        [
            ("filename", "query"),
            ("model_id", "query"),
            ("webhook_url", "query"),
            ("Idempotency-Key", "header")
        ]
    );
    let content = &op["requestBody"]["content"];
    for ct in [
        "application/octet-stream",
        "image/jpeg",
        "multipart/form-data",
    ] {
        assert!(content[ct].is_object(), "{ct} missing from {content:#}");
    }
    assert_eq!(content["image/jpeg"]["schema"]["format"], "binary");
    assert!(content["multipart/form-data"]["schema"]["properties"]["file"].is_object());
    for status in ["200", "400", "413", "415", "422", "503"] {
        assert!(op["responses"][status].is_object(), "{status} missing");
    }
    assert!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or("")
            .ends_with("JobDocument"),
        "{:#}",
        op["responses"]["200"]
    );
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}

/// The peak resident memory (VmHWM) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Twenty 20 MiB uploads at once against the api binary as its own process: each ends in
/// 200, 413 or 429, its peak memory stays under 256 MiB, and every stored job has its
/// whole image (nothing half stored).
#[sqlx::test(migrations = "../../migrations")]
async fn twenty_parallel_20_mib_uploads_stay_within_memory(pool: PgPool) -> anyhow::Result<()> {
    let tb = TestBus::new().await?;
    let database_url = foodseg_testkit::database_url_of(&pool)?;
    let port = foodseg_testkit::free_port()?;
    let mut api = tokio::process::Command::new(env!("CARGO_BIN_EXE_foodseg-api"))
        .env("DATABASE_URL", &database_url)
        .env("NATS_URL", &tb.url)
        .env("FOODSEG_NATS_PREFIX", &tb.subjects.prefix)
        .env("FOODSEG_API_ADDR", format!("127.0.0.1:{port}"))
        .env("FOODSEG_MODELS_DIR", repo_models_dir())
        .env("OTEL_SDK_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = api.id().ok_or_else(|| anyhow::anyhow!("api has no pid"))?;
    let base = format!("http://127.0.0.1:{port}");
    let http = foodseg_http::client()?;
    wait_until(Duration::from_secs(60), || async {
        http.get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;

    // A JPEG signature, then 20 MiB of bytes that do not compress.
    let mut image = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut x: u32 = 0x9E37_79B9;
    image.extend((4..20 * 1024 * 1024).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    let image = bytes::Bytes::from(image);
    let store = foodseg_engine::Store::from_pool(pool.clone(), tb.subjects.clone());
    // Four callers, so that the uploads in flight are not capped at one caller's half.
    let mut tokens = Vec::new();
    for n in 0..4 {
        tokens.push(
            foodseg_api::local::api_key(&store, &format!("uploader-{n}"), &[Scope::Submit]).await?,
        );
    }
    let before = peak_rss(pid)?;
    let uploads = (0..20).map(|i| {
        let (http, url, body, token) = (
            http.clone(),
            format!("{base}/v2/uploads?filename=big-{i}.jpg"),
            image.clone(),
            tokens[i % tokens.len()].clone(),
        );
        async move {
            let res = http.post(url).bearer_auth(token).body(body).send().await?;
            anyhow::Ok(res.status())
        }
    });
    let statuses = futures::future::join_all(uploads).await;
    let peak = peak_rss(pid)?;
    api.kill().await?;

    let mut accepted = 0;
    for status in statuses {
        let status = status?;
        assert!(
            [
                StatusCode::OK,
                StatusCode::PAYLOAD_TOO_LARGE,
                StatusCode::TOO_MANY_REQUESTS
            ]
            .contains(&status),
            "an upload ended in {status}"
        );
        accepted += usize::from(status == StatusCode::OK);
    }
    // Twenty arrive at once: every slot was taken (four callers may hold two each).
    assert!(
        accepted >= foodseg_api::limits::LimitSettings::default().uploads_in_flight,
        "only {accepted} uploads were stored: the slots in flight were not all used"
    );
    const LIMIT: u64 = 256 * 1024 * 1024;
    assert!(
        peak < LIMIT,
        "peak RSS {} MiB (before the uploads {} MiB)",
        peak >> 20,
        before >> 20
    );
    eprintln!(
        "20 x 20 MiB uploads: {accepted} stored, peak RSS {} MiB (idle {} MiB)",
        peak >> 20,
        before >> 20
    );
    let (jobs, _, _, uploads) = counts(&pool).await?;
    assert_eq!((jobs, uploads), (accepted as i64, accepted as i64));
    let whole = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM uploads WHERE size = $1 AND octet_length(bytes) = $1"#,
        image.len() as i64
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(whole, accepted as i64, "every stored image is whole");
    tb.cleanup().await;
    Ok(())
}

/// One part of a generated multipart body.
#[derive(Debug, Clone)]
struct GenPart {
    name: &'static str,
    file_name: Option<String>,
    content: Vec<u8>,
}

/// Generated multipart bodies: parts named like the real ones (or not), contents from a
/// real photo's head, random bytes or text, and bodies cut short or with a wrong boundary.
fn multipart_bodies() -> impl proptest::strategy::Strategy<Value = (String, Vec<u8>)> {
    use proptest::prelude::*;
    let photo = std::fs::read(fixture("fruits.jpg")).unwrap_or_default();
    let content = prop_oneof![
        (1usize..4096).prop_map(move |n| photo[..n.min(photo.len())].to_vec()),
        proptest::collection::vec(any::<u8>(), 0..512),
        "[ -~]{0,64}".prop_map(String::into_bytes),
        Just(b"https://img.example.org/a.jpg".to_vec()),
    ];
    let part = (
        prop_oneof![
            Just("file"),
            Just("model_id"),
            Just("webhook_url"),
            Just("filename"),
            Just("other"),
        ],
        proptest::option::of("[a-z\\\\./ ]{0,12}"),
        content,
    )
        .prop_map(|(name, file_name, content)| GenPart {
            name,
            file_name,
            content,
        });
    let photo = std::fs::read(fixture("fruits.jpg")).unwrap_or_default();
    (
        proptest::collection::vec(part, 0..4),
        "[a-zA-Z0-9]{1,30}",
        proptest::bool::weighted(0.2),
        0usize..4096,
        proptest::bool::weighted(0.6),
    )
        .prop_map(
            move |(mut parts, boundary, wrong_boundary, cut, with_photo)| {
                if with_photo {
                    parts.insert(
                        0,
                        GenPart {
                            name: "file",
                            file_name: Some("dish.jpg".into()),
                            content: photo.clone(),
                        },
                    );
                }
                let mut body = Vec::new();
                for part in &parts {
                    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                    let disposition = match &part.file_name {
                        Some(f) => format!(
                            "Content-Disposition: form-data; name=\"{}\"; filename=\"{f}\"\r\n",
                            part.name
                        ),
                        None => {
                            format!("Content-Disposition: form-data; name=\"{}\"\r\n", part.name)
                        }
                    };
                    body.extend_from_slice(disposition.as_bytes());
                    body.extend_from_slice(b"\r\n");
                    body.extend_from_slice(&part.content);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                if cut > 0 && cut < body.len() && cut % 5 == 0 {
                    body.truncate(cut);
                }
                let declared = if wrong_boundary {
                    format!("x{boundary}")
                } else {
                    boundary
                };
                (format!("multipart/form-data; boundary={declared}"), body)
            },
        )
}

/// Arbitrary multipart bodies against the api: never a 5xx, only the documented answers,
/// and a job (with its whole image) exactly when the answer is 200.
#[sqlx::test(migrations = "../../migrations")]
async fn arbitrary_multipart_bodies_never_fail_the_server(pool: PgPool) -> anyhow::Result<()> {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, TestRunner};

    let (tb, api) = setup_with(&pool, |parts| parts.limits.uploads = None).await?;
    let token = new_key(&api, &[Scope::Submit]).await?;
    let http = foodseg_http::client()?;
    let strategy = multipart_bodies();
    let mut runner = TestRunner::new(Config::with_cases(64));
    let mut accepted = 0i64;
    for _ in 0..64 {
        let (content_type, body) = strategy
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .current();
        let before = counts(&pool).await?;
        let res = http
            .post(api.url("/v2/uploads"))
            .bearer_auth(&token)
            .header("content-type", &content_type)
            .body(body.clone())
            .send()
            .await?;
        let status = res.status();
        let after = counts(&pool).await?;
        assert!(
            [200, 400, 413, 415, 422].contains(&status.as_u16()),
            "{status} for {content_type} and {} bytes: {:?}",
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        if status == StatusCode::OK {
            accepted += 1;
            assert_eq!((after.0, after.3), (before.0 + 1, before.3 + 1));
        } else {
            assert_eq!(after, before, "a refused upload wrote nothing");
        }
    }
    eprintln!("{accepted} of 64 generated multipart bodies were accepted");
    assert!(accepted > 0, "the generator makes some valid uploads too");
    api.stop().await?;
    tb.cleanup().await;
    Ok(())
}
