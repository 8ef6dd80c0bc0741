"""Language models of one side of a corpus (stage ``textlm``): ``p(y)`` of its sentences or of its gloss sequences.

The noisy-channel score of re-ranking (:mod:`ray_slt.models.rerank`) has three parts, the direct model
``log p(y | x)``, the channel model ``log p(x | y)`` and a language model ``log p(y)`` of the output side; this is the
third. A :class:`TextLM` is a causal LM (a ``tiny:`` class built from its config, or a pretrained one) over::

    [<s>] tokens of " " + y [</s>]

trained with next-token cross-entropy on the training split's ``column`` (``text`` or ``gloss``) and scored by the
summed log-probability of every token after ``<s>`` (``</s>`` included), the same reading as the translators'
:meth:`~ray_slt.models.sft.SignTranslator.sequence_logprobs`. The leading space makes a byte-level BPE cut ``y`` as
the translators cut their targets (which follow a prompt); a word-level tokenizer ignores it.

Its predictor (kind ``textlm``) scores samples: ``{"logprob", "tokens", "perplexity"}`` per sample; the ``lm``
protocol reports a split's perplexity (the best checkpoint has the lowest dev perplexity).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ray_slt.errors import ConfigError, DataError
from ray_slt.models.batch import TARGET_PREFIX
from ray_slt.models.config import TextLMConfig
from ray_slt.models.predictor import Predictor
from ray_slt.models.registry import ModelRef

#: sequences scored per forward pass by :meth:`TextLM.score`
SCORE_BATCH = 64


def prepare_text(cfg: TextLMConfig, text: str) -> str:
    """A text as a text LM reads it: whitespace normalised, lower-cased when ``cfg.lowercase``."""
    text = " ".join(str(text).split())
    return text.lower() if cfg.lowercase else text


class TextLM(nn.Module):
    """A causal LM of one column of a corpus (see the module docstring)."""

    def __init__(self, cfg: TextLMConfig, lm: nn.Module, tokenizer):
        super().__init__()
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ConfigError("a text LM's tokenizer needs a beginning- and an end-of-sequence token")
        self.cfg = cfg
        self.lm = lm
        self.tokenizer = tokenizer

    def prepare(self, text: str) -> str:
        """The text as the model reads it (:func:`prepare_text`)."""
        return prepare_text(self.cfg, text)

    def token_ids(self, text: str, truncate: bool = False) -> list[int]:
        """``[<s>] + tokens + [</s>]`` of a non-empty text; ``truncate``: at most ``max_tokens`` (its end cut off)."""
        tok = self.tokenizer
        if not self.prepare(text):
            raise DataError("a text LM scores non-empty texts only")
        ids = tok(TARGET_PREFIX + self.prepare(text), add_special_tokens=False)["input_ids"]
        if truncate:
            ids = ids[: self.cfg.max_tokens - 2]
        return [tok.bos_token_id, *ids, tok.eos_token_id]

    def collate(self, texts: Sequence[str], truncate: bool = False) -> dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` [B, L], right-padded."""
        rows = [self.token_ids(t, truncate) for t in texts]
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def collator(self):
        """Rows (samples with the config's ``column``) -> a training batch (truncated to ``max_tokens``), with
        ``sample_ids``."""
        column = self.cfg.column

        def collate(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
            missing = [str(r.get("sample_id", i)) for i, r in enumerate(rows)
                       if not isinstance(r.get(column), str) or not r[column].strip()]  # fmt: skip
            if missing:
                raise DataError(f"a {column} LM needs a non-empty {column!r}; samples without one: "
                                f"{', '.join(missing[:5])}")  # fmt: skip
            batch: dict[str, Any] = self.collate([r[column] for r in rows], truncate=True)
            batch["sample_ids"] = [str(r.get("sample_id", i)) for i, r in enumerate(rows)]
            return batch

        return collate

    def _logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The mean (label-smoothed, ``label_smoothing``) next-token cross-entropy over the real tokens after
        ``<s>``."""
        logits = self._logits(batch)[:, :-1]
        labels = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
        eps = self.cfg.label_smoothing
        flat = logits.reshape(-1, logits.size(-1))
        return torch.nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, label_smoothing=eps)

    @torch.no_grad()
    def sequence_logprobs(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(y) [B], tokens [B])``: each row's summed log-probability of its tokens after ``<s>`` (``</s>``
        included) and their number; no label smoothing. Call ``model.eval()`` first."""
        logits = self._logits(batch)[:, :-1]
        labels, keep = batch["input_ids"][:, 1:], batch["attention_mask"][:, 1:].bool()
        token_lp = torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]
        return (token_lp * keep).sum(1), keep.sum(1)

    @torch.no_grad()
    def score(self, texts: Sequence[str], device: Any = "cpu") -> tuple[list[float], list[int]]:
        """:meth:`sequence_logprobs` of whole (never truncated) texts, in batches of :data:`SCORE_BATCH`."""
        lps: list[float] = []
        counts: list[int] = []
        for i in range(0, len(texts), SCORE_BATCH):
            batch = {k: v.to(device) for k, v in self.collate(texts[i : i + SCORE_BATCH]).items()}
            lp, n = self.sequence_logprobs(batch)
            lps += lp.tolist()
            counts += n.tolist()
        return lps, counts


