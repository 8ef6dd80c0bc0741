"""Reading VLM replies and scoring them (SPEC A.2, A.5; B.2 "LexSign-Bench").

Open-set recognition (paper 3): a reply is a free-form gloss.

- **exact** (the authors' code): ``reply.lower().strip() == gold.lower().strip()``;
- **synonym**: exact, or the reply is one of the WordNet synonyms of the gold gloss (:mod:`.wordnet`);
- **lenient** (reported separately, never mixed into the two above): both sides normalised by
  :func:`lenient_form` (first line only, quotes/punctuation/markdown stripped, a leading article or "the sign
  for" dropped, ``_``/``-`` read as spaces, a plural ``-s`` dropped when the singular is the gold) before the
  exact or synonym comparison.

Binary matching: the YES/NO verdict is the reply's last word (the authors parse the last token), else the last
standalone YES or NO anywhere in it; neither is a refusal (``None``). Multiple choice: the answer is the option
letter the reply states (a bare letter, ``B)``, ``(B)``, ``Answer: B``, ``option B``; a capital standing alone,
but not the article of "A woman"); a reply naming no letter, or
several different ones, is a refusal.

Errors (the model or endpoint raised) and refusals (no parsable answer) are counted, and every accuracy is given
over both denominators: all questions (an error counts as wrong) and answered ones only (the authors' choice).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

LETTERS = "ABCD"

_ARTICLE = re.compile(r"^(?:the\s+)?(?:asl\s+)?(?:sign|gloss)\s+(?:for|is|of)\s+|^(?:a|an|the)\s+")
_PUNCT = re.compile(r"[\"'`*_#.,;:!?()\[\]{}<>]+")


def exact_match(reply: str | None, gold: str) -> bool:
    return reply is not None and reply.lower().strip() == gold.lower().strip()


def synonym_match(reply: str | None, gold: str, synonyms: Callable[[str], frozenset[str]]) -> bool:
    if reply is None:
        return False
    return exact_match(reply, gold) or " ".join(reply.lower().split()) in synonyms(gold)


def lenient_form(text: str) -> str:
    """The normalised form the lenient variant compares (see the module docstring)."""
    line = next((ln for ln in str(text).splitlines() if ln.strip()), "")
    s = line.replace("_", " ").replace("-", " ").lower()
    s = _PUNCT.sub(" ", s)
    s = " ".join(s.split())
    for _ in range(2):
        s = _ARTICLE.sub("", s).strip()
    return s


def lenient_match(reply: str | None, gold: str, synonyms: Callable[[str], frozenset[str]] | None = None) -> bool:
    if reply is None:
        return False
    r, g = lenient_form(reply), lenient_form(gold)
    forms = {r}
    if r.endswith("s") and r[:-1] == g:
        forms.add(g)
    if g in forms:
        return True
    return synonyms is not None and bool(forms & synonyms(g))


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_yes_no(reply: str | None) -> str | None:
    """``"YES"``, ``"NO"`` or None (see the module docstring)."""
    if not reply or not reply.strip():
        return None
    last = re.sub(r"[^a-z]", "", reply.strip().split()[-1].lower())
    if last in ("yes", "no"):
        return last.upper()
    found = _YES_NO.findall(reply)
    return found[-1].upper() if found else None


_LETTER_PATTERNS = (
    re.compile(r"^\s*\(?([A-D])\)?\s*[.):]?\s*$"),  # "B", "(B)", "B)", "B."
    re.compile(r"^\s*\(?([A-D])[.)]\s"),  # "B) the sign ..."
    re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-D])\b\)?", re.IGNORECASE),
)


def parse_letter(reply: str | None, n_options: int = 4) -> str | None:
    """The option letter the reply states, or None (see the module docstring)."""
    if not reply or not reply.strip():
        return None
    valid = LETTERS[:n_options]
    for pat in _LETTER_PATTERNS:
        found = {m.group(1).upper() for m in pat.finditer(reply.strip())}
        found &= set(valid)
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            return None
    standalone = {
        m.group(1)
        for m in re.finditer(r"(?<![A-Za-z])([A-D])(?![A-Za-z])", reply)
        if not (m.group(1) == "A" and re.match(r"\s+[a-z]", reply[m.end() :]))  # the article of "A woman"
    } & set(valid)
    return standalone.pop() if len(standalone) == 1 else None


# ------------------------------------------------------------------------------------------------ statistics


def bootstrap_ci(
    values: Sequence[float], n: int = 1000, alpha: float = 0.05, seed: int = 0,
    statistic: Callable[[np.ndarray], float] | None = None,
) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap interval (``1 - alpha``) of the mean of ``values`` (or of ``statistic``), resampling
    questions with replacement, ``n`` draws from ``seed``. Empty input: ``(nan, nan)``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    stat = statistic or (lambda a: float(a.mean()))
    rng = np.random.default_rng(seed)
    draws = np.array([stat(x[rng.integers(0, x.size, x.size)]) for _ in range(n)])
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def accuracy_block(correct: Sequence[bool], answered: Sequence[bool], seed: int = 0) -> dict[str, Any]:
    """Accuracy (%) over all questions with its bootstrap 95% interval, and over the answered ones."""
    c = np.asarray(correct, dtype=bool)
    a = np.asarray(answered, dtype=bool)
    out: dict[str, Any] = {"n": int(c.size), "answered": int(a.sum())}
    out["accuracy"] = round(100.0 * c.mean(), 2) if c.size else math.nan
    lo, hi = bootstrap_ci(c.astype(float), seed=seed)
    out["ci95"] = [round(100.0 * lo, 2), round(100.0 * hi, 2)]
    out["accuracy_answered"] = round(100.0 * c[a].mean(), 2) if a.any() else math.nan
    return out


def binary_scores(verdicts: Sequence[str | None], labels: Sequence[bool]) -> dict[str, Any]:
    """TP/FP/FN/TN, accuracy, precision, recall and F1 (%) of YES/NO verdicts (None = refusal, counted as
    neither YES nor NO: wrong for accuracy, a missed positive for recall), the accuracy over the answered ones
    alone, and the always-YES baseline."""
    tp = sum(v == "YES" and y for v, y in zip(verdicts, labels))
    fp = sum(v == "YES" and not y for v, y in zip(verdicts, labels))
    fn = sum(v != "YES" and y for v, y in zip(verdicts, labels))
    tn = sum(v == "NO" and not y for v, y in zip(verdicts, labels))

    def block(tp: int, fp: int, fn: int, tn: int, n: int) -> dict[str, float]:
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return {"accuracy": round(100 * (tp + tn) / n, 2) if n else math.nan, "precision": round(100 * prec, 2),
                "recall": round(100 * rec, 2), "f1": round(100 * f1, 2)}  # fmt: skip

    n = len(labels)
    pos = sum(bool(y) for y in labels)
    refused = sum(v is None for v in verdicts)
    answered = n - refused
    return {
        "n": n, "positives": pos, "refusals": refused, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        **block(tp, fp, fn, tn, n),
        "accuracy_answered": round(100 * (tp + tn) / answered, 2) if answered else math.nan,
        "always_yes": block(pos, n - pos, 0, 0, n),
    }  # fmt: skip


def mean_over(groups: Mapping[str, float]) -> float:
    """Unweighted mean of the group scores that exist (the paper's AVG over iconicity types)."""
    vals = [v for v in groups.values() if v is not None and not math.isnan(v)]
    return round(sum(vals) / len(vals), 2) if vals else math.nan
