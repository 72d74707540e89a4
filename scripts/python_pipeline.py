"""The plain Python pipeline foodseg is measured against: what a Python shop writes for a
YOLOv5-seg model in forty lines, with OpenCV, NumPy and ONNX Runtime.

cv2.imdecode → 640×640 letterbox with cv2.resize → onnxruntime (CPU, N intra-op threads)
→ NumPy confidence filter → cv2.dnn.NMSBoxes → masks from the prototypes resized to the
full image with cv2.resize → cv2.findContours + cv2.approxPolyDP. `segment` returns the
items (class index, score, box, polygons) in original-image pixels.
"""

import cv2
import numpy as np
import onnxruntime as ort

SIZE, CONF, IOU, MASK = 640, 0.25, 0.45, 0.5


def load(model_path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def segment(session: ort.InferenceSession, data: bytes) -> list[dict]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    r = SIZE / max(h, w)
    nw, nh = round(w * r), round(h * r)
    top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
    canvas = np.full((SIZE, SIZE, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    blob = np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0

    pred, proto = session.run(None, {"images": blob})
    pred, proto = pred[0], proto[0]
    scores = pred[:, 5:85] * pred[:, 4:5]
    classes = scores.argmax(1)
    conf = scores[np.arange(len(scores)), classes]
    keep = conf > CONF
    pred, classes, conf = pred[keep], classes[keep], conf[keep]
    boxes = np.stack([pred[:, 0] - pred[:, 2] / 2, pred[:, 1] - pred[:, 3] / 2, pred[:, 2], pred[:, 3]], 1)
    picked = cv2.dnn.NMSBoxes(boxes.tolist(), conf.tolist(), CONF, IOU)
    picked = np.array(picked, dtype=int).reshape(-1)[:100]

    c, mh, mw = proto.shape
    items = []
    for i in picked:
        m = 1 / (1 + np.exp(-(pred[i, 85:] @ proto.reshape(c, -1)))).reshape(mh, mw)
        # The image part of the letterbox, in prototype cells, then the full image.
        sx, sy = mw / SIZE, mh / SIZE
        m = m[int(top * sy):int((top + nh) * sy), int(left * sx):int((left + nw) * sx)]
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) > MASK
        x, y, bw, bh = boxes[i]
        x1, y1 = max(int((x - left) / r), 0), max(int((y - top) / r), 0)
        x2, y2 = min(int((x + bw - left) / r) + 1, w), min(int((y + bh - top) / r) + 1, h)
        crop = np.zeros_like(m, np.uint8)
        crop[y1:y2, x1:x2] = m[y1:y2, x1:x2]
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = [cv2.approxPolyDP(ct, 1.0, True).reshape(-1, 2).tolist() for ct in contours if len(ct) >= 3]
        items.append({"class_index": int(classes[i]), "score": float(conf[i]),
                      "bbox": [x1, y1, x2 - x1, y2 - y1], "polygons": polygons})
    return items
