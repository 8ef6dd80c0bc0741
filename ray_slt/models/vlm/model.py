"""The small-VLM translator: a transformers VLM with its vision tower frozen, its connector trained and LoRA on
its language model (RESEARCH.md section 1).

:class:`VLMTranslator` wraps the ``*ForConditionalGeneration`` model (LoRA layers injected by PEFT) and its
tokenizer. A batch (from :meth:`VLMTranslator.collate`) carries, per sample, either the video's pixel values
or the frozen tower's cached output (:mod:`ray_slt.models.vlm.cache`). The one hook between the two:

    features = model.vision_features(pixels)        # frozen tower, no gradients  <- or read from the cache
    embeds   = model.video_embeddings(features, layout)   # trainable connector
    model.hf(input_ids, ..., mm_encoder_outputs=...)       # the LM with LoRA (transformers' own hook)

so a cached sample and a computed one go through exactly the same connector and LM code (tests check the
loss is identical, and identical to transformers' own ``pixel_values`` path).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ray_slt.dtypes import torch_dtype
from ray_slt.errors import ConfigError, DataError
from ray_slt.models.vlm.config import VLMConfig
from ray_slt.models.vlm.families import Family, FrameSpec, VideoLayout, family_for, frame_times


def resolve_dtype(name: str) -> torch.dtype:
    return torch_dtype(name, "vlm.dtype")


def prepare_video(
    family: Family, spec: FrameSpec, frames: np.ndarray, frame_indices: Sequence[int], fps: float | None, span_len: int
) -> tuple[dict[str, torch.Tensor], VideoLayout]:
    """Eq. 1 frames of one sample (RGB uint8 [T, H, W, 3]) -> the family's pixel tensors and the video layout."""
    pixels = family.pixels(frames, spec)
    timestamps, duration = frame_times(np.asarray(frame_indices), fps, span_len)
    return pixels, family.layout(pixels, spec, timestamps, duration)


