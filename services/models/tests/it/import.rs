//! Recognising exported models from their declared tensors and metadata, reading class
//! names as exporters write them, and the manifest text the import writes.

use std::collections::BTreeMap;
use std::path::Path;

use foodseg_models::coco::{COCO_80, coco_id};
use foodseg_models::import::{
    ImportRequest, OnnxSummary, Provenance, Recognised, TensorSummary, Unrecognised, manifest_toml,
    recognise,
};
use foodseg_models::{Manifest, OutputSpec, parse_class_names};

fn tensor(name: &str, shape: &[Option<u64>]) -> TensorSummary {
    TensorSummary {
        name: name.into(),
        element_type: "float32".into(),
        shape: shape.to_vec(),
    }
}

fn s(dims: &[u64]) -> Vec<Option<u64>> {
    dims.iter().copied().map(Some).collect()
}

fn coco_names() -> Vec<String> {
    COCO_80.iter().map(|(_, n)| (*n).to_owned()).collect()
}

/// Python's `repr` of a dict of index to name, as Ultralytics writes `names` (only for
/// names without quotes or backslashes; the escape tests spell their literals out).
fn dict_literal(names: &[String]) -> String {
    let items: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i}: '{n}'"))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// What Ultralytics' default export of a YOLOv8-seg model with these classes declares.
fn ultralytics_v8(names: &[String]) -> OnnxSummary {
    let rows = 4 + names.len() as u64 + 32;
    OnnxSummary {
        inputs: vec![tensor("images", &s(&[1, 3, 640, 640]))],
        outputs: vec![
            tensor("output0", &s(&[1, rows, 8400])),
            tensor("output1", &s(&[1, 32, 160, 160])),
        ],
        metadata: BTreeMap::from([
            (
                "description".into(),
                "Ultralytics YOLOv8n-seg model trained on coco.yaml".into(),
            ),
            ("author".into(), "Ultralytics".into()),
            ("stride".into(), "32".into()),
            ("task".into(), "segment".into()),
            ("batch".into(), "1".into()),
            ("imgsz".into(), "[640, 640]".into()),
            ("names".into(), dict_literal(names)),
        ]),
    }
}

fn request() -> ImportRequest<'static> {
    ImportRequest {
        name: "imported",
        aliases: &[],
        source: "best.onnx",
    }
}

fn recognised(summary: &OnnxSummary) -> Recognised {
    recognise(summary, &request()).unwrap_or_else(|e| panic!("recognise: {e}"))
}

fn refused(summary: &OnnxSummary) -> String {
    let err: Unrecognised = recognise(summary, &request()).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("write its model.toml by hand") && text.contains("docs/models.md"),
        "{text}"
    );
    text
}

fn yolo_names(output: &OutputSpec) -> (&str, &str, usize) {
    match output {
        OutputSpec::YoloSeg {
            detections,
            prototypes,
            mask_coefficients,
        }
        | OutputSpec::Yolov8Seg {
            detections,
            prototypes,
            mask_coefficients,
        } => (detections, prototypes, *mask_coefficients),
        OutputSpec::MaskRcnn { .. } => panic!("not a YOLO layout: {output:?}"),
    }
}

#[test]
fn an_ultralytics_v8_export_is_yolov8_seg_with_a_fixed_input_and_coco_ids() {
    let names = coco_names();
    let r = recognised(&ultralytics_v8(&names));
    let m = &r.manifest;
    assert!(matches!(m.output, OutputSpec::Yolov8Seg { .. }));
    assert_eq!(r.layout(), "yolov8-seg");
    assert_eq!(yolo_names(&m.output), ("output0", "output1", 32));
    assert_eq!(m.input.name.as_deref(), Some("images"));
    // A fixed 640x640 input: every image is padded to the square.
    assert!(r.fixed_input);
    assert_eq!((m.input.size, m.input.stride), (640, 640));
    assert_eq!(m.input.letterbox_pad, 114);
    assert_eq!(m.input.scale, 1.0 / 255.0);
    assert_eq!(
        (
            m.thresholds.confidence,
            m.thresholds.nms_iou,
            m.thresholds.mask,
            m.thresholds.max_detections
        ),
        (0.25, 0.45, 0.5, 100)
    );
    assert!(r.coco_ids);
    let ids: Vec<(i64, &str)> = m
        .categories
        .iter()
        .map(|c| (c.category_id, c.category_name.as_str()))
        .collect();
    assert_eq!(ids, COCO_80.to_vec());
    assert_eq!(
        m.description.as_deref(),
        Some("Ultralytics YOLOv8n-seg model trained on coco.yaml")
    );
    assert_eq!(m.file, Path::new("model.onnx"));
}

