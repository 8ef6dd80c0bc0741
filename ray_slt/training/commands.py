"""`ray-slt train` (registered with ray_slt.cli.register): any stage, on Ray Train."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ray_slt.cli import register

TRAIN_DESCRIPTION = """\
Train a model on Ray Train (DDP or DeepSpeed ZeRO-2/3; CPU with gloo, GPUs with nccl) from a config of
kind 'train' plus key=value overrides. Its stage (pretrain, sft, text2gloss, vlm, grpo, islr, hali, ...) names
the task, the recipe that trains it and the evaluation protocol whose selection metric picks the best checkpoint
(dev BLEU-4 for translators). The run lives under {trainer.storage}/{trainer.name} (local or s3://):
checkpoints (model/ with safetensors + JSON, per-rank optimizer state), metrics/train.jsonl|csv and
metrics/dev.jsonl|csv (learning curves), dev predictions, run.json (best checkpoint, throughput). Running the
same config again resumes from the run's latest checkpoint.

examples:
  ray-slt train conf/train/synthetic_tiny.yaml trainer.num_workers=2
  ray-slt train conf/train/phoenix_gloss2text.yaml optim.epochs=1 trainer.backend=deepspeed \\
      trainer.deepspeed=conf/deepspeed/zero2.json
  ray-slt train conf/train/sft_qwen3_8b_cluster.yaml --address auto
"""


def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config of kind 'train' (local or s3://)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local Ray)")


def init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address=address, include_dashboard=False if address == "local" else None, log_to_driver=True)


def _run_train(args: argparse.Namespace) -> Any:
    from ray_slt.config import load_config
    from ray_slt.errors import ConfigError
    from ray_slt.training.config import TrainConfig

    cfg = load_config(args.config, args.overrides)
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"{args.config}: a config of kind 'train' is needed, not {cfg.kind!r}")
    from ray_slt.training.run import preflight, run_training

    preflight(cfg)  # bad data or storage fails here, before Ray starts
    init_ray(args.address)
    return run_training(cfg)


def _render_train(s: dict) -> str:
    lines = [
        f"run: {s['run_dir']} ({s['stage']}, {s['num_workers']} x {s['backend']}, config {s['config_hash']})",
        f"steps: {s['steps']}/{s['total_steps']}, samples: {s['samples']}, "
        f"train samples/s: {s['train_samples_per_s'] or 0:.1f}",
    ]
    best = s.get("best") or {}
    key = (s.get("selection") or {}).get("metric", "dev_bleu4")
    if best.get(key) is not None:
        lines.append(f"best on {key}: {best[key]:.2f} at step {best['step']}: {best['model']}")
    elif best:
        lines.append(f"latest model: {best.get('model')}")
    lines.append(f"curves: {s['curves']['train']}, {s['curves']['dev']}")
    return "\n".join(lines)


register("train", "train a model on Ray Train (DDP / DeepSpeed; supervised or GRPO)", _configure_train, _run_train,
         _render_train, description=TRAIN_DESCRIPTION)  # fmt: skip


def _configure_average(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a finished run directory (local or s3://), as `ray-slt train` wrote it")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--last", type=int, metavar="K", help="average the K newest checkpoints (default 3)")
    which.add_argument("--best", type=int, metavar="K",
                       help="average the K best checkpoints on the run's dev selection metric")  # fmt: skip
    p.add_argument("--out", help="where to write (default RUN/averaged-{last|best}K)")


def _run_average(args: argparse.Namespace) -> Any:
    from ray_slt.training.average import average_run

    by, k = ("best", args.best) if args.best is not None else ("last", args.last or 3)
    return average_run(args.run, k=k, by=by, out=args.out)


def _render_average(r: dict) -> str:
    return (f"averaged the {r['by']} {r['k']} checkpoints (steps {', '.join(map(str, r['steps']))}) into {r['out']}\n"
            f"evaluate it: ray-slt eval {r['out']} --split dev")  # fmt: skip


register("average", "average the weights of a run's last or best K checkpoints", _configure_average, _run_average,
         _render_average, description="""\
Average the weights of a run's last K checkpoints (or its K best on the dev selection metric; never test) into
RUN/averaged-{last|best}K: a checkpoint directory of the run (model/ + train_state.json) that `ray-slt eval` and
`ray-slt serve` take like any other. The run must keep K checkpoints (trainer.num_to_keep >= K).

examples:
  ray-slt average runs/phoenix_gloss2text --last 3
  ray-slt eval runs/phoenix_gloss2text/averaged-last3 --split dev""")  # fmt: skip
