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
``gloss``       ``hypothesis`` glosses, ``reference`` glosses (as the corpus)  ``dev_bleu4``, max
``islr``        ``label`` (gold gloss), ``ranked`` glosses, their ``scores``  ``dev_top1`` (per instance)
``zsl``         the same, ranked over the unseen classes only               ``dev_top1`` (per class)
``gzsl``        the same, ranked over seen and unseen classes               ``dev_h1``, max
``production``  ``frames`` produced, ``reference`` frames (Prompt2Sign 151)   ``dev_dtw``, min
``lm``          ``logprob`` (summed, natural log) and ``tokens`` of a sample   ``dev_perplexity``, min
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
    {
        "translation": "ray_slt.eval.protocols:TranslationProtocol",
        "gloss": "ray_slt.eval.protocols:GlossProtocol",
        "islr": "ray_slt.eval.protocols:ISLRProtocol",
        "zsl": "ray_slt.eval.protocols:ZSLProtocol",
        "gzsl": "ray_slt.eval.protocols:GZSLProtocol",
        "production": "ray_slt.eval.production:ProductionProtocol",
        "lm": "ray_slt.eval.protocols:LMProtocol",
    },
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

    def setup(self, predictor: Any, split: str) -> None:  # noqa: B027 - optional hook
        """Before ``ray-slt eval`` predicts a split: adapt to the model (e.g. the class partition it was trained
        under) and set the predictor's options (e.g. the candidate classes)."""

    def keep(self, sample: Mapping[str, Any]) -> bool:
        """Whether ``ray-slt eval`` scores this sample (all by default; a zero-shot protocol keeps the samples of
        its classes)."""
        return True


def protocol_for(name: str, **options: Any) -> Protocol:
    """A protocol instance by registered name."""
    return PROTOCOLS.get(name)(**options)


class TranslationProtocol(Protocol):
    """Sentences against raw reference sentences with the shared metrics (:func:`ray_slt.eval.metrics.
    corpus_scores`): BLEU-1..4 with the sacrebleu signature, ROUGE-L, chrF. ``lang`` picks the BLEU tokenizer
    (None: the predictions' ``lang``). ``lowercase``: case-insensitive scores (``case: lc`` in the scores; a
    translator trained on lower-cased targets is scored so by default). With ``semantic``, also TSR (with the
    sentence embedder ``embedder``) and PGER (:mod:`ray_slt.eval.semantic`). The best checkpoint has the highest
    dev BLEU-4."""

    name = "translation"
    predicts = "text"
    selection = Selection("bleu4", "max")
    tokenize: ClassVar[str | None] = None  # sacrebleu's tokenizer (None: the language's)
    DEV_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf", "bleu_signature", "lang", "case")

    def __init__(
        self, lang: str | None = None, semantic: bool = False, embedder: str | None = None, lowercase: bool = False
    ):
        self.lang = lang
        self.semantic = semantic
        self.embedder = embedder
        self.lowercase = lowercase

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
                raise DataError(f"sample {p.get('sample_id')!r}: a {self.name} prediction needs a hypothesis and a "
                                "reference")  # fmt: skip
        lang = self.language(predictions)
        hyps, refs = [p["hypothesis"] for p in predictions], [p["reference"] for p in predictions]
        scores = {**corpus_scores(hyps, refs, lang=lang, tokenize=self.tokenize, lowercase=self.lowercase),
                  "lang": lang}  # fmt: skip
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


