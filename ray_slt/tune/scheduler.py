"""ASHA for sweeps of training runs: epochs as its time unit, rungs that survive a resumed sweep."""

from __future__ import annotations

import json

from ray.tune.schedulers import ASHAScheduler

from ray_slt import storage


class ResumableASHA(ASHAScheduler):
    """``ASHAScheduler`` whose rungs survive a resume.

    ``Tuner.restore`` rebuilds the scheduler from its initial state: the scores the trials reached before the
    interruption would be gone, and no resumed trial could be stopped at a rung the others had passed. When Tune
    adds a restored trial, this replays its dev evaluations (its training run's ``metrics/dev.jsonl``, written by
    the loop at each evaluation) into the rungs, as the results Tune saw before.
    """

    def __init__(self, trials_dir: str, replay_metric: str, **kwargs):
        super().__init__(**kwargs)
        self.trials_dir = trials_dir
        self.replay_metric = replay_metric

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        uri = storage.join(self.trials_dir, trial.trial_id, "metrics", "dev.jsonl")
        if not storage.exists(uri):
            return
        for line in storage.read_text(uri).splitlines():
            rec = json.loads(line) if line.strip() else {}
            value = rec.get(self.replay_metric)
            if rec.get("step", 0) > 0 and isinstance(value, int | float):
                # the loop reports the number of epochs completed: the curve's 0-based epoch + 1
                self.on_trial_result(tune_controller, trial, {"epoch": rec["epoch"] + 1, self.replay_metric: value})
