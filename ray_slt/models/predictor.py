"""The predictor interface: a saved model behind one call, ``predict(samples) -> outputs``.

Every model kind has one predictor class (registered in :data:`ray_slt.models.registry.MODEL_KINDS`). It loads
the model directory from safetensors + JSON only, and says what it needs and what it gives, so that
``ray-slt eval``, the Serve application and any other consumer can use a model without knowing its family:

- ``inputs``: what a sample must carry: ``pose`` (the 77-point layout as the feature store decodes it:
  ``keypoints``, ``keypoints_valid``, ``keypoints_confidence``, plus DINOv2 ``*_features`` when
  ``needs_visual``), ``video`` (``video_uri``: a video file or frame folder, decoded by the model itself),
  ``gloss`` (a gloss string) or ``text`` (a sentence);
- ``predicts``: what each output holds (``text``: ``{"text": ...}``), ``protocol``: the evaluation protocol
  (:mod:`ray_slt.eval.protocols`) its outputs are scored with by default, ``route``: the HTTP route it is
  served on by default (``/translate``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ray_slt.models.registry import ModelRef, model_id

INPUT_KINDS = ("pose", "video", "gloss", "text")


class Predictor(ABC):
    """A loaded model (eval mode) on ``device``; ``model_id`` defaults to the checkpoint's name @ the content hash
    of its model files."""

    kind: ClassVar[str] = ""
    predicts: ClassVar[str] = "text"
    route: ClassVar[str] = "translate"
    protocol: ClassVar[str] = "translation"
    #: what a sample must carry (a class default; a predictor may decide per model, e.g. gloss vs pose encoders)
    inputs: str = "pose"
    #: whether pose samples must also carry DINOv2 face/hand features
    needs_visual: bool = False
    #: options that only re-score what the predictor decoded (:meth:`rescore` changes them in place, so a decoding
    #: grid over them decodes once)
    rescoring_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ref: ModelRef, device: str = "cpu", model_id: str | None = None):
        import torch

        self.ref = ref
        self.device = torch.device(device)
        self.model_id = model_id or f"{ref.name}@{_content_id(ref.model)}"

    @classmethod
    def requirements(cls, ref: ModelRef) -> dict[str, Any]:
        """What the model's samples must carry (``inputs``, ``needs_visual``), read from its JSON files only (no
        weights), so a server can set up its input path before any replica loads the model."""
        return {"inputs": cls.inputs, "needs_visual": cls.needs_visual}

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Refuse options the predictor does not take, naming the ones it does."""
        import inspect

        from ray_slt.errors import ConfigError

        known = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "ref", "device")]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"the {cls.kind} predictor takes no option {unknown[0]!r} (its options: "
                              f"{', '.join(known)})")  # fmt: skip

    @classmethod
    def options_from(cls, train_config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Predictor options that a run's training config implies (e.g. a feature cache); none by default."""
        return {}

    @abstractmethod
    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One output per sample (deterministic: greedy or beam search, no sampling)."""

    def rescore(self, **options: Any) -> None:
        """Set :attr:`rescoring_options` in place; none by default."""
        from ray_slt.errors import ConfigError

        if options:
            raise ConfigError(f"the {self.kind} predictor re-scores nothing ({', '.join(sorted(options))})")

    def settings(self) -> dict[str, Any]:
        """The settings that shape its outputs (decoding), reported with them."""
        return {}

    def protocol_defaults(self) -> dict[str, Any]:
        """Options of its own protocol that the loaded model implies (e.g. case-insensitive scoring of a
        translator trained on lower-cased text); options given explicitly win. None by default."""
        return {}

    def info(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "kind": self.kind,
            "stage": self.ref.stage,
            "inputs": self.inputs,
            "predicts": self.predicts,
            "protocol": self.protocol,
            "needs_visual": self.needs_visual,
            "settings": self.settings(),
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the predictor holds besides the model (decoder processes, temporary files)."""


def _content_id(model_uri: str) -> str:
    return model_id(model_uri)
