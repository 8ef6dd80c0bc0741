"""The skeleton encoder over the 77-point layout: per-part graph convolutions over time, then a transformer.

Layout (produced by the extraction stage; coordinates centred on the shoulder midpoint, unit shoulder width):
body 0:9 [nose, left_eye, right_eye, left_shoulder, right_shoulder, left_elbow, right_elbow, left_wrist,
right_wrist] | left hand 9:30 and right hand 30:51 (wrist, thumb cmc/mcp/ip/tip, index mcp/pip/dip/tip,
middle, ring, pinky) | mouth 51:59 (inner-lip ring, in ring order) | face 59:77 (9 jaw points along the jaw,
6 eyebrow points: 3 per brow, outer->inner then inner->outer, nose tip, right-eye outer corner, left-eye
outer corner; iBUG 0,2,..,16, 17,19,21,22,24,26, 30, 36, 45, so the jaw starts on the signer's right).

Like CoSign, each part (body, left hand, right hand, mouth, face) has its own stack of spatio-temporal graph
convolution blocks, so it learns its own co-occurrence patterns; the parts' pooled features are concatenated
per frame and a transformer encoder models time. Missing points are explicit: their coordinates and
confidence are zeroed and a presence channel says they are missing; after every block a missing point's
features are zeroed again, so it never passes a message to its neighbours, and each part's pooled feature is
the mean over its present points plus the fraction present. Padded frames are masked the same way, so a
sample encodes identically alone and inside a padded batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ray_slt.errors import DataError
from ray_slt.features.layouts import NUM_POINTS, PART_EDGES
from ray_slt.features.layouts import PARTS as LAYOUT_PARTS
from ray_slt.models.config import SkeletonEncoderConfig
from ray_slt.models.layers import SequenceEncoder

# The 77-point layout's parts and limbs (ray_slt.features.layouts defines them), as (start, end) index pairs.
PARTS: dict[str, tuple[int, int]] = {name: (part.start, part.stop) for name, part in LAYOUT_PARTS.items()}
IN_CHANNELS = 4  # x, y, confidence, present


def normalized_adjacency(num_nodes: int, edges: list[tuple[int, int]]) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 of an undirected graph."""
    a = torch.eye(num_nodes)
    for i, j in edges:
        if not (0 <= i < num_nodes and 0 <= j < num_nodes):
            raise ValueError(f"edge ({i}, {j}) outside a graph of {num_nodes} nodes")
        a[i, j] = a[j, i] = 1.0
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class GraphBlock(nn.Module):
    """Spatial graph convolution (fixed normalised adjacency + a learned one, zero-initialised), then a
    temporal convolution per point; residual; missing points and padded frames stay zero."""

    def __init__(self, adjacency: torch.Tensor, cin: int, cout: int, kernel: int, dropout: float):
        super().__init__()
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.learned = nn.Parameter(torch.zeros_like(adjacency))
        self.spatial = nn.Linear(cin, cout)
        self.norm1 = nn.LayerNorm(cout)
        self.temporal = nn.Conv1d(cout, cout, kernel, padding=kernel // 2)
        self.norm2 = nn.LayerNorm(cout)
        self.residual = nn.Identity() if cin == cout else nn.Linear(cin, cout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x: [B, T, N, C]; valid: [B, T, N, 1] (1 = point present in a real frame)
        b, t, n, _ = x.shape
        h = torch.einsum("nm,btmc->btnc", self.adjacency + self.learned, x)
        h = F.gelu(self.norm1(self.spatial(h))) * valid
        h = h.permute(0, 2, 3, 1).reshape(b * n, -1, t)  # [B*N, C, T]
        h = self.temporal(h).reshape(b, n, -1, t).permute(0, 3, 1, 2)
        h = self.norm2(self.dropout(h))
        return F.gelu(h + self.residual(x)) * valid


class PartGCN(nn.Module):
    def __init__(self, num_nodes: int, edges: list[tuple[int, int]], cfg: SkeletonEncoderConfig):
        super().__init__()
        adjacency = normalized_adjacency(num_nodes, edges)
        widths = [IN_CHANNELS, *cfg.gcn_channels]
        self.blocks = nn.ModuleList(
            GraphBlock(adjacency, cin, cout, cfg.temporal_kernel, cfg.dropout)
            for cin, cout in itertools.pairwise(widths)
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, valid)
        count = valid.sum(2)  # [B, T, 1]
        pooled = x.sum(2) / count.clamp(min=1)
        return torch.cat([pooled, count / x.shape[2]], dim=-1)  # mean over present points + fraction present


def skeleton_inputs(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point input channels [B, T, 77, 4] (x, y, confidence, present) and validity [B, T, 77]."""
    if "coords" not in batch:
        raise DataError(
            "this model reads poses, and the data has none: give it a feature store made by `ray-slt extract` "
            "(or a manifest whose rows carry keypoints), not a text or gloss manifest"
        )
    coords, point_mask, frame_mask = batch["coords"], batch["point_mask"].bool(), batch["frame_mask"].bool()
    if coords.ndim != 4 or coords.shape[2:] != (NUM_POINTS, 2):
        raise ValueError(f"coords must be [B, T, {NUM_POINTS}, 2], got {tuple(coords.shape)}")
    valid = point_mask & frame_mask[..., None]
    present = valid.to(coords.dtype)
    confidence = batch.get("confidence")
    confidence = present if confidence is None else confidence.to(coords.dtype)
    # Missing points: zero, never read. torch.where also drops NaN/inf the estimator may have left there.
    xy = torch.where(valid[..., None], coords, torch.zeros((), dtype=coords.dtype, device=coords.device))
    conf = torch.where(valid, confidence, torch.zeros((), dtype=coords.dtype, device=coords.device))
    return torch.cat([xy, conf[..., None], present[..., None]], dim=-1), valid


class SkeletonEncoder(nn.Module):
    """``encode(batch) -> (Z [B, T, hidden], mask [B, T])`` over the 77-point layout.

    Batch keys: ``coords`` float [B, T, 77, 2], ``point_mask`` bool [B, T, 77] (True = present),
    ``frame_mask`` bool [B, T] (True = real frame, False = padding), optional ``confidence`` [B, T, 77].
    """

    def __init__(self, cfg: SkeletonEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.hidden = cfg.hidden
        self.parts = nn.ModuleDict({name: PartGCN(e - s, PART_EDGES[name], cfg) for name, (s, e) in PARTS.items()})
        self.fuse = nn.Linear(len(PARTS) * (cfg.gcn_channels[-1] + 1), cfg.hidden)
        self.transformer = SequenceEncoder(cfg.hidden, cfg.layers, cfg.heads, cfg.ffn, cfg.dropout)

    def encode_with_parts(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """As :meth:`encode`, plus each part's pooled graph-convolution features ``[B, T, C + 1]`` (before the
        parts are fused): the subunit level of HALI."""
        x, valid = skeleton_inputs(batch)
        x = x.to(self.fuse.weight.dtype)
        validf = valid[..., None].to(x.dtype)
        feats = [gcn(x[:, :, s:e], validf[:, :, s:e]) for (s, e), gcn in zip(PARTS.values(), self.parts.values())]
        mask = batch["frame_mask"].bool()
        z = self.fuse(torch.cat(feats, dim=-1)) * mask[..., None].to(x.dtype)
        return self.transformer(z, mask), mask, dict(zip(PARTS, feats))

    def encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z, mask, _ = self.encode_with_parts(batch)
        return z, mask

    forward = encode
