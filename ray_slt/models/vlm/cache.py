"""Frozen-encoder feature cache of the small-VLM translators (config kind ``vlm_cache``).

The VLM translators keep the vision tower frozen (RESEARCH.md section 1), so its output for a sample never
changes during training. This job computes it once per sample on Ray Data (GPU actors where the cluster has
GPUs), and training reads it instead of running the tower every epoch.

What is cached is the tower's output *before the connector* (SmolVLM: the SigLIP last hidden state;
Qwen2.5-VL: the ViT output before the patch merger, in the tower's window order; InternVL: the selected layer
without the CLS token), in the tower's own dtype. The connector and the LM still run on it every step, so they
train exactly as without the cache: training with a cache hit and without one computes the same loss
(tests/vlm check equality).

Key. A cache directory holds entries of one *key*, the hash of everything the features depend on:

- the frozen vision weights themselves (SHA-256 over names, dtypes, shapes and bytes of the tower's
  parameters and buffers, connector excluded): a different checkpoint, revision or fine-tuned tower is a
  different key whatever its name or path;
- the tower's config (vision config, feature layer/selection) and its dtype;
- the frame preparation (:class:`~ray_slt.models.vlm.families.FrameSpec`: size, resampling, mean/std, Qwen's
  pixel bounds and patching) and the frame sampling (Eq. 1, ``uniform:T_max``);
- the decoding settings that change pixels (``max_side``, ``bbox_margin``, ``max_missing``, ``default_fps``);
- the cache format revision.

Any change gives a new key, hence a new directory and recomputation, never a stale hit. Within a key, each entry
records the *input fingerprint* of its manifest row (video reference, span, bbox, fps): a row that changed is a
miss. Each entry file also carries its key and sample id in its header, checked on every read.

The root is any URI; the configs put it inside the corpus's feature store (``{features}/vlm_cache``), beside
what ``ray-slt extract`` writes there. Layout under ``{root}/{key}/`` (local or ``s3://``)::

    provenance.json             the key's fields, model id/revision, versions, runs
    index.parquet               one row per cached sample (sample_id, dataset, split, file, input_fingerprint,
                                num_frames, shape, dtype, bytes, layout, cache_key, run_id)
    samples/{safe_name}.safetensors   one payload per sample (ray_slt.models.vlm.data): tensor ``vision``
    entries/part-*.parquet      the index rows as each batch wrote them (index.parquet is their summary)
    errors/part-*.parquet, errors.parquet, runs/{run_id}.json

The entry file is written before its index row, atomically, so a killed worker leaves nothing a re-run trusts;
a re-run skips samples whose entry exists with the same input fingerprint (resumable).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
import time
import traceback
import uuid
from collections import Counter
from importlib import metadata
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from ray_slt import storage
from ray_slt.config import Schema, config_dict
from ray_slt.errors import ConfigError, DataError, RaySltError, StorageError
from ray_slt.features import store
from ray_slt.features.pipeline import actor_pool, batch_rows, rows_dataset
from ray_slt.features.sampling import SampleError, Sampling
from ray_slt.models.vlm.config import VLMConfig

log = logging.getLogger("ray_slt.vlm_cache")

CACHE_FORMAT = "ray_slt.vlm_cache/1"
CACHE_REVISION = 1  # bump when this code changes what it writes for the same settings (part of the key)
SAMPLES, ENTRIES = "samples", "entries"
INDEX_FILE, PROVENANCE_FILE = "index.parquet", "provenance.json"

ENTRY_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string()),
        pa.field("split", pa.string()),
        pa.field("file", pa.string()),
        pa.field("input_fingerprint", pa.string()),
        pa.field("num_frames", pa.int32()),
        pa.field("shape", pa.list_(pa.int64())),
        pa.field("dtype", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("layout", pa.string()),
        pa.field("cache_key", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)
STAGE_SCHEMA = pa.schema(
    [
        *ENTRY_SCHEMA,
        pa.field("status", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("decode_s", pa.float64()),
        pa.field("encode_s", pa.float64()),
    ]
)


# ------------------------------------------------------------------------------------------------- config


class CacheWorkers(Schema):
    min_size: int = Field(1, ge=1)
    max_size: int | None = Field(None, ge=1)  # None: one actor per GPU (GPU cluster), else min_size
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float | None = Field(None, ge=0)  # None: 1 per actor when the cluster has GPUs, else 0


class VLMCacheConfig(Schema):
    """Settings of the cache job (``conf/vlm_cache_*.yaml``; ``vlm`` is the same section as training's)."""

    kind: Literal["vlm_cache"] = "vlm_cache"
    manifest: str | None = None
    out: str | None = None  # cache root; None: vlm.cache
    splits: list[str] | None = None
    limit: int | None = Field(None, ge=1)
    media_root: str | None = None
    ray_address: str | None = None
    progress: bool = True
    vlm: VLMConfig = Field(default_factory=VLMConfig)
    workers: CacheWorkers = Field(default_factory=CacheWorkers)
    shard_rows: int = Field(64, ge=1)  # entries per index part (and per durable write)

    @property
    def root(self) -> str | None:
        return self.out or self.vlm.cache


# ------------------------------------------------------------------------------------------------ the key


def _clean(d: Any) -> Any:
    """Config dicts without path-like and bookkeeping fields (``_name_or_path``, ``architectures``...)."""
    if isinstance(d, dict):
        return {
            k: _clean(v)
            for k, v in sorted(d.items())
            if not k.startswith("_")
            and k
            not in ("name_or_path", "architectures", "output_hidden_states", "return_dict", "dtype", "torch_dtype")
        }
    if isinstance(d, list | tuple):
        return [_clean(v) for v in d]
    return d


def key_fields(cfg: VLMConfig, family, hf_model, spec) -> dict[str, Any]:
    """Everything the cached features depend on, for a model's config, family, transformers model and frame
    spec (LoRA in the language model changes none of it)."""
    from ray_slt.models.vlm.model import vision_fingerprint

    d = cfg.decode
    frozen = family.frozen_state(hf_model)
    dtype = next((t.dtype for t in frozen.values() if t.is_floating_point()), None)
    return {
        "format": CACHE_FORMAT,
        "revision": CACHE_REVISION,
        "family": family.name,
        "model_type": hf_model.config.model_type,
        "vision_config": _clean(json.loads(json.dumps(family.vision_config(hf_model.config), default=str))),
        "vision_weights_sha256": vision_fingerprint(family, hf_model),
        "dtype": str(dtype).replace("torch.", ""),
        "frames": spec.as_dict(),
        "sampling": Sampling("uniform", t_max=cfg.frames.t_max).spec,
        "decode": {k: getattr(d, k) for k in ("max_side", "bbox_margin", "max_missing", "default_fps")},
    }


def cache_key(fields: dict[str, Any]) -> str:
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def model_cache_key(model) -> str:
    """The cache key of a :class:`~ray_slt.models.vlm.model.VLMTranslator`."""
    return cache_key(key_fields(model.cfg, model.family, model.hf, model.frame_spec))


# ------------------------------------------------------------------------------------------------- reader


def _read_parquet(uri: str) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(storage.read_bytes(uri)), use_threads=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a readable Parquet file ({e})", uri) from None


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def build_index(kdir: str) -> pa.Table:
    """The valid entries of a key directory: per sample, the latest entry (by run id) whose file exists."""
    base = storage.join(kdir, ENTRIES)
    if not storage.exists(base):
        return ENTRY_SCHEMA.empty_table()
    samples_dir = storage.join(kdir, SAMPLES)
    present = (
        {f"{SAMPLES}/{storage.basename(p)}" for p in storage.listdir(samples_dir)}
        if storage.exists(samples_dir)
        else set()
    )
    latest: dict[str, dict] = {}
    for path in storage.listdir(base):
        name = storage.basename(path)
        if not name.endswith(".parquet") or name.startswith("."):
            continue
        try:
            rows = _read_parquet(path).to_pylist()
        except (DataError, StorageError):
            continue  # an unreadable part: its samples are redone
        for row in rows:
            if row["file"] not in present:
                continue
            prev = latest.get(row["sample_id"])
            if prev is None or (row["run_id"] or "") >= (prev["run_id"] or ""):
                latest[row["sample_id"]] = row
    return pa.Table.from_pylist([latest[k] for k in sorted(latest)], schema=ENTRY_SCHEMA)


class VisionCache:
    """Read side: ``lookup(row)`` -> the entry file of a manifest row (or None); ``load(uri, sample_id)`` -> the
    payload bytes, checked to be this key's entry of that sample."""

    def __init__(self, root: str, key: str):
        self.root, self.key = root, key
        self.dir = storage.join(root, key)
        path = storage.join(self.dir, INDEX_FILE)
        table = _read_parquet(path) if storage.exists(path) else build_index(self.dir)
        self.entries = {r["sample_id"]: r for r in table.to_pylist()}

    @classmethod
    def for_model(cls, root: str, model) -> VisionCache:
        return cls(root, model_cache_key(model))

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, row: dict) -> str | None:
        from ray_slt.models.vlm.data import input_fingerprint

        entry = self.entries.get(row["sample_id"])
        if entry is None or entry["input_fingerprint"] != input_fingerprint(row):
            return None
        return storage.join(self.dir, *entry["file"].split("/"))

    @staticmethod
    def load(uri: str, sample_id: str, key: str) -> bytes:
        from ray_slt.models.vlm.data import payload_meta

        data = storage.read_bytes(uri)
        meta = payload_meta(data)
        if meta.get("kind") != "vision" or meta.get("cache_key") != key or meta.get("sample_id") != sample_id:
            raise DataError(
                f"cache entry is not key {key}'s features of {sample_id!r} (header: kind="
                f"{meta.get('kind')!r}, key={meta.get('cache_key')!r}, sample={meta.get('sample_id')!r})",
                uri,
            )
        return data


