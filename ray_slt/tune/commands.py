"""`ray-slt` subcommands of the tune stage (registered with ray_slt.cli.register): ``tune``."""

from __future__ import annotations

import argparse
from typing import Any

from ray_slt.cli import register

TUNE_DESCRIPTION = """\
Sweep hyperparameters of a training config on Ray Tune. CONFIG is of kind 'tune': a training config ('train:'),
fixed overrides, a search space over dotted training keys (grid / choice / uniform / loguniform / randint), the
search algorithm (random, grid, optuna), ASHA early stopping on the dev metric reported at every evaluation
(epochs are its time unit), per-trial resources (workers, CPU/GPU fractions) and the sweep's storage. Every trial
is a training run of the same train_func as `ray-slt train`, at {storage}/{name}/trials/{trial_id}.
Writes results.md|csv|json, plots/*.png (metric vs each parameter, dev curves) and best.json (the best
trial's parameters, score and checkpoint; `ray-slt eval CHECKPOINT` reproduces its score).
Running the same config again resumes an interrupted sweep (finished trials are not re-run).

examples:
  ray-slt tune conf/tune/synthetic_tiny.yaml
  ray-slt tune conf/tune/phoenix_gloss2text.yaml search.max_concurrent_trials=2 --json
  ray-slt tune conf/tune/phoenix_gloss2text.yaml --address auto
"""


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config of kind 'tune' (local or s3://)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the tune config (dotted keys)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local Ray)")


def _run(args: argparse.Namespace) -> Any:
    from ray_slt.training.commands import init_ray
    from ray_slt.tune.config import load_sweep, resolve_sweep
    from ray_slt.tune.sweep import preflight_sweep, run_sweep

    cfg = load_sweep(args.config, args.overrides)
    resolved, base = resolve_sweep(cfg)  # bad paths/values/metrics fail before Ray starts
    preflight_sweep(resolved, base)  # and so do missing data and storage without credentials
    init_ray(args.address)
    return run_sweep(cfg)


def _render(s: dict) -> str:
    from ray_slt.errors import RaySltError

    try:
        md = _read(s["files"]["table_md"])
    except RaySltError:
        md = ""
    counts = ", ".join(f"{n} {k}" for k, n in sorted(s["status"].items()))
    lines = [f"sweep: {s['sweep_dir']} ({s['num_trials']} trials: {counts}; {s['max_concurrent_trials']} at a time, "
             f"{s['wall_time_s']:.0f} s{', resumed' if s.get('resumed') else ''})", md.rstrip()]  # fmt: skip
    b = s["best"]
    lines.append(f"best: trial {b['trial_id']} {s['metric']} {b[s['metric']]:.2f} at epoch {b['epoch']} "
                 f"({', '.join(f'{k}={v}' for k, v in b['params'].items())})")  # fmt: skip
    lines.append(f"  checkpoint: {b['checkpoint']}")
    lines.append(f"  config: {b['train_config']}")
    lines.append(f"table: {s['files']['table_md']}; plots: {', '.join(s['plots'].values())}")
    return "\n".join(lines)


def _read(uri: str) -> str:
    from ray_slt import storage

    return storage.read_text(uri)


register("tune", "hyperparameter sweeps on Ray Tune (ASHA, random/grid/Optuna)", _configure, _run, _render,
         description=TUNE_DESCRIPTION)  # fmt: skip
