"""ray_slt.eval.metrics: properties, and agreement with sacrebleu and rouge-score run directly on real
PHOENIX-2014T (German), How2Sign (English) and CSL-Daily (Chinese) sentences."""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from ray_slt.errors import DataError
from ray_slt.eval import metrics
from ray_slt.eval.metrics import (
    bleu_rouge_reward,
    corpus_rouge_l,
    corpus_scores,
    lcs_length,
    rouge_tokens,
    sentence_bleu,
    sentence_rouge_l,
    tokenizer_for,
)


def rotate(sents: list[str], k: int = 1) -> list[str]:
    """Each reference used as the hypothesis of another sentence."""
    return sents[k:] + sents[:k]


def drop_every(sents: list[str], n: int = 3) -> list[str]:
    """Each reference with every n-th word removed (a near miss)."""
    return [" ".join(w for i, w in enumerate(s.split()) if i % n != n - 1) for s in sents]


class RayTokenizer:
    """rouge-score's tokenizer interface around ray_slt's ROUGE tokens."""

    def tokenize(self, text):
        return rouge_tokens(text)


# ----------------------------------------------------------------------------------------------- basics


@pytest.mark.parametrize(
    ("lang", "tok"),
    [
        ("de", "13a"),
        ("en", "13a"),
        ("en-US", "13a"),
        (None, "13a"),
        ("ase", "13a"),
        ("zh", "zh"),
        ("zh-CN", "zh"),
        ("cmn", "zh"),
        ("zho", "zh"),
        ("ZH_Hans", "zh"),
    ],
)
def test_tokenizer_for(lang, tok):
    assert tokenizer_for(lang) == tok


def test_rouge_tokens_keep_unicode_letters_and_split_cjk():
    assert rouge_tokens("Die Südhälfte, 2024!") == ["die", "südhälfte", "2024"]
    assert rouge_tokens("他今年四岁。") == ["他", "今", "年", "四", "岁"]
    assert rouge_tokens("WiFi密码是123") == ["wifi", "密", "码", "是", "123"]
    assert rouge_tokens("snake_case don't") == ["snake", "case", "don", "t"]


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [("abcbdab", "bdcaba", 4), ("", "abc", 0), ("abc", "abc", 3), ("abc", "def", 0), ("axbxc", "abc", 3)],
)
def test_lcs_length(a, b, n):
    assert lcs_length(list(a), list(b)) == n
    assert lcs_length(list(b), list(a)) == n


def test_sentence_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5; P = 5/5, R = 5/6.
    p, r = 1.0, 5 / 6
    assert sentence_rouge_l("the cat on the mat", "the cat sat on the mat") == pytest.approx(100 * 2 * p * r / (p + r))
    assert sentence_rouge_l("", "the cat") == 0.0
    assert sentence_rouge_l("The CAT!", "the cat") == 100.0


# ------------------------------------------------------------------------------------------- properties


def test_identical_strings_score_100(phoenix_test, how2sign_test):
    for sents, lang in ((phoenix_test, "de"), (how2sign_test, "en")):
        s = corpus_scores(sents, sents, lang=lang)
        for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf"):
            assert s[key] == pytest.approx(100.0), key
        for h in sents[:50]:
            assert sentence_rouge_l(h, h) == pytest.approx(100.0)
            if len(h.split()) >= 4:
                assert sentence_bleu(h, h, lang=lang) == pytest.approx(100.0)


def test_disjoint_strings_score_0(phoenix_test):
    # Greek letters share neither words nor characters with the German references.
    rng = random.Random(0)
    greek = "αβγδεζηθικλμνξοπρστυφχψω"
    hyps = [" ".join("".join(rng.choice(greek) for _ in range(5)) for _ in s.split()) for s in phoenix_test]
    s = corpus_scores(hyps, phoenix_test, lang="de")
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf"):
        assert s[key] == 0.0, key
    assert sentence_bleu(hyps[0], phoenix_test[0]) == 0.0
    assert bleu_rouge_reward(hyps[0], phoenix_test[0]) == 0.0


def test_order_sensitivity(phoenix_test):
    reversed_ = [" ".join(reversed(s.split())) for s in phoenix_test]
    s = corpus_scores(reversed_, phoenix_test, lang="de")
    # Same words, same length: unigram BLEU is perfect, but word order costs BLEU-2..4, ROUGE-L and chrF.
    assert s["bleu1"] == pytest.approx(100.0)
    assert s["bleu4"] < s["bleu3"] < s["bleu2"] < 20.0
    assert s["rouge_l"] < 30.0
    assert s["chrf"] < 80.0
    # Order-insensitive sentences (palindromes of words) are unaffected.
    assert sentence_rouge_l("a b a", "a b a") == 100.0


