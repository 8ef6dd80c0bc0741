"""AGP, the automated generation pipeline of lexical descriptions (paper 4; SPEC B.1.1 "AGP"): perceive, then
summarise.

1. **Perceive**: a VLM writes a dictionary-style description of each video (protocol ``describe``: the question
   file of :func:`describe_questions`, answered by the ordinary benchmark runner, so it runs on Ray Data, on GPUs
   or an endpoint, and resumes from its answer cache). The prompt asks for handshape, location, palm orientation
   and movement in one paragraph of at most 50 words, in the style "A hand, palm facing in", with up to three
   in-context examples from a reference lexicon (the header's ``examples``).
2. **Summarise**: a language model merges the descriptions of a gloss's videos into one entry, keeping what most
   of them share and dropping the idiosyncratic, under 50 words (:func:`summarise`). A gloss with one description
   keeps it as it is. The summariser is any model the runner can use (a local model asked text-only, or an
   endpoint).

The output is a lexicon in the recognition issue's format (``source`` = ``vlm:<model>``). Its quality protocol
(the paper's Tables 5, 6 and 12): describe only the *training* classes' videos, and train the HALI zero-shot
model on a lexicon where those classes carry the generated descriptions and the unseen classes their reference
ones (:func:`quality_lexicon`), then evaluate zero-shot on the unseen classes: ``ray-slt train
conf/train/recognition/hali_...yaml lexicon=QUALITY.csv`` and ``ray-slt eval RUN --protocol zsl``. Reading of the
paper's "sampling" variant (training draws from the pool of per-video and summarised descriptions): not built; one
description per gloss.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt.data.lexicon import Entry
from ray_slt.errors import DataError
from ray_slt.vlmbench.questions import video_ref

DESCRIBE_SYSTEM = (
    "You are a lexicographer of American Sign Language (ASL). Describe the sign performed in the video the way a "
    "sign-language dictionary entry does: the handshape of each hand, where the hands are, which way the palms face, "
    "and how the hands move. Write one paragraph of at most 50 words, starting each hand's part in the style "
    "'A hand, palm facing in, ...'. Describe only the sign, not the person or the background."
)
SUMMARISE_SYSTEM = (
    "You merge several descriptions of the same sign, each written from a different video of it, into one "
    "dictionary entry. Keep the features that most descriptions share, drop those that only one mentions, and "
    "write one paragraph of fewer than 50 words in the same style. Output only the merged description."
)


def describe_prompt(examples: Sequence[Mapping[str, str]] = ()) -> str:
    shots = "".join(f"Example ({e['gloss']}): {e['description']}\n" for e in examples[:3])
    return (shots + "\n" if shots else "") + "Describe the sign in this video as a dictionary entry."


def describe_questions(rows: Sequence[Mapping[str, Any]], per_gloss: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """One ``describe`` question per video, at most ``per_gloss`` videos per gloss (drawn with ``seed``)."""
    by_gloss: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("gloss"):
            by_gloss.setdefault(r["gloss"], []).append(r)
    rng = random.Random(seed)
    out = []
    for gloss in sorted(by_gloss):
        vids = sorted(by_gloss[gloss], key=lambda r: r["sample_id"])
        rng.shuffle(vids)
        for r in sorted(vids[:per_gloss], key=lambda r: r["sample_id"]):
            out.append({"qid": f"describe/{r['sample_id']}", "protocol": "describe", "sample_id": r["sample_id"],
                        "gold": gloss, "video": video_ref(r)})  # fmt: skip
    if not out:
        raise DataError("no rows with a gloss to describe")
    return out


def example_entries(entries: Sequence[Entry], k: int = 3, seed: int = 0) -> list[dict[str, str]]:
    """``k`` in-context examples (gloss, description) drawn from a reference lexicon."""
    pool = sorted(entries, key=lambda e: e.gloss)
    picks = random.Random(seed).sample(pool, min(k, len(pool)))
    return [{"gloss": e.gloss, "description": e.description} for e in picks]


def clean_description(text: str, max_words: int = 80) -> str:
    """A reply as a lexicon description: one paragraph, quotes and a leading label dropped, at most
    ``max_words`` words (the prompt asks for 50; a model that rambles is cut, not dropped)."""
    s = " ".join(str(text).split())
    s = re.sub(r"^(?:description|entry|dictionary entry)\s*:\s*", "", s, flags=re.IGNORECASE).strip("\"' ")
    words = s.split()
    return " ".join(words[:max_words])


def summarise_prompt(gloss: str, descriptions: Sequence[str]) -> str:
    listed = "\n".join(f"{i + 1}. {d}" for i, d in enumerate(descriptions))
    return f"Descriptions of the sign {gloss.upper()}:\n{listed}\nMerged description:"


def summarise(per_gloss: Mapping[str, Sequence[str]], ask) -> dict[str, str]:
    """``{gloss: merged description}``; ``ask(system, prompt) -> reply`` is the summarising model. A gloss with one
    description keeps it; an empty merge falls back to the first description (counted by the caller)."""
    out = {}
    for gloss, descs in sorted(per_gloss.items()):
        descs = [d for d in descs if d]
        if not descs:
            continue
        if len(descs) == 1:
            out[gloss] = descs[0]
            continue
        merged = clean_description(ask(SUMMARISE_SYSTEM, summarise_prompt(gloss, descs)))
        out[gloss] = merged or descs[0]
    return out


def generated_lexicon(descriptions: Mapping[str, str], model: str, language: str = "ase") -> list[Entry]:
    return [Entry(gloss=g, description=d, language=language, source=f"vlm:{model}")
            for g, d in sorted(descriptions.items())]  # fmt: skip


def quality_lexicon(generated: Sequence[Entry], reference: Sequence[Entry]) -> tuple[list[Entry], dict[str, int]]:
    """The quality protocol's training lexicon: every generated entry, and the reference entries of the glosses
    that have no generated one (the unseen classes keep their reference descriptions)."""
    have = {e.gloss.casefold() for e in generated}
    kept = [e for e in reference if e.gloss.casefold() not in have]
    counts = {"generated": len(generated), "reference": len(kept), "replaced": len(reference) - len(kept)}
    return [*generated, *kept], counts
