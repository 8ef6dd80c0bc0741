"""The feature store: what ``ray-slt extract`` writes and what training reads.

Layout under the output URI (local or ``s3://``)::

    provenance.json              extractor, versions, models, sampling, config and its hash, runs
    index.parquet                one row per extracted sample: sample_id, dataset, split, num_frames,
                                 has_features, shard, pose_file, extract_hash (the training stage reads this)
    errors.parquet               one row per failed sample: sample_id, dataset, split, stage, reason, uri, run_id
    shards/part-*.parquet        per-sample feature rows (below); each file's Parquet metadata holds the
                                 provenance JSON under ``ray_slt.provenance``
    poses/{safe_name(id)}.pose   the sample's pose (pose-format), frame i = ``frame_indices[i]``
    errors/part-*.parquet        error records as each run wrote them (``errors.parquet`` is their summary)
    runs/{run_id}.json           the summary of each run

Shard row fields (arrays are flattened lists with their shape stated here; :func:`decode_row` reshapes them):

===================== =================== =======================================================================
field                 type                meaning
===================== =================== =======================================================================
sample_id             string              the manifest's id
dataset, split        string              from the manifest (split: train/dev/test)
sign_language         string              ISO 639-3
spoken_language       string              BCP-47
text, gloss, signer   string (nullable)   from the manifest
input_kind            string              ``video``, ``frames`` (image folder) or ``pose`` (a shipped .pose)
pose_file             string              the .pose path relative to the store
pose_estimator        string              ``mediapipe-holistic``, ``mmpose-wholebody`` or ``shipped``
layout_source         string              ``holistic``, ``holistic_reduced`` or ``coco_wholebody_133``
fps                   float32             frames per second of the source
width, height         int32               source frame size (pixels)
span_start, span_end  int32               the sample's frames in the source, ``[start, end)``
num_frames            int32               T, kept frames
frame_indices         list<int32> [T]     kept frames, relative to span_start (Eq. 1 / all, capped)
keypoints             list<float32>       [T, 77, 2] normalised 77-point layout (layouts.py), 0 where missing
keypoints_valid       list<bool>          [T, 77] True where the point was observed (False = masked)
keypoints_confidence  list<float32>       [T, 77]
norm_center           list<float32> [2]   pixels; ``pixels = keypoints * norm_scale + norm_center``
norm_scale            float32             mean shoulder width in pixels
boxes                 list<float32>       [T, 3, 4] face / left hand / right hand boxes (source pixels, NaN none)
box_source            list<int8>          [T, 3] 0 detected, 1 last good box reused, 2 first box reused, -1 none
feature_dim           int32 (nullable)    D, when visual features were requested and the sample has video
face_features         list<float32>?      [T, D] DINOv2 embedding of the face crop per frame
left_hand_features    list<float32>?      [T, D]
right_hand_features   list<float32>?      [T, D]
features_model        string (nullable)   the DINOv2 model id
extract_hash          string              hash of every setting that changes outputs (provenance)
run_id                string              the run that wrote the row
===================== =================== =======================================================================

Reader API (training): :func:`read_index`, :func:`iter_samples` (plain per-sample iterator of numpy arrays),
:func:`load_sample`, :func:`load_features` (a ``ray.data.Dataset`` of shard rows; map :func:`decode_row` over
rows), :func:`read_errors`, :func:`read_provenance`, :func:`pose_uri`.

Writes are atomic (``storage.atomic_write``), the .pose of a sample is written before its shard row, and a
re-run trusts a sample only when a shard row with the current ``extract_hash`` exists and its .pose exists, so
a worker killed at any point leaves nothing a re-run would trust wrongly.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ray_slt import storage
from ray_slt.errors import DataError, StorageError

FORMAT = "ray_slt.features/1"
PROVENANCE_KEY = b"ray_slt.provenance"
SHARDS, POSES, ERRORS, RUNS = "shards", "poses", "errors", "runs"
INDEX_FILE, ERRORS_FILE, PROVENANCE_FILE = "index.parquet", "errors.parquet", "provenance.json"
FEATURE_PARTS = ("face", "left_hand", "right_hand")

SHARD_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string()),
        pa.field("split", pa.string()),
        pa.field("sign_language", pa.string()),
        pa.field("spoken_language", pa.string()),
        pa.field("text", pa.string()),
        pa.field("gloss", pa.string()),
        pa.field("signer", pa.string()),
        pa.field("input_kind", pa.string()),
        pa.field("pose_file", pa.string()),
        pa.field("pose_estimator", pa.string()),
        pa.field("layout_source", pa.string()),
        pa.field("fps", pa.float32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("span_start", pa.int32()),
        pa.field("span_end", pa.int32()),
        pa.field("num_frames", pa.int32()),
        pa.field("frame_indices", pa.list_(pa.int32())),
        pa.field("keypoints", pa.list_(pa.float32())),
        pa.field("keypoints_valid", pa.list_(pa.bool_())),
        pa.field("keypoints_confidence", pa.list_(pa.float32())),
        pa.field("norm_center", pa.list_(pa.float32())),
        pa.field("norm_scale", pa.float32()),
        pa.field("boxes", pa.list_(pa.float32())),
        pa.field("box_source", pa.list_(pa.int8())),
        pa.field("feature_dim", pa.int32()),
        pa.field("face_features", pa.list_(pa.float32())),
        pa.field("left_hand_features", pa.list_(pa.float32())),
        pa.field("right_hand_features", pa.list_(pa.float32())),
        pa.field("features_model", pa.string()),
        pa.field("extract_hash", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)
SHARD_COLUMNS = tuple(SHARD_SCHEMA.names)

ERROR_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string()),
        pa.field("split", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)
ERROR_COLUMNS = tuple(ERROR_SCHEMA.names)

INDEX_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string()),
        pa.field("split", pa.string()),
        pa.field("num_frames", pa.int32()),
        pa.field("has_features", pa.bool_()),
        pa.field("shard", pa.string()),
        pa.field("pose_file", pa.string()),
        pa.field("extract_hash", pa.string()),
    ]
)


def pose_relpath(sample_id: str) -> str:
    return f"{POSES}/{storage.safe_name(sample_id)}.pose"


def pose_uri(uri: str, sample_id: str) -> str:
    """The .pose of a sample in the store at ``uri``."""
    return storage.join(uri, *pose_relpath(sample_id).split("/"))


def _to_parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _read_parquet(uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    data = storage.read_bytes(uri)
    try:
        # use_threads=False: pyarrow 26 intermittently aborts at interpreter exit after threaded reads.
        return pq.read_table(io.BytesIO(data), columns=list(columns) if columns else None, use_threads=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a readable Parquet file ({e})", uri) from None


def batch_name(sample_ids: Iterable[str], run_id: str) -> str:
    """A shard file name unique to its samples and run (a retried write reuses it: idempotent)."""
    digest = hashlib.sha1("\n".join(sorted(sample_ids)).encode()).hexdigest()[:12]
    return f"part-{run_id}-{digest}.parquet"


def write_shard(uri: str, rows: Sequence[Mapping[str, Any]] | pa.Table, run_id: str, provenance: dict) -> str:
    """Write feature rows as one shard (atomically); returns its path relative to the store."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=SHARD_SCHEMA)
    table = table.select(list(SHARD_COLUMNS)).cast(SHARD_SCHEMA)
    meta = {PROVENANCE_KEY: json.dumps(provenance, sort_keys=True, default=str).encode()}
    table = table.replace_schema_metadata(meta)
    rel = f"{SHARDS}/{batch_name(table.column('sample_id').to_pylist(), run_id)}"
    storage.write_bytes(storage.join(uri, *rel.split("/")), _to_parquet_bytes(table))
    return rel