def test_multiple_references(phoenix_test):
    other = rotate(phoenix_test)
    one = corpus_scores(other, phoenix_test, lang="de")
    # A second reference stream equal to the hypotheses makes every sentence a perfect match.
    both = corpus_scores(other, [phoenix_test, other], lang="de")
    assert one["bleu4"] < 10.0
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf"):
        assert both[key] == pytest.approx(100.0), key
    assert both["n_refs"] == 2 and "nrefs:2" in both["bleu_signature"]
    # ROUGE-L takes the best reference per sentence: never below either single-reference score.
    near = drop_every(phoenix_test)
    r1, r2 = corpus_rouge_l(near, phoenix_test), corpus_rouge_l(near, other)
    assert corpus_rouge_l(near, [phoenix_test, other]) >= max(r1, r2)
    assert sentence_rouge_l(near[0], [other[0], phoenix_test[0]]) == sentence_rouge_l(near[0], phoenix_test[0])


def test_rouge_l_is_symmetric_and_bounded(how2sign_test):
    rng = random.Random(1)
    for _ in range(200):
        a, b = rng.sample(how2sign_test, 2)
        ab, ba = sentence_rouge_l(a, b), sentence_rouge_l(b, a)
        assert ab == pytest.approx(ba)
        assert 0.0 <= ab <= 100.0


def test_more_errors_score_lower(phoenix_test):
    light = drop_every(phoenix_test, 4)
    heavy = drop_every(phoenix_test, 2)
    s_light, s_heavy = corpus_scores(light, phoenix_test), corpus_scores(heavy, phoenix_test)
    for key in ("bleu1", "bleu4", "rouge_l", "chrf"):
        assert 0.0 < s_heavy[key] < s_light[key] < 100.0, key


def test_bad_inputs_are_data_errors():
    with pytest.raises(DataError, match="2 sentences but there are 1 hypotheses"):
        corpus_scores(["a b"], ["a b", "c d"])
    with pytest.raises(DataError, match="no hypotheses"):
        corpus_scores([], [])
    with pytest.raises(DataError, match="not one string"):
        corpus_scores("a b", ["a b"])
    with pytest.raises(DataError, match="stream 2"):
        corpus_scores(["a", "b"], [["a", "b"], ["a"]])
    with pytest.raises(DataError, match="not a string"):
        corpus_scores(["a", None], ["a", "b"])


# ------------------------------------------------------------------------- agreement with the references


@pytest.mark.parametrize("make_hyps", [rotate, drop_every], ids=["rotated", "dropped"])
@pytest.mark.parametrize(("corpus", "lang"), [("phoenix_test", "de"), ("how2sign_test", "en")])
def test_bleu_and_chrf_agree_with_sacrebleu(request, corpus, lang, make_hyps):
    refs = request.getfixturevalue(corpus)
    hyps = make_hyps(refs)
    ours = corpus_scores(hyps, refs, lang=lang)

    direct = sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a")
    assert ours["bleu4"] == pytest.approx(direct.score, abs=1e-9)
    assert ours["bleu_signature"] == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    for n in (1, 2, 3):
        bleu_n = BLEU(max_ngram_order=n, tokenize="13a").corpus_score(hyps, [refs])
        assert ours[f"bleu{n}"] == pytest.approx(bleu_n.score, abs=1e-9)
        # BLEU-n is the brevity penalty times the geometric mean of sacrebleu's first n precisions.
        geo = math.exp(sum(math.log(p / 100) for p in direct.precisions[:n]) / n)
        assert ours[f"bleu{n}"] == pytest.approx(100 * direct.bp * geo, rel=1e-9)
    assert 0 < ours["bleu4"] < ours["bleu3"] < ours["bleu2"] < ours["bleu1"] < 100

    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    assert ours["chrf"] == pytest.approx(chrf.score, abs=1e-9)
    assert ours["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|")


