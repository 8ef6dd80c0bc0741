"""The recognition stages: ``islr`` (isolated-sign recognition over a closed vocabulary: cross-entropy, optionally
with HALI's alignment, the paper's ``+L_Global`` / ``+L_HALI`` rows) and ``hali`` (zero-shot recognition of
signs never seen in training, from their lexical descriptions: HALI's losses on the seen classes).

Both read a feature store (``data.features``: the 77-point keypoints of ``ray-slt extract``) whose rows carry the
sign's ``gloss``; descriptions come from a lexicon table (``lexicon:``, :mod:`ray_slt.data.lexicon`), matched to
the corpus's glosses (WLASL's ``thank you`` finds ASL-LEX's ``thank_you``; the coverage is logged).

- ``islr``: the vocabulary is the training split's glosses (sorted), or ``classes:`` (a file of one gloss per
  line, or ``index<TAB>gloss`` lines as WLASL's ``wlasl_class_list.txt``). Dev evaluation: the ``islr`` protocol
  (per-instance and per-class top-1/top-5; best checkpoint on per-instance top-1).
- ``hali``: the classes with a description are partitioned once (``partition:``, seeded and nested: seen /
  val-unseen / test-unseen, :func:`ray_slt.eval.protocols.class_partition`); training reads the training-split
  samples of the seen classes only; dev evaluation ranks the dev-split samples of the val-unseen classes among
  the val-unseen classes by their descriptions (the ``zsl`` protocol, per-class top-1/top-5; best checkpoint on
  per-class top-1). The test-unseen classes are never touched during training; ``ray-slt eval --split test``
  (protocol ``zsl``, or ``gzsl`` for seen + unseen) scores them.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import Field, model_validator

from ray_slt.errors import ConfigError, DataError
from ray_slt.features.source import POSE_COLUMNS, SampleSource
from ray_slt.models.recognition_config import ClassPartition, HaliSettings, RecognizerConfig
from ray_slt.training.task import Batch
from ray_slt.training.tasks import SourcedTask, source_of

log = logging.getLogger("ray_slt.train.recognition")


class ISLRSection(RecognizerConfig):
    """``islr:``: the recognizer (:class:`~ray_slt.models.recognition_config.RecognizerConfig`) plus where its
    vocabulary and descriptions come from."""

    lexicon: str | None = None  # a lexicon table (gloss,description[,language]); needed with hali
    lexicon_language: str | None = None  # keep the lexicon's entries of this sign language only
    classes: str | None = None  # the official class list (one gloss per line, or "index<TAB>gloss")

    @model_validator(mode="after")
    def _check_lexicon(self) -> ISLRSection:
        if self.hali is not None and not self.lexicon:
            raise ValueError("hali needs a lexicon (lexicon: a table of gloss,description)")
        return self

    def recognizer(self) -> RecognizerConfig:
        return RecognizerConfig.model_validate(self.model_dump(include=set(RecognizerConfig.model_fields)))


class HaliSection(ISLRSection):
    """``hali:``: zero-shot recognition from descriptions (no classification head by default), with the class
    partition of the ZSL/GZSL protocols."""

    classifier: bool = False
    hali: HaliSettings | None = Field(default_factory=HaliSettings)
    partition: ClassPartition

    @model_validator(mode="after")
    def _check_zero_shot(self) -> HaliSection:
        if self.hali is None:
            raise ValueError("stage hali aligns videos with descriptions: its hali: settings cannot be null")
        if self.classifier:
            raise ValueError("stage hali ranks by description; a classification head over the seen classes would "
                             "have nothing to say about unseen ones (classifier: false)")  # fmt: skip
        return self


class _RecognitionTask(SourcedTask):
    """What both recognition stages share: data, lexicon, collation, loss, saving."""

    section_required: ClassVar[bool] = True

    def source(self) -> SampleSource:
        if self.cfg.data.manifest is not None:
            raise ConfigError("recognition reads poses: set data.features (a feature store from ray-slt extract)")
        return source_of(self.cfg, list(POSE_COLUMNS))

    def glosses(self, split: str) -> list[str]:
        """The glosses of a split's samples, in sample_id order (every sample must have one)."""
        _, glosses = self.source().texts(split)
        if not glosses:
            raise DataError(
                f"the {split} samples carry no gloss (recognition needs the sign's gloss)", self.cfg.data.features
            )
        return glosses

    def lexicon(self) -> dict[str, str]:
        """``{corpus gloss: description}`` for the corpus glosses the lexicon covers."""
        from ray_slt.data.lexicon import corpus_lexicon, read_lexicon

        sec = self.model_cfg
        if not sec.lexicon:
            return {}
        entries, _ = read_lexicon(sec.lexicon)
        if sec.lexicon_language:
            entries = [e for e in entries if e.language == sec.lexicon_language]
        glosses = sorted(set(self.glosses(self.cfg.data.train_split)) | set(self.glosses(self.cfg.data.dev_split)))
        mapped, coverage = corpus_lexicon(glosses, entries)
        s = coverage.summary()
        log.info("lexicon %s covers %d of %d glosses (%d ambiguous)", sec.lexicon, s["matched"], s["glosses"],
                 s["ambiguous"])  # fmt: skip
        if not mapped:
            raise DataError("the lexicon describes none of the corpus's glosses", sec.lexicon)
        return {e.gloss: e.description for e in mapped}

    def columns(self) -> list[str]:
        return list(POSE_COLUMNS)

    def loss(self, model, batch: Batch):
        out = model(batch)
        return out.loss, out.logs

    def param_groups(self, model) -> list[dict[str, Any]]:
        from ray_slt.models.recognition import param_groups

        return param_groups(model)

    def save(self, model, uri: str) -> None:
        from ray_slt.models.recognition import save_recognizer

        save_recognizer(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        from ray_slt.models.recognition import load_recognizer

        return load_recognizer(uri, trainable=trainable)

    def _predictions(self, model, batch: Batch, candidates=None) -> list[dict[str, Any]]:
        ranked = model.rank(batch, candidates=candidates, k=max(5, model.cfg.top_k))
        return [
            {"sample_id": str(sid), "label": str(g), "ranked": [c for c, _ in r], "scores": [float(x) for _, x in r]}
            for sid, g, r in zip(batch["sample_ids"], batch["glosses"], ranked)
        ]


class ISLRTask(_RecognitionTask):
    """``stage: islr``: isolated-sign recognition over a closed vocabulary (cross-entropy; with ``hali:``, plus
    the alignment with the lexicon's descriptions: ``+L_Global`` with zero fine-grained/HC weights, ``+L_HALI``
    with all)."""

    stage = "islr"
    section: ClassVar = ISLRSection
    protocol: ClassVar[str] = "islr"

    def classes(self) -> list[str]:
        if self.model_cfg.classes:
            from ray_slt.data.lexicon import read_class_list

            return read_class_list(self.model_cfg.classes)
        return sorted(set(self.glosses(self.cfg.data.train_split)))

    def fresh(self):
        from ray_slt.models.recognition import build_recognizer

        lexicon = self.lexicon() if self.model_cfg.hali is not None else {}
        return build_recognizer(self.model_cfg.recognizer(), self.classes(), lexicon, seed=self.cfg.optim.seed)

    def predict(self, model, batch: Batch, synced_gpus: bool = False) -> list[dict[str, Any]]:
        return self._predictions(model, batch)


class HaliTask(_RecognitionTask):
    """``stage: hali``: zero-shot recognition; trains on the seen classes, selects on the val-unseen ones."""

    stage = "hali"
    section: ClassVar = HaliSection
    protocol: ClassVar[str] = "zsl"

    def partition(self) -> dict[str, list[str]]:
        from ray_slt.eval.protocols import class_partition

        p = self.model_cfg.partition
        described = sorted(self.lexicon())
        return class_partition(described, p.seen, p.val_unseen, p.test_unseen, p.seed)

    def _filtered(self, split: str, keep: set[str]):
        ds = self.source().dataset(split)
        return ds.filter(lambda row: row["gloss"] in keep)

    def datasets(self) -> dict[str, Any]:
        part = self.partition()
        out = {"train": self._filtered(self.cfg.data.train_split, set(part["seen"]))}
        if self.cfg.eval.every_epochs or self.cfg.eval.at_start:
            out["dev"] = self._filtered(self.cfg.data.dev_split, set(part["val_unseen"]))
        return out

    def num_train_samples(self) -> int:
        seen = set(self.partition()["seen"])
        return sum(g in seen for g in self.glosses(self.cfg.data.train_split))

    def fresh(self):
        from ray_slt.models.recognition import build_recognizer

        lexicon, part = self.lexicon(), self.partition()
        return build_recognizer(self.model_cfg.recognizer(), part["seen"], lexicon, part, seed=self.cfg.optim.seed)

    def predict(self, model, batch: Batch, synced_gpus: bool = False) -> list[dict[str, Any]]:
        return self._predictions(model, batch, candidates=model.partition["val_unseen"])
