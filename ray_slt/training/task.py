"""The task interface: what one training stage must provide so that the generic Ray Train loop can drive it.

The loop (:func:`ray_slt.training.loop.train_func`) knows nothing about sign language, pose features or LMs.
It asks a :class:`Task` for everything model-specific. A task is a plain object built from the validated
:class:`~ray_slt.training.config.TrainConfig` (``task = task_for(cfg)``) on the driver *and* on every worker,
so it must be cheap to construct and hold nothing but the config (build models and datasets lazily in the
methods below).

Who calls what, where::

    driver (run_training)                      every Ray Train worker (train_func, rank r of W)
    ---------------------                      ------------------------------------------------
    task = task_for(cfg)                       task = task_for(cfg)
    datasets = task.datasets()                 ctx = TaskContext(rank, world, device, run_dir, seed, barrier)
      -> TorchTrainer(datasets=...)            model = task.build(ctx)     # identical weights on every rank
                                               groups = task.param_groups(model)
                                               collate = task.collator(model)
                                               for rows in shard.iter_batches(...):   # columnar numpy dicts
                                                   batch = to_device(collate(rows), ctx.device)
                                                   loss, logs = task.loss(wrapped, batch)  # DDP/DeepSpeed wrapper
                                               # dev evaluation, model.eval(), unwrapped module:
                                               hyps = task.generate(module, batch, num_beams=.., max_new_tokens=..)
                                               refs = task.references(batch); ids = task.sample_ids(batch)
                                               task.save(module, uri)                 # rank 0, consolidated
    ray-slt eval / serve: model = task_class.load(uri)   (the same format, no training config needed)

Methods a task implements (see each one's docstring for the exact contract):

- ``stage`` (class attribute): the registry key, equal to the config's ``stage``; the TrainConfig section
  holding the model config has the same name (``sft:`` for ``stage: sft``; :attr:`Task.model_cfg`).
- ``datasets() -> {"train": ray.data.Dataset, "dev": ray.data.Dataset}``: driver side. One row per sample;
  rows must carry ``sample_id`` and, for evaluation, the reference ``text`` (and ``spoken_language`` when the
  config does not set ``data.lang``). Never return the test split (the loop refuses ``dev_split: test``).
- ``fresh() -> nn.Module``: a new, randomly initialised (or pretrained-initialised) model. May read the
  whole training split (e.g. to train a tokenizer on its texts). The default :meth:`build` calls it on rank 0
  only.
- ``build(ctx) -> nn.Module``: the model every rank starts from, identical on all ranks. The default builds
  once on rank 0 (``fresh``), saves it under ``{run_dir}/init-{config hash}``, waits at ``ctx.barrier()`` and
  loads it on every rank with ``load(uri, trainable=True)``; override only if your model can be built
  identically from a seed everywhere.
- ``collator(model) -> Callable[[rows], batch]``: rows are what ``iter_batches(batch_format="numpy")``
  yields from the datasets above (a dict of column -> array) or a list of row dicts; the batch is a dict of
  tensors (moved to the device by the loop with :func:`ray_slt.models.batch.to_device`) and lists of strings.
- ``loss(model, batch) -> (loss, logs)``: ``model`` may be wrapped (DDP, DeepSpeed engine): call it as
  ``model(batch)``, never reach into ``.module`` here, so gradient synchronisation and ZeRO hooks work.
  ``loss`` is a scalar tensor to backpropagate (the loop scales it for gradient accumulation); ``logs`` a
  dict of floats (e.g. loss parts) that go into the learning curves.
- ``generate(model, batch, num_beams=None, max_new_tokens=None, synced_gpus=False) -> list[str]``: ``model``
  is the unwrapped module, already in eval mode, under ``torch.no_grad()``; decoding must be deterministic
  (greedy or beam search, no sampling). ``synced_gpus=True`` under DeepSpeed ZeRO-3 (every rank must keep
  calling forward until all ranks finish, as ``transformers`` ``generate(synced_gpus=True)`` does).
- ``references(batch) -> list[str]``: the raw reference sentences of the batch (never tokenizer round
  trips); ``sample_ids(batch) -> list[str]``.
- ``param_groups(model) -> list[dict]``: optimizer groups for ``torch.optim.AdamW``; each has ``params``,
  ``lr`` and a ``name`` (the loop logs each group's lr under ``lr/{name}``).
- ``save(model, uri)``: write the consolidated model (safetensors + JSON, PEFT adapters; local or
  ``s3://``; the directory must be complete only once ``MANIFEST.json`` exists, see
  :func:`ray_slt.models.checkpoint.publish`). ``load(uri, trainable=False) -> nn.Module`` (classmethod) reads
  it back, in eval mode unless ``trainable``; eval and serve use it without a training config.
- ``lang``: the spoken language of the targets (BCP-47, e.g. ``de``) for the BLEU tokenizer, or None to take
  it from the dev rows' ``spoken_language``.

A new task: subclass :class:`Task`, implement the abstract methods, give it ``stage``, add its section to
``TrainConfig`` (an optional field named like the stage, holding your model config schema) and add
``"mystage": "my.module:MyTask"`` to :data:`TASKS` (or call ``register_task``). The loop handles distribution,
precision, accumulation, schedules, checkpoints (every rank), resume, dev evaluation with the shared metrics,
best-checkpoint selection on ``dev_bleu4`` and learning curves.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ray_slt import storage
from ray_slt.config import config_hash
from ray_slt.errors import ConfigError

if TYPE_CHECKING:
    import ray.data
    import torch
    from torch import nn

    from ray_slt.training.config import TrainConfig

Rows = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]
Batch = dict[str, Any]


def _no_barrier() -> None:
    return None


@dataclass
class TaskContext:
    """What a worker knows about its place in the run."""

    rank: int = 0
    world_size: int = 1
    device: Any = "cpu"  # torch.device
    run_dir: str = "runs/default"  # local path or s3:// URI shared by all ranks (the Ray Train run directory)
    seed: int = 0
    barrier: Callable[[], None] = field(default=_no_barrier)  # blocks until every rank arrives

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class Task(ABC):
    """One training stage (see the module docstring for the full contract)."""

    stage: ClassVar[str] = ""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    # -- configuration ---------------------------------------------------------------------------------------
    @property
    def model_cfg(self) -> Any:
        """This task's section of the TrainConfig (named like the stage, e.g. ``cfg.sft``)."""
        return getattr(self.cfg, self.stage)

    @property
    def lang(self) -> str | None:
        return self.cfg.data.lang

    # -- driver side -----------------------------------------------------------------------------------------
    @abstractmethod
    def datasets(self) -> dict[str, ray.data.Dataset]:
        """``{"train": ..., "dev": ...}`` Ray Datasets of samples (dev may be absent when eval is off)."""

    def num_train_samples(self) -> int | None:
        """Optional: the size of the training split without reading it (None: the driver counts the dataset).
        The loop needs it for the number of steps (LR schedule)."""
        return None

    # -- worker side -----------------------------------------------------------------------------------------
    @abstractmethod
    def fresh(self) -> nn.Module:
        """A newly initialised model (deterministic for the config's seed)."""

    def init_uri(self, ctx: TaskContext) -> str:
        return storage.join(ctx.run_dir, f"init-{config_hash(self.model_cfg)}")

    def build(self, ctx: TaskContext) -> nn.Module:
        """The starting model, identical on every rank: built on rank 0, saved, loaded everywhere."""
        from ray_slt.models.checkpoint import MANIFEST

        uri = self.init_uri(ctx)
        if ctx.is_main and not storage.exists(storage.join(uri, MANIFEST)):
            self.save(self.fresh(), uri)
        ctx.barrier()
        return self.load(uri, trainable=True)

    @abstractmethod
    def collator(self, model: nn.Module) -> Callable[[Rows], Batch]:
        """Rows (columnar dict or list of dicts) -> a batch of tensors and string lists."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of a batch through ``model`` (possibly DDP/DeepSpeed-wrapped) and float logs."""

    @abstractmethod
    def generate(
        self,
        model: nn.Module,
        batch: Batch,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        synced_gpus: bool = False,
    ) -> list[str]:
        """Deterministic translations of a batch (unwrapped model, eval mode, no_grad)."""

    def references(self, batch: Batch) -> list[str]:
        return list(batch["texts"])

    def sample_ids(self, batch: Batch) -> list[str]:
        return list(batch["sample_ids"])

    @abstractmethod
    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """AdamW parameter groups, each with ``name``, ``params`` and ``lr``."""

    @abstractmethod
    def save(self, model: nn.Module, uri: str) -> None:
        """Write the consolidated model to ``uri`` (local or s3://), MANIFEST.json last."""

    @classmethod
    @abstractmethod
    def load(cls, uri: str, trainable: bool = False) -> nn.Module:
        """Read a model written by :meth:`save` (eval mode unless ``trainable``)."""


# stage -> "module:Class"; imported lazily so that reading configs does not import torch.
TASKS: dict[str, str] = {
    "sft": "ray_slt.training.tasks:SFTTask",
    "pretrain": "ray_slt.training.tasks:PretrainTask",
    "vlm": "ray_slt.training.tasks_vlm:VLMTask",
    "grpo": "ray_slt.training.grpo:GRPOTask",
}


def register_task(stage: str, target: str) -> None:
    """Register a task class (``"module:Class"``) for a config ``stage``."""
    TASKS[stage] = target


def task_class(stage: str) -> type[Task]:
    if stage not in TASKS:
        raise ConfigError(f"unknown training stage {stage!r}; known stages: {', '.join(sorted(TASKS))}")
    module, _, name = TASKS[stage].partition(":")
    return getattr(importlib.import_module(module), name)


def task_for(cfg: TrainConfig) -> Task:
    """The task object of a training config."""
    return task_class(cfg.stage)(cfg)
