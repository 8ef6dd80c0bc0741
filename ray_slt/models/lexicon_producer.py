"""Lexicon concatenation: the sign language production baseline of spoken-to-signed (Moryossef et al.'s
text -> gloss -> pose pipeline): each gloss is looked up in a lexicon of isolated signs, each sign is cut to where
the signing happens, and the signs are put one after the other with short transitions between them.

The lexicon is a directory in spoken-to-signed's own format (its ``CSVPoseLookup``): an ``index.csv`` with the
columns ``path`` (a ``.pose`` file under the directory), ``spoken_language``, ``signed_language``, ``start``,
``end`` (milliseconds; ``end`` 0: the whole file), ``words``, ``glosses``, ``priority`` (lower first). The package's
fingerspelling lexicon (``spoken_to_signed/assets/fingerspelling_lexicon``) is one; ``ray-slt lexicon-producer``
builds a model (kind ``lexicon_producer``) from any, and :func:`ray_slt.data.synthetic.write_sign_lexicon` writes
one for the synthetic corpus. Its productions are Prompt2Sign frames like a trained producer's, so they are scored
(DTW, back-translation), served and drawn the same way.

Readings (the package works on MediaPipe Holistic poses in pose-format; here every lexicon pose goes through the
project's 77-point layout and Algorithm 1's lifting, :mod:`ray_slt.features.prompt2sign`, so any layout works):

- **lookup**: a gloss (case-insensitive) in ``glosses``, else the same token in ``words``; among several entries
  the lowest ``priority``, then the first in the file. A token the lexicon lacks is skipped and reported
  (``missing``); spoken-to-signed's fall-backs (another language's lexicon, fingerspelling) are not built.
- **trim** (spoken-to-signed's elbow heuristic): the frames where either wrist is above its elbow (image y
  grows downwards), widened by ``trim_margin`` frames each side; the whole sign when that never happens.
- **speed-up**: a trimmed sign longer than ``max_sign_seconds`` (0.8 s, the package's default: citation forms are
  much slower than fluent signing) is resampled to that duration; None keeps every sign's own pace.
- **join**: ``blend`` frames linearly interpolated from one sign's last frame to the next one's first (the
  package smooths joins with a spline; a linear ramp is the simplest reading).
- time: every entry is resampled to the producer's rate (``pose_fps / frame_step``) when it is built; a
  production longer than ``max_frames`` is subsampled evenly (as a producer's references are).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ray_slt import storage
from ray_slt.errors import ConfigError, DataError, StorageError
from ray_slt.features.prompt2sign import to_length
from ray_slt.models.predictor import Predictor
from ray_slt.models.registry import ModelRef

FORMAT, VERSION, META, ENTRIES = "ray_slt.lexicon_producer", 1, "lexicon.json", "entries.safetensors"
KIND = "lexicon_producer"
COLUMNS = ("path", "spoken_language", "signed_language", "start", "end", "words", "glosses")
#: Prompt2Sign joints: right/left elbow and wrist (OpenPose order)
R_ELBOW, R_WRIST, L_ELBOW, L_WRIST = 3, 4, 6, 7


def read_index(lexicon: str) -> list[dict[str, str]]:
    """The rows of a lexicon's ``index.csv`` (DataError naming the file and line for a malformed one)."""
    uri = storage.join(lexicon, "index.csv")
    if not storage.exists(uri):
        raise StorageError(f"{lexicon}: not a lexicon directory (no index.csv)")
    reader = csv.DictReader(io.StringIO(storage.decode_text(storage.read_bytes(uri), uri)))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (spoken-to-signed's index.csv format)", uri, 1)
    rows = []
    for line, row in enumerate(reader, start=2):
        if not row.get("path"):
            raise DataError("a row without a path", uri, line)
        rows.append({**row, "_line": str(line)})
    return rows


def resample(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Frames ``[T, D]`` at ``src_fps`` linearly interpolated to ``dst_fps`` (the first and last kept)."""
    if abs(src_fps - dst_fps) < 1e-9 or len(frames) < 2:
        return frames
    return to_length(frames, max(2, round((len(frames) - 1) * dst_fps / src_fps) + 1))


def active_span(joints: np.ndarray, margin: int) -> tuple[int, int]:
    """``[first, last)`` frames where either wrist is above its elbow (y down), widened by ``margin``; the whole
    clip when never (see the module docstring)."""
    raised = (joints[:, R_WRIST, 1] < joints[:, R_ELBOW, 1]) | (joints[:, L_WRIST, 1] < joints[:, L_ELBOW, 1])
    if not raised.any():
        return 0, len(joints)
    idx = np.flatnonzero(raised)
    return max(0, int(idx[0]) - margin), min(len(joints), int(idx[-1]) + 1 + margin)


def concatenate(signs: Sequence[np.ndarray], blend: int) -> np.ndarray:
    """Signs ``[T_i, 150]`` one after the other, ``blend`` interpolated frames between consecutive ones."""
    if not signs:
        raise DataError("nothing to concatenate")
    parts = [signs[0]]
    for nxt in signs[1:]:
        if blend:
            w = np.linspace(0, 1, blend + 2)[1:-1, None]
            parts.append(parts[-1][-1] * (1 - w) + nxt[0] * w)
        parts.append(nxt)
    return np.concatenate(parts)


def build_lexicon_producer(
    lexicon: str,
    out: str,
    signed_language: str,
    spoken_language: str | None = None,
    pose_fps: float = 25.0,
    frame_step: int = 1,
    max_frames: int = 300,
    percentile: float = 90.0,
    trim_margin: int = 5,
    blend: int = 4,
    max_sign_seconds: float | None = 0.8,
    progress: bool = False,
) -> dict[str, Any]:
    """Build a lexicon producer (kind ``lexicon_producer``) at ``out`` from the ``signed_language`` entries (and
    ``spoken_language`` when given) of the lexicon at ``lexicon``: each entry lifted to Prompt2Sign frames,
    trimmed and resampled once here. Returns what ``lexicon.json`` records."""
    from safetensors.numpy import save_file

    from ray_slt.data.poses import read_pose
    from ray_slt.features import prompt2sign as p2s
    from ray_slt.features.layouts import layout77
    from ray_slt.models.checkpoint import publish

    rows = [r for r in read_index(lexicon) if r["signed_language"] == signed_language
            and (spoken_language is None or r["spoken_language"] == spoken_language)]  # fmt: skip
    if not rows:
        raise ConfigError(f"{lexicon}: no entries of signed language {signed_language!r}"
                          + (f" and spoken language {spoken_language!r}" if spoken_language else ""))  # fmt: skip
    rate = pose_fps / frame_step
    tensors: dict[str, np.ndarray] = {}
    entries, skipped = [], []
    it = rows
    if progress:
        from tqdm import tqdm

        it = tqdm(rows, desc="lexicon entries", unit="sign")
    for k, row in enumerate(it):
        where = f"{lexicon}/index.csv:{row['_line']}"
        rel = row["path"]
        if rel.startswith("/") or ".." in rel.replace("\\", "/").split("/"):
            raise DataError(f"path {rel!r} leaves the lexicon directory", where)
        try:
            pose = read_pose(storage.join(lexicon, *rel.split("/")))
            fps = float(pose.body.fps)
            start, end = int(float(row["start"] or 0)), int(float(row["end"] or 0))
            lo, hi = round(start / 1000 * fps), round(end / 1000 * fps) if end > 0 else len(pose.body.data)
            lay = layout77(pose)
            joints = p2s.lift(*p2s.from_layout77(lay.coords[lo:hi], lay.valid[lo:hi]), percentile=percentile)
        except (DataError, StorageError, ValueError) as e:
            skipped.append({"line": int(row["_line"]), "path": rel, "reason": str(e)})
            continue
        a, b = active_span(joints, trim_margin)
        frames = resample(joints[a:b].reshape(b - a, -1), fps, rate)
        if max_sign_seconds is not None and len(frames) > max(2, round(max_sign_seconds * rate)):
            frames = to_length(frames, max(2, round(max_sign_seconds * rate)))  # sped up
        frames = frames.astype(np.float32)
        key = f"e{k}"
        tensors[key] = frames
        entries.append({"key": key, "glosses": row["glosses"], "words": row["words"],
                        "priority": float(row.get("priority") or 0), "path": rel, "frames": len(frames)})  # fmt: skip
    if not entries:
        raise DataError(f"no usable entry in {lexicon} ({len(skipped)} unreadable)")
    meta = {"format": FORMAT, "version": VERSION, "signed_language": signed_language,
            "spoken_language": spoken_language, "source": storage.normalize(lexicon),
            "config": {"pose_fps": pose_fps, "frame_step": frame_step, "max_frames": max_frames,
                       "percentile": percentile, "trim_margin": trim_margin, "blend": blend,
                       "max_sign_seconds": max_sign_seconds},
            "entries": entries, "skipped": skipped}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ray_slt_lexicon_") as d:
        save_file(tensors, os.path.join(d, ENTRIES))
        with open(os.path.join(d, META), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, ensure_ascii=False)
        publish(d, out, kind=KIND)
    return {k: v for k, v in meta.items() if k != "entries"} | {"entries": len(entries), "out": out}


class LexiconProducer:
    """A loaded lexicon producer: ``produce(tokens)`` -> (frames ``[T, 151]``, missing tokens)."""

    def __init__(self, uri: str):
        from safetensors.numpy import load_file

        from ray_slt.models.checkpoint import fetched

        with fetched(uri) as d:
            with open(os.path.join(d, META), encoding="utf-8") as f:
                self.meta = json.load(f)
            if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
                raise StorageError(f"{uri}: not a {FORMAT} v{VERSION} model")
            tensors = load_file(os.path.join(d, ENTRIES))
        self.cfg = self.meta["config"]
        ordered = sorted(self.meta["entries"], key=lambda e: e["priority"])  # stable: file order among equals
        self.by_gloss: dict[str, np.ndarray] = {}
        self.by_word: dict[str, np.ndarray] = {}
        for e in ordered:
            self.by_gloss.setdefault(e["glosses"].lower(), tensors[e["key"]])
            self.by_word.setdefault(e["words"].lower(), tensors[e["key"]])

    def lookup(self, token: str) -> np.ndarray | None:
        t = token.lower()
        return self.by_gloss.get(t, self.by_word.get(t))

    def produce(self, tokens: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        from ray_slt.features.prompt2sign import counter
        from ray_slt.models.producer import model_frames

        found, missing = [], []
        for tok in tokens:
            frames = self.lookup(tok)
            if frames is None:
                missing.append(tok)
            else:
                found.append(frames)
        if not found:
            raise DataError(f"none of {' '.join(tokens)!r} is in the lexicon")
        joined = concatenate([np.asarray(f, np.float64) for f in found], self.cfg["blend"])
        frames = np.concatenate([joined, counter(len(joined))[:, None]], 1)
        return model_frames(frames, 1, self.cfg["max_frames"]), missing


class LexiconProducerPredictor(Predictor):
    """A lexicon producer (model kind ``lexicon_producer``): glosses (or words) in, the concatenated signs out as
    a producer's answer (``frames``, ``pose_b64``, ...) plus ``missing`` (the tokens the lexicon lacks)."""

    kind = KIND
    predicts = "pose"
    route = "produce"
    protocol = "production"
    inputs = "gloss"

    def __init__(self, ref: ModelRef, device: str = "cpu", model_id: str | None = None):
        super().__init__(ref, device, model_id)
        self.model = LexiconProducer(ref.model)

    def settings(self) -> dict[str, Any]:
        return {**self.model.cfg, "signed_language": self.model.meta["signed_language"],
                "entries": len(self.model.meta["entries"])}  # fmt: skip

    def protocol_defaults(self) -> dict[str, Any]:
        """References sampled in time as the lexicon's entries were (its rate; at most ``max_frames``)."""
        c = self.model.cfg
        return {"percentile": c["percentile"], "frame_step": c["frame_step"], "max_frames": c["max_frames"]}

    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        from ray_slt.models.producer import production_output

        out = []
        rate = self.model.cfg["pose_fps"] / self.model.cfg["frame_step"]
        for i, s in enumerate(samples):
            gloss = s.get("gloss")
            if not isinstance(gloss, str) or not gloss.split():
                raise DataError(f"sample {s.get('sample_id', i)!r}: a lexicon producer reads glosses; none given")
            frames, missing = self.model.produce(gloss.split())
            out.append({**production_output(frames, rate), "missing": missing})
        return out
