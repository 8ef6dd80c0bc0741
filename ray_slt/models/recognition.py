"""Sign recognizers over the 77-point layout: isolated-sign recognition (a closed vocabulary, cross-entropy) and
HALI's hierarchical alignment with lexical descriptions (zero-shot recognition of signs never seen in training).

:class:`SignRecognizer` reads a pose batch with the skeleton encoder (:mod:`ray_slt.models.skeleton`) and gives
the three visual levels of HALI (research/003 Eq. 1):

- video ``X^(v) [B, D]``: the masked mean of the encoder's frame features, projected;
- snippets ``X^(s) [B, T_s, D]``: a temporal pyramid of the frame features (``bins`` 2 and 4: T_s = 6; the
  paper's "2*4" read as 2 + 4 bins), each bin the mean of its frames (non-overlapping, the spec's reading);
- subunits ``X^(u) [B, T_u, D]``: the per-part graph-convolution features of M parts (body, left hand, right
  hand for M = 3) pooled over the same bins and projected per part, laid out snippet-major (row ``t*M + m``).

and a text encoder (:class:`DescriptionEncoder`, any BERT-class model) gives ``Y^(d)`` (the description's mean
token state) and ``Y^(f)`` (each fragment's mean token state; fragments split at punctuation as
:func:`ray_slt.data.lexicon.fragments` does), both projected to D. The losses are :mod:`ray_slt.models.hali`.

A sign is recognised by ranking: with the classification head, by its logits over the closed vocabulary; by
description, with ``rho(X^(v), Y^(d)_c)`` for every candidate class c (the global similarity: the paper does not
say whether fine-grained similarities are added at test time; this reading uses the one it trains globally).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ray_slt.errors import ConfigError, DataError, StorageError
from ray_slt.models.batch import Collator
from ray_slt.models.hali import HaliParts, cosine, hali_loss
from ray_slt.models.predictor import Predictor
from ray_slt.models.recognition_config import PART_SETS, RecognizerConfig
from ray_slt.models.skeleton import SkeletonEncoder

FORMAT, VERSION, META = "ray_slt.recognizer", 1, "recognizer.json"
_FRAGMENT = re.compile(r"[^,.;:!?]+")


def pyramid_weights(lengths: torch.Tensor, t: int, bins: Sequence[int]) -> torch.Tensor:
    """``[B, sum(bins), T]`` averaging weights: for each sample and each pyramid level of ``k`` bins, the valid
    frames ``0..len-1`` cut into ``k`` contiguous, non-overlapping runs (bin ``j``: frames
    ``floor(j*len/k) .. floor((j+1)*len/k) - 1``; a bin left empty by a very short sample takes its nearest
    frame), each run's frames weighted equally."""
    b = lengths.shape[0]
    w = torch.zeros(b, sum(bins), t, dtype=torch.float32, device=lengths.device)
    for i, n in enumerate(lengths.tolist()):
        n = max(int(n), 1)
        row = 0
        for k in bins:
            for j in range(k):
                lo, hi = (j * n) // k, ((j + 1) * n) // k
                if hi <= lo:
                    lo, hi = min(lo, n - 1), min(lo, n - 1) + 1
                w[i, row, lo:hi] = 1.0 / (hi - lo)
                row += 1
    return w


def fragment_spans(description: str) -> list[tuple[int, int]]:
    """Character spans of a description's fragments (split at punctuation; whitespace-only pieces dropped)."""
    return [(m.start(), m.end()) for m in _FRAGMENT.finditer(description) if m.group().strip()]