# ------------------------------------------------------------------------------------------------- the job


def resolve_dtype_name(name: str, gpu: bool) -> str:
    """``auto`` -> bfloat16 where the tower runs on GPUs, float32 on CPUs."""
    return ("bfloat16" if gpu else "float32") if name == "auto" else name


def manifest_texts(manifest) -> list[str]:
    """Training texts of a manifest table (to build a tiny model's tokenizer)."""
    rows = manifest.to_pylist()
    return [r["text"] for r in rows if r["split"] == "train"] or [r["text"] for r in rows]


class CacheStage:
    """Ray Data actor: manifest rows -> tower features written as entry files (one model per actor)."""

    def __init__(
        self,
        config: dict,
        base: str,
        key: str,
        kdir: str,
        run_id: str,
        manifest_dir: str | None,
        media_root: str | None,
    ):
        import torch

        from ray_slt.models.vlm.data import VideoSource
        from ray_slt.models.vlm.model import load_base

        cfg = VLMConfig.model_validate(config)
        self.cfg, self.key, self.kdir, self.run_id = cfg, key, kdir, run_id
        self.model, _, self.family, self.spec = load_base(cfg, base)
        mine = cache_key(key_fields(cfg, self.family, self.model, self.spec))
        if mine != key:  # e.g. a checkpoint that changed between the driver's read and this worker's
            raise ConfigError(f"{base}: this worker's model has cache key {mine}, the job's is {key}")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.family.vision_tower(self.model).to(self.device)  # only the tower is used here
        self.source = VideoSource(cfg.frames.t_max, cfg.decode, manifest_dir, media_root)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.process(r) for r in batch_rows(batch)], schema=STAGE_SCHEMA)

    def process(self, row: dict) -> dict:
        import torch

        from ray_slt.models.vlm.data import input_fingerprint, pack
        from ray_slt.models.vlm.model import prepare_video

        out = {k: None for k in STAGE_SCHEMA.names}
        out.update(
            sample_id=row["sample_id"],
            dataset=row.get("dataset"),
            split=row.get("split"),
            cache_key=self.key,
            run_id=self.run_id,
            uri=row.get("video_uri"),
            decode_s=0.0,
            encode_s=0.0,
        )
        try:
            t0 = time.perf_counter()
            clip = self.source.clip(row)
            pixels, layout = prepare_video(
                self.family, self.spec, clip.frames, clip.frame_indices, clip.fps, clip.span[1] - clip.span[0]
            )
            t1 = time.perf_counter()
            with torch.no_grad():
                feats = self.family.encode(self.model, pixels)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            fp = input_fingerprint(row)
            data = pack(
                {"vision": feats},
                "vision",
                layout.as_dict(),
                cache_key=self.key,
                sample_id=row["sample_id"],
                input_fingerprint=fp,
            )
            rel = f"{SAMPLES}/{storage.safe_name(row['sample_id'])}.safetensors"
            storage.write_bytes(storage.join(self.kdir, *rel.split("/")), data)
            out.update(
                status="ok",
                file=rel,
                input_fingerprint=fp,
                num_frames=layout.num_frames,
                shape=list(feats.shape),
                dtype=str(feats.dtype).replace("torch.", ""),
                bytes=len(data),
                layout=json.dumps(layout.as_dict(), sort_keys=True),
                decode_s=t1 - t0,
                encode_s=t2 - t1,
            )
        except SampleError as e:
            out.update(status="error", stage=e.stage, reason=e.reason)
        except RaySltError as e:
            out.update(status="error", stage="metadata", reason=str(e))
        except Exception as e:  # one hostile sample must not stop the run
            log.warning("sample %s failed:\n%s", row.get("sample_id"), traceback.format_exc())
            out.update(status="error", stage="encode", reason=f"{type(e).__name__}: {e}"[:1000])
        return out


