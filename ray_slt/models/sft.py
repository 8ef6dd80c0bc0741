"""Stage 2 of RVLF: supervised fine-tuning of a causal LM on sign features (paper Sec. 3.2).

    Z_s, mask = encoder.encode(batch)                       # skeleton encoder or gloss-token encoder
    Z_e = Z_s + alpha * W_face(dino_face) + beta * W_hand([dino_left; dino_right])  # skeleton; optional
    V = MLP(Z_e)                                             # Linear(H, 4096) -> GELU -> Linear(4096, E_lm)
    LM input = [V (real frames)] [prompt tokens] [target tokens, </s>]  -> cross-entropy on the target

Any ``AutoModelForCausalLM`` works (Qwen3 on clusters, a tiny random Qwen3/Qwen2 on a CPU), and so does any
encoder-decoder ``AutoModelForSeq2SeqLM`` (mBART, NLLB/M2M, T5/mT5, Marian; a tiny random mBART or T5 on a CPU),
read the same way with the layout split between its two stacks::

    encoder inputs_embeds = [V (real frames)] [prompt tokens]      (right-padded)
    decoder labels        = [target tokens, </s>]                  (the class shifts them right itself)

A pretrained LM learns
through LoRA (PEFT) on the configured modules, its own weights frozen; a randomly initialised one learns every
weight (``lm_training``: LoRA on frozen random weights would leave most of the model unable to learn). Each sequence
is laid out contiguously and padded on the left, position ids count real positions only, so training and generation
(which continues the same left-padded layout) see identical inputs.

Sign encoders implement one interface, :class:`SignEncoder`: ``encode(batch) -> (Z [B, T', H], mask [B, T'])``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ray_slt.dtypes import torch_dtype
from ray_slt.errors import ConfigError
from ray_slt.models.batch import Collator
from ray_slt.models.config import GlossEncoderConfig, SFTConfig
from ray_slt.models.gloss import GlossEncoder
from ray_slt.models.skeleton import SkeletonEncoder
from ray_slt.models.tiny import build_tiny_lm, train_tokenizer, train_word_tokenizer

log = logging.getLogger("ray_slt.models")


@runtime_checkable
class SignEncoder(Protocol):
    """What the SFT model needs from a sign encoder."""

    hidden: int

    def encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Z [B, T', hidden], mask [B, T'] bool, True = real step)``."""
        ...


