#!/usr/bin/env python3
"""Reference COCO evaluation with pycocotools.

Usage: cocoeval.py ANNOTATIONS.json DETECTIONS.json

Prints one JSON object: for "bbox" and "segm", the twelve standard numbers under their
names (AP, AP50, ..., ARl) and "per_category", the AP@[.5:.95] (all areas, 100
detections) of each category id, -1 where undefined. The pycocotools progress output
goes to stderr.
"""
import contextlib
import json
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl",
         "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def evaluate(gt, dets, iou_type):
    ev = COCOeval(gt, dets, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    out = {name: float(v) for name, v in zip(NAMES, ev.stats)}
    per_category = {}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_category[str(cat_id)] = float(np.mean(p)) if p.size else -1.0
    out["per_category"] = per_category
    return out


def main():
    gt_path, dets_path = sys.argv[1], sys.argv[2]
    with contextlib.redirect_stdout(sys.stderr):
        gt = COCO(gt_path)
        with open(dets_path) as f:
            detections = json.load(f)
        dets = gt.loadRes(detections)
        result = {t: evaluate(gt, dets, t) for t in ("bbox", "segm")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
