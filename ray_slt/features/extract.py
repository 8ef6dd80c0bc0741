"""``extract``: manifest -> poses, 77-point keypoints, hand/face crops and DINOv2 features, on Ray Data.

One streaming Ray Data pipeline::

    manifest rows ─▶ [pose actors, CPU]   decode ─▶ MediaPipe pose (both in the actor's child process, with
                                          deadlines) ─▶ layout ─▶ boxes/crops ─▶ .pose written
                  ─▶ [visual actors, GPU when the cluster has GPUs, else CPU]  DINOv2 on the crops (optional)
                  ─▶ [writer actors]      Parquet shard + error shard per batch of rows
    driver: progress, then index.parquet, errors.parquet, provenance.json and runs/{run_id}.json

Actor pools are sized by ``workers.*.min_size``/``max_size`` (an autoscaling cluster grows and shrinks them);
``max_size: null`` means as many as the cluster has CPUs (pose) or GPUs (visual) when the run starts.

Resumable: before starting, the store is scanned and every sample that already has a valid output (a shard row
with the same ``extract_hash`` and its .pose present) is skipped; everything else (including earlier errors)
is retried. Outputs are written atomically, so a killed worker or driver leaves nothing a re-run would trust.

A sample that cannot be extracted (unreadable, truncated or zero-frame video, invalid metadata, no person)
becomes an error record ``(sample_id, stage, reason)``; the run always finishes and returns a summary.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections import Counter
from importlib import metadata
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from ray_slt import storage
from ray_slt.config import Schema, config_dict, config_hash
from ray_slt.errors import ConfigError, RaySltError
from ray_slt.features import store
from ray_slt.features.pipeline import actor_pool, batch_rows, rows_dataset
from ray_slt.features.sampling import DEFAULT_MAX_FRAMES, SampleError, Sampling, parse_sampling, resolve_span

log = logging.getLogger("ray_slt.extract")

EXTRACTOR = "ray_slt.features.extract"
# Bump when the extraction code changes what it writes for the same settings (part of extract_hash).
EXTRACTOR_REVISION = 1


# ------------------------------------------------------------------------------------------------ config


class FramesConfig(Schema):
    """Which frames are kept: ``all`` (capped at ``max_frames``) or ``uniform[:N]`` (Eq. 1, N = 64)."""

    sampling: str = "all"
    max_frames: int = Field(DEFAULT_MAX_FRAMES, ge=1)
    overflow: Literal["uniform", "truncate"] = "uniform"

    @field_validator("sampling")
    @classmethod
    def _check(cls, v: str) -> str:
        return parse_sampling(v).spec if v.strip() != "all" else "all"

    def build(self) -> Sampling:
        return parse_sampling(self.sampling, self.max_frames, self.overflow)


class DecodeConfig(Schema):
    max_side: int | None = Field(1280, ge=64)  # larger frames are scaled down (by the decoder)
    bbox_margin: float = Field(0.1, ge=0.0, le=2.0)  # grow the manifest's signer bbox by this fraction
    max_missing: float = Field(0.05, ge=0.0, le=1.0)  # tolerated shortfall of decodable frames (truncation)
    timeout_s: float = Field(120.0, gt=0)  # per-sample decoding deadline
    isolate: bool = True  # decode (and MediaPipe pose) in a child process: a hang or crash costs one sample
    default_fps: float = Field(25.0, gt=0)  # for frame-image folders whose manifest row has no fps


class MediaPipeOptions(Schema):
    model_complexity: Literal[1] = 1  # the only one whose model ships in the mediapipe 0.10.14 wheel
    static_image_mode: bool = False
    smooth_landmarks: bool = True
    refine_face_landmarks: bool = False
    min_detection_confidence: float = Field(0.5, ge=0.0, le=1.0)
    min_tracking_confidence: float = Field(0.5, ge=0.0, le=1.0)


class MMPoseOptions(Schema):
    config: str | None = None
    checkpoint: str | None = None
    det_config: str | None = None
    det_checkpoint: str | None = None
    device: str = "cuda:0"
    det_score: float = 0.5
    det_nms: float = 0.3
    min_score: float = 0.3


class PoseConfig(Schema):
    backend: Literal["mediapipe", "mmpose", "none"] = "mediapipe"  # none: use the manifest's pose_uri
    mediapipe: MediaPipeOptions = MediaPipeOptions()
    mmpose: MMPoseOptions = MMPoseOptions()
    min_confidence: float | None = None  # layout threshold; None: 0 for Holistic, 0.3 for COCO-WholeBody
    timeout_s: float = Field(600.0, gt=0)  # per-sample deadline of MediaPipe pose in the decoder's child

    def options(self) -> dict[str, Any]:
        if self.backend == "mediapipe":
            return self.mediapipe.model_dump()
        if self.backend == "mmpose":
            return self.mmpose.model_dump()
        return {}


class FeaturesConfig(Schema):
    kind: Literal["none", "dinov2"] = "none"
    model: str = "facebook/dinov2-base"  # hub id or local/s3 directory (safetensors)
    revision: str | None = None
    crop_size: int = Field(224, ge=14)
    device: str = "auto"  # auto: cuda in GPU actors, else cpu
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(64, ge=1)  # crops per forward pass
    samples_per_call: int = Field(4, ge=1)  # samples per visual actor call


class PoolConfig(Schema):
    min_size: int = Field(1, ge=1)
    max_size: int | None = Field(None, ge=1)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float | None = Field(None, ge=0)  # visual pool: None = 1 when the cluster has GPUs, else 0
    # Pose pool: pin each 1-CPU actor to a CPU of its own (MediaPipe processes sharing cores unpinned lose ~20%).
    pin_cpu: bool = True
    # Batches sent to one actor before it asks for more: 2 hides Ray Data's dispatch latency (1 left each pose actor
    # idle ~0.16 s between samples, ~5% on 2 cores); more would leave queued work on a busy actor at the run's end.
    in_flight: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _sizes(self) -> PoolConfig:
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(f"max_size {self.max_size} is below min_size {self.min_size}")
        return self


class WorkersConfig(Schema):
    pose: PoolConfig = PoolConfig()
    visual: PoolConfig = PoolConfig(num_cpus=1.0)
    # Shard writers are actors, not tasks: a task that needs a new worker process pays its start (~1.5 CPU-s) on
    # CPUs the pose actors are using, and Ray ends idle extra workers again a second later.
    writers: int = Field(1, ge=1)
    writer_cpus: float = Field(0.0, ge=0)


class OutputConfig(Schema):
    shard_rows: int = Field(64, ge=1)  # samples per Parquet shard (and per durable write)


class ExtractConfig(Schema):
    """Settings of ``ray-slt extract`` / ``jobs/extract.py`` (``conf/extract/default.yaml``)."""

    kind: Literal["extract"] = "extract"
    manifest: str | None = None
    out: str | None = None
    splits: list[str] | None = None
    limit: int | None = Field(None, ge=1)
    media_root: str | None = None  # when set, every media path must lie under it
    ray_address: str | None = None  # None: the job's cluster (RAY_ADDRESS) or a local Ray
    progress: bool = True
    frames: FramesConfig = FramesConfig()
    decode: DecodeConfig = DecodeConfig()
    pose: PoseConfig = PoseConfig()
    features: FeaturesConfig = FeaturesConfig()
    workers: WorkersConfig = WorkersConfig()
    output: OutputConfig = OutputConfig()

    def output_settings(self) -> dict[str, Any]:
        """Every setting that changes what is written (hashed into ``extract_hash``)."""
        settings = {
            "format": store.FORMAT,
            "extractor_revision": EXTRACTOR_REVISION,
            "frames": self.frames.model_dump(),
            "decode": {k: getattr(self.decode, k) for k in ("max_side", "bbox_margin", "max_missing", "default_fps")},
            "pose": {
                "backend": self.pose.backend,
                "options": self.pose.options(),
                "min_confidence": self.pose.min_confidence,
            },
            "features": None,
        }
        if self.features.kind != "none":
            settings["features"] = {
                k: getattr(self.features, k) for k in ("kind", "model", "revision", "crop_size", "dtype")
            }
        return settings


def extract_hash(cfg: ExtractConfig) -> str:
    return config_hash(cfg.output_settings())


# ---------------------------------------------------------------------------------------- per sample

STAGE_EXTRA = [
    pa.field("status", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("uri", pa.string()),
    pa.field("decode_s", pa.float64()),
    pa.field("pose_s", pa.float64()),
    pa.field("crops_s", pa.float64()),
    pa.field("visual_s", pa.float64()),
    pa.field("crops", pa.large_binary()),
    pa.field("crops_shape", pa.list_(pa.int32())),
]
STAGE_SCHEMA = pa.schema(list(store.SHARD_SCHEMA) + STAGE_EXTRA)


class SampleProcessor:
    """Extracts one manifest row at a time: the body of a pose actor, usable in-process too."""

    def __init__(self, cfg: ExtractConfig, out: str, run_id: str, manifest_dir: str | None = None):
        self.cfg = cfg
        self.out = out
        self.run_id = run_id
        self.manifest_dir = manifest_dir
        self.hash = extract_hash(cfg)
        self.sampling = cfg.frames.build()
        self.want_crops = cfg.features.kind != "none"
        self._estimator = None
        self._description: tuple[str, list] | None = None
        from ray_slt.features.video import Decoder

        self.decoder = Decoder(timeout_s=cfg.decode.timeout_s, isolated=cfg.decode.isolate)

    @property
    def estimator(self):
        if self._estimator is None:
            from ray_slt.features.pose import make_estimator

            os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging
            self._estimator = make_estimator(self.cfg.pose.backend, self.cfg.pose.options())
        return self._estimator

    def pose_description(self) -> tuple[str, list]:
        """The estimator's name and pose-format components. When the decoder child runs the estimator, the child
        says (this process then never imports MediaPipe); a missing backend raises :class:`RaySltError`."""
        if self._description is None:
            spec = self._decoder_pose()
            if spec is None:
                est = self.estimator
                self._description = (est.name, est.components())
            else:
                try:
                    self._description = self.decoder.describe(spec, timeout_s=self.cfg.pose.timeout_s)
                except SampleError as e:
                    raise RaySltError(e.reason) from None
        return self._description

    def close(self) -> None:
        self.decoder.close()
        if self._estimator is not None:
            self._estimator.close()

    # -------------------------------------------------------------------------------------- helpers

    def _media(self, uri: str | None) -> str | None:
        from ray_slt.features.video import media_uri

        return media_uri(uri, self.manifest_dir, self.cfg.media_root)

    def _base(self, row: dict) -> dict:
        out = {k: None for k in STAGE_SCHEMA.names}
        for k in ("sample_id", "dataset", "split", "sign_language", "spoken_language", "text", "gloss", "signer"):
            out[k] = row.get(k)
        out.update(extract_hash=self.hash, run_id=self.run_id, decode_s=0.0, pose_s=0.0, crops_s=0.0, visual_s=0.0)
        return out

    def _error(self, out: dict, stage: str, reason: str, uri: str | None) -> dict:
        keep = {k: out[k] for k in ("sample_id", "dataset", "split", "run_id", "decode_s", "pose_s", "crops_s")}
        row = {k: None for k in STAGE_SCHEMA.names}
        row.update(
            keep, status="error", stage=stage, reason=" ".join(str(reason).split())[:1000], uri=uri, visual_s=0.0
        )
        return row

    # ------------------------------------------------------------------------------------------ main

    def process(self, row: dict) -> dict:
        out = self._base(row)
        self._stage, uri = "metadata", None
        try:
            video = self._media(row.get("video_uri"))
            shipped = self._media(row.get("pose_uri"))
            uri = video or shipped
            if video is None and shipped is None:
                raise SampleError("metadata", "the row has neither video_uri nor pose_uri")
            if self.cfg.pose.backend == "none" or video is None:
                if shipped is None:
                    raise SampleError("pose", "pose estimation is off (pose.backend=none) and the row has no pose_uri")
                uri = shipped
                return self._from_shipped_pose(row, out, shipped, video)
            return self._from_video(row, out, video)
        except SampleError as e:
            return self._error(out, e.stage, e.reason, uri)
        except RaySltError as e:
            return self._error(out, self._stage, str(e), uri)
        except Exception as e:  # one hostile sample must not stop the run: record it, keep the traceback in logs
            log.warning("sample %s failed:\n%s", row.get("sample_id"), traceback.format_exc())
            return self._error(out, self._stage, f"{type(e).__name__}: {e}", uri)

    def _decoder_pose(self) -> dict | None:
        """The pose spec the decoder runs right after decoding, or None (estimation stays with this object).

        MediaPipe (CPU) runs where the decoder runs: in its child process unless ``decode.isolate`` is off, where
        a hang or crash costs one sample and Holistic runs faster than in a Ray worker process itself (see
        :mod:`ray_slt.features.video`). GPU backends stay here, loaded once per actor.
        """
        if self.cfg.pose.backend == "mediapipe":
            return {"backend": "mediapipe", "options": self.cfg.pose.options()}
        return None

    def _run_decoder(self, req: dict, pose: dict | None):
        if pose is None:
            return self.decoder.decode(req), None
        clip, data, conf, seconds = self.decoder.decode_pose(
            req, pose, return_frames=self.want_crops, pose_timeout_s=self.cfg.pose.timeout_s
        )
        return clip, (data, conf, seconds)

    def _decode(self, row: dict, video: str, out: dict, pose: dict | None = None):
        """Decode the sample's kept frames; with ``pose``, the decoder estimates poses too and this returns
        ``(clip, (points, confidences, seconds))``, else ``(clip, None)``."""
        from ray_slt.features.video import decode_sample

        self._stage = "decode"
        t0 = time.perf_counter()
        clip, estimated, out["input_kind"] = decode_sample(
            row, video, self.sampling, self.cfg.decode, lambda req: self._run_decoder(req, pose)
        )
        out["decode_s"] = time.perf_counter() - t0 - (estimated[2] if estimated else 0.0)
        return clip, estimated

    def _from_video(self, row: dict, out: dict, video: str) -> dict:
        from ray_slt.data.poses import build_pose, pose_bytes
        from ray_slt.features.layouts import layout77_from_arrays

        clip, estimated = self._decode(row, video, out, self._decoder_pose())
        self._stage = "pose"
        t0 = time.perf_counter()
        name, components = self.pose_description()
        if estimated is None:
            data, conf = self.estimator.estimate(clip.frames)
        else:
            data, conf, seconds = estimated
            t0 -= seconds
        found = conf > 0
        data[..., :2] = np.where(found[..., None], clip.to_source(data[..., :2]), 0.0)
        span_len = clip.span[1] - clip.span[0]
        fps = float(clip.fps or self.cfg.decode.default_fps)
        pose = build_pose(
            components, data, conf, _kept_fps(fps, len(clip.frame_indices), span_len), clip.width, clip.height
        )
        try:
            layout = layout77_from_arrays(data, conf, pose.header, self.cfg.pose.min_confidence)
        except SampleError as e:
            raise SampleError("pose", f"no person detected in {len(clip.frame_indices)} frames ({e.reason})") from None
        out["pose_s"] = time.perf_counter() - t0
        crops = self._boxes_and_crops(out, layout, clip)
        return self._finish(
            row, out, name, layout, clip.frame_indices, clip.span, fps, clip.width, clip.height, pose_bytes(pose), crops
        )

    def _from_shipped_pose(self, row: dict, out: dict, shipped: str, video: str | None) -> dict:
        from ray_slt.data.poses import build_pose, parse_pose, pose_bytes
        from ray_slt.features.layouts import layout77_from_arrays

        self._stage = "pose"
        t0 = time.perf_counter()
        raw = storage.read_bytes(shipped)
        pose = parse_pose(raw, shipped)
        data_all = np.ma.getdata(pose.body.data)
        if data_all.ndim != 4 or data_all.shape[0] == 0:
            raise SampleError("pose", "the shipped pose has zero frames")
        fps = float(pose.body.fps or row.get("fps") or self.cfg.decode.default_fps)
        total = data_all.shape[0]
        start, end = resolve_span(
            total, row.get("start_frame"), row.get("end_frame"), row.get("start_s"), row.get("end_s"), fps
        )
        rel = self.sampling.select(end - start)
        idx = rel + start
        data = np.array(data_all[idx, 0], dtype=np.float32)
        conf = np.array(np.asarray(pose.body.confidence)[idx, 0], dtype=np.float32)
        layout = layout77_from_arrays(data, conf, pose.header, self.cfg.pose.min_confidence)
        width, height = int(pose.header.dimensions.width), int(pose.header.dimensions.height)
        if start == 0 and end == total and len(rel) == total:
            blob = raw  # the shipped file, byte for byte
        else:
            sub = build_pose(pose.header.components, data, conf, _kept_fps(fps, len(rel), end - start), width, height)
            blob = pose_bytes(sub)
        out["input_kind"] = "pose"
        out["pose_s"] = time.perf_counter() - t0
        clip = None
        if self.want_crops and video is not None:
            clip, _ = self._decode(row, video, out)
            if clip.span != (start, end) or not np.array_equal(clip.frame_indices, rel):
                raise SampleError(
                    "crops", f"video frames {clip.span} do not match the shipped pose's frames {(start, end)}"
                )
        crops = self._boxes_and_crops(out, layout, clip)
        return self._finish(row, out, "shipped", layout, rel, (start, end), fps, width, height, blob, crops)

    def _boxes_and_crops(self, out: dict, layout, clip) -> np.ndarray | None:
        from ray_slt.features.crops import crop_parts, part_boxes

        self._stage = "crops"
        t0 = time.perf_counter()
        boxes, source = part_boxes(layout.pixels, layout.valid, layout.scale)
        out["boxes"] = boxes.ravel()
        out["box_source"] = source.ravel()
        crops = None
        if self.want_crops and clip is not None:
            crops = crop_parts(clip.frames, clip.to_frames(boxes), self.cfg.features.crop_size)
        out["crops_s"] = time.perf_counter() - t0
        return crops

    def _finish(self, row, out, estimator, layout, rel, span, fps, width, height, blob, crops) -> dict:
        self._stage = "write"
        rel_path = store.pose_relpath(row["sample_id"])
        storage.write_bytes(storage.join(self.out, *rel_path.split("/")), blob)
        t = len(rel)
        out.update(
            status="ok",
            pose_file=rel_path,
            pose_estimator=estimator,
            layout_source=layout.source,
            fps=fps,
            width=width,
            height=height,
            span_start=int(span[0]),
            span_end=int(span[1]),
            num_frames=t,
            frame_indices=np.asarray(rel, dtype=np.int32),
            keypoints=layout.coords.ravel(),
            keypoints_valid=layout.valid.ravel(),
            keypoints_confidence=layout.confidence.ravel(),
            norm_center=layout.center.astype(np.float32),
            norm_scale=float(layout.scale),
        )
        if crops is not None:
            out["crops"] = np.ascontiguousarray(crops).tobytes()
            out["crops_shape"] = list(crops.shape)
        return out


def _kept_fps(fps: float, kept: int, span: int) -> float:
    """Frames per second of the kept frames (the source's when all are kept): durations stay right."""
    return fps if kept >= span else fps * kept / span


# ------------------------------------------------------------------------------------------ Ray stages


_CPU_LOCK = None  # the lock file of the CPU this process is pinned to (held for the process's life)


def pin_to_free_cpu(folder: str | None = None) -> int | None:
    """Pin this process to one CPU that no other pinned ray_slt worker of this node holds; return it (or None
    when every allowed CPU is taken, and the process stays unpinned).

    Ray schedules CPU *counts*, not cores, and leaves placement to the OS; two MediaPipe Holistic processes on
    two unpinned cores run ~20% slower together than pinned to one core each (their internal threads contend).
    One lock file per CPU in the temp directory coordinates the workers of a node; the kernel releases a lock
    when its process dies, so a killed worker frees its CPU.
    """
    global _CPU_LOCK
    import fcntl
    import tempfile

    if _CPU_LOCK is not None or not hasattr(os, "sched_setaffinity"):
        return None
    folder = folder or os.path.join(tempfile.gettempdir(), "ray_slt_cpu_locks")
    os.makedirs(folder, exist_ok=True)
    for cpu in sorted(os.sched_getaffinity(0)):
        f = open(os.path.join(folder, f"cpu{cpu}.lock"), "a+")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        os.sched_setaffinity(0, {cpu})
        _CPU_LOCK = f
        return cpu
    return None


class PoseStage:
    """Ray Data actor: manifest rows (JSON) -> extracted rows (one decoder child, and its estimator, per actor)."""

    def __init__(self, config: dict, out: str, run_id: str, manifest_dir: str | None):
        cfg = ExtractConfig.model_validate(config)
        self.cpu = pin_to_free_cpu() if cfg.workers.pose.pin_cpu and cfg.workers.pose.num_cpus == 1 else None
        self.proc = SampleProcessor(cfg, out, run_id, manifest_dir)
        self.proc.decoder.start()  # after pinning: the decoder child shares the actor's CPU
        if self.proc.cfg.pose.backend != "none":
            self.proc.pose_description()  # a missing backend fails the job now, not every sample

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [self.proc.process(r) for r in batch_rows(batch)]
        return pa.Table.from_pylist(rows, schema=STAGE_SCHEMA)


class VisualStage:
    """Ray Data actor: adds DINOv2 face/hand features to rows that carry crops, and drops the crops."""

    def __init__(self, config: dict):
        from ray_slt.features.visual import Dinov2Embedder

        f = ExtractConfig.model_validate(config).features
        self.embedder = Dinov2Embedder(f.model, f.revision, f.device, f.dtype, f.batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for row in rows:
            crops = row.pop("crops", None)
            shape = row.pop("crops_shape", None)
            row["crops"], row["crops_shape"] = None, None
            if row["status"] != "ok" or crops is None:
                continue
            t0 = time.perf_counter()
            arr = np.frombuffer(crops, dtype=np.uint8).reshape(shape)
            t, parts = arr.shape[:2]
            feats = self.embedder.embed(arr.reshape(t * parts, *arr.shape[2:])).reshape(t, parts, -1)
            source = np.asarray(row["box_source"], dtype=np.int8).reshape(t, parts)
            feats[source < 0] = 0.0  # no box: no feature (box_source says so)
            for j, part in enumerate(store.FEATURE_PARTS):
                row[f"{part}_features"] = feats[:, j].ravel()
            row["feature_dim"] = int(feats.shape[-1])
            row["features_model"] = self.embedder.model_id
            row["visual_s"] = time.perf_counter() - t0
        return pa.Table.from_pylist(rows, schema=STAGE_SCHEMA)


SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string()),
        pa.field("status", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("num_frames", pa.int32()),
        pa.field("decode_s", pa.float64()),
        pa.field("pose_s", pa.float64()),
        pa.field("crops_s", pa.float64()),
        pa.field("visual_s", pa.float64()),
        pa.field("shard", pa.string()),
    ]
)


