"""``TrainConfig`` (config kind ``train``): what ``ray-slt train`` / ``jobs/train.py`` / ``train_func`` run.

Sections:

- ``stage``: which stage trains (:data:`ray_slt.training.task.STAGES`: ``pretrain``, ``sft``, ``vlm``, ``grpo``,
  ...), and the stage's own section, named like it (``sft:`` an SFTConfig, ``pretrain:`` a PretrainConfig,
  ``grpo:`` a GRPOSection...). The stage's task class declares that section's schema: a config is validated by
  :func:`train_config_class` (stage), the shared sections below plus that one, so a stage registered anywhere
  brings its own section without an edit here;
- ``data``: the feature store written by ``ray-slt extract`` (pose/feature input) or a manifest (text-only
  gloss input), the splits (dev is used for evaluation during training; the test split never is);
- ``optim``: epochs/steps, per-worker batch, gradient accumulation, schedule, warm-up, clipping, seed;
- ``trainer``: workers, CPU/GPU, backend (``ddp`` or ``deepspeed`` with a ZeRO config), precision, storage of
  the run (local path or ``s3://``), checkpoint cadence, retries after failures;
- ``eval``: dev evaluation (decoding settings, how many samples, cadence).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from ray_slt.config import Schema


class DataSection(Schema):
    """Where samples come from: exactly one of ``features`` (feature store) or ``manifest`` (text/gloss only).
    Either may be a list, read as one source (:class:`~ray_slt.features.source.SampleSource`): several corpora
    in one run, e.g. one multilingual model over several sign languages (sample ids must not repeat)."""

    features: str | list[str] | None = None  # feature store URI(s) (ray-slt extract --out)
    manifest: str | list[str] | None = None  # manifest Parquet(s), for inputs that need no features (gloss -> text)
    train_split: str = "train"
    dev_split: str = "dev"
    lang: str | None = None  # spoken language of the targets (BCP-47); None: the rows' spoken_language
    limit_train: int | None = Field(None, gt=0)  # only the first N training samples (by sample_id)
    limit_dev: int | None = Field(None, gt=0)  # only the first N dev samples (by sample_id)
    # Read the training split into the object store before training starts. None (auto): when the workers
    # take every CPU of the cluster, leaving none for Ray Data's read tasks to stream it, or when the feature
    # store's shards of the split are at most materialize_below_mb (read once, not once per epoch).
    materialize: bool | None = None
    materialize_below_mb: float = Field(256.0, ge=0)

    def feature_stores(self) -> list[str]:
        """``features`` as a list (empty without one)."""
        return [] if self.features is None else [self.features] if isinstance(self.features, str) else self.features

    def manifests(self) -> list[str]:
        """``manifest`` as a list (empty without one)."""
        return [] if self.manifest is None else [self.manifest] if isinstance(self.manifest, str) else self.manifest

    @model_validator(mode="after")
    def _check(self) -> DataSection:
        if (self.features is None) == (self.manifest is None):
            raise ValueError("set exactly one of data.features (a feature store) and data.manifest")
        for name in ("features", "manifest"):
            v = getattr(self, name)
            if isinstance(v, list) and (not v or len(set(v)) != len(v)):
                raise ValueError(f"data.{name}: give one URI or a list of distinct URIs")
        if self.dev_split == "test" or self.train_split == "test":
            raise ValueError("the test split is never used during training; evaluate it with `ray-slt eval`")
        return self


class PrioritySection(Schema):
    """``optim.priority``: SignLLM's Priority Learning Channel (:mod:`ray_slt.training.priority`), used when
    ``optim.sampling`` is ``priority``: ``eta`` (the exponent of P(i) = p_i^eta / sum p_j^eta; 0 is uniform),
    ``kind`` (``inverse``: the lowest-loss samples first, the paper's "most rewarding"; ``loss``: the hardest
    first, prioritised experience replay's), ``beta`` / ``beta_end`` (importance-sampling weights, below)."""

    eta: float = Field(0.6, ge=0)
    kind: Literal["inverse", "loss"] = "inverse"
    # importance-sampling correction (prioritised experience replay's; the paper has none): each drawn sample's
    # loss is weighted by (N P(i))^-beta / max_j (N P(j))^-beta; beta 0: no correction (the paper's). With
    # beta_end, beta goes linearly from beta to beta_end over the run's steps (PER: 0.4 -> 1).
    beta: float = Field(0.0, ge=0, le=1)
    beta_end: float | None = Field(None, ge=0, le=1)

    def beta_at(self, step: int, total: int) -> float:
        """beta at optimizer step ``step`` (0-based) of ``total``."""
        if self.beta_end is None or total <= 1:
            return self.beta
        return self.beta + (self.beta_end - self.beta) * min(step, total - 1) / (total - 1)

    @property
    def corrects(self) -> bool:
        """Whether importance-sampling weights are applied at all."""
        return self.beta > 0 or bool(self.beta_end)


class OptimSection(Schema):
    """AdamW with a warm-up then cosine/constant schedule. The SFT learning rates (per parameter group) are in
    the ``sft`` section (``lr_llm``, ``lr_projector``, ``lr_encoder``); ``lr`` is for tasks without their own.

    ``sampling``: ``shuffle`` (each epoch streams the training split once, shuffled locally, split among the
    workers) or ``priority`` (every step draws its batch with replacement by the per-sample priorities of
    ``priority``, refreshed from the losses of the samples just trained on; each worker holds the whole split;
    only for stages whose loss gives per-sample losses, e.g. ``produce``). An epoch is as many steps either way.

    ``group_by_length`` (with ``shuffle``): 0 or 1 off; ``K`` > 1 draws ``K`` batches' worth of shuffled rows at
    a time, sorts them by size (the stage's :meth:`~ray_slt.training.task.SupervisedTask.sample_sizes`: frames,
    or characters of text) and trains on them as ``K`` batches of neighbours in a shuffled order, so a batch pads
    its rows to a length close to theirs (fairseq's and transformers' length grouping). Every row is still seen
    once an epoch; only who shares a batch changes.
    """

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (None: all epochs)
    batch_size: int = Field(4, ge=1)  # per worker, per micro-step
    grad_accum: int = Field(1, ge=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int | None = Field(None, ge=0)  # None: warmup_ratio of the total steps
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine floor, as a fraction of each group's lr
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0)  # None: no clipping
    seed: int = 0
    sampling: Literal["shuffle", "priority"] = "shuffle"
    group_by_length: int = Field(0, ge=0)  # batches pooled and sorted by size (0, 1: off)
    priority: PrioritySection = Field(default_factory=PrioritySection)

    @model_validator(mode="after")
    def _check_correction(self) -> OptimSection:
        if self.priority.corrects and self.sampling != "priority":
            raise ValueError("optim.priority.beta corrects priority sampling: set optim.sampling: priority")
        if self.group_by_length > 1 and self.sampling != "shuffle":
            raise ValueError("optim.group_by_length groups the shuffled epoch: set optim.sampling: shuffle")
        return self


class TrainerSection(Schema):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float | None = Field(None, gt=0)  # None: 1 when use_gpu
    backend: Literal["ddp", "deepspeed"] = "ddp"
    # a JSON file (conf/deepspeed/zero2.json, conf/deepspeed/zero3.json; local or s3) or an inline mapping;
    # batch sizes, accumulation, clipping and precision are filled in from this config.
    deepspeed: str | dict[str, Any] | None = None
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPUs that support it, else fp32
    storage: str = "runs"  # the run lives under {storage}/{name} (local path or s3://)
    name: str = "train"
    checkpoint_every: int = Field(0, ge=0)  # optimizer steps between checkpoints (0: at epoch ends only)
    num_to_keep: int | None = Field(2, ge=1)  # checkpoints kept: the best on dev_bleu4 and the latest
    max_failures: int = Field(0, ge=-1)  # restarts from the latest checkpoint after a worker dies (-1: always)
    log_every: int = Field(10, ge=1)  # steps between learning-curve flushes
    resume_from: str | None = None  # a checkpoint directory to start from (else the run's latest, if any)
    # Fault injection, for drills and tests: the given rank's worker process exits abruptly when it reaches
    # this optimizer step, once per run (a marker file in the run directory records that it happened).
    fail_at_step: int | None = Field(None, ge=1)
    fail_rank: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TrainerSection:
        if self.backend == "deepspeed" and self.deepspeed is None:
            self.deepspeed = {"zero_optimization": {"stage": 2}}
        if self.fail_rank >= self.num_workers:
            raise ValueError(f"fail_rank {self.fail_rank} is not a rank of {self.num_workers} workers")
        return self


class EvalSection(Schema):
    every_epochs: int = Field(1, ge=0)  # dev evaluation (generation + metrics) every N epochs; 0: never
    at_start: bool = False  # also evaluate the starting model (step 0 of the learning curves)
    num_beams: int | None = Field(None, ge=1)  # None: the model config's
    max_new_tokens: int | None = Field(None, ge=1)  # None: the model config's
    batch_size: int = Field(16, ge=1)
    # early stopping: stop after this many dev evaluations in a row without the selection metric improving on
    # its best by more than min_delta (None: train every epoch); the best checkpoint is kept as usual
    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.0, ge=0)


