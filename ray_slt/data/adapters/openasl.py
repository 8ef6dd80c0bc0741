"""OpenASL (ASL -> English), from the official release table ``data/openasl-v1.0.tsv``.

Official layout (github.com/chevalierNoir/OpenASL): one tab-separated table for all splits, read by the release's
own scripts with ``pandas.read_csv(sep="\\t")`` (so standard double-quote quoting), columns::

    vid  yid  start  end  raw-text  tokenized-text  gloss  split

``vid`` is the clip id (``{yid}-{start}-{end}``), ``yid`` the YouTube id of the source video, ``start``/``end``
the clip's span in that video as ``HH:MM:SS.mmm``, ``raw-text`` the English sentence, ``tokenized-text`` a
lower-cased tokenised copy of it, ``gloss`` English-word glosses (filled for dev/test rows only) and ``split``
one of ``train``/``valid``/``test`` (``valid`` is recorded as ``dev``). The manifest's text is ``raw-text``
exactly as the release has it; ``tokenized-text`` and any column beyond these go to ``meta``.

Videos: ``prep/download.py`` saves each source video as ``{dest}/{yid}.mp4`` (the README's ``raw-video``) and
``prep/crop_video.py`` writes one cropped 224x224 clip per sentence as ``{output}/{vid}.mp4`` with every ``:``
replaced by ``%`` (the README's ``video-clip``). With ``clips: true`` (default) ``video_template`` points at those
clips (field ``{clip}`` is the clip file stem, ``{vid}`` the raw id); the clip *is* the span, so the source times
stay in ``meta``. With ``clips: false`` the template points at the source videos and the span becomes
``start_s``/``end_s``. ``data/bbox-v1.0.json`` (``vid -> [x0, y0, x1, y1]`` normalised by width and height), when
present beside the table, is copied into ``meta.bbox_norm``.
"""

from __future__ import annotations

import csv
import json
import re

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
from ray_slt.data.manifest import canonical_split, make_row
from ray_slt.errors import DataError

COLUMNS = ("vid", "yid", "start", "end", "raw-text", "tokenized-text", "gloss", "split")
TABLE_CANDIDATES = ("openasl-v1.0.tsv", "data/openasl-v1.0.tsv")
BBOX_FILE = "bbox-v1.0.json"
_TIME = re.compile(r"^(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)$")


class OpenAslOptions(Schema):
    clips: bool = True
    """True: one pre-cut clip per sentence (prep/crop_video.py). False: source videos cut by start/end."""
    video_template: str | None = None
    """Path of a sample's video relative to the root; fields {clip} (vid with ':' -> '%', as crop_video.py names
    clips), {vid}, {yid}, {split} (train/valid/test). Default: ``video-clip/{clip}.mp4`` for clips,
    ``raw-video/{yid}.mp4`` for source videos."""
    table: str | None = None
    """The release table relative to the root. Default: ``openasl-v1.0.tsv`` or ``data/openasl-v1.0.tsv``."""


def parse_timestamp(value: str, column: str) -> float:
    """``HH:MM:SS.mmm`` (the release's time format) -> seconds."""
    m = _TIME.match(str(value).strip())
    if not m:
        raise DataError(f"{column} {value!r} is not a HH:MM:SS.mmm time")
    hours, minutes, seconds = m.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def clip_stem(vid: str) -> str:
    """The file stem prep/crop_video.py gives a clip: the vid with every ':' replaced by '%'."""
    return vid.replace(":", "%")


class OpenAsl(Adapter):
    name = "openasl"
    description = "OpenASL: open-domain ASL from online videos -> English (98k sentence clips)"
    sign_language = "ase"
    spoken_language = "en"
    Options = OpenAslOptions

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        table = find_file(root, [options.table] if options.table else list(TABLE_CANDIDATES), "OpenASL table")
        template = options.video_template or ("video-clip/{clip}.mp4" if options.clips else "raw-video/{yid}.mp4")
        bboxes = self._bboxes(storage.join(storage.parent(table), BBOX_FILE))
        wanted = set(splits)
        rows = report.rows()
        for line, cols, fields in read_table(table, "\t", COLUMNS, quoting=csv.QUOTE_MINIMAL):
            with report.guard(table, line):
                rec = record(cols, fields)
                native = non_empty(rec, "split")
                split = canonical_split(native)
                if split not in wanted:
                    continue
                vid, yid = non_empty(rec, "vid"), non_empty(rec, "yid")
                start = parse_timestamp(rec["start"], "start")
                end = parse_timestamp(rec["end"], "end")
                if end <= start:
                    raise DataError(f"span {rec['start']}-{rec['end']} is empty or reversed")
                text = rec["raw-text"]
                if not text.strip():
                    raise DataError("empty 'raw-text'")
                meta = {
                    "vid": vid,
                    "yid": yid,
                    "start": rec["start"].strip(),
                    "end": rec["end"].strip(),
                    "tokenized_text": rec["tokenized-text"],
                    "native_split": native,
                }
                if options.clips:
                    meta.update(source_start_s=start, source_end_s=end)
                if vid in bboxes:
                    meta["bbox_norm"] = _bbox(bboxes[vid], vid)
                meta.update({c: v for c, v in rec.items() if c not in COLUMNS})
                span = {} if options.clips else {"start_s": start, "end_s": end}
                video = render_template(template, "video_template", clip=clip_stem(vid), vid=vid, yid=yid, split=native)
                rows.append(
                    make_row(
                        sample_id=sample_id(self.name, vid),
                        dataset=self.name,
                        split=split,
                        sign_language=self.sign_language,
                        spoken_language=self.spoken_language,
                        video_uri=storage.join(root, video),
                        text=text,
                        gloss=rec["gloss"].strip() or None,
                        meta=meta,
                        **span,
                    )
                )
        return rows

    @staticmethod
    def _bboxes(uri: str) -> dict:
        if not storage.exists(uri):
            return {}
        try:
            data = json.loads(storage.read_text(uri))
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", uri, e.lineno) from None
        if not isinstance(data, dict):
            raise DataError("expected a JSON object mapping vid -> [x0, y0, x1, y1]", uri)
        return data


def _bbox(value, vid: str) -> list[float]:
    ok = (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if not ok:
        raise DataError(f"{BBOX_FILE} entry for {vid!r} is not [x0, y0, x1, y1]: {value!r}")
    return [float(v) for v in value]
