"""Config schemas of the RVLF translator's model parts (composed by the training stage into its config).

Defaults follow the RVLF paper (RESEARCH.md section 2; paper supplement Tables 9-10) where it states a value:
skeleton encoder and text encoder/decoder 3 layers, hidden 512, 8 heads, FFN 2048; contrastive dimension
1024; SFT projector 512 -> 4096 -> LLM width with GELU; LoRA on q_proj/v_proj with r=16, alpha=32,
dropout 0.3; AdamW with lr 2e-4 (LLM) and 2e-5 (projector), weight decay 0; inputs truncated to 300 frames;
beam width 5; fusion weights alpha = beta = 1. Values the paper leaves open (temperatures, beta of Eq. 9,
GCN widths, dropouts) are marked as ours.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ray_slt.config import Schema
from ray_slt.models.langgloss import check_multilingual

PAPER_INSTRUCTION = (
    "A conversation between a deaf person and an AI assistant. The assistant can generate accurate and fluent "
    "translated text based on provided sign language visual information."
)


def _check_heads(hidden: int, heads: int) -> None:
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")


class SkeletonEncoderConfig(Schema):
    """Per-part graph convolutions over the 77-point layout, then a transformer encoder over time."""

    type: Literal["skeleton"] = "skeleton"
    gcn_channels: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [64, 128], min_length=1)
    temporal_kernel: int = Field(5, gt=0)  # odd; frames seen by each temporal convolution
    layers: int = Field(3, ge=1)
    hidden: int = Field(512, gt=0)
    heads: int = Field(8, gt=0)
    ffn: int = Field(2048, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    # which of the 77 points it reads: all, or only the 49 a Prompt2Sign production carries (body 0-7 and both
    # hands; ray_slt.features.prompt2sign.LAYOUT77_POINTS): a translator trained so back-translates productions
    points: Literal["all", "p2s50"] = "all"

    @model_validator(mode="after")
    def _check(self) -> SkeletonEncoderConfig:
        _check_heads(self.hidden, self.heads)
        if self.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd, got {self.temporal_kernel}")
        return self


class GlossEncoderConfig(Schema):
    """Embedding + transformer encoder over gloss ids: the gloss -> text benchmark's sign encoder."""

    type: Literal["gloss"] = "gloss"
    layers: int = Field(2, ge=1)
    hidden: int = Field(512, gt=0)
    heads: int = Field(8, gt=0)
    ffn: int = Field(2048, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    min_count: int = Field(1, ge=1)  # glosses seen fewer times in training become <unk>
    max_length: int = Field(128, gt=0)  # glosses per sentence kept

    @model_validator(mode="after")
    def _check(self) -> GlossEncoderConfig:
        _check_heads(self.hidden, self.heads)
        return self


EncoderConfig = Annotated[SkeletonEncoderConfig | GlossEncoderConfig, Field(discriminator="type")]


class TokenizerConfig(Schema):
    """Where the tokenizer comes from: a saved one (``path``) or trained on the corpus texts."""

    path: str | None = None  # save_pretrained dir / model id; None: the LM's own, or trained on the texts
    kind: Literal["bpe", "wordpiece", "word"] = "bpe"  # when trained: byte-level BPE, WordPiece or whole words
    vocab_size: int = Field(4000, ge=64)  # when trained


class TextModelConfig(Schema):
    """Stage-1 text encoder and decoder (mBART-style transformer blocks, randomly initialised)."""

    encoder_layers: int = Field(3, ge=1)
    decoder_layers: int = Field(3, ge=1)
    hidden: int = Field(512, gt=0)
    heads: int = Field(8, gt=0)
    ffn: int = Field(2048, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    max_length: int = Field(128, gt=0)  # target tokens kept per sentence (incl. </s>)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)

    @model_validator(mode="after")
    def _check(self) -> TextModelConfig:
        _check_heads(self.hidden, self.heads)
        return self


class ContrastiveConfig(Schema):
    """Token-level contrastive loss (paper Eqs. 3-9)."""

    dim: int = Field(1024, gt=0)  # D, the shared embedding size
    tau: float = Field(0.07, gt=0)  # initial value of the token-softmax temperature (Eq. 4); ours
    learn_tau: bool = True  # the paper's tau is trainable
    tau_prime: float = Field(0.07, gt=0)  # InfoNCE temperature tau' (Eqs. 7-8); ours
    beta: float = Field(0.5, ge=0, le=1)  # weight of L_S2T in Eq. 9; ours (symmetric)


class PretrainConfig(Schema):
    """Stage 1: L_pt = L_con + slt_weight * L_slt (paper Eq. 11 has slt_weight = 1)."""

    skeleton: SkeletonEncoderConfig = Field(default_factory=SkeletonEncoderConfig)
    text: TextModelConfig = Field(default_factory=TextModelConfig)
    contrastive: ContrastiveConfig = Field(default_factory=ContrastiveConfig)
    slt_weight: float = Field(1.0, ge=0)
    max_frames: int = Field(300, gt=0)
    max_new_tokens: int = Field(64, gt=0)
    num_beams: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _check(self) -> PretrainConfig:
        if self.skeleton.hidden != self.text.hidden:
            raise ValueError(
                f"skeleton.hidden ({self.skeleton.hidden}) must equal text.hidden ({self.text.hidden}): "
                "the text decoder attends to the skeleton features"
            )
        return self


class TinyLMConfig(Schema):
    """Sizes of a randomly initialised language model (``lm: tiny:qwen3`` / ``tiny:qwen2`` / ``tiny:gpt2``, causal;
    ``tiny:mbart`` / ``tiny:t5``, encoder-decoder with ``layers`` in each stack; ``kv_heads`` is for the Qwens), for
    CPU runs."""

    hidden: int = Field(64, gt=0)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, gt=0)
    kv_heads: int = Field(2, gt=0)
    intermediate: int = Field(128, gt=0)
    max_positions: int = Field(1024, gt=0)
    # Init std of all weights. HF's 0.02 suits wide models; at width 64 it caps the logits a LoRA-tuned
    # random LM can reach (normed hidden . embedding <= ~1.3), so tiny LMs use about 1/sqrt(hidden).
    init_std: float = Field(0.1, gt=0)
    # Dropout inside the random LM: Qwen3/Qwen2's attention dropout (the only dropout those classes have); GPT-2's
    # residual, embedding and attention dropout (the classic transformer's three); mBART's dropout and attention
    # dropout; T5's dropout rate. None: the class's own default (0 for Qwen, 0.1 for GPT-2, mBART and T5). See also
    # the section's ``embed_dropout`` (the LM's input embeddings, any LM).
    dropout: float | None = Field(None, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> TinyLMConfig:
        _check_heads(self.hidden, self.heads)
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be divisible by kv_heads ({self.kv_heads})")
        return self


class LoraSettings(Schema):
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)
    r: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.3, ge=0, lt=1)