class GlossProtocol(TranslationProtocol):
    """Gloss sequences (text -> gloss) against the corpus's reference glosses: BLEU-1..4, ROUGE-L and chrF on the
    glosses as whitespace-separated tokens, as they are (sacrebleu ``tokenize="none"``: ``__ON__`` or
    ``neg-HABEN`` stay whole, case kept; :func:`ray_slt.eval.metrics.corpus_scores`). Language tags a model
    writes (``GSL_WETTER``) are its own business: its predictor strips them before the prediction is scored.
    A prediction: ``sample_id``, ``hypothesis``, ``reference``. The best checkpoint has the highest dev BLEU-4."""

    name = "gloss"
    predicts = "gloss"
    selection = Selection("bleu4", "max")
    tokenize = "none"
    DEV_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf", "bleu_signature")

    def __init__(self, lang: str | None = None):
        super().__init__(lang=lang)

    def prediction(self, sample: Mapping[str, Any], output: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(sample.get("gloss"), str) or not sample["gloss"].strip():
            raise DataError(f"sample {sample.get('sample_id')!r} has no reference glosses to score against")
        return {"sample_id": str(sample["sample_id"]), "hypothesis": output["gloss"], "reference": sample["gloss"]}


class LMProtocol(Protocol):
    """A language model's log-probabilities of a split's texts (:mod:`ray_slt.models.textlm`): ``perplexity``
    ``exp(-sum logprob / sum tokens)`` over the split (every token after ``<s>``, ``</s>`` included), ``nll`` (the
    same per token, in nats), ``tokens`` and ``sentences``. A prediction: ``sample_id``, ``logprob``, ``tokens``.
    The best checkpoint has the lowest dev perplexity. Perplexities of models with different tokenizers are not
    comparable (fewer, longer tokens each carry more of a sentence's surprise)."""

    name = "lm"
    predicts = "score"
    selection = Selection("perplexity", "min")

    def prediction(self, sample: Mapping[str, Any], output: Mapping[str, Any]) -> dict[str, Any]:
        return {"sample_id": str(sample["sample_id"]), "logprob": float(output["logprob"]),
                "tokens": int(output["tokens"])}  # fmt: skip

    def score(self, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not predictions:
            raise DataError("no predictions to score")
        for p in predictions:
            if not isinstance(p.get("logprob"), int | float) or not isinstance(p.get("tokens"), int) or p["tokens"] < 1:
                raise DataError(f"sample {p.get('sample_id')!r}: an lm prediction needs a logprob and tokens >= 1")
        tokens = sum(int(p["tokens"]) for p in predictions)
        nll = -sum(float(p["logprob"]) for p in predictions) / tokens
        return {"perplexity": math.exp(nll), "nll": nll, "tokens": tokens, "sentences": len(predictions)}


# ----------------------------------------------------------------------------------------------- recognition


def ranking_scores(predictions: Sequence[Mapping[str, Any]], ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """Top-k accuracy (0-100) of ranked predictions: per instance (``top{k}_pi``: the share of samples whose gold
    label is among their k best) and per class (``top{k}_pc``: the same within each gold class, then the
    unweighted mean over classes, the ZSL convention of Xian et al. 2018)."""
    if not predictions:
        raise DataError("no predictions to score")
    by_class: dict[str, list[int]] = {}
    out: dict[str, Any] = {"n": len(predictions)}
    for k in ks:
        hits = [int(p["label"] in list(p["ranked"])[:k]) for p in predictions]
        by_class.clear()
        for p, h in zip(predictions, hits):
            by_class.setdefault(str(p["label"]), []).append(h)
        out[f"top{k}_pi"] = 100.0 * sum(hits) / len(hits)
        out[f"top{k}_pc"] = 100.0 * sum(sum(v) / len(v) for v in by_class.values()) / len(by_class)
    out["classes"] = len(by_class)
    return out


class RankingProtocol(Protocol):
    """Ranked glosses against a gold gloss. A prediction: ``sample_id``, ``label``, ``ranked`` (best first),
    ``scores``. Files beside ``metrics.json``: ``per_class.csv`` (class, samples, top-1, top-5) and
    ``confusion.csv`` (gold, top-1 prediction, count; the pairs a model confuses, which the VLM benchmarks mine for
    hard distractors)."""

    predicts = "labels"
    headline = "pi"  # which average "top1"/"top5" stand for

    def prediction(self, sample: Mapping[str, Any], output: Mapping[str, Any]) -> dict[str, Any]:
        if not sample.get("gloss"):
            raise DataError(f"sample {sample.get('sample_id')!r} has no gold gloss to score a recognition against")
        return {"sample_id": str(sample["sample_id"]), "label": str(sample["gloss"]), "ranked": list(output["ranked"]),
                "scores": [float(x) for x in output["scores"]]}  # fmt: skip

    def score(self, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        out = ranking_scores(predictions)
        out["top1"], out["top5"] = out[f"top1_{self.headline}"], out[f"top5_{self.headline}"]
        return out

    def write(self, out: str, predictions: Sequence[Mapping[str, Any]], scores: Mapping[str, Any]) -> dict[str, str]:
        import csv
        import io
        from collections import Counter

        files = super().write(out, predictions, scores)
        per: dict[str, list[tuple[int, int]]] = {}
        confusion: Counter = Counter()
        for p in predictions:
            ranked = list(p["ranked"])
            per.setdefault(p["label"], []).append((int(ranked[:1] == [p["label"]]), int(p["label"] in ranked[:5])))
            confusion[(p["label"], ranked[0] if ranked else "")] += 1
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["class", "samples", "top1", "top5"])
        for label in sorted(per):
            rows = per[label]
            w.writerow([label, len(rows), round(100 * sum(a for a, _ in rows) / len(rows), 2),
                        round(100 * sum(b for _, b in rows) / len(rows), 2)])  # fmt: skip
        files["per_class"] = storage.join(out, "per_class.csv")
        storage.write_text(files["per_class"], buf.getvalue())
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["label", "predicted", "count"])
        for (label, pred), n in sorted(confusion.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])):
            w.writerow([label, pred, n])
        files["confusion"] = storage.join(out, "confusion.csv")
        storage.write_text(files["confusion"], buf.getvalue())
        return files


