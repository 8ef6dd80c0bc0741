"""``run_training(cfg)``: the one Ray Train driver of every stage and recipe.

setup (the stage's task and recipe, its datasets, the run directory, a ``TorchTrainer`` running the recipe's
per-worker function) -> fit -> summary (``run.json`` in the run directory: the best checkpoint on the stage's
selection metric, the latest, throughput, curves) -> a stable copy of the best model (``{run}/best/model``).
The run directory is ``{trainer.storage}/{trainer.name}`` (local or ``s3://``); Ray Train writes its checkpoints
there (``checkpoint_e{epoch}_s{step}/``, each with ``model/`` and ``train_state.json``), the recipe its learning
curves (``metrics/``) and dev predictions. Re-running with the same storage and name resumes from that run's
latest checkpoint.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

from ray_slt import storage
from ray_slt.config import config_hash, dump_yaml
from ray_slt.errors import ConfigError, RaySltError, last_line
from ray_slt.models.registry import MODEL_DIR, RUN_FILE, copy_model
from ray_slt.training.config import TrainConfig
from ray_slt.training.recipe import Recipe, loop_config, recipe_for
from ray_slt.training.task import task_for

log = logging.getLogger("ray_slt.train")


class TrainingError(RaySltError):
    """The training run failed (after its allowed retries)."""


def run_dir(cfg: TrainConfig) -> str:
    return storage.join(cfg.trainer.storage, cfg.trainer.name)


def state_api_available(timeout_s: float = 5.0) -> bool:
    """Whether the connected Ray answers State API queries (it needs the dashboard, which an embedded local Ray
    started with ``include_dashboard=False`` does not run)."""
    from ray.util.state import list_nodes
    from ray.util.state.exception import RayStateApiException

    try:
        list_nodes(limit=1, timeout=max(1, int(timeout_s)), raise_on_missing_output=False)
    except (RayStateApiException, ConnectionError, OSError, ValueError, RuntimeError):
        return False
    return True


@functools.cache
def trainer_class():
    """Ray Train's ``TorchTrainer``, minus its placement-group cleaner when the State API is unavailable.

    Ray Train v2 starts a detached ``PlacementGroupCleaner`` beside each run's controller; it polls the State API
    for the controller's liveness and removes the run's placement group (destroying its healthy workers) when an
    answer says the controller is gone. Without the dashboard that API cannot answer: the cleaner logs a warning
    every second, and on a busy machine an empty answer reads as "dead" (a run was killed at step ~90 of ~1,200
    that way). Where the State API works (a cluster with its dashboard) the cleaner stays; where it does not, the
    cleaner could never do its job (and a local Ray's placement groups end with the driver anyway), so it is left
    out."""
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    class Trainer(TorchTrainer):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            if state_api_available():
                return callbacks
            log.info("the State API is unavailable (no dashboard): running without Ray Train's placement-group "
                     "cleaner")  # fmt: skip
            return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]

    return Trainer


def build_trainer(cfg: TrainConfig, callbacks: list | None = None) -> tuple[Any, dict[str, Any]]:
    """The ``TorchTrainer`` of a config (not started) and ``info`` (run_dir, recipe, selection,
    num_train_samples, total_steps). ``callbacks`` are Ray Train ``UserCallback``s (a Tune trial passes one that
    forwards the dev evaluations to Tune, see :mod:`ray_slt.tune.trial`)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    task = task_for(cfg)
    recipe = recipe_for(cfg, task)
    recipe.check()
    selection = task.selection
    datasets = recipe.datasets()
    n_train = recipe.num_train_samples(datasets)
    t = cfg.trainer
    rdir = run_dir(cfg)
    storage_path, filesystem = storage.arrow_location(t.storage)
    resources = {"CPU": t.cpus_per_worker}
    if t.use_gpu:
        resources["GPU"] = t.gpus_per_worker or 1
    evaluated = bool(cfg.eval.every_epochs)
    run_config = RunConfig(
        name=t.name,
        storage_path=storage_path,
        storage_filesystem=filesystem,
        failure_config=FailureConfig(max_failures=t.max_failures),
        callbacks=list(callbacks or []),
        checkpoint_config=CheckpointConfig(
            num_to_keep=t.num_to_keep,
            # without dev evaluations there is nothing to rank by: Ray keeps the latest checkpoints
            checkpoint_score_attribute=selection.key if evaluated else None,
            checkpoint_score_order=selection.mode,
        ),
    )
    # Relative local paths in a config (data, caches, trainer.storage) mean the driver's working directory; by
    # default Ray Train moves every worker into a per-run scratch directory, where they do not exist.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    kwargs: dict[str, Any] = {}
    if datasets:
        kwargs["datasets"] = datasets
        if recipe.dataset_config() is not None:
            kwargs["dataset_config"] = recipe.dataset_config()
    trainer = trainer_class()(
        recipe.train_func(),
        train_loop_config=loop_config(cfg, rdir, n_train),
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources),
        run_config=run_config,
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        **kwargs,
    )
    info = {
        "run_dir": rdir,
        "recipe": recipe,
        "selection": selection,
        "num_train_samples": n_train,
        "total_steps": recipe.total_steps(n_train),
    }
    return trainer, info


