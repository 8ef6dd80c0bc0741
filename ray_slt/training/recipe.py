"""Recipes: how a stage is trained on Ray Train. One driver (:func:`ray_slt.training.run.run_training`) runs them
all: resources, scaling, storage, checkpoint policy (best on the stage's selection metric), failure handling,
the run summary and the best-model copy are the driver's; a recipe brings only what differs.

==============  ==================================================================  =========================
recipe          per-worker function                                                 stages
==============  ==================================================================  =========================
``supervised``  :func:`ray_slt.training.loop.train_func`: the generic loop over a     pretrain, sft, vlm, ...
                :class:`~ray_slt.training.task.SupervisedTask` (DDP or DeepSpeed)
``grpo``        :func:`ray_slt.training.grpo.grpo_train_func`: TRL's GRPOTrainer      grpo
                on the SFT translator (DDP through Accelerate)
==============  ==================================================================  =========================

Every recipe reports to Ray Train with ``ray.train.report(metrics, checkpoint)``: each checkpoint directory
holds ``model/`` (a model directory whose manifest names its kind) and ``train_state.json`` (``stage``,
``step``, ``protocol``, ``config``), and its metrics carry ``evaluated`` (whether this report has a dev
evaluation) and the selection metric (:attr:`~ray_slt.eval.protocols.Selection.unevaluated` when not
evaluated), so the driver, Ray's checkpoint manager and Tune read every recipe's reports the same way.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ray_slt.config import build_config, config_dict
from ray_slt.registry import Registry
from ray_slt.training.task import STAGES

if TYPE_CHECKING:
    from ray_slt.training.config import TrainConfig
    from ray_slt.training.task import Task

#: recipe name -> "module:Class"
RECIPES = Registry(
    "recipe",
    {"supervised": "ray_slt.training.loop:SupervisedRecipe", "grpo": "ray_slt.training.grpo:GRPORecipe"},
)

_KNOWN = ("train_config", "run_dir", "num_train_samples", "stage_target")


def loop_config(cfg: TrainConfig, run_dir: str, num_train_samples: int) -> dict[str, Any]:
    """The ``train_loop_config`` of a run: plain JSON values only (Tune may add dotted overrides to it, e.g.
    ``{"sft.lr_llm": 1e-4}``, applied on top of ``train_config``). It carries the stage's registration, so a
    worker that never imported the module registering it can still build the task."""
    return {
        "train_config": config_dict(cfg),
        "run_dir": run_dir,
        "num_train_samples": int(num_train_samples),
        "stage_target": STAGES.target(cfg.stage),
    }


def parse_loop_config(config: Mapping[str, Any]) -> tuple[TrainConfig, str, int]:
    """``(cfg, run_dir, num_train_samples)`` on a worker, the stage registered as the driver had it."""
    stage = config["train_config"].get("stage")
    if stage and config.get("stage_target"):
        STAGES.ensure(stage, config["stage_target"])
    overrides = [f"{k}={json.dumps(v)}" for k, v in config.items() if k not in _KNOWN]
    cfg = build_config(config["train_config"], overrides, source="train_loop_config")
    return cfg, config["run_dir"], int(config["num_train_samples"])


def checkpoint_name(epoch: int, step: int) -> str:
    """The directory name of a checkpoint in the run directory (the same for every recipe)."""
    return f"checkpoint_e{int(epoch):03d}_s{int(step):07d}"


class Recipe(ABC):
    """How one stage's runs train (see the module docstring). Built on the driver from the config and task."""

    name: ClassVar[str] = ""
    #: whether its reports suit a sweep (an evaluation per epoch, epochs as ASHA's time unit)
    sweepable: ClassVar[bool] = True

    def __init__(self, cfg: TrainConfig, task: Task):
        self.cfg = cfg
        self.task = task

    def check(self) -> None:  # noqa: B027 - optional hook
        """Refuse bad settings on the driver, before any worker starts (a ConfigError naming the key)."""

    @abstractmethod
    def train_func(self) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
        """The per-worker function (Ray Train's ``train_loop_per_worker``); it returns the run's figures on
        rank 0: ``step``, ``total_steps``, ``samples``, ``train_time_s``, ``train_samples_per_s``, plus the
        recipe's own."""

    def datasets(self) -> dict[str, Any]:
        """The Ray Datasets the trainer streams to the workers (none by default: the workers read their data)."""
        return {}

    def num_train_samples(self, datasets: Mapping[str, Any]) -> int:
        return 0

    def total_steps(self, num_train_samples: int) -> int | None:
        return None

    def dataset_config(self):
        """Ray Train's ``DataConfig`` for :meth:`datasets` (None: Ray's default)."""
        return None

    def summary(self, figures: Mapping[str, Any]) -> dict[str, Any]:
        """Recipe-specific entries of ``run.json`` from the rank-0 figures ``train_func`` returned."""
        return {}


def recipe_for(cfg: TrainConfig, task: Task) -> Recipe:
    return RECIPES.get(task.recipe)(cfg, task)
