//! Per-image time of the worker's stages — fetch (from a local HTTP server through the
//! worker's guarded client), decode, preprocess, inference (the worker's path: session
//! turn, blocking task, output copy), postprocess — beside a bare `Session::run` on the
//! same tensor in the same run. Medians over N runs; ratios are to inference.
//!
//! ```text
//! cargo run --release -p foodseg-worker --example bench_worker -- [runs] [threads]
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foodseg_engine::netguard::NetPolicy;
use foodseg_models::Registry;
use foodseg_pipeline::{ModelSession, SessionOptions};
use foodseg_worker::segment::{ImageFetcher, ModelRuntime};
use foodseg_worker::{BatchConfig, ImageLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMAGES: [&str; 2] = ["fruits.jpg", "coffee.png"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20)
        .max(1);
    let threads: Option<usize> = args.next().map(|a| a.parse()).transpose()?;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("../pipeline/tests/fixtures");
    let base = serve_fixtures(&fixtures).await?;

    let registry = Registry::load(root.join("../../models"))?;
    let model = registry.default_model().clone();
    let options = SessionOptions {
        intra_threads: threads,
        ..SessionOptions::default()
    };
    let limits = ImageLimits::default();
    let session =
        tokio::task::spawn_blocking(move || ModelSession::load(&model, &options)).await??;
    let batch = BatchConfig {
        max: 1,
        wait: Duration::ZERO,
        parallel_runs: 1,
    };
    let runtime = Arc::new(ModelRuntime::single(session, &limits, batch));
    let fetcher = ImageFetcher::new(&NetPolicy::parse_allow_list("127.0.0.0/8")?, limits)?;

    println!(
        "model {} ({}), {runs} runs, median ms per image; ratios are % of inference",
        runtime.name(),
        runtime.session().device()
    );
    println!(
        "{:<11} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} | {:>6} {:>6} {:>6} {:>6} {:>8} {:>9}",
        "image",
        "fetch",
        "decode",
        "prep",
        "infer",
        "post",
        "bare",
        "fetch",
        "decode",
        "prep",
        "post",
        "non-inf",
        "inf/bare"
    );
    for name in IMAGES {
        let url = format!("{base}/{name}");
        let mut t = Samples::default();
        let mut items = 0;
        for run in 0..=runs {
            let start = Instant::now();
            let bytes = fetcher.fetch(&url).await.map_err(anyhow::Error::msg)?;
            let fetch = start.elapsed();
            let (rt, b) = (runtime.clone(), bytes.clone());
            let (image, decode) = blocking(move || rt.decode(&b)).await?;
            let rt = runtime.clone();
            let (input, prep) = blocking(move || rt.preprocess(image)).await?;
            let input = Arc::new(input);
            let start = Instant::now();
            let outputs = runtime
                .infer(input.clone())
                .await
                .map_err(anyhow::Error::msg)?;
            let infer = start.elapsed();
            let (rt, inp) = (runtime.clone(), input.clone());
            let (value, post) = blocking(move || rt.postprocess(outputs, &inp, name)).await?;
            let session = runtime.session().clone();
            let inp = input.clone();
            let (_, bare) = blocking(move || {
                session
                    .run_bare(&inp)
                    .map_err(|e| foodseg_worker::Failure::Transient(e.to_string()))
            })
            .await?;
            items = value.as_array().map_or(0, Vec::len);
            if run > 0 {
                // run 0 warms caches and the session
                t.push([fetch, decode, prep, infer, post, bare]);
            }
        }
        let [fetch, decode, prep, infer, post, bare] = t.medians();
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / infer.as_secs_f64();
        println!(
            "{:<11} {} {} {} {} {} {} | {:5.1}% {:5.1}% {:5.1}% {:5.1}% {:7.1}% {:8.2}x   ({items} items)",
            name,
            ms(fetch),
            ms(decode),
            ms(prep),
            ms(infer),
            ms(post),
            ms(bare),
            pct(fetch),
            pct(decode),
            pct(prep),
            pct(post),
            pct(fetch + decode + prep + post),
            infer.as_secs_f64() / bare.as_secs_f64(),
        );
    }
    Ok(())
}

/// Runs a worker stage on a blocking thread and times it there.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, foodseg_worker::Failure> + Send + 'static,
) -> anyhow::Result<(T, Duration)> {
    let (result, took) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let r = f();
        (r, start.elapsed())
    })
    .await?;
    Ok((result.map_err(anyhow::Error::msg)?, took))
}

#[derive(Default)]
struct Samples(Vec<[Duration; 6]>);

impl Samples {
    fn push(&mut self, s: [Duration; 6]) {
        self.0.push(s);
    }

    fn medians(&self) -> [Duration; 6] {
        std::array::from_fn(|i| {
            let mut col: Vec<Duration> = self.0.iter().map(|s| s[i]).collect();
            col.sort();
            col.get(col.len() / 2).copied().unwrap_or_default()
        })
    }
}

fn ms(d: Duration) -> String {
    format!("{:7.2}", d.as_secs_f64() * 1e3)
}

/// Serves `dir/<name>` for the bench images on 127.0.0.1 (keep-alive HTTP/1.1).
async fn serve_fixtures(dir: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    for name in IMAGES {
        files.push((name, std::fs::read(dir.join(name))?));
    }
    let files = Arc::new(files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let files = files.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let file = files
                        .iter()
                        .find(|(n, _)| path.trim_start_matches('/') == *n);
                    let (status, body): (&str, &[u8]) = match file {
                        Some((_, bytes)) => ("200 OK", bytes),
                        None => ("404 Not Found", b""),
                    };
                    let ctype = if path.ends_with(".png") {
                        "image/png"
                    } else {
                        "image/jpeg"
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if conn.write_all(head.as_bytes()).await.is_err()
                        || conn.write_all(body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(format!("http://{addr}"))
}
