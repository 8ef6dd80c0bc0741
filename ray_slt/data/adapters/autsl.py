"""AUTSL (isolated Turkish Sign Language signs, 226 classes), from its official class list and label tables.

Official files: ``SignList_ClassId_TR_EN.csv`` (``ClassId,TR,EN``: the class index, the Turkish sign name, its
English gloss) and one label table per split, ``sample,class_id`` rows without a header (the ChaLearn 2021
release names them ``train_labels.csv``, ``validation_labels.csv`` and ``test_labels.csv``; ``labels:`` maps a
split to its table). Samples are ``signer{S}_sample{N}``; their RGB video is ``{split}/{sample}_color.mp4`` by
default (``video_template``), and a pre-extracted ``.pose`` may be named instead (``pose_template``).

A row's ``gloss`` is the Turkish sign name (the class label; :func:`ray_slt.data.lexicon.read_class_list` reads
the same list for ``islr.classes``), its ``text`` the English gloss with spaces, ``signer`` the ``signer{S}`` prefix and
``meta.class_id`` the official index.
"""

from __future__ import annotations

import re

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.data.adapters.base import (
    Adapter,
    ErrorReport,
    non_empty,
    parse_int,
    read_table,
    record,
    render_template,
    sample_id,
)
from ray_slt.data.manifest import make_row
from ray_slt.errors import DataError

CLASS_LIST = "SignList_ClassId_TR_EN.csv"
CLASS_COLUMNS = ("ClassId", "TR", "EN")
NATIVE_SPLITS = {"train": "train", "dev": "val", "test": "test"}
_SAMPLE = re.compile(r"^(signer\d+)_sample\d+$")


class AutslOptions(Schema):
    class_list: str = CLASS_LIST
    """The class list, relative to the root."""
    labels: dict[str, str] = {
        "train": "train_labels.csv",
        "dev": "validation_labels.csv",
        "test": "test_labels.csv",
    }
    """Each split's label table (``sample,class_id`` rows, no header), relative to the root; a split missing
    here is not read."""
    video_template: str | None = "{split}/{sample}_color.mp4"
    """A sample's RGB video relative to the root; fields {split} (train/val/test) and {sample}. Null with a
    pose_template."""
    pose_template: str | None = None
    """A sample's ``.pose`` relative to the root (e.g. ``{split}/{sample}.pose``), instead of or beside the
    video."""


def read_classes(uri: str) -> list[dict]:
    """The official class list: ``[{"class_id", "tr", "en"}]`` in ``ClassId`` order (ids must be 0..N-1)."""
    out = []
    for line, cols, fields in read_table(uri, ",", CLASS_COLUMNS):
        rec = record(cols, fields)
        try:
            cid = parse_int(rec["ClassId"], "ClassId")
            tr, en = non_empty(rec, "TR"), non_empty(rec, "EN")
        except DataError as e:
            raise DataError(e.reason, uri, line) from None
        if cid != len(out):
            raise DataError(f"ClassId {cid} out of order (expected {len(out)})", uri, line)
        out.append({"class_id": cid, "tr": tr, "en": en})
    if not out:
        raise DataError("the class list is empty", uri)
    return out


class Autsl(Adapter):
    name = "autsl"
    description = "AUTSL: isolated Turkish Sign Language signs, 226 classes (RGB videos or .pose files)"
    sign_language = "tsm"
    spoken_language = "en"  # a row's text is the class's English gloss
    Options = AutslOptions

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        if options.video_template is None and options.pose_template is None:
            raise DataError("autsl needs video_template or pose_template (where a sample's media is)", root)
        unknown = sorted(set(options.labels) - set(NATIVE_SPLITS))
        if unknown:
            raise DataError(f"labels: unknown splits {unknown} (train, dev, test)", root)
        classes = read_classes(storage.join(root, options.class_list))
        rows = report.rows()
        for split in splits:
            if split not in options.labels:
                continue
            table = storage.join(root, options.labels[split])
            if not storage.exists(table):
                raise DataError(f"the {split} label table is missing", table)
            for line, cols, fields in read_table(table, ",", (), header=("sample", "class_id")):
                with report.guard(table, line):
                    rows.append(self._row(record(cols, fields), split, classes, root, options))
        return rows

    def _row(self, rec: dict, split: str, classes: list[dict], root: str, options: AutslOptions) -> dict:
        sample = non_empty(rec, "sample")
        m = _SAMPLE.match(sample)
        if not m:
            raise DataError(f"sample {sample!r} is not signer<S>_sample<N>")
        cid = parse_int(rec["class_id"], "class_id")
        if not 0 <= cid < len(classes):
            raise DataError(f"class_id {cid} is not in the class list (0..{len(classes) - 1})")
        cls = classes[cid]
        fields = {"split": NATIVE_SPLITS[split], "sample": sample}
        media = {}
        if options.video_template:
            media["video_uri"] = storage.join(root, render_template(options.video_template, "video_template", **fields))
        if options.pose_template:
            media["pose_uri"] = storage.join(root, render_template(options.pose_template, "pose_template", **fields))
        return make_row(
            sample_id=sample_id(self.name, sample),
            dataset=self.name,
            split=split,
            sign_language=self.sign_language,
            spoken_language=self.spoken_language,
            text=cls["en"].replace("_", " "),
            gloss=cls["tr"],
            signer=m.group(1),
            meta={"class_id": cid, "en": cls["en"]},
            **media,
        )