class ShardWriter:
    """Ray Data actor: writes each batch with :func:`write_batch` (a long-lived process, see ``workers.writers``)."""

    def __init__(self, out: str, run_id: str, provenance: dict):
        self.out, self.run_id, self.provenance = out, run_id, provenance

    def __call__(self, batch: pa.Table) -> pa.Table:
        return write_batch(batch, self.out, self.run_id, self.provenance)


def write_batch(batch: pa.Table, out: str, run_id: str, provenance: dict) -> pa.Table:
    """Write the ok rows as a shard and the error rows as an error shard; return summaries."""
    status = batch.column("status").to_pylist()
    ok = batch.filter(pa.array([s == "ok" for s in status]))
    bad = batch.filter(pa.array([s != "ok" for s in status]))
    shard = store.write_shard(out, ok, run_id, provenance) if ok.num_rows else None
    if bad.num_rows:
        store.write_error_shard(out, bad, run_id)
    summary = batch.select([f.name for f in SUMMARY_SCHEMA if f.name != "shard"])
    shards = [shard if s == "ok" else None for s in status]
    return summary.append_column("shard", pa.array(shards, type=pa.string())).cast(SUMMARY_SCHEMA)


# ----------------------------------------------------------------------------------------------- driver


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def build_provenance(cfg: ExtractConfig, run_id: str) -> dict:
    dists = ["ray_slt", "ray", "numpy", "pyarrow", "pose-format", "decord", "av", "opencv-contrib-python"]
    if cfg.pose.backend == "mediapipe":
        dists.append("mediapipe")
    if cfg.pose.backend == "mmpose":
        dists += ["mmpose", "mmdet", "mmcv", "mmengine"]
    if cfg.features.kind != "none":
        dists += ["transformers", "torch", "safetensors"]
    estimator = {"none": "shipped", "mediapipe": "mediapipe-holistic", "mmpose": "mmpose-wholebody"}
    return {
        "format": store.FORMAT,
        "extractor": EXTRACTOR,
        "extractor_version": _version("ray_slt"),
        "extractor_revision": EXTRACTOR_REVISION,
        "extract_hash": extract_hash(cfg),
        "config_hash": config_hash(cfg),
        "pose": {"backend": cfg.pose.backend, "estimator": estimator[cfg.pose.backend], **cfg.pose.options()},
        "layout": "77 points: body 9, hands 21+21, mouth 8, face 18 (ray_slt.features.layouts)",
        "sampling": cfg.frames.build().spec,
        "frames": cfg.frames.model_dump(),
        "features": cfg.output_settings()["features"],
        "versions": {d: _version(d) for d in dists} | {"python": sys.version.split()[0]},
        "config": config_dict(cfg),
        "run_id": run_id,
    }