#[test]
fn a_yolov5_export_is_yolo_seg() {
    let names = coco_names();
    let mut summary = ultralytics_v8(&names);
    summary.outputs[0] = tensor("output0", &s(&[1, 25200, 117]));
    let r = recognised(&summary);
    assert!(matches!(r.manifest.output, OutputSpec::YoloSeg { .. }));
    assert_eq!(r.layout(), "yolo-seg");
    // The outputs may come in either order.
    summary.outputs.reverse();
    assert_eq!(recognised(&summary).manifest, r.manifest);
}

#[test]
fn a_dynamic_export_takes_its_size_and_stride_from_the_metadata() {
    let names = coco_names();
    let mut summary = ultralytics_v8(&names);
    summary.inputs[0] = tensor("images", &[None, Some(3), None, None]);
    summary.outputs = vec![
        tensor("output0", &[None, Some(116), None]),
        tensor("output1", &[None, Some(32), None, None]),
    ];
    let r = recognised(&summary);
    assert!(matches!(r.manifest.output, OutputSpec::Yolov8Seg { .. }));
    assert!(!r.fixed_input);
    assert_eq!((r.manifest.input.size, r.manifest.input.stride), (640, 32));
    assert_eq!(r.detections.shape_text(), "[?, 116, ?]");

    summary.metadata.insert("imgsz".into(), "320".into());
    assert_eq!(recognised(&summary).manifest.input.size, 320);

    summary.metadata.insert("imgsz".into(), "[640, 480]".into());
    assert!(refused(&summary).contains("not square"));

    summary.metadata.remove("imgsz");
    let text = refused(&summary);
    assert!(
        text.contains("dynamic size") && text.contains("imgsz"),
        "{text}"
    );
}

#[test]
fn the_class_count_of_the_names_settles_the_layout() {
    // 80 names, but the detections hold 81 classes either way.
    let names = coco_names();
    let mut summary = ultralytics_v8(&names);
    summary.outputs[0] = tensor("output0", &s(&[1, 117, 8400]));
    let text = refused(&summary);
    assert!(
        text.contains("fits neither layout for the 80 class names")
            && text.contains("yolov8-seg is [1, 116, anchors]")
            && text.contains("read as yolov8-seg it holds 81 classes"),
        "{text}"
    );

    // Fewer names than classes.
    let mut summary = ultralytics_v8(&names);
    summary
        .metadata
        .insert("names".into(), dict_literal(&names[..79]));
    assert!(refused(&summary).contains("79 class names"));
}

#[test]
fn what_is_not_a_yolo_segmentation_export_is_refused_with_what_was_found() {
    let names = coco_names();
    let base = ultralytics_v8(&names);

    // Mask R-CNN as torchvision exports it: boxes, labels, scores, masks.
    let mut mask_rcnn = base.clone();
    mask_rcnn.inputs[0] = tensor("image", &[Some(3), None, None]);
    mask_rcnn.outputs = vec![
        tensor("boxes", &[None, Some(4)]),
        tensor("labels", &[None]),
        tensor("scores", &[None]),
        tensor("masks", &[None, Some(1), None, None]),
    ];
    assert!(refused(&mask_rcnn).contains("not an image tensor"));
    mask_rcnn.inputs = base.inputs.clone();
    let text = refused(&mask_rcnn);
    assert!(
        text.contains("has 4 outputs") && text.contains("boxes float32 [?, 4]"),
        "{text}"
    );

    let mut detect = base.clone();
    detect.metadata.insert("task".into(), "detect".into());
    assert!(refused(&detect).contains("task = \"detect\""));

    // End-to-end exports: final detections instead of raw anchors.
    let mut end2end = base.clone();
    end2end.metadata.insert("end2end".into(), "True".into());
    assert!(refused(&end2end).contains("end-to-end export (metadata end2end = True)"));
    let mut nms = base.clone();
    nms.metadata.insert(
        "args".into(),
        "{'batch': 1, 'half': False, 'dynamic': False, 'simplify': True, 'opset': None, \
         'nms': True}"
            .into(),
    );
    assert!(refused(&nms).contains("exported with nms=True"));
    let mut raw = base.clone();
    raw.metadata.insert("end2end".into(), "False".into());
    raw.metadata
        .insert("args".into(), "{'batch': 1, 'nms': False}".into());
    recognised(&raw);

    let mut non_square = base.clone();
    non_square.inputs[0] = tensor("images", &s(&[1, 3, 480, 640]));
    assert!(refused(&non_square).contains("640x480, not square"));

    let mut half = base.clone();
    half.inputs[0].element_type = "float16".into();
    assert!(refused(&half).contains("half=True"));

    let mut two_inputs = base.clone();
    two_inputs.inputs.push(tensor("scale", &s(&[1])));
    assert!(refused(&two_inputs).contains("has 2 inputs"));

    let mut no_names = base.clone();
    no_names.metadata.remove("names");
    assert!(refused(&no_names).contains("no class names"));

    let mut bad_names = base.clone();
    bad_names
        .metadata
        .insert("names".into(), "person, car".into());
    assert!(refused(&bad_names).contains("`names` cannot be read"));

    let mut two_protos = base;
    two_protos.outputs[0] = tensor("output0", &s(&[1, 32, 160, 160]));
    assert!(refused(&two_protos).contains("rank 3"));
}

