"""``ServeConfig`` (config kind ``serve``): what ``ray-slt serve`` / ``jobs/serve.py`` deploy.

Sections:

- ``models``: the routes, each a saved model (``models.translate.checkpoint=...`` serves ``POST /translate``):
  any model the training stages write (a run, checkpoint or model directory; local path or ``s3://``), loaded
  through the registry of saved models by the kind in its manifest (translators of every stage: stage-1
  pretraining, SFT, GRPO, VLM; later recognizers and producers), its predictor's ``options`` (decoding settings
  such as ``num_beams``), dynamic batching (``serve.batch``) and the deployment's replicas/autoscaling. What a
  route accepts follows from its predictor (a clip for models that read poses or video, JSON text for models
  that read text or glosses);
- ``features``: how an upload becomes model input. The same settings as ``ray-slt extract`` (frames,
  decode, pose), run by the same code (:class:`ray_slt.features.extract.SampleProcessor`); plus its
  deployment's replicas/autoscaling;
- ``http``: bind address (127.0.0.1 by default), port, the web page;
- ``limits``: upload size, clip duration, frames of a ``.pose``, request deadline;
- ``auth``: optional bearer token, read from an environment variable (never from the YAML file);
- ``inputs``: the prefix under which the server may read URIs a client names (``null``: URIs refused).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ray_slt.config import Schema
from ray_slt.features.extract import DecodeConfig, FeaturesConfig, FramesConfig, PoseConfig


class AutoscalingSection(Schema):
    """Replicas of one deployment. ``max_replicas == min_replicas`` is a fixed replica count; otherwise Ray
    Serve's request-based autoscaler keeps about ``target_ongoing_requests`` requests per replica."""

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = Field(None, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(3.0, ge=0)
    downscale_delay_s: float = Field(30.0, ge=0)
    look_back_period_s: float = Field(15.0, gt=0)  # above Serve's 10 s metrics interval
    num_cpus: float = Field(1.0, ge=0)  # per replica (fractions let several replicas share a laptop's cores)
    num_gpus: float = Field(0.0, ge=0)
    max_ongoing_requests: int = Field(8, ge=1)  # per replica; more wait in the caller's queue
    max_queued_requests: int = Field(-1, ge=-1)  # per caller; -1: unbounded (beyond it Serve answers 503)

    @model_validator(mode="after")
    def _check(self) -> AutoscalingSection:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self

    def deployment_options(self) -> dict:
        """Keyword arguments of ``Deployment.options``."""
        opts: dict = {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
        }
        if self.max_replicas == self.min_replicas:
            opts["num_replicas"] = self.min_replicas
            opts["autoscaling_config"] = None
        else:
            opts["num_replicas"] = "auto"
            opts["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "initial_replicas": self.initial_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
                "look_back_period_s": self.look_back_period_s,
            }
        return opts


class BatchingSection(Schema):
    """Dynamic batching of model calls (``serve.batch``): requests that arrive within ``wait_timeout_s`` of
    each other (up to ``max_batch_size``) are translated in one forward pass."""

    enabled: bool = True
    max_batch_size: int = Field(8, ge=1)
    wait_timeout_s: float = Field(0.02, ge=0)


ROUTE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
RESERVED_ROUTES = ("healthz", "docs", "redoc", "openapi.json", "static")


class ModelSection(Schema):
    """One route: a saved model behind ``POST /{route}``."""

    checkpoint: str  # a training run dir (its best checkpoint), a checkpoint dir or a model dir; local or s3://
    model_id: str | None = None  # reported with every answer; None: directory name @ hash of the model files
    # the predictor's options (see its class): translators take num_beams / max_new_tokens (None: the model's)
    options: dict[str, Any] = Field(default_factory=dict)
    torch_threads: int | None = Field(None, ge=1)  # None: the replica's num_cpus (at least 1)
    batching: BatchingSection = Field(default_factory=BatchingSection)
    deployment: AutoscalingSection = Field(default_factory=lambda: AutoscalingSection(max_ongoing_requests=16))


class FeaturesSection(Schema):
    """Upload -> 77-point keypoints, with the extraction stage's settings and code."""

    frames: FramesConfig = Field(default_factory=FramesConfig)
    decode: DecodeConfig = Field(default_factory=lambda: DecodeConfig(timeout_s=60.0))
    pose: PoseConfig = Field(default_factory=PoseConfig)
    # DINOv2 face/hand features, for checkpoints that fuse them (fusion.face/hand); kind none otherwise
    visual: FeaturesConfig = Field(default_factory=FeaturesConfig)
    deployment: AutoscalingSection = Field(default_factory=lambda: AutoscalingSection(max_ongoing_requests=4))


class HttpSection(Schema):
    host: str = "127.0.0.1"  # loopback by default; 0.0.0.0 exposes the service (put auth on first)
    port: int = Field(8000, ge=0, le=65535)
    route_prefix: str = "/"
    web_page: bool = True  # serve the web page at the route prefix
    keep_alive_timeout_s: int = Field(5, ge=1)


class LimitsSection(Schema):
    max_upload_mb: float = Field(25.0, gt=0)  # request bodies above this are refused (413)
    # an oversized body up to this size is read to its end (and dropped) before the 413, so that clients which
    # send a whole body before reading the answer (Python's urllib, many SDKs) get the 413, not a reset
    drain_mb: float = Field(256.0, ge=0)
    # a request body not received in full by then is answered 408 and its connection closed (a client that
    # trickles a few bytes at a time holds no connection and no replica slot longer than this)
    body_timeout_s: float = Field(30.0, gt=0)
    max_video_s: float = Field(30.0, gt=0)  # clips longer than this (by their container) are refused (413)
    max_pose_frames: int = Field(3000, ge=1)  # .pose inputs with more frames are refused (413)
    request_timeout_s: float = Field(120.0, gt=0)  # a request not answered by then gets 504
    max_text_chars: int = Field(2000, ge=1)  # text inputs (models that read text or glosses) longer are refused
    retries: int = Field(1, ge=0)  # retries of a model/feature call whose replica died mid-request


class AuthSection(Schema):
    """Bearer-token auth of ``POST /translate``: the token is the value of the environment variable
    ``token_env`` on the server (unset or empty: auth off). The page, health and docs stay open."""

    token_env: str | None = None
    required: bool = False  # refuse to start when the variable is unset (a typo must not turn auth off)


class InputsSection(Schema):
    uri_prefix: str | None = None  # URIs a client names must lie under this prefix (local or s3://)


class ServeConfig(Schema):
    """Settings of ``ray-slt serve`` / ``jobs/serve.py`` (``conf/serve/default.yaml``)."""

    kind: Literal["serve"] = "serve"
    app_name: str = "ray_slt"
    ray_address: str | None = None  # None: the job's cluster (RAY_ADDRESS) or a local Ray
    models: dict[str, ModelSection] = Field(min_length=1)  # route -> model: models.translate serves POST /translate
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    http: HttpSection = Field(default_factory=HttpSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    inputs: InputsSection = Field(default_factory=InputsSection)
    ingress: AutoscalingSection = Field(
        default_factory=lambda: AutoscalingSection(num_cpus=0.0, max_ongoing_requests=256)
    )

    @field_validator("models")
    @classmethod
    def _check_routes(cls, v: dict[str, ModelSection]) -> dict[str, ModelSection]:
        for route in v:
            if not ROUTE.match(route) or route in RESERVED_ROUTES:
                raise ValueError(f"route {route!r} must be lower-case letters, digits, '-' or '_' (not "
                                 f"{', '.join(RESERVED_ROUTES)})")  # fmt: skip
        return v

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if not self.http.route_prefix.startswith("/"):
            raise ValueError(f"http.route_prefix must start with '/', got {self.http.route_prefix!r}")
        return self

    def extract_config(self):
        """The :class:`~ray_slt.features.extract.ExtractConfig` of the serving path (no visual features)."""
        from ray_slt.features.extract import ExtractConfig

        f = self.features
        return ExtractConfig(frames=f.frames, decode=f.decode, pose=f.pose, progress=False)