def write_entries(batch: pa.Table, kdir: str, run_id: str) -> pa.Table:
    """Ray Data task: the ok rows as an index part, the failed ones as an error shard; returns the batch's
    summaries."""
    status = batch.column("status").to_pylist()
    ok = batch.filter(pa.array([s == "ok" for s in status]))
    bad = batch.filter(pa.array([s != "ok" for s in status]))
    if ok.num_rows:
        part = ok.select(ENTRY_SCHEMA.names).cast(ENTRY_SCHEMA)
        name = store.batch_name(part.column("sample_id").to_pylist(), run_id)
        storage.write_bytes(storage.join(kdir, ENTRIES, name), _parquet_bytes(part))
    if bad.num_rows:
        store.write_error_shard(kdir, bad.select(store.ERROR_COLUMNS), run_id)
    return batch.select(["sample_id", "status", "stage", "reason", "num_frames", "bytes", "decode_s", "encode_s"])


def _versions() -> dict[str, str | None]:
    out = {}
    for dist in ("ray_slt", "torch", "transformers", "peft", "safetensors", "decord", "av", "ray"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out | {"python": sys.version.split()[0]}


def run_vlm_cache(cfg: VLMCacheConfig, *, echo: bool = True) -> dict[str, Any]:
    """Compute the frozen tower's features of every manifest sample not cached yet; returns the run summary."""
    import ray

    from ray_slt.data.manifest import filter_splits, read_manifest
    from ray_slt.models.vlm.data import input_fingerprint
    from ray_slt.models.vlm.model import load_base
    from ray_slt.models.vlm.tiny import ensure_tiny

    if not cfg.manifest or not cfg.root:
        raise ConfigError("the VLM cache job needs a manifest and a cache root (out=... or vlm.cache=...)")
    started = time.time()
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if echo else (lambda m: log.info(m))
    root = storage.normalize(cfg.root)
    full = read_manifest(cfg.manifest)
    table = filter_splits(full, cfg.splits)
    rows = table.to_pylist()[: cfg.limit] if cfg.limit else table.to_pylist()
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, ignore_reinit_error=True, log_to_driver=cfg.progress)
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    w = cfg.workers
    num_gpus = w.num_gpus if w.num_gpus is not None else (1.0 if gpus >= 1 else 0.0)
    vlm = cfg.vlm.model_copy(update={"dtype": resolve_dtype_name(cfg.vlm.dtype, num_gpus > 0)})
    base = ensure_tiny(vlm, manifest_texts(full)) if vlm.is_tiny else vlm.model

    # The key needs the tower's weights: load the model once here (CPU), as the training driver does.
    model, _, family, spec = load_base(vlm, base)
    fields = key_fields(vlm, family, model, spec)
    key = cache_key(fields)
    del model
    kdir = storage.join(root, key)
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    before = build_index(kdir)
    done = {r["sample_id"]: r["input_fingerprint"] for r in before.to_pylist()}
    todo = [r for r in rows if done.get(r["sample_id"]) != input_fingerprint(r)]
    provenance = {
        "format": CACHE_FORMAT,
        "cache_key": key,
        "key_fields": fields,
        "model": vlm.model,
        "model_revision": vlm.revision,
        "base": base,
        "versions": _versions(),
        "config": config_dict(cfg),
    }
    _write_provenance(kdir, provenance, run_id, None)
    say(
        f"vlm-cache: {len(rows)} samples, {len(rows) - len(todo)} already cached, {len(todo)} to encode "
        f"-> {kdir} ({family.name}, {vlm.dtype}, {'GPU' if num_gpus else 'CPU'} actors)"
    )

    results: list[dict] = []
    if todo:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = cfg.progress
        if num_gpus > 0:
            hi = w.max_size or max(w.min_size, int(gpus // num_gpus))
        else:
            hi = w.max_size or w.min_size
        hi = max(hi, w.min_size)
        ds = rows_dataset(todo).map_batches(
            CacheStage,
            fn_constructor_kwargs={
                "config": config_dict(vlm),
                "base": base,
                "key": key,
                "kdir": kdir,
                "run_id": run_id,
                "manifest_dir": storage.parent(cfg.manifest),
                "media_root": cfg.media_root,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=actor_pool(w.min_size, hi, len(todo)),
            num_cpus=w.num_cpus,
            num_gpus=num_gpus,
        )
        ds = ds.map_batches(
            write_entries,
            fn_kwargs={"kdir": kdir, "run_id": run_id},
            batch_size=cfg.shard_rows,
            batch_format="pyarrow",
            num_cpus=0.25,
        )
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            results.extend(batch.to_pylist())
    index = build_index(kdir)
    storage.write_bytes(storage.join(kdir, INDEX_FILE), _parquet_bytes(index))
    indexed = set(index.column("sample_id").to_pylist())
    errors = store.collect_errors(kdir, indexed)
    storage.write_bytes(storage.join(kdir, store.ERRORS_FILE), _parquet_bytes(errors))
    ok = [r for r in results if r["status"] == "ok"]
    bad = [r for r in results if r["status"] != "ok"]
    summary = {
        "cache": kdir,
        "cache_key": key,
        "run_id": run_id,
        "samples": len(rows),
        "skipped": len(rows) - len(todo),
        "ok": len(ok),
        "errors": len(bad),
        "errors_by_stage": dict(Counter(r["stage"] for r in bad)),
        "error_records": [{k: r[k] for k in ("sample_id", "stage", "reason")} for r in bad],
        "indexed": len(indexed),
        "bytes": int(sum(int(r["bytes"] or 0) for r in ok)),
        "decode_s": round(sum(float(r["decode_s"] or 0) for r in results), 3),
        "encode_s": round(sum(float(r["encode_s"] or 0) for r in results), 3),
        "wall_s": round(time.time() - started, 3),
    }
    _write_provenance(kdir, provenance, run_id, summary)
    storage.write_text(storage.join(kdir, store.RUNS, f"{run_id}.json"), json.dumps(summary, indent=2))
    say(
        f"vlm-cache: {summary['ok']} encoded, {summary['errors']} errors, {summary['indexed']} cached in total "
        f"({summary['wall_s']:.1f}s)"
    )
    return summary


def _write_provenance(kdir: str, provenance: dict, run_id: str, summary: dict | None) -> None:
    path = storage.join(kdir, PROVENANCE_FILE)
    runs = []
    if storage.exists(path):
        try:
            runs = [r for r in json.loads(storage.read_text(path)).get("runs", []) if r.get("run_id") != run_id]
        except (ValueError, RaySltError):
            runs = []
    entry = {"run_id": run_id}
    if summary is not None:
        entry.update({k: summary[k] for k in ("ok", "errors", "skipped", "wall_s")})
    storage.write_text(path, json.dumps(provenance | {"runs": [*runs, entry]}, indent=2, sort_keys=True, default=str))


# --------------------------------------------------------------------------------------------- entry point


def config_from(uri: str, overrides: list[str] | tuple[str, ...] = ()) -> VLMCacheConfig:
    """A cache job's config from a YAML of kind ``vlm_cache``, or from a training config of ``stage: vlm``
    (its manifest and ``vlm`` section: the cache then has exactly the key its training run looks up)."""
    from ray_slt.config import load_config

    cfg = load_config(uri, overrides)
    if isinstance(cfg, VLMCacheConfig):
        return cfg
    if getattr(cfg, "kind", None) == "train" and getattr(cfg, "stage", None) == "vlm":
        if not cfg.vlm.cache:
            raise ConfigError(f"{uri}: vlm.cache is not set (where the cache lives)")
        return VLMCacheConfig(manifest=cfg.data.manifest, vlm=cfg.vlm)
    raise ConfigError(f"{uri}: expected a config of kind 'vlm_cache' or a training config with stage 'vlm'")


def main(argv: list[str] | None = None) -> int:
    """``python -m ray_slt.models.vlm.cache CONFIG [key=value ...]``: run the cache job (on the cluster of
    RAY_ADDRESS, else a local Ray); the run summary is printed as JSON on the last line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(main.__doc__)
        return 0 if argv else 2
    try:
        summary = run_vlm_cache(config_from(argv[0], argv[1:]))
    except RaySltError as e:
        print(f"vlm-cache: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "error_records"}))
    reason = store.failure_reason(summary)
    if reason:
        print(f"vlm-cache: failed: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
