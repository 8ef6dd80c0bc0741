"""SignLLM's Prompt2Sign pose representation (paper 5, Sec. 3.1; SPEC_papers_3_5.md C.1.1): 50 upper-body and hand
joints per frame, lifted from 2D to 3D by its Algorithm 1, written as "skels" lines.

The 50-joint layout (OpenPose's order: BODY_25 points 0-7, then the left hand's 21, then the right hand's 21)::

    0 nose   1 neck   2 right_shoulder  3 right_elbow  4 right_wrist  5 left_shoulder  6 left_elbow  7 left_wrist
    8-28   left hand   (wrist, thumb cmc/mcp/ip/tip, index, middle, ring, pinky mcp/pip/dip/tip)
    29-49  right hand  (the same order)

From the project's 77-point layout (any ``.pose`` it reads: MediaPipe Holistic full or reduced, COCO-WholeBody):
the neck is the midpoint of the shoulders (observed when both are); the rest are the same points.

Algorithm 1 (2D -> 3D lifting), as read here (the paper leaves the "angles", the bone list, the percentile and the
noise undefined; these readings follow the Zelinka & Kanis lifting it cites, SPEC C.5 item 9):

- the root (the neck) keeps its x, y; z = 0 (plus the optional noise sigma);
- **Step I**: each bone's length L is the ``percentile`` (default 90) of its 2D length over the observed frames
  (the paper stores log L as the parameter of an optimisation; with no optimisation here, L itself is used);
- **Step II**: the direction (dx, dy, dz) with dx, dy the 2D bone vector and dz = sqrt(max(L^2 - dx^2 - dy^2, 0))
  (the depth that gives the bone its length), divided by its norm; not finite -> all 0; A_z = |A_z| + 0.001;
  renormalised;
- **Step III**: child = parent + L * A, walking the bone tree out from the root.

So a bone never longer in 2D than L keeps its 2D image (up to the 0.001 depth nudge) and every bone has the same 3D
length L in every frame. Missing 2D points are filled before lifting (the paper replaces NaN and 0 values "with the
median or mean"; here, for motion: linear interpolation between the frames where the point is observed, the
nearest observed value at the ends, the parent joint's position when never observed).

Skels format (Progressive Transformers' text format, which Prompt2Sign adopts): one line per clip; each frame is
150 numbers (x, y, z of the 50 joints) followed by a counter, frame_index / (frames - 1) (the "progress bar": 0
at the first frame, 1 at the last, which a producer learns to predict to know when to stop); all space-separated.
"""

from __future__ import annotations

import numpy as np

from ray_slt.errors import DataError
from ray_slt.features.layouts import HAND_NAMES, LEFT_SHOULDER, NUM_POINTS, PARTS, RIGHT_SHOULDER

BODY8 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist")
NAMES50: tuple[str, ...] = (
    *BODY8,
    *(f"left_hand_{n}" for n in HAND_NAMES),
    *(f"right_hand_{n}" for n in HAND_NAMES),
)
NUM_JOINTS = 50
LEFT_HAND0, RIGHT_HAND0 = 8, 29
ROOT = 1  # the neck

# the 77-point layout's index for each of the 50 joints (the neck: None, the shoulders' midpoint)
_FROM77: tuple[int | None, ...] = (
    0, None, RIGHT_SHOULDER, 6, 8, LEFT_SHOULDER, 5, 7,
    *range(PARTS["left_hand"].start, PARTS["left_hand"].stop),
    *range(PARTS["right_hand"].start, PARTS["right_hand"].stop),
)  # fmt: skip

_HAND_BONES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
               (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20)]  # fmt: skip
