"""Training stages: what a stage trains, which recipe trains it, what it predicts and how that is scored.

A **stage** (``stage:`` of a training config) is a :class:`Task` subclass registered in :data:`STAGES`. It
declares

- ``section``: the schema of its config section, named like the stage (``sft:`` for ``stage: sft``); the
  training config validates it (:func:`ray_slt.training.config.train_config_class`), so a new stage needs no
  edit of the shared config schema;
- ``recipe``: the name of the recipe that trains it (:data:`ray_slt.training.recipe.RECIPES`: ``supervised``,
  the generic Ray Train loop of :mod:`ray_slt.training.loop`, or ``grpo``, TRL's GRPO trainer);
- ``protocol``: its evaluation protocol (:data:`ray_slt.eval.protocols.PROTOCOLS`), which owns the dev
  metrics, the selection metric and its direction (``dev_bleu4``, max, for translators). The loop, the run
  summary, best-checkpoint selection, ``ray-slt eval``, and a sweep's default metric and ASHA all read it here.

Stages trained by the supervised recipe subclass :class:`SupervisedTask`, whose contract the loop drives::

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
                                               preds = task.predict(module, batch)    # the protocol's predictions
                                               scores = task.evaluator().score(all ranks' preds)   # rank 0
                                               task.save(module, uri)                 # rank 0, consolidated

Methods of a :class:`SupervisedTask` (see each docstring):

- ``datasets() -> {"train": ray.data.Dataset, "dev": ray.data.Dataset}`` (driver; never the test split) and
  optionally ``num_train_samples()``;
- ``fresh() -> nn.Module``: a newly initialised model (may read the training split, e.g. for a tokenizer); the
  default ``build(ctx)`` builds it on rank 0, saves it under ``{run_dir}/init-{hash}`` and loads it everywhere;
- ``collator(model)``, ``loss(model, batch) -> (loss, logs)`` (``model`` may be DDP/DeepSpeed-wrapped: call it,
  never reach into ``.module``), ``predict(model, batch, synced_gpus) -> [prediction]`` (unwrapped model, eval
  mode, no_grad, deterministic), ``param_groups(model)``;
- ``save(model, uri)`` (safetensors + JSON, the model directory's kind in its manifest) and the classmethod
  ``load(uri, trainable)``; evaluation and serving load saved models through
  :func:`ray_slt.models.registry.load_predictor` instead, without a training config.

A new stage: subclass, set ``stage``/``section``/``recipe``/``protocol``, and ``STAGES.register("mystage",
"my.module:MyTask")``. Ray workers receive the registration with their job (the loop config carries the
target), so a stage registered in a user's own module trains like a built-in one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ray_slt import storage
from ray_slt.config import Schema, config_hash
from ray_slt.errors import ConfigError
from ray_slt.registry import Registry

if TYPE_CHECKING:
    import ray.data
    import torch
    from torch import nn

    from ray_slt.eval.protocols import Protocol, Selection
    from ray_slt.training.config import TrainConfig

Rows = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]
Batch = dict[str, Any]

#: stage -> "module:Class" of its Task; the modules import torch lazily, so reading a config stays light.
STAGES = Registry(
    "stage",
    {
        "pretrain": "ray_slt.training.tasks:PretrainTask",
        "sft": "ray_slt.training.tasks:SFTTask",
        "text2gloss": "ray_slt.training.tasks:Text2GlossTask",
        "textlm": "ray_slt.training.tasks:TextLMTask",
        "vlm": "ray_slt.training.tasks_vlm:VLMTask",
        "grpo": "ray_slt.training.grpo_config:GRPOStage",
        "islr": "ray_slt.training.tasks_recognition:ISLRTask",
        "hali": "ray_slt.training.tasks_recognition:HaliTask",
        "produce": "ray_slt.training.tasks_production:ProduceTask",
    },
)


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
    """One training stage (see the module docstring)."""

    stage: ClassVar[str] = ""
    section: ClassVar[type[Schema]]
    section_required: ClassVar[bool] = False  # True: the config must have the section (no usable defaults)
    recipe: ClassVar[str] = "supervised"
    protocol: ClassVar[str] = "translation"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    @property
    def model_cfg(self) -> Any:
        """This stage's section of the TrainConfig (named like the stage, e.g. ``cfg.sft``)."""
        return getattr(self.cfg, self.stage)

    @property
    def lang(self) -> str | None:
        return self.cfg.data.lang

    def protocol_options(self) -> dict[str, Any]:
        """Keyword arguments of the protocol (e.g. the targets' language)."""
        return {}

    def evaluator(self) -> Protocol:
        """The evaluation protocol that scores this stage's dev predictions."""
        from ray_slt.eval.protocols import protocol_for

        return protocol_for(self.protocol, **self.protocol_options())

    @property
    def selection(self) -> Selection:
        return self.evaluator().selection

    def check_inputs(self) -> None:
        """Fail in one line, on the driver before Ray starts, when the data this stage reads is missing. The
        default checks ``data.features`` (a feature store's index) and ``data.manifest``; a stage that makes or
        finds its data elsewhere overrides it."""
        from ray_slt.errors import StorageError
        from ray_slt.features.store import INDEX_FILE

        d = self.cfg.data
        for f in d.feature_stores():
            if not storage.exists(storage.join(f, INDEX_FILE)):
                raise StorageError(f"{f}: not a feature store (no {INDEX_FILE}; run `ray-slt extract` first)")
        for m in d.manifests():
            if not storage.exists(m):
                raise StorageError(f"{m}: no such manifest (run `ray-slt prepare` first)")


