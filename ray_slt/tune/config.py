"""``SweepConfig`` (config kind ``tune``): a hyperparameter sweep over any field of a ``train`` config.

A sweep names a training config (``train:``, a YAML file of kind ``train`` or an inline mapping), fixed
``overrides`` of it for every trial, and a search ``space`` keyed by dotted paths of the training config::

    space:
      sft.lora.r: {grid: [8, 16, 64]}            # every value, in every combination with the other grids
      sft.lr_llm: {loguniform: [1.0e-5, 1.0e-3]} # sampled (num_samples per grid point)
      sft.lora.dropout: {uniform: [0.0, 0.3]}
      sft.max_frames: {choice: [64, 128, 256]}   # sampled from the list
      optim.batch_size: {randint: [4, 16]}       # an integer, both ends included
      sft.lr_projector: {same_as: sft.lr_llm}    # tied: the value sampled for another key

Every path is checked against the training schema (an unknown one is the config module's key error naming
it), and every grid/choice value and both ends of every range are validated by the schema before any trial
starts. The metric defaults to the training stage's selection metric and direction (its evaluation protocol's:
``dev_bleu4``, max, for translators). The search algorithm (``random``, ``grid``, ``optuna``), the scheduler
(ASHA on that metric with epochs as its time unit, or FIFO), the per-trial resources (workers, CPU/GPU
fractions) and the storage of the sweep are sections of their own.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from ray_slt import storage
from ray_slt.config import Schema, build_config, load_config
from ray_slt.errors import ConfigError

# Training-config keys the sweep itself decides (each trial is a run at {sweep}/trials/{trial_id}).
RESERVED = ("trainer.storage", "trainer.name", "trainer.resume_from")
KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


class SpaceEntry(Schema):
    """One swept parameter: exactly one of the fields."""

    grid: list[Any] | None = Field(None, min_length=1)  # every value (Tune grid_search)
    choice: list[Any] | None = Field(None, min_length=1)  # one value sampled uniformly from the list
    uniform: tuple[float, float] | None = None  # a float in [low, high]
    loguniform: tuple[float, float] | None = None  # a float in [low, high], uniform in log space (low > 0)
    randint: tuple[int, int] | None = None  # an integer in [low, high], both ends included
    same_as: str | None = None  # another swept key whose sampled value this key takes (e.g. tied learning rates)

    @model_validator(mode="after")
    def _check(self) -> SpaceEntry:
        set_ = [k for k in (*KINDS, "same_as") if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)}, same_as (got {', '.join(set_) or 'none'})")
        if self.same_as is not None:
            return self
        lo_hi = self.uniform or self.loguniform or self.randint
        if lo_hi is not None:
            lo, hi = lo_hi
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ValueError(f"{self.kind} needs [low, high] with low <= high, got [{lo}, {hi}]")
            if self.loguniform is not None and lo <= 0:
                raise ValueError(f"loguniform needs low > 0, got {lo}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in (*KINDS, "same_as") if getattr(self, k) is not None)

    @property
    def value(self) -> Any:
        return getattr(self, self.kind)

    def probes(self) -> list[Any]:
        """The values validated against the training schema before a sweep starts: every listed value, or
        both ends of a range."""
        if self.kind in ("grid", "choice"):
            return list(self.value)
        lo, hi = self.value
        return [lo, hi] if lo != hi else [lo]


class SearchSection(Schema):
    # random: grid entries are expanded, the others sampled num_samples times per grid point (Tune's
    # BasicVariantGenerator); grid: only grid/choice entries, every combination (num_samples repeats);
    # optuna: TPE (Optuna) over num_samples trials (grid entries become categorical choices).
    algorithm: Literal["random", "grid", "optuna"] = "random"
    num_samples: int = Field(1, ge=1)
    seed: int | None = 0
    max_concurrent_trials: int | None = Field(None, ge=1)  # None: as many trials as the cluster's resources fit
    time_budget_s: float | None = Field(None, gt=0)  # stop the sweep (all trials) after this long


class SchedulerSection(Schema):
    # asha: AsyncHyperBand on the metric reported at every dev evaluation; epochs are its time unit.
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)  # epochs every trial trains before it may be stopped
    reduction_factor: float = Field(2.0, gt=1)  # rungs at grace * rf^k epochs; 1/rf of the trials go on
    max_t: int | None = Field(None, ge=1)  # epochs; None: the largest optim.epochs of the sweep's trials
    brackets: int = Field(1, ge=1)


class ResourcesSection(Schema):
    """Resources of one trial (a Ray Train run); None keeps the training config's ``trainer`` values.
    Fractions let trials share a CPU or a GPU (e.g. ``gpus_per_worker: 0.5``: two trials per GPU)."""

    num_workers: int | None = Field(None, ge=1)
    cpus_per_worker: float | None = Field(None, gt=0)
    use_gpu: bool | None = None
    gpus_per_worker: float | None = Field(None, gt=0)
    driver_cpus: float = Field(0, ge=0)  # the trial's Tune actor, which only waits on its Ray Train run


class SweepConfig(Schema):
    kind: Literal["tune"] = "tune"
    train: str | dict[str, Any]  # a `train` config file (local or s3://, relative to the working dir) or inline
    overrides: dict[str, Any] = Field(default_factory=dict)  # dotted training keys fixed for every trial
    space: dict[str, SpaceEntry] = Field(min_length=1)
    # A dev metric the trials report (dev_bleu4, dev_rouge_l, dev_chrf, dev_loss, ...); None: the selection metric
    # of the training stage's evaluation protocol (dev_bleu4 for translators), with its direction.
    metric: str | None = None
    mode: Literal["max", "min"] | None = None  # None: the protocol's direction (required for another metric)
    search: SearchSection = Field(default_factory=SearchSection)
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    storage: str = "runs"  # the sweep lives under {storage}/{name} (local path or s3://)
    name: str = "tune"
    max_failures: int = Field(0, ge=-1)  # Tune retries of a failed trial (its Ray Train run resumes)

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        for key in [*self.space, *flatten(self.overrides)]:
            if key in RESERVED:
                raise ValueError(f"{key} is set by the sweep (each trial runs at {{storage}}/{{name}}/trials/ID)")
        for key, entry in self.space.items():
            ref = self.space.get(entry.same_as) if entry.same_as is not None else None
            if entry.same_as is not None and (ref is None or ref.same_as is not None):
                raise ValueError(f"space {key}: same_as {entry.same_as!r} must name a sampled key of the space")
        both = sorted(set(self.space) & set(flatten(self.overrides)))
        if both:
            raise ValueError(f"{', '.join(both)}: both swept (space) and fixed (overrides)")
        if self.search.algorithm == "grid":
            sampled = [k for k, e in self.sampled.items() if e.kind not in ("grid", "choice")]
            if sampled:
                raise ValueError(f"search.algorithm grid takes grid/choice entries, not ranges: {', '.join(sampled)}")
        if self.metric is not None and not self.metric.startswith("dev_"):
            raise ValueError(f"metric {self.metric!r}: trials report the dev evaluation's metrics (dev_*)")
        if storage.safe_name(self.name) != self.name:
            raise ValueError(f"name {self.name!r} must be a plain directory name")
        return self

    @property
    def sampled(self) -> dict[str, SpaceEntry]:
        """The entries Tune samples (all but the ``same_as`` ties)."""
        return {k: e for k, e in self.space.items() if e.same_as is None}

    def expand(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's sampled parameters with the tied ones (``same_as``) added."""
        out = dict(params)
        for key, entry in self.space.items():
            if entry.same_as is not None:
                out[key] = params[entry.same_as]
        return out


