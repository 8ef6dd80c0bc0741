"""``run_sweep(cfg)``: a hyperparameter sweep on Ray Tune whose trials are training runs of ``train_func``.

setup (the base training config, the space checked against the training schema, the Tune search space,
search algorithm, ASHA) -> ``Tuner.fit()`` (or ``Tuner.restore`` of an interrupted sweep) -> results (table,
plots, best trial: :mod:`ray_slt.tune.results`).

Layout of a sweep at ``{storage}/{name}`` (local or ``s3://``)::

    sweep.json              the sweep config, its hash, the base training config, resources/concurrency
    trials/{trial_id}/      each trial's training run: checkpoint_*/, metrics/, predictions/, tune_trial.json,
                            run.json + best/ (trials trained to the end)
    tune_{trial_id}/        Tune's per-trial records (params.json, result.json, progress.csv)
    tuner.pkl, experiment_state-*.json   Tune's experiment state (what a resume reads)
    results.md|csv|json, plots/*.png, best.json, best/train_config.yaml   (written when the sweep ends)

Running the same config again resumes the sweep: finished trials are kept, unfinished ones restart and their
Ray Train runs continue from their latest checkpoints. A changed config under the same name is refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

from ray_slt import storage
from ray_slt.config import config_dict, config_hash, dump_yaml
from ray_slt.errors import ConfigError, RaySltError
from ray_slt.tune.config import SpaceEntry, SweepConfig, max_epochs, resolve_sweep

log = logging.getLogger("ray_slt.tune")

SWEEP_FILE = "sweep.json"
DRIVER_MEMORY = 256 * 2**20  # bytes of Ray's memory resource a trial's Tune actor reserves


class SweepError(RaySltError):
    """The sweep could not run or produced no result."""


def sweep_dir(cfg: SweepConfig) -> str:
    return storage.normalize(storage.join(cfg.storage, cfg.name))


def tune_domain(entry: SpaceEntry, algorithm: str):
    """The Tune search-space object of one entry for the chosen algorithm."""
    from ray import tune

    kind, value = entry.kind, entry.value
    if kind in ("grid", "choice"):
        if algorithm == "grid" or (kind == "grid" and algorithm == "random"):
            return tune.grid_search(list(value))
        if algorithm == "optuna" and not all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
            raise ConfigError(f"search.algorithm optuna: choices must be numbers or strings, got {value!r}")
        return tune.choice(list(value))
    lo, hi = value
    if kind == "uniform":
        return tune.uniform(lo, hi)
    if kind == "loguniform":
        return tune.loguniform(lo, hi)
    return tune.randint(int(lo), int(hi) + 1)  # Tune's upper bound is exclusive


def param_space(cfg: SweepConfig) -> dict[str, Any]:
    return {key: tune_domain(entry, cfg.search.algorithm) for key, entry in cfg.sampled.items()}


def trial_resources(base: dict[str, Any], driver_cpus: float) -> dict[str, float]:
    """CPUs/GPUs one trial holds: its Ray Train workers plus its Tune actor."""
    t = base["trainer"]
    res = {"CPU": t["num_workers"] * t["cpus_per_worker"] + driver_cpus}
    if t["use_gpu"]:
        res["GPU"] = t["num_workers"] * (t["gpus_per_worker"] or 1)
    return res


def concurrency(cfg: SweepConfig, base: dict[str, Any]) -> int:
    """``search.max_concurrent_trials`` or as many trials as the cluster's CPUs (and GPUs) hold at once.
    Tune cannot see the Ray Train workers' resources (they are the trial's own Ray Train run's placement group),
    so the sweep limits concurrency itself: otherwise trials would start and wait for workers."""
    if cfg.search.max_concurrent_trials:
        return cfg.search.max_concurrent_trials
    import ray

    total = ray.cluster_resources()
    need = trial_resources(base, cfg.resources.driver_cpus)
    fits = [math.floor(total.get(k, 0) / v + 1e-9) for k, v in need.items() if v > 0]
    return max(1, min(fits) if fits else 1)


def _materialize(base: dict[str, Any], n_concurrent: int) -> dict[str, Any]:
    """``data.materialize`` when the config leaves it open: the training loop decides it from the whole
    cluster's CPUs, but trials share the cluster; when the concurrent trials' workers take every CPU, no
    read task could stream a trial's training data, so it is read into the object store first. Otherwise the
    trial's loop decides as for any run."""
    if base["data"].get("materialize") is not None:
        return base
    import ray

    t = base["trainer"]
    spare = ray.cluster_resources().get("CPU", 0) - n_concurrent * t["num_workers"] * t["cpus_per_worker"]
    if spare >= 1:
        return base  # each trial's loop decides (a small training split is still read once)
    return {**base, "data": {**base["data"], "materialize": True}}


