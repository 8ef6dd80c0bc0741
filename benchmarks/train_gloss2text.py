"""Gloss -> German translation on PHOENIX-2014T, trained from scratch on CPUs, and Ray Train's 1 vs 2 workers.

Run (from the repository root; reads ../shared/data/phoenix14t in place; about an hour on 2 cores):

    .venv/bin/python benchmarks/train_gloss2text.py [--train-minutes 35] [--cpus 2] [--out runs/bench_gloss2text]

What it does, in one run:

1. ``ray-slt prepare phoenix14t`` (the manifest: 7,096 train / 519 dev / 642 test sentences with glosses);
2. throughput: the same training config (conf/train/phoenix_gloss2text.yaml: gloss encoder -> projector ->
   tiny random Qwen3 with LoRA) for a fixed number of optimizer steps with 1 and then 2 Ray Train workers
   (DDP, 1 CPU each, the same per-worker batch), no evaluation; reports samples/s over the timed training
   steps (what ``train_samples_per_s`` of the run summary measures) and their ratio;
3. training: the config with as many epochs as fit in ``--train-minutes`` at the measured 2-worker speed
   (cosine schedule over them), dev evaluation every few epochs choosing the best checkpoint on dev BLEU-4;
4. evaluation of the best checkpoint with ``ray-slt eval`` on dev and test (beam 4): BLEU-1..4, ROUGE-L, chrF
   with the sacrebleu signature; the untrained starting model scored the same way on dev.

Writes ``benchmarks/results/train_gloss2text.json`` and ``.md``. Nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import phoenix_setup

REPO = phoenix_setup.REPO
CONF = REPO / "conf" / "train" / "phoenix_gloss2text.yaml"
RESULTS = REPO / "benchmarks" / "results"
TRAIN_SENTENCES = 7096
PUBLISHED = "Gloss2Text transformers trained from scratch on PHOENIX-2014T report about 24 BLEU-4 on test"


def load(name: str, manifest: str, out: str, *overrides: str):
    from ray_slt.config import load_config

    return load_config(
        str(CONF), [f"data.manifest={manifest}", f"trainer.storage={out}", f"trainer.name={name}", *overrides]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench_gloss2text")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--train-minutes", type=float, default=35.0, help="training time budget (sets the epochs)")
    p.add_argument("--epochs", type=int, help="train this many epochs instead (overrides --train-minutes)")
    p.add_argument("--throughput-steps", type=int, default=40)
    p.add_argument("--num-beams", type=int, default=4)
    args = p.parse_args(argv)
    out = str(Path(args.out).resolve())
    t_start = time.perf_counter()
    manifest = phoenix_setup.start(out, args.cpus)
    if manifest is None:
        return 2
    from ray_slt.eval.run import evaluate
    from ray_slt.training.run import run_training

    # 1. throughput, 1 vs 2 workers, same config and per-worker batch, fixed steps, no evaluation
    speed = {}
    for workers in (1, 2):
        cfg = load(f"throughput_{workers}w", manifest, out, f"trainer.num_workers={workers}",
                   f"optim.max_steps={args.throughput_steps}", "eval.every_epochs=0", "optim.epochs=1")  # fmt: skip
        s = run_training(cfg)
        speed[workers] = {"samples_per_s": s["train_samples_per_s"], "steps": s["steps"], "samples": s["samples"],
                          "train_time_s": s["train_time_s"]}  # fmt: skip
        print(f"{workers} worker(s): {s['train_samples_per_s']:.1f} samples/s", flush=True)
    ratio = speed[2]["samples_per_s"] / speed[1]["samples_per_s"]

    # 2. training within the time budget at the 2-worker speed
    epochs = args.epochs or max(
        1, min(40, math.floor(args.train_minutes * 60 * speed[2]["samples_per_s"] / TRAIN_SENTENCES))
    )
    cfg = load("train", manifest, out, "trainer.num_workers=2", f"optim.epochs={epochs}",
               f"eval.every_epochs={max(1, epochs // 4)}")  # fmt: skip
    t0 = time.perf_counter()
    summary = run_training(cfg)
    train_wall = time.perf_counter() - t0
    print(f"trained {epochs} epochs in {train_wall / 60:.1f} min; best dev BLEU-4 (greedy) "
          f"{summary['best']['dev_bleu4']:.2f} at step {summary['best']['step']}", flush=True)  # fmt: skip

    # 3. evaluation of the best checkpoint (and of the untrained start) with ray-slt eval's code
    run_dir = Path(summary["run_dir"])
    evals = {}
    for split in ("dev", "test"):
        evals[split] = evaluate(str(run_dir), split=split, predictor_options={"num_beams": args.num_beams},
                                batch_size=64, out=f"{out}/eval/{split}")  # fmt: skip
    init = next(p for p in run_dir.iterdir() if p.name.startswith("init-"))
    untrained = evaluate(str(init), split="dev", data=manifest, predictor_options={"num_beams": 1}, batch_size=64,
                         out=f"{out}/eval/untrained")  # fmt: skip
    keys = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf")
    result = {
        "benchmark": "gloss -> German text, PHOENIX-2014T, from scratch on CPU",
        "machine": phoenix_setup.machine(args.cpus),
        "config": str(CONF.relative_to(REPO)),
        "config_hash": summary["config_hash"],
        "model": "gloss encoder (2 layers, 256) -> MLP projector -> tiny random Qwen3 (3 layers, 256, BPE 3000) "
        "with LoRA r=64 on q/k/v/o/gate/up/down (the LM's own weights stay at their random init)",
        "epochs": epochs,
        "train_minutes_budget": args.train_minutes,
        "train_wall_s": round(train_wall, 1),
        "train_samples_per_s": summary["train_samples_per_s"],
        "best_step": summary["best"]["step"],
        "best_dev_bleu4_greedy_during_training": summary["best"]["dev_bleu4"],
        "num_beams": args.num_beams,
        "dev": {k: evals["dev"][k] for k in keys},
        "test": {k: evals["test"][k] for k in keys},
        "untrained_dev": {k: untrained[k] for k in keys},
        "bleu_signature": evals["test"]["bleu_signature"],
        "rouge_impl": evals["test"]["rouge_impl"],
        "checkpoint_id": evals["test"]["checkpoint_id"],
        "throughput": {
            "1_worker": speed[1],
            "2_workers": speed[2],
            "ratio_2_over_1": ratio,
            "steps": args.throughput_steps,
            "per_worker_batch": cfg.optim.batch_size,
            "cpus_per_worker": cfg.trainer.cpus_per_worker,
        },
        "published_reference": PUBLISHED,
        "total_wall_s": round(time.perf_counter() - t_start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_gloss2text.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / "train_gloss2text.md").write_text(render(result))
    print(render(result))
    return 0


def render(r: dict) -> str:
    rows = [("dev", r["dev"]), ("test", r["test"]), ("dev, untrained start", r["untrained_dev"])]
    t = r["throughput"]
    lines = [
        "# Gloss -> German text on PHOENIX-2014T, trained from scratch on CPUs",
        "",
        f"Model: {r['model']}. Config `{r['config']}` (hash {r['config_hash']}), {r['epochs']} epochs in "
        f"{r['train_wall_s'] / 60:.1f} min on {r['machine']['cpus']} CPUs (2 DDP workers), best checkpoint on dev "
        f"BLEU-4 at step {r['best_step']}; decoding: beam {r['num_beams']} (the untrained start: greedy).",
        "",
        "| split | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | ROUGE-L | chrF |",
        "|---|---|---|---|---|---|---|",
        *(f"| {name} | " + " | ".join(f"{s[k]:.2f}" for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf"))
          + " |" for name, s in rows),
        "",
        f"sacrebleu signature: `{r['bleu_signature']}`; ROUGE-L: {r['rouge_impl']}.",
        f"Reference point: {r['published_reference']}.",
        "",
        "## Ray Train: 1 vs 2 workers (same config, same per-worker batch, measured in this run)",
        "",
        "| workers | samples/s | steps | samples |",
        "|---|---|---|---|",
        f"| 1 | {t['1_worker']['samples_per_s']:.1f} | {t['1_worker']['steps']} | {t['1_worker']['samples']} |",
        f"| 2 | {t['2_workers']['samples_per_s']:.1f} | {t['2_workers']['steps']} | {t['2_workers']['samples']} |",
        "",
        f"Ratio 2/1: **{t['ratio_2_over_1']:.2f}x** (DDP on gloo, {t['cpus_per_worker']} CPU per worker, batch "
        f"{t['per_worker_batch']} per worker; samples/s over the timed optimizer steps only).",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