class TrainConfig(Schema):
    """The shared sections; a config is an instance of :func:`train_config_class` (its stage), which adds the
    stage's section."""

    kind: Literal["train"] = "train"
    stage: str = "sft"
    data: DataSection
    optim: OptimSection = Field(default_factory=OptimSection)
    trainer: TrainerSection = Field(default_factory=TrainerSection)
    eval: EvalSection = Field(default_factory=EvalSection)

    @classmethod
    def resolve_schema(cls, data: Mapping[str, Any]) -> type[TrainConfig]:
        """The schema of a config mapping: the class of its ``stage`` (config loading calls this)."""
        return train_config_class(str(data.get("stage") or "sft"))

    @model_validator(mode="before")
    @classmethod
    def _stage_section(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            from ray_slt.training.task import STAGES, stage_class

            stage = str(data.get("stage") or "sft")
            if stage_class(stage).section_required and data.get(stage) is None:
                raise ValueError(f"stage {stage!r} needs its model section '{stage}:'")
            others = sorted(k for k in data if k != stage and k in STAGES)
            if others:
                other = others[0]
                raise ValueError(f"section '{other}:' is stage {other}'s, but this config's stage is {stage!r}: "
                                 f"remove it or set stage: {other}")  # fmt: skip
        return data


@functools.cache
def train_config_class(stage: str) -> type[TrainConfig]:
    """The TrainConfig schema of ``stage``: the shared sections plus the stage's own (its task's ``section``).
    The class is importable by name from this module (``TrainConfig_sft``), so it pickles by reference."""
    from ray_slt.training.task import stage_class

    task = stage_class(stage)
    section = task.section
    model = create_model(
        f"TrainConfig_{stage}",
        __base__=TrainConfig,
        __module__=__name__,
        stage=(Literal[stage], stage),  # type: ignore[valid-type]
        **{stage: (section, Field(default_factory=section))},
    )
    model.__doc__ = f"A training config of stage {stage!r} (its section {stage}: is a {section.__name__})."
    return model


def __getattr__(name: str) -> Any:
    if name.startswith("TrainConfig_"):
        return train_config_class(name[len("TrainConfig_") :])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
