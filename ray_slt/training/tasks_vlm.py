"""The ``vlm`` task: small-VLM translators (SmolVLM2 / Qwen2.5-VL / InternVL3; RESEARCH.md section 1) on the
generic Ray Train loop (:mod:`ray_slt.training.task` is the contract).

Data: the manifest (``data.manifest``) gives the videos. ``datasets()`` looks every sample up in the frozen
vision tower's cache (``vlm.cache``, written by :func:`ray_slt.models.vlm.cache.run_vlm_cache`, under the
model's cache key) on the driver, and streams each split through a Ray Data actor stage: a cached sample passes
through as the URI of its cache entry (the worker's collator reads it from storage: ~100 MB per SmolVLM2 sample
never crosses the object store), any other is decoded (Eq. 1 frames) into the family's pixel tensors, carried
as a safetensors payload (:mod:`ray_slt.models.vlm.data`). The model runs its tower only for samples that came
without cached features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import pyarrow as pa

from ray_slt.errors import ConfigError, DataError
from ray_slt.features.pipeline import actor_pool, batch_rows, rows_dataset
from ray_slt.models.vlm.config import VLMConfig
from ray_slt.training.task import Batch, Rows, TranslatorTask

log = logging.getLogger("ray_slt.train.vlm")

ROW_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("spoken_language", pa.string()),
        pa.field("sign_language", pa.string()),
        pa.field("cache_file", pa.string()),  # a cached sample: its entry (read by the collator)
        pa.field("cache_key", pa.string()),  # ... under this key (the driver's, from the configured model)
        pa.field("payload", pa.large_binary()),  # any other: its decoded pixels
    ]
)


class VLMRowStage:
    """Ray Data actor: manifest rows (JSON) -> payload rows (cached tower output, or decoded pixels)."""

    def __init__(
        self,
        model_type: str,
        frame_spec: dict,
        t_max: int,
        decode: dict,
        manifest_dir: str | None,
        cache_key: str | None,
    ):
        from ray_slt.features.extract import DecodeConfig
        from ray_slt.models.vlm.data import VideoSource
        from ray_slt.models.vlm.families import FrameSpec, family_for

        self.family = family_for(model_type)
        self.spec = FrameSpec.from_dict(frame_spec)
        self.key = cache_key
        self.source = VideoSource(t_max, DecodeConfig.model_validate(decode), manifest_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.process(r) for r in batch_rows(batch)], schema=ROW_SCHEMA)

    def process(self, row: dict) -> dict:
        from ray_slt.features.sampling import SampleError
        from ray_slt.models.vlm.data import pack
        from ray_slt.models.vlm.model import prepare_video

        sid = row["sample_id"]
        payload = None
        if not row.get("cache_file"):
            try:
                clip = self.source.clip(row)
            except SampleError as e:
                raise DataError(
                    f"sample {sid!r} cannot be decoded ({e}); run the VLM cache job to record such "
                    "samples as errors (they are then left out)",
                    row.get("video_uri"),
                ) from None
            pixels, layout = prepare_video(
                self.family, self.spec, clip.frames, clip.frame_indices, clip.fps, clip.span[1] - clip.span[0]
            )
            payload = pack(pixels, "pixels", layout.as_dict(), sample_id=sid)
        return {
            "sample_id": sid,
            "text": row["text"],
            "spoken_language": row.get("spoken_language"),
            "sign_language": row.get("sign_language"),
            "cache_file": row.get("cache_file"),
            "cache_key": self.key if row.get("cache_file") else None,
            "payload": payload,
        }


class VLMTask(TranslatorTask):
    """Frozen vision tower + trained connector + LoRA language model, from video (see the module docstring)."""

    stage = "vlm"
    section: ClassVar = VLMConfig
    section_required: ClassVar[bool] = True

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.data.manifest is None:
            raise ConfigError("stage vlm reads videos: set data.manifest (the VLM translators take no pose features)")
        if not isinstance(cfg.data.manifest, str):
            raise ConfigError("stage vlm reads one manifest (data.manifest: one .parquet, not a list)")
        self._key: str | None = None
        self._spec: tuple[str, dict] | None = None

    # -- configuration ----------------------------------------------------------------------------------------
    @property
    def vlm(self) -> VLMConfig:
        """The model section with ``dtype: auto`` resolved for where training runs (bf16 on GPU workers)."""
        from ray_slt.models.vlm.cache import resolve_dtype_name

        v: VLMConfig = self.cfg.vlm
        return v.model_copy(update={"dtype": resolve_dtype_name(v.dtype, self.cfg.trainer.use_gpu)})

    # -- data -------------------------------------------------------------------------------------------------
    def _rows(self, split: str) -> list[dict]:
        from ray_slt.data.manifest import read_manifest

        d = self.cfg.data
        rows = sorted(
            (r for r in read_manifest(d.manifest).to_pylist() if r["split"] == split), key=lambda r: r["sample_id"]
        )
        limit = d.limit_train if split == d.train_split else d.limit_dev
        rows = rows[:limit] if limit is not None else rows
        if not rows:
            raise DataError(f"no samples of split {split!r}", d.manifest)
        return rows

    def texts(self) -> list[str]:
        return [r["text"] for r in self._rows(self.cfg.data.train_split) if r["text"]]

    def num_train_samples(self) -> int:
        return len(self._usable(self._rows(self.cfg.data.train_split)))

    def _base(self) -> str:
        from ray_slt.models.vlm.tiny import ensure_tiny

        v = self.vlm
        return ensure_tiny(v, self.texts()) if v.is_tiny else v.model

    def model_spec(self) -> tuple[str, dict]:
        """``(model_type, frame spec)`` of the configured model, from its config files only."""
        if self._spec is None:
            from transformers import AutoConfig

            from ray_slt.models.vlm.families import family_for
            from ray_slt.models.vlm.model import hub_or_local, read_preprocessor

            v = self.vlm
            with hub_or_local(self._base(), v.revision) as local:
                hf_config = AutoConfig.from_pretrained(local, trust_remote_code=False)
                family = family_for(hf_config.model_type)
                spec = family.frame_spec(hf_config, read_preprocessor(local), v.frames)
            self._spec = (hf_config.model_type, spec.as_dict())
        return self._spec

    def cache_key(self) -> str | None:
        """The cache key of the configured model (loads its weights once, on the driver), or None without a
        cache."""
        if self.vlm.cache is None:
            return None
        if self._key is None:
            from ray_slt.models.vlm.cache import cache_key, key_fields
            from ray_slt.models.vlm.model import load_base

            v = self.vlm
            model, _, family, spec = load_base(v, self._base())
            self._key = cache_key(key_fields(v, family, model, spec))
        return self._key

    def _cache(self):
        from ray_slt.models.vlm.cache import VisionCache

        key = self.cache_key()
        return None if key is None else VisionCache(self.vlm.cache, key)

    def _known_errors(self) -> set[str]:
        from ray_slt import storage
        from ray_slt.features import store

        key = self.cache_key()
        if key is None:
            return set()
        kdir = storage.join(self.vlm.cache, key)
        return set(store.read_errors(kdir).column("sample_id").to_pylist())

    def _usable(self, rows: list[dict]) -> list[dict]:
        bad = self._known_errors()
        if bad:
            left = [r for r in rows if r["sample_id"] not in bad]
            if len(left) < len(rows):
                log.warning(
                    "leaving out %d samples the cache job could not decode (see its errors.parquet)",
                    len(rows) - len(left),
                )
            return left
        return rows

    def _dataset(self, split: str, cache):

        from ray_slt import storage

        v = self.vlm
        rows = self._usable(self._rows(split))
        hits = 0
        for r in rows:
            r["cache_file"] = cache.lookup(r) if cache is not None else None
            hits += r["cache_file"] is not None
        if cache is not None:
            log.info("vlm %s: %d of %d samples from the cache %s", split, hits, len(rows), cache.dir)
            if v.cache_required and hits < len(rows):
                missing = [r["sample_id"] for r in rows if r["cache_file"] is None]
                raise DataError(
                    f"{len(missing)} {split} samples are not in the cache (cache_required): "
                    f"{missing[:5]}...; run the VLM cache job",
                    cache.dir,
                )
        model_type, spec = self.model_spec()
        return rows_dataset(rows).map_batches(
            VLMRowStage,
            fn_constructor_kwargs={
                "model_type": model_type,
                "frame_spec": spec,
                "t_max": v.frames.t_max,
                "decode": v.decode.model_dump(),
                "manifest_dir": storage.parent(self.cfg.data.manifest),
                "cache_key": self.cache_key(),
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=actor_pool(1, v.data_workers, len(rows)),
            num_cpus=v.data_worker_cpus,
        )

    def datasets(self) -> dict[str, Any]:
        cache = self._cache()
        out = {"train": self._dataset(self.cfg.data.train_split, cache)}
        if self.cfg.eval.every_epochs or self.cfg.eval.at_start:
            out["dev"] = self._dataset(self.cfg.data.dev_split, cache)
        return out

    # -- model ------------------------------------------------------------------------------------------------
    def fresh(self):
        from ray_slt.models.vlm.model import build_vlm

        return build_vlm(self.vlm, texts=self.texts(), seed=self.cfg.optim.seed)

    def collator(self, model) -> Callable[[Rows], Batch]:
        """Rows of :meth:`datasets` -> a batch: cache entries are read here (each checked to be the features of
        its sample under the run's key), decoded pixels unpacked."""
        from ray_slt.features.source import rows_of
        from ray_slt.models.vlm.cache import VisionCache, model_cache_key
        from ray_slt.models.vlm.data import sample_from_payload

        # The worker's own model must have the key the driver looked entries up with (not checkable under ZeRO-3,
        # whose parameters are partitioned across ranks: the key's weights hash then runs on the driver only).
        partitioned = any(getattr(p, "ds_numel", None) is not None for p in model.vision_tower.parameters())
        mine = model_cache_key(model) if self.cfg.vlm.cache and not partitioned else None

        def fn(rows: Rows) -> Batch:
            samples = []
            for r in rows_of(rows):
                if r.get("cache_file"):
                    if mine is not None and r["cache_key"] != mine:
                        raise ConfigError(
                            f"this worker's model has cache key {mine}, the run looked samples up "
                            f"under {r['cache_key']} (different weights, dtype or settings)"
                        )
                    s = sample_from_payload(VisionCache.load(r["cache_file"], r["sample_id"], r["cache_key"]))
                else:
                    s = sample_from_payload(bytes(r["payload"]))
                s.update({k: r.get(k) for k in ("sample_id", "text", "spoken_language", "sign_language")})
                samples.append(s)
            return model.collate(samples)

        return fn

    def loss(self, model, batch: Batch):
        return model(batch).loss, {}

    def generate(self, model, batch: Batch, num_beams=None, max_new_tokens=None, synced_gpus=False) -> list[str]:
        return model.generate(batch, max_new_tokens=max_new_tokens, num_beams=num_beams, synced_gpus=synced_gpus)

    def param_groups(self, model) -> list[dict[str, Any]]:
        from ray_slt.models.vlm.model import param_groups

        return param_groups(model)

    def save(self, model, uri: str) -> None:
        from ray_slt.models.vlm.checkpoint import save_vlm

        save_vlm(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        from ray_slt.models.vlm.checkpoint import load_vlm

        return load_vlm(uri, trainable=trainable)
