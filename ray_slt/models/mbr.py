"""Minimum Bayes risk (MBR) selection over a beam's n-best list (Kumar & Byrne 2004; as a re-ranker of beam
candidates, e.g. Freitag et al. 2022).

Beam search keeps the hypothesis with the highest model score; MBR keeps the one that agrees most with the
others, i.e. the candidate with the highest expected utility when the n-best list stands in for the model's
distribution over translations::

    y* = argmax_{h in C}  sum_{r in C, r != h}  u(h, r)

Readings chosen here (the literature varies; these are the plain ones):
- the candidates ``C`` are the beam's ``n`` finished hypotheses (``num_return_sequences = num_beams``), and they
  are also the pseudo-references;
- every pseudo-reference weighs the same (uniform, not the model's probabilities: beam scores of a small model
  are poorly calibrated, and uniform weights need no temperature to tune);
- a candidate is not compared with itself (with itself it would add the same ``u(h, h)`` = 100 to every
  candidate: the choice would not change);
- ``u`` is sentence-level BLEU-4 (sacrebleu, ``exp`` smoothing, effective order: the smoothing keeps short
  candidates from scoring 0 on a missing 4-gram), so MBR aims at the corpus BLEU the benchmarks report;
- ties go to the earlier candidate, i.e. the one beam search ranked higher. Duplicates in the list count as
  separate pseudo-references (they are separate beam paths that decoded to the same string).

The utility lives here (sacrebleu directly) rather than in :mod:`ray_slt.eval.metrics`, which imports the models
package; it computes the same sentence BLEU as ``ray_slt.eval.metrics.sentence_bleu`` (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

Utility = Callable[[str, str], float]


@lru_cache(maxsize=4)
def _sentence_bleu(tokenize: str):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenize, smooth_method="exp", effective_order=True)


def bleu_utility(tokenize: str = "13a") -> Utility:
    """``u(h, r)``: sentence BLEU-4 (0-100) of hypothesis ``h`` against the one reference ``r``.
    ``tokenize``: sacrebleu's tokenizer (``13a`` for text, ``none`` for whitespace-separated glosses)."""
    bleu = _sentence_bleu(tokenize)
    return lambda hyp, ref: float(bleu.sentence_score(hyp, [ref]).score)


def mbr_index(candidates: Sequence[str], utility: Utility) -> int:
    """The index of the MBR choice among ``candidates`` (see the module docstring). One candidate: 0."""
    if not candidates:
        raise ValueError("MBR needs at least one candidate")
    n = len(candidates)
    if n == 1:
        return 0
    memo: dict[tuple[str, str], float] = {}

    def u(h: str, r: str) -> float:
        if (h, r) not in memo:
            memo[(h, r)] = utility(h, r)
        return memo[(h, r)]

    best, best_gain = 0, float("-inf")
    for i, h in enumerate(candidates):
        gain = sum(u(h, r) for j, r in enumerate(candidates) if j != i)
        if gain > best_gain:
            best, best_gain = i, gain
    return best


def mbr_select(nbest: Sequence[Sequence[str]], utility: Utility) -> list[str]:
    """For each sample's candidate list (best beam hypothesis first), the MBR choice."""
    return [cands[mbr_index(cands, utility)] for cands in nbest]
