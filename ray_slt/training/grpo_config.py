"""``GRPOSection``: the ``grpo:`` section of a training config with ``stage: grpo`` (RVLF stage 3).

Defaults are the paper's (RESEARCH.md section 2, supplement "Implementation details"): start from the SFT
translator, merge its LoRA into the LM and add a new LoRA on q_proj/v_proj with r=64, alpha=128, dropout 0.05;
AdamW at lr 2e-5; N=8 sampled translations per input; reward R = lambda * BLEU-4 + (1 - lambda) * ROUGE-L
with lambda = 0.5 and punctuation appended to very short sentences; group-normalised advantages; clipped
objective with a KL penalty to the reference policy (the merged SFT model). Where the paper is silent, TRL's
defaults hold (clip epsilon 0.2, sampling temperature 1) except two: ``beta`` (TRL: 0, no KL term; the paper has
a KL term, so DeepSeekMath's 0.04) and ``loss_type`` (TRL: ``dapo``; the paper's Eq. 17-18 is ``grpo``).

The rest of a GRPO run comes from the shared sections of :class:`~ray_slt.training.config.TrainConfig`:
``data`` (feature store or manifest, splits), ``optim`` (``batch_size`` = prompts per worker per micro-step,
each sampled ``num_generations`` times; ``grad_accum``; epochs / max_steps; schedule, warm-up, clipping, seed),
``trainer`` (workers, storage, checkpoint cadence, checkpoints kept, resume) and ``eval`` (dev decoding).
The paper's batch of 8 is ``optim.batch_size * optim.grad_accum * workers = 8`` prompts per optimizer step.

Every other knob of TRL's ``GRPOConfig`` (``scale_rewards``, ``num_iterations``, ``gradient_checkpointing``,
``epsilon_high``, ``top_p``, ``mask_truncated_completions``, ``disable_dropout``, ...) goes under ``trl:`` with
TRL's name. Keys that this config already sets elsewhere are refused there, naming the key that owns them;
names TRL does not know are refused when the run starts (before any worker does).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ray_slt.config import Schema
from ray_slt.models.config import LoraSettings
from ray_slt.training.rewards import RewardSettings
from ray_slt.training.task import Task

# GRPOConfig (TrainingArguments) fields that other keys of the training config own.
OWNED = {
    "learning_rate": "grpo.lr",
    "weight_decay": "grpo.weight_decay",
    "num_generations": "grpo.num_generations",
    "beta": "grpo.beta",
    "epsilon": "grpo.epsilon",
    "temperature": "grpo.temperature",
    "max_completion_length": "grpo.max_completion_length",
    "loss_type": "grpo.loss_type",
    "reward_weights": "grpo.reward.bleu_weight",
    "per_device_train_batch_size": "optim.batch_size (prompts; times grpo.num_generations completions)",
    "gradient_accumulation_steps": "optim.grad_accum",
    "num_train_epochs": "optim.epochs",
    "max_steps": "optim.max_steps",
    "seed": "optim.seed",
    "data_seed": "optim.seed",
    "lr_scheduler_type": "optim.schedule",
    "lr_scheduler_kwargs": "optim.min_lr_ratio",
    "warmup_steps": "optim.warmup_steps / optim.warmup_ratio",
    "max_grad_norm": "optim.max_grad_norm",
    "adam_beta1": "optim.betas",
    "adam_beta2": "optim.betas",
    "adam_epsilon": "optim.eps",
    "bf16": "trainer.precision",
    "fp16": "trainer.precision",
    "output_dir": "trainer.storage / trainer.name",
    "save_strategy": "trainer.checkpoint_every",
    "save_steps": "trainer.checkpoint_every",
    "eval_strategy": "trainer.checkpoint_every / eval.every_epochs",
    "eval_steps": "trainer.checkpoint_every",
    "logging_steps": "trainer.log_every",
    "per_device_eval_batch_size": "eval.batch_size",
    "use_cpu": "trainer.use_gpu",
    "model_init_kwargs": "grpo.init (the model is the SFT checkpoint's)",
}
# Knobs this integration does not support (each would bypass the sign-feature prefix or the checkpoint format).
UNSUPPORTED = {
    "use_vllm": "vLLM takes token ids, not the sign-feature embeddings prepended to the prompt",
    "use_transformers_continuous_batching": "continuous batching takes token ids, not prompt embeddings",
    "use_transformers_paged": "paged generation takes token ids, not prompt embeddings",
    "deepspeed": "GRPO runs with DDP (trainer.backend: ddp)",
    "fsdp": "GRPO runs with DDP (trainer.backend: ddp)",
    "push_to_hub": "checkpoints go to trainer.storage",
    "load_best_model_at_end": "Ray Train keeps the best checkpoint on dev_bleu4",
    "save_only_model": "resuming needs the optimizer state",
    "sync_ref_model": "the reference policy is the merged SFT model (LoRA disabled)",
    "tools": "translation has no tool calls",
}


class GRPOSection(Schema):
    """RVLF stage 3: GRPO from an SFT translator checkpoint."""

    # The SFT translator to start from: a translator directory (the ``model/`` of a checkpoint), a Ray Train
    # checkpoint directory holding ``model/``, or an SFT run directory (its run.json names the best model).
    init: str
    # The new LoRA added after merging the SFT one (paper: q_proj/v_proj, r=64, alpha=128, dropout 0.05).
    lora: LoraSettings = Field(
        default_factory=lambda: LoraSettings(target_modules=["q_proj", "v_proj"], r=64, alpha=128, dropout=0.05)
    )
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    num_generations: int = Field(8, ge=2)  # N sampled translations per input (a group)
    beta: float = Field(0.04, ge=0)  # KL penalty to the reference policy (0: no KL term, no reference pass)
    epsilon: float = Field(0.2, gt=0)  # clip range of the probability ratio
    temperature: float = Field(1.0, gt=0)  # sampling temperature of the N translations
    max_completion_length: int | None = Field(None, gt=0)  # None: the SFT config's max_new_tokens
    # TRL's loss aggregation; "grpo" averages each completion's tokens, then the completions (paper Eq. 17-18;
    # TRL's own default is "dapo", a token-level average over the batch).
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo"] = "grpo"
    reward: RewardSettings = Field(default_factory=RewardSettings)
    trl: dict[str, Any] = Field(default_factory=dict)  # any other trl.GRPOConfig field, by TRL's name

    @field_validator("trl")
    @classmethod
    def _check_trl(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key in OWNED:
                raise ValueError(f"trl.{key} is set by {OWNED[key]}; set it there")
            if key in UNSUPPORTED:
                raise ValueError(f"trl.{key} is not supported here: {UNSUPPORTED[key]}")
        return v


class GRPOStage(Task):
    """``stage: grpo``: trained by the ``grpo`` recipe (TRL's GRPOTrainer on Ray Train,
    :mod:`ray_slt.training.grpo`); its policy is a translator (saved as one, model kind ``translator``) and its
    dev evaluation is the translation protocol's (``dev_bleu4``, max), plus the mean dev reward."""

    stage = "grpo"
    section: ClassVar = GRPOSection
    section_required: ClassVar[bool] = True
    recipe: ClassVar[str] = "grpo"
    protocol: ClassVar[str] = "translation"

    def protocol_options(self) -> dict[str, Any]:
        return {"lang": self.lang}
