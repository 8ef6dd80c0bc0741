"""The LexSign-Bench builder (paper 4; SPEC B.2 "LexSign-Bench").

From a corpus (manifest rows with a gloss and a video), a lexicon with ASL-LEX iconicity types (the recognition
issue's lexicon format; ASL-LEX 2.0 gives them) and optionally a recognizer's confusion matrix:

1. **Glosses**: the corpus glosses that have a lexicon entry with an iconicity type, ``count`` per type
   (``Arbitrary``, ``Perceptual``, ``Pantomimic``, ``Both``; the paper: 75 each), drawn with ``seed`` from the
   sorted candidates; a type with fewer candidates contributes all it has (the header records the numbers).
2. **Questions**: two per video of a selected gloss: ``subunit`` (the options are lexical descriptions) and
   ``gloss`` (the options are gloss names), 4 options each.
3. **Distractors** (3 per gloss, the same for each of its videos and at both levels): the glosses a recognizer confuses
   most with the gold one (``confusion.csv`` of ``ray-slt eval`` with a recognition protocol: ``label, predicted,
   count``), then, to fill up or without a matrix, the phonologically most similar ones (the number of equal
   coded parameters in the entries' ``fields``: handshape, selected fingers, flexion, locations, movement, sign
   type, ...), ties broken at random with ``seed``. Candidates are all corpus glosses with a lexicon entry (not
   only the selected 300), never the gold gloss, and never one whose description text equals the gold's.
4. **Answer letters**: per level, the positions of the correct option cycle through A-D and are then shuffled
   with ``seed``, so each letter is correct for a quarter of the questions (counts differ by at most one).

The file is a question file (:mod:`.questions`): versioned, seeded, content-hashed.
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt import storage
from ray_slt.data.lexicon import Entry, corpus_lexicon
from ray_slt.errors import DataError
from ray_slt.vlmbench.questions import video_ref

ICONICITY_TYPES = ("Arbitrary", "Perceptual", "Pantomimic", "Both")
PHONOLOGY = ("Handshape", "SelectedFingers", "Flexion", "ThumbPosition", "MajorLocation", "MinorLocation",
             "Movement", "RepeatedMovement", "SignType", "NonDominantHandshape", "Contact")  # fmt: skip


def read_confusion(uri: str) -> dict[str, Counter]:
    """``{gold: Counter(predicted -> count)}`` from a ``label,predicted,count`` table."""
    text = storage.read_text(uri)
    reader = csv.DictReader(io.StringIO(text))
    if not {"label", "predicted", "count"} <= set(reader.fieldnames or []):
        raise DataError("a confusion table needs the columns label, predicted, count", uri, 1)
    out: dict[str, Counter] = {}
    for n, rec in enumerate(reader, 2):
        try:
            count = int(rec["count"])
        except (TypeError, ValueError):
            raise DataError(f"count {rec['count']!r} is not an integer", uri, n) from None
        if rec["predicted"] and rec["predicted"] != rec["label"]:
            out.setdefault(rec["label"], Counter())[rec["predicted"]] += count
    return out


def phonological_similarity(a: Entry, b: Entry) -> int:
    """How many coded parameters two entries share (both coded, equal values)."""
    return sum(1 for k in PHONOLOGY if k in a.fields and k in b.fields and a.fields[k] == b.fields[k])


def distractors(gold: str, pool: Mapping[str, Entry], confusion: Mapping[str, Counter] | None, rng: random.Random,
                k: int = 3) -> list[str]:  # fmt: skip
    """The ``k`` hardest distractor glosses of ``gold`` (see the module docstring, item 3)."""
    target = pool[gold]
    ok = [g for g in sorted(pool) if g != gold and pool[g].description.strip() != target.description.strip()]
    tiebreak = {g: rng.random() for g in ok}
    confused = (confusion or {}).get(gold, Counter())
    ranked = sorted(ok, key=lambda g: (-confused.get(g, 0), -phonological_similarity(target, pool[g]), tiebreak[g]))
    chosen: list[str] = []
    for g in ranked:
        desc = pool[g].description.strip()
        if all(desc != pool[c].description.strip() for c in chosen):
            chosen.append(g)
        if len(chosen) == k:
            break
    if len(chosen) < k:
        raise DataError(f"gloss {gold!r}: fewer than {k} distractors with distinct descriptions in the lexicon")
    return chosen


def balanced_positions(n: int, rng: random.Random, k: int = 4) -> list[int]:
    positions = [i % k for i in range(n)]
    rng.shuffle(positions)
    return positions


def build_lexsign(
    rows: Sequence[Mapping[str, Any]],
    entries: Sequence[Entry],
    count: int = 75,
    seed: int = 0,
    confusion: Mapping[str, Counter] | None = None,
    vocabulary: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(questions, header params)`` of a LexSign-Bench question set (see the module docstring). ``vocabulary``
    adds glosses without videos to the distractor pool (e.g. all 2,000 WLASL glosses)."""
    rows = [r for r in rows if r.get("gloss")]
    glosses = list(dict.fromkeys([*(r["gloss"] for r in rows), *vocabulary]))
    lexicon, coverage = corpus_lexicon(glosses, entries)
    pool = {e.gloss: e for e in lexicon}
    rng = random.Random(seed)
    selected: dict[str, list[str]] = {}
    for t in ICONICITY_TYPES:
        with_video = {r["gloss"] for r in rows}
        cands = sorted(
            g for g, e in pool.items() if g in with_video and (e.iconicity_type or "").strip().lower() == t.lower()
        )
        rng.shuffle(cands)
        selected[t] = sorted(cands[:count])
    chosen = {g: t for t, gs in selected.items() for g in gs}
    if not chosen:
        raise DataError("no corpus gloss has a lexicon entry with an iconicity type (ASL-LEX's IconicityType)")
    videos = sorted((r for r in rows if r["gloss"] in chosen), key=lambda r: (r["gloss"], r["sample_id"]))
    by_gloss = {g: distractors(g, pool, confusion, rng) for g in sorted(chosen)}
    wrong = {r["sample_id"]: by_gloss[r["gloss"]] for r in videos}
    questions: list[dict[str, Any]] = []
    for level in ("subunit", "gloss"):
        positions = balanced_positions(len(videos), rng)
        for r, pos in zip(videos, positions):
            gold, others = r["gloss"], wrong[r["sample_id"]]
            names = list(others)
            names.insert(pos, gold)
            options = [pool[g].description if level == "subunit" else g for g in names]
            questions.append({
                "qid": f"lexsign/{r['sample_id']}/{level}", "protocol": "mcq", "level": level,
                "sample_id": r["sample_id"], "gold": gold, "iconicity_type": chosen[gold], "options": options,
                "option_glosses": names, "answer": "ABCD"[pos], "distractors": others, "video": video_ref(r),
            })  # fmt: skip
    params = {
        "count_per_type": count,
        "selected": {t: len(gs) for t, gs in selected.items()},
        "videos": len(videos),
        "distractors": "confusion+phonology" if confusion else "phonology",
        "coverage": coverage.summary(),
    }
    return questions, params
