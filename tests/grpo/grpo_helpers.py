"""Helpers of the GRPO tests: tiny configs, PHOENIX rows, TRL arguments sized for a CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

INSTRUCTION = "Translate the German sign language glosses into German."


def phoenix_pairs(shared_data: Path, split: str) -> list[dict[str, str]]:
    path = shared_data / "phoenix14t" / f"PHOENIX-2014-T.{split}.corpus.csv"
    if not path.exists():
        pytest.skip(f"real sample data not available: {path}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="|", quoting=csv.QUOTE_NONE)
        return [{"name": r["name"], "gloss": r["orth"], "text": r["translation"]} for r in rows]


def tiny_gloss_sft(**overrides):
    """A tiny gloss-encoder SFTConfig (CPU sizes), ``overrides`` merged in (nested dicts allowed)."""
    from ray_slt.models.config import SFTConfig

    base = {
        "lm": "tiny:qwen3",
        "tiny": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate": 64},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 600},
        "encoder": {"type": "gloss", "hidden": 32, "heads": 2, "ffn": 64, "layers": 1, "dropout": 0.0},
        "fusion": {"face": False, "hand": False},
        "projector": {"hidden": 64},
        "lora": {"dropout": 0.0},
        "instruction": INSTRUCTION,
        "max_new_tokens": 10,
        "num_beams": 1,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return SFTConfig.model_validate(base)


def save_tiny_sft(uri: str, pairs, **overrides) -> str:
    """Build a tiny gloss SFT translator (``tiny_gloss_sft(**overrides)``, untrained, vocabularies from ``pairs``)
    and save it as a translator checkpoint at ``uri``."""
    from ray_slt.models.checkpoint import save_translator
    from ray_slt.models.sft import build_translator

    cfg = tiny_gloss_sft(**overrides)
    model = build_translator(cfg, texts=[p["text"] for p in pairs], glosses=[p["gloss"] for p in pairs], seed=0)
    save_translator(model, uri)
    return uri


def grpo_rows(pairs, prompt: str = "p", lang: str = "de") -> list[dict]:
    """GRPO dataset rows of gloss/text pairs (the columns :func:`ray_slt.training.grpo.split_rows` makes)."""
    return [
        {"prompt": prompt, "reference": p["text"], "gloss": p["gloss"], "sample_id": p["name"], "lang": lang}
        for p in pairs
    ]


def tiny_args(output_dir, **overrides):
    """TRL GRPOConfig for CPU tests: fp32, no gradient checkpointing, no logging to anything."""
    from trl import GRPOConfig

    kw = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-3,
        beta=0.04,
        loss_type="grpo",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
    )
    kw.update(overrides)
    return GRPOConfig(**kw)
