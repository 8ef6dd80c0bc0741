"""Fixtures of the GRPO tests: PHOENIX-2014T gloss/text pairs (real data, read in place) and a tiny SFT
translator checkpoint (gloss encoder -> projector -> tiny random Qwen3 + LoRA; tokenizer and gloss vocabulary
built from 200 PHOENIX training pairs, weights untrained)."""

from __future__ import annotations

import pytest
from grpo_helpers import phoenix_pairs, save_tiny_sft


@pytest.fixture(scope="session")
def phoenix_dev(shared_data) -> list[dict[str, str]]:
    """PHOENIX-2014T dev pairs ``{name, gloss, text}`` (519 sentences)."""
    return phoenix_pairs(shared_data, "dev")


@pytest.fixture(scope="session")
def phoenix_train(shared_data) -> list[dict[str, str]]:
    return phoenix_pairs(shared_data, "train")


@pytest.fixture(scope="session")
def sft_checkpoint(tmp_path_factory, phoenix_train) -> str:
    """A tiny gloss -> text SFT translator (untrained weights), saved as a translator checkpoint."""
    return save_tiny_sft(str(tmp_path_factory.mktemp("grpo_sft") / "sft"), phoenix_train[:200])
