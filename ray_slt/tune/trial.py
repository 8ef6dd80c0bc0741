"""One trial of a sweep: the training stage's own run (``run_training`` -> ``TorchTrainer(train_func)``) with the
trial's parameters, its dev evaluations passed to Tune one by one.

Why this shape (Ray 2.60, Train v2): a ``TorchTrainer`` can no longer be given to ``Tuner`` as its trainable;
Train v2 runs inside a Tune trial that builds and fits the ``TorchTrainer`` itself, with a Train ``UserCallback``
(running in the Train controller) passing every ``ray.train.report`` of rank 0 back to the trial. So a trial
calls :func:`ray_slt.training.run.run_training` - the same ``build_trainer`` and per-worker ``train_func`` as
``ray-slt train`` - and the training loop needs no Tune code: it keeps calling ``ray.train.report``.

The trial is a class ``Trainable`` (:class:`TrainRunTrial`) rather than Ray's function trainable with its
``TuneReportCallback``: when ASHA stops a function trial, Tune ends the trial's actor without waiting, which kills
the Train controller it owns before the controller can release its workers' placement group (Train's detached
cleaner actor needs the Ray dashboard's state API to notice, which a local Ray started without a dashboard does
not have): the stopped trial's CPUs stay reserved and the sweep hangs. Here ``step()`` returns the next dev
evaluation and ``cleanup()`` (which Tune calls before ending the actor) aborts the Train run through its
controller, which removes the placement group, so the next trial gets the resources.

:class:`EvaluationReporter` forwards only reports that carry a dev evaluation (``evaluated``: every recipe also
reports mid-epoch and unevaluated epoch-end checkpoints, whose selection metric is a placeholder ASHA must not
take for a score); each result carries the epoch (ASHA's time unit) and the path of the checkpoint saved with it.

Each trial is a regular training run at ``{sweep}/trials/{trial_id}``: checkpoints, learning curves and dev
predictions as in any run; ``run.json`` + ``best/`` when it trains to the end (``ray-slt eval`` takes the
directory); a trial stopped early keeps the checkpoints it saved. ``tune_trial.json`` there records the trial's
parameters and every attempt (a resumed sweep restarts an interrupted trial, whose Ray Train run continues from
its latest checkpoint; a finished trial is never started again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue as std_queue
import threading
import time
from typing import Any

from ray import tune
from ray.train import UserCallback

from ray_slt import storage
from ray_slt.config import build_config
from ray_slt.tune.config import overrides_of

log = logging.getLogger("ray_slt.tune")

TRIAL_FILE = "tune_trial.json"
ABORT_TIMEOUT_S = 120.0


class EvaluationReporter(UserCallback):
    """A Ray Train callback (it runs in the Train controller) putting rank 0's metrics of every report with a dev
    evaluation, the checkpoint's path and the controller's handle on a Ray queue that the trial reads."""

    def __init__(self, results):
        self.results = results  # ray.util.queue.Queue (unbounded: the controller never waits on the trial)

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        import ray

        if not metrics or not metrics[0].get("evaluated"):
            return
        item = {
            "metrics": {k: v for k, v in metrics[0].items() if not (isinstance(v, float) and not math.isfinite(v))},
            "checkpoint": checkpoint.path if checkpoint is not None else None,
            "controller": ray.get_runtime_context().current_actor,
        }
        self.results.put(item)


def plain(value: Any) -> Any:
    """Numpy scalars (sampled by Tune/Optuna) as Python values."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (dict, str)):
        return value.item()
    return value


def trial_train_config(setup: dict[str, Any], params: dict[str, Any], trial_id: str):
    """The TrainConfig of a trial: the sweep's base config, the trial's parameters, its run location."""
    where = {"trainer.storage": setup["trials_dir"], "trainer.name": trial_id}
    return build_config(setup["train"], overrides_of({**params, **where}), source=f"trial {trial_id}")


def is_final(cfg, metrics: dict[str, Any]) -> bool:
    """Whether a report is the run's last (the loop always evaluates at its end)."""
    o = cfg.optim
    return int(metrics.get("epoch", 0)) >= o.epochs or bool(o.max_steps and int(metrics.get("step", 0)) >= o.max_steps)


