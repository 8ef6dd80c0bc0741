"""Model code of the RVLF translator: skeleton / gloss encoders, stage-1 pretraining, stage-2 SFT with LoRA.

Public API (per-worker training loops build on these):

- configs: :mod:`ray_slt.models.config` (``SFTConfig``, ``PretrainConfig`` and their parts);
- stage 1: ``PretrainModel(cfg, tokenizer)``; ``model(batch) -> PretrainOutput`` (``.loss``),
  ``model.translate(batch)``; the loss itself: ``token_contrastive_loss``;
- stage 2: ``build_translator(cfg, texts=..., glosses=...) -> SignTranslator``; ``model(batch).loss``;
  ``param_groups(model)``; ``generate(model, batch, num_beams, max_new_tokens)``;
- batches: ``model.collator()`` (a :class:`Collator`) turns per-sample dicts into tensors;
- checkpoints: ``save_translator`` / ``load_translator``, ``save_pretrain`` / ``load_pretrain``;
- tiny models: ``train_tokenizer``, ``build_tiny_lm``;
- choosing among a beam's hypotheses (text-side models): :mod:`ray_slt.models.rerank` (noisy-channel re-ranking
  with the reverse-direction model and a language model of the output side, :mod:`ray_slt.models.textlm`),
  :mod:`ray_slt.models.mbr` (minimum Bayes risk by sentence BLEU).
"""

from __future__ import annotations

from typing import Any

from ray_slt.registry import Registry

# Imported lazily (PEP 562), so that reading the config schemas does not import torch/transformers/peft.
_EXPORTS = {
    "Collator": "batch",
    "sample_frames": "batch",
    "to_device": "batch",
    "load_pretrain": "checkpoint",
    "load_pretrained_skeleton": "checkpoint",
    "load_translator": "checkpoint",
    "save_pretrain": "checkpoint",
    "save_translator": "checkpoint",
    "GlossEncoder": "gloss",
    "PretrainModel": "pretrain",
    "PretrainOutput": "pretrain",
    "token_contrastive_loss": "pretrain",
    "build_pretrain_model": "pretrain",
    "SignEncoder": "sft",
    "SignTranslator": "sft",
    "build_translator": "sft",
    "generate": "sft",
    "param_groups": "sft",
    "PARTS": "skeleton",
    "SkeletonEncoder": "skeleton",
    "build_tiny_lm": "tiny",
    "train_tokenizer": "tiny",
    "train_word_tokenizer": "tiny",
}


_LAZY = Registry("ray_slt.models name", {name: f"ray_slt.models.{module}:{name}" for name, module in _EXPORTS.items()})


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ray_slt.models' has no attribute {name!r}")
    return _LAZY.get(name)


__all__ = sorted(_EXPORTS)
