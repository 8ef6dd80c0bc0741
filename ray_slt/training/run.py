"""``run_training(cfg)``: a ``TorchTrainer`` running :func:`ray_slt.training.loop.train_func` on Ray Train.

setup (datasets from the task, run directory, trainer) -> fit -> summary (``run.json`` in the run directory:
best checkpoint on dev BLEU-4, latest checkpoint, curves) -> return it. The run directory is
``{trainer.storage}/{trainer.name}`` (local or ``s3://``); Ray Train writes its checkpoints there
(``checkpoint_e{epoch}_s{step}/``), the loop its learning curves (``metrics/``) and dev predictions.
Re-running with the same storage and name resumes from that run's latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

from ray_slt import storage
from ray_slt.config import config_hash, dump_yaml
from ray_slt.errors import ConfigError, RaySltError
from ray_slt.training.config import TrainConfig
from ray_slt.training.loop import MODEL_DIR, loop_config, steps_per_epoch, total_steps, train_func

log = logging.getLogger("ray_slt.train")


class TrainingError(RaySltError):
    """The training run failed (after its allowed retries)."""


def run_dir(cfg: TrainConfig) -> str:
    return storage.join(cfg.trainer.storage, cfg.trainer.name)


def _storage_args(uri: str) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for Ray Train: local paths as they are; remote URIs through
    their fsspec filesystem, so endpoints and credentials come from the same place as all other I/O."""
    if storage.is_local(uri):
        return storage.normalize(uri), None
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = fsspec.core.url_to_fs(uri)
    return path, PyFileSystem(FSSpecHandler(fs))


def _uri(path: str, like: str) -> str:
    """A path returned by Ray Train (without scheme for remote storage) as a URI like ``like``."""
    if storage.is_local(like) or "://" in path:
        return path
    return f"{storage.protocol(like)}://{path.lstrip('/')}"


def count_samples(task, datasets: dict) -> int:
    n = task.num_train_samples()
    return int(n) if n is not None else int(datasets["train"].count())


def prepare_datasets(cfg: TrainConfig, task, datasets: dict | None = None) -> dict:
    """The task's datasets, with dev (read by every worker at each evaluation) and, when no CPU would be left
    to stream it (``data.materialize``), train read into the object store once."""
    import ray
    from ray.data import DataContext

    # Per-epoch progress bars of the split coordinator interleave with the workers' logs; the learning curves
    # report progress instead.
    DataContext.get_current().enable_progress_bars = False
    datasets = dict(datasets if datasets is not None else task.datasets())
    if "dev" in datasets:
        datasets["dev"] = datasets["dev"].materialize()
    t = cfg.trainer
    materialize = cfg.data.materialize
    if materialize is None:
        spare = ray.cluster_resources().get("CPU", 0) - t.num_workers * t.cpus_per_worker
        materialize = spare < 1
        if materialize:
            log.info(
                "no CPU left for streaming reads beside %d workers: materializing the training data", t.num_workers
            )
    if materialize:
        datasets["train"] = datasets["train"].materialize()
    return datasets


def build_trainer(cfg: TrainConfig, datasets: dict | None = None, callbacks: list | None = None):
    """The ``TorchTrainer`` of a config (not started) and ``info`` (run_dir, num_train_samples, total_steps).
    ``datasets`` default to the task's; ``callbacks`` are Ray Train ``UserCallback``s (a Tune trial passes one
    that forwards the dev evaluations to Tune, see :mod:`ray_slt.tune.trial`)."""
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ray_slt.training.task import task_for

    task = task_for(cfg)
    datasets = prepare_datasets(cfg, task, datasets)
    n_train = count_samples(task, datasets)
    if steps_per_epoch(cfg, n_train) < 1:
        raise RaySltError(
            f"{n_train} training samples make no optimizer step per epoch with {cfg.trainer.num_workers} workers, "
            f"batch {cfg.optim.batch_size} and grad_accum {cfg.optim.grad_accum}"
        )
    t = cfg.trainer
    rdir = run_dir(cfg)
    storage_path, filesystem = _storage_args(cfg.trainer.storage)
    resources = {"CPU": t.cpus_per_worker}
    if t.use_gpu:
        resources["GPU"] = t.gpus_per_worker or 1
    scaling = ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources)
    run_config = RunConfig(
        name=t.name,
        storage_path=storage_path,
        storage_filesystem=filesystem,
        failure_config=FailureConfig(max_failures=t.max_failures),
        callbacks=list(callbacks or []),
        checkpoint_config=CheckpointConfig(
            num_to_keep=t.num_to_keep, checkpoint_score_attribute="dev_bleu4", checkpoint_score_order="max"
        ),
    )
    options = ExecutionOptions(preserve_order=True)  # a deterministic order (for exact resumes)
    # Relative local paths in a config (data, caches, trainer.storage) mean the driver's working directory; by
    # default Ray Train moves every worker into a per-run scratch directory, where they do not exist.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    trainer = TorchTrainer(
        train_func,
        train_loop_config=loop_config(cfg, rdir, n_train),
        scaling_config=scaling,
        run_config=run_config,
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"], execution_options=options),
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
    )
    info = {"run_dir": rdir, "num_train_samples": n_train, "total_steps": total_steps(cfg, n_train)}
    return trainer, info


