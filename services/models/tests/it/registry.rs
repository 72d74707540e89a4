//! Registry loading, validation and id resolution against temporary model directories
//! and the repository's own `models/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use foodseg_models::{OutputSpec, Registry, RegistryError};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("foodseg-models-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn manifest(name: &str, aliases: &[&str], extra: &str) -> String {
    let aliases: Vec<String> = aliases.iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"name = "{name}"
aliases = [{}]
file = "model.onnx"
{extra}
[input]
size = 640
scale = 0.00392156862745098

[output]
layout = "yolo-seg"
detections = "output0"
prototypes = "output1"
mask_coefficients = 32

[thresholds]
confidence = 0.25

[[categories]]
category_id = 55
category_name = "orange"

[[categories]]
category_id = 47
category_name = "cup"
"#,
        aliases.join(", ")
    )
}

fn write_model(root: &Path, dir: &str, toml: &str) {
    let dir = root.join(dir);
    std::fs::create_dir_all(&dir).expect("create model dir");
    std::fs::write(dir.join("model.toml"), toml).expect("write manifest");
    std::fs::write(dir.join("model.onnx"), b"not really onnx").expect("write onnx");
}

#[test]
fn resolves_names_aliases_and_default() {
    let tmp = TempDir::new();
    write_model(&tmp.0, "b", &manifest("b-model", &["124096", "b"], ""));
    write_model(&tmp.0, "a", &manifest("a-model", &[], ""));
    std::fs::create_dir_all(tmp.0.join("not-a-model")).expect("mkdir");

    let registry = Registry::load(&tmp.0).expect("load");
    assert_eq!(registry.models().len(), 2);
    assert_eq!(registry.resolve(None).expect("default").name(), "a-model");
    assert_eq!(
        registry.resolve(Some("124096")).expect("alias").name(),
        "b-model"
    );
    assert_eq!(
        registry
            .resolve(Some("b-model"))
            .expect("name")
            .primary_id(),
        "124096"
    );
    assert_eq!(
        registry
            .resolve(Some("a-model"))
            .expect("name")
            .primary_id(),
        "a-model"
    );
    assert_eq!(registry.known_ids(), ["124096", "a-model", "b", "b-model"]);

    let model = registry.resolve(Some("b")).expect("alias");
    assert!(model.onnx_path().is_absolute());
    assert!(model.onnx_path().ends_with("b/model.onnx"));
    assert_eq!(model.category(0).map(|c| c.category_id), Some(55));

    let err = registry.resolve(Some("999")).expect_err("unknown");
    assert_eq!(err.requested, "999");
    assert_eq!(err.known, registry.known_ids());
    assert!(err.to_string().contains("999"), "{err}");

    let registry = registry
        .with_default(Some("124096".into()))
        .expect("default");
    assert_eq!(registry.resolve(None).expect("default").name(), "b-model");
}