class DescriptionEncoder(nn.Module):
    """A BERT-class encoder of descriptions: ``(yd [N, H], yf [N, L, H], fmask [N, L])`` by mean pooling."""

    def __init__(self, model: nn.Module, tokenizer: Any, max_tokens: int, max_fragments: int, frozen: bool = False):
        super().__init__()
        if getattr(model, "pooler", None) is not None:
            # token states are mean-pooled; the [CLS] pooler would be parameters without gradients, which DDP's
            # reducer refuses (and a loaded checkpoint's pooler weights are not needed)
            model.pooler = None
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.max_fragments = max_fragments
        self.frozen = frozen
        self._cache: dict[str, tuple[torch.Tensor, ...]] = {}  # frozen: description -> (yd, yf, fragment mask)
        if frozen:
            model.requires_grad_(False)

    @property
    def hidden(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, descriptions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.frozen:
            return self.encode(descriptions)
        # fixed weights: each description is encoded once (in eval mode, without gradients) and then looked up
        missing = [d for d in dict.fromkeys(descriptions) if d not in self._cache]
        if missing:
            if len(self._cache) + len(missing) > 200_000:
                self._cache.clear()
            was = self.model.training
            self.model.eval()
            with torch.no_grad():
                yd, yf, fmask = self.encode(missing)
            self.model.train(was)
            for i, d in enumerate(missing):
                n = int(fmask[i].nonzero().max()) + 1 if fmask[i].any() else 1
                self._cache[d] = (yd[i], yf[i, :n], fmask[i, :n])
        rows = [self._cache[d] for d in descriptions]
        lf = max(r[1].shape[0] for r in rows)
        yf = rows[0][1].new_zeros(len(rows), lf, rows[0][1].shape[-1])
        fmask = torch.zeros(len(rows), lf, dtype=torch.bool, device=yf.device)
        for i, (_, f, m) in enumerate(rows):
            yf[i, : f.shape[0]], fmask[i, : m.shape[0]] = f, m
        return torch.stack([r[0] for r in rows]), yf, fmask

    def encode(self, descriptions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The description features through the text model (no caching)."""
        device = next(self.model.parameters()).device
        enc = self.tokenizer(list(descriptions), padding=True, truncation=True, max_length=self.max_tokens,
                             return_offsets_mapping=True, return_tensors="pt")  # fmt: skip
        offsets = enc.pop("offset_mapping")
        inputs = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        states = self.model(**inputs).last_hidden_state  # [N, S, H]
        mask = inputs["attention_mask"].bool()
        # token -> fragment (-1: a special token or punctuation, in no fragment)
        n, s = mask.shape
        owner = torch.full((n, s), -1, dtype=torch.long)
        counts = []
        for i, text in enumerate(descriptions):
            spans = fragment_spans(text)[: self.max_fragments]
            counts.append(max(1, len(spans)))
            for tok, (a, b) in enumerate(offsets[i].tolist()):
                if b <= a or not mask[i, tok]:
                    continue
                for f, (lo, hi) in enumerate(spans):
                    if lo <= a < hi:
                        owner[i, tok] = f
                        break
        lf = max(counts)
        onehot = (owner[..., None] == torch.arange(lf)[None, None]).to(states.dtype).to(device)  # [N, S, L]
        sums = onehot.sum(1)  # [N, L]
        fmask = sums > 0
        yf = torch.einsum("nsl,nsh->nlh", onehot, states) / sums.clamp(min=1)[..., None]
        m = mask.to(states.dtype)[..., None]
        yd = (states * m).sum(1) / m.sum(1).clamp(min=1)
        return yd, yf, fmask


@dataclass
class RecognizerOutput:
    loss: torch.Tensor
    logits: torch.Tensor | None
    logs: dict[str, float]


class SignRecognizer(nn.Module):
    """``classes``: the closed vocabulary (the head's outputs, in order); ``lexicon``: ``{gloss: description}`` of
    every sign it can rank by description; ``partition``: the zero-shot class partition it was trained under
    (``seen``, ``val_unseen``, ``test_unseen`` gloss lists), if any."""

    def __init__(
        self,
        cfg: RecognizerConfig,
        classes: Sequence[str],
        lexicon: Mapping[str, str] | None = None,
        text: DescriptionEncoder | None = None,
        partition: Mapping[str, list[str]] | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.classes = list(classes)
        self.class_index = {g: i for i, g in enumerate(self.classes)}
        self.lexicon = dict(lexicon or {})
        self.partition = dict(partition or {})
        self.encoder = SkeletonEncoder(cfg.encoder)
        hidden = cfg.encoder.hidden
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(hidden, len(self.classes))) if cfg.classifier \
            else None  # fmt: skip
        self.text = text
        self.parts = PART_SETS[cfg.hali.parts] if cfg.hali else ()
        if cfg.hali is not None:
            if text is None:
                raise ConfigError("HALI needs a text encoder of descriptions")
            d, part_dim = cfg.hali.dim, cfg.encoder.gcn_channels[-1] + 1
            self.video_proj = nn.Linear(hidden, d)
            self.snippet_proj = nn.Linear(hidden, d)
            self.part_proj = nn.ModuleDict({p: nn.Linear(part_dim, d) for p in self.parts})
            self.desc_proj = nn.Linear(text.hidden, d)
            self.frag_proj = nn.Linear(text.hidden, d)

    # -- batches ---------------------------------------------------------------------------------------------
    def collator(self):
        base = Collator(max_frames=self.cfg.max_frames, points=self.cfg.encoder.points)

        def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
            rows = [dict(s) for s in samples]
            batch = base([{k: v for k, v in r.items() if k not in ("text", "gloss")} for r in rows])
            glosses = [r.get("gloss") for r in rows]
            batch["glosses"] = glosses
            batch["labels"] = torch.tensor([self.class_index.get(g, -100) if g else -100 for g in glosses])
            return batch

        return collate

    # -- features --------------------------------------------------------------------------------------------
    def visual(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Frame features ``z``, their mask and, with HALI, ``xv``, ``xs``, ``xu``."""
        z, mask, parts = self.encoder.encode_with_parts(batch)
        m = mask[..., None].to(z.dtype)
        pooled = (z * m).sum(1) / m.sum(1).clamp(min=1)
        out = {"z": z, "mask": mask, "pooled": pooled}
        if self.cfg.hali is None:
            return out
        w = pyramid_weights(mask.sum(1), z.shape[1], self.cfg.hali.bins).to(z.dtype)  # [B, T_s, T]
        out["xv"] = self.video_proj(pooled)
        out["xs"] = self.snippet_proj(w @ z)
        subunits = [self.part_proj[p](w @ parts[p]) for p in self.parts]  # each [B, T_s, D]
        out["xu"] = torch.stack(subunits, dim=2).flatten(1, 2)  # snippet-major: row t*M + m
        return out

    def describe(self, descriptions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        yd, yf, fmask = self.text(descriptions)
        return self.desc_proj(yd), self.frag_proj(yf), fmask

    def descriptions_of(self, glosses: Sequence[str]) -> list[str]:
        missing = [g for g in glosses if g not in self.lexicon]
        if missing:
            raise DataError(f"no description of {', '.join(sorted(set(missing))[:5])} in the recognizer's lexicon")
        return [self.lexicon[g] for g in glosses]

    # -- training --------------------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]) -> RecognizerOutput:
        v = self.visual(batch)
        loss = v["pooled"].new_zeros(())
        logs: dict[str, float] = {}
        logits = None
        if self.head is not None:
            logits = self.head(v["pooled"])
            labels = batch["labels"].to(logits.device)
            if (labels >= 0).any():
                ce = F.cross_entropy(logits, labels, ignore_index=-100, label_smoothing=self.cfg.label_smoothing)
                loss = loss + ce
                logs["loss_ce"] = float(ce.detach())
        h = self.cfg.hali
        # the alignment reads the samples whose gloss the lexicon describes (ISLR over a vocabulary that a lexicon
        # only partly covers, e.g. WLASL with ASL-LEX, aligns the covered ones and classifies all)
        have = [i for i, g in enumerate(batch["glosses"]) if g in self.lexicon]
        if h is not None and len(have) >= 2:
            glosses = [batch["glosses"][i] for i in have]
            yd, yf, fmask = self.describe(self.descriptions_of(glosses))
            same = torch.tensor([[a == b for b in glosses] for a in glosses], device=yd.device)
            sel = torch.tensor(have, device=v["xv"].device)
            parts: HaliParts = hali_loss(v["xv"][sel], v["xs"][sel], v["xu"][sel], yd, yf, fmask, tau=h.tau,
                                         w_snippet=h.w_snippet, w_subunit=h.w_subunit, w_hc=h.w_hc,
                                         same=same)  # fmt: skip
            weight = h.w_global if self.head is not None else 1.0
            loss = loss + weight * parts.loss
            logs.update(parts.logs())
        elif h is not None and self.head is None:  # a contrastive loss needs two pairs: this batch adds nothing
            loss = loss + 0.0 * v["xv"].sum()
        return RecognizerOutput(loss, logits, logs)

    # -- recognition -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def rank(
        self, batch: Mapping[str, Any], candidates: Sequence[str] | None = None, k: int | None = None,
        descriptions: Mapping[str, str] | None = None,
    ) -> list[list[tuple[str, float]]]:  # fmt: skip
        """The ``k`` best ``(gloss, score)`` per sample: over the closed vocabulary by the head's softmax, or, with
        ``candidates``, over those glosses by ``rho(X^(v), Y^(d))`` with their descriptions (``descriptions``
        overrides the lexicon's, e.g. a request's candidate list)."""
        k = k or self.cfg.top_k
        v = self.visual(batch)
        if candidates is None:
            if self.head is None:
                candidates = list(self.lexicon)
            else:
                probs = F.softmax(self.head(v["pooled"]).float(), dim=-1)
                scores, idx = probs.topk(min(k, probs.shape[1]), dim=-1)
                return [[(self.classes[j], float(s)) for s, j in zip(srow, irow)]
                        for srow, irow in zip(scores.tolist(), idx.tolist())]  # fmt: skip
        if self.cfg.hali is None:
            raise ConfigError("this recognizer has no text alignment: it ranks its closed vocabulary only")
        cands = list(dict.fromkeys(candidates))
        texts = [(descriptions or {}).get(g) or self.lexicon.get(g) for g in cands]
        missing = [g for g, t in zip(cands, texts) if not t]
        if missing:
            raise DataError(f"no description of the candidate(s) {', '.join(missing[:5])}")
        yd, _, _ = self.describe(texts)
        sim = cosine(v["xv"], yd).float()  # [B, C]
        scores, idx = sim.topk(min(k, len(cands)), dim=-1)
        return [[(cands[j], float(s)) for s, j in zip(srow, irow)] for srow, irow in zip(scores.tolist(), idx.tolist())]


def param_groups(model: SignRecognizer) -> list[dict[str, Any]]:
    """Visual encoder, text encoder and the rest (projections, head), each with its learning rate."""
    cfg = model.cfg
    groups = [{"name": "visual", "params": list(model.encoder.parameters()), "lr": cfg.lr_visual}]
    if model.text is not None:
        groups.append({"name": "text", "params": [p for p in model.text.parameters() if p.requires_grad],
                       "lr": cfg.lr_text})  # fmt: skip
    seen = {id(p) for g in groups for p in g["params"]}
    other = [p for p in model.parameters() if id(p) not in seen]
    if other:
        groups.append({"name": "other", "params": other, "lr": cfg.lr_other})
    for g in groups:
        g["weight_decay"] = cfg.weight_decay
    return [g for g in groups if g["params"]]


# ------------------------------------------------------------------------------------------------- building


def build_text_encoder(cfg: RecognizerConfig, texts: Sequence[str], seed: int = 0) -> DescriptionEncoder:
    """The description encoder: a tiny random BERT with a WordPiece vocabulary learnt from ``texts``, or a
    pretrained one by model id / directory (safetensors only, no repository code)."""
    t = cfg.text
    if t.model.startswith("tiny:"):
        from transformers import BertConfig, BertModel

        from ray_slt.models.tiny import train_tokenizer

        if t.model != "tiny:bert":
            raise ConfigError(f"text.model {t.model!r}: the tiny text encoder is tiny:bert")
        tok = train_tokenizer(texts or ["a sign"], vocab_size=t.tiny.vocab_size, kind="wordpiece")
        torch.manual_seed(seed)
        bert_cfg = BertConfig(vocab_size=len(tok), hidden_size=t.tiny.hidden, num_hidden_layers=t.tiny.layers,
                              num_attention_heads=t.tiny.heads, intermediate_size=t.tiny.intermediate,
                              max_position_embeddings=t.tiny.max_positions, pad_token_id=tok.pad_token_id)  # fmt: skip
        bert = BertModel(bert_cfg)
        return DescriptionEncoder(bert, tok, min(t.max_tokens, t.tiny.max_positions), t.max_fragments, t.freeze)
    return _load_text(t.model, t.max_tokens, t.max_fragments, t.freeze)


def _load_text(path: str, max_tokens: int, max_fragments: int, frozen: bool = False) -> DescriptionEncoder:
    from transformers import AutoModel, AutoTokenizer

    from ray_slt.models.checkpoint import localized

    with localized(path) as local:
        try:
            tok = AutoTokenizer.from_pretrained(local, trust_remote_code=False)
            # BERT-class models take add_pooling_layer; the pooler is never used (mean pooling), so a checkpoint's
            # pooler weights are left out on purpose: the load report that would list them is not shown
            from transformers.utils import logging as hf_logging

            level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            kwargs = {"use_safetensors": True, "trust_remote_code": False, "output_loading_info": True}
            try:
                model, info = AutoModel.from_pretrained(local, add_pooling_layer=False, **kwargs)
            except TypeError:
                model, info = AutoModel.from_pretrained(local, **kwargs)
            finally:
                hf_logging.set_verbosity(level)
        except OSError as e:
            raise ConfigError(f"text.model {path!r}: cannot load a text encoder ({e})") from None
    missing = [k for k in info.get("missing_keys") or [] if not k.startswith("pooler.")]
    if missing:
        raise ConfigError(f"text.model {path!r}: the checkpoint lacks weights of the model ({', '.join(missing[:5])})")
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"text.model {path!r}: needs a fast tokenizer (token offsets map tokens to fragments)")
    return DescriptionEncoder(model, tok, max_tokens, max_fragments, frozen)


def build_recognizer(
    cfg: RecognizerConfig,
    classes: Sequence[str],
    lexicon: Mapping[str, str] | None = None,
    partition: Mapping[str, list[str]] | None = None,
    seed: int = 0,
) -> SignRecognizer:
    """A new recognizer (deterministic for ``seed``); its skeleton encoder from ``cfg.pretrained_encoder`` when
    set (a stage-1 checkpoint, whose encoder config must equal this one's)."""
    text = None
    if cfg.hali is not None:
        if not lexicon:
            raise ConfigError("HALI needs a lexicon of descriptions (the task's lexicon: ...)")
        text = build_text_encoder(cfg, list(lexicon.values()), seed)
    torch.manual_seed(seed)
    model = SignRecognizer(cfg, classes, lexicon, text, partition)
    if cfg.pretrained_encoder:
        from ray_slt.models.checkpoint import load_pretrained_skeleton

        model.encoder.load_state_dict(load_pretrained_skeleton(cfg.pretrained_encoder, cfg.encoder).state_dict())
    return model


# ----------------------------------------------------------------------------------------------- checkpoints


def save_recognizer(model: SignRecognizer, uri: str) -> None:
    """``recognizer.json`` (config, classes, lexicon, partition), ``modules.safetensors`` (all but the text
    encoder), ``text/`` (the text encoder's weights and tokenizer, ``save_pretrained``) and the manifest (kind
    ``recognizer``), written last."""
    from safetensors.torch import save_file

    from ray_slt.models.checkpoint import publish

    with tempfile.TemporaryDirectory(prefix="ray_slt_rec_") as d:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith("text.")}
        save_file(state, os.path.join(d, "modules.safetensors"), metadata={"format": "pt"})
        if model.text is not None:
            model.text.model.save_pretrained(os.path.join(d, "text"), safe_serialization=True)
            model.text.tokenizer.save_pretrained(os.path.join(d, "text"))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "config": model.cfg.model_dump(mode="json"),
            "classes": model.classes,
            "lexicon": model.lexicon,
            "partition": model.partition,
        }
        with open(os.path.join(d, META), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, ensure_ascii=False)
        publish(d, uri, kind="recognizer")


