"""Sweeps on Ray Tune, in one run: a small real sweep's results table (LoRA rank x learning rate, PHOENIX-2014T
gloss -> German), and the wall time of the same sweep with its trials two at a time vs one after another.

Run (from the repository root; reads ../shared/data/phoenix14t in place):

    .venv/bin/python benchmarks/tune_sweeps.py [--out runs/bench_tune] [--train 2000] [--dev 200] [--epochs 2]

It prepares the PHOENIX-2014T manifest (text side: glosses and German sentences), then runs
``ray-slt tune conf/tune/phoenix_gloss2text.yaml`` reduced to 4 trials (LoRA rank {8, 64} x learning rate
{3e-4, 3e-3}, the projector's tied to the LLM's), ``--train`` training sentences, ``--epochs`` epochs, greedy dev
BLEU-4 on the first ``--dev`` dev sentences after every epoch, one 1-CPU Ray Train worker per trial, twice in fresh
processes: ``search.max_concurrent_trials=2`` (two trials at once on 2 CPUs) and ``=1`` (one after another). Both
use the FIFO scheduler, so that both runs train every trial to its end (ASHA would stop different trials depending
on the order in which they report) and do the same work; the training is deterministic, so both runs must give
every trial the same scores (checked and reported). Writes ``benchmarks/results/tune_sweeps.md`` / ``.json``.
Nothing here passes or fails on time; the machine's load average (shared machine) is recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from phoenix_setup import machine

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data" / "phoenix14t").resolve()
RESULTS = REPO / "benchmarks" / "results"
SPACE = (
    "space={sft.lora.r: {grid: [8, 64]}, sft.lr_llm: {grid: [3.0e-4, 3.0e-3]}, sft.lr_projector: {same_as: sft.lr_llm}}"
)


def cli(*args: str, timeout: float = 7200) -> dict:
    """``python -m ray_slt ARGS --json`` in a fresh process (its own local Ray); the JSON result."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ray_slt", *args, "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"ray-slt {args[0]} failed:\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["_process_wall_s"] = time.perf_counter() - t0
    return out


def load() -> list[float]:
    return [round(x, 1) for x in os.getloadavg()]


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while a run goes on (the machine is shared: other jobs'
    load during one run and not the other skews the comparison; the samples show whether it did)."""

    def __init__(self, every: float = 10.0):
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def stats(self) -> dict[str, float]:
        xs = self.samples or [os.getloadavg()[0]]
        return {"mean": round(sum(xs) / len(xs), 1), "max": round(max(xs), 1), "samples": len(xs)}


def sweep_setup(
    argv: list[str] | None, doc: str, epochs: int, epochs_help: str
) -> tuple[argparse.Namespace, list[str]]:
    """The PHOENIX sweep benchmarks' command line and set-up: parse ``argv``, prepare the manifest once, and
    return the arguments with the ``ray-slt tune`` arguments every run shares."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", default="runs/bench_tune", help="where the manifest and the sweeps go")
    p.add_argument("--train", type=int, default=2000, help="training sentences (the first N by sample id)")
    p.add_argument("--dev", type=int, default=200, help="dev sentences scored after every epoch")
    p.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    args = p.parse_args(argv)
    if not (DATA / "PHOENIX-2014-T.train.corpus.csv").exists():
        raise SystemExit(f"PHOENIX-2014T text data not found under {DATA}")
    out = Path(args.out).resolve()
    manifest = out / "phoenix14t" / "manifest.parquet"
    if not manifest.exists():
        cli("prepare", str(REPO / "conf" / "prepare" / "phoenix14t.yaml"), f"root={DATA}", f"out={manifest}")
    common = [
        str(REPO / "conf" / "tune" / "phoenix_gloss2text.yaml"), f"storage={out / 'sweeps'}",
        f"overrides.data.manifest={manifest}", f"overrides.data.limit_train={args.train}",
        f"overrides.data.limit_dev={args.dev}", f"overrides.optim.epochs={args.epochs}",
    ]  # fmt: skip
    return args, common


