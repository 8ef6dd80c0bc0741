"""The ``production`` protocol: produced pose sequences against the reference poses, by DTW-MJE
(:mod:`ray_slt.eval.dtw`) on Prompt2Sign's 50 joints in 3D (:mod:`ray_slt.features.prompt2sign`), each sequence
shoulder-normalised; plus how long the productions are against their references. The best checkpoint has the
lowest dev DTW.

A prediction: ``sample_id``, ``frames`` (produced, ``[T, 151]``: 150 coordinates + the counter) and ``reference``
(the same for the sample's own poses; ``ray-slt eval`` lifts them from the feature store's keypoints and samples
them in time as the producer's training frames were: ``frame_step``, ``max_frames``).
Back-translation (a translator reading the produced poses) is not part of it yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ray_slt.errors import DataError
from ray_slt.eval.dtw import DTWSettings, corpus_dtw
from ray_slt.eval.protocols import Protocol, Selection

#: Prompt2Sign's shoulders (left, right) in its 50-joint order
SHOULDERS = (5, 2)


def joints(frames: Any) -> np.ndarray:
    """``[T, 50, 3]`` of ``[T, 151]`` frames (the counter dropped)."""
    a = np.asarray(frames, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 151 or not len(a):
        raise DataError(f"a produced pose is [T >= 1, 151] frames, got {a.shape}")
    return a[:, :150].reshape(len(a), 50, 3)


class ProductionProtocol(Protocol):
    name = "production"
    predicts = "pose"
    selection = Selection("dtw", "min")

    def __init__(self, percentile: float = 90.0, frame_step: int = 1, max_frames: int | None = None):
        self.percentile, self.frame_step, self.max_frames = percentile, frame_step, max_frames
        self.settings = DTWSettings(fill="skip", trim=False, norm="shoulder", shoulders=SHOULDERS, label="p2s50")

    def prediction(self, sample: Mapping[str, Any], output: Mapping[str, Any]) -> dict[str, Any]:
        from ray_slt.models.producer import model_frames, reference_frames

        if sample.get("keypoints") is None:
            raise DataError(f"sample {sample.get('sample_id')!r} has no poses to compare a production with")
        ref = model_frames(reference_frames(sample, self.percentile), self.frame_step, self.max_frames)
        return {"sample_id": str(sample["sample_id"]), "frames": output["frames"], "reference": ref.round(5).tolist()}

    def score(self, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not predictions:
            raise DataError("no predictions to score")
        produced = [joints(p["frames"]) for p in predictions]
        refs = [joints(p["reference"]) for p in predictions]
        report = corpus_dtw(produced, refs, self.settings)
        ratio = float(np.mean([len(a) / len(b) for a, b in zip(produced, refs)]))
        return {"dtw": report["dtw"], "length_ratio": ratio, "n": report["n"],
                "dtw_signature": report["dtw_signature"]}  # fmt: skip

    def dev_metrics(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        return {k: scores[k] for k in ("dtw", "length_ratio")}
