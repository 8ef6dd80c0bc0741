"""`ray-slt` subcommands of the features stage (registered with ray_slt.cli.register)."""

from __future__ import annotations

import argparse
from typing import Any

from ray_slt.cli import register

DESCRIPTION = """\
Extract poses (.pose), the 77-point keypoint layout, hand/face boxes and optionally DINOv2 crop features
from every sample of a manifest, on Ray Data. Writes a feature store under --out (local or s3://):
index.parquet, shards/*.parquet, poses/*.pose, errors.parquet, provenance.json.
Re-running resumes: samples already extracted with the same settings are skipped.

Settings come from --config (a YAML of kind 'extract', e.g. conf/extract/default.yaml), then the flags below, then
--set key=value overrides (e.g. --set workers.pose.max_size=8 decode.timeout_s=60).

examples:
  ray-slt extract runs/wlasl/manifest.parquet --out runs/wlasl/features --frames uniform:64
  ray-slt extract s3://b/m.parquet --out s3://b/feat --features dinov2 --set features.model=/models/dinov2-base
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="manifest Parquet (local path or s3://)")
    p.add_argument("--out", required=True, help="feature store directory (local path or s3://)")
    p.add_argument("--config", help="YAML config of kind 'extract' (default: built-in defaults)")
    p.add_argument("--pose", choices=["mediapipe", "mmpose", "none"], help="pose backend (default mediapipe)")
    p.add_argument("--features", choices=["none", "dinov2"], help="visual features of the crops (default none)")
    p.add_argument("--frames", metavar="all|uniform:N", help="frame sampling (default all, capped at 300)")
    p.add_argument("--max-frames", type=int, help="cap of --frames all (default 300)")
    p.add_argument("--split", action="append", dest="splits", help="only these splits (repeatable)")
    p.add_argument("--limit", type=int, help="only the first N samples")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides", help="config overrides")


def to_config(args: argparse.Namespace):
    """The ExtractConfig an invocation means: file, then flags, then --set overrides."""
    from ray_slt.config import build_config, load_config

    overrides = []
    flags = {
        "pose.backend": args.pose,
        "features.kind": args.features,
        "frames.sampling": args.frames,
        "frames.max_frames": args.max_frames,
        "limit": args.limit,
        "ray_address": args.address,
    }
    overrides += [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.splits:
        overrides.append(f"splits=[{','.join(args.splits)}]")
    if args.no_progress:
        overrides.append("progress=false")
    overrides += list(args.overrides)
    if args.config:
        cfg = load_config(args.config, overrides)
    else:
        cfg = build_config({"kind": "extract"}, overrides, source="<flags>")
    # Paths go in as given (not through YAML parsing of an override).
    return cfg.model_copy(update={"manifest": args.manifest, "out": args.out})


def run(args: argparse.Namespace) -> Any:
    from ray_slt.features.extract import run_extract

    cfg = to_config(args)
    return run_extract(cfg, echo=not args.json)


def render(result: Any) -> str:
    from ray_slt.features.extract import render_summary

    return render_summary(result)


def failed(result: Any) -> str | None:
    from ray_slt.features.store import failure_reason

    return failure_reason(result)


register(
    "extract",
    "video -> pose, keypoints, crops and visual features on Ray Data",
    configure,
    run,
    render,
    description=DESCRIPTION,
    failed=failed,
)