#[test]
fn names_that_are_not_all_coco_get_ids_one_to_n() {
    for names in [
        vec!["apple".to_owned(), "bread".to_owned()],
        // Mostly COCO, one not: all or nothing.
        vec![
            "orange".to_owned(),
            "banana".to_owned(),
            "croissant".to_owned(),
        ],
    ] {
        let mut summary = ultralytics_v8(&names);
        summary
            .metadata
            .insert("names".into(), serde_json_list(&names));
        let r = recognised(&summary);
        assert!(!r.coco_ids);
        let ids: Vec<i64> = r
            .manifest
            .categories
            .iter()
            .map(|c| c.category_id)
            .collect();
        assert_eq!(ids, (1..=names.len() as i64).collect::<Vec<_>>());
        let got: Vec<&str> = r
            .manifest
            .categories
            .iter()
            .map(|c| c.category_name.as_str())
            .collect();
        assert_eq!(got, names);
    }
    // Only COCO names, in another order: COCO's ids by name.
    let names = vec!["cup".to_owned(), "orange".to_owned()];
    let r = recognised(&ultralytics_v8(&names));
    assert!(r.coco_ids);
    let ids: Vec<i64> = r
        .manifest
        .categories
        .iter()
        .map(|c| c.category_id)
        .collect();
    assert_eq!(ids, vec![47, 55]);
}

fn serde_json_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

#[test]
fn the_coco_table_is_the_shipped_manifests_categories() {
    let shipped = Manifest::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/yolov5s-seg-coco/model.toml"),
    )
    .expect("shipped manifest");
    let categories: Vec<(i64, &str)> = shipped
        .categories
        .iter()
        .map(|c| (c.category_id, c.category_name.as_str()))
        .collect();
    assert_eq!(categories, COCO_80.to_vec());
    assert_eq!(coco_id("dining table"), Some(67));
    assert_eq!(coco_id("Dining table"), None);
    assert_eq!(coco_id("croissant"), None);
}

