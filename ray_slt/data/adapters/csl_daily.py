"""CSL-Daily (Chinese Sign Language -> Chinese).

CSL-Daily distributes its labels as a Python pickle, which ray_slt never unpickles (loading an untrusted
pickle executes code). The adapter reads the same labels as '|'-separated tables, one per split::

    csl-daily.{train,dev,test}.csv:   name|signer|gloss|text|num_frames

(the layout of the community conversion of the official label file that TwoStreamNetwork/SLRT uses), with the
frames in ``{frames_dir}/{name}/`` (the release's ``sentence/frames_512x512``).
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

COLUMNS = ("name", "signer", "gloss", "text", "num_frames")


class CslDailyOptions(Schema):
    frames_dir: str = "sentence/frames_512x512"
    """Directory (relative to the root) with one folder of frame images per sample."""


class CslDaily(Adapter):
    name = "csl_daily"
    description = "CSL-Daily: Chinese Sign Language daily-life sentences -> Chinese"
    sign_language = "csl"
    spoken_language = "zh"
    Options = CslDailyOptions

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        rows = report.rows()
        for split in splits:
            table = find_file(
                root,
                [f"csl-daily.{split}.csv", f"sentence_label/csl-daily.{split}.csv"],
                f"CSL-Daily {split} table",
            )
            for line, cols, fields in read_table(table, "|", COLUMNS):
                with report.guard(table, line):
                    rec = record(cols, fields)
                    name = non_empty(rec, "name")
                    frames = parse_int(rec["num_frames"], "num_frames")
                    if frames <= 0:
                        raise DataError(f"num_frames {frames} is not positive")
                    rows.append(
                        make_row(
                            sample_id=sample_id(self.name, name),
                            dataset=self.name,
                            split=split,
                            sign_language=self.sign_language,
                            spoken_language=self.spoken_language,
                            video_uri=storage.join(root, options.frames_dir, name),
                            num_frames=frames,
                            text=non_empty(rec, "text"),
                            gloss=non_empty(rec, "gloss"),
                            signer=rec["signer"].strip() or None,
                            meta={"name": name},
                        )
                    )
        return rows
