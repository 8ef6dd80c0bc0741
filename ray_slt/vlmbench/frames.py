"""Which frames of a clip a VLM sees (SPEC A.1 "Video input", B.2 "Video input"; A.8 temporal perturbation).

A frame setting is a string, recorded with every answer:

- ``uniform:N``: N frames spread uniformly over the clip (``np.linspace`` over the decoded frames, rounded; the
  authors' code for LLaVA-NeXT-Video, InternVL and GPT-5). A clip shorter than N gives all its frames.
- ``fps:R``: the clip resampled to at most R frames per second (the frame nearest each 1/R step; a clip at or
  below R fps is kept whole): Qwen-VL's "video at fps = min(native, 4)".
- ``central:N@R``: N frames, 1/R seconds apart, centred on the clip's temporal middle (LexSign-Bench's "central
  16 frames sampled at 5 FPS" for open models). A clip shorter than (N - 1)/R seconds repeats its edge frames so
  the model always sees N frames (reading: the paper fixes the count, not the span).

Temporal perturbation (LexSign-Bench control 2, "drop or repeat frames at random, each frame with p = 0.2"):
reading: each selected frame is, independently with probability p, either dropped or shown twice (a fair coin
picks which); the random stream is seeded from the question id, so a rerun perturbs identically. At least one
frame always survives.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from ray_slt.errors import ConfigError

_SETTING = re.compile(r"^(uniform):(\d+)$|^(fps):(\d+(?:\.\d+)?)$|^(central):(\d+)@(\d+(?:\.\d+)?)$")


def check_setting(setting: str) -> str:
    s = str(setting).strip().replace(" ", "")
    m = _SETTING.match(s)
    if not m:
        raise ConfigError(f"frame setting {setting!r} is not 'uniform:N', 'fps:R' or 'central:N@R'")
    numbers = [float(g) for g in m.groups() if g is not None and g[0].isdigit()]
    if any(n <= 0 for n in numbers):
        raise ConfigError(f"frame setting {setting!r}: numbers must be positive")
    return s


def select(num_frames: int, fps: float | None, setting: str) -> np.ndarray:
    """Indices (into the clip's decoded frames, increasing; repeats only for ``central``) of the frames to show.
    ``fps`` is the clip's frame rate after decoding (None: 25 assumed for the time-based settings)."""
    s = check_setting(setting)
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    rate = float(fps) if fps and fps > 0 else 25.0
    kind, _, rest = s.partition(":")
    if kind == "uniform":
        n = int(rest)
        if num_frames <= n:
            return np.arange(num_frames, dtype=np.int64)
        return np.rint(np.linspace(0, num_frames - 1, n)).astype(np.int64)
    if kind == "fps":
        target = float(rest)
        if rate <= target:
            return np.arange(num_frames, dtype=np.int64)
        times = np.arange(0.0, num_frames / rate, 1.0 / target)
        idx = np.minimum(np.rint(times * rate).astype(np.int64), num_frames - 1)
        return np.unique(idx)
    n_s, r_s = rest.split("@")
    n, target = int(n_s), float(r_s)
    middle = (num_frames - 1) / 2.0
    offsets = (np.arange(n) - (n - 1) / 2.0) * (rate / target)
    return np.clip(np.rint(middle + offsets), 0, num_frames - 1).astype(np.int64)


def perturb(indices: np.ndarray, p: float, key: str) -> np.ndarray:
    """Temporal perturbation of selected frame indices (see the module docstring); ``key`` seeds it."""
    if p <= 0 or len(indices) == 0:
        return np.asarray(indices, dtype=np.int64)
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for i in indices:
        if rng.random() < p:
            if rng.random() < 0.5:
                continue  # dropped
            out.extend((int(i), int(i)))  # repeated
        else:
            out.append(int(i))
    if not out:
        out = [int(indices[len(indices) // 2])]
    return np.asarray(out, dtype=np.int64)
