"""Checkpoint averaging: the element-wise mean of the weights of a run's last or best K checkpoints.

Averaging the last few checkpoints of a run (or the K best on the dev selection metric; never the test split) is
a standard recipe knob of from-scratch translators: the mean sits in a flatter region than any one checkpoint.
The result is written as a checkpoint directory of the run, ``{run}/averaged-{last|best}{K}/``: the model
(``model/``, saved by the stage's own task, so every predictor loads it) and a ``train_state.json`` that is the
newest averaged checkpoint's plus ``averaged_from``, so ``ray-slt eval {run}/averaged-last3 --split dev`` finds
the run's data like for any checkpoint.

Every floating-point tensor of the models' state dicts is averaged in float64 and cast back; tensors that are
not floating point (step counters, id buffers) must be equal in all of them, or averaging is refused. Frozen
weights (a LoRA model's base LM) are equal across checkpoints and so unchanged by the mean. The K models are held
in memory together (plus a float64 mean): meant for models that fit K times over, the CPU-sized ones here; for a
large LoRA model, averaging only its adapters would be the way (not done).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from ray_slt import storage
from ray_slt.config import load_config
from ray_slt.errors import ConfigError, StorageError
from ray_slt.models.registry import MODEL_DIR, RUN_FILE, STATE_FILE
from ray_slt.training.task import SupervisedTask, task_for


def choose(run: dict[str, Any], k: int, by: Literal["last", "best"]) -> list[dict[str, Any]]:
    """The run's K checkpoints to average, among those it kept (its ``run.json`` ``checkpoints``; Ray Train keeps
    the ``trainer.num_to_keep`` best on the selection metric and the latest, so a true "last K" needs
    ``num_to_keep`` >= the number of checkpoints): the K newest (by step) or the K best on the dev selection metric
    (checkpoints without a dev score are not candidates for ``best``)."""
    if k < 2:
        raise ConfigError(f"averaging needs at least 2 checkpoints (got {k})")
    checkpoints = list(run.get("checkpoints") or [])
    key, mode = run["selection"]["metric"], run["selection"]["mode"]
    if by == "best":
        scored = [c for c in checkpoints if c.get(key) is not None]
        ranked = sorted(scored, key=lambda c: (c[key] if mode == "min" else -c[key], -c["step"]))
    else:
        ranked = sorted(checkpoints, key=lambda c: -c["step"])
    if len(ranked) < k:
        raise ConfigError(
            f"the run keeps {len(ranked)} {'scored ' if by == 'best' else ''}checkpoint(s); averaging the {by} {k} "
            f"needs trainer.num_to_keep >= {k} (and a dev evaluation for each when choosing the best)"
        )
    return sorted(ranked[:k], key=lambda c: c["step"])


def mean_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The element-wise mean of state dicts with the same keys and shapes (see the module docstring)."""
    import torch

    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if s.keys() != first.keys():
            raise ConfigError(f"checkpoint {i} holds other tensors than the first: they are not the same model")
    out = {}
    for name, value in first.items():
        values = [s[name] for s in states]
        if any(v.shape != value.shape for v in values):
            raise ConfigError(f"{name}: shapes differ between the checkpoints")
        if value.is_floating_point():
            out[name] = torch.stack([v.double() for v in values]).mean(0).to(value.dtype)
        elif all(torch.equal(v, value) for v in values):
            out[name] = value
        else:
            raise ConfigError(f"{name}: a non-floating-point tensor differs between the checkpoints")
    return out


def average_run(run_dir: str, k: int = 3, by: Literal["last", "best"] = "last", out: str | None = None) -> dict:
    """Average a run's last or best ``k`` checkpoints into ``out`` (default ``{run_dir}/averaged-{by}{k}``);
    returns what ``averaged.json`` there holds."""
    run_json = storage.join(run_dir, RUN_FILE)
    if not storage.exists(run_json):
        raise StorageError(f"{run_dir}: not a finished run (no {RUN_FILE})")
    run = json.loads(storage.read_text(run_json))
    chosen = choose(run, k, by)
    cfg = load_config(storage.join(run_dir, "train_config.yaml"))
    task = task_for(cfg)
    if not isinstance(task, SupervisedTask):
        raise ConfigError(f"stage {cfg.stage!r} has no supervised model to average")
    models = [task.load(storage.join(c["checkpoint"], MODEL_DIR)) for c in chosen]
    averaged = models[-1]
    averaged.load_state_dict(mean_state([m.state_dict() for m in models]))
    out = out or storage.join(run_dir, f"averaged-{by}{k}")
    task.save(averaged, storage.join(out, MODEL_DIR))
    state = json.loads(storage.read_text(storage.join(chosen[-1]["checkpoint"], STATE_FILE)))
    info = {"by": by, "k": k, "checkpoints": [c["checkpoint"] for c in chosen], "steps": [c["step"] for c in chosen],
            "selection": run["selection"], "model": storage.join(out, MODEL_DIR), "out": out}  # fmt: skip
    state.update(averaged_from=info, metrics={}, best=None)
    storage.write_text(storage.join(out, STATE_FILE), json.dumps(state, indent=1, ensure_ascii=False))
    storage.write_text(storage.join(out, "averaged.json"), json.dumps(info, indent=1, ensure_ascii=False))
    return info
