//! Clear errors when ONNX Runtime cannot be used as configured. The library is loaded
//! once per process, so the bad paths are tried in a process of their own.

use crate::common::{fixture, ran_in_child_process, repository_registry, session_options};
use foodseg_models::Model;
use foodseg_pipeline::{Device, RuntimeError, Segmenter, SessionError, SessionOptions};

#[test]
fn device_names_parse() {
    assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
    assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda { device_id: 0 }));
    assert_eq!(
        "cuda:1".parse::<Device>(),
        Ok(Device::Cuda { device_id: 1 })
    );
    assert!("tpu".parse::<Device>().is_err());
}

#[test]
fn unset_dylib_path_message_says_what_to_do() {
    let message = RuntimeError::DylibPathUnset.to_string();
    assert!(message.contains("ORT_DYLIB_PATH is not set"), "{message}");
    assert!(message.contains("fetch-onnxruntime.sh"), "{message}");
}

/// Loading from a missing file, then from a file that is not a library, then for CUDA
/// with the CPU-only library: one test so the order is fixed, in a process where no
/// other test has loaded the library first.
#[test]
fn bad_library_and_missing_cuda_are_clear_errors() {
    if ran_in_child_process("session_errors::bad_library_and_missing_cuda_are_clear_errors") {
        return;
    }
    let registry = repository_registry();
    let model = registry.resolve(Some("124096")).expect("model");

    let missing = SessionOptions {
        dylib_path: Some("/nonexistent/libonnxruntime.so.1.31.1".into()),
        ..SessionOptions::default()
    };
    let err = Segmenter::load_models([model], &missing).expect_err("missing library");
    assert!(
        matches!(err, SessionError::Runtime(RuntimeError::DylibMissing(_))),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("/nonexistent/libonnxruntime.so.1.31.1"),
        "{err}"
    );

    let not_a_library = SessionOptions {
        dylib_path: Some(fixture("fruits.jpg")),
        ..SessionOptions::default()
    };
    let err = Segmenter::load_models([model], &not_a_library).expect_err("not a library");
    assert!(
        matches!(err, SessionError::Runtime(RuntimeError::DylibLoad { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("cannot load ONNX Runtime from"),
        "{err}"
    );

    let cuda = SessionOptions {
        device: Device::Cuda { device_id: 0 },
        ..session_options()
    };
    let err =
        Segmenter::load_models([model], &cuda).expect_err("CPU-only ONNX Runtime has no CUDA");
    eprintln!("{err}");
    assert!(
        matches!(err, SessionError::CudaUnavailable { device_id: 0, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("CUDA execution provider (device 0) is unavailable"),
        "{err}"
    );
}

/// A manifest whose category names differ from the label set inside the model file is
/// refused at load: clients receive the model's own names (`sports ball`, never
/// `sports_ball`). The repository's manifest matches its model.
#[test]
fn manifest_names_must_be_the_models_own_labels() {
    let registry = repository_registry();
    let model = registry.resolve(Some("124096")).expect("model");
    let dir = std::env::temp_dir().join(format!("foodseg-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let manifest = std::fs::read_to_string(model.manifest_path())
        .expect("manifest")
        .replace("\"sports ball\"", "\"sports_ball\"");
    std::fs::write(dir.join("model.toml"), manifest).expect("write manifest");
    let _ = std::fs::remove_file(dir.join("model.onnx"));
    std::os::unix::fs::symlink(model.onnx_path(), dir.join("model.onnx")).expect("link model");
    let renamed = Model::load(&dir).expect("renamed manifest parses");
    let err = Segmenter::load_models([&renamed], &session_options()).expect_err("labels differ");
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        matches!(&err, SessionError::Labels { index: 32, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("\"sports_ball\" in model.toml but \"sports ball\""),
        "{err}"
    );
    Segmenter::load_models([model], &session_options()).expect("the repository's names load");
}

/// The warm-up run is the first run: the shipped model passes it, and a manifest whose
/// input the graph cannot take (40 × 40: the feature maps no longer line up) fails it
/// with the model named, before the session could serve a job.
#[test]
fn warm_up_runs_the_model_once_and_fails_loudly_on_an_input_it_cannot_take() {
    let registry = repository_registry();
    let model = registry.resolve(Some("124096")).expect("model");
    let session = foodseg_pipeline::ModelSession::load(model, &session_options()).expect("session");
    session.warm_up().expect("the shipped model warms up");

    let dir = std::env::temp_dir().join(format!("foodseg-warm-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let manifest = std::fs::read_to_string(model.manifest_path()).expect("manifest");
    let manifest: String = manifest
        .lines()
        .map(|line| match line {
            l if l.starts_with("file =") => format!("file = {:?}", model.onnx_path()),
            l if l.starts_with("size =") => "size = 40".to_owned(),
            l if l.starts_with("stride =") => "stride = 8".to_owned(),
            l => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("model.toml"), manifest).expect("write manifest");
    let odd = Model::load(&dir).expect("the manifest itself is valid");
    let session = foodseg_pipeline::ModelSession::load(&odd, &session_options()).expect("loads");
    let err = session.warm_up().expect_err("a 40 x 40 input does not run");
    assert!(matches!(err, SessionError::WarmUp { .. }), "{err:?}");
    assert!(err.to_string().contains("failed its warm-up run"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