#: (parent, child) bones of the 50-joint tree, parents before children (a walk out from the neck)
BONES: tuple[tuple[int, int], ...] = (
    (1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
    (7, LEFT_HAND0), *((LEFT_HAND0 + a, LEFT_HAND0 + b) for a, b in _HAND_BONES),
    (4, RIGHT_HAND0), *((RIGHT_HAND0 + a, RIGHT_HAND0 + b) for a, b in _HAND_BONES),
)  # fmt: skip


def from_layout77(xy: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 50 joints ``[T, 50, 2]`` and their ``valid [T, 50]`` from the 77-point layout (coordinates 0 where
    missing)."""
    xy, valid = np.asarray(xy, np.float64), np.asarray(valid, bool)
    if xy.ndim != 3 or xy.shape[1:] != (NUM_POINTS, 2) or valid.shape != xy.shape[:2]:
        raise DataError(f"expected a 77-point layout xy [T, 77, 2] and valid [T, 77], got {xy.shape}, {valid.shape}")
    out = np.zeros((xy.shape[0], NUM_JOINTS, 2))
    ok = np.zeros((xy.shape[0], NUM_JOINTS), bool)
    for j, src in enumerate(_FROM77):
        if src is None:
            ok[:, j] = valid[:, LEFT_SHOULDER] & valid[:, RIGHT_SHOULDER]
            out[:, j] = (xy[:, LEFT_SHOULDER] + xy[:, RIGHT_SHOULDER]) / 2
        else:
            ok[:, j] = valid[:, src]
            out[:, j] = xy[:, src]
    out[~ok] = 0.0
    return out, ok


#: the 77-point layout's points that the 50 joints carry (all but the neck, which is derived): what a
#: translator that back-translates productions reads (``encoder.points: p2s50``)
LAYOUT77_POINTS: tuple[int, ...] = tuple(sorted(i for i in _FROM77 if i is not None))


def to_layout77(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 77-point layout ``xy [T, 77, 2]`` and ``valid [T, 77]`` of 50 joints ``[T, 50, 2 or 3]`` (a production
    or a lifted pose): each joint's x, y at its point (lifting keeps them, so a lifted pose maps back to the
    points it came from); every other point (face, the rest of the body) missing. The inverse of
    :func:`from_layout77` on the points both have."""
    joints = np.asarray(joints, np.float64)
    if joints.ndim != 3 or joints.shape[1] != NUM_JOINTS or joints.shape[2] not in (2, 3) or not len(joints):
        raise DataError(f"expected 50 joints [T >= 1, 50, 2 or 3], got {joints.shape}")
    if not np.isfinite(joints[..., :2]).all():
        raise DataError("non-finite joint coordinates")
    xy = np.zeros((len(joints), NUM_POINTS, 2), np.float32)
    valid = np.zeros((len(joints), NUM_POINTS), bool)
    for j, dst in enumerate(_FROM77):
        if dst is not None:
            xy[:, dst] = joints[:, j, :2]
            valid[:, dst] = True
    return xy, valid


def to_length(frames: np.ndarray, n: int) -> np.ndarray:
    """Frames ``[T >= 1, ...]`` linearly interpolated in time to ``n >= 1`` frames spanning the same motion (the
    first and last kept; a single frame repeated)."""
    frames = np.asarray(frames, np.float64)
    if n < 1 or not len(frames):
        raise DataError(f"cannot stretch {len(frames)} frames to {n}")
    if len(frames) == 1:
        return np.repeat(frames, n, axis=0)
    t = np.linspace(0, len(frames) - 1, n)
    lo = np.floor(t).astype(int).clip(0, len(frames) - 2)
    w = (t - lo).reshape(-1, *([1] * (frames.ndim - 1)))
    return frames[lo] * (1 - w) + frames[lo + 1] * w


def fill_missing(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Missing points filled: linear interpolation over time between observed frames, the nearest observed value
    before the first / after the last, and a joint never observed takes its parent's (filled) position. A clip
    whose root (neck) is never observed cannot be placed: :class:`DataError`."""
    points, valid = np.array(points, np.float64), np.asarray(valid, bool)
    frames = np.arange(points.shape[0])
    if not valid[:, ROOT].any():
        raise DataError("the neck (both shoulders) is never observed: the pose cannot be lifted")
    never = []
    for j in range(points.shape[1]):
        seen = valid[:, j]
        if not seen.any():
            never.append(j)
            continue
        for d in range(points.shape[2]):
            points[:, j, d] = np.interp(frames, frames[seen], points[seen, j, d])
    parent = {child: p for p, child in BONES}
    for j in sorted(never, key=_depth):
        points[:, j] = points[:, parent[j]]
    return points


def _depth(j: int) -> int:
    parent = {child: p for p, child in BONES}
    d = 0
    while j != ROOT:
        j, d = parent[j], d + 1
    return d


def bone_lengths(points: np.ndarray, valid: np.ndarray, percentile: float = 90.0) -> np.ndarray:
    """Step I: each bone's length, the ``percentile`` of its 2D length over the frames where both ends are
    observed (0 for a bone never observed)."""
    out = np.zeros(len(BONES))
    for k, (a, b) in enumerate(BONES):
        both = valid[:, a] & valid[:, b]
        if both.any():
            out[k] = np.percentile(np.linalg.norm(points[both, b, :2] - points[both, a, :2], axis=-1), percentile)
    return out


def lift(xy: np.ndarray, valid: np.ndarray, percentile: float = 90.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Algorithm 1: 2D joints ``[T, 50, 2]`` (with ``valid [T, 50]``) -> 3D ``[T, 50, 3]`` (see the module
    docstring for the reading of each step). ``noise``: the std of Gaussian noise on the root's position."""
    xy, valid = np.asarray(xy, np.float64), np.asarray(valid, bool)
    if xy.ndim != 3 or xy.shape[1:] != (NUM_JOINTS, 2) or valid.shape != xy.shape[:2]:
        raise DataError(f"expected 50 joints xy [T, 50, 2] and valid [T, 50], got {xy.shape} and {valid.shape}")
    if not 0 < percentile <= 100:
        raise DataError(f"percentile must be in (0, 100], not {percentile}")
    lengths = bone_lengths(xy, valid, percentile)
    filled = fill_missing(xy, valid)
    out = np.zeros((xy.shape[0], NUM_JOINTS, 3))
    out[:, ROOT, :2] = filled[:, ROOT]
    if noise:
        out[:, ROOT] += np.random.default_rng(seed).normal(0.0, noise, size=(xy.shape[0], 3))
    for k, (a, b) in enumerate(BONES):
        length = lengths[k]
        d = filled[:, b] - filled[:, a]
        dz = np.sqrt(np.maximum(length**2 - (d**2).sum(-1), 0.0))
        direction = np.concatenate([d, dz[:, None]], axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
        direction[~np.isfinite(direction).all(-1)] = 0.0
        direction[:, 2] = np.abs(direction[:, 2]) + 0.001
        direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
        out[:, b] = out[:, a] + length * direction
    return out


def counter(frames: int) -> np.ndarray:
    """The progress counter of a clip: frame_index / (frames - 1), 0 .. 1 (a single frame: 1)."""
    if frames < 1:
        raise DataError("a clip has at least one frame")
    return np.ones(1) if frames == 1 else np.arange(frames) / (frames - 1)


def to_skels(joints: np.ndarray, precision: int = 5) -> str:
    """One skels line: per frame the 150 coordinates then the counter, space-separated (``precision`` decimals)."""
    joints = np.asarray(joints, np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or not len(joints):
        raise DataError(f"skels frames are [T, 50, 3] with T >= 1, got {joints.shape}")
    if not np.isfinite(joints).all():
        raise DataError("skels frames must be finite (fill or lift the pose first)")
    rows = np.concatenate([joints.reshape(len(joints), -1), counter(len(joints))[:, None]], axis=1)
    return " ".join(f"{v:.{precision}f}" for v in rows.ravel())


def from_skels(line: str, where: str = "<skels>") -> tuple[np.ndarray, np.ndarray]:
    """``(joints [T, 50, 3], counter [T])`` of one skels line; a malformed line is a :class:`DataError` that says
    what is wrong."""
    try:
        values = np.array([float(v) for v in line.split()])
    except ValueError as e:
        raise DataError(f"{where}: not a skels line ({e})") from None
    width = 3 * NUM_JOINTS + 1
    if not len(values) or len(values) % width:
        raise DataError(f"{where}: {len(values)} values is not a whole number of {width}-value frames")
    if not np.isfinite(values).all():
        raise DataError(f"{where}: values that are not finite")
    rows = values.reshape(-1, width)
    count = rows[:, -1]
    if (count < 0).any() or (count > 1 + 1e-6).any() or (np.diff(count) < 0).any():
        raise DataError(f"{where}: the counter must rise from 0 to 1, found {count[:3].tolist()}...")
    return rows[:, :-1].reshape(-1, NUM_JOINTS, 3), count


COMPONENT = "PROMPT2SIGN_50"


def pose_components() -> list:
    """The pose-format header component of a Prompt2Sign ``.pose``: the 50 named joints, the bone tree as limbs
    (coloured per part: body, left hand, right hand), format ``XYZC``."""
    from pose_format.pose_header import PoseHeaderComponent

    def color(b: int) -> tuple[int, int, int]:
        return (0, 160, 0) if b < LEFT_HAND0 else (200, 60, 0) if b < RIGHT_HAND0 else (0, 90, 220)

    return [PoseHeaderComponent(COMPONENT, list(NAMES50), list(BONES), [color(b) for _, b in BONES], "XYZC")]


def to_pose(joints: np.ndarray, fps: float = 25.0, size: int = 512, scale: float | None = None):
    """A pose-format ``Pose`` of 3D joints ``[T, 50, 3]`` (one person, every point observed): the coordinates are
    placed on a ``size`` x ``size`` canvas (``scale`` pixels per unit, default: the pose fills about 60% of it;
    centred on the mean neck), so pose-format's own viewer draws it as it is."""
    from ray_slt.data.poses import build_pose

    joints = np.asarray(joints, np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or not len(joints) or not np.isfinite(joints).all():
        raise DataError(f"a Prompt2Sign pose is finite [T >= 1, 50, 3] joints, got {joints.shape}")
    xy = joints[..., :2]
    span = float(np.ptp(xy.reshape(-1, 2), axis=0).max()) or 1.0
    scale = scale or 0.6 * size / span
    centre = xy[:, ROOT].mean(0)
    out = joints.copy()
    out[..., :2] = (xy - centre) * scale + size / 2
    out[..., 2] = joints[..., 2] * scale
    return build_pose(pose_components(), out.astype(np.float32), np.ones(joints.shape[:2], np.float32), fps, size,
                      size)  # fmt: skip


def gif_bytes(pose) -> bytes:
    """An animated GIF of a pose-format ``Pose`` (e.g. :func:`to_pose`'s), drawn by pose-format's own
    visualizer: one image per frame at the pose's frame rate."""
    from pose_format.pose_visualizer import PoseVisualizer

    visualizer = PoseVisualizer(pose)
    data = visualizer.save_gif(None, visualizer.draw())
    if not data:
        raise DataError("pose-format drew no frames")
    return data


def mp4_bytes(pose) -> bytes:
    """An H.264 MP4 of a pose-format ``Pose``: the frames pose-format's visualizer draws (BGR), encoded by PyAV
    (libx264, yuv420p) at the pose's frame rate. Odd canvas sizes are padded by one pixel (H.264 needs even ones)."""
    import fractions
    import io

    import av
    from pose_format.pose_visualizer import PoseVisualizer

    frames = list(PoseVisualizer(pose).draw())
    if not frames:
        raise DataError("pose-format drew no frames")
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(float(pose.body.fps)).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        for image in frames:
            image = np.pad(image[..., ::-1], ((0, h % 2), (0, w % 2), (0, 0)))  # BGR -> RGB, even size
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
