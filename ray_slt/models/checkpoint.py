"""Checkpoints of the translator models: directories of safetensors + JSON, local or remote (``s3://``).

A translator (stage 2) checkpoint (model kind ``translator``)::

    translator.json          format, version, the SFTConfig, where the base LM comes from
    modules.safetensors      sign encoder, DINOv2 projections, projector
    lora/                    PEFT adapter (adapter_config.json + adapter_model.safetensors), when the LM
                             trains LoRA (``lm_training``)
    tokenizer/               the LM tokenizer (save_pretrained)
    gloss_tokenizer/         the gloss vocabulary (gloss encoder only)
    base_lm/                 the LM weights + config under the adapter, for a tiny random-initialised LM; the
                             whole trained LM when it trains in full (otherwise a real LM is reloaded from its
                             model id / path in the config)
    MANIFEST.json            the model kind and every file above with its size; written last

A pretraining (stage 1) checkpoint (kind ``pretrain``) has ``pretrain.json``, ``modules.safetensors``,
``tokenizer/`` and the manifest; a text language model (kind ``textlm``) ``textlm.json``, ``tokenizer/``, ``lm/``
(its config and ``model.safetensors``) and the manifest. Everything is written to a local temporary directory
first and then copied file by file through :mod:`ray_slt.storage` (each copy atomic), the manifest last, so a
reader that finds the manifest finds a complete checkpoint. Loading reads safetensors and JSON only: no pickle,
no repository code.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from ray_slt import storage
from ray_slt.errors import ConfigError, StorageError
from ray_slt.models.config import PretrainConfig, SFTConfig, SkeletonEncoderConfig, Text2GlossConfig
from ray_slt.models.registry import MANIFEST

TRANSLATOR_FORMAT = "ray_slt.translator"
PRETRAIN_FORMAT = "ray_slt.pretrain"
VERSION = 1


# -- moving directories through storage --------------------------------------------------------------------
def publish(local_dir: str, uri: str, kind: str | None = None) -> None:
    """Copy every file of ``local_dir`` to ``uri`` (local or remote), then write the manifest. ``kind`` is the
    model kind the manifest records (the key of :data:`ray_slt.models.registry.MODEL_KINDS` whose predictor
    loads it); None for directories that are not models ray_slt loads by kind (a merged base LM)."""
    files = []
    for root, _, names in os.walk(local_dir):
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
            if rel != MANIFEST:
                files.append({"path": rel, "size": os.path.getsize(path)})
    storage.remove(storage.join(uri, MANIFEST))  # an interrupted overwrite must not look complete
    for f in files:
        storage.copy(os.path.join(local_dir, f["path"]), storage.join(uri, *f["path"].split("/")))
    manifest = {"kind": kind, "files": files} if kind else {"files": files}
    storage.write_text(storage.join(uri, MANIFEST), json.dumps(manifest, indent=1))


@contextlib.contextmanager
def fetched(uri: str) -> Iterator[str]:
    """A local directory with the checkpoint at ``uri`` (downloaded to a temporary one if remote)."""
    manifest_uri = storage.join(uri, MANIFEST)
    if not storage.exists(manifest_uri):
        raise StorageError(f"{uri}: not a complete checkpoint (no {MANIFEST})")
    if storage.is_local(uri):
        yield storage.normalize(uri)
        return
    files = json.loads(storage.read_text(manifest_uri))["files"]
    with tempfile.TemporaryDirectory(prefix="ray_slt_ckpt_") as d:
        for f in files:
            rel = f["path"]
            if rel.startswith("/") or ".." in rel.split("/"):
                raise StorageError(f"{uri}: manifest names a file outside the checkpoint: {rel!r}")
            target = os.path.join(d, *rel.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            storage.copy(storage.join(uri, *rel.split("/")), target)
        yield d


@contextlib.contextmanager
def localized(path: str) -> Iterator[str]:
    """A local path for ``path``: itself if local, a download if remote, unchanged if it is a model id."""
    if storage.is_local(path):
        local = storage.normalize(path)
        yield local if os.path.exists(local) else path
        return
    if storage.exists(storage.join(path, MANIFEST)):
        with fetched(path) as d:
            yield d
        return
    with tempfile.TemporaryDirectory(prefix="ray_slt_model_") as d:
        base = storage.normalize(path)
        found = [u for u in storage.glob(storage.join(base, "**")) if not storage.isdir(u)]
        if not found:
            raise StorageError(f"{path}: no files")
        for u in found:
            rel = u[len(base) :].lstrip("/")
            target = os.path.join(d, *rel.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            storage.copy(u, target)
        yield d


def lora_dir(local_dir: str, uri: str) -> str:
    """The checkpoint's LoRA adapter folder, once its weights are known to be safetensors: without
    ``adapter_model.safetensors`` PEFT would fall back to a pickled ``adapter_model.bin``."""
    path = os.path.join(local_dir, "lora")
    if not os.path.isfile(os.path.join(path, "adapter_model.safetensors")):
        raise StorageError(f"{uri}: no lora/adapter_model.safetensors (adapters are only loaded from safetensors)")
    return path


def _read_meta(local_dir: str, name: str, fmt: str) -> dict[str, Any]:
    meta = json.loads(storage.read_text(os.path.join(local_dir, name)))
    if meta.get("format") != fmt:
        raise StorageError(f"{local_dir}: {name} is not a {fmt} checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise StorageError(f"{local_dir}: unsupported checkpoint version {meta.get('version')!r}")
    return meta


def _save_tensors(tensors: dict[str, torch.Tensor], path: str) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path, metadata={"format": "pt"})


# -- stage 2: the translator ---------------------------------------------------------------------------------
def _base_lm(model):
    """The LM under the adapter (the LM itself when it has none)."""
    from peft import PeftModel

    return model.lm.get_base_model() if isinstance(model.lm, PeftModel) else model.lm


def _base_lm_state(model) -> dict[str, torch.Tensor]:
    """The base LM's weights under its own names (PEFT's LoRA layers and wrappers removed), each shared tensor
    once, under the first name it has (tied embeddings and output layer: ``from_pretrained`` ties them again)."""
    base = _base_lm(model)
    state, seen = {}, set()
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        storage_id = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if storage_id in seen:
            continue
        seen.add(storage_id)
        state[key.replace(".base_layer.", ".")] = value
    return state


#: The config classes a translator checkpoint may carry (``config_class`` in translator.json), by name.
TRANSLATOR_CONFIGS: dict[str, type[SFTConfig]] = {"SFTConfig": SFTConfig, "Text2GlossConfig": Text2GlossConfig}


def save_translator(model, uri: str, kind: str = "translator") -> None:
    """Save a :class:`~ray_slt.models.sft.SignTranslator` to a local or remote directory. ``kind``: the model
    kind the manifest records (``text2gloss`` for a text -> gloss model: another predictor serves it)."""
    from ray_slt.models.sft import is_tiny

    cfg: SFTConfig = model.cfg
    with tempfile.TemporaryDirectory(prefix="ray_slt_save_") as d:
        modules = {k: v for k, v in model.state_dict().items() if not k.startswith("lm.")}
        _save_tensors(modules, os.path.join(d, "modules.safetensors"))
        if cfg.uses_lora:
            model.lm.save_pretrained(os.path.join(d, "lora"), safe_serialization=True)
        own_lm = is_tiny(cfg) or not cfg.uses_lora  # weights no model id can give back
        model.tokenizer.save_pretrained(os.path.join(d, "tokenizer"))
        if model.gloss_tokenizer is not None:
            model.gloss_tokenizer.save_pretrained(os.path.join(d, "gloss_tokenizer"))
        if own_lm:
            base_dir = os.path.join(d, "base_lm")
            os.makedirs(base_dir)
            _base_lm(model).config.save_pretrained(base_dir)
            _save_tensors(_base_lm_state(model), os.path.join(base_dir, "model.safetensors"))
        meta = {
            "format": TRANSLATOR_FORMAT,
            "version": VERSION,
            "config_class": type(cfg).__name__,
            "config": cfg.model_dump(mode="json"),
            "base_lm": "base_lm" if own_lm else cfg.lm,
        }
        with open(os.path.join(d, "translator.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        publish(d, uri, kind=kind)


def load_translator(uri: str, trainable: bool = False):
    """Load a translator saved by :func:`save_translator`. ``trainable=True`` keeps what trains trainable (LoRA,
    or the whole LM) to resume or to start every rank from the same weights; otherwise the model is returned in
    eval mode. Checkpoints written before ``lm_training`` existed always trained LoRA."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from ray_slt.models.gloss import GlossEncoder
    from ray_slt.models.sft import SignTranslator, load_lm
    from ray_slt.models.skeleton import SkeletonEncoder

    with fetched(uri) as d:
        meta = _read_meta(d, "translator.json", TRANSLATOR_FORMAT)
        config_class = TRANSLATOR_CONFIGS.get(meta.get("config_class", "SFTConfig"))
        if config_class is None:
            raise StorageError(f"{uri}: unknown translator config class {meta.get('config_class')!r}")
        cfg = config_class.model_validate({"lm_training": "lora", **meta["config"]})
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(d, "tokenizer"), trust_remote_code=False)
        gloss_tokenizer = None
        if cfg.encoder.type == "gloss":
            gloss_tokenizer = AutoTokenizer.from_pretrained(os.path.join(d, "gloss_tokenizer"), trust_remote_code=False)
            encoder = GlossEncoder(cfg.encoder, len(gloss_tokenizer), gloss_tokenizer.pad_token_id)
        else:
            encoder = SkeletonEncoder(cfg.encoder)
        if meta["base_lm"] == "base_lm":
            base = load_lm(os.path.join(d, "base_lm"), cfg.dtype)
        else:
            base = load_lm(meta["base_lm"], cfg.dtype)
        if cfg.uses_lora:
            lm = PeftModel.from_pretrained(base, lora_dir(d, uri), is_trainable=trainable)
        else:
            lm = base.requires_grad_(trainable)
        model = SignTranslator(cfg, encoder, lm, tokenizer, gloss_tokenizer)
        state = load_file(os.path.join(d, "modules.safetensors"))
    expected = {k for k in model.state_dict() if not k.startswith("lm.")}
    if set(state) != expected:
        raise StorageError(
            f"{uri}: modules.safetensors does not match the config "
            f"(missing {sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]})"
        )
    model.load_state_dict(state, strict=False)
    return model.train() if trainable else model.eval()


