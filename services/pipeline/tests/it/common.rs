//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use foodseg_models::{Model, Registry};
use foodseg_pipeline::{DecodeLimits, DecodedImage, SessionOptions, decode};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn decode_fixture(name: &str) -> DecodedImage {
    decode(&fixture_bytes(name), &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("decode {name}: {e}"))
}

/// Session options for tests; these tests need the real ONNX Runtime library.
pub fn session_options() -> SessionOptions {
    let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) else {
        panic!(
            "ORT_DYLIB_PATH is not set: these tests run the real ONNX Runtime. Run \
             `export ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)` from the repository root first."
        );
    };
    SessionOptions {
        dylib_path: Some(PathBuf::from(path)),
        intra_threads: Some(2),
        ..SessionOptions::default()
    }
}

/// The repository's model registry.
pub fn repository_registry() -> Registry {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    Registry::load(&dir).unwrap_or_else(|e| panic!("load {}: {e}", dir.display()))
}

pub fn fixture_model(dir: &str) -> Model {
    Model::load(&fixture(dir)).unwrap_or_else(|e| panic!("load fixture model {dir}: {e}"))
}

/// For a test that needs a process of its own (ONNX Runtime is loaded once per process,
/// and other tests of this binary load the working library): in the test process, runs
/// `test` (its full name) alone in a child process of this binary, checks that it
/// passed and returns true; in that child, returns false so the test body runs.
pub fn ran_in_child_process(test: &str) -> bool {
    const CHILD: &str = "FOODSEG_PIPELINE_TEST_CHILD";
    if std::env::var_os(CHILD).is_some_and(|v| v == test) {
        return false;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {test} in a child process: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} in a child process ({}):\n{stdout}\n{stderr}",
        out.status
    );
    true
}