def write_error_shard(uri: str, rows: Sequence[Mapping[str, Any]] | pa.Table, run_id: str) -> str:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=ERROR_SCHEMA)
    table = table.select(list(ERROR_COLUMNS)).cast(ERROR_SCHEMA)
    rel = f"{ERRORS}/{batch_name(table.column('sample_id').to_pylist(), run_id)}"
    storage.write_bytes(storage.join(uri, *rel.split("/")), _to_parquet_bytes(table))
    return rel


def _list_parquet(uri: str, folder: str) -> list[str]:
    base = storage.join(uri, folder)
    if not storage.exists(base):
        return []
    return [
        p
        for p in storage.listdir(base)
        if storage.basename(p).endswith(".parquet") and not storage.basename(p).startswith(".")
    ]


def _scan(uri: str, folder: str, columns: Sequence[str], threads: int = 16) -> list[tuple[str, pa.Table]]:
    """``(relative path, table)`` of every readable Parquet file in a folder; unreadable ones are skipped
    (a re-run then redoes their samples)."""
    files = _list_parquet(uri, folder)

    def read(path: str) -> tuple[str, pa.Table | None]:
        try:
            return f"{folder}/{storage.basename(path)}", _read_parquet(path, columns)
        except (DataError, StorageError, pa.ArrowInvalid, KeyError):
            return f"{folder}/{storage.basename(path)}", None

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(files) or 1))) as pool:
        found = list(pool.map(read, files))
    return [(rel, t) for rel, t in found if t is not None]