def _search_alg(cfg: SweepConfig, n_concurrent: int):
    """The search algorithm, limited to ``n_concurrent`` running trials (Tune's ``max_concurrent_trials`` only
    applies to ``Searcher``s such as Optuna's; its own variant generator takes the limit itself)."""
    if cfg.search.algorithm == "optuna":
        try:
            import optuna  # noqa: F401
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as e:
            raise ConfigError(f"search.algorithm optuna needs the optuna package ({e})") from None
        return OptunaSearch(seed=cfg.search.seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=n_concurrent, random_state=cfg.search.seed)


def _scheduler(cfg: SweepConfig, base: dict[str, Any], trials_dir: str):
    from ray.tune.schedulers import FIFOScheduler

    from ray_slt.tune.scheduler import ResumableASHA

    s = cfg.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    max_t = s.max_t or max_epochs(cfg, base)
    if s.grace_period > max_t:
        raise ConfigError(f"scheduler.grace_period ({s.grace_period}) exceeds the trials' {max_t} epochs")
    return ResumableASHA(
        trials_dir, cfg.metric, time_attr="epoch", max_t=max_t, grace_period=s.grace_period,
        reduction_factor=s.reduction_factor, brackets=s.brackets,
    )  # fmt: skip


def _trial_dirname(trial) -> str:
    return f"tune_{trial.trial_id}"


def preflight_sweep(cfg: SweepConfig, base: dict[str, Any]) -> None:
    """What can fail before Ray starts, in one line: the trials' training inputs (data, DeepSpeed file: the training
    preflight of the base config) and the sweep storage (reachable, credentials for s3://)."""
    from ray_slt.config import build_config
    from ray_slt.training.run import preflight

    preflight(build_config(base, source="the train config"))
    if not storage.is_local(cfg.storage):
        storage.exists(cfg.storage)  # a missing prefix is fine; missing credentials are not


