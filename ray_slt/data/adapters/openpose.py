"""OpenPose-JSON frame folders, as Prompt2Sign (SignLLM) uses them: one ``.pose`` file per video.

OpenPose (``--write_json``) writes one ``{video}_{frame:012d}_keypoints.json`` per frame into a folder per video:
``{"version": 1.3, "people": [{"pose_keypoints_2d": [x, y, c, ...], "face_keypoints_2d": [...],
"hand_left_keypoints_2d": [...], "hand_right_keypoints_2d": [...]}, ...]}`` (BODY_25, 70 face and 21+21 hand
points; confidence 0 means not detected). Prompt2Sign (github.com/SignLLM/Prompt2Sign, ``2Dto3D/``) reads such
folders, ordering frames by the number in the file name, and pairs them with sentences in the Progressive
Transformers text layout it inherits::

    {split}.files    # one video folder per line, e.g. "dev/<folder>"
    {split}.text     # the sentence of the folder on the same line number

Both files are read line by line (line n of one belongs to line n of the other); a line without its partner, an
empty folder entry or an empty sentence is a bad row. Sentences are kept exactly as written (Prompt2Sign's
How2Sign-derived ``.text`` files keep the CSV quoting of their source, e.g. ``"So, ..."``). With ``table`` set,
a delimited table (tab or comma, from its header) with columns ``name``, ``split``, ``text`` replaces the pair;
other columns go to ``meta``.

Each folder (``frames_template`` under the root; fields {entry} = the ``.files`` line or the table's name,
{name} = entry without its ``{split}/`` prefix, {split}) is converted into ONE ``.pose`` file with pose-format's
OpenPose components (``pose_keypoints_2d``, ``face_keypoints_2d``, ``hand_left_keypoints_2d``,
``hand_right_keypoints_2d``; points ``XYC``, confidence-0 points masked), frames in frame-number order, written
atomically through ray_slt.storage to ``{pose_dir}/{split}/{name}.pose``. ``pose_dir`` is relative to the root
unless it is absolute or a URI (default ``{root}/poses_converted``; point it elsewhere when the corpus root is
read-only). A missing folder, a missing frame number, a duplicate frame, an unreadable or malformed frame JSON
makes that sample a bad row (the error names the frame file), never a crash or a silently shortened pose.

OpenPose JSON stores neither frame rate nor resolution: ``fps``/``width``/``height`` (default 24 fps, 1280x720,
How2Sign's frontal videos, the source of Prompt2Sign's ASL part) go into the pose header and the manifest.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re

import numpy as np
from pose_format import Pose
from pose_format.numpy.pose_body import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
from pose_format.utils.openpose import OpenPose_Components
from pydantic import Field

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.data import poses
from ray_slt.data.adapters.base import (
    Adapter,
    ErrorReport,
    non_empty,
    read_table,
    record,
    render_template,
    sample_id,
)
from ray_slt.data.manifest import canonical_split, make_row
from ray_slt.errors import DataError, StorageError

FRAME_FILE = re.compile(r"(?:^|_)(\d+)_keypoints\.json$")
TABLE_COLUMNS = ("name", "split", "text")


class OpenPoseOptions(Schema):
    table: str | None = None
    """A table (relative to the root) with columns name, split, text; default: Prompt2Sign's
    ``{split}.files`` + ``{split}.text`` pairs."""
    files_template: str = "{split}.files"
    text_template: str = "{split}.text"
    frames_template: str = "json/{entry}"
    """A video's frame folder relative to the root; fields {entry}, {name}, {split}."""
    pose_dir: str = "poses_converted"
    """Where converted .pose files go: relative to the root, or an absolute path / URI."""
    overwrite: bool = True
    """False: keep a .pose already converted by an earlier run instead of converting again."""
    video_template: str | None = None
    """A sample's video relative to the root (fields as frames_template), when the corpus has videos."""
    fps: float = Field(24.0, gt=0)
    width: int = Field(1280, gt=0)
    height: int = Field(720, gt=0)
    sign_language: str = "ase"
    spoken_language: str = "en"


