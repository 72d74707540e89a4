//! Per-stage timings of the pipeline on the test photos with the repository's default
//! model: decode, preprocess, inference (run + output copy), postprocess, and a bare
//! `Session::run` on the same input tensor, each the median over N runs (default 20).
//!
//! ```text
//! export ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
//! cargo run --release -p foodseg-pipeline --example bench_stages -- [runs] [threads]
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use foodseg_models::Registry;
use foodseg_pipeline::{DecodeLimits, Segmenter, SessionOptions, decode};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut samples = Vec::with_capacity(runs);
    let mut last = f(); // warm-up
    for _ in 0..runs {
        let start = Instant::now();
        last = f();
        samples.push(start.elapsed());
    }
    (median(samples), last)
}

fn ms(d: Duration) -> String {
    format!("{:8.2}", d.as_secs_f64() * 1e3)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20)
        .max(1);
    let threads: Option<usize> = args.next().map(|a| a.parse()).transpose()?;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = Registry::load(root.join("../../models"))?;
    let model = registry.default_model();
    let options = SessionOptions {
        intra_threads: threads,
        ..SessionOptions::default()
    };
    let segmenter = Segmenter::load_models([model], &options)?;
    let session = segmenter.session(model)?;
    println!(
        "model {} ({}), {runs} runs, median ms per image; % columns are relative to bare \
         (Session::run alone); copy = infer - bare (copying outputs out of the session)",
        model.name(),
        session.device()
    );
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} {:>7} {:>9}",
        "image",
        "decode",
        "prep",
        "infer",
        "post",
        "bare",
        "dec",
        "prep",
        "post",
        "copy",
        "overhead"
    );
    for name in ["fruits.jpg", "coffee.png"] {
        let bytes = std::fs::read(root.join("tests/fixtures").join(name))?;
        let limits = DecodeLimits::default();
        let (decode_t, image) = time(runs, || decode(&bytes, &limits));
        let image = image?;
        let (prep_t, input) = time(runs, || segmenter.preprocess(model, &image));
        let input = input?;
        let (infer_t, outputs) = time(runs, || segmenter.infer(model, &input));
        let outputs = outputs?;
        let (bare_t, bare) = time(runs, || session.run_bare(&input));
        bare?;
        let (post_t, items) = time(runs, || {
            segmenter.postprocess(model, &outputs, &input, name)
        });
        let items = items?;
        // Ratios are against the bare model run: everything else is pipeline overhead.
        let inf = bare_t.as_secs_f64();
        let ratio = |d: Duration| format!("{:6.1}%", 100.0 * d.as_secs_f64() / inf);
        let copy = infer_t.saturating_sub(bare_t);
        let overhead = ratio(decode_t + prep_t + post_t + copy);
        println!(
            "{:<12} {} {} {} {} {} | {} {} {} {} {}   ({} items)",
            name,
            ms(decode_t),
            ms(prep_t),
            ms(infer_t),
            ms(post_t),
            ms(bare_t),
            ratio(decode_t),
            ratio(prep_t),
            ratio(post_t),
            ratio(copy),
            overhead,
            items.len()
        );
    }
    Ok(())
}
