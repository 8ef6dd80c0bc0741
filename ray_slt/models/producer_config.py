"""The config of a text/gloss -> pose producer (``produce:`` of a training config; :mod:`ray_slt.models.producer`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_slt.config import Schema
from ray_slt.models.langgloss import check_multilingual

#: SignLLM's sizes (paper 5, Sec. 4.1): Base 2+2 layers, 4 heads, 512 wide, FFN 2048; Large and Super about 2x
#: and 4x as wide with the same depth. ``custom`` takes hidden/layers/heads/ffn from the config.
SIZES = {
    "base": {"hidden": 512, "layers": 2, "heads": 4, "ffn": 2048},
    "large": {"hidden": 1024, "layers": 2, "heads": 4, "ffn": 4096},
    "super": {"hidden": 2048, "layers": 2, "heads": 4, "ffn": 8192},
}


class ProducerConfig(Schema):
    """``produce:``: what the producer reads, its size, its augmentations and loss, and how it decodes.

    - ``input``: ``gloss`` (the sample's gloss sequence) or ``text`` (its sentence, lower-cased words);
    - ``tag``: None (one sign language) or ``auto``: one shared producer for several sign languages (SignLLM's
      Prompt2LangGloss, the pose side): each sample's glosses are read with its own language's tag
      (``GSL_WETTER``, :mod:`ray_slt.models.langgloss`; ``tags`` overrides the tag names), a sentence after its
      language's target token (``<2GSL>``); ``languages`` (empty: those of the training rows, recorded in the
      saved config) are the languages it produces, and a request names one of them (``sign_language``);
    - ``size``: ``base`` / ``large`` / ``super`` (SignLLM's) or ``custom`` (``hidden``, ``layers``, ``heads``,
      ``ffn`` below);
    - ``future``: frames predicted per step (1: the next frame only; Progressive Transformers' future
      prediction with more); ``noise``: the std of the Gaussian noise on the decoder's input frames, in units of
      each coordinate's std over the training frames (0: none);
    - ``loss``: ``mse`` or ``rl`` (SignLLM's "RL loss", read as the per-sequence summed MSE);
      ``counter_weight``: the counter's weight in it against 1 for each coordinate (1: Progressive Transformers'
      plain MSE over all 151 values; more makes a short training learn when to stop);
    - ``percentile``: Algorithm 1's bone-length percentile for lifting the reference poses to 3D;
    - ``frame_step``: the producer works at 1/``frame_step`` of the poses' frame rate ``pose_fps`` (every
      ``frame_step``-th frame of a reference is kept, for training and scoring alike; productions are written at
      ``pose_fps / frame_step``);
    - ``max_frames``: the longest sequence (longer ones are subsampled evenly to it; decoding stops there);
      ``stop_at``: decoding stops at the first frame whose predicted counter reaches it.
    """

    input: Literal["gloss", "text"] = "gloss"
    tag: Literal["auto"] | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    vocab_min_count: int = Field(1, ge=1)
    size: Literal["base", "large", "super", "custom"] = "base"
    hidden: int = Field(512, gt=0)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, gt=0)
    ffn: int = Field(2048, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    future: int = Field(1, ge=1)
    noise: float = Field(0.0, ge=0)
    loss: Literal["mse", "rl"] = "mse"
    counter_weight: float = Field(1.0, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    percentile: float = Field(90.0, gt=0, le=100)
    frame_step: int = Field(1, ge=1)
    pose_fps: float = Field(25.0, gt=0)
    max_frames: int = Field(300, gt=1)
    max_tokens: int = Field(64, gt=0)
    stop_at: float = Field(0.97, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ProducerConfig:
        if self.dims()["hidden"] % self.dims()["heads"]:
            raise ValueError(f"hidden ({self.dims()['hidden']}) must be divisible by heads ({self.dims()['heads']})")
        check_multilingual(self.tag, self.tags, self.languages)
        return self

    def dims(self) -> dict[str, int]:
        """hidden / layers / heads / ffn of the chosen size."""
        if self.size == "custom":
            return {"hidden": self.hidden, "layers": self.layers, "heads": self.heads, "ffn": self.ffn}
        return dict(SIZES[self.size])