class ISLRProtocol(RankingProtocol):
    """Isolated-sign recognition over a closed vocabulary: per-instance and per-class top-1/top-5; ``top1`` is the
    per-instance top-1 (the paper's P-I), which picks the best checkpoint."""

    name = "islr"
    selection = Selection("top1", "max")


class ZSLProtocol(RankingProtocol):
    """Zero-shot recognition: signs never seen in training, ranked over the unseen classes only by their
    descriptions; per-class top-1/top-5 (``top1`` is per class, the ZSL convention). In ``ray-slt eval`` the
    unseen classes are the model's ``val_unseen`` (dev split) or ``test_unseen`` (test split), or ``classes``."""

    name = "zsl"
    selection = Selection("top1", "max")
    headline = "pc"

    def __init__(self, classes: Sequence[str] | None = None):
        self.classes = list(classes) if classes else None

    def setup(self, predictor: Any, split: str) -> None:
        if self.classes is None:
            partition = getattr(predictor, "partition", None) or {}
            key = "val_unseen" if split == "dev" else "test_unseen"
            if not partition.get(key):
                raise DataError(f"the model records no {key} classes: pass the zsl protocol its classes")
            self.classes = list(partition[key])
        predictor.candidates = list(self.classes)

    def keep(self, sample: Mapping[str, Any]) -> bool:
        return self.classes is None or sample.get("gloss") in set(self.classes)


class GZSLProtocol(RankingProtocol):
    """Generalised zero-shot recognition (Xian et al. 2018): test samples of seen and of unseen classes, ranked
    over both; ``s{k}``/``u{k}`` the per-class top-k on the seen/unseen classes' samples and ``h{k}`` their
    harmonic mean ``2 S U / (S + U)``. The label space is seen + test-unseen (the spec's reading; val classes are
    left out), the seen classes' samples are those of the split evaluated."""

    name = "gzsl"
    selection = Selection("h1", "max")

    def __init__(self, seen: Sequence[str] | None = None, unseen: Sequence[str] | None = None):
        self.seen = list(seen) if seen else None
        self.unseen = list(unseen) if unseen else None

    def setup(self, predictor: Any, split: str) -> None:
        partition = getattr(predictor, "partition", None) or {}
        self.seen = self.seen or list(partition.get("seen") or [])
        self.unseen = self.unseen or list(partition.get("val_unseen" if split == "dev" else "test_unseen") or [])
        if not self.seen or not self.unseen:
            raise DataError("gzsl needs seen and unseen classes: the model records no partition; pass them")
        predictor.candidates = self.seen + self.unseen

    def keep(self, sample: Mapping[str, Any]) -> bool:
        return sample.get("gloss") in set(self.seen or []) | set(self.unseen or [])

    def score(self, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        seen = set(self.seen or [])
        if not seen or not self.unseen:
            raise DataError("gzsl needs its seen and unseen classes")
        s_preds = [p for p in predictions if p["label"] in seen]
        u_preds = [p for p in predictions if p["label"] not in seen]
        if not s_preds or not u_preds:
            raise DataError(f"gzsl needs samples of both seen ({len(s_preds)}) and unseen ({len(u_preds)}) classes")
        s, u = ranking_scores(s_preds), ranking_scores(u_preds)
        out: dict[str, Any] = {"n": len(predictions), "n_seen": len(s_preds), "n_unseen": len(u_preds)}
        for k in (1, 5):
            sk, uk = s[f"top{k}_pc"], u[f"top{k}_pc"]
            out[f"s{k}"], out[f"u{k}"] = sk, uk
            out[f"h{k}"] = 2 * sk * uk / (sk + uk) if sk + uk > 0 else 0.0
        return out


def class_partition(glosses: Sequence[str], seen: int, val_unseen: int, test_unseen: int, seed: int = 0) -> dict:
    """The zero-shot class partition (LexSign's protocol): the distinct glosses, sorted, shuffled once with
    ``seed``; the first ``test_unseen`` are test-unseen, the next ``val_unseen`` val-unseen, and ``seen`` are the
    next ones, so the seen sets of one seed are nested (100 in 300 in 1000) while the unseen sets stay fixed."""
    import random

    classes = sorted(set(glosses))
    if seen + val_unseen + test_unseen > len(classes):
        raise DataError(f"a partition of {seen} seen + {val_unseen} val-unseen + {test_unseen} test-unseen classes "
                        f"needs {seen + val_unseen + test_unseen}; there are {len(classes)}")  # fmt: skip
    random.Random(seed).shuffle(classes)
    test = classes[:test_unseen]
    val = classes[test_unseen : test_unseen + val_unseen]
    rest = classes[test_unseen + val_unseen :]
    return {"seen": sorted(rest[:seen]), "val_unseen": sorted(val), "test_unseen": sorted(test)}
