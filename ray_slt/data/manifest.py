"""The manifest: one Parquet schema for every corpus.

A manifest has one row per sample. Every corpus adapter maps its official files to it, and every later stage
reads only manifests (and what earlier stages wrote), never a corpus's own files.

Columns (see DESIGN.md, "Contracts"):

=================  ==============  =================================================================
column             type            meaning
=================  ==============  =================================================================
sample_id          string          unique and stable: ``{dataset}.{id in the corpus}``
dataset            string          adapter name (``phoenix14t``, ``how2sign``, ``synthetic``, ...)
split              string          ``train``, ``dev`` or ``test`` (a corpus's "val" is recorded as dev)
sign_language      string          ISO 639-3 (``gsg``, ``ase``, ``ins``, ``csl``; ``qsl`` = synthetic)
spoken_language    string          BCP-47 (``de``, ``en``, ``zh``)
video_uri          string?         a video file, or a directory of frame images, or null
pose_uri           string?         a ``.pose`` file when the corpus ships poses, else null
start_frame        int32?          first frame, 0-based, inclusive
end_frame          int32?          end frame, 0-based, exclusive (null: to the end)
start_s, end_s     float64?        time span in seconds, when the corpus gives times instead of frames
fps                float32?        frames per second when known
num_frames         int32?          number of frames of the sample when the corpus states it
text               string          the spoken-language sentence (raw, as the corpus has it)
gloss              string?         space-separated glosses when the corpus has them
signer             string?         signer id
bbox               list<int32>?    ``[x0, y0, x1, y1]`` pixel box of the signer (WLASL)
meta               string          JSON object with anything corpus-specific
=================  ==============  =================================================================
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_slt import storage
from ray_slt.errors import DataError

SPLITS = ("train", "dev", "test")
SPLIT_ALIASES = {
    "train": "train",
    "dev": "dev",
    "val": "dev",
    "valid": "dev",
    "validation": "dev",
    "test": "test",
}

SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("sign_language", pa.string(), nullable=False),
        pa.field("spoken_language", pa.string(), nullable=False),
        pa.field("video_uri", pa.string()),
        pa.field("pose_uri", pa.string()),
        pa.field("start_frame", pa.int32()),
        pa.field("end_frame", pa.int32()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("fps", pa.float32()),
        pa.field("num_frames", pa.int32()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("gloss", pa.string()),
        pa.field("signer", pa.string()),
        pa.field("bbox", pa.list_(pa.int32(), 4)),
        pa.field("meta", pa.string(), nullable=False),
    ],
    metadata={b"ray_slt.schema": b"manifest/1"},
)
COLUMNS = tuple(SCHEMA.names)
REQUIRED = tuple(f.name for f in SCHEMA if not f.nullable)


def canonical_split(split: str, source: str | None = None, line: int | None = None) -> str:
    key = str(split).strip().lower()
    if key not in SPLIT_ALIASES:
        raise DataError(f"unknown split {split!r} (expected one of train, dev/val, test)", source, line)
    return SPLIT_ALIASES[key]


def make_row(**values: Any) -> dict:
    """A validated manifest row with every column present (missing optional columns are null).

    ``meta`` may be given as a dict; it is stored as JSON. Invalid values raise a DataError (without a
    source: adapters call this inside their error guard, which adds the file and line).
    """
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise ValueError(f"not manifest columns: {sorted(unknown)}")
    row = {c: None for c in COLUMNS}
    row.update(values)
    meta = row["meta"]
    row["meta"] = (
        json.dumps(meta if meta is not None else {}, ensure_ascii=False, sort_keys=True)
        if not isinstance(meta, str)
        else meta
    )
    validate_row(row)
    return row


def validate_row(row: Mapping[str, Any], source: str | None = None, line: int | None = None) -> None:
    """Check one row's values (types are enforced by the Arrow schema when the table is built)."""
    for col in REQUIRED:
        value = row.get(col)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise DataError(f"column {col!r} is missing", source, line)
    if row["split"] not in SPLITS:
        raise DataError(f"split {row['split']!r} is not one of {SPLITS}", source, line)
    if not str(row["sample_id"]).strip():
        raise DataError("empty sample_id", source, line)
    sf, ef = row.get("start_frame"), row.get("end_frame")
    if sf is not None and sf < 0:
        raise DataError(f"start_frame {sf} is negative", source, line)
    if sf is not None and ef is not None and ef <= sf:
        raise DataError(f"end_frame {ef} is not after start_frame {sf}", source, line)
    ss, es = row.get("start_s"), row.get("end_s")
    if ss is not None and es is not None and es <= ss:
        raise DataError(f"end_s {es} is not after start_s {ss}", source, line)
    bbox = row.get("bbox")
    if bbox is not None and (len(bbox) != 4 or bbox[2] <= bbox[0] or bbox[3] <= bbox[1]):
        raise DataError(f"bbox {list(bbox)} is not [x0, y0, x1, y1] with x1 > x0 and y1 > y0", source, line)
    fps = row.get("fps")
    if fps is not None and not fps > 0:
        raise DataError(f"fps {fps} is not positive", source, line)
    try:
        meta = json.loads(row["meta"])
    except (TypeError, json.JSONDecodeError) as e:
        raise DataError(f"meta is not JSON ({e})", source, line) from None
    if not isinstance(meta, dict):
        raise DataError("meta is not a JSON object", source, line)


def to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Build a manifest table from rows, checking every row and that sample ids are unique."""
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        validate_row(row, "<rows>", i + 1)
        sid = row["sample_id"]
        if sid in seen:
            raise DataError(f"duplicate sample_id {sid!r} (also row {seen[sid]})", "<rows>", i + 1)
        seen[sid] = i + 1
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def validate_table(table: pa.Table, source: str = "<manifest>") -> pa.Table:
    """Check a table against the manifest contract and return it cast to the exact schema."""
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"not a manifest: missing columns {missing}", source)
    table = table.select(list(COLUMNS))
    try:
        table = table.cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
        raise DataError(f"not a manifest: {e}", source) from None
    ids = table.column("sample_id")
    if len(ids) and pc.count_distinct(ids).as_py() != len(ids):
        counts = pc.value_counts(ids)
        dup = next(v["values"].as_py() for v in counts if v["counts"].as_py() > 1)
        raise DataError(f"duplicate sample_id {dup!r}", source)
    for i, row in enumerate(table.to_pylist()):
        validate_row(row, source, i + 1)
    return table


def write_manifest(table_or_rows: pa.Table | Sequence[Mapping[str, Any]], uri: str) -> pa.Table:
    """Validate and write a manifest atomically. Returns the table written."""
    table = table_or_rows if isinstance(table_or_rows, pa.Table) else to_table(table_or_rows)
    table = validate_table(table, uri)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())
    return table


def read_manifest(uri: str) -> pa.Table:
    """Read and validate a manifest (local or remote)."""
    data = storage.read_bytes(uri)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a Parquet file ({e})", uri) from None
    return validate_table(table, uri)


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def meta_of(row: Mapping[str, Any]) -> dict:
    return json.loads(row["meta"]) if row.get("meta") else {}


def filter_splits(table: pa.Table, splits: Iterable[str] | None) -> pa.Table:
    if not splits:
        return table
    wanted = [canonical_split(s) for s in splits]
    return table.filter(pc.is_in(table.column("split"), pa.array(wanted)))