def read_meta(uri: str) -> dict[str, Any]:
    from ray_slt import storage

    meta = json.loads(storage.read_text(storage.join(uri, META)))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise StorageError(f"{uri}: not a {FORMAT} v{VERSION} checkpoint")
    return meta


def load_recognizer(uri: str, trainable: bool = False) -> SignRecognizer:
    """Load a recognizer saved by :func:`save_recognizer` (eval mode unless ``trainable``); safetensors and JSON
    only."""
    from safetensors.torch import load_file

    from ray_slt.models.checkpoint import fetched

    with fetched(uri) as d:
        with open(os.path.join(d, META), encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise StorageError(f"{uri}: not a {FORMAT} v{VERSION} checkpoint")
        cfg = RecognizerConfig.model_validate(meta["config"])
        text = None
        if cfg.hali is not None:
            text = _load_text(os.path.join(d, "text"), cfg.text.max_tokens, cfg.text.max_fragments, cfg.text.freeze)
        model = SignRecognizer(cfg, meta["classes"], meta["lexicon"], text, meta.get("partition"))
        state = load_file(os.path.join(d, "modules.safetensors"))
    expected = {k for k in model.state_dict() if not k.startswith("text.")}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state))[:5], sorted(set(state) - expected)[:5]
        raise StorageError(f"{uri}: modules.safetensors does not match the config (missing {missing}, "
                           f"unexpected {unexpected})")  # fmt: skip
    model.load_state_dict(state, strict=False)
    return model.train() if trainable else model.eval()


