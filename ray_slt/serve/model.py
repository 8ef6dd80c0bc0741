"""A translator checkpoint behind one call: ``TranslatorModel(uri).translate(samples) -> texts``.

Any translator the training stages write is served: a stage-2 SFT translator (``translator.json``,
:func:`ray_slt.models.load_translator`, decoded with :func:`ray_slt.models.generate`) or a stage-1
pretraining model (``pretrain.json``, decoded by its text decoder). Loading reads safetensors and JSON only.
Samples are the extraction stage's decoded rows (``keypoints``, ``keypoints_valid``, ``keypoints_confidence``
and, for checkpoints that fuse DINOv2 features, ``face_features``/``left_hand_features``/``right_hand_features``)
and go through the model's own collator, as in training and evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt import storage
from ray_slt.errors import ConfigError, StorageError

TRANSLATOR_META, PRETRAIN_META = "translator.json", "pretrain.json"


def checkpoint_info(uri: str) -> dict[str, Any]:
    """What a checkpoint is: ``model`` (the model directory), ``stage`` (``sft``/``pretrain``), its model config,
    whether it needs DINOv2 features, and ``model_id`` (checkpoint name @ content hash of the model's files, the
    ``checkpoint_id`` that ``ray-slt eval`` records in metrics.json).

    ``uri`` is what the training stages write: a run directory (its best checkpoint), a checkpoint directory
    (``checkpoint_*/`` with ``model/``) or a model directory itself (``MANIFEST.json``)."""
    from ray_slt.training.evaluate import checkpoint_id, resolve_checkpoint

    ref = resolve_checkpoint(uri)
    model, stage = ref["model"], ref["stage"]
    meta_name = TRANSLATOR_META if stage == "sft" else PRETRAIN_META
    if stage not in ("sft", "pretrain") or not storage.exists(storage.join(model, meta_name)):
        raise StorageError(f"{uri}: not a translator checkpoint (stage {stage!r})")
    config = json.loads(storage.read_text(storage.join(model, meta_name))).get("config") or {}
    name = storage.basename(storage.normalize(ref["checkpoint"])) or "model"
    needs_visual = False
    if stage == "sft":
        if (config.get("encoder") or {}).get("type") == "gloss":
            raise ConfigError(f"{uri}: this translator reads glosses, not signing; serving translates videos and poses")
        fusion = config.get("fusion") or {}
        needs_visual = bool(fusion.get("face", True) or fusion.get("hand", True))
    return {
        "model": model,
        "stage": stage,
        "config": config,
        "needs_visual": needs_visual,
        "model_id": f"{name}@{checkpoint_id(model)}",
    }


class TranslatorModel:
    """A loaded checkpoint (eval mode, CPU unless ``device`` says otherwise); ``uri`` as for
    :func:`checkpoint_info`."""

    def __init__(
        self,
        uri: str,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        model_id: str | None = None,
        device: str = "cpu",
    ):
        import torch

        info = checkpoint_info(uri)
        uri = info["model"]
        self.stage = info["stage"]
        self.needs_visual = info["needs_visual"]
        self.model_id = model_id or info["model_id"]
        if self.stage == "sft":
            from ray_slt.models import load_translator

            self.model = load_translator(uri)
        else:
            from ray_slt.models import load_pretrain

            self.model = load_pretrain(uri)
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.collate = self.model.collator()
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        cfg = self.model.cfg
        self.decoding = {
            "num_beams": num_beams or cfg.num_beams,
            "max_new_tokens": max_new_tokens or cfg.max_new_tokens,
            "max_frames": cfg.max_frames,
        }

    def translate(self, samples: Sequence[Mapping[str, Any]]) -> list[str]:
        """Translations of a list of samples (one forward pass; deterministic decoding)."""
        import torch

        from ray_slt.models import to_device

        batch = to_device(self.collate([_model_input(s) for s in samples]), self.device)
        with torch.no_grad():
            if self.stage == "sft":
                from ray_slt.models import generate

                return generate(self.model, batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens)
            return self.model.translate(batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens)


_INPUT_KEYS = (
    "keypoints",
    "keypoints_valid",
    "keypoints_confidence",
    "face_features",
    "left_hand_features",
    "right_hand_features",
)


def _model_input(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Only the arrays the collator reads (a sample carries no target text at inference)."""
    return {k: sample[k] for k in _INPUT_KEYS if sample.get(k) is not None}
