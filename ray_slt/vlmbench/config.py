"""The configuration of a benchmark run (``kind: vlmbench``; ``ray-slt vlmbench run CONFIG``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ray_slt.config import Schema
from ray_slt.features.extract import DecodeConfig

_CONDITION = re.compile(r"^(video|blind|perturb:(0(\.\d+)?|1(\.0+)?))$")


class EndpointConfig(Schema):
    """An OpenAI-compatible chat-completions endpoint (GPT-5, Gemini's OpenAI layer, vLLM, ``ray-slt
    vlmbench serve``). The API key is read from the environment variable ``api_key_env`` at run time, never from
    the config."""

    base_url: str  # e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    concurrency: int = Field(4, ge=1, le=256)  # requests in flight per worker
    timeout_s: float = Field(120.0, gt=0)
    max_tokens: int = Field(512, gt=0)
    temperature: float | None = Field(None, ge=0)  # None: the endpoint's default (some models accept no other)
    image_max_side: int = Field(512, ge=32)  # frames are downscaled to this before JPEG encoding
    jpeg_quality: int = Field(85, ge=10, le=100)
    retries: int = Field(1, ge=0, le=5)  # extra tries after an empty reply or a transient HTTP error

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://", v):
            raise ValueError(f"base_url must start with http:// or https://, not {v!r}")
        return v.rstrip("/")


class ModelSpec(Schema):
    """Exactly one of: a trained VLM ``checkpoint`` of the project, a ``vlm`` section (a model id, a path or
    ``tiny:<family>``, as in a training config), or an ``endpoint``."""

    checkpoint: str | None = None
    vlm: dict[str, Any] | None = None
    endpoint: EndpointConfig | None = None

    @model_validator(mode="after")
    def _one(self) -> ModelSpec:
        if sum(x is not None for x in (self.checkpoint, self.vlm, self.endpoint)) != 1:
            raise ValueError("model: give exactly one of checkpoint, vlm or endpoint")
        if self.vlm is not None:
            from ray_slt.models.vlm.config import VLMConfig

            VLMConfig.model_validate(self.vlm)  # fail before any worker starts
        return self

    @property
    def local(self) -> bool:
        return self.endpoint is None

    def name(self) -> str:
        """The model's id in answer keys: the endpoint's model name, the checkpoint's full path, or the base
        model (with its revision; a tiny model with its seed)."""
        if self.endpoint is not None:
            return f"endpoint:{self.endpoint.model}"
        if self.checkpoint is not None:
            from ray_slt import storage

            return f"checkpoint:{storage.normalize(self.checkpoint)}"  # the full path: two runs' "best" differ
        vlm = self.vlm or {}
        name = str(vlm.get("model"))
        if name.startswith("tiny:"):
            return f"{name}@seed{(vlm.get('tiny') or {}).get('seed', 0)}"
        return name + (f"@{vlm['revision']}" if vlm.get("revision") else "")


class BenchConfig(Schema):
    kind: Literal["vlmbench"] = "vlmbench"
    questions: str  # a question file (ray-slt vlmbench build-wlasl / build-lexsign)
    out: str  # answers.jsonl (the resume cache), metrics.json, summary.md, plots
    model: ModelSpec
    variants: list[str] | None = None  # prompt variants; None: every variant of the protocol
    conditions: list[str] = Field(default_factory=lambda: ["video"])  # video | blind | perturb:P
    frames: str = "uniform:8"  # uniform:N | fps:R | central:N@R (see ray_slt.vlmbench.frames)
    answer_by: Literal["generate", "loglik"] = "generate"  # loglik: multiple choice with a local model only
    max_new_tokens: int = Field(32, gt=0)
    limit: int | None = Field(None, ge=1)  # the first N questions only (a smoke run)
    decode: DecodeConfig = Field(default_factory=lambda: DecodeConfig(max_side=512))
    max_frames_decoded: int = Field(600, ge=1)  # a longer clip is decoded at uniformly spaced frames
    workers: int = Field(1, ge=1)  # Ray Data actors answering (one model each)
    batch_size: int = Field(4, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    wordnet: str | None = None  # WordNet directory for synonym matching (default: found, see vlmbench.wordnet)
    bootstrap: int = Field(1000, ge=100)
    seed: int = 0

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not _CONDITION.match(c)]
        if bad or not v:
            raise ValueError(f"conditions must be video, blind or perturb:P (0 <= P <= 1); got {bad or v}")
        return list(dict.fromkeys(v))

    @field_validator("frames")
    @classmethod
    def _frames(cls, v: str) -> str:
        from ray_slt.vlmbench.frames import check_setting

        return check_setting(v)

    @model_validator(mode="after")
    def _check(self) -> BenchConfig:
        if self.answer_by == "loglik" and not self.model.local:
            raise ValueError("answer_by: loglik needs a local model (an endpoint gives no option likelihoods)")
        return self