class TrainRunTrial(tune.Trainable):
    """A Tune trial running one training run; ``step()`` = the run's next dev evaluation.

    ``config``: the trial's sampled parameters (dotted training-config keys); ``setup`` (``tune.with_parameters``):
    ``{"train": the sweep's base training config (dict), "trials_dir": where the trials' runs live, "ties":
    {key: the sampled key whose value it takes}, "stage_target": the stage's registration}``.
    """

    def setup(self, config: dict[str, Any], setup: dict[str, Any] | None = None) -> None:
        from ray.util.queue import Queue

        from ray_slt.training.run import run_dir, run_training

        assert setup is not None, "TrainRunTrial needs tune.with_parameters(TrainRunTrial, setup=...)"
        if setup.get("stage_target"):
            from ray_slt.training.task import STAGES

            STAGES.ensure(setup["train"]["stage"], setup["stage_target"])
        self.params = {k: plain(v) for k, v in config.items()}
        self.params.update({key: self.params[ref] for key, ref in setup.get("ties", {}).items()})
        self.cfg = trial_train_config(setup, self.params, self.trial_id)
        self.run_dir = run_dir(self.cfg)
        self.results = Queue(actor_options={"num_cpus": 0})
        self.controller = None
        self.outcome: dict[str, Any] = {}
        self._record_attempt()
        reporter = EvaluationReporter(self.results)

        def train() -> None:
            try:
                self.outcome["summary"] = run_training(self.cfg, callbacks=[reporter])
            except BaseException as e:  # re-raised by step(), on Tune's thread
                self.outcome["error"] = e

        self.thread = threading.Thread(target=train, name=f"train-{self.trial_id}", daemon=True)
        self.thread.start()

    def _record_attempt(self, finished: dict[str, Any] | None = None) -> None:
        uri = storage.join(self.run_dir, TRIAL_FILE)
        record = json.loads(storage.read_text(uri)) if storage.exists(uri) else {"attempts": []}
        if finished is None:
            record.update(trial_id=self.trial_id, params=self.params, run_dir=self.run_dir)
            record["attempts"].append({"started": time.time()})
        else:
            record["attempts"][-1].update(finished)
        storage.write_text(uri, json.dumps(record, indent=1, ensure_ascii=False))

    def _next(self) -> dict[str, Any] | None:
        """The next evaluation, or None once the run has ended without another one."""
        from ray.util.queue import Empty

        while True:
            try:
                return self.results.get(timeout=2.0)
            except (Empty, std_queue.Empty):
                if not self.thread.is_alive():
                    try:  # a report may have arrived just before the run ended
                        return self.results.get(block=False)
                    except (Empty, std_queue.Empty):
                        return None

    def step(self) -> dict[str, Any]:
        item = self._next()
        if item is None:
            self.thread.join()
            if "error" in self.outcome:
                raise self.outcome["error"]
            # the run ended after its last evaluation (e.g. an evaluation cadence that skips the end)
            return {"done": True}
        self.controller = item["controller"] or self.controller
        result = dict(item["metrics"])
        result["checkpoint_path"] = item["checkpoint"]
        if is_final(self.cfg, result):
            self.thread.join()  # let run_training finish its summary (run.json, best/) before the trial ends
            if "error" in self.outcome:
                raise self.outcome["error"]
            best = (self.outcome.get("summary") or {}).get("best")
            self._record_attempt({"finished": time.time(), "best": best})
            result["done"] = True
        return result

    def cleanup(self) -> None:
        """Tune ends the trial (finished, stopped by the scheduler, or the sweep stops): abort a Train run that
        is still going, so its workers and their placement group are released before this actor exits."""
        import ray

        if not self.thread.is_alive():
            return
        if self.controller is None:
            log.warning("trial %s stopped before its first evaluation: its Train run is left to Ray", self.trial_id)
            return
        log.info("trial %s stopped: aborting its Ray Train run", self.trial_id)
        self._record_attempt({"stopped": time.time()})
        # abort() ends the controller actor itself: its call returns as an actor error
        with contextlib.suppress(ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            ray.get(self.controller.abort.remote(), timeout=ABORT_TIMEOUT_S)
        self.thread.join(timeout=ABORT_TIMEOUT_S)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Nothing to save for Tune: the trial's Ray Train run checkpoints itself (and resumes from them)."""
        return None

    def load_checkpoint(self, checkpoint) -> None:
        return None
