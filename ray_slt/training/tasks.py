"""The translator tasks: ``sft`` (stage 2: sign encoder + projector + LLM with LoRA) and ``pretrain`` (stage 1).

Both read samples from a feature store (``data.features``, the output of ``ray-slt extract``); ``sft`` with a
gloss encoder can also read a manifest (``data.manifest``: the gloss -> text setting needs no features).
See :mod:`ray_slt.training.task` for the contract they implement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_slt.errors import ConfigError, DataError
from ray_slt.training.task import Batch, Rows, Task

# Feature-store columns a skeleton model reads (the DINOv2 ones are added when the fusion uses them).
POSE_COLUMNS = ("sample_id", "split", "spoken_language", "text", "gloss", "num_frames", "keypoints",
                "keypoints_valid", "keypoints_confidence")  # fmt: skip
FEATURE_COLUMNS = ("feature_dim", "face_features", "left_hand_features", "right_hand_features")
MANIFEST_COLUMNS = ("sample_id", "split", "spoken_language", "text", "gloss")


def rows_of(rows: Rows) -> list[dict[str, Any]]:
    """A list of row dicts from a columnar batch (``iter_batches`` output) or a list of rows."""
    if isinstance(rows, Mapping):
        keys = list(rows)
        n = len(rows[keys[0]]) if keys else 0
        return [{k: rows[k][i] for k in keys} for i in range(n)]
    return [dict(r) for r in rows]


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class DataSource:
    """The samples of a run: a feature store or a manifest, split by split, ordered by sample_id."""

    def __init__(self, data, columns: Sequence[str]):
        self.data = data
        self.columns = list(columns)

    @property
    def uri(self) -> str:
        return self.data.features or self.data.manifest

    def _limit(self, split: str) -> int | None:
        return self.data.limit_train if split == self.data.train_split else self.data.limit_dev

    def _manifest(self, split: str) -> pa.Table:
        from ray_slt.data.manifest import read_manifest

        table = read_manifest(self.data.manifest)
        table = table.filter(pc.equal(table.column("split"), split))
        table = table.sort_by("sample_id")
        limit = self._limit(split)
        if limit is not None:
            table = table.slice(0, limit)
        if table.num_rows == 0:
            raise DataError(f"no samples of split {split!r}", self.uri)
        return table.select([c for c in MANIFEST_COLUMNS if c in table.column_names])

    def _ids(self, split: str) -> list[str]:
        from ray_slt.features.store import read_index

        ids = sorted(read_index(self.data.features, split).column("sample_id").to_pylist())
        limit = self._limit(split)
        ids = ids[:limit] if limit is not None else ids
        if not ids:
            raise DataError(f"no extracted samples of split {split!r}", self.uri)
        return ids

    def dataset(self, split: str):
        """A ``ray.data.Dataset`` of the split's samples (feature-store rows or manifest rows)."""
        import ray.data

        if self.data.manifest is not None:
            return ray.data.from_arrow(self._manifest(split))
        from ray_slt.features.store import load_features

        ids = self._ids(split)
        ds = load_features(self.data.features, split=split, columns=self.columns)
        if self._limit(split) is not None:
            wanted = set(ids)
            ds = ds.filter(lambda row: row["sample_id"] in wanted)
        return ds

    def count(self, split: str) -> int:
        """Number of samples of a split (from the feature-store index or the manifest: no data pass)."""
        if self.data.manifest is not None:
            return self._manifest(split).num_rows
        return len(self._ids(split))

    def texts(self, split: str) -> tuple[list[str], list[str]]:
        """The (texts, glosses) of a split in sample_id order (to train tokenizers and vocabularies)."""
        if self.data.manifest is not None:
            table = self._manifest(split)
            texts = table.column("text").to_pylist()
            glosses = table.column("gloss").to_pylist() if "gloss" in table.column_names else []
        else:
            from ray_slt.features.store import iter_samples

            wanted = set(self._ids(split))
            found = {
                r["sample_id"]: (r.get("text"), r.get("gloss"))
                for r in iter_samples(self.data.features, split=split, columns=["text", "gloss"])
                if r["sample_id"] in wanted
            }
            texts = [found[i][0] for i in sorted(found)]
            glosses = [found[i][1] for i in sorted(found)]
        return [t for t in texts if t], [g for g in glosses if g]


