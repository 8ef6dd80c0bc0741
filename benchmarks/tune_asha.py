"""ASHA vs FIFO on a real sweep, in one run: which trials ASHA stops early, the training it saves, and whether it
still finds the sweep's best trial.

Run (from the repository root; reads ../shared/data/phoenix14t in place; ~20 minutes on 2 CPUs):

    .venv/bin/python benchmarks/tune_asha.py [--out runs/bench_tune] [--train 2000] [--dev 200] [--epochs 3]

``ray-slt tune conf/tune/phoenix_gloss2text.yaml`` (PHOENIX-2014T gloss -> German; its grid of LoRA rank {8, 64}
x learning rate {3e-4, 1e-3, 3e-3}, 6 trials) reduced to ``--train`` training sentences, ``--epochs`` epochs and
greedy dev BLEU-4 on the first ``--dev`` dev sentences after every epoch, two trials at a time (one 1-CPU Ray
Train worker each), run twice in fresh processes: with the config's own scheduler (ASHA on dev BLEU-4, grace
period 1 epoch, reduction factor 2) and with FIFO (every trial to its last epoch). Training is deterministic, so a
trial scores the same at the same epoch in both runs (checked and reported). Which trials ASHA stops depends on
the order in which trials reach a rung, so another machine may stop different ones. Writes
``benchmarks/results/tune_asha.md`` / ``.json``. Nothing here passes or fails on time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from phoenix_setup import machine
from tune_sweeps import LoadSampler, cli, load, sweep_setup, write_results

BEST_KEYS = ("trial_id", "params", "dev_bleu4", "epoch", "status")


def _run(common: list[str], scheduler: str, name: str) -> dict:
    at_start = load()
    with LoadSampler() as sampler:
        s = cli("tune", *common, f"scheduler.type={scheduler}", f"name={name}")
    print(f"{scheduler}: {s['wall_time_s']:.0f} s", flush=True)
    return {
        "summary": s,
        "wall_time_s": s["wall_time_s"],
        "trial_epochs": sum(r["epochs"] or 0 for r in s["trials"]),
        "sum_of_trial_times_s": round(sum(r["time_s"] or 0 for r in s["trials"]), 1),
        "load_avg_at_start": at_start,
        "load_avg_1min_during": sampler.stats(),
    }


def main(argv: list[str] | None = None) -> int:
    args, common = sweep_setup(argv, __doc__, 3, "epochs per trial (ASHA's rungs: 1, 2, 4, ... below it)")
    common.append("search.max_concurrent_trials=2")
    stamp = int(time.time())
    runs = {sched: _run(common, sched, f"phoenix_{sched}_{stamp}") for sched in ("asha", "fifo")}

    def by_params(s: dict) -> dict[str, dict]:  # the sweep's results.json rows carry each trial's dev curve
        rows = json.loads(Path(s["files"]["table_json"]).read_text())
        return {json.dumps(r["params"], sort_keys=True): r for r in rows}

    asha, fifo = by_params(runs["asha"]["summary"]), by_params(runs["fifo"]["summary"])
    rows, consistent = [], True
    for key, f in sorted(fifo.items(), key=lambda kv: -(kv[1]["best"] or 0)):
        a = asha[key]
        # ASHA's trial ran the first epochs of the same deterministic training: epoch for epoch, its dev scores
        # must be FIFO's.
        ca, cf = [tuple(x) for x in a["curve"]], [tuple(x) for x in f["curve"]]
        if not ca or ca != cf[: len(ca)]:
            consistent = False
        rows.append((f, a))
    best_fifo = runs["fifo"]["summary"]["best"]
    best_asha = runs["asha"]["summary"]["best"]
    same_best = best_fifo["params"] == best_asha["params"]
    ratio = runs["fifo"]["wall_time_s"] / runs["asha"]["wall_time_s"]
    params = [k for k in rows[0][0]["params"] if k != "sft.lr_projector"]
    table = (
        "| " + " | ".join(params) + " | FIFO epochs | FIFO best dev BLEU-4 | ASHA status | ASHA epochs "
        "| ASHA best dev BLEU-4 |\n|" + "---|" * (len(params) + 5) + "\n"
        + "".join(
            "| " + " | ".join(str(f["params"][k]) for k in params)
            + f" | {f['epochs']} | {f['best']:.2f} | {a['status']} | {a['epochs']} | {a['best']:.2f} |\n"
            for f, a in rows
        )
    )  # fmt: skip
    md = (
        "# ASHA vs FIFO on a real sweep: PHOENIX-2014T gloss -> German (CPU)\n\n"
        f"`benchmarks/tune_asha.py`: `ray-slt tune conf/tune/phoenix_gloss2text.yaml` (6 trials: LoRA rank x "
        f"learning rate) reduced to {args.train} training sentences, {args.epochs} epochs, greedy dev BLEU-4 on the "
        f"first {args.dev} dev sentences after every epoch; two trials at a time, one 1-CPU Ray Train worker each, "
        f"on a {os.cpu_count()}-CPU machine. ASHA: the config's (dev BLEU-4, grace period 1 epoch, reduction "
        "factor 2).\n\n"
        f"{table}\n"
        "| scheduler | sweep wall time (s) | trial-epochs trained | sum of trial times (s) | best trial | its dev "
        "BLEU-4 | 1-min load avg during: mean (max) |\n|---|---|---|---|---|---|---|\n"
        + "".join(
            f"| {name} | {r['wall_time_s']:.0f} | {r['trial_epochs']} | {r['sum_of_trial_times_s']:.0f} | "
            + ", ".join(f"{k}={v}" for k, v in r["summary"]["best"]["params"].items() if k != "sft.lr_projector")
            + f" | {r['summary']['best']['dev_bleu4']:.2f} | {r['load_avg_1min_during']['mean']} "
            f"({r['load_avg_1min_during']['max']}) |\n"
            for name, r in runs.items()
        )
        + f"\nFIFO / ASHA wall time: **{ratio:.2f}x**; ASHA found FIFO's best trial: "
        f"{'yes' if same_best else 'NO'}; every ASHA trial's score equals FIFO's over the epochs it ran: "
        f"{'yes' if consistent else 'NO'}.\n"
    )
    result = {
        "benchmark": "ASHA vs FIFO, ray-slt tune conf/tune/phoenix_gloss2text.yaml reduced (PHOENIX-2014T, CPU)",
        "machine": machine(os.cpu_count()),
        "settings": {"train_sentences": args.train, "dev_sentences": args.dev, "epochs": args.epochs,
                     "max_concurrent_trials": 2},
        "runs": {n: {k: v for k, v in r.items() if k != "summary"}
                    | {"best": {k: r["summary"]["best"][k] for k in BEST_KEYS}}
                 for n, r in runs.items()},
        "trials": [{"params": f["params"], "fifo": {k: f[k] for k in ("epochs", "best", "best_epoch", "time_s")},
                    "asha": {k: a[k] for k in ("status", "epochs", "best", "best_epoch", "time_s")}}
                   for f, a in rows],
        "fifo_over_asha_wall_time": round(ratio, 2),
        "asha_found_fifo_best": same_best,
        "scores_consistent": consistent,
    }  # fmt: skip
    write_results("tune_asha", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
