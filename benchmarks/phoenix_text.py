"""PHOENIX-2014T text side, trained from scratch on CPUs: gloss -> German (``--direction gloss2text``) or German
-> gloss (``--direction text2gloss``, SignLLM Table 8's setting), and Ray Train's 1 vs 2 workers.

Run (from the repository root; reads ../shared/data/phoenix14t in place; 20-50 min a direction on 2 cores):

    .venv/bin/python benchmarks/phoenix_text.py --direction gloss2text [--epochs 18 | --train-minutes 35] [--cpus 2]
    .venv/bin/python benchmarks/phoenix_text.py --direction text2gloss [--throughput-steps 0]
    .venv/bin/python benchmarks/phoenix_text.py --direction both     # one after the other, each its shipped recipe

What it does, in one run:

1. ``ray-slt prepare phoenix14t`` (the manifest: 7,096 train / 519 dev / 642 test sentences with glosses);
2. throughput (skipped with ``--throughput-steps 0``): the direction's training config for a fixed number of
   optimizer steps with 1 and then 2 Ray Train workers (DDP, 1 CPU each, the same per-worker batch), no
   evaluation; samples/s over the timed training steps (``train_samples_per_s`` of the run summary) and their ratio;
3. training: the config for its own ``optim.epochs`` (the shipped configs' are the dev-chosen ones), or
   ``--epochs``, or as many epochs as fit in ``--train-minutes`` at the measured 2-worker speed; cosine schedule
   over them, dev evaluation every few epochs choosing the best checkpoint on dev BLEU-4 (greedy);
4. evaluation of the best checkpoint with ``ray-slt eval``'s code: beam size and length penalty chosen on dev
   (``--grid``), then test decoded with that choice; BLEU-1..4, ROUGE-L, chrF with the sacrebleu signature; the
   untrained starting model scored the same way on dev.

Writes ``benchmarks/results/phoenix_{direction}.json`` and ``.md``. Nothing here passes or fails on time.
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
RESULTS = REPO / "benchmarks" / "results"
TRAIN_SENTENCES = 7096
DIRECTIONS = {
    "gloss2text": {
        "title": "Gloss -> German text",
        "config": REPO / "conf" / "train" / "phoenix_gloss2text.yaml",
        "published": "from-scratch transformers (Yin & Read 2020) report about 23-25 BLEU-4 on test, an independent "
        "re-implementation 22.17; pretrained NLLB + LoRA (Gloss2Text) 28.2",
    },
    "text2gloss": {
        "title": "German text -> gloss",
        "config": REPO / "conf" / "train" / "text2gloss" / "phoenix.yaml",
        "published": "SignLLM Table 8: 23.10 dev / 22.05 test BLEU-4 (Progressive Transformers 20.23 / 19.10); "
        "Walsh et al. 2022: 25.09 test",
    },
}


def load(conf: Path, name: str, manifest: str, out: str, *overrides: str):
    from ray_slt.config import load_config

    return load_config(
        str(conf), [f"data.manifest={manifest}", f"trainer.storage={out}", f"trainer.name={name}", *overrides]
    )


def describe(cfg) -> str:
    """The model in words, from the config that trained it."""
    section = getattr(cfg, cfg.stage)
    enc, tiny = section.encoder, section.tiny
    names = {"qwen3": "Qwen3", "qwen2": "Qwen2", "gpt2": "GPT-2", "mbart": "mBART", "t5": "T5"}
    arch = str(section.lm).removeprefix("tiny:")
    lm = (f"tiny random {names.get(arch, arch)} ({tiny.layers} layers, {tiny.hidden})"
          if str(section.lm).startswith("tiny:") else str(section.lm))  # fmt: skip
    training = getattr(section, "lm_training", "auto")
    return (f"{enc.type} encoder ({enc.layers} layers, {enc.hidden}) -> MLP projector -> {lm}, "
            f"{section.tokenizer.kind} vocabulary {section.tokenizer.vocab_size}, LM training {training}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--direction", choices=[*sorted(DIRECTIONS), "both"], default="gloss2text",
                   help="both: gloss2text, then text2gloss, each with its shipped config and result names")  # fmt: skip
    p.add_argument("--config", help="a training config instead of the direction's shipped one")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides (repeatable)")
    p.add_argument("--out", help="working directory (default runs/bench_phoenix_{direction})")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--name", help="results file stem under benchmarks/results (default phoenix_{direction})")
    p.add_argument("--train-minutes", type=float,
                   help="training time budget: as many epochs as fit at the 2-worker speed (default: the config's "
                   "own optim.epochs)")  # fmt: skip
    p.add_argument("--epochs", type=int, help="train this many epochs (overrides --train-minutes)")
    p.add_argument("--throughput-steps", type=int, default=40, help="0 skips the 1 vs 2 workers measurement")
    p.add_argument(
        "--samples-per-s",
        type=float,
        default=60.0,
        help="the 2-worker speed assumed for --train-minutes when throughput is skipped",
    )
    p.add_argument("--beams", default="1,4", help="beam sizes tried on dev")
    p.add_argument("--length-penalties", default="0.8,1.0,1.2", help="length penalties tried on dev")
    args = p.parse_args(argv)
    if args.direction != "both":
        return run(args, args.direction)
    if args.config or args.set or args.name or args.out:
        p.error(
            "--direction both runs each direction's shipped config under its default names and directory; "
            "--config, --set, --name and --out apply to one direction (their keys differ: sft.* vs text2gloss.*)"
        )
    return max(run(args, direction) for direction in DIRECTIONS)


def run(args: argparse.Namespace, direction: str) -> int:
    """One direction: throughput, training, decoding chosen on dev, dev and test scores; writes the results."""
    d = DIRECTIONS[direction]
    conf = Path(args.config).resolve() if args.config else d["config"]
    out = str(Path(args.out or f"runs/bench_phoenix_{direction}").resolve())
    grid = {"num_beams": [int(v) for v in args.beams.split(",")],
            "length_penalty": [float(v) for v in args.length_penalties.split(",")]}  # fmt: skip
    t_start = time.perf_counter()
    manifest = phoenix_setup.start(out, args.cpus)
    if manifest is None:
        return 2
    from ray_slt.eval.run import choose_decoding, evaluate
    from ray_slt.training.run import run_training

    # 1. throughput, 1 vs 2 workers, same config and per-worker batch, fixed steps, no evaluation
    speed = {}
    for workers in (1, 2) if args.throughput_steps > 0 else ():
        cfg = load(conf, f"throughput_{workers}w", manifest, out, *args.set, f"trainer.num_workers={workers}",
                   f"optim.max_steps={args.throughput_steps}", "eval.every_epochs=0", "optim.epochs=1")  # fmt: skip
        s = run_training(cfg)
        speed[workers] = {"samples_per_s": s["train_samples_per_s"], "steps": s["steps"], "samples": s["samples"],
                          "train_time_s": s["train_time_s"]}  # fmt: skip
        print(f"{workers} worker(s): {s['train_samples_per_s']:.1f} samples/s", flush=True)
    ratio = speed[2]["samples_per_s"] / speed[1]["samples_per_s"] if speed else None
    rate = speed[2]["samples_per_s"] if speed else args.samples_per_s

    # 2. training: --epochs, or as many as fit the time budget at the 2-worker speed, or the config's own
    if args.epochs:
        epochs = args.epochs
    elif args.train_minutes:
        epochs = max(1, min(40, math.floor(args.train_minutes * 60 * rate / TRAIN_SENTENCES)))
    else:
        epochs = load(conf, "train", manifest, out, *args.set).optim.epochs
    cfg = load(conf, "train", manifest, out, *args.set, "trainer.num_workers=2", f"optim.epochs={epochs}",
               f"eval.every_epochs={max(1, epochs // 5)}")  # fmt: skip
    t0 = time.perf_counter()
    summary = run_training(cfg)
    train_wall = time.perf_counter() - t0
    print(f"trained {epochs} epochs in {train_wall / 60:.1f} min; best dev BLEU-4 (greedy) "
          f"{summary['best']['dev_bleu4']:.2f} at step {summary['best']['step']}", flush=True)  # fmt: skip

    # 3. evaluation of the best checkpoint (and of the untrained start) with ray-slt eval's code: decoding chosen
    # on dev, test decoded with the choice
    run_dir = Path(summary["run_dir"])
    choice = choose_decoding(str(run_dir), split="dev", grid=grid, batch_size=64)
    decoding = choice["best"]
    print(f"decoding chosen on dev: {decoding}", flush=True)
    evals = {}
    for split in ("dev", "test"):
        evals[split] = evaluate(str(run_dir), split=split, predictor_options=decoding, batch_size=64,
                                out=f"{out}/eval/{split}")  # fmt: skip
    init = next(p for p in run_dir.iterdir() if p.name.startswith("init-"))
    untrained = evaluate(str(init), split="dev", data=manifest, predictor_options={"num_beams": 1}, batch_size=64,
                         out=f"{out}/eval/untrained")  # fmt: skip
    keys = SCORE_KEYS
    result = {
        "benchmark": f"{d['title']}, PHOENIX-2014T, from scratch on CPU",
        "direction": direction,
        "title": d["title"],
        "machine": phoenix_setup.machine(args.cpus),
        "config": str(conf.relative_to(REPO)) if conf.is_relative_to(REPO) else str(conf),
        "overrides": args.set,
        "config_hash": summary["config_hash"],
        "model": describe(cfg),
        "epochs": epochs,
        "train_minutes_budget": args.train_minutes,
        "train_wall_s": round(train_wall, 1),
        "train_samples_per_s": summary["train_samples_per_s"],
        "best_step": summary["best"]["step"],
        "best_dev_bleu4_greedy_during_training": summary["best"]["dev_bleu4"],
        "decoding": decoding,
        "decoding_grid_dev": [
            {"options": r["options"], choice["metric"]: r[choice["metric"]]} for r in choice["results"]
        ],
        "stopped_early": summary.get("stopped_early", False),
        "dev": {k: evals["dev"][k] for k in keys},
        "test": {k: evals["test"][k] for k in keys},
        "untrained_dev": {k: untrained[k] for k in keys},
        "bleu_signature": evals["test"]["bleu_signature"],
        "rouge_impl": evals["test"]["rouge_impl"],
        "checkpoint_id": evals["test"]["checkpoint_id"],
        "throughput": {
            "1_worker": speed.get(1),
            "2_workers": speed.get(2),
            "ratio_2_over_1": ratio,
            "steps": args.throughput_steps,
            "per_worker_batch": cfg.optim.batch_size,
            "cpus_per_worker": cfg.trainer.cpus_per_worker,
        },
        "published_reference": d["published"],
        "total_wall_s": round(time.perf_counter() - t_start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.name or f"phoenix_{direction}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / f"{name}.md").write_text(render(result))
    print(render(result))
    return 0


SCORE_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf")


def score_table(rows: list[tuple[str, dict]]) -> list[str]:
    """Markdown lines of a scores table: one row per (split name, scores)."""
    return [
        "| split | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | ROUGE-L | chrF |",
        "|---|---|---|---|---|---|---|",
        *(f"| {name} | " + " | ".join(f"{s[k]:.2f}" for k in SCORE_KEYS) + " |" for name, s in rows),
    ]


def render(r: dict) -> str:
    rows = [("dev", r["dev"]), ("test", r["test"]), ("dev, untrained start", r["untrained_dev"])]
    t = r["throughput"]
    decoding = ", ".join(f"{k} {v}" for k, v in r["decoding"].items())
    grid = "; ".join(", ".join(f"{k} {v}" for k, v in g["options"].items()) + f": {g['bleu4']:.2f}"
                     for g in r["decoding_grid_dev"])  # fmt: skip
    lines = [
        f"# {r['title']} on PHOENIX-2014T, trained from scratch on CPUs",
        "",
        f"Model: {r['model']}. Config `{r['config']}`"
        + (f" with `{' '.join(r['overrides'])}`" if r["overrides"] else "")
        + f" (hash {r['config_hash']}), {r['epochs']} epochs in {r['train_wall_s'] / 60:.1f} min on "
        f"{r['machine']['cpus']} CPUs (2 DDP workers)" + (", stopped early on dev" if r["stopped_early"] else "")
        + f"; best checkpoint on dev BLEU-4 (greedy) at step {r['best_step']}. Decoding chosen on dev: {decoding} "
        f"(dev BLEU-4 of the grid: {grid}); the untrained start: greedy.",
        "",
        *score_table(rows),
        "",
        f"sacrebleu signature: `{r['bleu_signature']}`; ROUGE-L: {r['rouge_impl']}.",
        f"Reference points: {r['published_reference']}.",
        "",
    ]  # fmt: skip
    if t["ratio_2_over_1"] is not None:
        lines += [
            "## Ray Train: 1 vs 2 workers (same config, same per-worker batch, measured in this run)",
            "",
            "| workers | samples/s | steps | samples |",
            "|---|---|---|---|",
            *(f"| {w} | {t[k]['samples_per_s']:.1f} | {t[k]['steps']} | {t[k]['samples']} |"
              for w, k in ((1, "1_worker"), (2, "2_workers"))),
            "",
            f"Ratio 2/1: **{t['ratio_2_over_1']:.2f}x** (DDP on gloo, {t['cpus_per_worker']} CPU per worker, batch "
            f"{t['per_worker_batch']} per worker; samples/s over the timed optimizer steps only).",
            "",
        ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
