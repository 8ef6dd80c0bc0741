"""The samples a model reads: a feature store (``ray-slt extract --out``) or a manifest, split by split, in
``sample_id`` order. Training (the driver's Ray Datasets, tokenizer texts), ``ray-slt eval`` and GRPO's row
lists read samples through :class:`SampleSource`, so a split means the same samples everywhere.

Rows come back as models take them (:func:`decode_rows`): a feature-store row with its arrays reshaped
(:func:`ray_slt.features.store.decode_row`), a manifest row as it is; numpy scalars become Python values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_slt.errors import ConfigError, DataError

# Feature-store columns a skeleton model reads (the DINOv2 ones are added when the fusion uses them).
POSE_COLUMNS = ("sample_id", "split", "spoken_language", "text", "gloss", "num_frames", "keypoints",
                "keypoints_valid", "keypoints_confidence")  # fmt: skip
FEATURE_COLUMNS = ("feature_dim", "face_features", "left_hand_features", "right_hand_features")
MANIFEST_COLUMNS = ("sample_id", "split", "spoken_language", "sign_language", "text", "gloss")


def rows_of(batch: Any) -> list[dict[str, Any]]:
    """Ray Data batches (a columnar dict of arrays, a pyarrow table or a list of dicts) as a list of row dicts,
    numpy scalars as Python values."""
    if hasattr(batch, "to_pylist"):
        return batch.to_pylist()
    if isinstance(batch, Mapping):
        cols = list(batch)
        n = len(batch[cols[0]]) if cols else 0
        return [{c: _py(batch[c][i]) for c in cols} for i in range(n)]
    return [{k: _py(v) for k, v in dict(r).items()} for r in batch]


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def decode_rows(rows: Any) -> list[dict[str, Any]]:
    """Rows as the collators take them: feature-store arrays reshaped, everything else as it is."""
    from ray_slt.features.store import decode_row

    return [decode_row(r) if "num_frames" in r and "keypoints" in r else r for r in rows_of(rows)]


class SampleSource:
    """Exactly one of ``features`` (a feature store) or ``manifest`` (a manifest Parquet: text/gloss inputs, or
    media the model decodes itself); either may be a list, read as one source (several corpora in one run,
    e.g. one multilingual model over several sign languages): a split is every source's samples of it, in
    sample_id order, and a sample id found in two sources is an error. ``columns``: the feature-store columns
    to read (None: all); ``limits``: ``{split: N}`` keeps only the first N samples of a split (by sample_id,
    over all sources)."""

    def __init__(
        self,
        features: str | Sequence[str] | None = None,
        manifest: str | Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        limits: Mapping[str, int | None] | None = None,
    ):
        if (features is None) == (manifest is None):
            raise ConfigError("give exactly one of a feature store and a manifest")
        self.stores = _listed(features, "feature stores")
        self.manifests = _listed(manifest, "manifests")
        self.features = features if features is None or isinstance(features, str) else self.stores[0]
        self.manifest = manifest if manifest is None or isinstance(manifest, str) else self.manifests[0]
        self.columns = list(columns) if columns is not None else None
        self.limits = dict(limits or {})

    @property
    def uri(self) -> str:
        return ", ".join(self.stores or self.manifests)

    def _limit(self, split: str) -> int | None:
        return self.limits.get(split)

    def manifest_table(self, split: str) -> pa.Table:
        """The manifest rows of a split (of every manifest), sorted by sample_id, limited."""
        from ray_slt.data.manifest import read_manifest

        parts = [read_manifest(m) for m in self.manifests]
        parts = [t.filter(pc.equal(t.column("split"), split)) for t in parts]
        _check_unique([t.column("sample_id").to_pylist() for t in parts], self.manifests)
        table = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        table = table.sort_by("sample_id")
        limit = self._limit(split)
        if limit is not None:
            table = table.slice(0, limit)
        if table.num_rows == 0:
            raise DataError(f"no samples of split {split!r}", self.uri)
        return table

    def ids(self, split: str) -> list[str]:
        """The split's sample ids in order (feature-store index or manifest), limited."""
        if self.manifest is not None:
            return self.manifest_table(split).column("sample_id").to_pylist()
        from ray_slt.features.store import read_index

        per_store = [read_index(f, split).column("sample_id").to_pylist() for f in self.stores]
        _check_unique(per_store, self.stores)
        ids = sorted(i for ids in per_store for i in ids)
        limit = self._limit(split)
        ids = ids[:limit] if limit is not None else ids
        if not ids:
            raise DataError(f"no extracted samples of split {split!r}", self.uri)
        return ids

    def count(self, split: str) -> int:
        """Number of samples of a split (from the feature-store index or the manifest: no data pass)."""
        return len(self.ids(split))

    def samples(self, split: str) -> Iterator[dict[str, Any]]:
        """The split's samples in sample_id order, decoded (:func:`decode_rows`)."""
        if self.manifest is not None:
            yield from self.manifest_table(split).to_pylist()
            return
        from ray_slt.features.store import iter_samples

        wanted = self.ids(split)
        rows = {r["sample_id"]: r for f in self.stores for r in iter_samples(f, split=split, columns=self.columns)}
        for sid in wanted:
            yield rows[sid]

    def dataset(self, split: str):
        """A ``ray.data.Dataset`` of the split's samples (raw feature-store rows or manifest rows)."""
        import ray.data

        if self.manifest is not None:
            table = self.manifest_table(split)
            return ray.data.from_arrow(table.select([c for c in MANIFEST_COLUMNS if c in table.column_names]))
        from ray_slt.features.store import load_features

        parts = [load_features(f, split=split, columns=self.columns) for f in self.stores]
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        if len(parts) > 1 or self._limit(split) is not None:
            wanted = set(self.ids(split))  # also: a sample id in two stores is an error
            if self._limit(split) is not None:
                ds = ds.filter(lambda row: row["sample_id"] in wanted)
        return ds

    def texts(self, split: str) -> tuple[list[str], list[str]]:
        """The (texts, glosses) of a split in sample_id order, empty ones left out (to train tokenizers)."""
        if self.manifest is not None:
            table = self.manifest_table(split)
            texts = table.column("text").to_pylist()
            glosses = table.column("gloss").to_pylist() if "gloss" in table.column_names else []
        else:
            from ray_slt.features.store import iter_samples

            wanted = set(self.ids(split))
            found = {
                r["sample_id"]: (r.get("text"), r.get("gloss"))
                for f in self.stores
                for r in iter_samples(f, split=split, columns=["text", "gloss"])
                if r["sample_id"] in wanted
            }
            texts = [found[i][0] for i in sorted(found)]
            glosses = [found[i][1] for i in sorted(found)]
        return [t for t in texts if t], [g for g in glosses if g]


def _listed(uris: str | Sequence[str] | None, what: str) -> list[str]:
    """``uris`` as a list (one URI, several, or none)."""
    if uris is None:
        return []
    out = [uris] if isinstance(uris, str) else list(uris)
    if not out:
        raise ConfigError(f"an empty list of {what}")
    if len(set(out)) != len(out):
        raise ConfigError(f"a {what[:-1]} listed twice: {', '.join(sorted({u for u in out if out.count(u) > 1}))}")
    return out


def _check_unique(ids: Sequence[Sequence[str]], uris: Sequence[str]) -> None:
    """DataError when a sample id is in two of the sources (rows would be trained on twice, scored twice)."""
    seen: dict[str, str] = {}
    for part, uri in zip(ids, uris):
        for sid in part:
            if sid in seen:
                raise DataError(f"sample {sid!r} is in both {seen[sid]} and {uri}: several sources need distinct "
                                "sample ids (e.g. synthetic corpora with distinct sign_language options)")  # fmt: skip
            seen[sid] = uri