def write_results(name: str, result: dict, md: str) -> None:
    """benchmarks/results/{name}.json and .md; the table is printed too."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / f"{name}.md").write_text(md)
    print(md)


def main(argv: list[str] | None = None) -> int:
    args, common = sweep_setup(argv, __doc__, 2, "epochs per trial")
    common += ["scheduler.type=fifo", SPACE]
    stamp = int(time.time())
    runs: dict[int, dict] = {}
    for n in (2, 1):
        at_start = load()
        with LoadSampler() as sampler:
            s = cli("tune", *common, f"name=phoenix_{n}_at_a_time_{stamp}", f"search.max_concurrent_trials={n}")
        runs[n] = {
            "summary": s,
            "wall_time_s": s["wall_time_s"],
            "process_wall_s": round(s["_process_wall_s"], 1),
            "sum_of_trial_times_s": round(sum(r["time_s"] or 0 for r in s["trials"]), 1),
            "load_avg_at_start": at_start,
            "load_avg_at_end": load(),
            "load_avg_1min_during": sampler.stats(),
        }
        print(f"{n} at a time: {s['wall_time_s']:.0f} s", flush=True)

    def scores(s: dict) -> dict[str, float]:
        return {json.dumps(r["params"], sort_keys=True): r["best"] for r in s["trials"]}

    same_scores = scores(runs[1]["summary"]) == scores(runs[2]["summary"])
    s2 = runs[2]["summary"]
    table = Path(s2["files"]["table_md"]).read_text()
    b = s2["best"]
    ratio = runs[1]["wall_time_s"] / runs[2]["wall_time_s"]
    result = {
        "benchmark": "ray-slt tune conf/tune/phoenix_gloss2text.yaml, reduced (PHOENIX-2014T gloss -> German, CPU)",
        "machine": machine(os.cpu_count()),
        "settings": {"train_sentences": args.train, "dev_sentences": args.dev, "epochs": args.epochs,
                     "trials": s2["num_trials"], "scheduler": "fifo", "workers_per_trial": 1, "cpus_per_worker": 1},
        "best": {k: b[k] for k in ("trial_id", "params", "dev_bleu4", "epoch", "status")},
        "trials": [
            {k: r[k] for k in ("trial_id", "status", "params", "epochs", "best", "best_epoch", "last", "time_s")}
            for r in s2["trials"]
        ],
        "runs": {str(n): {k: v for k, v in r.items() if k != "summary"} for n, r in runs.items()},
        "sequential_over_concurrent_wall_time": round(ratio, 2),
        "same_scores_in_both_runs": same_scores,
    }  # fmt: skip
    md = (
        "# Sweep: LoRA rank x learning rate, PHOENIX-2014T gloss -> German (CPU)\n\n"
        f"`benchmarks/tune_sweeps.py`: `ray-slt tune conf/tune/phoenix_gloss2text.yaml` reduced to {args.train} "
        f"training sentences, {args.epochs} epochs, greedy dev BLEU-4 on the first {args.dev} dev sentences after "
        "every epoch; gloss encoder -> projector -> tiny random Qwen3 + LoRA, trained from scratch. Learning rate = "
        "the LLM's and the projector's (tied). FIFO scheduler (every trial trains to its end), one 1-CPU Ray Train "
        f"worker per trial, on a {os.cpu_count()}-CPU machine shared with other jobs.\n\n"
        f"## Results (two trials at a time)\n\n{table}\n"
        f"Best: trial {b['trial_id']} ({', '.join(f'{k}={v}' for k, v in b['params'].items())}): dev BLEU-4 "
        f"{b['dev_bleu4']:.2f} at epoch {b['epoch']}. Plots: `plots/*.png` in the sweep directory.\n\n"
        "## Wall time: two trials at a time vs one after another (the same sweep, fresh processes)\n\n"
        "| trials at a time | sweep wall time (s) | sum of trial times (s) | 1-min load avg during: mean (max) |\n"
        "|---|---|---|---|\n"
        + "".join(
            f"| {n} | {r['wall_time_s']:.0f} | {r['sum_of_trial_times_s']:.0f} | "
            f"{r['load_avg_1min_during']['mean']} ({r['load_avg_1min_during']['max']}) |\n"
            for n, r in sorted(runs.items())
        )
        + f"\nOne after another / two at a time: {ratio:.2f}x wall time. Every trial scored the same in both runs: "
        f"{'yes' if same_scores else 'NO'}. The machine ({os.cpu_count()} CPUs) is shared: a load average "
        "above 2 means other jobs took CPU time from the trials, and more of it in one run than in the other skews "
        "the ratio.\n"
    )
    write_results("tune_sweeps", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
