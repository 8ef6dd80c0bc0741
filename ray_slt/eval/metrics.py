"""The one place where ray_slt computes translation metrics.

Evaluation (`ray-slt score`, `ray-slt eval`) and training rewards (GRPO) call these functions and nothing
else, so a number in a results table and a reward during training mean the same thing.

Settings (also stated in the README, "Evaluation"):

- **BLEU-1..4**: sacrebleu's ``BLEU`` with ``max_ngram_order`` = n (cumulative BLEU-n: geometric mean of the
  1..n-gram precisions times the brevity penalty), case-sensitive, corpus level, ``smooth_method="exp"``
  (sacrebleu's default; it only matters when a corpus has no matching n-gram of some order).
  Tokenisation per language (:func:`tokenizer_for`): ``zh`` for Chinese, ``13a`` for everything else.
  Every corpus score comes with its sacrebleu signature (which has no field for the n-gram order: BLEU-1..3
  share BLEU-4's signature and differ only in ``max_ngram_order``).
- **Sentence BLEU** (rewards): sacrebleu's sentence-level BLEU-4 with ``smooth_method="exp"`` (a zero count
  for n-gram order k is replaced by 1/2^k, the NIST geometric smoothing) and ``effective_order=True``
  (orders longer than the hypothesis are left out), exactly what ``sacrebleu.sentence_bleu`` computes.
- **ROUGE-L**: our own longest-common-subsequence F1 (beta = 1) per sentence, averaged over the corpus;
  with several references a sentence takes the best F1 (as ``rouge-score``'s ``score_multi``). Tokens are
  the lowercased runs of Unicode letters/digits, with each CJK ideograph or kana its own token (so Chinese is
  scored per character); punctuation is dropped; no stemming. On ASCII text this is exactly
  ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)``; rouge-score's own tokenizer keeps
  only ``[a-z0-9]``, so it splits German words at every umlaut/ß and drops Chinese entirely, which ours does
  not (tests/eval/test_metrics.py measures both on PHOENIX-2014T, How2Sign and CSL-Daily).
- **chrF**: sacrebleu's ``CHRF`` defaults: character 6-grams, no word n-grams (chrF, not chrF++), beta = 2,
  whitespace ignored, case-sensitive.

References are the raw strings as the corpus gives them; nothing here round-trips text through a model
tokenizer. All scores are on a 0-100 scale.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from ray_slt.errors import DataError

#: sacrebleu tokenizer used for a language unless one is given explicitly.
DEFAULT_TOKENIZER = "13a"
_CHINESE = {"zh", "zho", "chi", "cmn", "yue"}

ROUGE_IMPL = (
    "ray_slt LCS ROUGE-L F1 (beta=1), sentence mean, max over references; tokens: lowercased Unicode "
    "letter/digit runs, CJK ideographs/kana one per token; no stemming"
)

# One CJK ideograph or kana per token; any other run of letters/digits is one token. `[^\W_]` is a Unicode
# letter or digit (``\w`` without the underscore).
CJK_CHARS = "\u3041-\u3096\u30a1-\u30fa\u30fc\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_ROUGE_TOKEN = re.compile(rf"[{CJK_CHARS}]|[^\W_{CJK_CHARS}]+")

#: ROUGE-L of texts that are already tokens separated by whitespace (glosses: ``__ON__``, ``neg-HABEN``), with
#: ``tokenize="none"``: each whitespace-separated token as it is, case kept.
ROUGE_IMPL_WHITESPACE = "ray_slt LCS ROUGE-L F1 (beta=1), sentence mean, max over references; whitespace tokens as is"

Refs = Sequence[str] | Sequence[Sequence[str]]


def tokenizer_for(lang: str | None) -> str:
    """The sacrebleu tokenizer for a spoken language (BCP-47 or ISO 639 code): ``zh`` for Chinese (character
    level for CJK, 13a around it), ``13a`` (sacrebleu's default, mteval-v13a) for every other language."""
    if not lang:
        return DEFAULT_TOKENIZER
    primary = re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
    return "zh" if primary in _CHINESE else DEFAULT_TOKENIZER


def rouge_tokens(text: str) -> list[str]:
    """The tokens ROUGE-L compares (see the module docstring)."""
    return _ROUGE_TOKEN.findall(text.lower())


def reference_streams(hyps: Sequence[str], refs: Refs) -> list[list[str]]:
    """Normalise ``refs`` to a list of reference streams, each as long as ``hyps``."""
    if isinstance(hyps, str):
        raise DataError("hypotheses must be a list of sentences, not one string")
    if isinstance(refs, str):
        raise DataError("references must be a list of sentences (or of reference streams), not one string")
    if len(hyps) == 0:
        raise DataError("no hypotheses to score")
    if len(refs) == 0:
        raise DataError("no references to score against")
    streams = [list(refs)] if isinstance(refs[0], str) else [list(s) for s in refs]
    for k, stream in enumerate(streams):
        if len(stream) != len(hyps):
            raise DataError(
                f"reference stream {k + 1} has {len(stream)} sentences but there are {len(hyps)} hypotheses"
            )
        for i, s in enumerate(stream):
            if not isinstance(s, str):
                raise DataError(f"reference {i + 1} of stream {k + 1} is {type(s).__name__}, not a string")
    for i, h in enumerate(hyps):
        if not isinstance(h, str):
            raise DataError(f"hypothesis {i + 1} is {type(h).__name__}, not a string")
    return streams


@functools.lru_cache(maxsize=64)
def _bleu(order: int, tokenize: str, smooth: str, effective_order: bool, lowercase: bool):
    from sacrebleu.metrics import BLEU

    return BLEU(
        max_ngram_order=order,
        tokenize=tokenize,
        smooth_method=smooth,
        effective_order=effective_order,
        lowercase=lowercase,
    )


@functools.lru_cache(maxsize=8)
def _chrf(lowercase: bool = False):
    from sacrebleu.metrics import CHRF

    return CHRF(lowercase=lowercase)


def corpus_bleu(
    hyps: Sequence[str],
    refs: Refs,
    order: int = 4,
    lang: str | None = None,
    tokenize: str | None = None,
    lowercase: bool = False,
) -> tuple[float, str]:
    """Corpus BLEU-``order`` (0-100) and its sacrebleu signature."""
    streams = reference_streams(hyps, refs)
    bleu = _bleu(order, tokenize or tokenizer_for(lang), "exp", False, lowercase)
    score = bleu.corpus_score(list(hyps), streams)
    return float(score.score), bleu.get_signature().format()


def corpus_chrf(hyps: Sequence[str], refs: Refs, lowercase: bool = False) -> tuple[float, str]:
    """Corpus chrF (0-100) and its sacrebleu signature."""
    streams = reference_streams(hyps, refs)
    chrf = _chrf(lowercase)
    return float(chrf.corpus_score(list(hyps), streams).score), chrf.get_signature().format()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (O(len(a) * len(b)))."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _rouge_l_f1(hyp_tokens: Sequence[str], ref_tokens: Sequence[str]) -> float:
    if not hyp_tokens or not ref_tokens:
        return 0.0
    lcs = lcs_length(hyp_tokens, ref_tokens)
    if lcs == 0:
        return 0.0
    precision = lcs / len(hyp_tokens)
    recall = lcs / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def sentence_rouge_l(hyp: str, refs: str | Sequence[str], whitespace: bool = False) -> float:
    """ROUGE-L F1 (0-100) of one hypothesis against one or several references (best reference wins).
    ``whitespace``: the texts are already tokens (glosses): split on whitespace, nothing lowercased or dropped."""
    if isinstance(refs, str):
        refs = [refs]
    if len(refs) == 0:
        raise DataError("no reference to score against")
    tokens = str.split if whitespace else rouge_tokens
    hyp_tokens = tokens(hyp)
    return 100.0 * max(_rouge_l_f1(hyp_tokens, tokens(r)) for r in refs)


def corpus_rouge_l(hyps: Sequence[str], refs: Refs, whitespace: bool = False) -> float:
    """Mean sentence ROUGE-L F1 over the corpus (0-100)."""
    streams = reference_streams(hyps, refs)
    total = sum(sentence_rouge_l(h, [s[i] for s in streams], whitespace) for i, h in enumerate(hyps))
    return total / len(hyps)


def sentence_bleu(
    hyp: str,
    refs: str | Sequence[str],
    lang: str | None = None,
    order: int = 4,
    tokenize: str | None = None,
    smooth: str = "exp",
) -> float:
    """Sentence-level BLEU-``order`` (0-100), sacrebleu with ``smooth`` smoothing (default ``exp``) and
    effective order; identical to ``sacrebleu.sentence_bleu`` for the default settings. Used as a reward."""
    if isinstance(refs, str):
        refs = [refs]
    if len(refs) == 0:
        raise DataError("no reference to score against")
    bleu = _bleu(order, tokenize or tokenizer_for(lang), smooth, True, False)
    return float(bleu.sentence_score(hyp, list(refs)).score)


def sentence_bleu_signature(lang: str | None = None, order: int = 4, smooth: str = "exp") -> str:
    """The sacrebleu signature of :func:`sentence_bleu` with these settings."""
    return _bleu(order, tokenizer_for(lang), smooth, True, False).get_signature().format()


def corpus_scores(
    hyps: Sequence[str], refs: Refs, lang: str | None = None, tokenize: str | None = None, lowercase: bool = False
) -> dict:
    """BLEU-1..4, ROUGE-L and chrF of a corpus (0-100), with the settings that produced them.

    ``refs`` is one reference per hypothesis (a list of strings) or several reference streams (a list of
    such lists). Returns ``bleu1``..``bleu4``, ``rouge_l``, ``chrf``, ``bleu_signature`` (of BLEU-4; BLEU-n
    differs only in the n-gram order), ``chrf_signature``, ``rouge_impl``, ``case`` (``mixed`` or ``lc``),
    ``n_sentences``, ``n_refs``. ``tokenize="none"``: the texts are already whitespace-separated tokens (glosses);
    BLEU and ROUGE-L both take the tokens as they are. ``lowercase``: case-insensitive scores (hypotheses and
    references lower-cased; the BLEU and chrF signatures say ``case:lc``).
    """
    streams = reference_streams(hyps, refs)
    if lowercase:
        hyps = [h.lower() for h in hyps]
        streams = [[r.lower() for r in stream] for stream in streams]
    out: dict = {}
    signature = ""
    for n in (1, 2, 3, 4):
        out[f"bleu{n}"], signature = corpus_bleu(hyps, streams, order=n, lang=lang, tokenize=tokenize,
                                                 lowercase=lowercase)  # fmt: skip
    whitespace = tokenize == "none"
    out["rouge_l"] = corpus_rouge_l(hyps, streams, whitespace)
    out["chrf"], out["chrf_signature"] = corpus_chrf(hyps, streams, lowercase)
    out["case"] = "lc" if lowercase else "mixed"
    out["bleu_signature"] = signature
    out["rouge_impl"] = ROUGE_IMPL_WHITESPACE if whitespace else ROUGE_IMPL
    out["n_sentences"] = len(hyps)
    out["n_refs"] = len(streams)
    return out


def bleu_rouge_reward(hyp: str, refs: str | Sequence[str], lang: str | None = None, weight: float = 0.5) -> float:
    """``weight * BLEU-4 + (1 - weight) * ROUGE-L`` of one sentence on a 0-1 scale: the GRPO reward of
    RVLF (weight lambda = 0.5), from :func:`sentence_bleu` and :func:`sentence_rouge_l`."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], not {weight}")
    bleu = sentence_bleu(hyp, refs, lang=lang)
    rouge = sentence_rouge_l(hyp, refs)
    return (weight * bleu + (1.0 - weight) * rouge) / 100.0
