"""Hand and face crops from keypoints (RVLF, RESEARCH.md section 2: 224x224 crops for DINOv2).

Boxes come from the 77-point layout in pixels: a square around the observed points of a part (the face box
from the face, mouth, nose and eye points), grown by a margin and never smaller than a fraction of the shoulder
width (an edge-on hand still gets a hand-sized box). A frame where a part is not found reuses the last good
box of that part, as the paper does; frames before the part's first detection take that first box. A part
never found in the sample has no box (its crops are black and its ``crop_valid`` flag is False).

``box_source`` per frame and part: 0 = detected in this frame, 1 = the last good box reused, 2 = the first good
box reused backwards (frames before the first detection), -1 = no box.
"""

from __future__ import annotations

import numpy as np

from ray_slt.features.layouts import PARTS

CROP_PARTS = ("face", "left_hand", "right_hand")
DETECTED, REUSED, BACKFILLED, NONE = 0, 1, 2, -1

_FACE_POINTS = np.r_[0:3, PARTS["mouth"].start : PARTS["face"].stop]  # nose, eyes, mouth, face
_PART_POINTS = {
    "face": _FACE_POINTS,
    "left_hand": np.r_[PARTS["left_hand"]],
    "right_hand": np.r_[PARTS["right_hand"]],
}
# Box side = max(margin * extent of the points, min_side * shoulder width).
_MARGIN = {"face": 1.4, "left_hand": 1.3, "right_hand": 1.3}
_MIN_SIDE = {"face": 0.55, "left_hand": 0.6, "right_hand": 0.6}
_MIN_POINTS = 5


def part_boxes(pixels: np.ndarray, valid: np.ndarray, shoulder_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Square boxes ``[T, 3, 4]`` (x0, y0, x1, y1 in the points' pixels; NaN where none) for the face, left
    hand and right hand, and their ``box_source [T, 3]`` (int8)."""
    t = pixels.shape[0]
    boxes = np.full((t, len(CROP_PARTS), 4), np.nan, dtype=np.float32)
    source = np.full((t, len(CROP_PARTS)), NONE, dtype=np.int8)
    for j, part in enumerate(CROP_PARTS):
        idx = _PART_POINTS[part]
        for i in range(t):
            ok = valid[i, idx]
            if ok.sum() < _MIN_POINTS:
                continue
            pts = pixels[i, idx][ok]
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            centre = (lo + hi) / 2.0
            side = max(_MARGIN[part] * float((hi - lo).max()), _MIN_SIDE[part] * float(shoulder_width), 8.0)
            boxes[i, j] = (*(centre - side / 2.0), *(centre + side / 2.0))
            source[i, j] = DETECTED
        found = np.flatnonzero(source[:, j] == DETECTED)
        if found.size == 0:
            continue
        last = found[0]
        boxes[: found[0], j] = boxes[found[0], j]
        source[: found[0], j] = BACKFILLED
        for i in range(found[0] + 1, t):
            if source[i, j] == DETECTED:
                last = i
            else:
                boxes[i, j] = boxes[last, j]
                source[i, j] = REUSED
    return boxes, source


def crop_parts(frames: np.ndarray, boxes: np.ndarray, size: int = 224) -> np.ndarray:
    """Crops ``uint8 [T, 3, size, size, 3]`` of ``frames [T, H, W, 3]`` at ``boxes [T, 3, 4]`` (pixels of
    these frames); outside the frame and where a box is NaN the crop is black."""
    import cv2

    t = frames.shape[0]
    out = np.zeros((t, boxes.shape[1], size, size, 3), dtype=np.uint8)
    for i in range(t):
        for j in range(boxes.shape[1]):
            x0, y0, x1, y1 = (float(v) for v in boxes[i, j])
            if not np.isfinite([x0, y0, x1, y1]).all() or x1 <= x0 or y1 <= y0:
                continue
            sx, sy = size / (x1 - x0), size / (y1 - y0)
            m = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]], dtype=np.float64)
            out[i, j] = cv2.warpAffine(
                frames[i],
                m,
                (size, size),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
    return out