def frame_number(filename: str) -> int | None:
    m = FRAME_FILE.search(filename)
    return int(m.group(1)) if m else None


def _frame_points(frame: object, uri: str) -> list[dict[str, list[float]]]:
    """The people of one parsed frame JSON, each component checked; DataError naming the file otherwise."""
    if not isinstance(frame, dict) or not isinstance(frame.get("people"), list):
        raise DataError("not an OpenPose frame (no 'people' list)", uri)
    people = []
    for p, person in enumerate(frame["people"]):
        if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
            raise DataError(f"person #{p} has no 'pose_keypoints_2d'", uri)
        parts = {}
        for comp in OpenPose_Components:
            values = person.get(comp.name) or []
            n = len(comp.points) * len(comp.format)
            ok = isinstance(values, list) and len(values) in (0, n)
            if ok and values:
                ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
            if not ok:
                got = f"{len(values)} values" if isinstance(values, list) else type(values).__name__
                raise DataError(f"person #{p} {comp.name}: expected {n} finite numbers (or none), got {got}", uri)
            parts[comp.name] = values
        people.append(parts)
    return people


def frames_to_pose(folder: str, fps: float, width: int, height: int) -> Pose:
    """Convert a folder of ``*_{frame}_keypoints.json`` files (local or remote) into one Pose."""
    if not storage.isdir(folder):
        raise DataError("no such frame folder", folder)
    numbered: dict[int, str] = {}
    for uri in storage.listdir(folder):
        name = storage.basename(uri)
        if not name.endswith(".json"):
            continue
        number = frame_number(name)
        if number is None:
            raise DataError("a .json file not named *_{frame}_keypoints.json", uri)
        if number in numbered:
            raise DataError(f"frame {number} appears twice (also {storage.basename(numbered[number])})", uri)
        numbered[number] = uri
    if not numbered:
        raise DataError("no *_keypoints.json frames", folder)
    first, count = min(numbered), len(numbered)
    missing = [i for i in range(first, first + count) if i not in numbered]
    if missing or max(numbered) != first + count - 1:
        gap = missing[0] if missing else first + count
        raise DataError(f"frame {gap} is missing (frames {first}..{max(numbered)} expected contiguous)", folder)
    frames = []
    for number in sorted(numbered):
        uri = numbered[number]
        try:
            frame = json.loads(storage.read_text(uri))
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", uri, e.lineno) from None
        except StorageError as e:
            raise DataError(f"unreadable frame ({e})", uri) from None
        frames.append(_frame_points(frame, uri))

    header = PoseHeader(
        version=0.2,
        dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
        components=OpenPose_Components,
    )
    total = header.total_points()
    people = max(1, *(len(f) for f in frames))
    data = np.zeros((len(frames), people, total, 2), dtype=np.float32)
    confidence = np.zeros((len(frames), people, total), dtype=np.float32)
    for t, frame in enumerate(frames):
        for p, parts in enumerate(frame):
            offset = 0
            for comp in OpenPose_Components:
                values = parts[comp.name]
                k = len(comp.points)
                if values:
                    xyc = np.asarray(values, dtype=np.float32).reshape(k, 3)
                    data[t, p, offset : offset + k] = xyc[:, :2]
                    confidence[t, p, offset : offset + k] = xyc[:, 2]
                offset += k
    body = NumPyPoseBody(fps=fps, data=data, confidence=confidence)  # masks every point whose confidence is 0
    return Pose(header, body)


def _resolve(root: str, path: str) -> str:
    return path if "://" in path or os.path.isabs(path) else storage.join(root, path)