def run_sweep(cfg: SweepConfig) -> dict[str, Any]:
    """Run (or resume) the sweep on the connected Ray cluster (or a local one) and return its summary."""
    import ray
    from ray import tune

    from ray_slt.tune.results import write_results
    from ray_slt.tune.trial import TrainRunTrial

    cfg, base = resolve_sweep(cfg)
    space = param_space(cfg)
    sdir = sweep_dir(cfg)
    preflight_sweep(cfg, base)
    if not ray.is_initialized():
        ray.init()
    # Relative paths of the training config mean the driver's working directory: keep every trial (and its Ray
    # Train workers) there instead of Tune's per-trial directory (Tune passes this variable to its actors).
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    n_concurrent = concurrency(cfg, base)
    base = _materialize(base, n_concurrent)
    ties = {k: e.same_as for k, e in cfg.space.items() if e.same_as is not None}
    from ray_slt.training.task import STAGES

    # the stage's registration travels with the trials (a stage registered outside ray_slt is known there too)
    setup = {"train": base, "trials_dir": storage.join(sdir, "trials"), "ties": ties,
             "stage_target": STAGES.target(base["stage"])}  # fmt: skip
    # The trial's Tune actor only waits on its Ray Train run; a placement group needs some resource, so it holds
    # a little memory and resources.driver_cpus (default 0) CPUs: the trial's workers get the CPUs/GPUs.
    driver = {"CPU": cfg.resources.driver_cpus, "memory": DRIVER_MEMORY}
    trainable = tune.with_resources(tune.with_parameters(TrainRunTrial, setup=setup), driver)
    storage_path, filesystem = storage.arrow_location(cfg.storage)
    chash = config_hash(cfg)
    sweep_file = storage.join(sdir, SWEEP_FILE)
    resumed = False
    t0 = time.time()
    if storage.exists(sweep_file) and tune.Tuner.can_restore(_tune_path(storage_path, cfg.name), filesystem):
        previous = json.loads(storage.read_text(sweep_file))
        if previous.get("config_hash") != chash:
            raise ConfigError(
                f"{sdir} holds a sweep of another config (hash {previous.get('config_hash')}, now {chash}); "
                "give this one another name"
            )
        log.info("resuming the sweep at %s", sdir)
        tuner = tune.Tuner.restore(
            _tune_path(storage_path, cfg.name), trainable=trainable, resume_unfinished=True,
            resume_errored=False, restart_errored=False, storage_filesystem=filesystem,
        )  # fmt: skip
        resumed = True
    else:
        info = {
            "config_hash": chash,
            "config": config_dict(cfg),
            "train_config": base,
            "trial_resources": trial_resources(base, cfg.resources.driver_cpus),
            "max_concurrent_trials": n_concurrent,
            "started": t0,
        }
        storage.write_text(sweep_file, json.dumps(info, indent=1, ensure_ascii=False))
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=cfg.metric,
                mode=cfg.mode,
                search_alg=_search_alg(cfg, n_concurrent),
                scheduler=_scheduler(cfg, base, setup["trials_dir"]),
                num_samples=cfg.search.num_samples,
                max_concurrent_trials=n_concurrent if cfg.search.algorithm == "optuna" else None,
                time_budget_s=cfg.search.time_budget_s,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=cfg.name,
                storage_path=storage_path,
                storage_filesystem=filesystem,
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                # no Tune checkpoints: each trial's Ray Train run checkpoints (and resumes) itself
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=0, checkpoint_at_end=False),
                verbose=1,
            ),
        )
    grid = tuner.fit()
    wall = time.time() - t0
    # Tune's own trial states (an interrupted sweep returns with some trials still pending or running)
    analysis = tune.ExperimentAnalysis(_tune_path(storage_path, cfg.name), storage_filesystem=filesystem)
    states = {t.trial_id: t.status for t in analysis.trials}
    summary = write_results(cfg, grid, sdir, states)
    unfinished = sum(status not in ("TERMINATED", "ERROR") for status in states.values())
    summary.update(
        resumed=resumed, unfinished=unfinished, wall_time_s=round(wall, 2), max_concurrent_trials=n_concurrent
    )
    best = summary["best"]
    if best is not None:
        # the best trial's full training config: `ray-slt train` runs it (under another trainer.name to retrain)
        best_cfg = _best_config(best, base)
        storage.write_text(best["train_config"], dump_yaml(best_cfg))
        best["config"] = config_dict(best_cfg)
        storage.write_text(storage.join(sdir, "best.json"), json.dumps(best, indent=1, ensure_ascii=False))
    storage.write_text(storage.join(sdir, "summary.json"), json.dumps(summary, indent=1, ensure_ascii=False))
    if unfinished:
        raise SweepError(
            f"the sweep at {sdir} stopped with {unfinished} unfinished trials (interrupted); "
            "run the same command again to resume it"
        )
    if best is None:
        errors = "; ".join(f"{r['trial_id']}: {r['error']}" for r in summary["trials"] if r.get("error"))
        raise SweepError(f"no trial of {sdir} reported {cfg.metric}" + (f" ({errors})" if errors else ""))
    return summary


def _tune_path(storage_path: str, name: str) -> str:
    return storage_path.rstrip("/") + "/" + name


def _best_config(best: dict[str, Any], base: dict[str, Any]):
    from ray_slt.tune.trial import trial_train_config

    setup = {"train": base, "trials_dir": storage.parent(best["run_dir"])}
    return trial_train_config(setup, best["params"], best["trial_id"])
