"""The results of a sweep: one row per trial (parameters, status, epochs trained, best/last metric and the
checkpoint that scored it), written as ``results.md`` / ``results.csv`` / ``results.json``, PNG plots of the
metric against each swept parameter (``plots/{param}.png``) and of every trial's dev curve (``plots/curves.png``),
and the best trial's entry (parameters, score, checkpoint, run directory; the sweep writes ``best.json``).

A trial's status: ``completed`` (its training run ended: ``run.json``), ``stopped`` (by the scheduler, ASHA, or
the sweep's time budget), ``error`` (the trial failed; the error's last line is kept), ``pending`` (not started or
interrupted: a resumed sweep runs it).
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from ray_slt import storage
from ray_slt.tune.config import SweepConfig

STATUS_ORDER = {"completed": 0, "stopped": 1, "error": 2, "pending": 3}


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _trial_id(result) -> str:
    if result.metrics and result.metrics.get("trial_id"):
        return str(result.metrics["trial_id"])
    return storage.basename(result.path).removeprefix("tune_")


def trial_row(cfg: SweepConfig, result, trials_dir: str, state: str | None = None) -> dict[str, Any]:
    """One trial's row from its Tune result (every dev evaluation it reported) and Tune's state of the trial."""
    trial_id = _trial_id(result)
    run_dir = storage.join(trials_dir, trial_id)
    params = cfg.expand({k: (result.config or {}).get(k) for k in cfg.sampled})
    sign = 1 if cfg.mode == "max" else -1
    evals: list[dict[str, Any]] = []
    df = result.metrics_dataframe
    if df is not None and cfg.metric in df.columns:
        for rec in df.to_dict("records"):
            value = _finite(rec.get(cfg.metric))
            if value is None:
                continue
            path = rec.get("checkpoint_path")
            evals.append({
                "epoch": int(rec["epoch"]) if _finite(rec.get("epoch")) is not None else None,
                "step": int(rec["step"]) if _finite(rec.get("step")) is not None else None,
                "value": value,
                "checkpoint": storage.join(run_dir, storage.basename(path)) if isinstance(path, str) else None,
            })  # fmt: skip
    best = max(evals, key=lambda e: sign * e["value"]) if evals else None
    if result.error is not None and state in (None, "ERROR"):
        lines = str(result.error).strip().splitlines()
        status, error = "error", (lines[-1] if lines else type(result.error).__name__)
    elif state not in (None, "TERMINATED", "ERROR"):
        status, error = "pending", None  # not started, or interrupted: a resumed sweep runs it
    elif storage.exists(storage.join(run_dir, "run.json")):
        status, error = "completed", None
    else:
        status, error = "stopped", None
    return {
        "trial_id": trial_id,
        "status": status,
        "params": params,
        "epochs": max((e["epoch"] or 0 for e in evals), default=0),
        "evaluations": len(evals),
        "best": best["value"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "best_step": best["step"] if best else None,
        "last": evals[-1]["value"] if evals else None,
        "checkpoint": best["checkpoint"] if best else None,
        "run_dir": run_dir,
        "time_s": _finite((result.metrics or {}).get("time_total_s")),
        "curve": [(e["epoch"], e["value"]) for e in evals],
        "error": error,
    }


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def table(cfg: SweepConfig, rows: list[dict[str, Any]]) -> tuple[str, str]:
    """(markdown, csv) of the rows, best first."""
    keys = list(cfg.sampled)
    head = ["trial", "status", *keys, "epochs", f"best {cfg.metric}", "at epoch", f"last {cfg.metric}", "time (s)"]
    body = []
    for r in rows:
        body.append([r["trial_id"], r["status"], *[_fmt(r["params"][k]) for k in keys], str(r["epochs"]),
                     _fmt(r["best"]), _fmt(r["best_epoch"]), _fmt(r["last"]),
                     "" if r["time_s"] is None else f"{r['time_s']:.0f}"])  # fmt: skip
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(line) + " |" for line in body]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial_id", "status", *keys, "epochs", "best", "best_epoch", "best_step", "last", "time_s",
                     "checkpoint", "run_dir", "error"])  # fmt: skip
    for r in rows:
        writer.writerow([r["trial_id"], r["status"], *[_fmt(r["params"][k]) for k in keys], r["epochs"], r["best"],
                         r["best_epoch"], r["best_step"], r["last"], r["time_s"], r["checkpoint"], r["run_dir"],
                         r["error"]])  # fmt: skip
    return "\n".join(md) + "\n", buf.getvalue()


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_param(cfg: SweepConfig, key: str, rows: list[dict[str, Any]]) -> bytes:
    """PNG: the best metric of every trial against the parameter ``key`` (marker by status)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=110)
    entry = cfg.space[key]
    values = [r["params"][key] for r in rows]
    numeric = _numeric(values)
    labels: list[str] = []
    if not numeric:
        labels = list(dict.fromkeys(_fmt(v) for v in values))
    markers = {"completed": ("o", "tab:blue"), "stopped": ("x", "tab:orange"), "error": ("s", "tab:red")}
    for status, (marker, color) in markers.items():
        pts = [(r["params"][key], r["best"]) for r in rows if r["status"] == status and r["best"] is not None]
        if not pts:
            continue
        xs = [p[0] if numeric else labels.index(_fmt(p[0])) for p in pts]
        ax.scatter(xs, [p[1] for p in pts], marker=marker, color=color, label=status)
    if numeric:
        positive = [v for v in values if v > 0]
        if entry.kind == "loguniform" or (len(positive) == len(values) and max(positive) / min(positive) >= 50):
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(labels)), labels, rotation=20)
    ax.set_xlabel(key)
    ax.set_ylabel(f"best {cfg.metric}")
    ax.set_title(f"{cfg.name}: {cfg.metric} vs {key}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _png(fig) -> bytes:
    """The figure as PNG bytes (and closed)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def plot_curves(cfg: SweepConfig, rows: list[dict[str, Any]]) -> bytes:
    """PNG: every trial's metric per epoch (trials stopped early end early)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for r in rows:
        pts = [(e, v) for e, v in r["curve"] if e is not None]
        if pts:
            style = "-" if r["status"] == "completed" else "--"
            label = ", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in r["params"].items())
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(cfg.metric)
    ax.set_title(f"{cfg.name}: dev curves (dashed: stopped early)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return _png(fig)


def write_results(cfg: SweepConfig, grid, sweep_dir: str, states: dict[str, str] | None = None) -> dict[str, Any]:
    """Rows of every trial of ``grid`` (a Tune ResultGrid; ``states``: Tune's status of each trial id), the
    table/plots/best files; returns the summary."""
    trials_dir = storage.join(sweep_dir, "trials")
    states = states or {}
    rows = []
    for result in grid:
        rows.append(trial_row(cfg, result, trials_dir, states.get(_trial_id(result))))
    sign = 1 if cfg.mode == "max" else -1
    rows.sort(key=lambda r: (r["best"] is None, -sign * (r["best"] or 0.0), STATUS_ORDER[r["status"]], r["trial_id"]))
    md, csv_text = table(cfg, rows)
    files = {
        "table_md": storage.join(sweep_dir, "results.md"),
        "table_csv": storage.join(sweep_dir, "results.csv"),
        "table_json": storage.join(sweep_dir, "results.json"),
    }
    storage.write_text(files["table_md"], md)
    storage.write_text(files["table_csv"], csv_text)
    storage.write_text(files["table_json"], json.dumps(rows, indent=1, ensure_ascii=False))
    plots = {}
    if any(r["best"] is not None for r in rows):
        for key in cfg.sampled:
            plots[key] = storage.join(sweep_dir, "plots", f"{storage.safe_name(key)}.png")
            storage.write_bytes(plots[key], plot_param(cfg, key, rows))
        plots["curves"] = storage.join(sweep_dir, "plots", "curves.png")
        storage.write_bytes(plots["curves"], plot_curves(cfg, rows))
    best = next((r for r in rows if r["best"] is not None), None)
    best_info = None
    if best is not None:
        best_info = {
            "trial_id": best["trial_id"],
            "params": best["params"],
            "metric": cfg.metric,
            cfg.metric: best["best"],
            "epoch": best["best_epoch"],
            "step": best["best_step"],
            "checkpoint": best["checkpoint"],
            "run_dir": best["run_dir"],
            "status": best["status"],
            "train_config": storage.join(sweep_dir, "best", "train_config.yaml"),
        }
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {
        "sweep_dir": sweep_dir,
        "metric": cfg.metric,
        "mode": cfg.mode,
        "num_trials": len(rows),
        "status": counts,
        "best": best_info,
        "trials": [{k: v for k, v in r.items() if k != "curve"} for r in rows],
        "files": files,
        "plots": plots,
    }
