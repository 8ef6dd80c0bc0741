"""GRPO (RVLF stage 3, TRL on Ray Train) on PHOENIX-2014T gloss -> German text: reward curve, dev BLEU-4 before
and after, and completions/s with 1 vs 2 workers.

Run (from the repository root; reads ../shared/data/phoenix14t in place):

    .venv/bin/python benchmarks/grpo_phoenix.py [--init runs/bench_gloss2text/train] [--steps 150] \
        [--out runs/bench_grpo] [--cpus 2]

What it does, in one run:

1. ``ray-slt prepare phoenix14t`` (7,096 train / 519 dev / 642 test sentences with glosses);
2. the SFT translator to start from: ``--init`` (an SFT run directory, e.g. the one benchmarks/phoenix_text.py
   trains, a checkpoint or a model directory); without one, conf/train/phoenix_gloss2text.yaml is trained here
   for ``--sft-epochs`` epochs;
3. throughput: conf/train/grpo_phoenix_gloss2text.yaml for ``--throughput-steps`` optimizer steps with 1 and then 2
   Ray Train workers (DDP, 1 CPU each, the same per-worker batch of prompts x 8 samples), no evaluation;
   completions/s over the timed optimizer steps (sampling, rewards, loss, update; no evaluation/checkpoints);
4. GRPO: the same config with 2 workers for ``--steps`` steps, greedy dev BLEU-4 (first ``--dev-limit`` dev
   sentences) at the start and at every checkpoint; the reward curve from ``metrics/train.jsonl``;
5. ``ray-slt eval``'s code on the whole dev split (beam ``--num-beams``) for the SFT start and for the GRPO run's
   best checkpoint (on dev BLEU-4): BLEU-1..4, ROUGE-L, chrF with the sacrebleu signature; then, for the GRPO
   checkpoint, beam size and length penalty chosen on dev (``--beams`` x ``--length-penalties``) and the test split
   decoded once with that choice.

Writes ``benchmarks/results/grpo_phoenix.json`` and ``.md``. Nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import phoenix_setup

REPO = phoenix_setup.REPO
SFT_CONF = REPO / "conf" / "train" / "phoenix_gloss2text.yaml"
CONF = REPO / "conf" / "train" / "grpo_phoenix_gloss2text.yaml"
RESULTS = REPO / "benchmarks" / "results"
LABELS = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L",
          "chrf": "chrF"}  # fmt: skip
KEYS = tuple(LABELS)


def load(conf: Path, *overrides: str):
    from ray_slt.config import load_config

    return load_config(str(conf), list(overrides))


def reward_curve(run_dir: str) -> list[dict]:
    rows = [json.loads(line) for line in Path(run_dir, "metrics", "train.jsonl").read_text().splitlines() if line]
    keep = ("step", "reward", "reward_std", "rewards/bleu4/mean", "rewards/rouge_l/mean", "kl", "entropy",
            "completions/mean_length")  # fmt: skip
    return [{k: r[k] for k in keep if k in r} for r in rows if "reward" in r]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", default="runs/bench_gloss2text/train", help="SFT run/checkpoint/model directory")
    p.add_argument("--out", default="runs/bench_grpo")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--throughput-steps", type=int, default=10)
    p.add_argument("--sft-epochs", type=int, default=4, help="SFT epochs when no --init exists")
    p.add_argument("--dev-limit", type=int, default=200, help="dev sentences decoded during training")
    p.add_argument("--num-beams", type=int, default=4)
    p.add_argument("--beams", default="1,4", help="beam sizes tried on dev before the test split is decoded")
    p.add_argument("--length-penalties", default="0.8,1.0,1.2", help="length penalties tried on dev")
    args = p.parse_args(argv)
    out = str(Path(args.out).resolve())
    t_start = time.perf_counter()
    manifest = phoenix_setup.start(out, args.cpus)
    if manifest is None:
        return 2
    from ray_slt.errors import ConfigError
    from ray_slt.eval.run import choose_decoding, evaluate
    from ray_slt.training.grpo import resolve_init
    from ray_slt.training.run import run_training

    # 2. the SFT start
    init = str(Path(args.init).resolve())
    trained_sft = None
    try:
        resolve_init(init)
    except ConfigError:  # no SFT checkpoint there: train one
        cfg = load(SFT_CONF, f"data.manifest={manifest}", f"trainer.storage={out}", "trainer.name=sft",
                   f"optim.epochs={args.sft_epochs}", f"eval.every_epochs={args.sft_epochs}")  # fmt: skip
        t0 = time.perf_counter()
        s = run_training(cfg)
        init = s["run_dir"]
        trained_sft = {"epochs": args.sft_epochs, "wall_s": round(time.perf_counter() - t0, 1), "run_dir": init}
        print(f"SFT: {args.sft_epochs} epochs in {trained_sft['wall_s'] / 60:.1f} min", flush=True)
    init_model = resolve_init(init)
    common = [f"data.manifest={manifest}", f"trainer.storage={out}", f"grpo.init={init_model}"]

    # 3. throughput, 1 vs 2 workers: same config and per-worker batch, fixed steps, no evaluation
    speed = {}
    for workers in (1, 2):
        cfg = load(CONF, *common, f"trainer.name=throughput_{workers}w", f"trainer.num_workers={workers}",
                   f"optim.max_steps={args.throughput_steps}", "eval.every_epochs=0", "eval.at_start=false",
                   f"trainer.checkpoint_every={args.throughput_steps}")  # fmt: skip
        s = run_training(cfg)
        speed[workers] = {k: s[k] for k in ("completions_per_s", "completions_per_step", "steps", "train_time_s")}
        print(f"{workers} worker(s): {s['completions_per_s']:.1f} completions/s", flush=True)

    # 4. GRPO with 2 workers, dev evaluations at the start and at every checkpoint
    cfg = load(CONF, *common, "trainer.name=grpo", "trainer.num_workers=2", f"optim.max_steps={args.steps}",
               f"trainer.checkpoint_every={args.checkpoint_every}", f"data.limit_dev={args.dev_limit}")  # fmt: skip
    t0 = time.perf_counter()
    summary = run_training(cfg)
    grpo_wall = time.perf_counter() - t0
    curve = reward_curve(summary["run_dir"])
    dev_curve = [json.loads(x) for x in Path(summary["run_dir"], "metrics", "dev.jsonl").read_text().splitlines()]

    # 5. the whole dev split, beam search, with ray-slt eval's code: the SFT start and the best GRPO checkpoint
    beams = {"num_beams": args.num_beams}
    before = evaluate(init_model, split="dev", data=manifest, predictor_options=beams, batch_size=64,
                      out=f"{out}/eval/sft_dev")  # fmt: skip
    after = evaluate(summary["run_dir"], split="dev", data=manifest, predictor_options=beams, batch_size=64,
                     out=f"{out}/eval/grpo_dev")  # fmt: skip
    # 6. decoding of the GRPO checkpoint chosen on dev, then test decoded once with it
    grid = {"num_beams": [int(v) for v in args.beams.split(",")],
            "length_penalty": [float(v) for v in args.length_penalties.split(",")]}  # fmt: skip
    choice = choose_decoding(summary["run_dir"], split="dev", grid=grid, data=manifest, batch_size=64)
    test = evaluate(summary["run_dir"], split="test", data=manifest, predictor_options=choice["best"], batch_size=64,
                    out=f"{out}/eval/grpo_test")  # fmt: skip
    g = cfg.grpo
    result = {
        "benchmark": "GRPO (RVLF stage 3, TRL on Ray Train) on PHOENIX-2014T gloss -> German text, CPU",
        "machine": phoenix_setup.machine(args.cpus),
        "config": str(CONF.relative_to(REPO)),
        "config_hash": summary["config_hash"],
        "init": init_model,
        "sft_trained_here": trained_sft,
        "grpo": {
            "steps": summary["steps"],
            "workers": 2,
            "prompts_per_step": cfg.optim.batch_size * 2,
            "num_generations": g.num_generations,
            "lr": g.lr,
            "beta": g.beta,
            "lora": g.lora.model_dump(),
            "reward": g.reward.model_dump(),
            "wall_s": round(grpo_wall, 1),
        },
        "reward_curve": curve,
        "dev_curve_greedy": [
            {k: d[k] for k in ("step", "dev_bleu4", "dev_rouge_l", "dev_reward") if k in d} for d in dev_curve
        ],
        "num_beams": args.num_beams,
        "dev_before": {k: before[k] for k in KEYS},
        "dev_after": {k: after[k] for k in KEYS},
        "decoding_grid_dev": [{"options": r["options"], "bleu4": r["bleu4"]} for r in choice["results"]],
        "decoding": choice["best"],
        "test_after": {k: test[k] for k in KEYS},
        "best_checkpoint": summary["best"],
        "bleu_signature": after["bleu_signature"],
        "rouge_impl": after["rouge_impl"],
        "throughput": {
            "1_worker": speed[1],
            "2_workers": speed[2],
            "ratio_2_over_1": speed[2]["completions_per_s"] / speed[1]["completions_per_s"],
            "steps": args.throughput_steps,
            "prompts_per_worker_step": cfg.optim.batch_size,
        },
        "total_wall_s": round(time.perf_counter() - t_start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    # paths inside the repository are recorded relative to it (results are committed; machines differ)
    result = json.loads(json.dumps(result, ensure_ascii=False).replace(str(REPO) + "/", ""))
    (RESULTS / "grpo_phoenix.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / "grpo_phoenix.md").write_text(render(result))
    print(render(result))
    return 0


def _curve_summary(curve: list[dict], parts: int = 5) -> list[dict]:
    """Mean reward over ``parts`` equal stretches of the run."""
    if not curve:
        return []
    n = max(1, len(curve) // parts)
    out = []
    for i in range(0, len(curve), n):
        chunk = curve[i : i + n]
        out.append({
            "steps": f"{chunk[0]['step']}-{chunk[-1]['step']}",
            "reward": sum(c["reward"] for c in chunk) / len(chunk),
            "bleu4": sum(c.get("rewards/bleu4/mean", 0) for c in chunk) / len(chunk),
            "rouge_l": sum(c.get("rewards/rouge_l/mean", 0) for c in chunk) / len(chunk),
            "kl": sum(c.get("kl", 0) for c in chunk) / len(chunk),
        })  # fmt: skip
    return out


def _options(options: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items())


def render(r: dict) -> str:
    t, g = r["throughput"], r["grpo"]
    rows = [("SFT start", r["dev_before"]), ("after GRPO (best on dev BLEU-4)", r["dev_after"])]
    lines = [
        "# GRPO on PHOENIX-2014T gloss -> German text (TRL on Ray Train, CPUs)",
        "",
        f"Start: `{r['init']}`. Config `{r['config']}` (hash {r['config_hash']}): {g['steps']} steps, "
        f"{g['workers']} DDP workers, {g['prompts_per_step']} prompts x {g['num_generations']} samples per step, "
        f"lr {g['lr']}, KL beta {g['beta']}, new LoRA r={g['lora']['r']} alpha={g['lora']['alpha']} on "
        f"{', '.join(g['lora']['target_modules'])}; reward {g['reward']['bleu_weight']} BLEU-4 + "
        f"{1 - g['reward']['bleu_weight']:.1f} ROUGE-L; {g['wall_s'] / 60:.1f} min.",
        "",
        f"## Dev BLEU-4 before and after (all 519 dev sentences, beam {r['num_beams']}, ray-slt eval)",
        "",
        "| model | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | ROUGE-L | chrF |",
        "|---|---|---|---|---|---|---|",
        *(f"| {name} | " + " | ".join(f"{s[k]:.2f}" for k in KEYS) + " |" for name, s in rows),
        "",
        f"After GRPO, decoding chosen on dev: {_options(r['decoding'])} (dev BLEU-4 of the grid: "
        + "; ".join(f"{_options(c['options'])}: {c['bleu4']:.2f}" for c in r["decoding_grid_dev"])
        + "); the test split decoded once with it: BLEU-4 **" + f"{r['test_after']['bleu4']:.2f}**, "
        + ", ".join(f"{label} {r['test_after'][k]:.2f}" for k, label in LABELS.items() if k != "bleu4") + ".",
        "",
        f"sacrebleu signature: `{r['bleu_signature']}`; ROUGE-L: {r['rouge_impl']}.",
        "",
        "## Reward curve (training batches; mean over stretches of the run)",
        "",
        "| steps | reward R | BLEU-4 part | ROUGE-L part | KL |",
        "|---|---|---|---|---|",
        *(f"| {c['steps']} | {c['reward']:.3f} | {c['bleu4']:.3f} | {c['rouge_l']:.3f} | {c['kl']:.4f} |"
          for c in _curve_summary(r["reward_curve"])),
        "",
        "Greedy dev BLEU-4 during training (first dev sentences): "
        + ", ".join(f"step {d['step']}: {d['dev_bleu4']:.2f}" for d in r["dev_curve_greedy"]),
        "",
        "## Ray Train: 1 vs 2 workers (same config, same per-worker batch, measured in this run)",
        "",
        "| workers | completions/s | completions/step | steps |",
        "|---|---|---|---|",
        *(f"| {w} | {t[k]['completions_per_s']:.1f} | {t[k]['completions_per_step']} | {t[k]['steps']} |"
          for w, k in ((1, "1_worker"), (2, "2_workers"))),
        "",
        f"Ratio 2/1: **{t['ratio_2_over_1']:.2f}x** (DDP on gloo, 1 CPU per worker, {t['prompts_per_worker_step']} "
        "prompts per worker per step; completions/s over the timed optimizer steps only).",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