def yaml_value(value: Any) -> str:
    """A value as the right-hand side of a ``key=value`` override (YAML flow style, round-trips its type)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True).strip()
    return text[: -len("\n...")].strip() if text.endswith("\n...") else text


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``{"data": {"features": x}}`` -> ``{"data.features": x}``), so that
    ``ray-slt tune CONFIG overrides.data.features=...`` sets one key instead of replacing the section."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def overrides_of(values: dict[str, Any]) -> list[str]:
    return [f"{k}={yaml_value(v)}" for k, v in values.items()]


def base_train_dict(cfg: SweepConfig) -> dict[str, Any]:
    """The training config every trial starts from (the ``train`` file or mapping with ``overrides`` and
    ``resources`` applied), validated, as plain JSON values."""
    from ray_slt.config import config_dict
    from ray_slt.training.config import TrainConfig

    fixed = flatten(cfg.overrides)
    r = cfg.resources
    for key, value in (("num_workers", r.num_workers), ("cpus_per_worker", r.cpus_per_worker),
                       ("use_gpu", r.use_gpu), ("gpus_per_worker", r.gpus_per_worker)):  # fmt: skip
        if value is not None:
            fixed[f"trainer.{key}"] = value
    if isinstance(cfg.train, str):
        train = load_config(cfg.train, overrides_of(fixed))
        source = cfg.train
    else:
        data = {"kind": "train", **cfg.train}
        train = build_config(data, overrides_of(fixed), source="train")
        source = "train"
    if not isinstance(train, TrainConfig):
        raise ConfigError(f"{source}: the sweep's train config must be of kind 'train', not {train.kind!r}")
    from ray_slt.training.recipe import RECIPES
    from ray_slt.training.task import stage_class

    recipe = stage_class(train.stage).recipe
    if not RECIPES.get(recipe).sweepable:
        raise ConfigError(f"{source}: stage {train.stage} trains with the {recipe} recipe, which sweeps do not run "
                          "(they need a dev evaluation per epoch from the supervised loop)")  # fmt: skip
    if not train.eval.every_epochs:
        raise ConfigError(f"{source}: eval.every_epochs is 0; a sweep needs the dev evaluation")
    return config_dict(train)


def with_selection(cfg: SweepConfig, base: dict[str, Any]) -> SweepConfig:
    """``cfg`` with ``metric`` and ``mode`` filled in from the training stage's evaluation protocol: its
    selection metric and direction unless the sweep names another metric (which then needs its ``mode``)."""
    from ray_slt.training.task import task_for

    selection = task_for(build_config(base, source="the train config")).selection
    metric = cfg.metric or selection.key
    if cfg.mode is not None:
        mode = cfg.mode
    elif metric == selection.key:
        mode = selection.mode
    else:
        raise ConfigError(f"metric {metric}: give its mode (max or min); the stage selects on {selection.key} "
                          f"({selection.mode})")  # fmt: skip
    return cfg.model_copy(update={"metric": metric, "mode": mode})


def resolve_sweep(cfg: SweepConfig) -> tuple[SweepConfig, dict[str, Any]]:
    """The sweep ready to run and its base training config: every path and probe value checked
    (:func:`check_space`), the metric and its direction resolved (:func:`with_selection`)."""
    base = base_train_dict(cfg)
    return with_selection(check_space(cfg, base), base), base


def check_space(cfg: SweepConfig, base: dict[str, Any]) -> SweepConfig:
    """Every swept path is a key of the training schema and every probe value valid there, or a ConfigError
    naming the path and the value (before any trial starts). Returns ``cfg`` with the grid/choice values as the
    training schema types them (YAML reads ``1e-4`` as a string: the learning rate's field makes it a float)."""
    from ray_slt.config import config_dict

    space = {}
    for key, entry in cfg.space.items():
        probe = cfg.space[entry.same_as] if entry.same_as is not None else entry
        typed = []
        for value in probe.probes():
            if probe.kind == "randint":
                value = int(value)
            try:
                train = build_config(base, [f"{key}={yaml_value(value)}"], source="the train config")
            except ConfigError as e:
                if "unknown key" in str(e):
                    raise ConfigError(f"space: {e}") from None
                raise ConfigError(f"space {key}: value {value!r} is invalid ({e})") from None
            typed.append(_get_dotted(config_dict(train), key))
        _refuse_inert(key, train)
        if entry.kind in ("grid", "choice"):
            entry = entry.model_copy(update={entry.kind: typed})
        space[key] = entry
    return cfg.model_copy(update={"space": space})


def _refuse_inert(key: str, train: Any) -> None:
    """A swept key that a section declares without effect (``inert()``, e.g. ``sft.lora.*`` when the LM trains in
    full) is a ConfigError: its trials would all train the same model."""
    for name in type(train).model_fields:
        section = getattr(train, name)
        inert = getattr(section, "inert", None)
        if not callable(inert):
            continue
        for sub, reason in inert().items():
            path = f"{name}.{sub}"
            if key == path or key.startswith(path + "."):
                raise ConfigError(f"space {key}: has no effect here ({reason}); sweep something that changes the model")


def _get_dotted(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def max_epochs(cfg: SweepConfig, base: dict[str, Any]) -> int:
    """The most epochs a trial of the sweep trains (ASHA's max_t unless set)."""
    entry = cfg.space.get("optim.epochs")
    if entry is not None and entry.same_as is not None:
        entry = cfg.space[entry.same_as]
    if entry is None:
        return int(base["optim"]["epochs"])
    return int(max(entry.probes()))


def load_sweep(uri: str, overrides: list[str] | tuple[str, ...] = ()) -> SweepConfig:
    cfg = load_config(uri, overrides)
    if not isinstance(cfg, SweepConfig):
        raise ConfigError(f"{uri}: a config of kind 'tune' is needed, not {cfg.kind!r}")
    return cfg
