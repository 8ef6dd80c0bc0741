"""Sentence-level rewards of RVLF stage 3 (GRPO), as plain functions in TRL's reward-function convention.

A reward function takes the sampled completions and the dataset columns of their prompts, one entry per
completion, and returns one float per completion::

    reward(completions, reference, **columns) -> list[float]

``completions`` are the decoded translations (strings, or TRL's conversational ``[{"role": "assistant",
"content": ...}]`` lists); ``reference`` is the dataset column holding the raw reference sentence (a string, or
a list of strings for several references); an optional ``lang`` column (BCP-47, e.g. ``de``, ``zh``) picks the
BLEU tokenizer. Every other column TRL passes (``prompts``, ``completion_ids``, ``trainer_state``, features, ...)
is ignored. All scores come from :mod:`ray_slt.eval.metrics` (the functions evaluation uses), rescaled to 0-1:

- :func:`bleu4`: sentence BLEU-4 (:func:`~ray_slt.eval.metrics.sentence_bleu`: sacrebleu, exp smoothing,
  effective order), with the paper's short-sentence rule below;
- :func:`rouge_l`: sentence ROUGE-L F1 (:func:`~ray_slt.eval.metrics.sentence_rouge_l`);
- :func:`bleu_rouge`: R = lambda * BLEU-4 + (1 - lambda) * ROUGE-L in one function (paper Eq. 15).

The GRPO trainer uses :func:`bleu4` and :func:`rouge_l` as two reward functions with TRL's ``reward_weights``
``[lambda, 1 - lambda]``: TRL sums the weighted rewards before normalising them per group, which is exactly
Eq. 15-16, and it logs both parts (``rewards/bleu4/mean``, ``rewards/rouge_l/mean``) beside their sum
(``reward``). :func:`reward_functions` builds that pair from a :class:`RewardSettings`.

**Short sentences** (paper, supplement: "some sign language datasets contain very short sentences. To reduce
unstable BLEU-4 scores ... we append additional punctuation to the end of these sentences"). A sentence with
fewer than ``short_tokens`` word tokens (counted as ROUGE-L counts them: letter/digit runs, one token per CJK
character, punctuation not counted) gets `` <mark>`` appended until it has ``short_tokens`` tokens, on both
sides of the BLEU comparison (completion and reference), so sentence BLEU-4 sees 4-grams. Identical sentences
stay identical (reward 1). ROUGE-L drops punctuation, so the rule changes BLEU only. A completion with no word
token at all (empty, or punctuation only) is never padded and scores 0 under every reward here.
``short_tokens=0`` turns the rule off. With our effective-order BLEU the rule is not needed to avoid errors; it
mostly lifts the scores of short wrong answers (``"nein"`` vs ``"ja"``: 0 -> 0.59) while keeping the order of
completions for a given reference, which is what group-normalised advantages use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field

from ray_slt.config import Schema
from ray_slt.eval import metrics

SHORT_TOKENS = 4  # BLEU-4 needs 4 tokens for one 4-gram
MARK = "."


class RewardSettings(Schema):
    """The GRPO reward R = bleu_weight * BLEU-4 + (1 - bleu_weight) * ROUGE-L (paper Eq. 15, lambda = 0.5)."""

    bleu_weight: float = Field(0.5, ge=0, le=1)  # lambda
    short_tokens: int = Field(SHORT_TOKENS, ge=0)  # pad sentences with fewer word tokens (0: off)
    punctuation: str = Field(MARK, min_length=1)  # the mark appended to short sentences

    def weights(self) -> list[float]:
        """TRL ``reward_weights`` for ``[bleu4, rouge_l]``."""
        return [self.bleu_weight, 1.0 - self.bleu_weight]


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of TRL's conversational message list."""
    if isinstance(completion, str):
        return completion.strip()
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "").strip()
    raise TypeError(f"a completion must be a string or a list of messages, not {type(completion).__name__}")


def num_words(text: str) -> int:
    """Word tokens of a sentence as ROUGE-L counts them (punctuation excluded, CJK per character)."""
    return len(metrics.rouge_tokens(text))