def vision_fingerprint(family: Family, model: nn.Module) -> str:
    """SHA-256 of the frozen vision weights (names, dtypes, shapes, bytes): part of every cache key, so a
    changed tower never hits features computed by another one."""
    h = hashlib.sha256()
    for name, t in sorted(family.frozen_state(model).items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class VLMTranslator(nn.Module):
    """Frozen vision tower + trainable connector + LM with LoRA. ``forward(batch)`` -> output with ``.loss``;
    ``generate(batch)`` -> list of strings; ``collate(rows)`` -> batch."""

    def __init__(
        self, cfg: VLMConfig, family: Family, peft_model: nn.Module, tokenizer, frame_spec: FrameSpec, base: str
    ):
        super().__init__()
        self.cfg = cfg
        self.family = family
        self.peft = peft_model
        self.tokenizer = tokenizer
        self.frame_spec = frame_spec
        self.base = base  # where the base model comes from (model id / path) or "base_model" (tiny, inside)
        self.base_source: str | None = None  # a tiny base model's directory (to copy into checkpoints)
        self.end_id = tokenizer.convert_tokens_to_ids(family.end_token)
        if self.end_id is None or self.end_id == tokenizer.unk_token_id:
            raise ConfigError(f"the tokenizer has no {family.end_token!r} token ({family.name} chat format)")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id
        self._freeze()

    # -- parts ------------------------------------------------------------------------------------------------
    @property
    def hf(self) -> nn.Module:
        """The transformers model (with LoRA layers in place)."""
        return self.peft.get_base_model()

    @property
    def config(self):
        return self.hf.config

    @property
    def vision_tower(self) -> nn.Module:
        return self.family.vision_tower(self.hf)

    @property
    def connector(self) -> nn.Module:
        return self.family.connector(self.hf)

    @property
    def device(self) -> torch.device:
        return next(self.connector.parameters()).device

    def _freeze(self) -> None:
        """Everything frozen but LoRA (PEFT marks it) and the connector; trainable weights kept in fp32."""
        lora = {id(p) for n, p in self.hf.named_parameters() if "lora_" in n}
        conn = {id(p) for p in self.connector.parameters()}
        for p in self.hf.parameters():
            trainable = id(p) in lora or id(p) in conn
            p.requires_grad_(trainable)
            if trainable and p.dtype != torch.float32:
                p.data = p.data.float()

    def train(self, mode: bool = True) -> VLMTranslator:
        super().train(mode)
        self.vision_tower.eval()  # the frozen tower keeps inference behaviour (no dropout)
        self.connector.train(mode)  # (Qwen2.5-VL's connector, the merger, sits inside its tower)
        return self

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        lora = [p for n, p in self.hf.named_parameters() if p.requires_grad and "lora_" in n]
        conn = [p for p in self.connector.parameters() if p.requires_grad]
        return {"lora": lora, "connector": conn}

    # -- the hook between pixels and cached features ----------------------------------------------------------
    @torch.no_grad()
    def vision_features(self, pixels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The frozen tower's output for one sample's video, before the connector (what the cache stores)."""
        return self.family.encode(self.hf, dict(pixels))

    def video_embeddings(self, features: torch.Tensor, layout: VideoLayout) -> torch.Tensor:
        """Connector: tower output -> the video's LM input embeddings [N, E] (gradients flow here)."""
        return self.family.connect(self.hf, features.to(self.device), layout)

    def vision_fingerprint(self) -> str:
        return vision_fingerprint(self.family, self.hf)

    # -- text -------------------------------------------------------------------------------------------------
    def default_system(self) -> str | None:
        return self.cfg.system_prompt if self.cfg.system_prompt is not None else self.family.default_system

    def prompt_text(
        self, layout: VideoLayout | None, sign_language: str | None, prompt: str | None = None, **system: str | None
    ) -> str:
        """The chat-formatted prompt: the video (none when ``layout`` is None: a text-only question), then
        ``prompt`` (default: the configured translation prompt of ``sign_language``); ``system=`` replaces the
        configured system message (None: no system turn)."""
        sys_text = system["system"] if "system" in system else self.default_system()
        video = self.family.video_text(self.config, layout) if layout is not None else ""
        return self.family.prefix(video, prompt if prompt is not None else self.cfg.prompt_for(sign_language), sys_text)

    def text_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (a prompt or a target)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def target_ids(self, text: str) -> list[int]:
        ids = self.text_ids(self.family.target(text))[: self.cfg.max_target_tokens - 1]
        return [*ids, self.end_id]

    # -- batches ----------------------------------------------------------------------------------------------
    def collate(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Samples -> a batch. A sample has ``layout`` (VideoLayout or dict), either ``vision`` (cached tower
        output) or ``pixels`` (dict of tensors), ``sign_language``, and for training ``text``; optionally its own
        ``prompt`` and ``system`` (a question of the VLM benchmarks) instead of the configured ones.

        Batch: ``input_ids``/``attention_mask``/``labels`` [B, L] (prompt + target + end token, right-padded;
        labels -100 outside the target), ``prompt_ids``/``prompt_mask`` [B, P] (left-padded, for generation),
        ``vision``/``pixels``/``layouts`` per sample, ``texts``, ``sample_ids``, ``langs``."""
        if not samples:
            raise DataError("empty batch")
        prompts, fulls, labels, layouts = [], [], [], []
        for s in samples:
            layout = s["layout"] if isinstance(s["layout"], VideoLayout) else VideoLayout.from_dict(dict(s["layout"]))
            layouts.append(layout)
            own = {"system": s["system"]} if "system" in s else {}
            p = self.text_ids(self.prompt_text(layout, s.get("sign_language"), s.get("prompt"), **own))
            prompts.append(p)
            text = s.get("text")
            t = self.target_ids(text) if text is not None else []
            fulls.append(p + t)
            labels.append([-100] * len(p) + t)
            if s.get("vision") is None and s.get("pixels") is None:
                raise DataError(f"sample {s.get('sample_id')!r} has neither cached vision features nor pixels")
        width = max(len(f) for f in fulls)
        input_ids = torch.full((len(fulls), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(fulls), width), dtype=torch.long)
        label_t = torch.full((len(fulls), width), -100, dtype=torch.long)
        for i, (f, lab) in enumerate(zip(fulls, labels)):
            input_ids[i, : len(f)] = torch.tensor(f)
            attention[i, : len(f)] = 1
            label_t[i, : len(lab)] = torch.tensor(lab)
        pw = max(len(p) for p in prompts)
        prompt_ids = torch.full((len(prompts), pw), self.pad_id, dtype=torch.long)
        prompt_mask = torch.zeros((len(prompts), pw), dtype=torch.long)
        for i, p in enumerate(prompts):
            prompt_ids[i, pw - len(p) :] = torch.tensor(p)
            prompt_mask[i, pw - len(p) :] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": label_t,
            "prompt_ids": prompt_ids,
            "prompt_mask": prompt_mask,
            "vision": [s.get("vision") for s in samples],
            "pixels": [s.get("pixels") for s in samples],
            "layouts": layouts,
            "texts": [s.get("text") for s in samples],
            "sample_ids": [s.get("sample_id") for s in samples],
            "langs": [s.get("spoken_language") for s in samples],
        }

    def _embeds(self, batch: Mapping[str, Any]) -> list[torch.Tensor]:
        out = []
        for vision, pixels, layout in zip(batch["vision"], batch["pixels"], batch["layouts"]):
            if vision is None:
                pixels = {k: v.to(self.device) for k, v in pixels.items()}
                vision = self.vision_features(pixels)
            out.append(self.video_embeddings(vision, layout))
        return out

    def mm_inputs(self, batch: Mapping[str, Any], input_ids: torch.Tensor) -> dict[str, Any]:
        """The LM's multimodal keyword inputs for ``input_ids`` (the batch's frames embedded where its video
        placeholders are), in the family's own form."""
        embeds = self._embeds(batch)
        return self.family.mm_inputs(embeds, list(batch["layouts"]), input_ids, self.tokenizer)

    # -- training and inference -------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]):
        """The LM output of a training batch; ``.loss`` is the mean cross-entropy over target tokens."""
        ids = batch["input_ids"].to(self.device)
        return self.hf(
            input_ids=ids,
            attention_mask=batch["attention_mask"].to(self.device),
            labels=batch["labels"].to(self.device),
            use_cache=False,
            **self.mm_inputs(batch, ids),
        )

    @torch.no_grad()
    def generate_ids(
        self,
        batch: Mapping[str, Any],
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        synced_gpus: bool = False,
    ) -> torch.Tensor:
        """Generated token ids [B, <= max_new_tokens] after the prompt (greedy unless ``num_beams`` > 1)."""
        from transformers import GenerationConfig

        ids = batch["prompt_ids"].to(self.device)
        gen = GenerationConfig(
            max_new_tokens=max_new_tokens or self.cfg.max_new_tokens,
            num_beams=num_beams or self.cfg.num_beams,
            do_sample=False,
            eos_token_id=self.end_id,
            pad_token_id=self.pad_id,
        )
        out = self.hf.generate(
            input_ids=ids,
            attention_mask=batch["prompt_mask"].to(self.device),
            generation_config=gen,
            synced_gpus=synced_gpus,
            **self.mm_inputs(batch, ids),
        )
        return out[:, ids.shape[1] :]

    def generate(
        self,
        batch: Mapping[str, Any],
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        synced_gpus: bool = False,
    ) -> list[str]:
        """Translations of a batch (call ``eval()`` first; decoding is deterministic)."""
        ids = self.generate_ids(batch, max_new_tokens=max_new_tokens, num_beams=num_beams, synced_gpus=synced_gpus)
        return [s.strip() for s in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


# ------------------------------------------------------------------------------------------------ building


def read_preprocessor(local_dir: str) -> dict[str, dict[str, Any]]:
    """The checkpoint's preprocessor configs: ``{"image": preprocessor_config.json, "video":
    video_preprocessor_config.json}`` as dicts (empty when absent). Families read the video one first: a
    video processor's settings (e.g. Qwen2.5-VL's pixel bounds per frame) differ from the image processor's."""
    import os

    out: dict[str, dict[str, Any]] = {}
    for key, name in (("image", "preprocessor_config.json"), ("video", "video_preprocessor_config.json")):
        path = os.path.join(local_dir, name)
        out[key] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                out[key] = json.load(f)
    return out


def hub_or_local(path: str, revision: str | None):
    """A local directory for ``path``: itself, a download of an s3 directory, or a hub snapshot."""
    import os

    from ray_slt.models.checkpoint import localized

    @contextlib.contextmanager
    def ctx():
        with localized(path) as local:
            if os.path.isdir(local):
                yield local
                return
            from huggingface_hub import snapshot_download

            yield snapshot_download(
                local, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
            )

    return ctx()


def load_base(cfg: VLMConfig, path: str) -> tuple[nn.Module, Any, Family, FrameSpec]:
    """The pretrained (or materialised tiny) VLM, its tokenizer, family and frame spec from a directory/id.
    Safetensors only, no repository code."""
    from transformers import AutoConfig, AutoTokenizer

    with hub_or_local(path, cfg.revision) as local:
        hf_config = AutoConfig.from_pretrained(local, trust_remote_code=False)
        family = family_for(hf_config.model_type)
        if cfg.family not in ("auto", family.name):
            raise ConfigError(f"{path} is a {family.name} checkpoint but the config says family={cfg.family}")
        model = family.model_class().from_pretrained(
            local, dtype=resolve_dtype(cfg.dtype), use_safetensors=True, trust_remote_code=False
        )
        tokenizer = AutoTokenizer.from_pretrained(local, trust_remote_code=False)
        spec = family.frame_spec(model.config, read_preprocessor(local), cfg.frames)
    return model.eval(), tokenizer, family, spec


def wrap(
    cfg: VLMConfig, model: nn.Module, tokenizer, family: Family, spec: FrameSpec, base: str, seed: int = 0
) -> VLMTranslator:
    """Inject fresh LoRA layers (the family's paper settings unless the config overrides them)."""
    from peft import LoraConfig, get_peft_model

    from ray_slt.models.vlm.families import lora_target_regex

    fam = cfg.family_default
    lora = LoraConfig(
        target_modules=lora_target_regex(family, cfg.lora.target_modules),
        r=cfg.lora.r or fam(family.name, "r"),
        lora_alpha=cfg.lora.alpha or fam(family.name, "alpha"),
        lora_dropout=cfg.lora.dropout if cfg.lora.dropout is not None else fam(family.name, "dropout"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, lora)
    return VLMTranslator(cfg, family, peft_model, tokenizer, spec, base)


def build_vlm(cfg: VLMConfig, texts: Sequence[str] | None = None, seed: int = 0) -> VLMTranslator:
    """A fresh translator: the base model (a ``tiny:`` one is materialised at ``tiny.path`` first, its tokenizer
    trained on ``texts``) with new LoRA layers."""
    from ray_slt.models.vlm.tiny import ensure_tiny

    path = ensure_tiny(cfg, texts) if cfg.is_tiny else cfg.model
    model, tokenizer, family, spec = load_base(cfg, path)
    out = wrap(cfg, model, tokenizer, family, spec, "base_model" if cfg.is_tiny else cfg.model, seed=seed)
    out.base_source = path if cfg.is_tiny else None
    return out


def param_groups(model: VLMTranslator) -> list[dict[str, Any]]:
    """AdamW groups: ``lora`` at ``lr`` and ``connector`` at ``lr_connector`` (default ``lr``)."""
    cfg = model.cfg
    lr = cfg.lr or cfg.family_default(model.family.name, "lr")
    parts = model.trainable_parameters()
    groups = [
        {"name": "lora", "params": parts["lora"], "lr": lr, "weight_decay": cfg.weight_decay},
        {
            "name": "connector",
            "params": parts["connector"],
            "lr": cfg.lr_connector or lr,
            "weight_decay": cfg.weight_decay,
        },
    ]
    return [g for g in groups if g["params"]]
