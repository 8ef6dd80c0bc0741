"""Decoding a sample's frames: a video file (decord) or a directory of frame images (PHOENIX-style PNGs).

Only the kept frames are decoded into pixels (:mod:`ray_slt.features.sampling` picks them). Before that, the
frames that really decode are counted, because containers over-report: several real WLASL clips claim one or
two frames more than any decoder produces, and decord then returns a stale frame (or, per its upstream issue
tracker, hangs in ``get_batch``). The count comes from a decode-only pass of PyAV (no colour conversion, about a
tenth of the cost of decord's RGB frames); a video whose decodable frames fall short of what its container
claims by more than a tolerance is *truncated* and becomes an error record.

Decoding can hang or crash on hostile files, so :class:`Decoder` runs it in a child process
(``python -m ray_slt.features.video``) with a deadline per sample: past it, the child is killed and restarted
and the sample becomes an error record. Frames come back over a pipe as raw bytes with a JSON header (no
pickling). ``Decoder(isolated=False)`` runs the same code in-process.

:meth:`Decoder.decode_pose` also runs a CPU pose estimator (MediaPipe Holistic) in that child, on the frames it
has just decoded: only points and confidences come back (the frames only when crops need them), a crash or hang
in the estimator costs one sample, and the estimator runs in a plain process. (Measured on 2 cores: Holistic in a
Ray worker process itself takes ~10-15% more CPU per frame than in a child of that worker, when two run at once.)

A WLASL-style ``bbox`` (the signer's box, in source pixels) crops every frame (with a margin) before pose
estimation, and frames larger than ``max_side`` are scaled down; :class:`Clip` records the transform so
keypoints can be mapped back to source pixels.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ray_slt import storage
from ray_slt.errors import StorageError
from ray_slt.features.sampling import SampleError, Sampling, resolve_span

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_DECODE_CHUNK = 16  # frames per decord call: bounds peak memory for long, large videos (8-32 decode alike)
_HEADER = struct.Struct("<Q")


@dataclass
class Clip:
    """Decoded frames of one sample.

    ``frames`` are RGB uint8 ``[T, H, W, 3]`` after the bbox crop and down-scaling (None when a caller asked
    for the poses only, see :meth:`Decoder.decode_pose`); a point ``p`` in source pixels is at
    ``(p - offset) * scale`` in them (per axis). ``frame_indices`` are relative to the span start.
    """

    frames: np.ndarray | None
    frame_indices: np.ndarray
    span: tuple[int, int]
    fps: float | None
    width: int
    height: int
    offset: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    reported_frames: int = 0
    decodable_frames: int = 0
    decode_s: float = 0.0
    info: dict = field(default_factory=dict)

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        """Map pixel coordinates ``[..., 2]`` in ``frames`` back to the source frame."""
        out = np.array(xy, dtype=np.float32, copy=True)
        out[..., 0] = out[..., 0] / self.scale[0] + self.offset[0]
        out[..., 1] = out[..., 1] / self.scale[1] + self.offset[1]
        return out

    def to_frames(self, xy: np.ndarray) -> np.ndarray:
        """Map source pixel coordinates ``[..., 2]`` into ``frames``."""
        out = np.array(xy, dtype=np.float32, copy=True)
        out[..., 0] = (out[..., 0] - self.offset[0]) * self.scale[0]
        out[..., 1] = (out[..., 1] - self.offset[1]) * self.scale[1]
        return out


# --------------------------------------------------------------------------------------------- geometry


def crop_region(width: int, height: int, bbox: Sequence[float] | None, margin: float) -> tuple[int, int, int, int]:
    """The pixel region ``(x0, y0, x1, y1)`` to keep: the bbox grown by ``margin`` of its size, clamped."""
    if bbox is None:
        return 0, 0, width, height
    if len(bbox) != 4:
        raise SampleError("metadata", f"bbox {list(bbox)} is not [x0, y0, x1, y1]")
    x0, y0, x1, y1 = (float(v) for v in bbox)
    if not (x1 > x0 and y1 > y0):
        raise SampleError("metadata", f"bbox {list(bbox)} is empty")
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    cx0, cy0 = max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my)))
    cx1, cy1 = min(width, int(np.ceil(x1 + mx))), min(height, int(np.ceil(y1 + my)))
    if cx1 - cx0 < 8 or cy1 - cy0 < 8:
        raise SampleError("metadata", f"bbox {list(bbox)} lies outside the {width}x{height} frame")
    return cx0, cy0, cx1, cy1


def _scale_for(w: int, h: int, max_side: int | None) -> float:
    if not max_side or max(w, h) <= max_side:
        return 1.0
    return max_side / float(max(w, h))


def _crop_resize(
    frames: np.ndarray, region: tuple[int, int, int, int], scale: float
) -> tuple[np.ndarray, tuple[float, float]]:
    """Crop ``region`` and scale it by about ``scale``; returns the frames and the exact per-axis scale."""
    import cv2

    x0, y0, x1, y1 = region
    out = frames[:, y0:y1, x0:x1]
    if scale == 1.0:
        return np.ascontiguousarray(out), (1.0, 1.0)
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    out = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in out])
    return out, (size[0] / (x1 - x0), size[1] / (y1 - y0))


# ------------------------------------------------------------------------------------------ video files


@dataclass
class Probe:
    """What a decode-only pass learned about a video."""

    claimed: int  # frames the container states (stream header, else duration x rate)
    decodable: int  # frames that decoded (up to ``stop_after`` when given)
    complete: bool  # the pass reached the end of the stream (else it stopped at ``stop_after``)
    width: int  # as stored (before any display rotation)
    height: int
    fps: float | None
    rotation: int = 0  # display rotation, degrees counter-clockwise (0, 90, 180, 270): phones record sideways


def open_container(path: str, mode: str = "r", **kwargs):
    """A PyAV container, read whatever its metadata holds: real corpora are scraped from many sites and tools,
    whose container tags (title, comment, encoder) are often not valid UTF-8. PyAV decodes tags as UTF-8 and
    would refuse to open such a file at all; here undecodable tag bytes are dropped (the tags are never used:
    frames decide whether a video is usable). Every place that opens media for reading goes through this."""
    import av

    if mode == "r":
        kwargs.setdefault("metadata_errors", "ignore")
    return av.open(path, mode, **kwargs)


def count_decodable(path: str, stop_after: int | None = None) -> Probe:
    """Count the frames of a video that really decode, with a decode-only PyAV pass (no colour conversion).

    A decoding error ends the count (a truncated or corrupt tail). With ``stop_after``, counting stops once that
    many frames decoded (a sample that ends early in a long video needs no more).
    """
    import av

    try:
        container = open_container(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise SampleError("decode", f"unreadable video ({_one_line(e)})") from None
    with container:
        if not container.streams.video:
            raise SampleError("decode", "no video stream")
        stream = container.streams.video[0]
        claimed = int(stream.frames or 0)
        rate = float(stream.average_rate) if stream.average_rate else None
        if not claimed and stream.duration and rate:
            claimed = round(float(stream.duration * stream.time_base) * rate)
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        decoded, complete, rotation = 0, True, 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded == 1:
                    rotation = _quarter_turns(getattr(frame, "rotation", 0)) * 90
                if not width:
                    width, height = frame.width, frame.height
                if stop_after is not None and decoded >= stop_after:
                    complete = False
                    break
        except (av.FFmpegError, OSError, ValueError):
            pass
    return Probe(max(claimed, decoded), decoded, complete, width, height, rate, rotation)


def _quarter_turns(degrees: Any) -> int:
    """A display rotation (counter-clockwise degrees, as FFmpeg's display matrix gives it; phones write -90 or
    90) as quarter turns 0-3; other angles are not rotations a camera writes and count as 0."""
    try:
        d = float(degrees or 0)
    except (TypeError, ValueError):
        return 0
    k = round(d / 90)
    return k % 4 if abs(d - 90 * k) < 1 else 0


def decode_video(
    path: str,
    sampling: Sampling,
    *,
    start_frame: int | None = None,
    end_frame: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    fps: float | None = None,
    bbox: Sequence[float] | None = None,
    bbox_margin: float = 0.1,
    max_side: int | None = 1280,
    max_missing: float = 0.05,
) -> Clip:
    """Decode the kept frames of one video sample with decord (in this process).

    ``fps`` from the manifest is used when the container has none (and to convert ``start_s``/``end_s``);
    ``max_missing`` is the tolerated shortfall of decodable frames against the container's claim, as a
    fraction (at least 2 frames are always tolerated: containers commonly over-report by one or two).
    """
    import decord

    t0 = time.perf_counter()
    stop_after = None
    if end_frame is not None:
        stop_after = int(end_frame)
    elif end_s is not None and (fps or 0) > 0:
        stop_after = int(np.ceil(end_s * fps))
    probe = count_decodable(path, stop_after)
    claimed, decodable, stored_w, stored_h = probe.claimed, probe.decodable, probe.width, probe.height
    if decodable == 0:
        raise SampleError("decode", f"zero decodable frames (container claims {claimed})")
    if probe.complete and claimed - decodable > max(2, max_missing * claimed):
        raise SampleError("decode", f"truncated: {decodable} of {claimed} frames decode")
    # Frames are turned upright (a phone's sideways frames with a display rotation): width, height, the bbox and
    # the keypoints are in displayed pixels.
    turns = probe.rotation // 90
    width, height = (stored_h, stored_w) if turns % 2 else (stored_w, stored_h)
    region = crop_region(width, height, bbox, bbox_margin)
    scale = _scale_for(region[2] - region[0], region[3] - region[1], max_side)
    size: dict[str, int] = {}
    sx = sy = 1.0
    if scale < 1.0:
        # Let the decoder scale (several times cheaper than full-size RGB frames resized afterwards); decord turns
        # frames upright first and then scales them to this size, in displayed orientation.
        size = {"width": max(2, round(width * scale)), "height": max(2, round(height * scale))}
        sx, sy = size["width"] / width, size["height"] / height
    shape = (size.get("height", height), size.get("width", width))  # of the decoded, upright frames
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, **size)
    except (decord.DECORDError, RuntimeError) as e:
        raise SampleError("decode", f"unreadable video ({_one_line(e)})") from None
    container_fps = float(vr.get_avg_fps() or 0.0)
    use_fps = container_fps if np.isfinite(container_fps) and container_fps > 0 else (fps or None)
    available = min(decodable, len(vr))
    start, end = resolve_span(available, start_frame, end_frame, start_s, end_s, fps or use_fps)
    rel = sampling.select(end - start)
    absolute = (rel + start).tolist()
    x0, y0 = int(np.floor(region[0] * sx)), int(np.floor(region[1] * sy))
    x1 = min(int(np.ceil(region[2] * sx)), round(width * sx))
    y1 = min(int(np.ceil(region[3] * sy)), round(height * sy))
    # Filled in place, chunk by chunk: concatenating the chunks afterwards (a second full copy into freshly
    # faulted memory) made decoding the extraction benchmark's 1,903 frames 8.5 instead of 7.4 CPU-s.
    frames = np.zeros((0, 1, 1, 3), np.uint8)
    try:
        for i in range(0, len(absolute), _DECODE_CHUNK):
            batch = vr.get_batch(absolute[i : i + _DECODE_CHUNK]).asnumpy()
            if turns and batch.shape[1:3] != shape and batch.shape[1:3] == shape[::-1]:
                batch = np.rot90(batch, turns, axes=(1, 2))  # a decoder that left them as stored
            batch = batch[:, y0:y1, x0:x1]
            if i == 0:
                frames = np.empty((len(absolute), *batch.shape[1:]), np.uint8)
            frames[i : i + len(batch)] = batch
    except (decord.DECORDError, RuntimeError) as e:
        raise SampleError("decode", f"corrupt video ({_one_line(e)})") from None
    finally:
        del vr
    return Clip(
        frames=frames,
        frame_indices=rel,
        span=(start, end),
        fps=use_fps,
        width=width,
        height=height,
        offset=(x0 / sx, y0 / sy),
        scale=(sx, sy),
        reported_frames=claimed,
        decodable_frames=decodable,
        decode_s=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------------- frame-image folders

_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in _DIGITS.split(name)]


def list_frame_images(uri: str) -> list[str]:
    """The frame images of a directory, in frame order (natural sort of the file names).

    A directory without images but with exactly one sub-directory is descended into (PHOENIX-2014T keeps a
    sample's frames in ``{name}/1/``).
    """
    for _ in range(3):
        entries = storage.listdir(uri)
        images = [e for e in entries if storage.basename(e).lower().endswith(IMAGE_SUFFIXES)]
        if images:
            return sorted(images, key=lambda e: _natural_key(storage.basename(e)))
        subdirs = [e for e in entries if storage.isdir(e)]
        if len(subdirs) != 1:
            break
        uri = subdirs[0]
    return []


def decode_images(
    paths: Sequence[str],
    *,
    bbox: Sequence[float] | None = None,
    bbox_margin: float = 0.1,
    max_side: int | None = 1280,
) -> tuple[np.ndarray, int, int, tuple[int, int, int, int], tuple[float, float]]:
    """Decode local image files (all of them, in order) to RGB frames; all must share one size.

    PIL decodes them: OpenCV's PNG reader breaks (``libpng error: bad parameters to zlib``) in a process
    that imported decord before cv2, because the two ship clashing zlib builds.
    """
    from PIL import Image, UnidentifiedImageError

    frames = []
    size = None
    for p in paths:
        try:
            with Image.open(p) as im:
                img = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError):
            raise SampleError("decode", f"unreadable frame image {os.path.basename(p)}") from None
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise SampleError(
                "decode", f"frame {os.path.basename(p)} is {img.shape[1]}x{img.shape[0]}, not {size[1]}x{size[0]}"
            )
        frames.append(img)
    if not frames:
        raise SampleError("decode", "zero frames")
    height, width = size
    region = crop_region(width, height, bbox, bbox_margin)
    scale = _scale_for(region[2] - region[0], region[3] - region[1], max_side)
    out, exact = _crop_resize(np.stack(frames), region, scale)
    return out, width, height, region, exact


# --------------------------------------------------------------------------------------- the decoder


def _one_line(e: BaseException) -> str:
    """An exception as one short line; for OS and FFmpeg errors their reason without the file name (a server's
    temporary paths stay out of its answers)."""
    if getattr(e, "strerror", None) and isinstance(e.strerror, str):
        return str(e.strerror)[:300]
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(e).__name__
    return text[:300]


def _run_request(req: dict[str, Any]) -> Clip:
    """Execute one decode request (the same in the child process and in-process)."""
    sampling = Sampling(**req["sampling"])
    if req["kind"] == "video":
        return decode_video(
            req["path"],
            sampling,
            start_frame=req.get("start_frame"),
            end_frame=req.get("end_frame"),
            start_s=req.get("start_s"),
            end_s=req.get("end_s"),
            fps=req.get("fps"),
            bbox=req.get("bbox"),
            bbox_margin=req.get("bbox_margin", 0.1),
            max_side=req.get("max_side"),
            max_missing=req.get("max_missing", 0.05),
        )
    t0 = time.perf_counter()
    frames, width, height, region, scale = decode_images(
        req["paths"], bbox=req.get("bbox"), bbox_margin=req.get("bbox_margin", 0.1), max_side=req.get("max_side")
    )
    return Clip(
        frames=frames,
        frame_indices=np.asarray(req["frame_indices"], dtype=np.int64),
        span=tuple(req["span"]),
        fps=req.get("fps"),
        width=width,
        height=height,
        offset=(float(region[0]), float(region[1])),
        scale=scale,
        reported_frames=int(req["reported_frames"]),
        decodable_frames=int(req["reported_frames"]),
        decode_s=time.perf_counter() - t0,
    )


def _clip_header(clip: Clip) -> dict:
    return {
        "ok": True,
        "shape": list(clip.frames.shape),
        "frame_indices": clip.frame_indices.tolist(),
        "span": list(clip.span),
        "fps": clip.fps,
        "width": clip.width,
        "height": clip.height,
        "offset": list(clip.offset),
        "scale": list(clip.scale),
        "reported_frames": clip.reported_frames,
        "decodable_frames": clip.decodable_frames,
        "decode_s": clip.decode_s,
    }


def _clip_from_header(h: dict, frames: np.ndarray) -> Clip:
    return Clip(
        frames=frames,
        frame_indices=np.asarray(h["frame_indices"], dtype=np.int64),
        span=(int(h["span"][0]), int(h["span"][1])),
        fps=h["fps"],
        width=int(h["width"]),
        height=int(h["height"]),
        offset=(float(h["offset"][0]), float(h["offset"][1])),
        scale=(float(h["scale"][0]), float(h["scale"][1])),
        reported_frames=int(h["reported_frames"]),
        decodable_frames=int(h["decodable_frames"]),
        decode_s=float(h["decode_s"]),
    )


_ESTIMATORS: dict[str, Any] = {}  # this process's pose estimator, by its spec (one at a time)


def _estimator(spec: dict[str, Any]):
    """This process's pose estimator for ``spec`` (``{"backend", "options"}``), built once per spec."""
    from ray_slt.errors import RaySltError
    from ray_slt.features.pose import make_estimator

    key = json.dumps(spec, sort_keys=True)
    est = _ESTIMATORS.get(key)
    if est is None:
        for old in _ESTIMATORS.values():
            old.close()
        _ESTIMATORS.clear()
        try:
            est = _ESTIMATORS[key] = make_estimator(spec["backend"], spec.get("options"))
        except RaySltError as e:
            raise SampleError("pose", str(e)) from None
    return est


def _describe(spec: dict[str, Any]) -> dict[str, Any]:
    """The estimator's name and its pose-format components (base64 header bytes), for the parent process."""
    from ray_slt.data.poses import components_to_bytes

    est = _estimator(spec)
    components = base64.b64encode(components_to_bytes(est.components())).decode()
    return {"ok": True, "name": est.name, "components": components}


def _estimate(spec: dict[str, Any], frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Run the pose estimator ``spec`` on ``frames``; points, confidences, seconds (each sample starts a fresh
    graph inside the estimator)."""
    est = _estimator(spec)
    t0 = time.perf_counter()
    data, conf = est.estimate(frames)
    return data, conf, time.perf_counter() - t0


def _send(out, header: dict[str, Any], *arrays: np.ndarray) -> None:
    blob = json.dumps(header).encode()
    out.write(_HEADER.pack(len(blob)))
    out.write(blob)
    for a in arrays:
        out.write(memoryview(np.ascontiguousarray(a)).cast("B"))
    out.flush()


def _failure(e: BaseException, stage: str) -> dict[str, Any]:
    if isinstance(e, SampleError):
        return {"ok": False, "stage": e.stage, "reason": e.reason}
    return {"ok": False, "stage": stage, "reason": f"{type(e).__name__}: {_one_line(e)}"}


def _batch_scheduling() -> None:
    """Put this process, and the threads it starts afterwards, under Linux's ``SCHED_BATCH`` policy (no-op
    elsewhere).

    A batch thread that wakes up does not preempt the running one: the estimator's threads, which share one CPU
    when the pose actor is pinned, then hand the CPU over at the scheduler's tick instead of on every wake-up.
    Measured on the extraction benchmark's pipeline (2 pinned actors, 33 clips, five alternating pairs of runs):
    0.4-1.1 s of ~57 faster in every pair, with identical output. Only the ordering of this process's own work
    changes; its niceness (its share of the CPU) stays what it was.
    """
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):  # a sandbox that forbids it: run as before
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _child_main() -> None:
    """The decoder process: one JSON request per line on stdin. Per request on stdout: a length-prefixed JSON
    header, then the raw frames when it says ``ok``. A request with ``pose`` gets the decode header without
    frames, then a second header (the pose result: points, confidences, and the frames if ``return_frames``).
    A ``{"kind": "describe", "pose": ...}`` request gets one header: the estimator's name and components."""
    import cv2

    cv2.setNumThreads(1)
    _batch_scheduling()
    # The protocol gets its own copy of stdout; fd 1 then points at stderr, so a library that prints to stdout
    # cannot corrupt the frames stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        pose = None
        try:
            req = json.loads(line)
            pose = req.get("pose")
            if req.get("kind") == "describe":
                try:
                    _send(out, _describe(pose))
                except Exception as e:
                    _send(out, _failure(e, "pose"))
                continue
            clip = _run_request(req)
        except Exception as e:  # a hostile file is one sample's error, whatever it raises
            _send(out, _failure(e, "decode"))
            continue
        if pose is None:
            _send(out, _clip_header(clip), clip.frames)
            continue
        _send(out, _clip_header(clip))  # no frames here: they follow the poses, if asked for
        try:
            data, conf, seconds = _estimate(pose, clip.frames)
        except Exception as e:
            _send(out, _failure(e, "pose"))
            continue
        arrays = [data.astype(np.float32), conf.astype(np.float32)]
        if req.get("return_frames", True):
            arrays.append(clip.frames)
        _send(out, {"ok": True, "pose_s": seconds, "shapes": [list(a.shape) for a in arrays]}, *arrays)


class Decoder:
    """Decodes samples with a deadline, in a child process (default) or in this process.

    ``decode(request)`` takes a request from :func:`video_request`/:func:`image_request` and returns a
    :class:`Clip` or raises :class:`SampleError`. A request that exceeds ``timeout_s`` kills the child
    (a fresh one starts with the next request) and raises ``SampleError("decode", "timed out ...")``.
    """

    def __init__(self, timeout_s: float = 120.0, isolated: bool = True):
        self.timeout_s = float(timeout_s)
        self.isolated = isolated
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the child process now (it imports its decoders while the caller does other work)."""
        if self.isolated:
            self._start()

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ, OMP_NUM_THREADS="1")
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ray_slt.features.video"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                bufsize=0,
            )
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            self._proc = None

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._kill()
        self._proc = None

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._kill()

    def decode(self, request: dict[str, Any]) -> Clip:
        if not self.isolated:
            return _run_request(request)
        proc = self._start()
        with self._guard(proc, "decode", self.timeout_s) as deadline:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            header = self._header(proc, deadline)
            frames = self._array(proc, header["shape"], np.uint8, deadline)
        return _clip_from_header(header, frames)

    def decode_pose(
        self, request: dict[str, Any], pose: dict[str, Any], *, return_frames: bool = True, pose_timeout_s: float
    ) -> tuple[Clip, np.ndarray, np.ndarray, float]:
        """Decode, then estimate poses on the frames (``pose``: ``{"backend", "options"}``) in the same place.

        Returns the clip (its ``frames`` None unless ``return_frames``), points ``[T, P, D]``, confidences
        ``[T, P]`` and the estimator's seconds. Decoding has ``timeout_s``, estimation ``pose_timeout_s``; a
        failure in either is a :class:`SampleError` of its stage.
        """
        if not self.isolated:
            clip = _run_request(request)
            try:
                data, conf, seconds = _estimate(pose, clip.frames)
            except Exception as e:  # labelled as the child labels it: the estimator's failure is a pose error
                failure = _failure(e, "pose")
                raise SampleError(failure["stage"], failure["reason"]) from e
            if not return_frames:
                clip.frames = None
            return clip, data, conf, seconds
        proc = self._start()
        req = dict(request, pose=pose, return_frames=return_frames)
        with self._guard(proc, "decode", self.timeout_s) as deadline:
            proc.stdin.write(json.dumps(req).encode() + b"\n")
            header = self._header(proc, deadline)
        with self._guard(proc, "pose", pose_timeout_s) as deadline:
            result = self._header(proc, deadline)
            shapes = result["shapes"]
            data = self._array(proc, shapes[0], np.float32, deadline)
            conf = self._array(proc, shapes[1], np.float32, deadline)
            frames = self._array(proc, shapes[2], np.uint8, deadline) if return_frames else None
        return _clip_from_header(header, frames), data, conf, float(result["pose_s"])

    def describe(self, pose: dict[str, Any], *, timeout_s: float) -> tuple[str, list]:
        """The name and pose-format components of the estimator ``pose`` (``{"backend", "options"}``), built
        where :meth:`decode_pose` runs it: in the child, so that this process need not import the estimator's
        library (MediaPipe: ~0.5 s and ~80 MB). A missing backend is a ``pose`` :class:`SampleError`."""
        from ray_slt.data.poses import components_from_bytes

        if not self.isolated:
            est = _estimator(pose)
            return est.name, est.components()
        proc = self._start()
        with self._guard(proc, "pose", timeout_s) as deadline:
            proc.stdin.write(json.dumps({"kind": "describe", "pose": pose}).encode() + b"\n")
            header = self._header(proc, deadline)
        return header["name"], components_from_bytes(base64.b64decode(header["components"]))

    @contextlib.contextmanager
    def _guard(self, proc: subprocess.Popen, stage: str, timeout_s: float) -> Iterator[float]:
        """A deadline for one exchange with the child; a timeout or a dead child kills it (one sample lost)."""
        try:
            yield time.monotonic() + timeout_s
        except TimeoutError:
            self._kill()
            raise SampleError(stage, f"timed out after {timeout_s:g}s (the child process was restarted)") from None
        except (EOFError, BrokenPipeError, OSError):
            code = proc.poll()
            self._kill()
            raise SampleError(stage, f"the child process died in {stage} (exit code {code})") from None

    @staticmethod
    def _header(proc: subprocess.Popen, deadline: float) -> dict[str, Any]:
        fd = proc.stdout.fileno()
        (n,) = _HEADER.unpack(bytes(_read_exact(fd, _HEADER.size, deadline)))
        header = json.loads(bytes(_read_exact(fd, n, deadline)))
        if not header["ok"]:
            raise SampleError(header["stage"], header["reason"])
        return header

    @staticmethod
    def _array(proc: subprocess.Popen, shape: Sequence[int], dtype: type, deadline: float) -> np.ndarray:
        arr = np.empty(tuple(int(s) for s in shape), dtype=dtype)
        _read_exact(proc.stdout.fileno(), arr.nbytes, deadline, into=arr.reshape(-1))
        return arr


def _read_exact(fd: int, n: int, deadline: float, into: np.ndarray | None = None) -> memoryview:
    buf = memoryview(into if into is not None else bytearray(n)).cast("B")
    got = 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            raise TimeoutError
        k = os.readv(fd, [buf[got:]])
        if k == 0:
            raise EOFError
        got += k
    return buf


# ----------------------------------------------------------------------------------- request builders


def video_request(
    local_path: str,
    row: dict[str, Any],
    sampling: Sampling,
    *,
    bbox_margin: float,
    max_side: int | None,
    max_missing: float,
) -> dict[str, Any]:
    """A decode request for a video file (already local) and its manifest row."""
    return {
        "kind": "video",
        "path": local_path,
        "sampling": _sampling_dict(sampling),
        "start_frame": row.get("start_frame"),
        "end_frame": row.get("end_frame"),
        "start_s": row.get("start_s"),
        "end_s": row.get("end_s"),
        "fps": row.get("fps"),
        "bbox": list(row["bbox"]) if row.get("bbox") is not None else None,
        "bbox_margin": bbox_margin,
        "max_side": max_side,
        "max_missing": max_missing,
    }


def _sampling_dict(s: Sampling) -> dict:
    return {"mode": s.mode, "t_max": s.t_max, "max_frames": s.max_frames, "overflow": s.overflow}


@contextlib.contextmanager
def image_request(
    images: Sequence[str], row: dict[str, Any], sampling: Sampling, *, bbox_margin: float, max_side: int | None
) -> Iterator[dict[str, Any]]:
    """A decode request for a folder's frame images (``images`` in frame order, local or remote).

    Only the kept frames' files are fetched (remote ones into a temporary directory for the request's life).
    """
    start, end = resolve_span(
        len(images),
        row.get("start_frame"),
        row.get("end_frame"),
        row.get("start_s"),
        row.get("end_s"),
        row.get("fps"),
    )
    rel = sampling.select(end - start)
    chosen = [images[start + int(i)] for i in rel]
    base = {
        "kind": "images",
        "sampling": _sampling_dict(sampling),
        "frame_indices": rel.tolist(),
        "span": [start, end],
        "fps": row.get("fps"),
        "bbox": list(row["bbox"]) if row.get("bbox") is not None else None,
        "bbox_margin": bbox_margin,
        "max_side": max_side,
        "reported_frames": len(images),
    }
    if all(storage.is_local(p) for p in chosen):
        yield {**base, "paths": [storage.normalize(p) for p in chosen]}
        return
    with tempfile.TemporaryDirectory(prefix="ray_slt_frames_") as d:
        local = []
        for i, uri in enumerate(chosen):
            path = os.path.join(d, f"{i:06d}{os.path.splitext(storage.basename(uri))[1]}")
            with open(path, "wb") as f:
                f.write(storage.read_bytes(uri))
            local.append(path)
        yield {**base, "paths": local}


def media_uri(uri: str | None, manifest_dir: str | None, media_root: str | None = None) -> str | None:
    """A manifest's media reference resolved: relative local paths are relative to the manifest's folder; with
    ``media_root``, the result must lie under it (a StorageError otherwise)."""
    if not uri:
        return None
    if storage.is_local(uri) and not os.path.isabs(uri.removeprefix("file://")) and manifest_dir:
        uri = storage.join(manifest_dir, uri)
    if media_root:
        uri = storage.ensure_within(uri, media_root)
    return uri


def decode_sample(
    row: dict[str, Any],
    video: str,
    sampling: Sampling,
    settings: Any,
    run: Callable[[dict[str, Any]], tuple[Clip, Any]],
) -> tuple[Clip, Any, str]:
    """Decode one manifest row's kept frames: the one place that turns a row + its media into a decode request.

    ``video`` is a video file or a folder of frame images (local or remote); ``settings`` carries the decode
    settings (``bbox_margin``, ``max_side``, ``max_missing``, ``default_fps``: the extraction's ``DecodeConfig``);
    ``run(request)`` decodes it (a :class:`Decoder`'s ``decode``, or its ``decode_pose`` to estimate poses in the
    same child) and returns ``(clip, extra)``. Returns ``(clip, extra, input_kind)`` with input_kind ``frames``
    or ``video``; a video that cannot be read or keeps no frame is a ``SampleError`` (stage ``decode``)."""
    if storage.isdir(video):
        images = list_frame_images(video)
        if not images:
            raise SampleError("decode", "no frame images in the directory")
        with image_request(images, row, sampling, bbox_margin=settings.bbox_margin, max_side=settings.max_side) as req:
            clip, extra = run(req)
        clip.fps = clip.fps or settings.default_fps
        kind = "frames"
    else:
        try:
            with storage.local_file(video) as path:
                req = video_request(path, row, sampling, bbox_margin=settings.bbox_margin, max_side=settings.max_side,
                                    max_missing=settings.max_missing)  # fmt: skip
                clip, extra = run(req)
        except (StorageError, OSError) as e:
            raise SampleError("decode", f"unreadable: {e}") from None
        kind = "video"
    if len(clip.frame_indices) == 0:
        raise SampleError("decode", "zero frames in the sample")
    return clip, extra, kind


if __name__ == "__main__":
    _child_main()
