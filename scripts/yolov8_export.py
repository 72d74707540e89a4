#!/usr/bin/env python3
"""ONNX files in the form Ultralytics' YOLOv8/YOLO11-seg export (`yolo export
format=onnx`) writes, for testing `foodseg-worker models import` without Ultralytics,
PyTorch or downloaded weights. Needs the PyPI packages `onnx` and `numpy`; run it with
the repository's helper:

    "$(scripts/python-venv.sh .cache/onnx-venv 'import onnx, numpy' onnx numpy)" \\
        scripts/yolov8_export.py relay models/yolov5s-seg-coco/model.onnx out.onnx \\
        --names-from models/yolov5s-seg-coco/model.toml

Modes:

relay SRC OUT --names-from MODEL.toml
    Re-lays the shipped YOLOv5s-seg model (output0 [1, anchors, 5 + 80 + 32], output1
    the prototypes) in the YOLOv8-seg output form, with the same weights, by appending
    nodes to its graph: boxes = output0[..., 0:4], scores = objectness * class
    probabilities, coefficients = output0[..., 85:117], concatenated on the last axis and
    transposed to [1, 4 + 80 + 32, anchors]. The graph's outputs are `output0` (that
    transposed tensor) and `output1` (the prototypes), as the exporter names them, and the
    metadata is Ultralytics': `names` as a Python dict literal `{0: 'person', ...}` (the
    manifest's category names in order), `stride`, `task`, `imgsz`, `description`,
    `author`. The input keeps the shipped model's dynamic size (as `dynamic=True` exports
    do), so the imported model sees exactly the shipped model's input.

synthetic OUT --classes N [--names A B ...] (--names-json | --names-dict | --no-names)
    A tiny graph in the exporter's names and shapes: input `images` [1, 3, S, S] (S = 64 by
    default), output0 [1, 4 + N + 32, anchors] (or YOLOv5's [1, anchors, 5 + N + 32] with
    --layout v5), output1 [1, 32, S/4, S/4]. The outputs are constants (two detections, of
    class 0 and class 1, with masks filling their boxes) added to a zero computed from the
    input. Class names (default class0, class1, ...) are stored as a JSON list, as the
    Python dict literal Ultralytics writes, or not at all. --extra-output adds a third
    output (a graph the import must refuse). --empty leaves every score at zero: a model
    that finds nothing in microseconds, so a job through it costs only the engine
    (`just bench-engine` imports one).
"""

import argparse
import json
import sys
import tomllib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

COEFFICIENTS = 32


def dims(value_info):
    """The dimensions of a graph input/output: ints, or dim_param names."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def ultralytics_metadata(model, names, imgsz, description, stride=32):
    """Sets metadata_props as Ultralytics' exporter does (`str(value)` of each)."""
    del model.metadata_props[:]
    props = {
        "description": description,
        "author": "foodseg scripts/yolov8_export.py",
        "stride": str(stride),
        "task": "segment",
        "imgsz": str([imgsz, imgsz]),
    }
    if names is not None:
        props["names"] = names
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value


def names_dict_literal(names):
    """`str(dict)` of index -> name: the Python literal Ultralytics writes."""
    return repr({i: n for i, n in enumerate(names)})


def relay(args):
    with open(args.names_from, "rb") as f:
        manifest = tomllib.load(f)
    names = [c["category_name"] for c in manifest["categories"]]
    classes = len(names)

    model = onnx.load(args.src)
    graph = model.graph
    outputs = list(graph.output)
    detections = next(o for o in outputs if len(o.type.tensor_type.shape.dim) == 3)
    prototypes = next(o for o in outputs if len(o.type.tensor_type.shape.dim) == 4)
    det_dims = dims(detections)
    proto_dims = dims(prototypes)
    coefficients = proto_dims[1]
    if not isinstance(coefficients, int) or coefficients <= 0:
        sys.exit(f"prototypes {prototypes.name} {proto_dims}: no static coefficient count")
    row = 5 + classes + coefficients
    if isinstance(det_dims[2], int) and det_dims[2] != row:
        sys.exit(f"detections {detections.name} {det_dims}: expected rows of {row}")

    # The YOLOv5 tensor becomes internal; the exporter's names go to the new outputs.
    v5 = "yolov5_output0"
    for node in graph.node:
        node.output[:] = [v5 if o == detections.name else o for o in node.output]
        node.input[:] = [v5 if i == detections.name else i for i in node.input]
    proto_name = "output1"
    if prototypes.name != proto_name:
        for node in graph.node:
            node.output[:] = [proto_name if o == prototypes.name else o for o in node.output]
            node.input[:] = [proto_name if i == prototypes.name else i for i in node.input]

    def const(name, values):
        graph.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    axes = const("relay_axes", [2])
    step = const("relay_steps", [1])
    nodes = []

    def sliced(name, start, end):
        nodes.append(
            helper.make_node(
                "Slice",
                [v5, const(f"{name}_start", [start]), const(f"{name}_end", [end]), axes, step],
                [name],
                name=f"relay_{name}",
            )
        )
        return name

    boxes = sliced("relay_boxes", 0, 4)
    objectness = sliced("relay_objectness", 4, 5)
    probabilities = sliced("relay_probabilities", 5, 5 + classes)
    coeffs = sliced("relay_coefficients", 5 + classes, row)
    nodes.append(helper.make_node("Mul", [objectness, probabilities], ["relay_scores"], name="relay_scores"))
    nodes.append(
        helper.make_node("Concat", [boxes, "relay_scores", coeffs], ["relay_v8_rows"], axis=-1, name="relay_concat")
    )
    nodes.append(helper.make_node("Transpose", ["relay_v8_rows"], ["output0"], perm=[0, 2, 1], name="relay_transpose"))
    graph.node.extend(nodes)

    batch, anchors = det_dims[0], det_dims[1]
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 4 + classes + coefficients, anchors]),
            helper.make_tensor_value_info("output1", TensorProto.FLOAT, proto_dims),
        ]
    )
    ultralytics_metadata(
        model,
        names_dict_literal(names),
        args.imgsz,
        f"YOLOv5s-seg ({classes} classes) re-laid in the Ultralytics YOLOv8-seg output form",
    )
    onnx.checker.check_model(model)
    onnx.save(model, args.out)
    print(f"wrote {args.out}: output0 {dims(graph.output[0])}, output1 {dims(graph.output[1])}")


