"""Stage 1 of RVLF: vision-language pretraining of the skeleton encoder.

L_pt = L_con + slt_weight * L_slt (paper Eq. 11):

- L_con, the token-level contrastive loss (Eqs. 3-9): skeleton features Z_s [B, M, H] and text features
  Z_t [B, L, H] are projected to D by separate MLPs and L2-normalised; for every (skeleton b, text c) pair of
  the batch, E = F_S F_T^T [M, L]; a row softmax of E / tau (tau learnable) weights each skeleton frame's
  similarities, e_i = sum_j P_ij E_ij, and z_{S,T} is the mean of e_i over frames; z_{T,S} likewise with the
  roles swapped (softmax over frames, mean over tokens). Two B x B matrices of these global similarities feed
  a bidirectional InfoNCE with temperature tau', L_con = beta L_S2T + (1 - beta) L_T2S.
  Padding is excluded: the softmax runs over real tokens/frames only and the means average real ones only
  (M and L in Eqs. 4-6 are each sequence's true length).
- L_slt, the translation cross-entropy of an mBART-style text decoder attending to Z_s (Eq. 10; averaged
  over target tokens).

The text encoder and decoder are an ``MBartForConditionalGeneration`` built from its config class (random
init, shared embeddings), as the paper re-initialises the first layers of mBART; the skeleton features are
passed to its decoder as encoder outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import MBartConfig, MBartForConditionalGeneration, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from ray_slt.errors import ConfigError
from ray_slt.models.config import ContrastiveConfig, PretrainConfig
from ray_slt.models.skeleton import SkeletonEncoder
from ray_slt.models.tiny import train_tokenizer

MIN_TAU = 1e-2  # the learnable tau is clamped here (as CLIP clamps its logit scale at 100)


@dataclass
class ContrastiveOutput:
    loss: torch.Tensor
    loss_s2t: torch.Tensor
    loss_t2s: torch.Tensor
    z_s2t: torch.Tensor  # [B, B]: skeleton b -> text b'
    z_t2s: torch.Tensor  # [B, B]: text b -> skeleton b'


def token_contrastive_loss(
    f_s: torch.Tensor,
    s_mask: torch.Tensor,
    f_t: torch.Tensor,
    t_mask: torch.Tensor,
    tau: torch.Tensor | float,
    tau_prime: float,
    beta: float,
) -> ContrastiveOutput:
    """Eqs. 3-9 on projected features ``f_s`` [B, M, D], ``f_t`` [B, L, D] with masks (True = real)."""
    s_mask, t_mask = s_mask.bool(), t_mask.bool()
    fs, ft = F.normalize(f_s.float(), dim=-1), F.normalize(f_t.float(), dim=-1)
    e = torch.einsum("bmd,cld->bcml", fs, ft)  # E for skeleton b vs text c: [B, B, M, L]
    neg = torch.finfo(e.dtype).min
    # skeleton -> text: softmax over text c's real tokens, mean over skeleton b's real frames
    p = torch.softmax((e / tau).masked_fill(~t_mask[None, :, None, :], neg), dim=-1)
    e_s2t = (p * e).sum(-1)  # [B, B, M]
    sm = s_mask[:, None, :].to(e.dtype)
    z_s2t = (e_s2t * sm).sum(-1) / sm.sum(-1)
    # text -> skeleton: softmax over skeleton b's real frames, mean over text c's real tokens
    q = torch.softmax((e / tau).masked_fill(~s_mask[:, None, :, None], neg), dim=-2)
    e_t2s = (q * e).sum(-2)  # [B(skel), B(text), L]
    tm = t_mask[None, :, :].to(e.dtype)
    z_t2s = ((e_t2s * tm).sum(-1) / tm.sum(-1)).transpose(0, 1)  # [text, skeleton]
    target = torch.arange(e.shape[0], device=e.device)
    loss_s2t = F.cross_entropy(z_s2t / tau_prime, target)
    loss_t2s = F.cross_entropy(z_t2s / tau_prime, target)
    return ContrastiveOutput(beta * loss_s2t + (1 - beta) * loss_t2s, loss_s2t, loss_t2s, z_s2t, z_t2s)


def _mlp(dim_in: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim_in), nn.GELU(), nn.Linear(dim_in, dim_out))


class ContrastiveHead(nn.Module):
    """The two projection MLPs (to D) and the learnable temperature tau of the token-level softmax."""

    def __init__(self, hidden: int, cfg: ContrastiveConfig):
        super().__init__()
        self.cfg = cfg
        self.skeleton_proj = _mlp(hidden, cfg.dim)
        self.text_proj = _mlp(hidden, cfg.dim)
        log_tau = torch.tensor(float(cfg.tau)).log()
        if cfg.learn_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp().clamp(min=MIN_TAU)

    def forward(
        self, z_s: torch.Tensor, s_mask: torch.Tensor, z_t: torch.Tensor, t_mask: torch.Tensor
    ) -> ContrastiveOutput:
        return token_contrastive_loss(
            self.skeleton_proj(z_s),
            s_mask,
            self.text_proj(z_t),
            t_mask,
            self.tau,
            self.cfg.tau_prime,
            self.cfg.beta,
        )


@dataclass
class PretrainOutput:
    loss: torch.Tensor
    loss_con: torch.Tensor
    loss_s2t: torch.Tensor
    loss_t2s: torch.Tensor
    loss_slt: torch.Tensor

    def metrics(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in vars(self).items()}


def text_model_config(cfg: PretrainConfig, tokenizer: PreTrainedTokenizerBase) -> MBartConfig:
    t = cfg.text
    return MBartConfig(
        vocab_size=len(tokenizer),
        d_model=t.hidden,
        encoder_layers=t.encoder_layers,
        decoder_layers=t.decoder_layers,
        encoder_attention_heads=t.heads,
        decoder_attention_heads=t.heads,
        encoder_ffn_dim=t.ffn,
        decoder_ffn_dim=t.ffn,
        dropout=t.dropout,
        attention_dropout=t.dropout,
        max_position_embeddings=t.max_length + 2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=None,
        scale_embedding=True,
    )


class PretrainModel(nn.Module):
    """Skeleton encoder + mBART-style text encoder/decoder + contrastive head.

    ``forward(batch) -> PretrainOutput`` with ``.loss`` to backpropagate; ``translate(batch)`` decodes with
    the text decoder. Batch: the skeleton keys plus ``target_ids``/``target_mask`` (see
    :mod:`ray_slt.models.batch`; make it with ``model.collator()``).
    """

    def __init__(self, cfg: PretrainConfig, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.skeleton = SkeletonEncoder(cfg.skeleton)
        self.text = MBartForConditionalGeneration(text_model_config(cfg, tokenizer))
        self.contrastive = ContrastiveHead(cfg.skeleton.hidden, cfg.contrastive)

    def collator(self):
        from ray_slt.models.batch import Collator

        return Collator(self.tokenizer, max_frames=self.cfg.max_frames, max_target_tokens=self.cfg.text.max_length,
                        points=self.cfg.skeleton.points)  # fmt: skip

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.text.get_encoder()(input_ids=ids, attention_mask=mask.long()).last_hidden_state

    def forward(self, batch: Mapping[str, torch.Tensor]) -> PretrainOutput:
        z_s, s_mask = self.skeleton.encode(batch)
        ids, t_mask = batch["target_ids"], batch["target_mask"].bool()
        z_t = self.encode_text(ids, t_mask)
        con = self.contrastive(z_s, s_mask, z_t, t_mask)
        bos = torch.full_like(ids[:, :1], self.tokenizer.bos_token_id)
        decoder_ids = torch.cat([bos, ids[:, :-1]], dim=1)
        decoder_mask = torch.cat([torch.ones_like(t_mask[:, :1]), t_mask[:, :-1]], dim=1)
        out = self.text(
            encoder_outputs=BaseModelOutput(last_hidden_state=z_s),
            attention_mask=s_mask.long(),
            decoder_input_ids=decoder_ids,
            decoder_attention_mask=decoder_mask.long(),
            labels=ids.masked_fill(~t_mask, -100),
        )
        loss = con.loss + self.cfg.slt_weight * out.loss
        return PretrainOutput(loss, con.loss, con.loss_s2t, con.loss_t2s, out.loss)

    @torch.no_grad()
    def translate(
        self,
        batch: Mapping[str, torch.Tensor],
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        synced_gpus: bool = False,
    ) -> list[str]:
        """Decode the text decoder from the skeleton features (greedy if ``num_beams == 1``); ``synced_gpus``
        as in ``transformers`` generate (DeepSpeed ZeRO-3)."""
        z_s, s_mask = self.skeleton.encode(batch)
        tok = self.tokenizer
        out = self.text.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=z_s),
            attention_mask=s_mask.long(),
            num_beams=num_beams or self.cfg.num_beams,
            max_new_tokens=max_new_tokens or self.cfg.max_new_tokens,
            do_sample=False,
            decoder_start_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            synced_gpus=synced_gpus,
        )
        return [s.strip() for s in tok.batch_decode(out, skip_special_tokens=True)]


def build_pretrain_model(cfg: PretrainConfig, texts: Sequence[str] | None = None, seed: int = 0) -> PretrainModel:
    """A fresh stage-1 model: its tokenizer is loaded from ``cfg.text.tokenizer.path`` or trained on ``texts``
    (the training targets); the random initialisation depends only on ``seed``."""
    tok_cfg = cfg.text.tokenizer
    if tok_cfg.path is not None:
        from ray_slt.models.sft import load_tokenizer

        tokenizer = load_tokenizer(tok_cfg.path)
    elif texts:
        tokenizer = train_tokenizer(texts, tok_cfg.vocab_size, tok_cfg.kind)
    else:
        raise ConfigError("pretraining needs text.tokenizer.path or the training texts to train a tokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PretrainModel(cfg, tokenizer)