def _summary(cfg: TrainConfig, result, info: dict) -> dict[str, Any]:
    like = cfg.trainer.storage
    selection = info["selection"]
    key = selection.key
    best = None
    checkpoints = []
    for ckpt, metrics in result.best_checkpoints or []:
        score = metrics.get(key)
        entry = {
            "checkpoint": storage.from_arrow_path(ckpt.path, like),
            "step": metrics.get("step"),
            "epoch": metrics.get("epoch"),
            key: score if metrics.get("evaluated") and selection.is_score(score) else None,
        }
        checkpoints.append(entry)
        if entry[key] is not None and (best is None or selection.better(entry[key], best[key])):
            best = entry
    latest = storage.from_arrow_path(result.checkpoint.path, like) if result.checkpoint is not None else None
    if best is None and latest is not None:  # no evaluation: the latest is the one to use
        best = {"checkpoint": latest, "step": (result.metrics or {}).get("step"), key: None}
    if best is not None:
        best["model"] = storage.join(best["checkpoint"], MODEL_DIR)
    rdir = info["run_dir"]
    figures = result.return_value or {}
    recipe: Recipe = info["recipe"]
    return {
        "run_dir": rdir,
        "stage": cfg.stage,
        "recipe": recipe.name,
        "protocol": recipe.task.protocol,
        "selection": {"metric": key, "mode": selection.mode},
        "config_hash": config_hash(cfg),
        "num_workers": cfg.trainer.num_workers,
        "backend": cfg.trainer.backend,
        "num_train_samples": figures.get("num_train_samples", info["num_train_samples"]),
        "total_steps": figures.get("total_steps", info["total_steps"]),
        "steps": figures.get("step"),
        "stopped_early": bool(figures.get("stopped_early")),
        "samples": figures.get("samples"),
        "train_time_s": figures.get("train_time_s"),
        "train_samples_per_s": figures.get("train_samples_per_s"),
        **recipe.summary(figures),
        "best": best,
        "latest": latest,
        "checkpoints": checkpoints,
        "metrics": {k: v for k, v in (result.metrics or {}).items() if not isinstance(v, float) or abs(v) < 1e300},
        "last_dev": figures.get("last_dev"),
        "curves": {
            "train": storage.join(rdir, "metrics", "train.jsonl"),
            "dev": storage.join(rdir, "metrics", "dev.jsonl"),
        },
    }


def preflight(cfg: TrainConfig) -> None:
    """What can be checked before Ray starts, each failing in one line: the data the stage reads
    (:meth:`Task.check_inputs`), the recipe's settings (:meth:`Recipe.check`), the run storage (reachable,
    credentials for s3://) and a DeepSpeed config file."""
    from ray_slt.errors import StorageError

    task = task_for(cfg)
    task.check_inputs()
    recipe_for(cfg, task).check()
    if not storage.is_local(cfg.trainer.storage):
        storage.exists(cfg.trainer.storage)  # a missing prefix is fine; missing credentials are not
    ds = cfg.trainer.deepspeed
    if isinstance(ds, str) and not storage.exists(ds):
        raise StorageError(f"trainer.deepspeed {ds}: no such file")


def run_training(cfg: TrainConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train ``cfg`` on the connected Ray cluster (or a local one) and return the run summary. ``callbacks``:
    Ray Train ``UserCallback``s of the run (e.g. the Tune trial's reporter)."""
    import ray
    from ray.train.v2.api.exceptions import TrainingFailedError

    preflight(cfg)
    if not ray.is_initialized():
        ray.init()
    rdir = run_dir(cfg)
    check_resumable(cfg, rdir)
    trainer, info = build_trainer(cfg, callbacks=callbacks)
    storage.write_text(storage.join(rdir, "train_config.yaml"), dump_yaml(cfg))
    try:
        result = trainer.fit()
    except TrainingFailedError as e:
        raise TrainingError(f"training failed: {last_line(e)} (run directory {rdir})") from e
    if result.error is not None:
        raise TrainingError(f"training failed: {last_line(result.error)} (run directory {rdir})")
    summary = _summary(cfg, result, info)
    if summary["best"] is not None:
        # a stable path to the chosen model (Ray deletes checkpoints beyond num_to_keep; this copy stays)
        summary["best_model"] = storage.join(rdir, "best", MODEL_DIR)
        copy_model(summary["best"]["model"], summary["best_model"])
        storage.write_text(
            storage.join(rdir, "best", "best.json"), json.dumps(summary["best"], indent=1, ensure_ascii=False)
        )
    storage.write_text(storage.join(rdir, RUN_FILE), json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def _differences(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _differences(old.get(k), new.get(k), f"{prefix}.{k}")]
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def check_resumable(cfg: TrainConfig, rdir: str) -> None:
    """Refuse to go on with a run directory whose checkpoints hold a different model.

    Running a config again resumes from its run's latest checkpoint, and the model comes from that checkpoint
    with the model section it was built with (its per-group learning rates included): a changed section
    (``sft.lora.r`` 64 -> 8, say) would be ignored while ``train_config.yaml`` claimed it. Everything outside
    the model section (``optim``, ``trainer``, ``data``, ``eval``) may change on a resume.
    """
    from ray_slt.config import load_config

    path = storage.join(rdir, "train_config.yaml")
    if not storage.exists(path) or not storage.glob(storage.join(rdir, "checkpoint_*")):
        return
    old = load_config(path)
    if not isinstance(old, TrainConfig):
        return
    before = {"stage": old.stage, old.stage: getattr(old, old.stage).model_dump(mode="json")}
    after = {"stage": cfg.stage, cfg.stage: getattr(cfg, cfg.stage).model_dump(mode="json")}
    diffs = [d.removeprefix(".") for d in _differences(before, after, "")]
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise ConfigError(
            f"{rdir} holds checkpoints of a different model ({shown}); a re-run would resume from them and keep "
            "their model: give this run another trainer.name, or remove that run directory"
        )
