"""`ray-slt` subcommands of the training stage (registered with ray_slt.cli.register): ``train`` and ``eval``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ray_slt.cli import register

TRAIN_DESCRIPTION = """\
Train a translator on Ray Train (DDP or DeepSpeed ZeRO-2/3; CPU with gloo, GPUs with nccl) from a config of
kind 'train' plus key=value overrides. The run lives under {trainer.storage}/{trainer.name} (local or s3://):
checkpoints (model/ with safetensors + PEFT adapter, per-rank optimizer state), metrics/train.jsonl|csv and
metrics/dev.jsonl|csv (learning curves), dev predictions, run.json (best checkpoint on dev BLEU-4).
Running the same config again resumes from the run's latest checkpoint.

examples:
  ray-slt train conf/train_synthetic_tiny.yaml trainer.num_workers=2
  ray-slt train conf/train_phoenix_gloss2text.yaml optim.epochs=1 trainer.backend=deepspeed \\
      trainer.deepspeed=conf/deepspeed_zero2.json
  ray-slt train conf/train_sft_qwen3_8b_cluster.yaml --address auto
"""

EVAL_DESCRIPTION = """\
Translate a split with a checkpoint and score it with ray_slt.eval.metrics (BLEU-1..4 with the sacrebleu
signature, ROUGE-L, chrF; TSR/PGER with --semantic). CHECKPOINT is a run directory (its best checkpoint on dev
BLEU-4), a checkpoint directory (checkpoint_*/) or a model directory. Writes predictions.jsonl,
hypotheses.txt, references.txt and metrics.json (scores, signatures, config hash, checkpoint id, split,
number of samples, decoding settings) to --out (default: eval/SPLIT inside the checkpoint used, printed).
Decoding is deterministic.

examples:
  ray-slt eval runs/train_synthetic_tiny --split test
  ray-slt eval runs/x/checkpoint_e010_s0001000 --split dev --data runs/phoenix14t/manifest.parquet --json
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
    from ray_slt.training.run import run_training

    init_ray(args.address)
    return run_training(cfg)


def _render_train(s: dict) -> str:
    lines = [
        f"run: {s['run_dir']} ({s['stage']}, {s['num_workers']} x {s['backend']}, config {s['config_hash']})",
        f"steps: {s['steps']}/{s['total_steps']}, samples: {s['samples']}, "
        f"train samples/s: {s['train_samples_per_s'] or 0:.1f}",
    ]
    best = s.get("best") or {}
    if best.get("dev_bleu4") is not None:
        lines.append(f"best on dev BLEU-4: {best['dev_bleu4']:.2f} at step {best['step']}: {best['model']}")
    elif best:
        lines.append(f"latest model: {best.get('model')}")
    lines.append(f"curves: {s['curves']['train']}, {s['curves']['dev']}")
    return "\n".join(lines)


def _configure_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run directory, checkpoint directory or model directory (local or s3://)")
    p.add_argument("--split", default="dev", help="split to translate (default dev)")
    p.add_argument("--data", help="feature store or manifest .parquet (default: the training config's data)")
    p.add_argument("--out", help="output directory (default: eval/SPLIT inside the checkpoint used)")
    p.add_argument("--num-beams", type=int, help="beam width (default: the model config's; 1 = greedy)")
    p.add_argument("--max-new-tokens", type=int, help="default: the model config's")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lang", help="spoken language of the references for BLEU tokenization (default: the data's)")
    p.add_argument("--semantic", action="store_true", help="also TSR and PGER (needs the embedder and HanTa)")
    p.add_argument("--embedder", help="sentence-transformers model id or directory for TSR")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _run_eval(args: argparse.Namespace) -> Any:
    from ray_slt.errors import RaySltError
    from ray_slt.training.evaluate import evaluate

    for name in ("num_beams", "max_new_tokens", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise RaySltError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    return evaluate(
        args.checkpoint,
        split=args.split,
        data=args.data,
        out=args.out,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        lang=args.lang,
        semantic=args.semantic,
        embedder=args.embedder,
        device=args.device,
    )


def _render_eval(r: dict) -> str:
    names = [("BLEU-1", "bleu1"), ("BLEU-2", "bleu2"), ("BLEU-3", "bleu3"), ("BLEU-4", "bleu4")]
    names += [("ROUGE-L", "rouge_l"), ("chrF", "chrf")]
    names += [(n, k) for n, k in (("TSR", "tsr"), ("PGER", "pger")) if k in r]
    lines = [f"{r['split']}: {r['n_samples']} samples, checkpoint {r['checkpoint']} (id {r['checkpoint_id']})"]
    lines += [f"{name:<8} {r[key]:7.2f}" for name, key in names]
    lines.append(f"BLEU signature: {r['bleu_signature']}")
    lines.append(f"metrics: {r['metrics_file']}, predictions: {r['predictions']}")
    return "\n".join(lines)


register("train", "train a translator on Ray Train (DDP / DeepSpeed)", _configure_train, _run_train, _render_train,
         description=TRAIN_DESCRIPTION)  # fmt: skip
register("eval", "evaluate a checkpoint on a split: predictions + metrics.json", _configure_eval, _run_eval,
         _render_eval, description=EVAL_DESCRIPTION)  # fmt: skip
