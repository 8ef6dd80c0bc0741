"""Saved models, by kind: what the training stages write, how to find the model in it, and who loads it.

Layout (written by every training recipe; read by ``ray-slt eval``, Ray Serve and any later consumer)::

    {run}/run.json                 the run's summary; ``best.checkpoint`` names the checkpoint to use
    {run}/checkpoint_*/            a Ray Train checkpoint: train_state.json (stage, step, protocol, config)
        model/                     the model directory: safetensors + JSON, MANIFEST.json written last
    {run}/best/model/              a copy of the best checkpoint's model

Every model directory records its **kind** in ``MANIFEST.json`` (``translator``, ``pretrain``, ``vlm``, ...).
:data:`MODEL_KINDS` maps a kind to the :class:`~ray_slt.models.predictor.Predictor` class that loads it from
safetensors + JSON only; :func:`resolve` turns any of the three kinds of path above into a :class:`ModelRef`,
:func:`load_predictor` into a loaded predictor, and :func:`model_id` gives the content hash that names a model
in ``metrics.json`` and in every served answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ray_slt import storage
from ray_slt.errors import StorageError
from ray_slt.registry import Registry

MANIFEST = "MANIFEST.json"
MODEL_DIR = "model"  # the model directory inside a checkpoint
STATE_FILE = "train_state.json"  # a checkpoint's training state (stage, step, protocol, config)
RUN_FILE = "run.json"  # a run's summary

#: kind -> "module:Class" of the predictor that loads a saved model of that kind.
MODEL_KINDS = Registry(
    "model kind",
    {
        "translator": "ray_slt.models.predictors:TranslatorPredictor",
        "text2gloss": "ray_slt.models.text2gloss:Text2GlossPredictor",
        "textlm": "ray_slt.models.textlm:TextLMPredictor",
        "pretrain": "ray_slt.models.predictors:PretrainPredictor",
        "vlm": "ray_slt.models.vlm.predictor:VLMPredictor",
        "recognizer": "ray_slt.models.recognition:RecognizerPredictor",
        "producer": "ray_slt.models.producer:ProducerPredictor",
        "producer_set": "ray_slt.models.producer_set:ProducerSetPredictor",
        "lexicon_producer": "ray_slt.models.lexicon_producer:LexiconProducerPredictor",
    },
)


@dataclass
class ModelRef:
    """A saved model and where it came from.

    ``model``: the model directory; ``kind``: its kind (from its manifest); ``checkpoint``: the checkpoint (or
    model) directory it was found in; ``train_config``: the run's training config as a dict (None for a bare
    model directory); ``stage``, ``step`` and ``protocol`` (the evaluation protocol of the stage that trained
    it) from the checkpoint's ``train_state.json`` when there is one."""

    model: str
    kind: str
    checkpoint: str
    train_config: dict[str, Any] | None = None
    stage: str | None = None
    step: int | None = None
    protocol: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A short name for people: the checkpoint directory's name."""
        return storage.basename(storage.normalize(self.checkpoint)) or "model"


def read_manifest(model_uri: str) -> dict[str, Any]:
    uri = storage.join(model_uri, MANIFEST)
    if not storage.exists(uri):
        raise StorageError(f"{model_uri}: not a complete model directory (no {MANIFEST})")
    return json.loads(storage.read_text(uri))


def model_kind(model_uri: str) -> str:
    """The kind a model directory's manifest records."""
    kind = read_manifest(model_uri).get("kind")
    if not kind:
        raise StorageError(f"{model_uri}: its {MANIFEST} records no model kind (not a model ray_slt saved)")
    return str(kind)


def resolve(uri: str) -> ModelRef:
    """The model of a run directory (its best checkpoint, from ``run.json``), a checkpoint directory (``model/``
    and ``train_state.json``) or a model directory (``MANIFEST.json``), local or remote."""
    uri = storage.normalize(uri)
    run_json = storage.join(uri, RUN_FILE)
    if storage.exists(run_json):
        run = json.loads(storage.read_text(run_json))
        best = (run.get("best") or {}).get("checkpoint")
        if not best:
            raise StorageError(f"{uri}: the run has no checkpoint")
        return resolve(best)
    state_uri = storage.join(uri, STATE_FILE)
    if storage.exists(state_uri):
        state = json.loads(storage.read_text(state_uri))
        model = storage.join(uri, MODEL_DIR)
        return ModelRef(
            model=model,
            kind=model_kind(model),
            checkpoint=uri,
            train_config=state.get("config"),
            stage=state.get("stage"),
            step=state.get("step"),
            protocol=state.get("protocol"),
        )
    if storage.exists(storage.join(uri, MANIFEST)):
        return ModelRef(model=uri, kind=model_kind(uri), checkpoint=uri)
    raise StorageError(f"{uri}: not a run directory, checkpoint or model directory (no {RUN_FILE}, {STATE_FILE} "
                       f"or {MANIFEST})")  # fmt: skip


def model_id(model_uri: str) -> str:
    """A content hash of the model's files (as listed by its manifest): the same weights, the same id."""
    files = read_manifest(model_uri)["files"]
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["path"]):
        h.update(f["path"].encode() + b"\0")
        with storage.open_read(storage.join(model_uri, *f["path"].split("/"))) as fin:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def predictor_class(kind: str):
    return MODEL_KINDS.get(kind)


def load_predictor(uri: str | ModelRef, device: str = "cpu", **options: Any):
    """The predictor of a saved model (``uri`` as for :func:`resolve`), loaded on ``device``; ``options`` are the
    predictor's own (decoding settings, caches; see its class): one it does not take is refused by name."""
    ref = uri if isinstance(uri, ModelRef) else resolve(uri)
    cls = predictor_class(ref.kind)
    cls.check_options(options)
    return cls(ref, device=device, **options)


def copy_model(src: str, dst: str) -> None:
    """Copy a model directory file by file (each copy atomic), its MANIFEST.json last."""
    files = read_manifest(src)["files"]
    storage.remove(storage.join(dst, MANIFEST))
    for f in files:
        parts = f["path"].split("/")
        storage.copy(storage.join(src, *parts), storage.join(dst, *parts))
    storage.copy(storage.join(src, MANIFEST), storage.join(dst, MANIFEST))