# -- stage 1: the pretraining model --------------------------------------------------------------------------
def save_pretrain(model, uri: str) -> None:
    """Save a :class:`~ray_slt.models.pretrain.PretrainModel` to a local or remote directory."""
    with tempfile.TemporaryDirectory(prefix="ray_slt_save_") as d:
        save_model(model, os.path.join(d, "modules.safetensors"), metadata={"format": "pt"})
        model.tokenizer.save_pretrained(os.path.join(d, "tokenizer"))
        meta = {"format": PRETRAIN_FORMAT, "version": VERSION, "config": model.cfg.model_dump(mode="json")}
        with open(os.path.join(d, "pretrain.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        publish(d, uri, kind="pretrain")


def load_pretrain(uri: str):
    """Load a stage-1 model saved by :func:`save_pretrain` (in eval mode)."""
    from transformers import AutoTokenizer

    from ray_slt.models.pretrain import PretrainModel

    with fetched(uri) as d:
        meta = _read_meta(d, "pretrain.json", PRETRAIN_FORMAT)
        cfg = PretrainConfig.model_validate(meta["config"])
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(d, "tokenizer"), trust_remote_code=False)
        model = PretrainModel(cfg, tokenizer)
        _missing, _unexpected = load_model(model, os.path.join(d, "modules.safetensors"), strict=True)
    return model.eval()


# -- a text LM ------------------------------------------------------------------------------------------------
TEXTLM_FORMAT = "ray_slt.textlm"
TEXTLM_META = "textlm.json"


def save_textlm(model, uri: str) -> None:
    """Save a :class:`~ray_slt.models.textlm.TextLM` (kind ``textlm``): ``textlm.json`` (format, version, config),
    ``tokenizer/`` and ``lm/`` (its config and ``model.safetensors``), the manifest last."""
    with tempfile.TemporaryDirectory(prefix="ray_slt_save_") as d:
        model.tokenizer.save_pretrained(os.path.join(d, "tokenizer"))
        lm_dir = os.path.join(d, "lm")
        os.makedirs(lm_dir)
        model.lm.config.save_pretrained(lm_dir)
        _save_tensors(_base_lm_state(model), os.path.join(lm_dir, "model.safetensors"))
        meta = {"format": TEXTLM_FORMAT, "version": VERSION, "config": model.cfg.model_dump(mode="json")}
        with open(os.path.join(d, TEXTLM_META), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        publish(d, uri, kind="textlm")


def load_textlm(uri: str, trainable: bool = False):
    """Load a text LM saved by :func:`save_textlm` (eval mode unless ``trainable``); safetensors and JSON only."""
    from transformers import AutoTokenizer

    from ray_slt.models.config import TextLMConfig
    from ray_slt.models.sft import load_lm
    from ray_slt.models.textlm import TextLM

    with fetched(uri) as d:
        meta = _read_meta(d, TEXTLM_META, TEXTLM_FORMAT)
        cfg = TextLMConfig.model_validate(meta["config"])
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(d, "tokenizer"), trust_remote_code=False)
        lm = load_lm(os.path.join(d, "lm"), cfg.dtype).requires_grad_(trainable)
        model = TextLM(cfg, lm, tokenizer)
    return model.train() if trainable else model.eval()


def load_pretrained_skeleton(uri: str, expected: SkeletonEncoderConfig | None = None):
    """The skeleton encoder of a stage-1 checkpoint (to initialise stage 2). With ``expected``, its config
    must equal the checkpoint's, so an SFT config cannot silently disagree with the weights it loads."""
    model = load_pretrain(uri)
    if expected is not None and expected != model.cfg.skeleton:
        mine, theirs = expected.model_dump(), model.cfg.skeleton.model_dump()
        diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
        raise ConfigError(f"encoder config differs from the stage-1 checkpoint {uri}: {diff} (config, checkpoint)")
    return model.skeleton.train()
