"""Helpers of the features tests (manifest rows from the real clips, layout distances, pose files)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ray_slt.data.manifest import make_row


def wlasl_row(shared_data: Path, video_id: str, **overrides) -> dict:
    """A manifest row for a WLASL clip from wlasl/clips.csv (1-based inclusive frames -> 0-based span)."""
    with open(shared_data / "wlasl" / "clips.csv", newline="", encoding="utf-8") as f:
        clips = {r["video_id"]: r for r in csv.DictReader(f)}
    r = clips[video_id]
    start, end = int(r["frame_start"]), int(r["frame_end"])
    values = {
        "sample_id": f"wlasl.{video_id}",
        "dataset": "wlasl",
        "split": {"val": "dev"}.get(r["split"], r["split"]),
        "sign_language": "ase",
        "spoken_language": "en",
        "video_uri": str(shared_data / "wlasl" / r["file"]),
        "start_frame": start - 1,
        "end_frame": None if end == -1 else end,
        "bbox": [int(v) for v in r["bbox"].split()],
        "fps": float(r["fps"]),
        "text": r["gloss"],
        "gloss": r["gloss"].upper(),
        "signer": r["signer_id"],
        "meta": {"source": r["source"]},
    }
    values.update(overrides)
    return make_row(**values)


def video_row(sample_id: str, video: Path | str | None, dataset: str = "misc", **overrides) -> dict:
    values = {
        "sample_id": sample_id,
        "dataset": dataset,
        "split": "test",
        "sign_language": "ase",
        "spoken_language": "en",
        "video_uri": None if video is None else str(video),
        "text": sample_id,
    }
    values.update(overrides)
    return make_row(**values)


def layout_distance(a, b, part: slice, scale: float) -> np.ndarray:
    """Per-point pixel distances of two layouts over a part, in units of ``scale`` (a shoulder width), where
    both observed the point."""
    both = a.valid[:, part] & b.valid[:, part]
    d = np.linalg.norm(a.pixels[:, part] - b.pixels[:, part], axis=-1) / scale
    return d[both]


def as_json(value) -> str:
    return json.dumps(value, sort_keys=True)


def holistic_pose(path: Path):
    from ray_slt.data.poses import build_pose
    from ray_slt.features.pose import MediaPipeHolistic
    from ray_slt.features.sampling import parse_sampling
    from ray_slt.features.video import decode_video

    clip = decode_video(str(path), parse_sampling("all"), max_side=None)
    est = MediaPipeHolistic()
    try:
        data, conf = est.estimate(clip.frames)
    finally:
        est.close()
    return build_pose(est.components(), data, conf, clip.fps, clip.width, clip.height)


def read_pose_file(path: Path):
    from pose_format import Pose

    return Pose.read(Path(path).read_bytes())
