"""The production stage, ``stage: produce``: a text/gloss -> pose producer (:mod:`ray_slt.models.producer`;
SignLLM's MLSF channel with one language) trained on a feature store's poses, lifted to Prompt2Sign's 3D frames,
with the ``mse`` or ``rl`` loss; dev evaluation is the ``production`` protocol (DTW, lower is better).

SignLLM's priority learning channel is ``optim.sampling: priority`` (the generic loop draws each step's batch by
:class:`~ray_slt.training.priority.PrioritySampler`, refreshed from :meth:`ProduceTask.sample_losses`).
Saved producers are served by their kind (``producer``).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from ray_slt.errors import ConfigError
from ray_slt.features.source import POSE_COLUMNS, SampleSource, decode_rows
from ray_slt.models.producer_config import ProducerConfig
from ray_slt.training.task import Batch
from ray_slt.training.tasks import SourcedTask, source_of


class ProduceTask(SourcedTask):
    """``stage: produce``: gloss (or text) -> Prompt2Sign pose frames, selected on dev DTW."""

    stage = "produce"
    section: ClassVar = ProducerConfig
    protocol: ClassVar[str] = "production"

    def protocol_options(self) -> dict[str, Any]:
        c = self.model_cfg
        return {"percentile": c.percentile, "frame_step": c.frame_step, "max_frames": c.max_frames}

    def source(self) -> SampleSource:
        if self.cfg.data.manifest is not None:
            raise ConfigError("a producer learns poses: set data.features (a feature store from ray-slt extract)")
        return source_of(self.cfg, [*POSE_COLUMNS, "sign_language"])

    def fresh(self):
        from ray_slt.models.langgloss import languages_of
        from ray_slt.models.producer import build_producer, producer_words

        split = self.cfg.data.train_split
        rows = list(source_of(self.cfg, ["sample_id", "split", "sign_language", "text", "gloss"]).samples(split))
        c = self.model_cfg  # no poses read above; a multilingual producer records the languages it learns
        if c.tag == "auto":
            c = c.model_copy(update={"languages": languages_of(rows, c.languages)})
        model = build_producer(c, [producer_words(r, c) for r in rows], seed=self.cfg.optim.seed)
        batch = model.collator()(decode_rows(list(itertools.islice(self.source().samples(split), 256))))
        model.net.fit_noise_scale(batch["frames"], batch["frame_mask"])  # the noise's scale: real frames
        return model

    gives_sample_losses: ClassVar[bool] = True
    takes_sample_weights: ClassVar[bool] = True

    def loss(self, model, batch: Batch):
        return model(batch).loss, {}

    def sample_losses(self, model, batch: Batch):
        out = model(batch)
        return out.loss, {}, out.per_sample

    def predict(self, model, batch: Batch, synced_gpus: bool = False) -> list[dict[str, Any]]:
        produced = model.produce(batch)
        refs = batch["frames"].cpu().numpy()
        lengths = batch["frame_mask"].sum(1).tolist()
        texts = batch.get("texts") or [None] * len(produced)
        rows = zip(batch["sample_ids"], produced, refs, lengths, texts)
        return [{"sample_id": sid, "frames": p.round(5).tolist(), "reference": r[: int(n)].round(5).tolist(),
                 "text": t} for sid, p, r, n, t in rows]  # fmt: skip

    def param_groups(self, model) -> list[dict[str, Any]]:
        c = self.model_cfg
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"name": "producer", "params": params, "lr": c.lr, "weight_decay": c.weight_decay}]

    def save(self, model, uri: str) -> None:
        from ray_slt.models.producer import save_producer

        save_producer(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        from ray_slt.models.producer import load_producer

        return load_producer(uri, trainable=trainable)
