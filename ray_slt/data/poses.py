"""The one place where ray_slt reads and writes ``.pose`` files (pose-format), local or remote.

* :func:`read_pose` (a URI) and :func:`parse_pose` (bytes) read one; a file that is not a ``.pose`` is a
  :class:`~ray_slt.errors.DataError` naming it.
* :func:`build_pose` makes a one-person ``Pose`` from points and confidences (a point is masked exactly when its
  confidence is 0, pose-format's convention); :func:`pose_bytes` / :func:`write_pose` serialise it (atomically).
* :func:`components_to_bytes` / :func:`components_from_bytes` carry a header's components between processes
  (the extraction's decoder child describes its estimator with them).

Model layouts convert to and from ``.pose`` in :mod:`ray_slt.features.layouts` (the 77-point layout both ways).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from pose_format import Pose

from ray_slt import storage
from ray_slt.errors import DataError


def parse_pose(data: bytes, source: str = "<pose>") -> Pose:
    """A ``Pose`` from the bytes of a ``.pose`` file; a malformed one is a DataError naming ``source``."""
    if not data:
        raise DataError("empty .pose file", source)
    try:
        return Pose.read(data)
    except Exception as e:  # pose-format raises assorted errors (struct, ValueError, IndexError) on bad bytes
        raise DataError(f"not a readable .pose file ({type(e).__name__}: {e})", source) from None


def read_pose(uri: str) -> Pose:
    """Read a ``.pose`` file (local or remote); a DataError names the file if it is not one."""
    return parse_pose(storage.read_bytes(uri), uri)


def pose_bytes(pose: Pose) -> bytes:
    buf = io.BytesIO()
    pose.write(buf)
    return buf.getvalue()


def write_pose(pose: Pose, uri: str) -> None:
    """Write a ``.pose`` file atomically."""
    storage.write_bytes(uri, pose_bytes(pose))


def build_pose(
    components: Sequence, data: np.ndarray, confidence: np.ndarray, fps: float, width: int, height: int
) -> Pose:
    """A one-person ``Pose``: ``data [T, P, D]`` and ``confidence [T, P]``; points with confidence 0 are masked."""
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    data = np.asarray(data, dtype=np.float32)[:, None]
    confidence = np.asarray(confidence, dtype=np.float32)[:, None]
    mask = np.repeat((confidence == 0)[..., None], data.shape[-1], axis=-1)
    header = PoseHeader(
        version=0.2,
        dimensions=PoseHeaderDimensions(width=int(width), height=int(height), depth=0),
        components=list(components),
    )
    body = NumPyPoseBody(fps=float(fps), data=np.ma.masked_array(data, mask=mask), confidence=confidence)
    return Pose(header, body)


def components_to_bytes(components: Sequence) -> bytes:
    """Pose-format components as the bytes of a header holding them (sent between processes)."""
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    buf = io.BytesIO()
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=1, height=1, depth=0),
                        components=list(components))  # fmt: skip
    header.write(buf)
    return buf.getvalue()


def components_from_bytes(data: bytes) -> list:
    """The components of :func:`components_to_bytes`'s header (pose-format only: no estimator is imported)."""
    from pose_format.pose_header import PoseHeader
    from pose_format.utils.reader import BufferReader

    return PoseHeader.read(BufferReader(data)).components


def has_person(pose: Pose) -> bool:
    """Whether any frame has any detected point (confidence > 0)."""
    conf = np.asarray(pose.body.confidence)
    return bool(conf.size) and bool((conf > 0).any())