class SupervisedTask(Task):
    """A stage trained by the generic Ray Train loop (recipe ``supervised``)."""

    recipe: ClassVar[str] = "supervised"

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
        from ray_slt.models.registry import MANIFEST

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

    #: whether :meth:`sample_losses` is implemented (``optim.sampling: priority`` needs it)
    gives_sample_losses: ClassVar[bool] = False
    #: whether the loss weighs each sample by ``batch["sample_weights"]`` (``[B]``) when the batch has them
    #: (priority sampling's importance-sampling correction, ``optim.priority.beta``, needs it)
    takes_sample_weights: ClassVar[bool] = False

    def sample_sizes(self, rows: Mapping[str, Sequence[Any]]) -> list[int]:
        """A size per row of a columnar batch, for ``optim.group_by_length``: its frames where the rows carry
        ``num_frames`` (pose features), else the characters of its ``text`` and ``gloss`` together (a manifest's
        text sides). A stage whose rows have neither overrides this."""
        if "num_frames" in rows:
            return [int(n) for n in rows["num_frames"]]
        columns = [rows[c] for c in ("text", "gloss") if c in rows]
        if not columns:
            raise ConfigError(f"stage {self.stage!r} gives no sample sizes (its rows have no num_frames, text or "
                              "gloss): set optim.group_by_length: 0")  # fmt: skip
        return [sum(len(v) if isinstance(v, str) else 0 for v in values) for values in zip(*columns)]

    def sample_losses(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """:meth:`loss` with each sample's own loss beside it (``[B]``, detached), from the same forward pass;
        priority sampling refreshes the samples' priorities from them."""
        raise ConfigError(f"stage {self.stage!r} gives no per-sample losses: use optim.sampling: shuffle")

    @abstractmethod
    def predict(self, model: nn.Module, batch: Batch, synced_gpus: bool = False) -> list[dict[str, Any]]:
        """The protocol's predictions for a batch (unwrapped model, eval mode, no_grad, deterministic), each
        with ``sample_id``. ``synced_gpus=True`` under DeepSpeed ZeRO-3 (every rank must keep calling forward
        until all ranks finish, as ``transformers`` ``generate(synced_gpus=True)`` does)."""

    @abstractmethod
    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """AdamW parameter groups, each with ``name``, ``params`` and ``lr``."""

    @abstractmethod
    def save(self, model: nn.Module, uri: str) -> None:
        """Write the consolidated model to ``uri`` (local or s3://), MANIFEST.json (with its kind) last."""

    @classmethod
    @abstractmethod
    def load(cls, uri: str, trainable: bool = False) -> nn.Module:
        """Read a model written by :meth:`save` (eval mode unless ``trainable``)."""


class TranslatorTask(SupervisedTask):
    """What the supervised translator stages share: ``generate`` gives sentences, scored by the translation
    protocol against the raw reference ``texts`` of the batch (decoding settings from the ``eval`` section)."""

    protocol: ClassVar[str] = "translation"

    def protocol_options(self) -> dict[str, Any]:
        return {"lang": self.lang}

    @abstractmethod
    def generate(self, model: nn.Module, batch: Batch, num_beams: int | None = None,
                 max_new_tokens: int | None = None, synced_gpus: bool = False) -> list[str]:  # fmt: skip
        """Deterministic translations of a batch (unwrapped model, eval mode, no_grad)."""

    def predict(self, model: nn.Module, batch: Batch, synced_gpus: bool = False) -> list[dict[str, Any]]:
        e = self.cfg.eval
        hyps = self.generate(model, batch, num_beams=e.num_beams, max_new_tokens=e.max_new_tokens,
                             synced_gpus=synced_gpus)  # fmt: skip
        langs = batch.get("langs") or [None] * len(hyps)
        return [
            {"sample_id": str(i), "hypothesis": h, "reference": r, "lang": lang}
            for i, h, r, lang in zip(batch["sample_ids"], hyps, batch["texts"], langs)
        ]


def stage_class(stage: str) -> type[Task]:
    return STAGES.get(stage)


def task_for(cfg: TrainConfig) -> Task:
    """The task object of a training config."""
    return stage_class(cfg.stage)(cfg)
