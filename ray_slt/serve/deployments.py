"""The model-side deployments of the serving application, composed by the ingress through handles.

* :class:`FeatureExtractor`: a clip (video bytes, ``.pose`` bytes or a URI under the allowed prefix) -> the
  77-point keypoints a pose model reads, with the extraction stage's own per-sample code
  (:class:`ray_slt.features.extract.SampleProcessor`: decode in a child process with a deadline -> MediaPipe
  Holistic -> 77-point layout; or a shipped ``.pose`` -> layout; DINOv2 features through
  :class:`ray_slt.features.extract.VisualStage` when the model fuses them), plus the pose in pixels for
  the web page to draw; or, for models that decode video themselves, the checked (and if need be remuxed) video.
* :class:`ModelServer`: one saved model per route, loaded through the registry of saved models
  (:func:`ray_slt.models.registry.load_predictor`), with dynamic batching (``serve.batch``): concurrent requests
  that arrive within the batch wait are predicted in one forward pass.

Each returns plain dicts (numpy arrays inside); a refused input is ``{"ok": False, "status", "reason"}``,
never an exception, so the ingress maps it to a 4xx and the replica stays healthy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any

import numpy as np
from ray import serve

from ray_slt import storage
from ray_slt.errors import RaySltError
from ray_slt.serve.config import ServeConfig
from ray_slt.serve.inputs import POSE_SUFFIX, VIDEO_SUFFIXES, RequestError

log = logging.getLogger("ray_slt.serve")


def _refused(status: int, reason: str, stage: str = "input") -> dict[str, Any]:
    return {"ok": False, "status": status, "stage": stage, "reason": " ".join(str(reason).split())[:500]}


def probe_video(path: str, max_s: float) -> tuple[float, str, bool]:
    """``(duration_s, codec, complete)`` of a video from its container, without decoding a frame: the duration
    its header states when it also states a frame count, else the one its packet timestamps give. ``complete``
    says whether the header states a right duration and a frame rate (the video decoder needs both; a browser's
    recording has neither). 422 when it is not a readable video, 413 when longer than ``max_s``."""
    import av

    from ray_slt.features.video import open_container

    try:
        container = open_container(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise RequestError(422, f"not a readable video ({reason})") from None
    with container:
        if not container.streams.video:
            raise RequestError(422, "the file has no video stream")
        stream = container.streams.video[0]
        codec = str(stream.codec_context.name or "unknown codec")
        header = 0.0
        if container.duration and container.duration > 0:
            header = container.duration / 1_000_000
        elif stream.duration and stream.time_base:
            header = float(stream.duration * stream.time_base)
        duration, stated = header, header > 0
        if not stream.frames:  # e.g. WebM/Matroska; a browser's recording states no duration or a wrong one
            duration = 0.0
            try:
                for packet in container.demux(stream):
                    if packet.pts is not None and packet.time_base is not None:
                        duration = max(duration, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                    if duration > max_s:
                        break
            except (av.FFmpegError, OSError, ValueError):
                pass  # a broken tail: the decoder reports it below
            stated = header > 0 and abs(header - duration) <= max(0.1, 0.1 * duration)
        stated = stated and bool(stream.average_rate)
    if duration > max_s:
        raise RequestError(413, f"clip of {duration:.1f} s exceeds the limit of {max_s:g} s")
    return duration, codec, stated


def remux(src: str, dst: str) -> str:
    """Copy the video stream's packets into a Matroska file that states its duration and frame rate (no
    re-encoding).

    A browser's MediaRecorder writes WebM as a live stream: no duration (or a wrong one), no frame count, no
    index, and variable frame timing. The video decoder (decord) refuses such files ("broken metadata"); the same
    packets in a finished container with evenly spaced timestamps (at the recording's mean frame rate) decode.
    Timestamps are respaced only when the packets come in presentation order (no B-frames); otherwise they are
    copied as they are.
    """
    import av

    from ray_slt.features.video import open_container

    try:
        with open_container(src) as inp:
            stream = inp.streams.video[0]
            pts = [p.pts for p in inp.demux(stream) if p.dts is not None]
        even = all(p is not None for p in pts) and pts == sorted(pts) and len(pts) > 1 and pts[-1] > pts[0]
        step = round((pts[-1] - pts[0]) / (len(pts) - 1)) if even else 0
        with open_container(src) as inp, open_container(dst, "w", format="matroska") as out:
            stream = inp.streams.video[0]
            target = out.add_stream_from_template(stream)
            for i, packet in enumerate(p for p in inp.demux(stream) if p.dts is not None):  # no end-of-stream marker
                if step > 0:
                    packet.pts = packet.dts = i * step
                    packet.duration = step
                packet.stream = target
                out.mux(packet)
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise RequestError(422, f"unreadable video stream ({reason})") from None
    return dst


def drawable_pose(row: dict[str, Any]) -> dict[str, Any]:
    """The extracted 77-point pose in source pixels, for the web page: one list of x, y per kept frame
    (``null`` where a point is missing), the kept frames' numbers in the source and its size and fps."""
    kp, valid = row["keypoints"], row["keypoints_valid"]
    pixels = kp * float(row["norm_scale"]) + np.asarray(row["norm_center"], dtype=np.float32)
    points = []
    for t in range(kp.shape[0]):
        xy = np.round(pixels[t], 1).astype(float)
        frame: list[float | None] = []
        for p in range(kp.shape[1]):
            frame.extend((xy[p, 0], xy[p, 1]) if valid[t, p] else (None, None))
        points.append(frame)
    start = int(row.get("span_start") or 0)
    return {
        "width": int(row["width"]),
        "height": int(row["height"]),
        "fps": float(row["fps"]) if row.get("fps") else None,
        "frames": [start + int(i) for i in row["frame_indices"]],
        "points": points,
    }


def scratch_dir() -> str | None:
    """Where uploads and per-request files go: a memory file system (``/dev/shm``) when it has room for many
    maximal uploads (files there cost no disk I/O: the extraction stage fsyncs what it writes), else the
    system's temporary directory."""
    shm = "/dev/shm"
    try:
        if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30:
            return shm
    except OSError:
        pass
    return None


class FeatureService:
    """Clip -> model input, with the extraction stage's per-sample code (usable in-process too)."""

    def __init__(self, cfg: ServeConfig, needs_visual: bool = False):
        from ray_slt.features.extract import SampleProcessor

        self.cfg = cfg
        self.limits = cfg.limits
        self.prefix = cfg.inputs.uri_prefix
        self.tmp = tempfile.mkdtemp(prefix="ray_slt_serve_", dir=scratch_dir())
        ecfg = cfg.extract_config()
        self.visual = None
        if needs_visual:
            from ray_slt.features.extract import VisualStage

            if cfg.features.visual.kind == "none":
                raise RaySltError(
                    "the checkpoint fuses DINOv2 face/hand features: set features.visual.kind=dinov2 and "
                    "features.visual.model to the DINOv2 it was trained with"
                )
            ecfg = ecfg.model_copy(update={"features": cfg.features.visual})
            self.visual = VisualStage(ecfg.model_dump(mode="json"))
        self.processor = SampleProcessor(ecfg, out=self.tmp, run_id="serve")
        self._lock = threading.Lock()

    def close(self) -> None:
        self.processor.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------------------------------------- inputs

    def _resolve_uri(self, uri: str) -> tuple[str, str]:
        """``(uri, kind)`` of a client-named URI, checked against the allowed prefix and the size limit."""
        if not self.prefix:
            raise RequestError(403, "this server reads no URIs (inputs.uri_prefix is not set); upload the file")
        try:
            if storage.is_local(uri) and not os.path.isabs(uri.removeprefix("file://")):
                uri = storage.join(self.prefix, uri)  # relative URIs are relative to the prefix
            uri = storage.ensure_within(uri, self.prefix)
        except RaySltError as e:
            raise RequestError(403, str(e)) from None
        if not storage.exists(uri):
            raise RequestError(404, f"{uri}: no such file")
        if storage.isdir(uri):
            return uri, "frames"
        size = storage.size(uri)
        if size > self.limits.max_upload_mb * 1e6:
            raise RequestError(413, f"{uri}: {size} bytes exceeds the limit of {self.limits.max_upload_mb:g} MB")
        suffix = os.path.splitext(uri)[1].lower()
        if suffix == POSE_SUFFIX:
            return uri, "pose"
        if suffix in VIDEO_SUFFIXES:
            return uri, "video"
        raise RequestError(415, f"{uri}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a .pose file")

    def _check_pose(self, data: bytes, source: str) -> None:
        from ray_slt.data.poses import parse_pose

        try:
            pose = parse_pose(data, source)
        except RaySltError as e:
            raise RequestError(422, str(e)) from None
        frames = int(np.asarray(pose.body.confidence).shape[0])
        if frames == 0:
            raise RequestError(422, f"{source}: the pose has zero frames")
        if frames > self.limits.max_pose_frames:
            raise RequestError(
                413, f"{source}: {frames} frames exceed the limit of {self.limits.max_pose_frames} frames"
            )

    def _check_frames(self, uri: str) -> None:
        from ray_slt.features.video import list_frame_images

        n = len(list_frame_images(uri))
        if n == 0:
            raise RequestError(422, f"{uri}: a directory without frame images")
        seconds = n / self.cfg.features.decode.default_fps
        if seconds > self.limits.max_video_s:
            raise RequestError(413, f"{uri}: {n} frames ({seconds:.1f} s) exceed the limit of "
                               f"{self.limits.max_video_s:g} s")  # fmt: skip

    # ------------------------------------------------------------------------------------------------ main

    def extract(self, clip: dict[str, Any]) -> dict[str, Any]:
        """``clip``: ``{"kind": "video"|"pose", "data": bytes, "suffix": ".mp4"}`` or ``{"kind": "uri",
        "uri": ...}``, optionally ``"include_pose": True``, ``"visual": True`` (DINOv2 features too) and
        ``"want": "video"`` (the checked video itself, for a model that decodes it: no pose estimation). Returns
        ``{"ok": True, "sample": {...}, "pose": {...} or None, "timings": {...}}`` or a refusal."""
        t0 = time.perf_counter()
        sid = f"request-{uuid.uuid4().hex[:16]}"
        work = os.path.join(self.tmp, sid)
        os.makedirs(work)
        try:
            kind, data = clip.get("kind"), None
            if kind == "uri":
                uri, kind = self._resolve_uri(str(clip.get("uri") or ""))
                source = uri
            elif kind in ("video", "pose"):
                data = clip.get("data")
                if not isinstance(data, bytes | bytearray) or not data:
                    raise RequestError(400, "empty upload")
                if len(data) > self.limits.max_upload_mb * 1e6:
                    raise RequestError(413, f"upload exceeds the limit of {self.limits.max_upload_mb:g} MB")
                suffix = POSE_SUFFIX if kind == "pose" else str(clip.get("suffix") or ".mp4")
                if suffix not in (POSE_SUFFIX, *VIDEO_SUFFIXES):
                    suffix = ".mp4"
                source = os.path.join(work, "upload" + suffix)
                with open(source, "wb") as f:
                    f.write(data)
                uri = source
            else:
                raise RequestError(400, f"unknown input kind {kind!r}")
            want_video = clip.get("want") == "video"
            if want_video and kind != "video":
                raise RequestError(415, f"this model reads video, not a {'.pose file' if kind == 'pose' else kind}")
            with contextlib.ExitStack() as stack:
                if kind == "pose":
                    self._check_pose(data if data is not None else storage.read_bytes(uri), source)
                    row = {"sample_id": sid, "pose_uri": uri}
                elif kind == "frames":
                    self._check_frames(uri)
                    row = {"sample_id": sid, "video_uri": uri}
                else:
                    local = stack.enter_context(storage.local_file(uri))
                    _, codec, complete = probe_video(local, self.limits.max_video_s)
                    if not complete:  # e.g. a recording from the web page
                        local = remux(local, os.path.join(work, "remuxed.mkv"))
                    if want_video:
                        return self._video(local, codec, t0)
                    row = {"sample_id": sid, "video_uri": local}
                with self._lock:  # one decoder process and one pose graph per replica
                    out = self.processor.process(row)
                    if out["status"] == "ok" and clip.get("visual"):
                        out = self._visual(out)
            if out["status"] != "ok":
                reason = f"{out['stage']}: {out['reason']}"
                if out["stage"] == "decode" and kind == "video":
                    reason += f" [{codec} video]"
                return _refused(422, self._scrub(reason), stage=out["stage"] or "extract")
            return self._result(out, kind, t0, bool(clip.get("include_pose")))
        except RequestError as e:
            return _refused(e.status, self._scrub(e.reason))
        finally:
            shutil.rmtree(work, ignore_errors=True)
            with contextlib.suppress(OSError):
                from ray_slt.features.store import pose_relpath

                os.unlink(os.path.join(self.tmp, *pose_relpath(sid).split("/")))

    def _scrub(self, reason: str) -> str:
        """A reason without the server's temporary paths (they name nothing the client knows)."""
        return re.sub(re.escape(self.tmp) + r"[^\s'\")]*", "<upload>", reason)

    def _video(self, local: str, codec: str, t0: float) -> dict[str, Any]:
        with open(local, "rb") as f:
            data = f.read()
        return {
            "ok": True,
            "sample": {"video_bytes": data, "suffix": os.path.splitext(local)[1] or ".mp4"},
            "pose": None,
            "info": {"input_kind": "video", "num_frames": None, "pose_estimator": None, "codec": codec},
            "timings": {"extract_s": round(time.perf_counter() - t0, 4)},
        }

    def _visual(self, out: dict[str, Any]) -> dict[str, Any]:
        import pyarrow as pa

        if self.visual is None:
            raise RaySltError("DINOv2 features were asked for, but features.visual is not configured")

        from ray_slt.features.extract import STAGE_SCHEMA

        if out.get("crops") is None:
            reason = "this model needs DINOv2 features of the video frames; a .pose has no pixels"
            return {**out, "status": "error", "stage": "visual", "reason": reason}
        table = self.visual(pa.Table.from_pylist([out], schema=STAGE_SCHEMA))
        return table.to_pylist()[0]

    def _result(self, out: dict[str, Any], kind: str, t0: float, include_pose: bool) -> dict[str, Any]:
        from ray_slt.features.store import decode_row

        row = decode_row({k: v for k, v in out.items() if k not in ("crops", "crops_shape")})
        sample = {
            k: row[k]
            for k in ("keypoints", "keypoints_valid", "keypoints_confidence", "face_features",
                      "left_hand_features", "right_hand_features")
            if row.get(k) is not None
        }  # fmt: skip
        return {
            "ok": True,
            "sample": sample,
            "pose": drawable_pose(row) if include_pose else None,
            "info": {
                "input_kind": kind,
                "num_frames": int(row["num_frames"]),
                "pose_estimator": row.get("pose_estimator"),
                "layout_source": row.get("layout_source"),
            },
            "timings": {
                "decode_s": round(float(row.get("decode_s") or 0.0), 4),
                "pose_s": round(float(row.get("pose_s") or 0.0), 4),
                "visual_s": round(float(row.get("visual_s") or 0.0), 4),
                "extract_s": round(time.perf_counter() - t0, 4),
            },
        }


@serve.deployment(name="features")
class FeatureExtractor:
    """Serve deployment around :class:`FeatureService` (sync method: Serve runs it in its thread pool)."""

    def __init__(self, config: dict, needs_visual: bool = False):
        os.environ.setdefault("GLOG_minloglevel", "2")
        self.service = FeatureService(ServeConfig.model_validate(config), needs_visual)

    def extract(self, clip: dict[str, Any]) -> dict[str, Any]:
        return self.service.extract(clip)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.service.close()


@serve.deployment(name="model")
class ModelServer:
    """Serve deployment of one route's saved model; ``predict(sample)`` is dynamically batched when enabled."""

    def __init__(self, config: dict, route: str):
        import torch

        from ray_slt.models.registry import load_predictor

        cfg = ServeConfig.model_validate(config)
        m = cfg.models[route]
        self.route = route
        threads = m.torch_threads or max(1, round(m.deployment.num_cpus))
        torch.set_num_threads(threads)
        self.predictor = load_predictor(m.checkpoint, model_id=m.model_id, **m.options)
        self.tmp = tempfile.mkdtemp(prefix="ray_slt_model_", dir=scratch_dir())
        self.batching = m.batching
        self._batched.set_max_batch_size(m.batching.max_batch_size)
        self._batched.set_batch_wait_timeout_s(m.batching.wait_timeout_s)
        self._lock = threading.Lock()  # one forward pass at a time per replica, batched or not

    def info(self) -> dict[str, Any]:
        return {**self.predictor.info(), "route": self.route, "batching": self.batching.model_dump()}

    def _run(self, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock, contextlib.ExitStack() as stack:
            samples = [self._materialise(s, stack) for s in samples]
            t0 = time.perf_counter()
            outputs = self.predictor.predict(samples)
            seconds = round(time.perf_counter() - t0, 4)
        return [{**out, "model_s": seconds, "batch_size": len(samples)} for out in outputs]

    def _materialise(self, sample: dict[str, Any], stack: contextlib.ExitStack) -> dict[str, Any]:
        """A checked video travels as bytes; a model that decodes video reads it from a file of this replica."""
        if sample.get("video_bytes") is None:
            return sample
        path = os.path.join(self.tmp, f"{uuid.uuid4().hex}{sample.get('suffix') or '.mp4'}")
        with open(path, "wb") as f:
            f.write(sample["video_bytes"])
        stack.callback(lambda: os.path.exists(path) and os.unlink(path))
        return {"sample_id": os.path.basename(path), "video_uri": path}

    # The forward pass runs on the replica's event loop, blocking it: requests that arrive meanwhile wait in
    # Ray's queue and are all enqueued as soon as it returns, so the next batch takes them together. (Run in a
    # thread, the pass would hold the GIL against the loop and requests would trickle in one by one.)
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _batched(self, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._run(samples)

    async def predict(self, sample: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        if self.batching.enabled:
            out = await self._batched(sample)
        else:
            (out,) = self._run([sample])
        return {**out, "model_id": self.predictor.model_id,
                "queue_s": round(time.perf_counter() - t0 - out["model_s"], 4)}  # fmt: skip

    def __del__(self):
        with contextlib.suppress(Exception):
            self.predictor.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
