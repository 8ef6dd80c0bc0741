"""iSign (Indian Sign Language -> English), from the official release table ``iSign_v1.1.csv``.

Official layout (Hugging Face dataset ``Exploration-Lab/iSign``; project page exploration-lab.github.io/iSign):
one comma-separated table ``iSign_v1.1.csv`` with columns ``uid,text`` (127,237 rows in v1.1). ``uid`` is
``{video_id}-{n}``: the n-th sentence cut from source video ``video_id`` (a YouTube id may itself end in ``-``,
as in ``FyPkQyJWsjs--100``). ``text`` is the English sentence, kept exactly as the release has it -- including the
rows whose text is empty or a placeholder: they are well-formed rows of the release, and removing them is the
cleaning step of the first paper's Appendix A (``curation.clean``, ``--clean``), which records every drop.
Columns beyond these go to ``meta``. Videos and poses ship as ``iSign-videos_v1.1.zip`` and
``iSign-poses_v1.1.zip`` whose folders hold ``{uid}.mp4`` and ``{uid}.pose`` (pose-format, MediaPipe Holistic);
``video_template`` and ``pose_template`` locate them under the root (null: that part is not downloaded).

**Splits.** The release defines no train/dev/test split. Rows are never given a split silently:

- ``split: train`` (the default), ``dev`` or ``test`` puts *every* row in that split;
- ``split: seeded`` assigns each *source video* (so all its sentences together, which keeps near-duplicate
  neighbouring sentences out of the evaluation splits) by :func:`seeded_split`: the first 16 hex digits of
  ``sha256("{seed}:{video_id}")`` read as a fraction u in [0, 1); ``u < test_fraction`` -> test,
  ``u < test_fraction + dev_fraction`` -> dev, else train. It depends only on the seed and the id, not on row
  order or on which rows are present, so re-running on a filtered or extended table keeps every assignment.

The first paper's 50k selection and its 43k/3.5k/3.5k division (its Appendix A) are its own, not part of the
release (see ``curation.rare_word_subset`` for the selection).
"""

from __future__ import annotations

import csv
import hashlib
import re
from typing import Literal

from pydantic import Field, model_validator

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.data.adapters.base import (
    Adapter,
    ErrorReport,
    find_file,
    non_empty,
    read_table,
    record,
    render_template,
    sample_id,
)
from ray_slt.data.manifest import make_row

COLUMNS = ("uid", "text")
TABLE_CANDIDATES = ("iSign_v1.1.csv", "data/iSign_v1.1.csv")
_UID = re.compile(r"^(.+)-(\d+)$")


class ISignOptions(Schema):
    split: Literal["train", "dev", "test", "seeded"] = "train"
    """The split of every row, or ``seeded``: a seeded split by source video (see the module docstring)."""
    dev_fraction: float = Field(0.05, ge=0, lt=1)
    """With ``split: seeded``: share of source videos in dev."""
    test_fraction: float = Field(0.05, ge=0, lt=1)
    """With ``split: seeded``: share of source videos in test."""
    seed: int = 0
    """With ``split: seeded``: the seed of the split function."""
    table: str | None = None
    """The release table relative to the root. Default: ``iSign_v1.1.csv`` or ``data/iSign_v1.1.csv``."""
    video_template: str | None = "iSign-videos_v1.1/{uid}.mp4"
    """A sample's video relative to the root; fields {uid}, {video_id}. Null: no videos."""
    pose_template: str | None = "iSign-poses_v1.1/{uid}.pose"
    """A sample's shipped .pose file relative to the root; fields {uid}, {video_id}. Null: no poses."""

    @model_validator(mode="after")
    def _fractions(self) -> ISignOptions:
        if self.dev_fraction + self.test_fraction >= 1:
            raise ValueError("dev_fraction + test_fraction must be below 1")
        return self


def video_id_of(uid: str) -> str:
    """The source video of a uid ``{video_id}-{n}`` (the uid itself when it has no ``-{n}`` suffix)."""
    m = _UID.match(uid)
    return m.group(1) if m else uid


def seeded_split(video_id: str, seed: int, dev_fraction: float, test_fraction: float) -> str:
    """Deterministic split of a source video: a hash of seed and id mapped to [0, 1) (see module docstring)."""
    digest = hashlib.sha256(f"{seed}:{video_id}".encode()).hexdigest()
    u = int(digest[:16], 16) / 16**16
    if u < test_fraction:
        return "test"
    if u < test_fraction + dev_fraction:
        return "dev"
    return "train"


class ISign(Adapter):
    name = "isign"
    description = "iSign: Indian Sign Language -> English (127k sentence videos; no official splits)"
    sign_language = "ins"
    spoken_language = "en"
    Options = ISignOptions

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        table = find_file(root, [options.table] if options.table else list(TABLE_CANDIDATES), "iSign table")
        wanted = set(splits)
        rows = report.rows()
        for line, cols, fields in read_table(table, ",", COLUMNS, quoting=csv.QUOTE_MINIMAL):
            with report.guard(table, line):
                rec = record(cols, fields)
                uid = non_empty(rec, "uid")
                video_id = video_id_of(uid)
                if options.split == "seeded":
                    split = seeded_split(video_id, options.seed, options.dev_fraction, options.test_fraction)
                else:
                    split = options.split
                if split not in wanted:
                    continue
                media = {}
                for column, template in (("video_uri", options.video_template), ("pose_uri", options.pose_template)):
                    if template is not None:
                        option = column.replace("_uri", "_template")
                        path = render_template(template, option, uid=uid, video_id=video_id)
                        media[column] = storage.join(root, path)
                meta = {"uid": uid, "video_id": video_id, "split_rule": options.split}
                if options.split == "seeded":
                    meta["split_seed"] = options.seed
                meta.update({c: v for c, v in rec.items() if c not in COLUMNS})
                rows.append(
                    make_row(
                        sample_id=sample_id(self.name, uid),
                        dataset=self.name,
                        split=split,
                        sign_language=self.sign_language,
                        spoken_language=self.spoken_language,
                        text=rec["text"],
                        meta=meta,
                        **media,
                    )
                )
        return rows
