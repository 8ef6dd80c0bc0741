"""Zero-shot VLM recognition on WLASL (paper 3; SPEC A.1, A.2): the question sets.

**Open set**: the official WLASL300 test split by default: the first 300 glosses of ``WLASL_v0.3.json`` in JSON
order and their instances with ``split == "test"`` (668 videos), shuffled with seed 42 as the authors evaluate
them. Any subset (100/300/1000/2000) and splits by option. The candidate list of the ``candidates`` prompt level is
the subset's glosses in JSON order, stored in the file's header.

**Binary matching**: for each gloss that has a description in the lexicon (matched onto the corpus's glosses as
the recognition issue's lexicons are, :func:`ray_slt.data.lexicon.corpus_lexicon`), the positives are its
videos in the chosen splits and the negatives the same number of videos of other glosses, drawn at random with
``seed`` (42, the authors') from the same pool; each question asks whether the video shows the gloss.

``require_video`` (default) keeps only instances whose video file exists (the official download leaves some
missing; the count left out is in the header), so a question set is always answerable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ray_slt import storage
from ray_slt.data.lexicon import Entry, corpus_lexicon
from ray_slt.errors import DataError
from ray_slt.vlmbench.questions import video_ref


def wlasl_rows(root: str, subset: int = 300, splits: Sequence[str] = ("test",), require_video: bool = True
               ) -> tuple[list[dict[str, Any]], list[str], int]:  # fmt: skip
    """``(rows, candidate glosses in JSON order, instances left out for a missing video)``."""
    from ray_slt.data.adapters.base import ErrorReport, find_file
    from ray_slt.data.adapters.wlasl import Wlasl, WlaslOptions
    from ray_slt.data.lexicon import corpus_glosses

    root = storage.normalize(root)  # absolute: the questions' video paths must not depend on the working directory
    adapter = Wlasl()
    rows = adapter.read(root, WlaslOptions(subset=subset), ErrorReport(skip_bad=False), splits=tuple(splits))
    candidates = corpus_glosses(find_file(root, ["WLASL_v0.3.json", "start_kit/WLASL_v0.3.json"], "WLASL_v0.3.json"))
    candidates = candidates[:subset]
    missing = 0
    if require_video:
        kept = [r for r in rows if storage.exists(r["video_uri"])]
        missing = len(rows) - len(kept)
        rows = kept
    if not rows:
        raise DataError(f"no WLASL{subset} instances with videos in splits {list(splits)}", root)
    return rows, candidates, missing


def open_questions(rows: Sequence[dict[str, Any]], seed: int = 42) -> list[dict[str, Any]]:
    """One open-set question per video, in the authors' evaluation order (shuffled with ``seed``)."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    return [{"qid": f"open/{r['sample_id']}", "protocol": "open", "sample_id": r["sample_id"], "gold": r["gloss"],
             "video": video_ref(r)} for r in order]  # fmt: skip


def binary_questions(rows: Sequence[dict[str, Any]], entries: Sequence[Entry], seed: int = 42
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Balanced YES/NO questions and the lexicon's coverage of the corpus's glosses."""
    glosses = list(dict.fromkeys(r["gloss"] for r in rows))
    lexicon, coverage = corpus_lexicon(glosses, entries)
    described = {e.gloss: e.description for e in lexicon}
    rng = random.Random(seed)
    out = []
    for gloss in glosses:
        if gloss not in described:
            continue
        pos = [r for r in rows if r["gloss"] == gloss]
        others = [r for r in rows if r["gloss"] != gloss]
        neg = rng.sample(others, min(len(pos), len(others)))
        for label, group in ((True, pos), (False, neg)):
            for r in group:
                out.append({"qid": f"binary/{gloss}/{r['sample_id']}", "protocol": "binary",
                            "sample_id": r["sample_id"], "gold": gloss, "label": label, "shown": r["gloss"],
                            "description": described[gloss], "video": video_ref(r)})  # fmt: skip
    if not out:
        raise DataError("no gloss of the corpus has a description in the lexicon: no binary questions")
    return out, coverage.summary()
