"""The prompts of the VLM benchmarks, by protocol and variant.

AGP's ``describe`` (paper 4's perceive step, one variant ``dictionary``) lives in :mod:`.agp`.

Zero-shot recognition (paper 3, SPEC A.1): one system instruction for the open-set task (an expert gloss
annotator who answers with one English gloss and nothing else) and three user-prompt levels that narrow the
answer space step by step: ``open`` (nothing more), ``dataset`` (the glosses come from WLASL300) and
``candidates`` (the full candidate list in the prompt). Binary matching (SPEC A.1): "describe, compare,
conclude", ending in YES or NO, in three variants: ``skeptical`` (argue first why the description might *not*
fit), ``nonskeptical`` and ``nodesc`` (only the gloss is named, no description).

LexSign-Bench (paper 4, SPEC B.2): two levels (``subunit``: the options are lexical descriptions; ``gloss``: the
options are gloss names), each in three wordings, ``original``, ``simple`` and ``complex``; the recommended
score is the mean over the three.

The wording is this project's, following the structure and constraints the papers state; a run records the
variant names and the prompt hash, so results name exactly what was asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt.errors import ConfigError

OPEN_SYSTEM = (
    "You are an expert annotator of American Sign Language (ASL) glosses. Watch the ASL video and name the sign "
    "with the EXACT single English gloss. Output only the gloss: one word or a short fixed phrase, with no "
    "explanation and no description of the person (never answers like 'woman signing'). Examples of glosses: "
    "BOOK, RUN, HAPPY, WATER, SCHOOL, COMPUTER, DANCE."
)
OPEN_USER = "What is the ASL gloss of this sign? Output only the single English word or phrase."
OPEN_LEVELS = ("open", "dataset", "candidates")

BINARY_SYSTEM = {
    "skeptical": (
        "You are an expert in American Sign Language. You will see a video of one sign and a written description "
        "of a sign. First describe the handshape, location, palm orientation and movement of both hands in the "
        "video. Then argue why the video might NOT match the description. Then compare carefully and conclude. "
        "End your answer with a single word: YES if the video shows the described sign, otherwise NO."
    ),
    "nonskeptical": (
        "You are an expert in American Sign Language. You will see a video of one sign and a written description "
        "of a sign. Describe the handshape, location, palm orientation and movement of both hands in the video, "
        "compare them with the description, and conclude. End your answer with a single word: YES if the video "
        "shows the described sign, otherwise NO."
    ),
    "nodesc": (
        "You are an expert in American Sign Language. You will see a video of one sign. Describe the handshape, "
        "location, palm orientation and movement of both hands, then decide whether it is the sign that is named. "
        "End your answer with a single word: YES or NO."
    ),
}
BINARY_VARIANTS = tuple(BINARY_SYSTEM)

MCQ_PROMPTS = {
    ("subunit", "original"): (
        "In the middle of the input video, a person is performing American Sign Language (ASL). Each of the "
        "following options describes how a sign is performed, possibly with fingerspelled letters. Select the "
        "option that best matches the sign in the video.\n{options}\nRespond only with the selected option: "
        "A, B, C or D."
    ),
    ("subunit", "simple"): ("Which description matches the sign in the video?\n{options}\nAnswer with A, B, C or D."),
    ("subunit", "complex"): (
        "The video shows a signer producing one American Sign Language (ASL) sign near its temporal middle. Look "
        "at the handshape of each hand, where the hands are relative to the body, which way the palms face and "
        "how the hands move. Each option below is a dictionary description of a sign in terms of these "
        "parameters. Exactly one option describes the sign performed.\n{options}\nRespond only with the letter "
        "of that option: A, B, C or D."
    ),
    ("gloss", "original"): (
        "In the middle of the input video, a person is performing American Sign Language (ASL). Choose the sign "
        "being performed from the following options:\n{options}\nRespond only with the selected option: A, B, C "
        "or D."
    ),
    ("gloss", "simple"): ("Which ASL sign is shown in the video?\n{options}\nAnswer with A, B, C or D."),
    ("gloss", "complex"): (
        "The video shows a signer producing one American Sign Language (ASL) sign near its temporal middle. "
        "Attend to the handshapes, locations, palm orientations and movements, and to any fingerspelling. Which "
        "English gloss names the sign performed?\n{options}\nRespond only with the letter of the correct option: "
        "A, B, C or D."
    ),
}
MCQ_VARIANTS = ("original", "simple", "complex")

VARIANTS = {"open": OPEN_LEVELS, "binary": BINARY_VARIANTS, "mcq": MCQ_VARIANTS, "describe": ("dictionary",)}


def check_variants(protocol: str, variants: Sequence[str]) -> list[str]:
    known = VARIANTS.get(protocol)
    if known is None:
        raise ConfigError(f"unknown protocol {protocol!r}; use one of {', '.join(VARIANTS)}")
    bad = [v for v in variants if v not in known]
    if bad:
        raise ConfigError(f"protocol {protocol}: unknown prompt variant(s) {bad}; use {', '.join(known)}")
    return list(variants)


def letter_options(options: Sequence[str]) -> str:
    return "\n".join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(options))


def render(
    question: Mapping[str, Any], variant: str, candidates: Sequence[str] = (), examples: Sequence[Mapping] = ()
) -> tuple[str | None, str]:
    """``(system, user prompt)`` of a question (``protocol`` open / binary / mcq / describe) in a prompt variant;
    ``candidates`` for the open set's candidate level, ``examples`` (gloss, description) for AGP's describe."""
    protocol = question["protocol"]
    check_variants(protocol, [variant])
    if protocol == "describe":
        from ray_slt.vlmbench.agp import DESCRIBE_SYSTEM, describe_prompt

        return DESCRIBE_SYSTEM, describe_prompt(examples)
    if protocol == "open":
        user = OPEN_USER
        if variant == "dataset":
            user += " The sign is one of the glosses of the WLASL300 dataset."
        elif variant == "candidates":
            if not candidates:
                raise ConfigError("the 'candidates' level needs the candidate gloss list (the question file's)")
            user += " The sign is exactly one of these glosses: " + ", ".join(candidates) + "."
        return OPEN_SYSTEM, user
    if protocol == "binary":
        gloss = str(question["gold"]).upper()
        if variant == "nodesc":
            return BINARY_SYSTEM[variant], f"Is this sign {gloss}?"
        return BINARY_SYSTEM[
            variant
        ], f"Description of the sign {gloss}: {question['description']}\nIs this sign {gloss}?"
    template = MCQ_PROMPTS[(question["level"], variant)]
    return None, template.format(options=letter_options(question["options"]))


def prompt_hash(protocol: str, variants: Sequence[str]) -> str:
    """A short hash of the prompt texts a run used (changes whenever a wording changes)."""
    h = hashlib.sha256(protocol.encode())
    for v in variants:
        if protocol == "open":
            h.update((OPEN_SYSTEM + OPEN_USER + v).encode())
        elif protocol == "binary":
            h.update(BINARY_SYSTEM[v].encode())
        elif protocol == "describe":
            from ray_slt.vlmbench.agp import DESCRIBE_SYSTEM

            h.update(DESCRIBE_SYSTEM.encode())
        else:
            h.update((MCQ_PROMPTS[("subunit", v)] + MCQ_PROMPTS[("gloss", v)]).encode())
    return h.hexdigest()[:12]
