"""Curation over manifests: iSign-style cleaning and the rare-word-aware subset of the first paper (App. A).

Both functions return the kept table *and* a record of what was removed or why rows were chosen, so nothing
disappears silently.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from ray_slt.data import poses
from ray_slt.data.text import get_tokenizer, tokenizer_name_for
from ray_slt.errors import RaySltError

_PLACEHOLDERS = {"nan", "none", "null", "n/a", "#name?", "#value!"}


def text_problem(text: str | None) -> str | None:
    """Why a sentence is unusable as a translation target, or None if it is fine."""
    if text is None or not text.strip():
        return "empty text"
    stripped = text.strip()
    if stripped.lower() in _PLACEHOLDERS:
        return f"placeholder text {stripped!r}"
    if "\ufffd" in stripped:
        return "text contains U+FFFD (a decoding error upstream)"
    if any(unicodedata.category(c) == "Cc" and not c.isspace() for c in stripped):
        return "text contains control characters"
    if not any(c.isalnum() for c in stripped):
        return "text has no letters or digits"
    return None


def clean(
    table: pa.Table,
    check_poses: bool = True,
    pose_of: Callable[[dict], str | None] | None = None,
    progress: bool = False,
) -> tuple[pa.Table, list[dict]]:
    """Drop samples with empty/invalid text and, where a pose exists, samples whose pose shows no person.

    ``pose_of(row)`` gives the pose of a row (default: its ``pose_uri``; after extraction, pass a lookup into
    the feature store). Returns the kept rows and one ``{sample_id, reason}`` record per dropped row.
    """
    pose_of = pose_of or (lambda row: row.get("pose_uri"))
    keep, dropped = [], []
    rows = table.to_pylist()
    for i, row in enumerate(tqdm(rows, desc="cleaning", unit="sample", disable=not progress)):
        reason = text_problem(row["text"])
        if reason is None and check_poses:
            uri = pose_of(row)
            if uri is not None and not poses.has_person(poses.read_pose(uri)):
                reason = "pose shows no person"
        if reason is None:
            keep.append(i)
        else:
            dropped.append({"sample_id": row["sample_id"], "split": row["split"], "reason": reason})
    return table.take(pa.array(keep, pa.int64())), dropped


def rare_word_subset(
    table: pa.Table,
    rare: int,
    rest: int,
    threshold: int = 10,
    seed: int = 0,
    tokenizer: str | None = None,
) -> tuple[pa.Table, dict]:
    """The vocabulary-aware subset of the first paper's Appendix A.

    Word frequencies are counted over the table's texts; a *rare* word occurs fewer than ``threshold``
    times. Up to ``rare`` samples containing at least one rare word are drawn first, then ``rest`` more from
    all remaining samples, uniformly at random with ``seed``. The subset keeps the table's row order.
    Returns the subset and a report (sizes, vocabulary and rare-word coverage before and after).
    """
    if rare < 0 or rest < 0:
        raise RaySltError(f"subset sizes must be non-negative (rare={rare}, rest={rest})")
    texts = table.column("text").to_pylist()
    langs = table.column("spoken_language").to_pylist()
    tok_name = tokenizer or tokenizer_name_for(langs[0] if langs else None)
    tok = get_tokenizer(tok_name)
    tokens = [tok(t) for t in texts]
    freq = Counter(w for ts in tokens for w in ts)
    rare_words = {w for w, c in freq.items() if c < threshold}
    has_rare = np.array([any(w in rare_words for w in ts) for ts in tokens], bool)

    rng = np.random.default_rng(seed)
    rare_idx = np.flatnonzero(has_rare)
    chosen_rare = rng.choice(rare_idx, size=min(rare, len(rare_idx)), replace=False) if len(rare_idx) else []
    remaining = np.setdiff1d(np.arange(len(texts)), chosen_rare)
    chosen_rest = rng.choice(remaining, size=min(rest, len(remaining)), replace=False) if len(remaining) else []
    chosen = np.sort(np.concatenate([np.asarray(chosen_rare, int), np.asarray(chosen_rest, int)]))

    kept_vocab = Counter(w for i in chosen for w in tokens[i])
    report = {
        "tokenizer": tok_name,
        "threshold": threshold,
        "seed": seed,
        "samples_before": len(texts),
        "samples_after": len(chosen),
        "with_rare_word_before": int(has_rare.sum()),
        "chosen_with_rare_word": len(chosen_rare),
        "chosen_rest": len(chosen_rest),
        "types_before": len(freq),
        "types_after": len(kept_vocab),
        "rare_types_before": len(rare_words),
        "rare_types_after": sum(1 for w in rare_words if w in kept_vocab),
    }
    return table.take(pa.array(chosen, pa.int64())), report
