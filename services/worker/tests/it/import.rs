//! `foodseg-worker models import`, as a process: the shipped YOLOv5s-seg model re-laid
//! in the Ultralytics YOLOv8-seg output form (`scripts/yolov8_export.py relay`, the same
//! weights) is imported with no hand edits and segments the fixture photos exactly as the
//! shipped model does; small synthetic exports check class names, category ids, a fixed
//! input size and the refusals; and the command line answers `--help` and refuses what it
//! does not know.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use foodseg_models::{Model, OutputSpec, Registry};
use foodseg_pipeline::{DecodeLimits, Item, Segmenter, SessionOptions, decode};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "foodseg-import-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The python of `.cache/onnx-venv` (PyPI `onnx` and `numpy`), prepared once.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new(root().join("scripts/python-venv.sh"))
            .arg(root().join(".cache/onnx-venv"))
            .arg("import onnx, numpy")
            .args(["onnx", "numpy"])
            .output()
            .expect("run scripts/python-venv.sh");
        assert!(out.status.success(), "scripts/python-venv.sh: {out:?}");
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
    })
}

/// Runs `scripts/yolov8_export.py` with `args`.
fn export(args: &[&str]) {
    let out = Command::new(python())
        .arg(root().join("scripts/yolov8_export.py"))
        .args(args)
        .output()
        .expect("run scripts/yolov8_export.py");
    assert!(
        out.status.success(),
        "yolov8_export.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A synthetic export at `path`.
fn synthetic(path: &Path, args: &[&str]) {
    let path = path.to_str().expect("utf-8 path");
    export(&[&["synthetic", path], args].concat());
}

/// `foodseg-worker` with `args`.
fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foodseg-worker"))
        .args(args)
        .env_remove("FOODSEG_MODELS_DIR")
        .output()
        .expect("run foodseg-worker")
}

/// `foodseg-worker models import FILE --name NAME --models-dir DIR [extra]`.
fn import(file: &Path, name: &str, dir: &Path, extra: &[&str]) -> Output {
    let (file, dir) = (file.to_str().expect("utf-8"), dir.to_str().expect("utf-8"));
    worker(
        &[
            &[
                "models",
                "import",
                file,
                "--name",
                name,
                "--models-dir",
                dir,
            ],
            extra,
        ]
        .concat(),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the import succeeded; returns what it printed.
fn imported(out: &Output) -> String {
    assert!(
        out.status.success(),
        "import failed ({}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts the import was refused (exit code 1, the reason on stderr); returns it.
fn refused(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let said = text(&out.stderr);
    assert!(said.starts_with("error: "), "{said}");
    said
}

fn session_options() -> SessionOptions {
    let path = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .expect("ORT_DYLIB_PATH: these tests run the real ONNX Runtime");
    SessionOptions {
        dylib_path: Some(PathBuf::from(path)),
        intra_threads: Some(2),
        ..SessionOptions::default()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = root().join("services/pipeline/tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn segment(segmenter: &Segmenter, model: &Model, photo: &str) -> Vec<Item> {
    let image = decode(&fixture(photo), &DecodeLimits::default()).expect("decode");
    let items = segmenter
        .segment(model, &image, photo)
        .expect("segment")
        .items;
    for item in &items {
        eprintln!(
            "{photo} {}: {} {:.4} {:?}",
            model.name(),
            item.category_name,
            item.score,
            item.bbox
        );
    }
    items
}

fn categories(model: &Model) -> Vec<(i64, String)> {
    model
        .categories()
        .iter()
        .map(|c| (c.category_id, c.category_name.clone()))
        .collect()
}

#[test]
fn the_shipped_model_relaid_as_yolov8_seg_imports_and_segments_as_the_shipped_one() {
    let tmp = TempDir::new();
    let onnx = tmp.path("yolov8-relay.onnx");
    let shipped_dir = root().join("models/yolov5s-seg-coco");
    export(&[
        "relay",
        shipped_dir.join("model.onnx").to_str().expect("utf-8"),
        onnx.to_str().expect("utf-8"),
        "--names-from",
        shipped_dir.join("model.toml").to_str().expect("utf-8"),
    ]);
    let models = tmp.path("models");
    let said = imported(&import(
        &onnx,
        "yolov8-relay",
        &models,
        &["--aliases", "relay-v8, 124097"],
    ));
    assert!(said.contains("yolov8-seg"), "{said}");
    assert!(
        said.contains("classes     80: person, bicycle, car"),
        "{said}"
    );
    assert!(said.contains("COCO category ids"), "{said}");
    let version = foodseg_models::file_sha256(&onnx).expect("sha256");
    assert!(
        said.contains(&format!("(version {})", &version[..12])),
        "{said}"
    );

    let manifest_text =
        std::fs::read_to_string(models.join("yolov8-relay/model.toml")).expect("model.toml");
    assert!(
        manifest_text
            .starts_with("# Written by `foodseg-worker models import` from yolov8-relay.onnx\n")
            && manifest_text.contains(&version),
        "{manifest_text}"
    );
    // Only the model's directory is left: no staging directory.
    let entries: Vec<String> = std::fs::read_dir(&models)
        .expect("models dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["yolov8-relay"]);

    let registry = Registry::load(&models).expect("the imported model loads");
    let relaid = registry.resolve(Some("124097")).expect("alias").clone();
    assert_eq!(relaid.version(), version);
    assert!(matches!(
        relaid.manifest().output,
        OutputSpec::Yolov8Seg { .. }
    ));
    let shipped = Registry::load(root().join("models"))
        .expect("repository models")
        .resolve(Some("124096"))
        .expect("shipped model")
        .clone();
    assert_eq!(categories(&relaid), categories(&shipped));
    let (a, b) = (&relaid.manifest().input, &shipped.manifest().input);
    assert_eq!((a.size, a.stride, a.scale), (b.size, b.stride, b.scale));
    assert_eq!(relaid.manifest().thresholds, shipped.manifest().thresholds);

    let segmenter =
        Segmenter::load_models([&shipped, &relaid], &session_options()).expect("sessions");
    for photo in ["fruits.jpg", "coffee.png"] {
        let want = segment(&segmenter, &shipped, photo);
        let got = segment(&segmenter, &relaid, photo);
        assert!(!want.is_empty(), "{photo}: the shipped model finds nothing");
        let names = |items: &[Item]| -> Vec<(i64, String)> {
            items
                .iter()
                .map(|i| (i.category_id, i.category_name.clone()))
                .collect()
        };
        assert_eq!(names(&got), names(&want), "{photo}: categories in order");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.score - w.score).abs() <= 0.001,
                "{photo} {}: score {} vs {}",
                w.category_name,
                g.score,
                w.score
            );
            for (x, y) in g.bbox.iter().zip(&w.bbox) {
                assert!(
                    (x - y).abs() <= 1.0,
                    "{photo} {}: bbox {:?} vs {:?}",
                    w.category_name,
                    g.bbox,
                    w.bbox
                );
            }
        }
    }
}

#[test]
fn a_synthetic_export_with_json_names_gets_ids_one_to_n_and_a_fixed_input() {
    let tmp = TempDir::new();
    let onnx = tmp.path("fruit.onnx");
    synthetic(
        &onnx,
        &[
            "--classes",
            "2",
            "--names",
            "apple",
            "bread",
            "--names-json",
        ],
    );
    let models = tmp.path("models");
    let said = imported(&import(&onnx, "fruit", &models, &[]));
    assert!(said.contains("classes     2: apple, bread\n"), "{said}");
    assert!(said.contains("ids         1…2 in class order"), "{said}");
    assert!(said.contains("fixed 64x64"), "{said}");

    let model = Model::load(&models.join("fruit")).expect("load");
    assert_eq!(
        categories(&model),
        vec![(1, "apple".to_owned()), (2, "bread".to_owned())]
    );
    let input = &model.manifest().input;
    assert_eq!((input.size, input.stride), (64, 64));

    // The fixed-size model runs on a photo that is not square: its input is padded to
    // the full 64x64. fruits.jpg is 512x480: 1/8 scale, 2 px of padding on top.
    let segmenter = Segmenter::load_models([&model], &session_options()).expect("session");
    let items = segment(&segmenter, &model, "fruits.jpg");
    let found: Vec<(&str, f64)> = items
        .iter()
        .map(|i| (i.category_name.as_str(), (i.score * 100.0).round() / 100.0))
        .collect();
    assert_eq!(found, vec![("apple", 0.9), ("bread", 0.8)]);
    let expected = [48.0, 32.0, 160.0, 160.0];
    for (got, want) in items[0].bbox.iter().zip(expected) {
        assert!((got - want).abs() <= 1.0, "{:?}", items[0].bbox);
    }
}

#[test]
fn python_dict_names_are_read_character_for_character() {
    let tmp = TempDir::new();
    let models = tmp.path("models");
    let names = ["crème brûlée", "chef's salad", "say \"hi\"", "back\\slash"];
    for (layout, name) in [("v8", "dishes-v8"), ("v5", "dishes-v5")] {
        let onnx = tmp.path(&format!("{name}.onnx"));
        synthetic(
            &onnx,
            &[
                &["--classes", "4", "--layout", layout, "--names"],
                &names[..],
                &["--names-dict"],
            ]
            .concat(),
        );
        let said = imported(&import(&onnx, name, &models, &[]));
        let layout_name = if layout == "v8" {
            "yolov8-seg"
        } else {
            "yolo-seg"
        };
        assert!(
            said.contains(&format!("layout      {layout_name}:")),
            "{said}"
        );
        let model = Model::load(&models.join(name)).expect("load");
        let got: Vec<String> = categories(&model).into_iter().map(|(_, n)| n).collect();
        assert_eq!(got, names);
    }
    // Both load side by side (their ids differ).
    assert_eq!(Registry::load(&models).expect("registry").models().len(), 2);
}

#[test]
fn what_cannot_be_recognised_or_would_clash_is_refused() {
    let tmp = TempDir::new();
    let models = tmp.path("models");

    let three = tmp.path("three-outputs.onnx");
    synthetic(
        &three,
        &["--classes", "2", "--names-json", "--extra-output"],
    );
    let said = refused(&import(&three, "three", &models, &[]));
    assert!(
        said.contains("has 3 outputs") && said.contains("docs/models.md"),
        "{said}"
    );

    let nameless = tmp.path("nameless.onnx");
    synthetic(&nameless, &["--classes", "2", "--no-names"]);
    assert!(refused(&import(&nameless, "nameless", &models, &[])).contains("no class names"));

    let mismatch = tmp.path("mismatch.onnx");
    synthetic(
        &mismatch,
        &["--classes", "3", "--names", "a", "b", "--names-json"],
    );
    let said = refused(&import(&mismatch, "mismatch", &models, &[]));
    assert!(
        said.contains("fits neither layout for the 2 class names")
            && said.contains("read as yolov8-seg it holds 3 classes"),
        "{said}"
    );

    let missing = tmp.path("missing.onnx");
    assert!(refused(&import(&missing, "missing", &models, &[])).contains("is not a file"));
    assert!(refused(&import(&three, "../escape", &models, &[])).contains("invalid model name"));

    // Nothing refused left anything behind.
    let left: Vec<_> = std::fs::read_dir(&models)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // A name that exists is replaced only when asked, and ids stay unique.
    let fruit = tmp.path("fruit.onnx");
    synthetic(
        &fruit,
        &[
            "--classes",
            "2",
            "--names",
            "apple",
            "bread",
            "--names-json",
        ],
    );
    imported(&import(&fruit, "fruit", &models, &["--aliases", "f1"]));
    let said = refused(&import(&fruit, "fruit", &models, &[]));
    assert!(
        said.contains("already exists") && said.contains("--replace"),
        "{said}"
    );
    let said = refused(&import(&fruit, "other", &models, &["--aliases", "f1"]));
    assert!(said.contains("\"f1\" is already used"), "{said}");

    let more = tmp.path("fruit-v2.onnx");
    synthetic(
        &more,
        &[
            "--classes",
            "3",
            "--names",
            "apple",
            "bread",
            "cheese",
            "--names-dict",
        ],
    );
    let said = imported(&import(&more, "fruit", &models, &["--replace"]));
    assert!(said.starts_with("Replaced model \"fruit\""), "{said}");
    let model = Model::load(&models.join("fruit")).expect("load");
    assert_eq!(model.categories().len(), 3);
    assert_eq!(
        model.version(),
        foodseg_models::file_sha256(&more).expect("sha256")
    );
    let entries: Vec<_> = std::fs::read_dir(&models)
        .expect("models")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, vec!["fruit"], "no staging directory left");
}

#[test]
fn the_models_command_answers_help_and_refuses_unknown_arguments() {
    let help = worker(&["models", "--help"]);
    assert!(help.status.success(), "{help:?}");
    let said = text(&help.stdout);
    assert!(
        said.contains("Usage: foodseg-worker models <COMMAND>") && said.contains("import"),
        "{said}"
    );

    let help = worker(&["models", "import", "--help"]);
    assert!(help.status.success(), "{help:?}");
    let said = text(&help.stdout);
    for flag in [
        "--name",
        "--aliases",
        "--models-dir",
        "--replace",
        "FOODSEG_MODELS_DIR",
    ] {
        assert!(said.contains(flag), "{flag}: {said}");
    }

    for (args, expected) in [
        (&["models", "--bogus"][..], "unexpected argument '--bogus'"),
        (
            &["models", "import", "a.onnx", "--name", "a", "--bogus"][..],
            "unexpected argument '--bogus'",
        ),
        (
            &["models", "frobnicate"][..],
            "unrecognized subcommand 'frobnicate'",
        ),
        (&["models", "import", "a.onnx"][..], "--name <NAME>"),
        (&["models"][..], "Usage: foodseg-worker models <COMMAND>"),
    ] {
        let out = worker(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let said = text(&out.stderr);
        assert!(said.contains(expected), "{args:?}: {said}");
    }

    // The service's own command line mentions the command and still refuses the rest.
    let help = worker(&["--help"]);
    assert!(text(&help.stdout).contains("models import"), "{help:?}");
}
