"""Checkpoints of the VLM translators: directories of safetensors + JSON, local or ``s3://``.

::

    vlm.json                 format, version, the VLMConfig, family, where the base model comes from, frame spec
    lora/                    PEFT adapter of the language model (adapter_config.json + adapter_model.safetensors)
    connector.safetensors    the trained connector (fully fine-tuned, so saved whole)
    tokenizer/               the tokenizer (save_pretrained)
    base_model/              only for a tiny random model: its config + weights (a real base model is reloaded
                             from its model id / path in the config; its frozen weights never change)
    MANIFEST.json            every file above with its size; written last (:func:`ray_slt.models.checkpoint.publish`)

Loading reads safetensors and JSON only: no pickle, no repository code.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch
from safetensors.torch import load_file, save_file

from ray_slt import storage
from ray_slt.errors import StorageError
from ray_slt.models.checkpoint import fetched, lora_dir, publish
from ray_slt.models.vlm.config import VLMConfig

FORMAT = "ray_slt.vlm_translator"
VERSION = 1
META = "vlm.json"


def save_vlm(model, uri: str) -> None:
    """Save a :class:`~ray_slt.models.vlm.model.VLMTranslator` to a local or remote directory."""
    with tempfile.TemporaryDirectory(prefix="ray_slt_vlm_save_") as d:
        model.peft.save_pretrained(os.path.join(d, "lora"), safe_serialization=True)
        conn = {k: v.detach().contiguous().cpu() for k, v in model.connector.state_dict().items()}
        save_file(conn, os.path.join(d, "connector.safetensors"), metadata={"format": "pt"})
        model.tokenizer.save_pretrained(os.path.join(d, "tokenizer"))
        if model.base == "base_model":  # a tiny model: ship its (frozen, random) base weights and config
            src = model.base_source or model.cfg.tiny.path
            os.makedirs(os.path.join(d, "base_model"))
            for path in storage.listdir(src):
                name = storage.basename(path)
                if name.endswith((".json", ".safetensors")) and name != "MANIFEST.json":
                    storage.copy(path, os.path.join(d, "base_model", name))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "config": model.cfg.model_dump(mode="json"),
            "family": model.family.name,
            "model_type": model.config.model_type,
            "base": model.base,
            "frame_spec": model.frame_spec.as_dict(),
        }
        with open(os.path.join(d, META), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, ensure_ascii=False)
        publish(d, uri, kind="vlm")


def load_vlm(uri: str, trainable: bool = False, dtype: str | None = None):
    """Load a translator saved by :func:`save_vlm` (eval mode unless ``trainable``). ``dtype`` overrides the
    saved config's (``auto`` resolves on this machine)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from ray_slt.models.vlm.model import VLMTranslator, load_base

    with fetched(uri) as d:
        with open(os.path.join(d, META), encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise StorageError(
                f"{uri}: not a {FORMAT} v{VERSION} checkpoint ({meta.get('format')!r} v{meta.get('version')!r})"
            )
        cfg = VLMConfig.model_validate(meta["config"])
        if dtype is not None:
            cfg = cfg.model_copy(update={"dtype": dtype})
        base = os.path.join(d, "base_model") if meta["base"] == "base_model" else meta["base"]
        model, _, family, spec = load_base(cfg, base)
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(d, "tokenizer"), trust_remote_code=False)
        peft_model = PeftModel.from_pretrained(model, lora_dir(d, uri), is_trainable=trainable)
        translator = VLMTranslator(cfg, family, peft_model, tokenizer, spec, meta["base"])
        if meta["base"] == "base_model":
            translator.base_source = storage.join(uri, "base_model")
        state = load_file(os.path.join(d, "connector.safetensors"))
    conn = translator.connector
    expected = set(conn.state_dict())
    if set(state) != expected:
        raise StorageError(
            f"{uri}: connector.safetensors does not match the model's connector (missing "
            f"{sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]})"
        )
    with torch.no_grad():
        for k, v in conn.state_dict().items():
            v.copy_(state[k].to(v.dtype))
    if not trainable:
        for p in translator.parameters():
            p.requires_grad_(False)
    return translator.train() if trainable else translator.eval()