def decode_rows(rows: Rows) -> list[dict[str, Any]]:
    """Rows as the collators take them: feature-store arrays reshaped (:func:`decode_row`), scalars plain."""
    from ray_slt.features.store import decode_row

    out = []
    for r in rows_of(rows):
        r = {k: _py(v) for k, v in r.items()}
        out.append(decode_row(r) if "num_frames" in r and "keypoints" in r else r)
    return out


class _TranslatorTask(Task):
    """What the two translator stages share: data source and collation."""

    def source(self) -> DataSource:
        return DataSource(self.cfg.data, self.columns())

    def columns(self) -> list[str]:
        return list(POSE_COLUMNS)

    def datasets(self) -> dict[str, Any]:
        src = self.source()
        out = {"train": src.dataset(self.cfg.data.train_split)}
        if self.cfg.eval.every_epochs or self.cfg.eval.at_start:
            out["dev"] = src.dataset(self.cfg.data.dev_split)
        return out

    def num_train_samples(self) -> int:
        return self.source().count(self.cfg.data.train_split)

    def collator(self, model) -> Callable[[Rows], Batch]:
        collate = model.collator()

        def fn(rows: Rows) -> Batch:
            return collate(decode_rows(rows))

        return fn


class SFTTask(_TranslatorTask):
    """Stage 2 (RVLF SFT): skeleton or gloss encoder -> projector -> causal LM with LoRA."""

    stage = "sft"

    def columns(self) -> list[str]:
        fusion = self.cfg.sft.fusion
        cols = list(POSE_COLUMNS)
        if fusion.face or fusion.hand:
            cols += list(FEATURE_COLUMNS)
        return cols

    def source(self) -> DataSource:
        if self.cfg.data.manifest is not None and self.cfg.sft.encoder.type != "gloss":
            raise ConfigError("data.manifest carries no pose features: use data.features or a gloss encoder")
        return super().source()

    def fresh(self):
        from ray_slt.models.sft import build_translator

        texts, glosses = self.source().texts(self.cfg.data.train_split)
        return build_translator(self.cfg.sft, texts=texts, glosses=glosses or None, seed=self.cfg.optim.seed)

    def loss(self, model, batch: Batch):
        out = model(batch)
        return out.loss, {}

    def generate(self, model, batch: Batch, num_beams=None, max_new_tokens=None, synced_gpus=False) -> list[str]:
        return model.generate(batch, num_beams=num_beams, max_new_tokens=max_new_tokens, synced_gpus=synced_gpus)

    def param_groups(self, model) -> list[dict[str, Any]]:
        from ray_slt.models.sft import param_groups

        return param_groups(model)

    def save(self, model, uri: str) -> None:
        from ray_slt.models.checkpoint import save_translator

        save_translator(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        from ray_slt.models.checkpoint import load_translator

        return load_translator(uri, trainable=trainable)


class PretrainTask(_TranslatorTask):
    """Stage 1 (RVLF pretraining): token-level contrastive loss + the text decoder's translation loss.

    Its dev evaluation decodes with the stage-1 text decoder, so ``dev_bleu4`` measures the alignment too."""

    stage = "pretrain"

    def source(self) -> DataSource:
        if self.cfg.data.manifest is not None:
            raise ConfigError("stage 1 pretraining reads poses: set data.features (a feature store)")
        return super().source()

    def fresh(self):
        from ray_slt.models.pretrain import build_pretrain_model

        texts, _ = self.source().texts(self.cfg.data.train_split)
        return build_pretrain_model(self.cfg.pretrain, texts=texts, seed=self.cfg.optim.seed)

    def loss(self, model, batch: Batch):
        out = model(batch)
        logs = {k: float(getattr(out, k).detach()) for k in ("loss_con", "loss_slt")}
        return out.loss, logs

    def generate(self, model, batch: Batch, num_beams=None, max_new_tokens=None, synced_gpus=False) -> list[str]:
        return model.translate(batch, num_beams=num_beams, max_new_tokens=max_new_tokens, synced_gpus=synced_gpus)

    def param_groups(self, model) -> list[dict[str, Any]]:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"name": "all", "params": params, "lr": self.cfg.optim.lr, "weight_decay": self.cfg.optim.weight_decay}]

    def save(self, model, uri: str) -> None:
        from ray_slt.models.checkpoint import save_pretrain

        save_pretrain(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        from ray_slt.models.checkpoint import load_pretrain

        model = load_pretrain(uri)
        return model.train() if trainable else model