class SignTranslator(nn.Module):
    """Sign encoder + DINOv2 fusion + projector + causal LM (with LoRA, or trained in full).

    - ``forward(batch)`` -> the LM's output (``.loss``: mean cross-entropy over target tokens, incl. ``</s>``);
    - ``generate(batch, num_beams, max_new_tokens)`` -> list of decoded strings;
    - ``collator()`` -> the :class:`~ray_slt.models.batch.Collator` that makes its batches.
    """

    def __init__(
        self,
        cfg: SFTConfig,
        encoder: nn.Module,
        lm: PeftModel | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        gloss_tokenizer: PreTrainedTokenizerBase | None = None,
    ):
        super().__init__()
        if not isinstance(encoder, SignEncoder):
            raise TypeError(f"{type(encoder).__name__} does not implement SignEncoder.encode")
        self.cfg = cfg
        self.encoder = encoder
        hidden = encoder.hidden
        fusion = cfg.fusion
        self.face_proj = nn.Linear(fusion.dino_dim, hidden) if fusion.face else None
        # both hands' embeddings, concatenated (the batch's dino_hand is [B, T, 2 * dino_dim])
        self.hand_proj = nn.Linear(2 * fusion.dino_dim, hidden) if fusion.hand else None
        lm_width = lm.get_input_embeddings().embedding_dim
        self.projector = nn.Sequential(
            nn.Linear(hidden, cfg.projector.hidden), nn.GELU(), nn.Linear(cfg.projector.hidden, lm_width)
        )
        self.lm = lm
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)  # the LM's input embeddings, while training
        self.seq2seq = bool(getattr(lm.config, "is_encoder_decoder", False))
        base = lm.get_base_model() if isinstance(lm, PeftModel) else lm
        #: whether the LM's head runs on the target positions only (an LM whose forward takes ``logits_to_keep``;
        #: False computes the logits of every position, the straightforward way)
        self.target_logits_only = "logits_to_keep" in inspect.signature(base.forward).parameters
        self.tokenizer = tokenizer
        self.gloss_tokenizer = gloss_tokenizer
        prompt = tokenizer(cfg.prompt, add_special_tokens=False)["input_ids"]
        self.register_buffer("prompt_ids", torch.tensor(prompt, dtype=torch.long), persistent=False)
        if cfg.freeze_encoder:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> SignTranslator:
        super().train(mode)
        if self.cfg.freeze_encoder:
            self.encoder.eval()  # a frozen encoder keeps its inference behaviour (no dropout)
        return self

    def collator(self) -> Collator:
        max_glosses = self.cfg.encoder.max_length if isinstance(self.cfg.encoder, GlossEncoderConfig) else 0
        return Collator(
            self.tokenizer,
            self.gloss_tokenizer,
            max_frames=self.cfg.max_frames,
            max_target_tokens=self.cfg.max_target_tokens,
            max_glosses=max_glosses,
            points=getattr(self.cfg.encoder, "points", "all"),
        )

    # -- the sign prefix ---------------------------------------------------------------------------------
    def sign_embeddings(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected sign sequence in the LM's embedding space [B, T', E] and its mask [B, T']."""
        z, mask = self.encoder.encode(batch)
        fusion = self.cfg.fusion
        for key, proj, weight in (
            ("dino_face", self.face_proj, fusion.alpha),
            ("dino_hand", self.hand_proj, fusion.beta),
        ):
            if proj is None:
                continue
            feats = batch.get(key)
            if feats is None:
                part = "face" if key == "dino_face" else "hand"
                raise ValueError(f"the config uses {key} (fusion.{part}=true) but the batch has none")
            if feats.shape[:2] != z.shape[:2]:
                raise ValueError(f"{key} {tuple(feats.shape)} is not aligned with the sign frames {tuple(z.shape[:2])}")
            z = z + weight * proj(feats.to(proj.weight.dtype)) * mask[..., None].to(z.dtype)
        embed = self.lm.get_input_embeddings()
        return self.projector(z).to(embed.weight.dtype), mask

    def _seq2seq_layout(
        self,
        prefix: torch.Tensor,
        prefix_mask: torch.Tensor,
        target_ids: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Right-padded [sign][prompt] encoder inputs_embeds and attention_mask (and the target as labels, -100 on
        padding, for the decoder)."""
        prompt = self.lm.get_input_embeddings()(self.prompt_ids)
        rows = [torch.cat([prefix[b, prefix_mask[b]], prompt]) for b in range(prefix.shape[0])]
        length = max(len(r) for r in rows)
        inputs = prefix.new_zeros(len(rows), length, prefix.shape[-1])
        attention = torch.zeros(len(rows), length, dtype=torch.long, device=prefix.device)
        for b, r in enumerate(rows):
            inputs[b, : len(r)] = r
            attention[b, : len(r)] = 1
        out = {"inputs_embeds": inputs, "attention_mask": attention}
        if target_ids is not None:
            out["labels"] = target_ids.masked_fill(~target_mask.bool(), -100)
        return out

    def _layout(
        self,
        prefix: torch.Tensor,
        prefix_mask: torch.Tensor,
        target_ids: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Left-padded [sign][prompt][target] inputs_embeds, attention_mask, position_ids (and labels); the
        encoder-decoder layout for an encoder-decoder LM (:meth:`_seq2seq_layout`)."""
        if self.seq2seq:
            return self._seq2seq_layout(prefix, prefix_mask, target_ids, target_mask)
        embed = self.lm.get_input_embeddings()
        prompt = embed(self.prompt_ids)
        targets = embed(target_ids) if target_ids is not None else None
        rows, labels = [], []
        for b in range(prefix.shape[0]):
            parts = [prefix[b, prefix_mask[b]], prompt]
            lab = [torch.full((int(prefix_mask[b].sum()) + len(prompt),), -100, dtype=torch.long, device=prefix.device)]
            if targets is not None:
                keep = target_mask[b].bool()
                parts.append(targets[b, keep])
                lab.append(target_ids[b, keep])
            rows.append(torch.cat(parts))
            labels.append(torch.cat(lab))
        length = max(len(r) for r in rows)
        bsz, width = len(rows), prefix.shape[-1]
        inputs = prefix.new_zeros(bsz, length, width)
        attention = torch.zeros(bsz, length, dtype=torch.long, device=prefix.device)
        label_t = torch.full((bsz, length), -100, dtype=torch.long, device=prefix.device)
        for b, (r, lab) in enumerate(zip(rows, labels)):
            inputs[b, length - len(r) :] = r
            attention[b, length - len(r) :] = 1
            label_t[b, length - len(r) :] = lab
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        out = {"inputs_embeds": inputs, "attention_mask": attention, "position_ids": position_ids}
        if targets is not None:
            out["labels"] = label_t
        return out

    # -- training and inference ----------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]):
        if "target_ids" not in batch:
            raise ValueError("the batch has no target_ids (collate samples that have a 'text')")
        prefix, mask = self.sign_embeddings(batch)
        inputs = self._layout(prefix, mask, batch["target_ids"], batch["target_mask"])
        if self.cfg.embed_dropout:
            inputs["inputs_embeds"] = self.embed_dropout(inputs["inputs_embeds"])
        eps = self.cfg.label_smoothing
        if self.seq2seq:  # the class shifts the labels into decoder inputs; its logits line up with them unshifted
            out = self.lm(**inputs)
            if eps:
                out.loss = smoothed_loss(out.logits, inputs["labels"], eps, shift=False)
            return out
        out, labels = self._target_logits(inputs)
        out.loss = smoothed_loss(out.logits, labels, eps)
        return out

    def _target_logits(self, inputs: dict[str, torch.Tensor]) -> tuple[Any, torch.Tensor]:
        """The causal LM's output on a training layout (its ``labels`` popped) and the labels its logits line up
        with (position t predicts label t + 1). Only the positions that predict a target token get logits: the
        targets are the layout's last columns (left padding), so the LM's head runs on the last ``k`` positions,
        ``k`` = one more than the longest target (the output head over the whole vocabulary, run on every
        instruction and sign position, was a quarter of a training step's arithmetic). An LM whose ``forward``
        takes no ``logits_to_keep`` computes all of them."""
        labels = inputs.pop("labels")
        if not self.target_logits_only:
            return self.lm(**inputs), labels
        wanted = (labels != -100).any(0).nonzero()
        if len(wanted) == 0:
            raise ValueError("the batch has no target tokens")
        keep = labels.shape[1] - int(wanted[0]) + 1
        return self.lm(**inputs, logits_to_keep=keep), labels[:, -keep:]

    @torch.no_grad()
    def sequence_logprobs(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(target | input) [B], target tokens [B])``: each row's summed log-probability of its target tokens
        (``</s>`` included), teacher-forced in the training layout, without label smoothing; e.g. to rescore
        candidate outputs (:mod:`ray_slt.models.rerank`). Call ``model.eval()`` first."""
        prefix, mask = self.sign_embeddings(batch)
        inputs = self._layout(prefix, mask, batch["target_ids"], batch["target_mask"])
        if self.seq2seq:
            labels = inputs.pop("labels")
            logits = self.lm(**inputs).logits.float()
        else:  # position t predicts label t + 1
            out, labels = self._target_logits(inputs)
            logits, labels = out.logits[:, :-1].float(), labels[:, 1:]
        keep = labels != -100
        token_lp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return (token_lp * keep).sum(1), keep.sum(1)

    @torch.no_grad()
    def generate_ids(
        self,
        batch: Mapping[str, Any],
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        synced_gpus: bool = False,
        length_penalty: float | None = None,
        num_return_sequences: int = 1,
    ) -> torch.Tensor:
        """Generated token ids [B * num_return_sequences, <= max_new_tokens] (``</s>`` then padding after a
        finished sequence; a sample's ``num_return_sequences`` beam hypotheses are consecutive rows, best first).
        ``synced_gpus``: keep running forward passes until every rank has finished (DeepSpeed ZeRO-3).
        ``length_penalty``: beam search's exponent on the length that divides a hypothesis's log-probability
        (transformers' meaning; None: 1.0; > 1 favours longer, < 1 shorter outputs)."""
        prefix, mask = self.sign_embeddings(batch)
        inputs = self._layout(prefix, mask)
        inputs.pop("position_ids", None)  # generate derives the same ones from the attention mask
        tok = self.tokenizer
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens or self.cfg.max_new_tokens,
            num_beams=num_beams or self.cfg.num_beams,
            do_sample=False,
            length_penalty=1.0 if length_penalty is None else length_penalty,
            num_return_sequences=num_return_sequences,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        if self.seq2seq:
            gen.decoder_start_token_id = self.lm.config.decoder_start_token_id
        return self.lm.generate(**inputs, generation_config=gen, synced_gpus=synced_gpus)

    def generate(
        self,
        batch: Mapping[str, Any],
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        synced_gpus: bool = False,
        length_penalty: float | None = None,
        mbr: bool = False,
        mbr_tokenize: str = "13a",
    ) -> list[str]:
        """Translate a batch: beam search (``num_beams`` > 1) or greedy (1); defaults from the config.
        ``mbr``: return, instead of the beam's best, the minimum-Bayes-risk choice among its ``num_beams``
        finished hypotheses (:mod:`ray_slt.models.mbr`: the one with the highest summed sentence BLEU against the
        others, tokenised with ``mbr_tokenize``; with one beam it changes nothing).
        Call ``model.eval()`` first (generation does not switch off dropout by itself)."""
        if not mbr:
            ids = self.generate_ids(batch, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                    synced_gpus=synced_gpus, length_penalty=length_penalty)  # fmt: skip
            return [s.strip() for s in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        from ray_slt.models.mbr import bleu_utility, mbr_select

        nbest = self.generate_nbest(batch, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                    synced_gpus=synced_gpus, length_penalty=length_penalty)  # fmt: skip
        return mbr_select(nbest, bleu_utility(mbr_tokenize))

    def generate_nbest(
        self,
        batch: Mapping[str, Any],
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        synced_gpus: bool = False,
        length_penalty: float | None = None,
    ) -> list[list[str]]:
        """Each sample's ``num_beams`` finished beam hypotheses, decoded, best first (one with greedy decoding):
        the candidates of MBR and re-ranking."""
        n = num_beams or self.cfg.num_beams
        ids = self.generate_ids(batch, num_beams=n, max_new_tokens=max_new_tokens, synced_gpus=synced_gpus,
                                length_penalty=length_penalty, num_return_sequences=n)  # fmt: skip
        texts = [s.strip() for s in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return [texts[i : i + n] for i in range(0, len(texts), n)]


def smoothed_loss(logits: torch.Tensor, labels: torch.Tensor, eps: float, shift: bool = True) -> torch.Tensor:
    """Label-smoothed next-token cross-entropy, averaged over the target tokens: position t predicts label t+1
    (the causal LM's shift; ``shift=False`` for a decoder whose logits already line up with its labels), labels
    -100 are left out; each target's distribution is (1 - eps) on the label plus eps spread evenly over the whole
    vocabulary (``torch.nn.functional.cross_entropy``'s ``label_smoothing``)."""
    shifted = logits[:, :-1].float() if shift else logits.float()
    targets = labels[:, 1:] if shift else labels
    return torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), ignore_index=-100, label_smoothing=eps
    )


def generate(
    model: SignTranslator, batch: Mapping[str, Any], num_beams: int | None = None, max_new_tokens: int | None = None
) -> list[str]:
    """Function form of :meth:`SignTranslator.generate`."""
    return model.generate(batch, num_beams=num_beams, max_new_tokens=max_new_tokens)


def param_groups(model: SignTranslator, cfg: SFTConfig | None = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups: ``lora`` (or ``lm`` when the LM trains in full) at lr_llm, ``projector`` (projector
    + DINOv2 projections) at lr_projector, ``encoder`` at lr_encoder (default lr_projector; absent when frozen).
    Each group carries a ``name``; pass the list to e.g. ``torch.optim.AdamW``."""
    cfg = cfg or model.cfg
    lora = [p for p in model.lm.parameters() if p.requires_grad]
    projector = [
        p
        for m in (model.projector, model.face_proj, model.hand_proj)
        if m is not None
        for p in m.parameters()
        if p.requires_grad
    ]
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    groups = [
        {"name": "lora" if cfg.uses_lora else "lm", "params": lora, "lr": cfg.lr_llm, "weight_decay": cfg.weight_decay},
        {"name": "projector", "params": projector, "lr": cfg.lr_projector, "weight_decay": cfg.weight_decay},
        {
            "name": "encoder",
            "params": encoder,
            "lr": cfg.lr_encoder or cfg.lr_projector,
            "weight_decay": cfg.weight_decay,
        },
    ]
    return [g for g in groups if g["params"]]


# -- building ------------------------------------------------------------------------------------------------
def lora_config(cfg: SFTConfig, seq2seq: bool = False) -> LoraConfig:
    return LoraConfig(
        task_type="SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM",
        target_modules=list(cfg.lora.target_modules),
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
    )


def _ensure_pad(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.eos_token_id is None:
        raise ConfigError("the LM tokenizer has no end-of-sequence token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """A saved tokenizer (directory, local or remote) or a model id; never runs repository code."""
    from ray_slt.models.checkpoint import localized

    with localized(path) as local:
        return _ensure_pad(AutoTokenizer.from_pretrained(local, trust_remote_code=False))


def load_lm(path: str, dtype: str = "float32"):
    """The LM at a model id or a (local or remote) directory: ``AutoModelForSeq2SeqLM`` when its config says
    encoder-decoder, else ``AutoModelForCausalLM``; safetensors only, no repository code."""
    from ray_slt.models.checkpoint import localized

    with localized(path) as local:
        config = AutoConfig.from_pretrained(local, trust_remote_code=False)
        cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        return cls.from_pretrained(local, dtype=torch_dtype(dtype), use_safetensors=True, trust_remote_code=False)


def build_translator(
    cfg: SFTConfig, texts: Sequence[str] | None = None, glosses: Sequence[str] | None = None, seed: int = 0
) -> SignTranslator:
    """A fresh SFT model from its config.

    ``texts`` (training targets) train the tokenizer of a ``tiny:`` LM when ``cfg.tokenizer.path`` is unset;
    ``glosses`` (training gloss strings) build the gloss vocabulary of a gloss encoder. The random
    initialisation depends only on ``seed``. On several workers, build once, ``save_translator`` and
    ``load_translator(..., trainable=True)`` everywhere, so every rank starts from the same weights and
    vocabularies.
    """
    if cfg.tokenizer.path is not None:
        tokenizer = load_tokenizer(cfg.tokenizer.path)
    elif cfg.lm.startswith("tiny:"):
        if not texts:
            raise ConfigError(f"lm={cfg.lm} with no tokenizer.path needs the training texts to train a tokenizer")
        tokenizer = train_tokenizer(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.kind)
    else:
        tokenizer = load_tokenizer(cfg.lm)
    if cfg.lm.startswith("tiny:"):
        base = build_tiny_lm(tokenizer, cfg.lm.split(":", 1)[1], cfg.tiny, seed=seed).to(torch_dtype(cfg.dtype))
    else:
        base = load_lm(cfg.lm, cfg.dtype)
    if base.get_input_embeddings().num_embeddings < len(tokenizer):
        raise ConfigError(f"the tokenizer ({len(tokenizer)} tokens) is larger than the LM's vocabulary")
    if is_tiny(cfg) and cfg.lm_training == "lora":
        log.warning(
            "sft.lm_training=lora on %s: the LM is randomly initialised and its frozen weights never learn "
            "(only the adapters do); lm_training=auto or full trains all of them",
            cfg.lm,
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        seq2seq = bool(getattr(base.config, "is_encoder_decoder", False))
        lm = get_peft_model(base, lora_config(cfg, seq2seq)) if cfg.uses_lora else base.train()
        gloss_tokenizer = None
        if isinstance(cfg.encoder, GlossEncoderConfig):
            if not glosses:
                raise ConfigError("a gloss encoder needs the training glosses to build its vocabulary")
            gloss_tokenizer = train_word_tokenizer(glosses, cfg.encoder.min_count)
            encoder: nn.Module = GlossEncoder(cfg.encoder, len(gloss_tokenizer), gloss_tokenizer.pad_token_id)
        else:
            encoder = SkeletonEncoder(cfg.encoder)
            if cfg.encoder_init is not None:
                from ray_slt.models.checkpoint import load_pretrained_skeleton

                encoder = load_pretrained_skeleton(cfg.encoder_init, expected=cfg.encoder)
        model = SignTranslator(cfg, encoder, lm, tokenizer, gloss_tokenizer)
    return model


def is_tiny(cfg: SFTConfig) -> bool:
    return cfg.lm.startswith("tiny:")
