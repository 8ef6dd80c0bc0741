"""WLASL (isolated ASL signs), from the official ``WLASL_v0.3.json``.

The JSON lists 2000 glosses, most frequent first; WLASL100/300/1000/2000 are the first N glosses (the class
index is the gloss's position), and every instance carries its official split (``val`` becomes ``dev``).
Instances give 1-based inclusive ``frame_start``/``frame_end`` (``-1``: to the end), which become 0-based
``start_frame`` and exclusive ``end_frame``; ``bbox`` is the signer's box ``[x0, y0, x1, y1]`` in pixels.
Videos are looked up with ``video_template`` (default ``videos/{video_id}.mp4``, the layout of the official
download scripts).
"""

from __future__ import annotations

import json
from typing import Literal

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.data.adapters.base import Adapter, ErrorReport, find_file, sample_id
from ray_slt.data.manifest import canonical_split, make_row
from ray_slt.errors import DataError

SUBSETS = (100, 300, 1000, 2000)


class WlaslOptions(Schema):
    subset: Literal[100, 300, 1000, 2000] = 2000
    """WLASL100/300/1000/2000: the first N glosses of the official list."""
    video_template: str = "videos/{video_id}.mp4"


class Wlasl(Adapter):
    name = "wlasl"
    description = "WLASL: word-level ASL (isolated signs), subsets WLASL100/300/1000/2000"
    sign_language = "ase"
    spoken_language = "en"
    Options = WlaslOptions

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        src = find_file(root, ["WLASL_v0.3.json", "start_kit/WLASL_v0.3.json"], "WLASL_v0.3.json")
        try:
            entries = json.loads(storage.read_text(src))
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", src, e.lineno) from None
        if not isinstance(entries, list):
            raise DataError("expected a JSON list of glosses", src)
        wanted = set(splits)
        rows = report.rows()
        for class_id, entry in enumerate(entries[: options.subset]):
            gloss = entry.get("gloss") if isinstance(entry, dict) else None
            if not isinstance(gloss, str) or not gloss.strip():
                report.add(DataError(f"gloss #{class_id}: missing 'gloss'", src))
                continue
            for k, inst in enumerate(entry.get("instances") or []):
                with report.guard(src):
                    try:
                        row = self._row(gloss, class_id, inst, root, options)
                    except DataError as e:
                        raise DataError(f"gloss {gloss!r} instance #{k}: {e.reason}", src) from None
                    if row["split"] in wanted:
                        rows.append(row)
        return rows

    def _row(self, gloss: str, class_id: int, inst: dict, root: str, options: WlaslOptions) -> dict:
        try:
            video_id = str(inst["video_id"])
            start, end = int(inst["frame_start"]), int(inst["frame_end"])
            split = canonical_split(inst["split"])
            bbox = [int(v) for v in inst["bbox"]] if inst.get("bbox") is not None else None
            fps = float(inst["fps"]) if inst.get("fps") else None
        except KeyError as e:
            raise DataError(f"missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise DataError(f"bad value ({e})") from None
        if start < 1 or (end != -1 and end < start):
            raise DataError(f"frame_start/frame_end {start}/{end} are not a 1-based span (or end -1)")
        return make_row(
            sample_id=sample_id(self.name, video_id),
            dataset=self.name,
            split=split,
            sign_language=self.sign_language,
            spoken_language=self.spoken_language,
            video_uri=storage.join(root, options.video_template.format(video_id=video_id, gloss=gloss)),
            start_frame=start - 1,
            end_frame=None if end == -1 else end,
            fps=fps,
            text=gloss,
            gloss=gloss,
            signer=str(inst["signer_id"]) if inst.get("signer_id") is not None else None,
            bbox=bbox,
            meta={
                "class_id": class_id,
                "subset": options.subset,
                "instance_id": inst.get("instance_id"),
                "source": inst.get("source"),
                "url": inst.get("url"),
                "variation_id": inst.get("variation_id"),
            },
        )