# ------------------------------------------------------------------------------------------------ predictor


class RecognizerPredictor(Predictor):
    """A saved recognizer (model kind ``recognizer``): pose samples in, ``{"ranked", "scores"}`` out (the top
    ``top_k`` glosses, best first). Without ``candidates`` it ranks its closed vocabulary (the head), or, a
    zero-shot model without a head, every sign of its lexicon; with ``candidates`` (glosses, set by a protocol or
    per request) it ranks those by their descriptions. A sample may carry its own ``candidates``: a list of
    ``{"gloss", "description"}`` (signs the model never saw, described in the request)."""

    kind = "recognizer"
    inputs = "pose"
    predicts = "labels"
    route = "recognize"
    protocol = "islr"

    def __init__(self, ref, device: str = "cpu", model_id: str | None = None, top_k: int | None = None,
                 candidates: Sequence[str] | None = None):  # fmt: skip
        super().__init__(ref, device, model_id)
        self.model = load_recognizer(ref.model).to(self.device).eval()
        self.collate = self.model.collator()
        self.top_k = top_k or self.model.cfg.top_k
        self.candidates = list(candidates) if candidates else None
        self.partition = self.model.partition

    @classmethod
    def requirements(cls, ref) -> dict[str, Any]:
        return {"inputs": "pose", "needs_visual": False}

    def settings(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "classes": len(self.model.classes), "lexicon": len(self.model.lexicon),
                "zero_shot": self.model.cfg.hali is not None, "max_frames": self.model.cfg.max_frames}  # fmt: skip

    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        from ray_slt.models.batch import to_device

        if not samples:
            return []
        keys = ("keypoints", "keypoints_valid", "keypoints_confidence", "sample_id")
        own = [s.get("candidates") for s in samples]
        out: list[dict[str, Any]] = [{} for _ in samples]
        shared = [i for i, c in enumerate(own) if not c]
        groups = [(shared, self.candidates, None)] + [([i], [c["gloss"] for c in own[i]],
                                                      {c["gloss"]: c["description"] for c in own[i]})
                                                     for i in range(len(samples)) if own[i]]  # fmt: skip
        for idx, cands, texts in groups:
            if not idx:
                continue
            batch = to_device(self.collate([{k: samples[i][k] for k in keys if k in samples[i]} for i in idx]),
                              self.device)  # fmt: skip
            ranked = self.model.rank(batch, candidates=cands, k=self.top_k, descriptions=texts)
            for i, r in zip(idx, ranked):
                out[i] = {"ranked": [g for g, _ in r], "scores": [s for _, s in r]}
        return out