def test_multi_reference_bleu_agrees_with_sacrebleu(phoenix_test):
    hyps = drop_every(phoenix_test)
    streams = [rotate(phoenix_test, 1), rotate(phoenix_test, 2)]
    ours = corpus_scores(hyps, streams, lang="de")
    assert ours["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-9)
    assert ours["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score, abs=1e-9)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=RayTokenizer())
    expected = [scorer.score_multi([s[i] for s in streams], h)["rougeL"].fmeasure for i, h in enumerate(hyps)]
    assert ours["rouge_l"] == pytest.approx(100 * sum(expected) / len(expected), abs=1e-9)


def test_sentence_bleu_agrees_with_sacrebleu(phoenix_test, how2sign_test):
    rng = random.Random(2)
    for refs in (phoenix_test, how2sign_test):
        for _ in range(100):
            hyp, ref = rng.sample(refs, 2)
            assert sentence_bleu(hyp, ref) == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score, abs=1e-9)
            assert sentence_bleu(hyp, [ref, hyp]) == pytest.approx(100.0)
    assert metrics.sentence_bleu_signature("de").endswith(f"eff:yes|tok:13a|smooth:exp|version:{sacrebleu.__version__}")
    # Smoothing is a choice that changes the number: the reward states it.
    hyp, ref = "am tag im regen", "am tag regen im norden"  # no matching 3-gram
    assert sentence_bleu(hyp, ref, smooth="floor") != sentence_bleu(hyp, ref)


def test_rouge_l_equals_rouge_score_on_english(how2sign_test):
    """On ASCII text our ROUGE-L is exactly rouge-score's default rougeL (no stemming)."""
    hyps, refs = drop_every(how2sign_test), rotate(how2sign_test)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    checked = 0
    for h, r in zip(hyps + refs, refs + how2sign_test):
        if h.isascii() and r.isascii():
            assert sentence_rouge_l(h, r) == pytest.approx(100 * scorer.score(r, h)["rougeL"].fmeasure, abs=1e-9)
            checked += 1
    assert checked > 4600


def test_rouge_l_on_german_vs_rouge_score(phoenix_test):
    """German: identical to rouge-score given our Unicode tokenizer; rouge-score's default tokenizer keeps only
    [a-z0-9] and so splits words at umlauts/ß, which changes the corpus score."""
    hyps = drop_every(phoenix_test)
    ours = corpus_rouge_l(hyps, phoenix_test)

    with_our_tokens = rouge_scorer.RougeScorer(["rougeL"], tokenizer=RayTokenizer())
    same = [with_our_tokens.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, phoenix_test)]
    assert ours == pytest.approx(100 * sum(same) / len(same), abs=1e-9)

    default = rouge_scorer.RougeScorer(["rougeL"])
    plain = [default.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, phoenix_test)]
    ascii_pairs = [i for i, (h, r) in enumerate(zip(hyps, phoenix_test)) if h.isascii() and r.isascii()]
    assert len(ascii_pairs) > 100
    for i in ascii_pairs:
        assert sentence_rouge_l(hyps[i], phoenix_test[i]) == pytest.approx(100 * plain[i], abs=1e-9)
    differing = sum(abs(sentence_rouge_l(h, r) - 100 * p) > 1e-6 for h, r, p in zip(hyps, phoenix_test, plain))
    assert differing > 50
    assert default.score("die südhälfte", "die südhälfte")["rougeL"].fmeasure == 1.0
    assert rouge_scorer._score_lcs(["s", "dh", "lfte"], ["s", "d"]).fmeasure > 0  # umlauts split words


def test_chinese_uses_zh_tokenizer_and_characters(csl_test):
    hyps = drop_every([" ".join(s) for s in csl_test], 6)  # drop every sixth character
    hyps = [h.replace(" ", "") for h in hyps]
    ours = corpus_scores(hyps, csl_test, lang="zh")
    direct = sacrebleu.corpus_bleu(hyps, [csl_test], tokenize="zh")
    assert ours["bleu4"] == pytest.approx(direct.score, abs=1e-9)
    assert "tok:zh" in ours["bleu_signature"]
    # 13a would see each Chinese sentence as one or two "words": a very different (wrong) number.
    assert abs(corpus_scores(hyps, csl_test, lang="en")["bleu4"] - ours["bleu4"]) > 10

    class Chars:
        def tokenize(self, text):
            return [c for c in text.lower() if c.isalnum()]

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=Chars())
    expected = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, csl_test)]
    assert ours["rouge_l"] == pytest.approx(100 * sum(expected) / len(expected), abs=1e-9)
    assert 40 < ours["rouge_l"] < 100
    # rouge-score's default tokenizer drops every Chinese character.
    assert rouge_scorer.RougeScorer(["rougeL"]).score(csl_test[0], csl_test[0])["rougeL"].fmeasure == 0.0


def test_reward_is_the_stated_mix(phoenix_test):
    hyp, ref = drop_every(phoenix_test)[5], phoenix_test[5]
    b, r = sentence_bleu(hyp, ref, lang="de"), sentence_rouge_l(hyp, ref)
    assert bleu_rouge_reward(hyp, ref, lang="de") == pytest.approx((0.5 * b + 0.5 * r) / 100)
    assert bleu_rouge_reward(hyp, ref, weight=1.0) == pytest.approx(b / 100)
    assert bleu_rouge_reward(ref, ref) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bleu_rouge_reward(hyp, ref, weight=1.5)


def test_lowercase_scores_ignore_case_and_say_so(how2sign_test):
    """``lowercase``: the scores of the lower-cased texts (sacrebleu's own ``lowercase`` agrees), signatures with
    ``case:lc`` and ``case: lc`` recorded; without it an upper-cased hypothesis loses its matches."""
    refs = how2sign_test[:200]
    hyps = [r.upper() if i % 2 else r for i, r in enumerate(drop_every(refs))]
    lc = corpus_scores(hyps, refs, lang="en", lowercase=True)
    plain = corpus_scores([h.lower() for h in hyps], [r.lower() for r in refs], lang="en")
    for key in ("bleu1", "bleu4", "rouge_l", "chrf"):
        assert lc[key] == pytest.approx(plain[key], abs=1e-9), key
    assert lc["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score, abs=1e-9)
    assert lc["chrf"] == pytest.approx(CHRF(lowercase=True).corpus_score(hyps, [refs]).score, abs=1e-9)
    assert "|case:lc|" in lc["bleu_signature"] and "|case:lc|" in lc["chrf_signature"] and lc["case"] == "lc"
    mixed = corpus_scores(hyps, refs, lang="en")
    assert mixed["case"] == "mixed" and "|case:mixed|" in mixed["bleu_signature"]
    assert mixed["bleu4"] < 0.75 * lc["bleu4"]  # half the hypotheses upper-cased: their words no longer match