def synthetic(args):
    n = args.classes
    size = args.size
    if size % 32:
        sys.exit("--size must be a multiple of 32")
    names = args.names or [f"class{i}" for i in range(n)]
    proto = size // 4
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    per_anchor = 4 + n + COEFFICIENTS

    # Two detections in input pixels: class 0 top left, class min(1, N-1) bottom right.
    columns = np.zeros((per_anchor, anchors), dtype=np.float32)
    s = size / 64
    found = [((16 * s, 16 * s, 20 * s, 20 * s), 0, 0.9), ((44 * s, 44 * s, 24 * s, 16 * s), min(1, n - 1), 0.8)]
    for anchor, (box, cls, score) in enumerate([] if args.empty else found):
        columns[0:4, anchor] = box
        columns[4 + cls, anchor] = score
        columns[4 + n :, anchor] = 1.0  # every prototype is 1: the mask fills the box
    if args.layout == "v8":
        detections = columns[np.newaxis]
    else:
        rows = np.zeros((anchors, 5 + n + COEFFICIENTS), dtype=np.float32)
        rows[:, 0:4] = columns[0:4].T
        rows[:, 4] = columns[4 : 4 + n].max(axis=0)  # objectness; class probabilities of 1
        rows[:, 5 : 5 + n] = (columns[4 : 4 + n] > 0).T
        rows[:, 5 + n :] = columns[4 + n :].T
        detections = rows[np.newaxis]
    prototypes = np.ones((1, COEFFICIENTS, proto, proto), dtype=np.float32)

    initializers = [
        numpy_helper.from_array(detections, "detections_constant"),
        numpy_helper.from_array(prototypes, "prototypes_constant"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
    ]
    nodes = [
        # A zero that depends on the input, so the outputs are computed from it.
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["detections_constant", "nothing"], ["output0"]),
        helper.make_node("Add", ["prototypes_constant", "nothing"], ["output1"]),
    ]
    outputs = [
        helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(detections.shape)),
        helper.make_tensor_value_info("output1", TensorProto.FLOAT, list(prototypes.shape)),
    ]
    if args.extra_output:
        nodes.append(helper.make_node("Identity", ["nothing"], ["output2"]))
        outputs.append(helper.make_tensor_value_info("output2", TensorProto.FLOAT, []))
    graph = helper.make_graph(
        nodes,
        "synthetic-yolov8-seg",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.ir_version = 8
    if args.names_format == "json":
        stored = json.dumps(names, ensure_ascii=False)
    elif args.names_format == "dict":
        stored = names_dict_literal(names)
    else:
        stored = None
    ultralytics_metadata(model, stored, size, f"synthetic YOLOv8-seg-shaped model, {n} classes")
    onnx.checker.check_model(model)
    onnx.save(model, args.out)
    print(f"wrote {args.out}: output0 {list(detections.shape)}, output1 {list(prototypes.shape)}, names {stored}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)

    r = modes.add_parser("relay", help="the shipped YOLOv5s-seg model in the YOLOv8-seg output form")
    r.add_argument("src")
    r.add_argument("out")
    r.add_argument("--names-from", required=True, help="a model.toml whose categories name the classes")
    r.add_argument("--imgsz", type=int, default=640, help="the size written to the metadata's imgsz")
    r.set_defaults(run=relay)

    s = modes.add_parser("synthetic", help="a tiny graph in the exporter's names and shapes")
    s.add_argument("out")
    s.add_argument("--classes", type=int, required=True)
    s.add_argument("--names", nargs="+", help="class names (default class0, class1, ...)")
    s.add_argument("--size", type=int, default=64, help="input side (a multiple of 32)")
    s.add_argument("--layout", choices=["v8", "v5"], default="v8")
    s.add_argument("--extra-output", action="store_true", help="add a third output")
    s.add_argument("--empty", action="store_true", help="no detections: every score is zero")
    how = s.add_mutually_exclusive_group(required=True)
    how.add_argument("--names-json", dest="names_format", action="store_const", const="json")
    how.add_argument("--names-dict", dest="names_format", action="store_const", const="dict")
    how.add_argument("--no-names", dest="names_format", action="store_const", const="none")
    s.set_defaults(run=synthetic)

    args = parser.parse_args()
    if args.mode == "synthetic" and args.classes < 1:
        parser.error("--classes must be at least 1")
    args.run(args)


if __name__ == "__main__":
    main()