#[test]
fn unknown_default_is_an_error() {
    let tmp = TempDir::new();
    write_model(&tmp.0, "a", &manifest("a-model", &[], ""));
    let err = Registry::load(&tmp.0)
        .expect("load")
        .with_default(Some("nope".into()))
        .expect_err("unknown default");
    assert!(matches!(err, RegistryError::UnknownDefault(_)));
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn duplicate_ids_across_models_are_rejected() {
    let tmp = TempDir::new();
    write_model(&tmp.0, "a", &manifest("a-model", &["124096"], ""));
    write_model(&tmp.0, "b", &manifest("b-model", &["124096"], ""));
    let err = Registry::load(&tmp.0).expect_err("duplicate");
    let text = err.to_string();
    assert!(
        text.contains("124096") && text.contains("model.toml"),
        "{text}"
    );
}

#[test]
fn empty_directory_is_an_error() {
    let tmp = TempDir::new();
    let err = Registry::load(&tmp.0).expect_err("empty");
    assert!(matches!(err, RegistryError::Empty { .. }), "{err}");
}

fn load_error(toml: &str) -> String {
    let tmp = TempDir::new();
    write_model(&tmp.0, "m", toml);
    let err = Registry::load(&tmp.0).expect_err("invalid manifest");
    let text = err.to_string();
    assert!(
        text.contains("m/model.toml"),
        "error must name the file: {text}"
    );
    text
}

#[test]
fn invalid_manifests_say_what_is_wrong() {
    let text = load_error(&manifest("m", &[], "colour = \"blue\""));
    assert!(text.contains("colour"), "{text}");

    let text = load_error(&manifest("m", &[], "").replace("confidence = 0.25", "confidence = 1.5"));
    assert!(text.contains("thresholds.confidence"), "{text}");

    let no_categories = manifest("m", &[], "");
    let no_categories = &no_categories[..no_categories.find("[[categories]]").unwrap_or(0)];
    let text = load_error(no_categories);
    assert!(text.contains("categories"), "{text}");

    let text = load_error(&manifest("m", &[], "").replace("category_id = 47", "category_id = 55"));
    assert!(text.contains("category_id 55"), "{text}");

    let text = load_error(&manifest("m", &["m"], ""));
    assert!(text.contains("more than once"), "{text}");

    let text = load_error(&manifest("m", &[], "").replace("size = 640", "size = 630"));
    assert!(text.contains("input.size"), "{text}");

    let text = load_error(&manifest("m", &[], "").replace("yolo-seg", "ssd"));
    assert!(text.contains("ssd"), "{text}");
}

#[test]
fn missing_onnx_file_is_an_error() {
    let tmp = TempDir::new();
    write_model(&tmp.0, "m", &manifest("m", &[], ""));
    std::fs::remove_file(tmp.0.join("m/model.onnx")).expect("rm");
    let text = Registry::load(&tmp.0)
        .expect_err("missing file")
        .to_string();
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn mask_rcnn_layout_parses() {
    let toml = manifest("m", &[], "").replace(
        "layout = \"yolo-seg\"\ndetections = \"output0\"\nprototypes = \"output1\"\nmask_coefficients = 32",
        "layout = \"mask-rcnn\"\nboxes = \"boxes\"\nlabels = \"labels\"\nscores = \"scores\"\nmasks = \"masks\"\nmask_kind = \"per-box\"\nlabel_offset = 1",
    );
    let tmp = TempDir::new();
    write_model(&tmp.0, "m", &toml);
    let registry = Registry::load(&tmp.0).expect("load");
    let output = &registry.default_model().manifest().output;
    assert!(
        matches!(
            output,
            OutputSpec::MaskRcnn {
                label_offset: 1,
                ..
            }
        ),
        "{output:?}"
    );
}

#[test]
fn repository_models_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let registry = Registry::load(&dir).expect("repository models/");
    let model = registry.resolve(Some("124096")).expect("MFR's model id");
    assert_eq!(model.name(), "yolov5s-seg-coco");
    assert_eq!(model.primary_id(), "124096");
    assert_eq!(
        registry.resolve(Some("yolov5s-seg")).expect("alias").name(),
        model.name()
    );
    let categories = model.categories();
    assert_eq!(categories.len(), 80);
    let find = |name: &str| {
        categories
            .iter()
            .find(|c| c.category_name == name)
            .map(|c| c.category_id)
    };
    assert_eq!(find("person"), Some(1));
    assert_eq!(find("cup"), Some(47));
    assert_eq!(find("orange"), Some(55));
    assert_eq!(find("hot dog"), Some(58));
    assert_eq!(find("dining table"), Some(67));
    assert_eq!(find("toothbrush"), Some(90));
}

#[test]
fn a_models_version_is_the_sha256_of_its_onnx_file() {
    let tmp = TempDir::new();
    write_model(&tmp.0, "a", &manifest("a-model", &[], ""));
    std::fs::write(tmp.0.join("a/model.onnx"), b"abc").unwrap();
    let registry = Registry::load(&tmp.0).unwrap();
    let model = registry.get("a-model").unwrap();
    // SHA-256("abc"), the FIPS 180-2 example.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(model.version(), abc);
    assert_eq!(model.short_version(), "ba7816bf8f01");
    assert_eq!(foodseg_models::short_version("abc"), "abc");
}

#[test]
fn the_fingerprint_changes_with_any_file_of_a_model_and_a_reload_replaces_the_registry() {
    use foodseg_models::{Fingerprint, SharedRegistry};
    let tmp = TempDir::new();
    write_model(&tmp.0, "a", &manifest("a-model", &[], ""));
    let before = Fingerprint::of(&tmp.0).unwrap();
    assert_eq!(Fingerprint::of(&tmp.0).unwrap(), before, "nothing changed");
    let shared = SharedRegistry::new(Registry::load(&tmp.0).unwrap());
    let held = shared.current();

    // Replaced by rename with other bytes (a size change is seen whatever the clock).
    let staged = tmp.0.join("model.onnx.new");
    std::fs::write(&staged, b"a longer file").unwrap();
    std::fs::rename(&staged, tmp.0.join("a/model.onnx")).unwrap();
    let after_swap = Fingerprint::of(&tmp.0).unwrap();
    assert_ne!(after_swap, before);

    write_model(&tmp.0, "b", &manifest("b-model", &["b"], ""));
    assert_ne!(
        Fingerprint::of(&tmp.0).unwrap(),
        after_swap,
        "a model was added"
    );

    shared.replace(Registry::load(&tmp.0).unwrap());
    assert!(shared.current().get("b").is_some());
    assert!(
        held.get("b").is_none(),
        "a reader keeps the registry it took"
    );
    assert_ne!(
        shared.current().get("a-model").unwrap().version(),
        held.get("a-model").unwrap().version()
    );
}
