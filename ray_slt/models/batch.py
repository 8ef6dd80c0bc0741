"""Collation: per-sample arrays -> the padded tensor batch the translator models take.

A sample is a mapping with any of these keys (numpy arrays or tensors); the names of the feature store's
decoded rows (:func:`ray_slt.features.store.decode_row`, in brackets) are accepted as they are:

- ``coords`` [``keypoints``] float [T, 77, 2], ``point_mask`` [``keypoints_valid``, or ``mask``] bool
  [T, 77] (True = present), optional ``confidence`` [``keypoints_confidence``] [T, 77]: the 77-point layout;
- ``dino_face`` [``face_features``] float [T, D]: DINOv2 embeddings of the face crops, aligned with the
  skeleton frames; ``dino_hand`` float [T, 2 D]: the left- and right-hand crops' embeddings concatenated
  (built from ``left_hand_features`` and ``right_hand_features`` when the sample has those);
- ``gloss``: a gloss string (gloss -> text benchmark);
- ``text``: the target sentence (training; absent at inference), ``sample_id``: passed through.

The batch (all tensors batch-first, padded at the end in time):

- ``coords`` [B, T, 77, 2] (missing points zeroed), ``point_mask`` [B, T, 77], ``confidence`` [B, T, 77],
  ``frame_mask`` [B, T] (True = real frame);
- ``dino_face`` [B, T, D] / ``dino_hand`` [B, T, 2 D] (each only when every sample has it);
- ``gloss_ids`` / ``gloss_mask`` [B, G];
- ``target_ids`` / ``target_mask`` [B, L]: target tokens followed by ``</s>`` (eos), pad id elsewhere;
- ``texts`` (list of the raw target strings) and ``sample_ids`` when the samples have them.

Sequences longer than ``max_frames`` are subsampled deterministically (RESEARCH.md Eq. 1:
index ``floor((i + 1) * T / max_frames) - 1``), the same frames for the skeleton and the DINOv2 features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ray_slt.errors import DataError

TARGET_PREFIX = " "  # targets are tokenized as " " + text: they follow a prompt (and read as mid-text words)


def sample_frames(num_frames: int, max_frames: int) -> np.ndarray:
    """Deterministic frame indices (RESEARCH.md Eq. 1): all frames if they fit, else evenly spread."""
    if num_frames <= max_frames:
        return np.arange(num_frames)
    i = np.arange(max_frames)
    return (i + 1) * num_frames // max_frames - 1


def _array(value: Any, dtype: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _first(r: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if r.get(key) is not None:
            return r[key]
    return None


def _dino(r: Mapping[str, Any], key: str) -> Any:
    if key == "dino_face":
        return _first(r, "dino_face", "face_features")
    if r.get("dino_hand") is not None:
        return r["dino_hand"]
    left, right = r.get("left_hand_features"), r.get("right_hand_features")
    if left is None or right is None:
        return None
    return np.concatenate([_array(left, np.float32), _array(right, np.float32)], axis=-1)


def _rows(samples: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> list[Mapping[str, Any]]:
    """Accept a list of samples or a columnar batch (e.g. from Ray Data's ``iter_batches``)."""
    if isinstance(samples, Mapping):
        keys = list(samples)
        n = len(samples[keys[0]]) if keys else 0
        return [{k: samples[k][i] for k in keys} for i in range(n)]
    return list(samples)


def keep_points(points: str) -> np.ndarray | None:
    """The 77-point mask of an encoder's ``points`` setting (None: all points)."""
    if points == "all":
        return None
    if points == "p2s50":
        from ray_slt.features.prompt2sign import LAYOUT77_POINTS

        keep = np.zeros(77, bool)
        keep[list(LAYOUT77_POINTS)] = True
        return keep
    raise DataError(f"unknown point set {points!r} (all or p2s50)")


class Collator:
    """Pads a list of samples into a batch; tokenizes targets and glosses with the model's tokenizers."""

    def __init__(
        self,
        tokenizer: Any = None,
        gloss_tokenizer: Any = None,
        max_frames: int = 300,
        max_target_tokens: int = 128,
        max_glosses: int = 128,
        points: str = "all",
    ):
        self.tokenizer = tokenizer
        self.gloss_tokenizer = gloss_tokenizer
        self.max_frames = max_frames
        self.max_target_tokens = max_target_tokens
        self.max_glosses = max_glosses
        self.keep = keep_points(points)

    def target_ids(self, text: str) -> list[int]:
        """Token ids of one target: ``" " + text`` truncated to ``max_target_tokens - 1``, then eos."""
        tok = self.tokenizer
        ids = tok(TARGET_PREFIX + text.strip(), add_special_tokens=False)["input_ids"]
        return [*ids[: self.max_target_tokens - 1], tok.eos_token_id]

    def __call__(self, samples: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        rows = _rows(samples)
        if not rows:
            raise ValueError("cannot collate an empty batch")
        batch: dict[str, Any] = {}
        if "sample_id" in rows[0]:
            batch["sample_ids"] = [str(r["sample_id"]) for r in rows]
        if "coords" in rows[0] or "keypoints" in rows[0]:
            batch.update(self._skeleton(rows))
        if "gloss" in rows[0] and self.gloss_tokenizer is not None:
            batch.update(self._glosses(rows))
        if "text" in rows[0] and rows[0]["text"] is not None:
            batch["texts"] = [str(r["text"]) for r in rows]
            if self.tokenizer is not None:
                ids = [self.target_ids(t) for t in batch["texts"]]
                batch["target_ids"], batch["target_mask"] = _pad_ids(ids, self.tokenizer.pad_token_id)
        return batch

    def _skeleton(self, rows: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        picked = []
        for n, r in enumerate(rows):
            where = str(r.get("sample_id", f"sample {n}"))
            coords, pmask = _first(r, "coords", "keypoints"), _first(r, "point_mask", "keypoints_valid", "mask")
            if coords is None or pmask is None:
                raise DataError("a pose sample needs coords/keypoints and point_mask/keypoints_valid", where)
            coords = _array(coords, np.float32)
            if coords.ndim != 3 or coords.shape[1:] != (77, 2) or coords.shape[0] == 0:
                raise DataError(f"coords must be [T>0, 77, 2], got {coords.shape}", where)
            pmask = _array(pmask, bool)
            if pmask.shape != coords.shape[:2]:
                raise DataError(f"point mask {pmask.shape} does not match coords {coords.shape}", where)
            if self.keep is not None:
                pmask = pmask & self.keep
            coords = np.where(pmask[..., None], coords, np.float32(0))  # missing points: zero, never read
            if not np.isfinite(coords).all():
                raise DataError("non-finite coordinates at points marked present", where)
            idx = sample_frames(coords.shape[0], self.max_frames)
            item = {"coords": coords[idx], "point_mask": pmask[idx]}
            conf = _first(r, "confidence", "keypoints_confidence")
            item["confidence"] = _array(conf, np.float32)[idx] if conf is not None else pmask[idx].astype(np.float32)
            for key in ("dino_face", "dino_hand"):
                feats = _dino(r, key)
                if feats is not None:
                    feats = _array(feats, np.float32)
                    if feats.ndim != 2 or feats.shape[0] != coords.shape[0]:
                        raise DataError(f"{key} {feats.shape} is not [T={coords.shape[0]}, D]", where)
                    item[key] = feats[idx]
            picked.append(item)
        b, t = len(picked), max(len(p["coords"]) for p in picked)
        out = {
            "coords": torch.zeros(b, t, 77, 2),
            "point_mask": torch.zeros(b, t, 77, dtype=torch.bool),
            "confidence": torch.zeros(b, t, 77),
            "frame_mask": torch.zeros(b, t, dtype=torch.bool),
        }
        for key in ("dino_face", "dino_hand"):
            if all(key in p for p in picked):
                out[key] = torch.zeros(b, t, picked[0][key].shape[1])
        for i, p in enumerate(picked):
            n = len(p["coords"])
            pm = torch.from_numpy(p["point_mask"])
            out["point_mask"][i, :n] = pm
            out["coords"][i, :n] = torch.from_numpy(p["coords"])
            out["confidence"][i, :n] = torch.where(pm, torch.from_numpy(p["confidence"]), 0.0)
            out["frame_mask"][i, :n] = True
            for key in ("dino_face", "dino_hand"):
                if key in out:
                    out[key][i, :n] = torch.from_numpy(p[key])
        return out

    def _glosses(self, rows: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        tok = self.gloss_tokenizer
        ids = []
        for n, r in enumerate(rows):
            seq = tok(str(r["gloss"] or ""), add_special_tokens=False)["input_ids"][: self.max_glosses]
            if not seq:
                raise DataError("empty gloss sequence", str(r.get("sample_id", f"sample {n}")))
            ids.append(seq)
        gloss_ids, gloss_mask = _pad_ids(ids, tok.pad_token_id)
        return {"gloss_ids": gloss_ids, "gloss_mask": gloss_mask}


def to_device(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    """The batch with its tensors moved to ``device`` (lists of strings stay as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _pad_ids(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), length, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask
