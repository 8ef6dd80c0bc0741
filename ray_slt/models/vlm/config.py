"""Config schema of the small-VLM translators (RESEARCH.md section 1, the first paper).

One schema for the three families; values left ``None`` take the family's paper setting
(:data:`FAMILY_DEFAULTS`):

============  ===========================================  ====  =====  =======  ==================
family        checkpoint (paper)                           r     alpha  dropout  lr (paper schedule)
============  ===========================================  ====  =====  =======  ==================
smolvlm       HuggingFaceTB/SmolVLM2-2.2B-Instruct          64    64     0.1      1e-4 constant
qwen2_5_vl    Qwen/Qwen2.5-VL-3B-Instruct                   64    64     0.05     1e-5 cosine
internvl      OpenGVLab/InternVL3-2B-hf                     32    64     0.0      2e-5 cosine
============  ===========================================  ====  =====  =======  ==================

Common to all (paper Sec. 4.3): vision encoder frozen, connector fully trained, LoRA on the language model's
attention and MLP projections, T_max = 64 frames (Eq. 1), greedy decoding with at most 128 new tokens, the
Table 17 prompt of the video's sign language. The schedule itself (constant/cosine) is the training config's
``optim.schedule``; the conf/vlm_*.yaml files set it per family.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ray_slt.config import Schema
from ray_slt.features.extract import DecodeConfig

FAMILIES = ("smolvlm", "qwen2_5_vl", "internvl")

# Paper Sec. 4.3 / Table 17 settings per family.
FAMILY_DEFAULTS: dict[str, dict] = {
    "smolvlm": {"model": "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "r": 64, "alpha": 64.0, "dropout": 0.1, "lr": 1e-4},
    "qwen2_5_vl": {"model": "Qwen/Qwen2.5-VL-3B-Instruct", "r": 64, "alpha": 64.0, "dropout": 0.05, "lr": 1e-5},
    "internvl": {"model": "OpenGVLab/InternVL3-2B-hf", "r": 32, "alpha": 64.0, "dropout": 0.0, "lr": 2e-5},
}

# Table 17, keyed by the manifest's ``sign_language`` (ISO 639-3). The paper writes its DGS prompt in German.
PAPER_PROMPTS: dict[str, str] = {
    "gsg": "Übersetzen Sie das Video in deutscher Gebärdensprache in deutschen Text (gesprochene Sprache).",
    "ase": "Translate the English sign language video into spoken text.",
    "ins": "Translate the Indian sign language video into spoken text.",
}
DEFAULT_PROMPT = "Translate the sign language video into spoken text."

LM_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class VLMLoraConfig(Schema):
    """LoRA on the language model only (never on the frozen vision tower); None = the family's paper value."""

    target_modules: list[str] = Field(default_factory=lambda: list(LM_PROJECTIONS), min_length=1)
    r: int | None = Field(None, gt=0)
    alpha: float | None = Field(None, gt=0)
    dropout: float | None = Field(None, ge=0, lt=1)


class TinyVLMConfig(Schema):
    """A randomly initialised model of the real architecture class (``model: tiny:<family>``), for CPU runs.

    It is built once (tokenizer trained on the training texts, weights from ``seed``) and saved as an ordinary
    Hugging Face checkpoint directory at ``path``; every later stage (cache, train, eval) loads it from there,
    exactly as a real checkpoint, so their frozen vision towers are the same weights.
    """

    path: str | None = None  # where the materialised tiny checkpoint lives (local or s3://); required for tiny:
    seed: int = 0
    vocab_size: int = Field(600, ge=64)  # BPE vocabulary trained on the training texts (+ the family's tokens)
    image_size: int = Field(32, ge=8)  # frame side (SmolVLM/InternVL); Qwen frames are resized to a multiple of it
    patch_size: int = Field(8, ge=2)
    vision_hidden: int = Field(32, gt=0)
    vision_layers: int = Field(2, ge=1)
    vision_heads: int = Field(2, gt=0)
    vision_intermediate: int = Field(64, gt=0)
    hidden: int = Field(64, gt=0)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, gt=0)
    kv_heads: int = Field(2, gt=0)
    intermediate: int = Field(128, gt=0)
    init_std: float = Field(0.1, gt=0)  # see ray_slt.models.config.TinyLMConfig.init_std

    @model_validator(mode="after")
    def _check(self) -> TinyVLMConfig:
        if self.image_size % (2 * self.patch_size):
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of 2 * patch_size ({self.patch_size})")
        for hidden, heads, what in (
            (self.hidden, self.heads, "hidden"),
            (self.vision_hidden, self.vision_heads, "vision_hidden"),
        ):
            if hidden % heads:
                raise ValueError(f"{what} ({hidden}) must be divisible by its heads ({heads})")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be divisible by kv_heads ({self.kv_heads})")
        return self


class VLMFramesConfig(Schema):
    """Which frames (Eq. 1 with ``t_max`` slots) and at what size each family's vision tower sees them.

    ``None`` sizes come from the checkpoint's (video) preprocessor config, or the family's documented default.
    """

    t_max: int = Field(64, ge=1)
    size: int | None = Field(None, ge=8)  # square frame side: SmolVLM (max_image_size), InternVL (size)
    min_pixels: int | None = Field(None, ge=1)  # Qwen2.5-VL smart_resize bounds (pixels per frame)
    max_pixels: int | None = Field(None, ge=1)


class VLMConfig(Schema):
    """A small-VLM translator (the TrainConfig section ``vlm:`` of ``stage: vlm``)."""

    model: str = FAMILY_DEFAULTS["smolvlm"]["model"]  # model id, local/s3 directory, or tiny:<family>
    revision: str | None = None  # hub revision (commit) of a model id; recorded in cache keys
    family: Literal["auto", "smolvlm", "qwen2_5_vl", "internvl"] = "auto"  # auto: from the checkpoint's config
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # frozen weights; auto: bf16 on CUDA, else fp32
    tiny: TinyVLMConfig = Field(default_factory=TinyVLMConfig)
    lora: VLMLoraConfig = Field(default_factory=VLMLoraConfig)
    frames: VLMFramesConfig = Field(default_factory=VLMFramesConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    prompts: dict[str, str] = Field(default_factory=lambda: dict(PAPER_PROMPTS))  # sign_language -> prompt
    default_prompt: str = DEFAULT_PROMPT
    system_prompt: str | None = None  # None: the family's default chat system message (Qwen's), else none
    lr: float | None = Field(None, gt=0)  # LoRA; None: the family's paper value
    lr_connector: float | None = Field(None, gt=0)  # None: lr
    weight_decay: float = Field(0.0, ge=0)
    max_target_tokens: int = Field(128, gt=0)  # target tokens kept (incl. the end-of-turn token)
    max_new_tokens: int = Field(128, gt=0)
    num_beams: int = Field(1, ge=1)  # the paper decodes greedily
    # Vision-feature cache (ray_slt.models.vlm.cache): its root; None = run the frozen encoder every step.
    cache: str | None = None
    cache_required: bool = False  # True: a sample missing from the cache is an error instead of computed
    data_workers: int = Field(1, ge=1)  # Ray Data actors that decode videos / read cache entries for training
    data_worker_cpus: float = Field(1.0, gt=0)

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model must be a model id, a directory or tiny:<family>")
        if v.startswith("tiny:") and v[5:] not in FAMILIES:
            raise ValueError(f"unknown tiny model {v!r}; use one of {', '.join('tiny:' + f for f in FAMILIES)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> VLMConfig:
        if self.is_tiny:
            if self.family not in ("auto", self.model[5:]):
                raise ValueError(f"family {self.family!r} contradicts model {self.model!r}")
            if not self.tiny.path:
                raise ValueError(f"model {self.model} needs tiny.path (where the tiny checkpoint is materialised)")
        return self

    @property
    def is_tiny(self) -> bool:
        return self.model.startswith("tiny:")

    def family_default(self, family: str, key: str):
        return FAMILY_DEFAULTS[family][key]

    def prompt_for(self, sign_language: str | None) -> str:
        return self.prompts.get((sign_language or "").strip().lower(), self.default_prompt)