def build_textlm(cfg: TextLMConfig, texts: Sequence[str] | None = None, seed: int = 0) -> TextLM:
    """A fresh model: a ``tiny:`` LM gets a tokenizer trained on ``texts`` (the training column, as the model reads
    it: lower-cased with ``lowercase``) unless ``tokenizer.path`` names one; a pretrained LM its own. The random
    initialisation depends only on ``seed``."""
    from ray_slt.dtypes import torch_dtype
    from ray_slt.models.sft import load_lm, load_tokenizer
    from ray_slt.models.tiny import build_tiny_lm, train_tokenizer

    tiny = cfg.lm.startswith("tiny:")
    if cfg.tokenizer.path is not None:
        tokenizer = load_tokenizer(cfg.tokenizer.path)
    elif tiny:
        prepared = [prepare_text(cfg, t) for t in texts or ()]
        if not any(prepared):
            raise ConfigError(f"lm={cfg.lm} with no tokenizer.path needs the training texts to train a tokenizer")
        tokenizer = train_tokenizer(prepared, cfg.tokenizer.vocab_size, cfg.tokenizer.kind)
    else:
        tokenizer = load_tokenizer(cfg.lm)
    if tiny:
        lm = build_tiny_lm(tokenizer, cfg.lm.split(":", 1)[1], cfg.tiny, seed=seed).to(torch_dtype(cfg.dtype))
    else:
        lm = load_lm(cfg.lm, cfg.dtype)
        if getattr(lm.config, "is_encoder_decoder", False):
            raise ConfigError(f"{cfg.lm} is an encoder-decoder model: a text LM is causal")
    if lm.get_input_embeddings().num_embeddings < len(tokenizer):
        raise ConfigError(f"the tokenizer ({len(tokenizer)} tokens) is larger than the LM's vocabulary")
    return TextLM(cfg, lm.train(), tokenizer)


class TextLMPredictor(Predictor):
    """A text LM (:func:`ray_slt.models.checkpoint.load_textlm`) scoring samples: each sample's ``text`` (or
    ``gloss``, the model's column) -> ``{"logprob": log p(y), "tokens": n, "perplexity": exp(-logprob / n)}``."""

    kind: ClassVar[str] = "textlm"
    predicts: ClassVar[str] = "score"
    route: ClassVar[str] = "score"
    protocol: ClassVar[str] = "lm"
    inputs = "text"

    def __init__(self, ref: ModelRef, device: str = "cpu", model_id: str | None = None):
        from ray_slt.models.checkpoint import load_textlm

        super().__init__(ref, device, model_id)
        self.model = load_textlm(ref.model).to(self.device).eval()
        self.inputs = self.model.cfg.column

    @classmethod
    def requirements(cls, ref: ModelRef) -> dict[str, Any]:
        from ray_slt import storage
        from ray_slt.models.checkpoint import TEXTLM_META

        cfg = json.loads(storage.read_text(storage.join(ref.model, TEXTLM_META))).get("config") or {}
        return {"inputs": cfg.get("column", "text"), "needs_visual": False}

    def settings(self) -> dict[str, Any]:
        return {"column": self.model.cfg.column, "lowercase": self.model.cfg.lowercase}

    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        column = self.inputs
        bad = [str(s.get("sample_id", i)) for i, s in enumerate(samples)
               if not isinstance(s.get(column), str) or not s[column].strip()]  # fmt: skip
        if bad:
            raise DataError(f"this model scores {column}; samples without it: {', '.join(bad[:5])}")
        if not samples:
            return []
        lps, counts = self.model.score([s[column] for s in samples], self.device)
        return [{"logprob": lp, "tokens": n, "perplexity": math.exp(-lp / n)} for lp, n in zip(lps, counts)]
