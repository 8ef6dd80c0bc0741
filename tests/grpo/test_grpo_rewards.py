"""GRPO rewards: TRL's calling convention, the shared metrics module, the short-sentence punctuation rule."""

from __future__ import annotations

import pytest

from ray_slt.eval import metrics
from ray_slt.training.rewards import (
    RewardSettings,
    bleu4,
    bleu_rouge,
    pad_short,
    reward_functions,
    rouge_l,
)

REWARDS = (bleu4, rouge_l, bleu_rouge)


@pytest.mark.parametrize("fn", REWARDS)
def test_identical_completion_gets_the_maximum(fn, phoenix_dev):
    refs = [r["text"] for r in phoenix_dev[:40]] + ["ja", "guten abend", "tschüss", "über 30 grad"]
    assert fn(refs, refs) == pytest.approx([1.0] * len(refs))
    assert fn(["  " + refs[0] + " "], [refs[0]]) == pytest.approx([1.0])  # decoded completions carry spaces
    assert fn(["今天下雨"], [["今天下雨"]], lang=["zh"]) == pytest.approx([1.0])  # several references allowed
    # nothing beats the reference itself
    others = [r["text"] for r in phoenix_dev[40:80]]
    assert max(fn(others, [refs[0]] * len(others))) < 1.0


@pytest.mark.parametrize("fn", REWARDS)
def test_empty_completion_scores_zero(fn):
    refs = ["regen", "im norden regen und wind", "ja"]
    for empty in ("", "   ", " . ", "?!"):
        assert fn([empty] * 3, refs) == [0.0, 0.0, 0.0]
    # a conversational (chat) completion is read from its message content
    assert fn([[{"role": "assistant", "content": ""}]], ["ja"]) == [0.0]
    assert fn([[{"role": "assistant", "content": "ja"}]], ["ja"]) == pytest.approx([1.0])


def test_short_sentences_are_padded_with_punctuation():
    assert pad_short("ja") == "ja . . ."
    assert pad_short(" regen und ") == "regen und . ."
    assert pad_short("am tag regen.") == "am tag regen. ."  # punctuation is not a word token
    assert pad_short("regen und wind im norden") == "regen und wind im norden"  # long enough
    assert pad_short("") == "" and pad_short(" . ") == "."  # nothing to pad
    assert pad_short("下雨") == "下雨 . ."  # CJK: one token per character
    assert pad_short("ja", short_tokens=2, mark="!") == "ja !"
    assert pad_short("ja", short_tokens=0) == "ja"


def test_bleu_reward_scores_padded_pairs_with_the_shared_sentence_bleu():
    pairs = [("ja", "nein"), ("regen", "regen und wind"), ("regen und", "regen und wind"), ("im norden", "ja")]
    for hyp, ref in pairs:
        want = metrics.sentence_bleu(pad_short(hyp), pad_short(ref), lang="de") / 100
        assert bleu4([hyp], [ref], lang="de") == pytest.approx([want])
        assert bleu4([hyp], [ref], short_tokens=0) == pytest.approx([metrics.sentence_bleu(hyp, ref) / 100])
    # the rule gives a graded signal on a short reference without reordering the completions of a group
    group = ["regen und wind", "regen und", "regen wind und", "regen", "sonne"]
    padded = bleu4(group, ["regen und wind"] * 5)
    plain = bleu4(group, ["regen und wind"] * 5, short_tokens=0)
    assert padded[0] == pytest.approx(1.0)
    assert sorted(range(5), key=lambda i: -padded[i]) == sorted(range(5), key=lambda i: -plain[i])
    assert plain[-1] == 0.0 < padded[-1] < padded[1]  # a wrong one-word answer is no longer exactly 0
    # long sentences are untouched by the rule
    long = ["morgen regnet es im norden", "heute scheint im süden die sonne"]
    assert bleu4(long, long[::-1]) == bleu4(long, long[::-1], short_tokens=0)


def test_combined_reward_is_the_metrics_module_reward(phoenix_dev):
    """Without the short-sentence rule, R is exactly ray_slt.eval.metrics.bleu_rouge_reward (paper Eq. 15)."""
    hyps = [r["text"] for r in phoenix_dev[:60]]
    refs = [r["text"] for r in phoenix_dev[1:61]]  # each scored against its neighbour: partial overlaps
    for lam in (0.0, 0.3, 0.5, 1.0):
        got = bleu_rouge(hyps, refs, lang="de", bleu_weight=lam, short_tokens=0)
        want = [metrics.bleu_rouge_reward(h, r, lang="de", weight=lam) for h, r in zip(hyps, refs)]
        assert got == pytest.approx(want, abs=1e-12)
    assert bleu_rouge(hyps, refs, bleu_weight=0.5) == pytest.approx(
        [0.5 * b + 0.5 * r for b, r in zip(bleu4(hyps, refs), rouge_l(hyps, refs))]
    )


def test_reward_functions_follow_trl_convention():
    funcs, weights = reward_functions(RewardSettings(bleu_weight=0.7, short_tokens=0))
    assert [f.__name__ for f in funcs] == ["bleu4", "rouge_l"] and weights == pytest.approx([0.7, 0.3])
    completions, refs = ["regen und", "ja"], ["regen und wind", "ja"]
    # TRL passes everything by keyword: prompts, completion ids, every dataset column, the trainer state
    kwargs = dict(prompts=["p", "p"], completion_ids=[[1], [2]], reference=refs, lang=["de", "de"],
                  sample_id=["a", "b"], gloss=["REGEN", "JA"], trainer_state=None, log_extra=print)  # fmt: skip
    scores = [f(completions=completions, **kwargs) for f in funcs]
    assert scores[0] == pytest.approx(bleu4(completions, refs, short_tokens=0))
    assert scores[1] == pytest.approx(rouge_l(completions, refs))
    total = [weights[0] * b + weights[1] * r for b, r in zip(*scores)]
    assert total == pytest.approx(bleu_rouge(completions, refs, bleu_weight=0.7, short_tokens=0))
    # the configured short-sentence rule is bound into the BLEU function
    padded_funcs, _ = reward_functions(RewardSettings())
    assert padded_funcs[0](completions=["nein"], reference=["ja"]) == bleu4(["nein"], ["ja"])


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        bleu4(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="column"):
        rouge_l(["a"], "a")
    with pytest.raises(ValueError, match="bleu_weight"):
        bleu_rouge(["a"], ["a"], bleu_weight=1.5)
    with pytest.raises(Exception, match="bleu_weight"):
        RewardSettings(bleu_weight=-0.1)
