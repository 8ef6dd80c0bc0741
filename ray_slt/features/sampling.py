"""Which frames of a sample are kept: the sample's span, then all frames (capped) or Eq. 1 sampling.

Frame numbers are 0-based. A sample's *span* is ``[start, end)`` in the frames of its source (a video or a
directory of frame images); the kept frames are chosen inside the span and reported relative to its start
(``frame_indices``), so index 0 is the sample's first frame whatever the corpus's cut.

Sampling (RESEARCH.md, section 1, Eq. 1): with ``T`` frames and ``T_max`` slots, if ``T > T_max`` keep frame
``floor((i + 1) * T / T_max) - 1`` for ``i = 0 .. T_max - 1``, else all frames. It is deterministic: the same
sample always gives the same frames (training, evaluation and re-runs agree).

``"all"`` keeps every frame up to ``max_frames`` (300 by default, the RVLF input limit); a longer sample is
reduced to ``max_frames`` frames by the same Eq. 1 (so the whole sentence stays covered) or, with
``overflow="truncate"``, to its first ``max_frames`` frames.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ray_slt.errors import RaySltError

DEFAULT_T_MAX = 64
DEFAULT_MAX_FRAMES = 300

_SPEC = re.compile(r"^\s*(all|uniform)(?::\s*(\d+))?\s*$")


class SampleError(RaySltError):
    """One sample cannot be extracted; it becomes an error record ``(sample_id, stage, reason)``."""

    def __init__(self, stage: str, reason: str):
        self.stage = stage
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{stage}: {self.reason}")


@dataclass(frozen=True)
class Sampling:
    """A frame-selection rule: ``all`` (capped at ``max_frames``) or ``uniform`` with ``t_max`` slots."""

    mode: str = "all"
    t_max: int = DEFAULT_T_MAX
    max_frames: int = DEFAULT_MAX_FRAMES
    overflow: str = "uniform"

    def __post_init__(self) -> None:
        if self.mode not in ("all", "uniform"):
            raise ValueError(f"sampling mode must be 'all' or 'uniform', not {self.mode!r}")
        if self.t_max < 1 or self.max_frames < 1:
            raise ValueError("t_max and max_frames must be positive")
        if self.overflow not in ("uniform", "truncate"):
            raise ValueError(f"overflow must be 'uniform' or 'truncate', not {self.overflow!r}")

    @property
    def spec(self) -> str:
        """The canonical text form (recorded in provenance): ``all:300`` or ``uniform:64``."""
        return f"all:{self.max_frames}" if self.mode == "all" else f"uniform:{self.t_max}"

    def select(self, num_frames: int) -> np.ndarray:
        """The kept frame indices (0-based, increasing, relative to the span start) of ``num_frames``."""
        if num_frames <= 0:
            return np.zeros(0, dtype=np.int64)
        if self.mode == "uniform":
            return uniform_indices(num_frames, self.t_max)
        if num_frames <= self.max_frames:
            return np.arange(num_frames, dtype=np.int64)
        if self.overflow == "truncate":
            return np.arange(self.max_frames, dtype=np.int64)
        return uniform_indices(num_frames, self.max_frames)


def parse_sampling(spec: str, max_frames: int = DEFAULT_MAX_FRAMES, overflow: str = "uniform") -> Sampling:
    """Parse ``all``, ``uniform`` (T_max = 64) or ``uniform:N``."""
    m = _SPEC.match(str(spec))
    if not m:
        raise ValueError(f"frame sampling {spec!r} is not 'all', 'uniform' or 'uniform:N'")
    mode, n = m.group(1), m.group(2)
    if mode == "all":
        if n is not None:
            raise ValueError(f"frame sampling {spec!r}: 'all' takes no number (set max_frames instead)")
        return Sampling("all", DEFAULT_T_MAX, max_frames, overflow)
    t_max = int(n) if n is not None else DEFAULT_T_MAX
    if t_max < 1:
        raise ValueError(f"frame sampling {spec!r}: N must be positive")
    return Sampling("uniform", t_max, max_frames, overflow)


def uniform_indices(num_frames: int, t_max: int) -> np.ndarray:
    """Eq. 1: ``floor((i + 1) * T / T_max) - 1`` for ``i < T_max`` when ``T > T_max``, else ``0 .. T-1``."""
    if num_frames <= t_max:
        return np.arange(num_frames, dtype=np.int64)
    i = np.arange(t_max, dtype=np.int64)
    # Integer arithmetic: exact floor, no float rounding at large T.
    return (i + 1) * num_frames // t_max - 1


def resolve_span(
    available: int,
    start_frame: int | None = None,
    end_frame: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    fps: float | None = None,
) -> tuple[int, int]:
    """The sample's ``[start, end)`` among ``available`` decodable frames.

    Frames take precedence over times; times need ``fps``. An end beyond the decodable frames is clipped
    (containers and corpus tables over-report lengths); a start at or beyond them, or an empty span, is a
    ``SampleError`` (stage ``decode``) naming the numbers.
    """
    if available <= 0:
        raise SampleError("decode", "no decodable frames")
    if start_frame is None and start_s is not None:
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise SampleError("metadata", f"start_s={start_s} given but no valid fps to convert it")
        start_frame = math.floor(start_s * fps + 1e-6)
    if end_frame is None and end_s is not None:
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise SampleError("metadata", f"end_s={end_s} given but no valid fps to convert it")
        end_frame = math.ceil(end_s * fps - 1e-6)
    start = 0 if start_frame is None else int(start_frame)
    end = available if end_frame is None else min(int(end_frame), available)
    if start < 0:
        raise SampleError("metadata", f"start frame {start} is negative")
    if start >= available:
        raise SampleError("metadata", f"start frame {start} is beyond the {available} frames that decode")
    if end <= start:
        raise SampleError("metadata", f"empty span [{start}, {end}) of {available} decodable frames")
    return start, end