class OpenPoseFrames(Adapter):
    name = "openpose"
    description = "OpenPose-JSON frame folders + sentence table (Prompt2Sign layout) -> .pose files"
    sign_language = "ase"
    spoken_language = "en"
    Options = OpenPoseOptions

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        rows = report.rows()
        for source, line, split, entry, text, extra in self._entries(root, options, report, splits):
            with report.guard(source, line):
                rows.append(self._row(root, options, split, entry, text, extra))
        return rows

    def _entries(self, root, options, report, splits):
        """(source, line, split, entry, text, extra columns) of every wanted sample; bad table rows reported."""
        wanted = set(splits)
        if options.table is not None:
            table = _resolve(root, options.table)
            if not storage.exists(table):
                raise DataError("table not found", table)
            head = storage.read_text(table).split("\n", 1)[0]
            delimiter = "\t" if "\t" in head else ","
            for line, cols, fields in read_table(table, delimiter, TABLE_COLUMNS, quoting=csv.QUOTE_MINIMAL):
                item = None
                with report.guard(table, line):
                    rec = record(cols, fields)
                    split = canonical_split(non_empty(rec, "split"))
                    extra = {c: v for c, v in rec.items() if c not in TABLE_COLUMNS}
                    item = (table, line, split, non_empty(rec, "name"), rec["text"], extra)
                if item is not None and item[2] in wanted:
                    yield item
            return
        for split in splits:
            files_uri = storage.join(root, render_template(options.files_template, "files_template", split=split))
            text_uri = storage.join(root, render_template(options.text_template, "text_template", split=split))
            for uri in (files_uri, text_uri):
                if not storage.exists(uri):
                    raise DataError(f"Prompt2Sign {split} file not found", uri)
            entries, texts = _lines(files_uri), _lines(text_uri)
            for n in range(max(len(entries), len(texts))):
                if n >= len(entries):
                    report.add(DataError(f"sentence has no folder on line {n + 1} of {files_uri}", text_uri, n + 1))
                elif n >= len(texts):
                    report.add(DataError(f"folder {entries[n]!r} has no sentence in {text_uri}", files_uri, n + 1))
                elif not entries[n].strip():
                    report.add(DataError("empty folder entry", files_uri, n + 1))
                else:
                    yield text_uri, n + 1, split, entries[n].strip(), texts[n], {"files_line": n + 1}

    def _row(self, root, options, split: str, entry: str, text: str, extra: dict) -> dict:
        if not text.strip():
            raise DataError("empty sentence")
        name = entry[len(split) + 1 :] if entry.startswith(f"{split}/") else entry
        name = name.strip("/")
        fields = {"entry": entry, "name": name, "split": split}
        folder = storage.join(root, render_template(options.frames_template, "frames_template", **fields))
        pose_uri = storage.join(_resolve(root, options.pose_dir), split, f"{name}.pose")
        if not options.overwrite and storage.exists(pose_uri):
            pose = poses.read_pose(pose_uri)
        else:
            try:
                pose = frames_to_pose(folder, options.fps, options.width, options.height)
            except DataError as e:
                raise DataError(f"sample {name!r}: {e.reason}", e.source, e.line) from None
            poses.write_pose(pose, pose_uri)
        video = None
        if options.video_template is not None:
            video = storage.join(root, render_template(options.video_template, "video_template", **fields))
        return make_row(
            sample_id=sample_id(self.name, name),
            dataset=self.name,
            split=split,
            sign_language=options.sign_language,
            spoken_language=options.spoken_language,
            video_uri=video,
            pose_uri=pose_uri,
            fps=float(options.fps),
            num_frames=int(pose.body.data.shape[0]),
            text=text,
            meta={"entry": entry, "frames_dir": folder, **extra},
        )


class Prompt2Sign(OpenPoseFrames):
    name = "prompt2sign"
    description = "Prompt2Sign (SignLLM): OpenPose-JSON frame folders + {split}.files/.text -> .pose files"


def _lines(uri: str) -> list[str]:
    """A text file's lines (without line ends); a final newline does not make an extra empty line."""
    text = storage.read_text(uri)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
