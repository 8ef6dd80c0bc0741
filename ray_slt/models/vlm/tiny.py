"""Tiny randomly initialised VLMs of the real architecture classes (``model: tiny:<family>``).

A tiny model is built from the family's real config class with small sizes (:class:`TinyVLMConfig`), a
byte-level BPE tokenizer trained on the training texts plus the family's special tokens, and weights drawn from
a seed. It is saved once as an ordinary Hugging Face checkpoint directory (``config.json``,
``model.safetensors``, tokenizer files; ``MANIFEST.json`` last) and loaded from there by every stage, exactly as
a real checkpoint: the cache job and the training run therefore share the same frozen vision tower.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence

import torch

from ray_slt import storage
from ray_slt.errors import ConfigError
from ray_slt.models.vlm.config import TinyVLMConfig, VLMConfig
from ray_slt.models.vlm.families import Family, family_named


def tiny_tokenizer(family: Family, texts: Sequence[str], vocab_size: int):
    """BPE on ``texts`` (+ the chat format's words), with the family's special tokens added."""
    from ray_slt.models.tiny import train_tokenizer

    tok = train_tokenizer([*texts, *family.tiny_template_texts()], vocab_size=vocab_size)
    tok.add_special_tokens({"additional_special_tokens": list(family.special_tokens)})
    return tok


def build_tiny_model(family: Family, tiny: TinyVLMConfig, tokenizer):
    """A randomly initialised model of the family's class; the weights depend only on ``tiny.seed``."""
    config = family.tiny_config(tiny, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny.seed)
        model = family.model_class()(config)
    return model.eval()


def save_tiny_checkpoint(family_name: str, tiny: TinyVLMConfig, texts: Sequence[str], uri: str) -> str:
    """Build a tiny model + tokenizer and save them as a checkpoint directory at ``uri`` (local or s3://)."""
    from ray_slt.models.checkpoint import publish

    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ConfigError(f"tiny:{family_name} needs training texts to train its tokenizer")
    family = family_named(family_name)
    tokenizer = tiny_tokenizer(family, texts, tiny.vocab_size)
    model = build_tiny_model(family, tiny, tokenizer)
    with tempfile.TemporaryDirectory(prefix="ray_slt_tiny_vlm_") as d:
        model.save_pretrained(d, safe_serialization=True)
        tokenizer.save_pretrained(d)
        with open(os.path.join(d, "video_preprocessor_config.json"), "w", encoding="utf-8") as f:
            json.dump(family.tiny_preprocessor(tiny), f, indent=1)
        publish(d, uri)
    return uri


def ensure_tiny(cfg: VLMConfig, texts: Sequence[str] | None) -> str:
    """The materialised tiny checkpoint of ``cfg`` (built from ``texts`` if it does not exist yet)."""
    from ray_slt.models.checkpoint import MANIFEST

    uri = cfg.tiny.path
    if storage.exists(storage.join(uri, MANIFEST)):
        return uri
    if texts is None:
        raise ConfigError(f"{uri}: no tiny checkpoint there yet, and no training texts given to build one")
    return save_tiny_checkpoint(cfg.model[5:], cfg.tiny, texts, uri)