def _new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _pool_sizes(cfg: ExtractConfig, visual: bool) -> dict[str, Any]:
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0))
    w = cfg.workers
    visual_gpus = w.visual.num_gpus if w.visual.num_gpus is not None else (1.0 if gpus >= 1 else 0.0)
    reserve = w.visual.num_cpus * w.visual.min_size if visual else 0.0  # CPUs the visual actors need
    pose_max = w.pose.max_size or max(w.pose.min_size, int((cpus - reserve) // max(w.pose.num_cpus, 1e-9)))
    if visual_gpus > 0:
        visual_max = w.visual.max_size or max(w.visual.min_size, int(gpus // visual_gpus))
    else:
        visual_max = w.visual.max_size or w.visual.min_size
    return {
        "pose": (w.pose.min_size, max(pose_max, w.pose.min_size)),
        "visual": (w.visual.min_size, max(visual_max, w.visual.min_size)),
        "visual_gpus": visual_gpus,
        "cpus": cpus,
        "gpus": gpus,
    }


def run_extract(cfg: ExtractConfig, *, echo: bool = True) -> dict[str, Any]:
    """Run the extraction pipeline described by ``cfg``; returns the run summary (also in runs/{id}.json)."""
    import ray

    from ray_slt.data.manifest import filter_splits, read_manifest

    if not cfg.manifest or not cfg.out:
        raise ConfigError("extract needs a manifest and an output (--out / out=...)")
    if cfg.pose.backend == "mmpose" and not (cfg.pose.mmpose.config and cfg.pose.mmpose.checkpoint):
        raise ConfigError("pose.backend=mmpose needs pose.mmpose.config and pose.mmpose.checkpoint")
    out = storage.normalize(cfg.out)
    if cfg.features.kind == "dinov2":
        from ray_slt.features.visual import check_model_source

        check_model_source(cfg.features.model, cfg.features.revision)
    started = time.time()
    table = filter_splits(read_manifest(cfg.manifest), cfg.splits)
    rows = table.to_pylist()[: cfg.limit] if cfg.limit else table.to_pylist()
    run_id = _new_run_id()
    ehash = extract_hash(cfg)
    provenance = build_provenance(cfg, run_id)

    done_before = set(store.build_index(out, ehash).column("sample_id").to_pylist())
    wanted = {r["sample_id"] for r in rows}
    todo = [r for r in rows if r["sample_id"] not in done_before]
    _write_provenance(out, provenance, None)
    say = _printer(echo)
    say(
        f"extract: {len(rows)} samples in the manifest, {len(wanted & done_before)} already done, "
        f"{len(todo)} to extract -> {out}"
    )

    results: list[dict] = []
    sizes = None
    if todo:
        if not ray.is_initialized():
            ray.init(address=cfg.ray_address, ignore_reinit_error=True, log_to_driver=cfg.progress)
        visual = cfg.features.kind != "none"
        sizes = _pool_sizes(cfg, visual)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = cfg.progress
        manifest_dir = storage.parent(cfg.manifest)
        ds = rows_dataset(todo).map_batches(
            PoseStage,
            fn_constructor_kwargs={
                "config": config_dict(cfg),
                "out": out,
                "run_id": run_id,
                "manifest_dir": manifest_dir,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=actor_pool(*sizes["pose"], len(todo), cfg.workers.pose.in_flight),
            num_cpus=cfg.workers.pose.num_cpus,
        )
        if visual:
            ds = ds.map_batches(
                VisualStage,
                fn_constructor_kwargs={"config": config_dict(cfg)},
                batch_size=cfg.features.samples_per_call,
                batch_format="pyarrow",
                compute=actor_pool(*sizes["visual"], len(todo), cfg.workers.visual.in_flight),
                num_cpus=cfg.workers.visual.num_cpus,
                num_gpus=sizes["visual_gpus"],
            )
        ds = ds.map_batches(
            ShardWriter,
            fn_constructor_kwargs={"out": out, "run_id": run_id, "provenance": provenance},
            batch_size=cfg.output.shard_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=cfg.workers.writers),
            num_cpus=cfg.workers.writer_cpus,
        )
        progress = _Progress(len(todo), say)
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in batch.to_pylist():
                results.append(row)
                progress.update(row)
    index = store.build_index(out, ehash)
    store.write_table(out, store.INDEX_FILE, index)
    indexed = set(index.column("sample_id").to_pylist())
    errors = store.collect_errors(out, indexed)
    store.write_table(out, store.ERRORS_FILE, errors)
    summary = _summary(cfg, out, run_id, ehash, rows, wanted & done_before, results, index, errors, started, sizes)
    _write_provenance(out, provenance, summary)
    storage.write_text(storage.join(out, store.RUNS, f"{run_id}.json"), json.dumps(summary, indent=2))
    return summary


def _write_provenance(out: str, provenance: dict, summary: dict | None) -> None:
    path = storage.join(out, store.PROVENANCE_FILE)
    runs = []
    if storage.exists(path):
        try:
            old = json.loads(storage.read_text(path))
            runs = [r for r in old.get("runs", []) if r.get("run_id") != provenance["run_id"]]
        except (ValueError, RaySltError):
            runs = []
    entry = {"run_id": provenance["run_id"], "extract_hash": provenance["extract_hash"]}
    if summary is not None:
        entry.update({k: summary[k] for k in ("ok", "errors", "skipped", "wall_s")})
    data = {k: v for k, v in provenance.items() if k != "run_id"} | {"runs": [*runs, entry]}
    storage.write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def _printer(echo: bool):
    def say(msg: str) -> None:
        log.info(msg)
        if echo:
            print(msg, file=sys.stderr, flush=True)

    return say


class _Progress:
    def __init__(self, total: int, say):
        self.total, self.say = total, say
        self.done = self.ok = self.frames = 0
        self.t0 = self.last = time.time()

    def update(self, row: dict) -> None:
        self.done += 1
        if row["status"] == "ok":
            self.ok += 1
            self.frames += int(row["num_frames"] or 0)
        now = time.time()
        if now - self.last >= 10 or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            self.say(
                f"extract: {self.done}/{self.total} samples ({self.ok} ok, {self.done - self.ok} errors), "
                f"{rate:.2f} samples/s, {self.frames / max(now - self.t0, 1e-9):.1f} frames/s, ~{left:.0f}s left"
            )


def _summary(cfg, out, run_id, ehash, rows, skipped, results, index, errors, started, sizes) -> dict:
    wall = time.time() - started
    ok = [r for r in results if r["status"] == "ok"]
    bad = [r for r in results if r["status"] != "ok"]
    frames = sum(int(r["num_frames"] or 0) for r in ok)
    stage_s = {
        k: round(sum(float(r[f"{k}_s"] or 0.0) for r in results), 3) for k in ("decode", "pose", "crops", "visual")
    }
    return {
        "out": out,
        "run_id": run_id,
        "extract_hash": ehash,
        "samples": len(rows),
        "skipped": len(skipped),
        "processed": len(results),
        "ok": len(ok),
        "errors": len(bad),
        "errors_by_stage": dict(Counter(r["stage"] for r in bad)),
        # The first 100 (all of them are in errors.parquet).
        "error_records": [{k: r[k] for k in ("sample_id", "stage", "reason")} for r in bad[:100]],
        "frames": frames,
        "wall_s": round(wall, 3),
        "samples_per_s": round(len(results) / wall, 4) if wall > 0 else None,
        "frames_per_s": round(frames / wall, 3) if wall > 0 else None,
        "stage_s": stage_s,
        "pools": sizes,
        "index_samples": index.num_rows,
        "error_table_rows": errors.num_rows,
        "sampling": cfg.frames.build().spec,
        "pose_backend": cfg.pose.backend,
        "features": cfg.features.kind,
    }


def render_summary(s: dict) -> str:
    lines = [
        f"extract run {s['run_id']} -> {s['out']}",
        f"  samples: {s['samples']} in manifest, {s['skipped']} already done, {s['processed']} processed: "
        f"{s['ok']} ok, {s['errors']} errors",
        f"  frames: {s['frames']} ({s['sampling']}), {s['frames_per_s']} frames/s, {s['samples_per_s']} samples/s, "
        f"wall {s['wall_s']}s",
        "  stage time (s, summed over workers): " + ", ".join(f"{k} {v}" for k, v in s["stage_s"].items()),
        f"  index: {s['index_samples']} samples; errors table: {s['error_table_rows']} rows",
    ]
    for e in s["error_records"][:20]:
        lines.append(f"  error {e['sample_id']} [{e['stage']}]: {e['reason']}")
    if len(s["error_records"]) > 20:
        lines.append(f"  ... {len(s['error_records']) - 20} more in errors.parquet")
    return "\n".join(lines)