def existing_poses(uri: str) -> set[str]:
    """Relative paths of the .pose files present (one listing)."""
    base = storage.join(uri, POSES)
    if not storage.exists(base):
        return set()
    return {f"{POSES}/{storage.basename(p)}" for p in storage.listdir(base) if p.endswith(".pose")}


def build_index(uri: str, extract_hash: str) -> pa.Table:
    """The index of valid samples: for each sample_id, one shard row with ``extract_hash`` whose .pose exists
    (the lexicographically first shard when several runs wrote one)."""
    cols = ["sample_id", "dataset", "split", "num_frames", "feature_dim", "pose_file", "extract_hash"]
    poses = existing_poses(uri)
    chosen: dict[str, dict] = {}
    for rel, table in sorted(_scan(uri, SHARDS, cols), key=lambda x: x[0]):
        for row in table.to_pylist():
            if row["extract_hash"] != extract_hash or row["pose_file"] not in poses:
                continue
            if row["sample_id"] not in chosen:
                chosen[row["sample_id"]] = {
                    "sample_id": row["sample_id"],
                    "dataset": row["dataset"],
                    "split": row["split"],
                    "num_frames": row["num_frames"],
                    "has_features": row["feature_dim"] is not None,
                    "shard": rel,
                    "pose_file": row["pose_file"],
                    "extract_hash": row["extract_hash"],
                }
    rows = [chosen[k] for k in sorted(chosen)]
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)


def collect_errors(uri: str, done: set[str]) -> pa.Table:
    """The latest error record of every sample that has no valid output."""
    latest: dict[str, dict] = {}
    for _, table in sorted(_scan(uri, ERRORS, list(ERROR_COLUMNS)), key=lambda x: x[0]):
        for row in table.to_pylist():
            if row["sample_id"] in done:
                continue
            prev = latest.get(row["sample_id"])
            if prev is None or (row["run_id"] or "") >= (prev["run_id"] or ""):
                latest[row["sample_id"]] = row
    return pa.Table.from_pylist([latest[k] for k in sorted(latest)], schema=ERROR_SCHEMA)


def write_table(uri: str, name: str, table: pa.Table) -> None:
    storage.write_bytes(storage.join(uri, name), _to_parquet_bytes(table))


# ------------------------------------------------------------------------------------------ reader API


def read_index(uri: str, split: str | Sequence[str] | None = None) -> pa.Table:
    """The index of a feature store (optionally only some splits)."""
    path = storage.join(uri, INDEX_FILE)
    if not storage.exists(path):
        raise StorageError(f"{uri}: not a feature store (no {INDEX_FILE}; run `ray-slt extract` first)")
    table = _read_parquet(path)
    if split is not None:
        splits = [split] if isinstance(split, str) else list(split)
        table = table.filter(pc.is_in(table.column("split"), pa.array(splits)))
    return table


def read_errors(uri: str) -> pa.Table:
    path = storage.join(uri, ERRORS_FILE)
    return _read_parquet(path) if storage.exists(path) else ERROR_SCHEMA.empty_table()


def read_provenance(uri: str) -> dict:
    return json.loads(storage.read_text(storage.join(uri, PROVENANCE_FILE)))


_SHAPES = {
    "frame_indices": (lambda t: (t,), np.int64),
    "keypoints": (lambda t: (t, 77, 2), np.float32),
    "keypoints_valid": (lambda t: (t, 77), bool),
    "keypoints_confidence": (lambda t: (t, 77), np.float32),
    "norm_center": (lambda t: (2,), np.float32),
    "boxes": (lambda t: (t, 3, 4), np.float32),
    "box_source": (lambda t: (t, 3), np.int8),
}


