"""Building blocks shared by the sign encoders: sinusoidal positions and a padding-aware transformer encoder."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """[length, dim] sinusoidal position encodings (no length limit, nothing to learn)."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim, device=device)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return enc


class SequenceEncoder(nn.Module):
    """Pre-norm transformer encoder over [B, T, H] with a [B, T] validity mask (True = real step).

    Padded steps are excluded from attention and zeroed in the output, so a sequence encodes the same alone
    and inside a padded batch.
    """

    def __init__(self, hidden: int, layers: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            hidden, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.dropout = nn.Dropout(dropout)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + sinusoidal_positions(x.shape[1], self.hidden, x.device).to(x.dtype)
        x = self.layers(self.dropout(x), src_key_padding_mask=~mask)
        return x * mask[..., None].to(x.dtype)
