"""Helpers of the model tests: tiny configs and synthetic pose samples in the extraction stage's format."""

from __future__ import annotations

import numpy as np

DINO = 16


def tiny_sft(**overrides):
    """A tiny SFTConfig (CPU sizes) with ``overrides`` merged in (nested dicts allowed). The tiny LM stands in for
    a pretrained one here: it trains LoRA (``lm_training: lora``) unless an override says otherwise."""
    from ray_slt.models.config import SFTConfig

    base = {
        "lm": "tiny:qwen3",
        "lm_training": "lora",
        "tokenizer": {"vocab_size": 1000},
        "encoder": {"type": "skeleton", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1, "gcn_channels": [16]},
        "fusion": {"dino_dim": DINO},
        "projector": {"hidden": 64},
        "max_new_tokens": 8,
        "num_beams": 3,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "encoder":
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return SFTConfig.model_validate(base)


def pose_samples(n: int, lengths=(9, 6, 12), seed: int = 0, dino: int | None = DINO, texts=None) -> list[dict]:
    """Synthetic samples in the extraction stage's format (random poses, ~15% of points missing)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = lengths[i % len(lengths)]
        mask = rng.random((t, 77)) > 0.15
        coords = rng.normal(size=(t, 77, 2)).astype(np.float32)
        coords[~mask] = np.nan  # what a missing point may hold upstream
        s = {
            "sample_id": f"s{i}",
            "coords": coords,
            "mask": mask,
            "confidence": np.where(mask, rng.uniform(0.3, 1, (t, 77)), 0).astype(np.float32),
        }
        if dino:
            s["dino_face"] = rng.normal(size=(t, dino)).astype(np.float32)
            s["dino_hand"] = rng.normal(size=(t, 2 * dino)).astype(np.float32)  # left and right hands
        if texts is not None:
            s["text"] = texts[i % len(texts)]
        out.append(s)
    return out
