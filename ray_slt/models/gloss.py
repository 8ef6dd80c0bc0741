"""The gloss-token encoder: the sign encoder of the gloss -> text benchmark (same LLM + LoRA machinery)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from ray_slt.errors import DataError
from ray_slt.models.config import GlossEncoderConfig
from ray_slt.models.layers import SequenceEncoder


class GlossEncoder(nn.Module):
    """``encode(batch) -> (Z [B, G, hidden], mask [B, G])`` from ``gloss_ids`` long [B, G] and
    ``gloss_mask`` bool [B, G] (True = real gloss). Ids come from a word-level gloss tokenizer
    (:func:`ray_slt.models.tiny.train_word_tokenizer`), whose pad id is ``pad_id``."""

    def __init__(self, cfg: GlossEncoderConfig, vocab_size: int, pad_id: int = 0):
        super().__init__()
        self.cfg = cfg
        self.hidden = cfg.hidden
        self.embed = nn.Embedding(vocab_size, cfg.hidden, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=cfg.hidden**-0.5)  # unit scale after * sqrt(hidden)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.scale = math.sqrt(cfg.hidden)
        self.transformer = SequenceEncoder(cfg.hidden, cfg.layers, cfg.heads, cfg.ffn, cfg.dropout)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if "gloss_ids" not in batch:
            raise DataError("this model reads glosses, and the data has no gloss column (a gloss manifest is needed)")
        ids, mask = batch["gloss_ids"], batch["gloss_mask"].bool()
        return self.transformer(self.embed(ids) * self.scale, mask), mask

    forward = encode
