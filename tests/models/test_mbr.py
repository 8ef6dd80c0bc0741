"""Minimum Bayes risk selection (ray_slt.models.mbr) against a slow, direct computation of its equation
y* = argmax_h sum_{r != h} BLEU(h, r), its utility against the metrics module's sentence BLEU, and the decoding
option of a translator (``generate(mbr=True)``): the MBR choice among the beam's returned hypotheses."""

from __future__ import annotations

import random

import pytest
from model_helpers import pose_samples, tiny_sft

from ray_slt.eval.metrics import sentence_bleu
from ray_slt.models.mbr import bleu_utility, mbr_index, mbr_select
from ray_slt.models.sft import build_translator

SENTENCES = [
    "am tag scheint die sonne",
    "am tag scheint die sonne im süden",
    "im süden scheint am tag die sonne",
    "morgen regnet es im norden",
    "regen im norden",
    "",
    "am tag scheint sonne",
]


def direct_mbr(candidates: list[str], tokenize: str) -> int:
    """The equation as written: the full utility matrix from the metrics module, row sums without the diagonal,
    the first maximum."""
    n = len(candidates)
    u = [[sentence_bleu(candidates[i], [candidates[j]], tokenize=tokenize) for j in range(n)] for i in range(n)]
    gains = [sum(u[i][j] for j in range(n) if j != i) for i in range(n)]
    return gains.index(max(gains))


@pytest.mark.parametrize("tokenize", ["13a", "none"])
def test_utility_is_the_metrics_sentence_bleu(tokenize):
    u = bleu_utility(tokenize)
    for h in SENTENCES:
        for r in SENTENCES:
            assert u(h, r) == pytest.approx(sentence_bleu(h, [r], tokenize=tokenize), abs=1e-12)


def test_mbr_matches_the_direct_computation_on_random_lists():
    rng = random.Random(0)
    words = ["am", "tag", "die", "sonne", "im", "süden", "norden", "regen", "morgen", "scheint", "WETTER", "NORD-WEST"]
    chosen_not_first = 0
    for _ in range(60):
        n = rng.randint(1, 6)
        cands = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 7))) for _ in range(n)]
        if rng.random() < 0.3 and n > 2:  # duplicates count as separate pseudo-references
            cands[-1] = cands[0]
        for tokenize in ("13a", "none"):
            i = mbr_index(cands, bleu_utility(tokenize))
            assert i == direct_mbr(cands, tokenize)
            chosen_not_first += i != 0
    assert chosen_not_first > 10  # the lists exercise choices other than the beam's best


def test_the_consensus_candidate_wins_and_ties_go_to_the_beams_order():
    cands = ["regen im norden", "am tag scheint die sonne im süden", "am tag scheint die sonne", "am tag scheint sonne"]
    assert mbr_index(cands, bleu_utility()) == 2  # the one closest to all others, not the beam's first
    assert mbr_select([cands, ["x y", "x y"], ["nur eins"]], bleu_utility()) == [cands[2], "x y", "nur eins"]
    with pytest.raises(ValueError, match="at least one candidate"):
        mbr_index([], bleu_utility())


def test_translator_mbr_picks_among_the_beams_hypotheses(phoenix_texts):
    model = build_translator(tiny_sft(max_new_tokens=6), texts=phoenix_texts, seed=3).eval()
    batch = model.collator()(pose_samples(5, seed=4))
    beams = 4
    ids = model.generate_ids(batch, num_beams=beams, num_return_sequences=beams)
    texts = [s.strip() for s in model.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    nbest = [texts[i : i + beams] for i in range(0, len(texts), beams)]
    assert len(nbest) == 5
    best = model.generate(batch, num_beams=beams)
    assert best == [c[0] for c in nbest]  # the beam's best is the first returned hypothesis
    chosen = model.generate(batch, num_beams=beams, mbr=True)
    assert chosen == [c[direct_mbr(c, "13a")] for c in nbest]
    # one beam: one candidate, MBR changes nothing
    assert model.generate(batch, num_beams=1, mbr=True) == model.generate(batch, num_beams=1)