#[test]
fn names_as_python_dict_literals_in_either_quote_style_with_escapes() {
    // Python's own repr of {0: "chef's salad", 1: 'say "hi"', 2: 'back\\slash',
    // 3: 'it\'s "both"', 4: 'tab\there', 5: 'crème brûlée', 6: 'zero\u200bwidth',
    // 7: 'del\x7f'}.
    let literal = r#"{0: "chef's salad", 1: 'say "hi"', 2: 'back\\slash', 3: 'it\'s "both"', 4: 'tab\there', 5: 'crème brûlée', 6: 'zero\u200bwidth', 7: 'del\x7f'}"#;
    assert_eq!(
        parse_class_names(literal).expect("names"),
        vec![
            "chef's salad",
            "say \"hi\"",
            "back\\slash",
            "it's \"both\"",
            "tab\there",
            "crème brûlée",
            "zero\u{200b}width",
            "del\u{7f}",
        ]
    );
    // Keys in any order; string keys of digits (json.dumps of such a dict).
    assert_eq!(
        parse_class_names("{1: 'b', 0: 'a'}").expect("names"),
        vec!["a", "b"]
    );
    assert_eq!(
        parse_class_names(r#"{"0": "a", "1": "b"}"#).expect("names"),
        vec!["a", "b"]
    );
    // Names are kept character for character.
    assert_eq!(
        parse_class_names("{0: ' padded '}").expect("names"),
        vec![" padded "]
    );
}

#[test]
fn names_as_json_or_python_lists() {
    // JSON escapes, `\/` and `\u00e8` included.
    assert_eq!(
        parse_class_names(r#"["a\/b", "cr\u00e8me", "q\""]"#).expect("names"),
        vec!["a/b", "crème", "q\""]
    );
    // A Python list (older YOLOv5 exports): not JSON, read as Python.
    assert_eq!(
        parse_class_names(r#"['person', "chef's salad", 'it\'s']"#).expect("names"),
        vec!["person", "chef's salad", "it's"]
    );
    assert_eq!(parse_class_names("  [\"a\"]\n").expect("names"), vec!["a"]);
}

#[test]
fn names_that_are_not_a_label_set_are_refused() {
    for (text, expected) in [
        ("{0: 'a', 2: 'c'}", "1 is missing"),
        ("{1: 'a', 2: 'b'}", "0 is missing"),
        ("{0: 'a', 0: 'b'}", "appears twice"),
        ("{-1: 'a'}", "not a class index"),
        ("{'a': 'b'}", "not a class index"),
        ("{0: 1}", "class 0: expected a string, found an integer"),
        ("['a', 2]", "class 1: expected a string"),
        ("[]", "empty"),
        ("{}", "empty"),
        ("{0: 'a'", "not a Python literal"),
        ("person", "expected a list"),
        ("", "expected a list"),
    ] {
        let err = parse_class_names(text).expect_err(text).to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn the_written_manifest_reads_back_as_built_and_says_where_it_came_from() {
    let mut names = coco_names();
    names[0] = "chef's \"special\" salad".into();
    let mut summary = ultralytics_v8(&names);
    summary
        .metadata
        .insert("names".into(), serde_json_list(&names));
    let aliases = vec!["food-v8".to_owned(), "124097".to_owned()];
    let r = recognise(
        &summary,
        &ImportRequest {
            name: "food",
            aliases: &aliases,
            source: "best.onnx",
        },
    )
    .expect("recognise");
    let sha = "ab".repeat(32);
    let text = manifest_toml(
        &r,
        Provenance {
            file: "best.onnx",
            sha256: &sha,
        },
    );
    assert!(
        text.starts_with("# Written by `foodseg-worker models import` from best.onnx\n"),
        "{text}"
    );
    assert!(text.contains(&format!("(SHA-256 {sha})")), "{text}");
    assert!(text.contains("layout = \"yolov8-seg\""), "{text}");
    assert!(text.contains("\n[[categories]] # 79\n"), "{text}");
    let read = Manifest::from_toml(&text, Path::new("model.toml")).expect("parses");
    assert_eq!(read, r.manifest);
    assert_eq!(read.aliases, aliases);
    assert!(!r.coco_ids);

    // And with COCO ids, a dynamic input and the YOLOv5 layout.
    let mut summary = ultralytics_v8(&coco_names());
    summary.inputs[0] = tensor("images", &[Some(1), Some(3), None, None]);
    summary.outputs[0] = tensor("output0", &[Some(1), None, Some(117)]);
    let r = recognised(&summary);
    let text = manifest_toml(
        &r,
        Provenance {
            file: "yolov5s-seg.onnx",
            sha256: &sha,
        },
    );
    assert!(text.contains("layout = \"yolo-seg\""), "{text}");
    assert!(text.contains("COCO's category ids"), "{text}");
    assert_eq!(
        Manifest::from_toml(&text, Path::new("model.toml")).expect("parses"),
        r.manifest
    );

    // Any layout writes out, Mask R-CNN's too.
    let mut mask_rcnn = r;
    mask_rcnn.manifest.output = OutputSpec::MaskRcnn {
        boxes: "boxes".into(),
        labels: "labels".into(),
        scores: Some("scores".into()),
        masks: "masks".into(),
        mask_kind: foodseg_models::MaskKind::PerBox,
        label_offset: 1,
    };
    let text = manifest_toml(
        &mask_rcnn,
        Provenance {
            file: "mask-rcnn.onnx",
            sha256: &sha,
        },
    );
    assert_eq!(
        Manifest::from_toml(&text, Path::new("model.toml")).expect("parses"),
        mask_rcnn.manifest
    );
}

#[test]
fn an_invalid_name_or_alias_is_refused_by_validation() {
    let summary = ultralytics_v8(&coco_names());
    let aliases = vec!["imported".to_owned()];
    let err = recognise(
        &summary,
        &ImportRequest {
            name: "imported",
            aliases: &aliases,
            source: "best.onnx",
        },
    )
    .expect_err("duplicate id");
    assert!(err.to_string().contains("appears more than once"), "{err}");
}
