"""Evaluation protocols: what a model predicts, how its predictions are scored, which score picks a checkpoint.

A task family owns one (or more) protocols. The same protocol object scores the dev split during training (the
loop reports its scores as ``dev_*`` metrics and Ray Train keeps the best checkpoint on its
:class:`Selection`), scores a split in ``ray-slt eval``, and drives a sweep's default metric and ASHA. Nothing
here imports training code, so protocols also run on predictions written by anyone else.

A *prediction* is one JSON object per sample, always with ``sample_id``; what else it holds is the protocol's
contract (:attr:`Protocol.predicts`):

==============  =========================================================  ===========================
protocol        prediction                                                 selection
==============  =========================================================  ===========================
``translation`` ``hypothesis``, ``reference`` (raw text), optional ``lang``  ``dev_bleu4``, max
==============  =========================================================  ===========================

Registering a protocol: subclass :class:`Protocol` and add it to :data:`PROTOCOLS` (``PROTOCOLS.register(name,
"module:Class")``); a task names it in its ``protocol`` attribute.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ray_slt import storage
from ray_slt.errors import DataError
from ray_slt.registry import Registry

#: name -> "module:Class" of every evaluation protocol.
PROTOCOLS = Registry(
    "evaluation protocol",
    {"translation": "ray_slt.eval.protocols:TranslationProtocol"},
)

# A checkpoint that was not evaluated reports this value of its selection metric (signed to rank below every
# real score): Ray Train needs the attribute in every checkpoint's metrics, and NaN/inf do not survive its
# JSON snapshots.
UNEVALUATED = 1e300


@dataclass(frozen=True)
class Selection:
    """The score that picks the best checkpoint: ``metric`` (a key of the protocol's scores, e.g. ``bleu4``),
    reported during training as ``dev_{metric}``, and whether higher (``max``) or lower (``min``) is better."""

    metric: str
    mode: Literal["max", "min"] = "max"

    @property
    def key(self) -> str:
        """The training metric that carries it (``dev_bleu4``)."""
        return f"dev_{self.metric}"

    @property
    def unevaluated(self) -> float:
        """The value reported for a checkpoint without a dev evaluation: worse than any real score."""
        return -UNEVALUATED if self.mode == "max" else UNEVALUATED

    def is_score(self, value: Any) -> bool:
        """Whether ``value`` is a real score (not :attr:`unevaluated`, not missing, finite)."""
        return isinstance(value, int | float) and math.isfinite(value) and abs(value) < UNEVALUATED

    def better(self, a: float, b: float | None) -> bool:
        """Whether score ``a`` beats ``b`` (None: no score yet)."""
        if b is None:
            return True
        return a > b if self.mode == "max" else a < b


class Protocol(ABC):
    """One evaluation protocol (see the module docstring).

    ``predicts`` says what its predictions hold (``text``, ``labels``, ``pose``); ``selection`` which score picks
    the best checkpoint; :meth:`score` turns predictions into scores (floats, plus strings such as signatures);
    :meth:`dev_metrics` is the part reported at every dev evaluation during training; :meth:`write` puts
    whatever a reader needs beside ``metrics.json`` (prediction files, tables, plots)."""

    name: ClassVar[str] = ""
    predicts: ClassVar[str] = ""
    selection: ClassVar[Selection]

    @abstractmethod
    def prediction(self, sample: Mapping[str, Any], output: Mapping[str, Any]) -> dict[str, Any]:
        """The prediction of one sample from a predictor's output for it (``ray-slt eval``): the output with
        the sample's reference side added (its reference text, gold label or pose)."""

    @abstractmethod
    def score(self, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Scores of a split's predictions (every sample once)."""

    def dev_metrics(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        """The scores reported (as ``dev_{key}``) at every dev evaluation: by default every number."""
        return {k: v for k, v in scores.items() if isinstance(v, int | float) and not isinstance(v, bool)}

    def write(self, out: str, predictions: Sequence[Mapping[str, Any]], scores: Mapping[str, Any]) -> dict[str, str]:
        """Write ``predictions.jsonl`` (and the protocol's own files) under ``out``; returns ``{name: uri}``."""
        uri = storage.join(out, "predictions.jsonl")
        storage.write_text(uri, "".join(json.dumps(dict(p), ensure_ascii=False) + "\n" for p in predictions))
        return {"predictions": uri}

    def describe(self) -> dict[str, Any]:
        """What ``metrics.json`` records about the protocol itself."""
        return {"name": self.name, "selection": self.selection.key, "mode": self.selection.mode}


def protocol_for(name: str, **options: Any) -> Protocol:
    """A protocol instance by registered name."""
    return PROTOCOLS.get(name)(**options)


class TranslationProtocol(Protocol):
    """Sentences against raw reference sentences with the shared metrics (:func:`ray_slt.eval.metrics.
    corpus_scores`): BLEU-1..4 with the sacrebleu signature, ROUGE-L, chrF. ``lang`` picks the BLEU tokenizer
    (None: the predictions' ``lang``). With ``semantic``, also TSR (with the sentence embedder ``embedder``) and
    PGER (:mod:`ray_slt.eval.semantic`). The best checkpoint has the highest dev BLEU-4."""

    name = "translation"
    predicts = "text"
    selection = Selection("bleu4", "max")
    DEV_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf", "bleu_signature", "lang")

    def __init__(self, lang: str | None = None, semantic: bool = False, embedder: str | None = None):
        self.lang = lang
        self.semantic = semantic
        self.embedder = embedder

    def prediction(self, sample: Mapping[str, Any], output: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(sample.get("text"), str):
            raise DataError(f"sample {sample.get('sample_id')!r} has no reference text to score a translation against")
        return {"sample_id": str(sample["sample_id"]), "hypothesis": output["text"], "reference": sample["text"],
                "lang": sample.get("spoken_language")}  # fmt: skip

    def language(self, predictions: Sequence[Mapping[str, Any]]) -> str | None:
        return self.lang or next((str(p["lang"]) for p in predictions if p.get("lang")), None)

    def score(self, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        from ray_slt.eval.metrics import corpus_scores

        if not predictions:
            raise DataError("no predictions to score")
        for p in predictions:
            if not isinstance(p.get("hypothesis"), str) or not isinstance(p.get("reference"), str):
                raise DataError(f"sample {p.get('sample_id')!r}: a translation needs a hypothesis and a reference text")
        lang = self.language(predictions)
        hyps, refs = [p["hypothesis"] for p in predictions], [p["reference"] for p in predictions]
        scores = {**corpus_scores(hyps, refs, lang=lang), "lang": lang}
        if self.semantic:
            from ray_slt.eval.semantic import DEFAULT_EMBEDDER, EmbeddingSimilarity, corpus_pger, corpus_tsr

            embedder = self.embedder or DEFAULT_EMBEDDER
            pger = corpus_pger(hyps, refs, lang=lang)
            scores.update(tsr=corpus_tsr(hyps, refs, sim=EmbeddingSimilarity(embedder)), tsr_embedder=embedder,
                          pger=pger["pger"], pger_scored=pger["n_scored"])  # fmt: skip
        return scores

    def dev_metrics(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        return {k: scores[k] for k in self.DEV_KEYS if k in scores}

    def write(self, out: str, predictions: Sequence[Mapping[str, Any]], scores: Mapping[str, Any]) -> dict[str, str]:
        files = super().write(out, predictions, scores)
        for name, key in (("hypotheses", "hypothesis"), ("references", "reference")):
            uri = storage.join(out, f"{name}.txt")
            storage.write_text(uri, "".join(str(p[key]).replace("\n", " ") + "\n" for p in predictions))
            files[name] = uri
        return files