def decode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A shard row with its arrays reshaped to numpy: ``keypoints [T, 77, 2]``, ``keypoints_valid [T, 77]``,
    ``keypoints_confidence [T, 77]``, ``frame_indices [T]``, ``boxes [T, 3, 4]``, ``box_source [T, 3]``,
    ``norm_center [2]``, and ``{part}_features [T, D]`` (None when the sample has no visual features).
    Columns absent from ``row`` stay absent."""
    t = int(row["num_frames"])
    out = dict(row)
    for key, (shape, dtype) in _SHAPES.items():
        if row.get(key) is not None:
            out[key] = np.asarray(row[key], dtype=dtype).reshape(shape(t))
    d = row.get("feature_dim")
    for part in FEATURE_PARTS:
        key = f"{part}_features"
        if key in row:
            value = row[key]
            out[key] = None if value is None or d is None else np.asarray(value, np.float32).reshape(t, int(d))
    return out


def iter_samples(
    uri: str, split: str | Sequence[str] | None = None, columns: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every indexed sample (optionally of some splits), decoded by :func:`decode_row`, shard by shard."""
    index = read_index(uri, split)
    by_shard: dict[str, set[str]] = {}
    for sid, shard in zip(index.column("sample_id").to_pylist(), index.column("shard").to_pylist()):
        by_shard.setdefault(shard, set()).add(sid)
    cols = None if columns is None else sorted(set(columns) | {"sample_id", "num_frames", "feature_dim"})
    for shard in sorted(by_shard):
        table = _read_parquet(storage.join(uri, *shard.split("/")), cols)
        for row in table.to_pylist():
            if row["sample_id"] in by_shard[shard]:
                by_shard[shard].discard(row["sample_id"])  # a duplicate row in one shard is read once
                yield decode_row(row)


def load_sample(uri: str, sample_id: str) -> dict[str, Any]:
    """One sample, decoded; ``KeyError`` if it is not in the index."""
    index = read_index(uri)
    hit = index.filter(pc.equal(index.column("sample_id"), sample_id))
    if hit.num_rows == 0:
        raise KeyError(sample_id)
    shard = hit.column("shard")[0].as_py()
    table = _read_parquet(storage.join(uri, *shard.split("/")))
    rows = table.filter(pc.equal(table.column("sample_id"), sample_id)).to_pylist()
    return decode_row(rows[0])


def shard_bytes(uri: str, split: str | Sequence[str] | None = None) -> int:
    """The bytes on storage of the shard files holding a split's samples (an upper bound of the split's size:
    a shard may hold other splits' samples too)."""
    index = read_index(uri, split)
    if index.num_rows == 0:
        return 0
    return sum(storage.size(storage.join(uri, *s.split("/"))) for s in set(index.column("shard").to_pylist()))


def load_features(uri: str, split: str | Sequence[str] | None = None, columns: Sequence[str] | None = None):
    """A ``ray.data.Dataset`` of the indexed shard rows (flattened lists, see the table above), optionally of
    some splits and columns. Each row is one sample; ``ds.map(decode_row)`` gives numpy arrays."""
    import fsspec
    import ray.data
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    index = read_index(uri, split)
    if index.num_rows == 0:
        return ray.data.from_items([])
    shards = sorted(set(index.column("shard").to_pylist()))
    paths = [storage.join(uri, *s.split("/")) for s in shards]
    filesystem = None
    if not storage.is_local(uri):
        fs, _ = fsspec.core.url_to_fs(uri)
        filesystem = PyFileSystem(FSSpecHandler(fs))
        paths = [p.split("://", 1)[1] for p in paths]
    else:
        paths = [storage.normalize(p) for p in paths]
    wanted = {(s, i) for s, i in zip(index.column("shard").to_pylist(), index.column("sample_id").to_pylist())}
    keep_cols = None if columns is None else sorted(set(columns) | {"sample_id"})
    ds = ray.data.read_parquet(paths, filesystem=filesystem, include_paths=True, columns=keep_cols)

    def _filter(batch: pa.Table) -> pa.Table:
        names = [f"{SHARDS}/{p.rsplit('/', 1)[-1]}" for p in batch.column("path").to_pylist()]
        mask = [(n, s) in wanted for n, s in zip(names, batch.column("sample_id").to_pylist())]
        return batch.filter(pa.array(mask, type=pa.bool_())).drop_columns(["path"])

    return ds.map_batches(_filter, batch_format="pyarrow", batch_size=None)


def failure_reason(summary: dict) -> str | None:
    """A reason when every sample a run tried failed (and none was done before): most likely a wrong path or
    setting rather than bad videos, so the command exits non-zero. None otherwise."""
    if summary["errors"] and not summary["ok"] and not summary["skipped"]:
        first = summary["error_records"][0]
        return f"every sample failed ({summary['errors']} errors; first: {first['sample_id']}: {first['reason']})"
    return None
