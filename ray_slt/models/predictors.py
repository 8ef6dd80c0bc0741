"""Predictors of the RVLF translators: stage-2 translators (``translator``: SFT and GRPO runs) and stage-1
pretraining models (``pretrain``, decoded by their text decoder). See :mod:`ray_slt.models.predictor`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt.errors import DataError
from ray_slt.models.predictor import Predictor
from ray_slt.models.registry import ModelRef
from ray_slt.models.rerank import Reranking

# What a translator's collator reads from a sample (a sample carries no target text at inference).
MODEL_INPUT_KEYS = ("keypoints", "keypoints_valid", "keypoints_confidence", "face_features", "left_hand_features",
                    "right_hand_features", "gloss")  # fmt: skip


def model_input(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields the collator reads."""
    return {k: sample[k] for k in MODEL_INPUT_KEYS if sample.get(k) is not None}


class _TextPredictor(Predictor):
    """Shared by the translator kinds: collate -> deterministic decoding -> ``{"text": ...}``."""

    def __init__(self, ref: ModelRef, device: str = "cpu", model_id: str | None = None,
                 num_beams: int | None = None, max_new_tokens: int | None = None):  # fmt: skip
        super().__init__(ref, device, model_id)
        self.model = self._load(ref.model).to(self.device).eval()
        self.collate = self.model.collator()
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens

    def _load(self, uri: str):
        raise NotImplementedError

    def _decode(self, batch: dict[str, Any], samples: Sequence[Mapping[str, Any]]) -> list[str]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        cfg = self.model.cfg
        return {
            "num_beams": self.num_beams or cfg.num_beams,
            "max_new_tokens": self.max_new_tokens or cfg.max_new_tokens,
            "max_frames": getattr(cfg, "max_frames", None),
            "do_sample": False,
        }

    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        import torch

        from ray_slt.models.batch import to_device

        if not samples:
            return []
        missing = [str(s.get("sample_id", i)) for i, s in enumerate(samples) if not self._has_input(s)]
        if missing:
            raise DataError(f"this model reads {self.inputs}; samples without it: {', '.join(missing[:5])}")
        batch = to_device(self.collate([model_input(s) for s in samples]), self.device)
        with torch.no_grad():
            return [{"text": text} for text in self._decode(batch, samples)]

    def _has_input(self, sample: Mapping[str, Any]) -> bool:
        return sample.get("gloss") is not None if self.inputs == "gloss" else sample.get("keypoints") is not None


class TranslatorPredictor(Reranking, _TextPredictor):
    """A stage-2 translator (:func:`ray_slt.models.checkpoint.load_translator`): skeleton or gloss encoder ->
    projector -> causal LM. Options: ``num_beams``, ``max_new_tokens`` (None: the model's), ``length_penalty``
    (beam search; None: 1.0), ``mbr`` (true: the minimum-Bayes-risk choice among the beam's hypotheses by sentence
    BLEU, :mod:`ray_slt.models.mbr`, instead of the beam's best; None/false: off); ``channel`` (a text -> gloss
    model: the beam's hypotheses re-ranked by ``log p(text | glosses) + channel_weight * log p(glosses | text) +
    length_bonus * tokens``, :mod:`ray_slt.models.rerank`; gloss translators only) with ``channel_weight``
    (None: 1.0) and ``length_bonus`` (None: 0.0); ``lm`` (a ``textlm`` model of the sentences: adds
    ``lm_weight * log p(text)``, None: 1.0; with or without a channel); ``peer`` (one or more gloss -> text
    translators: their beams add candidates and ``peer_weight * sum log p_peer(text | glosses)`` joins the score,
    None: 1.0; an n-best ensemble)."""

    kind = "translator"

    def __init__(self, ref: ModelRef, device: str = "cpu", model_id: str | None = None,
                 num_beams: int | None = None, max_new_tokens: int | None = None,
                 length_penalty: float | None = None, mbr: bool | None = None, channel: str | None = None,
                 channel_weight: float | None = None, length_bonus: float | None = None, lm: str | None = None,
                 lm_weight: float | None = None, peer: str | list[str] | None = None,
                 peer_weight: float | None = None):  # fmt: skip
        super().__init__(ref, device, model_id, num_beams=num_beams, max_new_tokens=max_new_tokens)
        self.length_penalty = length_penalty
        decoding = {"num_beams": num_beams, "max_new_tokens": max_new_tokens, "length_penalty": length_penalty}
        self._setup_reranking(channel, channel_weight, length_bonus, mbr, lm, lm_weight, peer, peer_weight, decoding)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "length_penalty": 1.0 if self.length_penalty is None else self.length_penalty,
                **self.reranking_settings()}  # fmt: skip

    @classmethod
    def requirements(cls, ref: ModelRef) -> dict[str, Any]:
        import json

        from ray_slt import storage

        cfg = json.loads(storage.read_text(storage.join(ref.model, "translator.json"))).get("config") or {}
        gloss = (cfg.get("encoder") or {}).get("type") == "gloss"
        fusion = cfg.get("fusion") or {}
        return {"inputs": "gloss" if gloss else "pose",
                "needs_visual": not gloss and bool(fusion.get("face", True) or fusion.get("hand", True))}  # fmt: skip

    def _load(self, uri: str):
        from ray_slt.models.checkpoint import load_translator

        model = load_translator(uri)
        cfg = model.cfg
        self.inputs = "gloss" if cfg.encoder.type == "gloss" else "pose"
        self.needs_visual = self.inputs == "pose" and bool(cfg.fusion.face or cfg.fusion.hand)
        return model

    def _decode(self, batch: dict[str, Any], samples: Sequence[Mapping[str, Any]]) -> list[str]:
        if self.reranker is None:
            return self.model.generate(batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                                       length_penalty=self.length_penalty, mbr=self.mbr)  # fmt: skip
        sources = [str(s["gloss"]) for s in samples]
        nbest = self.reranker.nbest(
            tuple(zip((str(s.get("sample_id", "")) for s in samples), sources)),
            lambda: self.model.generate_nbest(batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                                              length_penalty=self.length_penalty),
        )  # fmt: skip
        return self.reranker.choose(sources, nbest, samples)

    def protocol_defaults(self) -> dict[str, Any]:
        """A translator trained on lower-cased targets writes lower case: it is scored case-insensitively."""
        return {"lowercase": True} if self.model.cfg.lowercase else {}


class PretrainPredictor(_TextPredictor):
    """A stage-1 pretraining model (:func:`ray_slt.models.checkpoint.load_pretrain`), translating with its text
    decoder. Options: ``num_beams``, ``max_new_tokens``."""

    kind = "pretrain"

    def _load(self, uri: str):
        from ray_slt.models.checkpoint import load_pretrain

        return load_pretrain(uri)

    def _decode(self, batch: dict[str, Any], samples: Sequence[Mapping[str, Any]]) -> list[str]:
        return self.model.translate(batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens)
