"""Reading and writing ``.pose`` files (pose-format) through ray_slt.storage."""

from __future__ import annotations

import io

import numpy as np
from pose_format import Pose

from ray_slt import storage
from ray_slt.errors import DataError


def read_pose(uri: str) -> Pose:
    """Read a ``.pose`` file (local or remote); a DataError names the file if it is not one."""
    data = storage.read_bytes(uri)
    if not data:
        raise DataError("empty .pose file", uri)
    try:
        return Pose.read(data)
    except Exception as e:  # pose-format raises assorted errors (struct, ValueError, IndexError) on bad bytes
        raise DataError(f"not a readable .pose file ({type(e).__name__}: {e})", uri) from None


def pose_bytes(pose: Pose) -> bytes:
    buf = io.BytesIO()
    pose.write(buf)
    return buf.getvalue()


def write_pose(pose: Pose, uri: str) -> None:
    """Write a ``.pose`` file atomically."""
    storage.write_bytes(uri, pose_bytes(pose))


def has_person(pose: Pose) -> bool:
    """Whether any frame has any detected point (confidence > 0)."""
    conf = np.asarray(pose.body.confidence)
    return bool(conf.size) and bool((conf > 0).any())
