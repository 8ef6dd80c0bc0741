"""Keypoint layouts: model inputs selected from a ``.pose`` file.

The 77-point layout of the RVLF skeleton encoder (RESEARCH.md, section 2)::

    index  part        points
    0-8    body        nose, left_eye, right_eye, left_shoulder, right_shoulder, left_elbow, right_elbow,
                       left_wrist, right_wrist
    9-29   left_hand   21 points in the standard hand order: wrist, thumb cmc/mcp/ip/tip, index mcp/pip/dip/tip,
                       middle, ring, pinky (mcp/pip/dip/tip each)
    30-50  right_hand  the same 21
    51-58  mouth       the inner-lip ring, iBUG/COCO-WholeBody face points 60..67 in ring order
    59-76  face        jaw line iBUG 0,2,...,16 (9), eyebrows iBUG 17,19,21,22,24,26 (6), nose tip iBUG 30,
                       outer eye corners iBUG 36, 45

"left" is the signer's left (pose-format and MediaPipe convention; COCO-WholeBody's ``left_*`` too). iBUG
point 0 and 36 are on the signer's right (image left for a signer facing the camera).

Index tables, per source (``HOLISTIC_SLOTS``/``COCO_WHOLEBODY_SLOTS`` hold them; ``HOLISTIC_543_INDEX`` and
``COCO_WHOLEBODY_133_INDEX`` give the same as flat indices into the standard point orders):

* **COCO-WholeBody-133** (MMPose; components ``BODY`` 23, ``FACE`` 68, ``LEFT_HAND`` 21, ``RIGHT_HAND`` 21,
  as pose-format's ``cocowholebody_components()``): body = BODY 0,1,2,5,6,7,8,9,10; hands = hand 0..20;
  mouth = FACE 60..67; face = FACE 0,2,4,6,8,10,12,14,16,17,19,21,22,24,26,30,36,45. Points are addressed by
  position within a component, because writers name them differently (``face-3``/``left_hand_3``/``hand_3``).
* **MediaPipe Holistic** (components ``POSE_LANDMARKS`` 33, ``FACE_LANDMARKS`` 468/478, hands 21 each, points
  addressed by name): body = NOSE, LEFT_EYE, RIGHT_EYE, LEFT/RIGHT_SHOULDER, _ELBOW, _WRIST; hands = the 21
  ``HandLandmark`` names; mouth and face from the 468-point face mesh at the iBUG-equivalent vertices

      iBUG   60  61  62  63   64   65  66  67    (inner lip ring)
      mesh   78  81  13  311  308  402 14  178
      iBUG   0   2   4   6   8   10  12  14  16  17  19  21  22  24  26  30  36  45
      mesh   127 132 172 149 152 378 397 361 356 46  52  55  285 282 276 4   33  263

  The mesh has no vertices defined as iBUG points, so these are chosen by definition and checked on data:
  iBUG jaw points are evenly spaced along the jaw, and the mesh's face-oval vertices 127 -> 152 sit at arc
  fractions 0, .31, .53, .77, 1 (132, 172, 149 are the nearest to 1/4, 1/2, 3/4 once 93/150, which the data
  rejects, are compared); inner-lip 61/63/65/67 lie halfway between the lip corner and the lip centre, which is
  vertex 81/311/402/178 on the mesh's inner-lip contour (the often-quoted 82/312/317/87 sit next to the
  centre). Each left/right pair is a mirror pair of the mesh (pose-format's ``FLIPPED_FACE_POINTS``). On
  ``SOUP.mp4`` these 26 vertices lie on average 0.013 shoulder widths (max 0.04) from MMPose's COCO-WholeBody
  points of the same video (``slp_pose/SOUP.mmpose.pose``); ``tests/features/test_layouts.py`` checks it.
* **The 77-point layout itself** (``.pose`` files ray_slt writes from the layout, e.g. produced poses; see
  :func:`layout77_to_pose`): components ``BODY`` 9, ``LEFT_HAND`` 21, ``RIGHT_HAND`` 21, ``MOUTH`` 8, ``FACE`` 18
  in layout order, with the limbs below, format ``XYC``; read back point for point.
* **Reduced MediaPipe Holistic** (178 points: ``POSE_LANDMARKS`` 8 = shoulders, elbows, wrists, hips; the
  128 face-contour vertices; hands), as the DGS-corpus and SignSuisse files ship it: the same names; the
  eyes fall back to the mean of their eye corners (mesh 263/362, 33/133) and the nose, absent, is masked.

Missing points are masked, never zeros that look like data: the result carries a boolean ``valid`` array
(True where the point was observed), and coordinates are 0 where it is False. A point is observed when its
confidence exceeds ``min_confidence`` (pose-format's convention: 0 means missing; COCO-WholeBody scores are
always positive, so that source defaults to 0.3).

Normalisation (pose-format's ``Pose.normalize`` convention): centre on the mean shoulder midpoint of the
sequence and divide by the mean shoulder width, both over the frames where both shoulders are observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ray_slt.errors import DataError
from ray_slt.features.sampling import SampleError

BODY_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
)
HAND_NAMES = (
    "wrist",
    "thumb_cmc",
    "thumb_mcp",
    "thumb_ip",
    "thumb_tip",
    "index_mcp",
    "index_pip",
    "index_dip",
    "index_tip",
    "middle_mcp",
    "middle_pip",
    "middle_dip",
    "middle_tip",
    "ring_mcp",
    "ring_pip",
    "ring_dip",
    "ring_tip",
    "pinky_mcp",
    "pinky_pip",
    "pinky_dip",
    "pinky_tip",
)
MOUTH_IBUG = (60, 61, 62, 63, 64, 65, 66, 67)
FACE_IBUG = (0, 2, 4, 6, 8, 10, 12, 14, 16, 17, 19, 21, 22, 24, 26, 30, 36, 45)

LAYOUT_77_NAMES: tuple[str, ...] = (
    *BODY_NAMES,
    *(f"left_hand_{n}" for n in HAND_NAMES),
    *(f"right_hand_{n}" for n in HAND_NAMES),
    *(f"mouth_{i}" for i in MOUTH_IBUG),
    *(f"face_{i}" for i in FACE_IBUG),
)
PARTS = {
    "body": slice(0, 9),
    "left_hand": slice(9, 30),
    "right_hand": slice(30, 51),
    "mouth": slice(51, 59),
    "face": slice(59, 77),
}
NUM_POINTS = 77
LEFT_SHOULDER, RIGHT_SHOULDER = 3, 4
LEFT_WRIST, RIGHT_WRIST = 7, 8

# Limbs of each part (indices within the part): the skeleton encoder's graphs, the limbs of a written .pose and
# the lines the web page draws.
BODY_EDGES = [(0, 1), (0, 2), (0, 3), (0, 4), (3, 4), (3, 5), (5, 7), (4, 6), (6, 8)]
# wrist -> each finger's chain, plus the knuckle line across the palm
HAND_EDGES = [
    *[(0, 1), (1, 2), (2, 3), (3, 4)],
    *[(0, 5), (5, 6), (6, 7), (7, 8)],
    *[(9, 10), (10, 11), (11, 12)],
    *[(13, 14), (14, 15), (15, 16)],
    *[(0, 17), (17, 18), (18, 19), (19, 20)],
    *[(5, 9), (9, 13), (13, 17)],
]
MOUTH_EDGES = [(i, (i + 1) % 8) for i in range(8)]
FACE_EDGES = [
    *[(i, i + 1) for i in range(8)],  # jaw line
    *[(9, 10), (10, 11), (11, 12), (12, 13), (13, 14)],  # brow arc: outer->inner, inner->outer
    (15, 11),  # nose tip - inner brows
    (15, 12),
    (15, 4),  # nose tip - chin (middle jaw point)
    (16, 9),  # right-eye outer corner - outer end of the first brow
    (17, 14),  # left-eye outer corner - outer end of the second brow
    (16, 15),
    (17, 15),
    (16, 0),  # right-eye outer corner - top of the jaw line on the signer's right (iBUG 36 - 0)
    (17, 8),  # left-eye outer corner - top of the jaw line on the signer's left (iBUG 45 - 16)
]
PART_EDGES: dict[str, list[tuple[int, int]]] = {
    "body": BODY_EDGES,
    "left_hand": HAND_EDGES,
    "right_hand": HAND_EDGES,
    "mouth": MOUTH_EDGES,
    "face": FACE_EDGES,
}
# All limbs as pairs of layout indices, plus the links from the body's wrists to the hands' wrists.
LAYOUT_77_EDGES: list[tuple[int, int]] = [
    *[(PARTS[p].start + i, PARTS[p].start + j) for p, edges in PART_EDGES.items() for i, j in edges],
    (LEFT_WRIST, PARTS["left_hand"].start),
    (RIGHT_WRIST, PARTS["right_hand"].start),
]
# The components of a .pose written from the layout (name, part), in layout order.
LAYOUT_77_COMPONENTS = (("BODY", "body"), ("LEFT_HAND", "left_hand"), ("RIGHT_HAND", "right_hand"),
                        ("MOUTH", "mouth"), ("FACE", "face"))  # fmt: skip

# iBUG-68 -> MediaPipe face-mesh vertex (see the module docstring for how they were chosen and checked).
IBUG_TO_FACEMESH = {
    0: 127, 2: 132, 4: 172, 6: 149, 8: 152, 10: 378, 12: 397, 14: 361, 16: 356,
    17: 46, 19: 52, 21: 55, 22: 285, 24: 282, 26: 276, 30: 4, 36: 33, 45: 263,
    60: 78, 61: 81, 62: 13, 63: 311, 64: 308, 65: 402, 66: 14, 67: 178,
}  # fmt: skip

_HOLISTIC_HAND = (
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP",
    "INDEX_FINGER_MCP", "INDEX_FINGER_PIP", "INDEX_FINGER_DIP", "INDEX_FINGER_TIP",
    "MIDDLE_FINGER_MCP", "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP", "MIDDLE_FINGER_TIP",
    "RING_FINGER_MCP", "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP",
    "PINKY_MCP", "PINKY_PIP", "PINKY_DIP", "PINKY_TIP",
)  # fmt: skip

# A slot is a list of alternatives; an alternative is (component, points) whose mean is the slot's point.
# The first alternative whose component and points all exist in a file's header is used for every frame.
Alternative = tuple[str, tuple]


def _holistic_slots() -> list[list[Alternative]]:
    face = "FACE_LANDMARKS"
    body = [
        [("POSE_LANDMARKS", ("NOSE",)), (face, ("1",))],
        [("POSE_LANDMARKS", ("LEFT_EYE",)), (face, ("263", "362"))],
        [("POSE_LANDMARKS", ("RIGHT_EYE",)), (face, ("33", "133"))],
        *[
            [("POSE_LANDMARKS", (n,))]
            for n in (
                "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST",
            )
        ],
    ]  # fmt: skip
    hands = [[(f"{side}_HAND_LANDMARKS", (n,))] for side in ("LEFT", "RIGHT") for n in _HOLISTIC_HAND]
    mesh = [[(face, (str(IBUG_TO_FACEMESH[i]),))] for i in (*MOUTH_IBUG, *FACE_IBUG)]
    return body + hands + mesh


def _coco_slots() -> list[list[Alternative]]:
    body = [[("BODY", (i,))] for i in (0, 1, 2, 5, 6, 7, 8, 9, 10)]
    hands = [[(c, (i,))] for c in ("LEFT_HAND", "RIGHT_HAND") for i in range(21)]
    face = [[("FACE", (i,))] for i in (*MOUTH_IBUG, *FACE_IBUG)]
    return body + hands + face


def _layout77_slots() -> list[list[Alternative]]:
    return [[(name, (i,))] for name, part in LAYOUT_77_COMPONENTS for i in range(PARTS[part].stop - PARTS[part].start)]


HOLISTIC_SLOTS = _holistic_slots()
COCO_WHOLEBODY_SLOTS = _coco_slots()
LAYOUT77_SLOTS = _layout77_slots()
DEFAULT_MIN_CONFIDENCE = {"holistic": 0.0, "holistic_reduced": 0.0, "coco_wholebody_133": 0.3, "layout77": 0.0}
SLOTS = {"holistic": HOLISTIC_SLOTS, "holistic_reduced": HOLISTIC_SLOTS, "coco_wholebody_133": COCO_WHOLEBODY_SLOTS,
         "layout77": LAYOUT77_SLOTS}  # fmt: skip

# Flat indices into the standard point orders: Holistic 543 = POSE 33 + FACE 468 + LEFT 21 + RIGHT 21;
# COCO-WholeBody 133 = BODY 23 + FACE 68 + LEFT_HAND 21 + RIGHT_HAND 21.
_BODY33 = (
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE", "RIGHT_EYE_OUTER",
    "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW",
    "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST",
)  # fmt: skip
_H543_START = {"POSE_LANDMARKS": 0, "FACE_LANDMARKS": 33, "LEFT_HAND_LANDMARKS": 501, "RIGHT_HAND_LANDMARKS": 522}
_C133_START = {"BODY": 0, "FACE": 23, "LEFT_HAND": 91, "RIGHT_HAND": 112}


def _h543(alt: Alternative) -> int:
    comp, (name,) = alt[0], alt[1][:1]
    if comp == "POSE_LANDMARKS":
        return _BODY33.index(name)
    if comp == "FACE_LANDMARKS":
        return 33 + int(name)
    return _H543_START[comp] + _HOLISTIC_HAND.index(name)


HOLISTIC_543_INDEX: tuple[int, ...] = tuple(_h543(slot[0]) for slot in HOLISTIC_SLOTS)
COCO_WHOLEBODY_133_INDEX: tuple[int, ...] = tuple(
    _C133_START[slot[0][0]] + slot[0][1][0] for slot in COCO_WHOLEBODY_SLOTS
)


@dataclass
class Layout77:
    """The 77-point layout of one person over ``T`` frames.

    ``coords`` float32 ``[T, 77, 2]``: normalised (centre = mean shoulder midpoint, unit = mean shoulder width);
    ``pixels`` the same points in the source's pixels; both 0 where ``valid`` (bool ``[T, 77]``) is False.
    ``confidence`` float32 ``[T, 77]``; ``center`` (pixels) and ``scale`` (shoulder width in pixels) undo the
    normalisation: ``pixels = coords * scale + center`` where valid.
    """

    coords: np.ndarray
    pixels: np.ndarray
    valid: np.ndarray
    confidence: np.ndarray
    center: np.ndarray
    scale: float
    source: str

    def masked(self, normalised: bool = True) -> np.ma.MaskedArray:
        """``coords`` (or ``pixels``) as a numpy masked array (mask True = missing, numpy's convention)."""
        data = self.coords if normalised else self.pixels
        return np.ma.masked_array(data, mask=np.repeat(~self.valid[..., None], 2, axis=-1))

    def part(self, name: str) -> slice:
        return PARTS[name]


def detect_source(header) -> str:
    """``holistic``, ``holistic_reduced``, ``coco_wholebody_133`` or ``layout77`` from a pose header's
    components."""
    comps = {c.name: len(c.points) for c in header.components}
    ours = {name: PARTS[part].stop - PARTS[part].start for name, part in LAYOUT_77_COMPONENTS}
    if comps == ours:
        return "layout77"
    if "POSE_LANDMARKS" in comps:
        return "holistic" if comps["POSE_LANDMARKS"] >= 17 else "holistic_reduced"
    coco = ("BODY", "FACE", "LEFT_HAND", "RIGHT_HAND")
    if set(coco) <= set(comps) and tuple(comps[c] for c in coco) == (23, 68, 21, 21):
        return "coco_wholebody_133"
    raise DataError(f"no 77-point layout for pose components {sorted(comps)} (expected Holistic or COCO-WholeBody)")


def _resolve(header, slots: list[list[Alternative]]) -> list[list[int] | None]:
    """Per slot, the flat point indices (into the pose's points) to average, or None when absent."""
    starts, names = {}, {}
    idx = 0
    for c in header.components:
        starts[c.name] = idx
        names[c.name] = {p: i for i, p in enumerate(c.points)}
        idx += len(c.points)
    sizes = {c.name: len(c.points) for c in header.components}
    out: list[list[int] | None] = []
    for slot in slots:
        chosen = None
        for comp, points in slot:
            if comp not in starts:
                continue
            if all(isinstance(p, int) for p in points):
                if all(p < sizes[comp] for p in points):
                    chosen = [starts[comp] + p for p in points]
            elif all(p in names[comp] for p in points):
                chosen = [starts[comp] + names[comp][p] for p in points]
            if chosen is not None:
                break
        out.append(chosen)
    return out


def select_points(
    data: np.ndarray, confidence: np.ndarray, header, min_confidence: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Pick the 77 points from one person's ``data [T, P, D]`` and ``confidence [T, P]`` (pixels).

    Returns ``(xy [T, 77, 2], valid [T, 77], confidence [T, 77], source)``.
    """
    source = detect_source(header)
    slots = SLOTS[source]
    threshold = DEFAULT_MIN_CONFIDENCE[source] if min_confidence is None else float(min_confidence)
    data = np.asarray(data, dtype=np.float32)
    confidence = np.asarray(confidence, dtype=np.float32)
    t = data.shape[0]
    xy = np.zeros((t, NUM_POINTS, 2), dtype=np.float32)
    valid = np.zeros((t, NUM_POINTS), dtype=bool)
    conf = np.zeros((t, NUM_POINTS), dtype=np.float32)
    for k, idx in enumerate(_resolve(header, slots)):
        if idx is None:
            continue
        c = confidence[:, idx].min(axis=1)
        pts = data[:, idx, :2].mean(axis=1)
        ok = (confidence[:, idx] > threshold).all(axis=1) & np.isfinite(pts).all(axis=1)
        xy[ok, k] = pts[ok]
        valid[:, k] = ok
        conf[:, k] = np.where(ok, c, 0.0)
    return xy, valid, conf, source


def normalize(xy: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre on the mean shoulder midpoint and scale by the mean shoulder width (over frames where both
    shoulders are observed). Raises ``SampleError`` (stage ``layout``) when no frame has both shoulders."""
    both = valid[:, LEFT_SHOULDER] & valid[:, RIGHT_SHOULDER]
    if not both.any():
        raise SampleError("layout", "no person: the shoulders are not visible in any frame")
    left, right = xy[both, LEFT_SHOULDER].astype(np.float64), xy[both, RIGHT_SHOULDER].astype(np.float64)
    center = ((left + right) / 2.0).mean(axis=0)
    scale = float(np.linalg.norm(left - right, axis=1).mean())
    if not scale > 0:
        raise SampleError("layout", "degenerate pose: zero shoulder width")
    out = ((xy - center) / scale).astype(np.float32)
    out[~valid] = 0.0
    return out, center.astype(np.float32), scale


def layout77(pose, min_confidence: float | None = None, person: int = 0) -> Layout77:
    """The 77-point layout of a pose-format ``Pose`` (person ``person``), normalised and in pixels."""
    body = pose.body
    data = np.ma.getdata(body.data)[:, person]
    conf = np.asarray(body.confidence)[:, person]
    return layout77_from_arrays(data, conf, pose.header, min_confidence)


def layout77_from_arrays(data: np.ndarray, confidence: np.ndarray, header, min_confidence=None) -> Layout77:
    """As :func:`layout77`, from one person's ``data [T, P, D]`` and ``confidence [T, P]``."""
    xy, valid, conf, source = select_points(data, confidence, header, min_confidence)
    coords, center, scale = normalize(xy, valid)
    return Layout77(coords, xy, valid, conf, center, scale, source)


def layout77_pixels(pose, min_confidence: float | None = None, person: int = 0):
    """Un-normalised variant: ``(xy pixels [T, 77, 2], valid [T, 77], confidence [T, 77])``; no shoulders
    needed (crops use it)."""
    data = np.ma.getdata(pose.body.data)[:, person]
    conf = np.asarray(pose.body.confidence)[:, person]
    xy, valid, c, _ = select_points(data, conf, pose.header, min_confidence)
    return xy, valid, c


def layout77_components() -> list:
    """The pose-format components of a ``.pose`` written from the 77-point layout: one per part, named points,
    the part's limbs (:data:`PART_EDGES`) with a colour per part, format ``XYC``."""
    from pose_format.pose_header import PoseHeaderComponent

    names = {
        "body": list(BODY_NAMES),
        "left_hand": list(HAND_NAMES),
        "right_hand": list(HAND_NAMES),
        "mouth": [f"ibug_{i}" for i in MOUTH_IBUG],
        "face": [f"ibug_{i}" for i in FACE_IBUG],
    }
    colors = {"body": (0, 160, 0), "left_hand": (200, 60, 0), "right_hand": (0, 90, 220), "mouth": (200, 0, 120),
              "face": (128, 128, 128)}  # fmt: skip
    return [
        PoseHeaderComponent(name, names[part], list(PART_EDGES[part]), [colors[part]] * len(PART_EDGES[part]), "XYC")
        for name, part in LAYOUT_77_COMPONENTS
    ]


def layout77_to_pose(
    xy: np.ndarray,
    valid: np.ndarray,
    confidence: np.ndarray | None = None,
    fps: float = 25.0,
    width: int = 512,
    height: int = 512,
):
    """A pose-format ``Pose`` of the 77-point layout (one person): ``xy [T, 77, 2]`` in pixels, ``valid [T, 77]``
    (False: the point is missing and is written masked, confidence 0), ``confidence [T, 77]`` (default 1 where
    valid). Reading it back with :func:`layout77_pixels` gives the same points where valid and masks the rest.

    A point that is valid but has confidence 0 cannot be written (pose-format masks exactly the points with
    confidence 0): it is written with the smallest positive confidence instead."""
    from ray_slt.data.poses import build_pose

    xy = np.asarray(xy, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    if xy.ndim != 3 or xy.shape[1:] != (NUM_POINTS, 2) or valid.shape != xy.shape[:2]:
        raise DataError(f"a 77-point layout needs xy [T, 77, 2] and valid [T, 77], got {xy.shape} and {valid.shape}")
    conf = np.ones(valid.shape, np.float32) if confidence is None else np.asarray(confidence, dtype=np.float32)
    conf = np.where(valid, np.maximum(conf, np.finfo(np.float32).tiny), 0.0).astype(np.float32)
    data = np.where(valid[..., None], xy, 0.0).astype(np.float32)
    return build_pose(layout77_components(), data, conf, fps, width, height)