def pad_short(text: str, short_tokens: int = SHORT_TOKENS, mark: str = MARK) -> str:
    """``text`` with `` mark`` appended until it has ``short_tokens`` word tokens; unchanged when it already has
    that many, when ``short_tokens`` is 0, and when it has no word token at all."""
    text = text.strip()
    n = num_words(text)
    if n == 0 or n >= short_tokens:
        return text
    return text + f" {mark}" * (short_tokens - n)


def _refs(reference: Any) -> list[str]:
    refs = [reference] if isinstance(reference, str) else list(reference)
    if not refs or not all(isinstance(r, str) for r in refs):
        raise TypeError(f"a reference must be a string or a list of strings, got {reference!r}")
    return refs


def _rows(completions: Sequence[Any], reference: Sequence[Any], lang: Sequence[str | None] | str | None):
    if isinstance(reference, str):
        raise TypeError("reference must be the dataset column (one entry per completion), not one string")
    if len(reference) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(reference)} references")
    if lang is None or isinstance(lang, str):
        lang = [lang] * len(completions)
    elif len(lang) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(lang)} lang entries")
    for c, r, lg in zip(completions, reference, lang):
        yield completion_text(c), _refs(r), lg


def _bleu4(hyp: str, refs: list[str], lang: str | None, short_tokens: int, mark: str) -> float:
    if num_words(hyp) == 0:
        return 0.0
    if short_tokens:
        hyp = pad_short(hyp, short_tokens, mark)
        refs = [pad_short(r, short_tokens, mark) for r in refs]
    return metrics.sentence_bleu(hyp, refs, lang=lang) / 100.0


def _rouge_l(hyp: str, refs: list[str]) -> float:
    return metrics.sentence_rouge_l(hyp, refs) / 100.0 if num_words(hyp) else 0.0


def bleu4(
    completions: Sequence[Any],
    reference: Sequence[Any],
    lang: Sequence[str | None] | str | None = None,
    short_tokens: int = SHORT_TOKENS,
    punctuation: str = MARK,
    **_: Any,
) -> list[float]:
    """Sentence BLEU-4 of each completion against its reference(s), 0-1, with the short-sentence rule."""
    return [_bleu4(h, r, lg, short_tokens, punctuation) for h, r, lg in _rows(completions, reference, lang)]


def rouge_l(
    completions: Sequence[Any], reference: Sequence[Any], lang: Sequence[str | None] | str | None = None, **_: Any
) -> list[float]:
    """Sentence ROUGE-L F1 of each completion against its reference(s) (best reference), 0-1."""
    return [_rouge_l(h, r) for h, r, _lg in _rows(completions, reference, lang)]


def bleu_rouge(
    completions: Sequence[Any],
    reference: Sequence[Any],
    lang: Sequence[str | None] | str | None = None,
    bleu_weight: float = 0.5,
    short_tokens: int = SHORT_TOKENS,
    punctuation: str = MARK,
    **_: Any,
) -> list[float]:
    """R = bleu_weight * BLEU-4 + (1 - bleu_weight) * ROUGE-L (0-1) per completion (paper Eq. 15). With
    ``short_tokens=0`` this is :func:`ray_slt.eval.metrics.bleu_rouge_reward` for every completion."""
    if not 0.0 <= bleu_weight <= 1.0:
        raise ValueError(f"bleu_weight must be in [0, 1], not {bleu_weight}")
    return [
        bleu_weight * _bleu4(h, r, lg, short_tokens, punctuation) + (1.0 - bleu_weight) * _rouge_l(h, r)
        for h, r, lg in _rows(completions, reference, lang)
    ]


def _named(fn: Callable[..., list[float]], name: str, **bound: Any) -> Callable[..., list[float]]:
    """``fn`` with ``bound`` keyword arguments fixed, under ``name`` (TRL logs rewards by function name)."""

    def reward(completions, reference, **columns):
        return fn(completions, reference, **{**columns, **bound})

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = fn.__doc__
    return reward


def reward_functions(settings: RewardSettings | None = None) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """``([bleu4, rouge_l], [lambda, 1 - lambda])``: TRL ``reward_funcs`` and ``reward_weights`` of Eq. 15."""
    s = settings or RewardSettings()
    funcs = [
        _named(bleu4, "bleu4", short_tokens=s.short_tokens, punctuation=s.punctuation),
        _named(rouge_l, "rouge_l"),
    ]
    return funcs, s.weights()
