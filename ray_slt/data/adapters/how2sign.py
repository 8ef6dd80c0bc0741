"""How2Sign (ASL -> English), from its official realigned sentence tables.

Official tables: ``how2sign_realigned_{train,val,test}.csv``, tab-separated with CSV quoting, columns
``VIDEO_ID VIDEO_NAME SENTENCE_ID SENTENCE_NAME START_REALIGNED END_REALIGNED SENTENCE``. A table re-saved
comma-separated (some mirrors did) is recognised from its header. ``val`` is recorded as the ``dev`` split.

Videos: with ``clips: true`` (default) each sentence is a pre-cut clip ``{SENTENCE_NAME}.mp4`` found through
``video_template``. The realigned times refer to the *full* video, not to the clip, and do not match clip
lengths, so they are kept in ``meta`` only and the sentence is used as the clip's label. With ``clips: false``
the template points at full videos (``{VIDEO_NAME}``) and the realigned times become ``start_s``/``end_s``.
"""

from __future__ import annotations

import csv

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.data.adapters.base import (
    Adapter,
    ErrorReport,
    non_empty,
    parse_float,
    read_table,
    record,
    sample_id,
)
from ray_slt.data.manifest import canonical_split, make_row
from ray_slt.errors import DataError

COLUMNS = (
    "VIDEO_ID",
    "VIDEO_NAME",
    "SENTENCE_ID",
    "SENTENCE_NAME",
    "START_REALIGNED",
    "END_REALIGNED",
    "SENTENCE",
)
NATIVE_SPLITS = {"train": "train", "dev": "val", "test": "test"}


class How2SignOptions(Schema):
    clips: bool = True
    """True: one pre-cut clip per sentence. False: full videos cut by the realigned times."""
    video_template: str | None = None
    """Path of a sample's video relative to the root; fields {split} (train/val/test), {sentence_name},
    {video_name}, {video_id}. Default: ``videos/{sentence_name}.mp4`` for clips,
    ``videos/{video_name}.mp4`` for full videos."""


class How2Sign(Adapter):
    name = "how2sign"
    description = "How2Sign: instructional videos in ASL -> English (realigned sentences)"
    sign_language = "ase"
    spoken_language = "en"
    Options = How2SignOptions

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        template = options.video_template or (
            "videos/{sentence_name}.mp4" if options.clips else "videos/{video_name}.mp4"
        )
        rows = report.rows()
        for split in splits:
            native = NATIVE_SPLITS[split]
            found = storage.glob(storage.join(root, f"how2sign_realigned_{native}*.csv"))
            if not found:
                raise DataError(f"How2Sign {native} table not found (how2sign_realigned_{native}.csv)", root)
            table = found[0]
            # the header line alone decides (a bad byte further down is that row's problem, not the file's)
            head = storage.read_bytes(table).split(b"\n", 1)[0].decode("utf-8", errors="replace")
            delimiter = "\t" if "\t" in head else ","
            for line, cols, fields in read_table(table, delimiter, COLUMNS, quoting=csv.QUOTE_MINIMAL):
                with report.guard(table, line):
                    rec = record(cols, fields)
                    sentence_name = non_empty(rec, "SENTENCE_NAME")
                    start = parse_float(rec["START_REALIGNED"], "START_REALIGNED")
                    end = parse_float(rec["END_REALIGNED"], "END_REALIGNED")
                    if start < 0 or end <= start:
                        raise DataError(f"realigned span {start}-{end} s is empty or negative")
                    fields_ = {
                        "split": native,
                        "sentence_name": sentence_name,
                        "video_name": non_empty(rec, "VIDEO_NAME"),
                        "video_id": non_empty(rec, "VIDEO_ID"),
                    }
                    span = {} if options.clips else {"start_s": start, "end_s": end}
                    rows.append(
                        make_row(
                            sample_id=sample_id(self.name, sentence_name),
                            dataset=self.name,
                            split=canonical_split(native),
                            sign_language=self.sign_language,
                            spoken_language=self.spoken_language,
                            video_uri=storage.join(root, template.format(**fields_)),
                            text=non_empty(rec, "SENTENCE"),
                            meta={
                                "video_id": fields_["video_id"],
                                "video_name": fields_["video_name"],
                                "sentence_id": rec["SENTENCE_ID"],
                                "start_realigned": start,
                                "end_realigned": end,
                            },
                            **span,
                        )
                    )
        return rows
