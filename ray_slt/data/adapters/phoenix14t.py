"""RWTH-PHOENIX-Weather 2014 T (DGS -> German), from its official corpus CSVs.

Official layout (``PHOENIX-2014-T-release-v3/PHOENIX-2014-T``)::

    annotations/manual/PHOENIX-2014-T.{train,dev,test}.corpus.csv   # '|'-separated:
        name|video|start|end|speaker|orth|translation
    features/fullFrame-210x260px/{train,dev,test}/{name}/1/*.png    # 25 fps frames

``--root`` may point at the release directory or directly at the folder holding the corpus CSVs. Frame counts
are read from ``PHOENIX-2014-T.{split}.num_frames.csv`` (``name,num_frames``) when such a file is present
beside the corpus CSVs; the release itself does not state them (count the PNGs to make one).
"""

from __future__ import annotations

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.data.adapters.base import (
    Adapter,
    ErrorReport,
    find_file,
    non_empty,
    parse_int,
    read_table,
    record,
    sample_id,
)
from ray_slt.data.manifest import make_row
from ray_slt.errors import DataError

ANNOTATION_DIRS = (
    "",
    "annotations/manual",
    "PHOENIX-2014-T/annotations/manual",
    "PHOENIX-2014-T-release-v3/PHOENIX-2014-T/annotations/manual",
)
COLUMNS = ("name", "video", "start", "end", "speaker", "orth", "translation")


class PhoenixOptions(Schema):
    frames_dir: str = "features/fullFrame-210x260px"
    """Directory (relative to the root that holds ``annotations/``) with one frame folder per split."""


class Phoenix14T(Adapter):
    name = "phoenix14t"
    description = "RWTH-PHOENIX-Weather 2014 T: German Sign Language weather forecasts -> German"
    sign_language = "gsg"
    spoken_language = "de"
    Options = PhoenixOptions

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        rows = report.rows()
        for split in splits:
            corpus = find_file(
                root,
                [
                    storage.join(d, f"PHOENIX-2014-T.{split}.corpus.csv") if d else f"PHOENIX-2014-T.{split}.corpus.csv"
                    for d in ANNOTATION_DIRS
                ],
                f"PHOENIX-2014-T {split} corpus CSV",
            )
            ann_dir = storage.parent(corpus)
            release = _release_root(ann_dir)
            frames = self._frame_counts(storage.join(ann_dir, f"PHOENIX-2014-T.{split}.num_frames.csv"))
            for line, cols, fields in read_table(corpus, "|", COLUMNS):
                with report.guard(corpus, line):
                    rec = record(cols, fields)
                    name = non_empty(rec, "name")
                    video = non_empty(rec, "video")
                    start, end = parse_int(rec["start"], "start"), parse_int(rec["end"], "end")
                    span = {}
                    if start != -1 or end != -1:
                        if start < 0 or end < start:
                            raise DataError(f"start/end {start}/{end} are not a frame span (or -1/-1)")
                        span = {"start_frame": start, "end_frame": end + 1}
                    frame_dir = video[: -len("/*.png")] if video.endswith("/*.png") else video
                    rows.append(
                        make_row(
                            sample_id=sample_id(self.name, name),
                            dataset=self.name,
                            split=split,
                            sign_language=self.sign_language,
                            spoken_language=self.spoken_language,
                            video_uri=storage.join(release, options.frames_dir, split, frame_dir),
                            fps=25.0,
                            num_frames=frames.get(name),
                            text=non_empty(rec, "translation"),
                            gloss=non_empty(rec, "orth"),
                            signer=rec["speaker"].strip() or None,
                            meta={"name": name},
                            **span,
                        )
                    )
        return rows

    @staticmethod
    def _frame_counts(uri: str) -> dict[str, int]:
        if not storage.exists(uri):
            return {}
        counts = {}
        for line, cols, fields in read_table(uri, ",", ("name", "num_frames")):
            rec = record(cols, fields)
            try:
                counts[rec["name"]] = parse_int(rec["num_frames"], "num_frames")
            except DataError as e:
                raise DataError(e.reason, uri, line) from None
        return counts


def _release_root(annotation_dir: str) -> str:
    """The directory holding ``annotations/`` (and ``features/``) for an ``annotations/manual`` folder."""
    tail = "annotations/manual"
    norm = annotation_dir.rstrip("/")
    if norm.endswith(tail):
        return norm[: -len(tail)].rstrip("/") or "/"
    return norm