class ProjectorConfig(Schema):
    """2-layer GELU MLP: encoder hidden -> ``hidden`` -> LLM embedding width."""

    hidden: int = Field(4096, gt=0)


class FusionConfig(Schema):
    """Z_e = Z_s + alpha * Z_face + beta * Z_hand (paper Eq. 12), DINOv2 features linearly projected;
    Z_hand projects the left- and right-hand crops' embeddings together (concatenated)."""

    face: bool = True  # use the DINOv2 face sequence (batch key ``dino_face``, store ``face_features``)
    hand: bool = True  # use the hand sequences (batch key ``dino_hand``, store ``left/right_hand_features``)
    dino_dim: int = Field(768, gt=0)  # facebook/dinov2-base
    alpha: float = 1.0
    beta: float = 1.0


#: The randomly initialised LMs a config can name: causal (the RVLF path) and encoder-decoder.
TINY_LMS = ("tiny:qwen3", "tiny:qwen2", "tiny:gpt2", "tiny:mbart", "tiny:t5")
TINY_SEQ2SEQ = ("tiny:mbart", "tiny:t5")


class SFTConfig(Schema):
    """Stage 2: sign encoder -> (fusion) -> projector -> prepended to the prompt of a causal LM, or fed with the
    prompt as the encoder input of an encoder-decoder LM (LoRA or full training either way)."""

    # model id, local or s3:// directory (a causal LM or an encoder-decoder: AutoModelForSeq2SeqLM, e.g. mBART,
    # NLLB/M2M, T5/mT5, Marian), or a random one: tiny:qwen3 / tiny:qwen2 / tiny:gpt2 (causal), tiny:mbart / tiny:t5
    # (seq2seq)
    lm: str = "tiny:qwen3"
    tiny: TinyLMConfig = Field(default_factory=TinyLMConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # of the LM weights
    encoder: EncoderConfig = Field(default_factory=SkeletonEncoderConfig)
    encoder_init: str | None = None  # a stage-1 checkpoint dir whose skeleton encoder initialises ours
    freeze_encoder: bool = False
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    projector: ProjectorConfig = Field(default_factory=ProjectorConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    # How the LM learns: "lora" trains adapters on its frozen weights (for pretrained LMs), "full" trains every
    # weight, "auto" is full for a randomly initialised tiny:* LM (LoRA on random frozen weights leaves most of
    # the model unable to learn) and LoRA for a pretrained one.
    lm_training: Literal["auto", "lora", "full"] = "auto"
    lr_llm: float = Field(2e-4, gt=0)
    lr_projector: float = Field(2e-5, gt=0)  # also the DINOv2 linear projections
    # label smoothing epsilon of the target cross-entropy (0: plain cross-entropy, the LM's own loss)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # dropout on the LM's input embeddings while training (a causal LM's: the projected sign or word prefix, the
    # prompt, the target tokens; an encoder-decoder's encoder inputs), as GPT-2's embd_pdrop: the regulariser a
    # causal LM without dropout of its own (Qwen) can take
    embed_dropout: float = Field(0.0, ge=0, lt=1)
    # lower-case the target sentences: the model learns and writes lower case, and is scored case-insensitively
    # (metrics.json: case lc). (Text -> gloss reads this key as lower-casing its input sentences.)
    lowercase: bool = False
    lr_encoder: float | None = Field(None, gt=0)  # None: lr_projector
    weight_decay: float = Field(0.0, ge=0)
    instruction: str = PAPER_INSTRUCTION
    prompt_template: str = "{instruction}\nTranslation:"  # the target follows after a space
    max_frames: int = Field(300, gt=0)
    max_target_tokens: int = Field(128, gt=0)  # incl. the end-of-sequence token
    max_new_tokens: int = Field(128, gt=0)
    num_beams: int = Field(5, ge=1)

    @field_validator("lm")
    @classmethod
    def _check_lm(cls, v: str) -> str:
        if v.startswith("tiny:") and v not in TINY_LMS:
            raise ValueError(f"unknown tiny LM {v!r}; use one of {', '.join(TINY_LMS)}")
        if not v.strip():
            raise ValueError(f"lm must name a model id, a directory or one of {', '.join(TINY_LMS)}")
        return v

    @field_validator("prompt_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        fields = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        if fields - {"instruction"}:
            raise ValueError(f"prompt_template may only use {{instruction}}, found {sorted(fields)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> SFTConfig:
        if self.encoder.type == "gloss":
            if self.fusion.face or self.fusion.hand:
                raise ValueError(
                    "fusion.face/fusion.hand need the skeleton encoder (DINOv2 features are aligned with its "
                    "frames); set both to false with a gloss encoder"
                )
            if self.encoder_init is not None:
                raise ValueError("encoder_init loads a stage-1 skeleton encoder; the encoder here is 'gloss'")
        return self

    @property
    def prompt(self) -> str:
        return self.prompt_template.format(instruction=self.instruction)

    @property
    def uses_lora(self) -> bool:
        """Whether the LM trains LoRA adapters (``lm_training`` resolved: auto -> full for tiny:* LMs)."""
        if self.lm_training == "auto":
            return not self.lm.startswith("tiny:")
        return self.lm_training == "lora"

    def inert(self) -> dict[str, str]:
        """Keys of this section that have no effect under its other settings, each with the reason (a sweep over
        one of them would train identical trials)."""
        out = {}
        if not self.lm.startswith("tiny:"):
            out["tiny"] = f"lm={self.lm} is loaded as it is; tiny.* sizes and dropout only build a random tiny: LM"
        if not self.uses_lora:
            out["lora"] = f"the LM trains in full (lm_training={self.lm_training}, lm={self.lm}), without LoRA"
        return out


class Text2GlossConfig(SFTConfig):
    """Text -> gloss (stage ``text2gloss``; SignLLM's Prompt2LangGloss channel when ``templates`` and ``tag`` are
    set): the sentence's words, through a word-level token encoder, prefix a causal LM that writes the gloss
    sequence. The model is the SFT translator with a token encoder over words instead of glosses
    (:mod:`ray_slt.models.text2gloss`).

    - ``templates``: prompt templates wrapped around the input sentence (``{text}`` marks where it goes):
      ``none`` (the sentence alone), ``de`` / ``en`` (the built-in sets,
      :data:`ray_slt.models.text2gloss.TEMPLATES`) or a list of your own. Each sample is paired with one
      template by a hash of its id (a fixed random pairing, as the paper pairs prompts with transcripts).
    - ``tag``: a language tag written before every gloss of the targets (``GSL`` -> ``GSL_WETTER``), stripped
      from the model's output before it is scored or served; None: plain glosses; ``auto``: the one shared
      multilingual model, each sample's glosses tagged with its own sign language's tag (``tags`` overrides
      :data:`ray_slt.models.langgloss.TAGS`) and its input led by that language's target token (``<2GSL>``).
    - ``languages``: the sign languages (ISO 639-3) a ``tag: auto`` model writes; empty: those of its training
      rows (recorded in the saved config).
    - ``templates: auto``: each sentence wrapped in a built-in template of its own spoken language.
    - ``lowercase``: lower-case the input sentence (the reference glosses are never changed).
    """

    encoder: EncoderConfig = Field(default_factory=GlossEncoderConfig)
    fusion: FusionConfig = Field(default_factory=lambda: FusionConfig(face=False, hand=False))
    tokenizer: TokenizerConfig = Field(default_factory=lambda: TokenizerConfig(kind="word"))
    instruction: str = "Write the sign language glosses of the sentence."
    prompt_template: str = "{instruction}\nGlosses:"
    templates: Literal["none", "de", "en", "auto"] | list[str] = "none"
    tag: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    lowercase: bool = True
    max_target_tokens: int = Field(64, gt=0)
    max_new_tokens: int = Field(60, gt=0)
    num_beams: int = Field(4, ge=1)

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list):
            if not v:
                raise ValueError("templates: give at least one template, or 'none'")
            for t in v:
                fields = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None]
                if fields != ["text"]:
                    raise ValueError(f"template {t!r} must hold {{text}} exactly once and no other field")
        return v

    @field_validator("tag")
    @classmethod
    def _check_tag(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c.isspace() for c in v) or "_" in v):
            raise ValueError(f"tag {v!r} must be one word without '_' (e.g. GSL, ASL)")
        return v

    @model_validator(mode="after")
    def _check_text_encoder(self) -> Text2GlossConfig:
        if self.encoder.type != "gloss":
            raise ValueError("text2gloss reads words: its encoder is the token encoder (encoder.type: gloss)")
        check_multilingual(self.tag, self.tags, self.languages)
        return self


class TextLMConfig(Schema):
    """A language model of one side of the corpus (stage ``textlm``): the sentences (``column: text``) or the gloss
    sequences (``column: gloss``) of the training split, modelled left to right. Re-ranking uses it as the
    ``log p(y)`` term of the noisy-channel score (:mod:`ray_slt.models.rerank`); ``ray-slt eval`` reports its
    perplexity. ``lm``: a ``tiny:`` causal class built from ``tiny`` (with a tokenizer trained on the column:
    ``tokenizer``) or a pretrained causal LM's id / directory (with its own tokenizer); either way every weight
    trains (an LM of the target side is small; LoRA is for large pretrained ones, not offered here)."""

    column: Literal["text", "gloss"] = "text"
    lm: str = "tiny:gpt2"
    tiny: TinyLMConfig = Field(default_factory=TinyLMConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lowercase: bool = False  # lower-case the sentences it learns and scores
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    # per sequence, incl. <s> and </s>: longer ones are cut in training batches (and dev scoring during training);
    # `ray-slt eval` and re-ranking score whole texts
    max_tokens: int = Field(128, gt=1)

    @field_validator("lm")
    @classmethod
    def _check_lm(cls, v: str) -> str:
        if v in TINY_SEQ2SEQ or (v.startswith("tiny:") and v not in TINY_LMS):
            causal = [t for t in TINY_LMS if t not in TINY_SEQ2SEQ]
            raise ValueError(f"a text LM is causal: use one of {', '.join(causal)} or a causal LM's id / directory")
        if not v.strip():
            raise ValueError("lm must name a model id, a directory or a tiny: causal LM")
        return v
