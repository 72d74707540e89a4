//! Clear errors when ONNX Runtime cannot be used as configured. The library is loaded
//! once per process, so the bad paths are tried in a process of their own.

use crate::common::{fixture, ran_in_child_process, repository_registry, session_options};
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