def _summary(cfg: TrainConfig, result, info: dict) -> dict[str, Any]:
    like = cfg.trainer.storage
    best = None
    checkpoints = []
    for ckpt, metrics in result.best_checkpoints or []:
        score = metrics.get("dev_bleu4")
        entry = {
            "checkpoint": _uri(ckpt.path, like),
            "step": metrics.get("step"),
            "epoch": metrics.get("epoch"),
            "dev_bleu4": score if isinstance(score, int | float) and math.isfinite(score) and score >= 0 else None,
        }
        checkpoints.append(entry)
        if entry["dev_bleu4"] is not None and (best is None or entry["dev_bleu4"] > best["dev_bleu4"]):
            best = entry
    latest = _uri(result.checkpoint.path, like) if result.checkpoint is not None else None
    if best is None and latest is not None:  # no evaluation: the latest is the one to use
        best = {"checkpoint": latest, "step": result.metrics.get("step"), "dev_bleu4": None}
    if best is not None:
        best["model"] = storage.join(best["checkpoint"], MODEL_DIR)
    rdir = info["run_dir"]
    ret = result.return_value or {}
    return {
        "run_dir": rdir,
        "stage": cfg.stage,
        "config_hash": config_hash(cfg),
        "num_workers": cfg.trainer.num_workers,
        "backend": cfg.trainer.backend,
        "num_train_samples": info["num_train_samples"],
        "total_steps": info["total_steps"],
        "steps": ret.get("step"),
        "samples": ret.get("samples"),
        "train_time_s": ret.get("train_time_s"),
        "train_samples_per_s": ret.get("train_samples_per_s"),
        "best": best,
        "latest": latest,
        "checkpoints": checkpoints,
        "metrics": {k: v for k, v in (result.metrics or {}).items() if not isinstance(v, float) or math.isfinite(v)},
        "last_dev": ret.get("last_dev"),
        "curves": {
            "train": storage.join(rdir, "metrics", "train.jsonl"),
            "dev": storage.join(rdir, "metrics", "dev.jsonl"),
        },
    }


def run_training(cfg: TrainConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train ``cfg`` on the connected Ray cluster (or a local one) and return the run summary. ``callbacks``:
    Ray Train ``UserCallback``s of the run (e.g. the Tune trial's reporter)."""
    import ray

    if cfg.stage == "grpo":  # RVLF stage 3 trains with TRL's GRPO trainer on Ray Train, not with this loop
        from ray_slt.training.grpo import run_grpo

        if callbacks:
            raise ConfigError("stage grpo takes no Ray Train callbacks (Tune sweeps of GRPO runs are not supported)")

        return run_grpo(cfg)
    if not ray.is_initialized():
        ray.init()
    trainer, info = build_trainer(cfg, callbacks=callbacks)
    rdir = info["run_dir"]
    check_resumable(cfg, rdir)
    storage.write_text(storage.join(rdir, "train_config.yaml"), dump_yaml(cfg))
    from ray.train.v2.api.exceptions import TrainingFailedError

    try:
        result = trainer.fit()
    except TrainingFailedError as e:
        raise TrainingError(f"training failed: {_first_line(e)} (run directory {rdir})") from e
    if result.error is not None:
        raise TrainingError(f"training failed: {_first_line(result.error)} (run directory {rdir})")
    summary = _summary(cfg, result, info)
    if summary["best"] is not None:
        # a stable path to the chosen model (Ray deletes checkpoints beyond num_to_keep; this copy stays)
        summary["best_model"] = storage.join(rdir, "best", MODEL_DIR)
        copy_model(summary["best"]["model"], summary["best_model"])
        storage.write_text(
            storage.join(rdir, "best", "best.json"), json.dumps(summary["best"], indent=1, ensure_ascii=False)
        )
    storage.write_text(storage.join(rdir, "run.json"), json.dumps(summary, indent=1, ensure_ascii=False))
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


def copy_model(src: str, dst: str) -> None:
    """Copy a model directory file by file (each copy atomic), its MANIFEST.json last."""
    from ray_slt.models.checkpoint import MANIFEST

    files = json.loads(storage.read_text(storage.join(src, MANIFEST)))["files"]
    storage.remove(storage.join(dst, MANIFEST))
    for f in files:
        parts = f["path"].split("/")
        storage.copy(storage.join(src, *parts), storage.join(dst, *parts))
    storage.copy(storage.join(src, MANIFEST), storage.join(dst, MANIFEST))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
