"""The three VLM families, through transformers' own model classes.

Each :class:`Family` knows, for its architecture class:

- how the video enters the model: the Eq. 1 frames resized/normalised as the family's video processor does
  (:meth:`Family.pixels`), and the placeholder tokens of its chat format (:meth:`Family.video_text`);
- where the frozen vision tower ends and the trainable connector begins: :meth:`Family.encode` runs the tower
  and returns its output *before* the connector (what the vision-feature cache stores), :meth:`Family.connect`
  turns that into LM input embeddings (what trains);
- how the LM takes those embeddings: :meth:`Family.mm_inputs` builds the ``mm_encoder_outputs`` keyword
  (transformers' own hook for pre-encoded multimodal inputs) plus family extras (Qwen2.5-VL's
  ``video_grid_thw``/``mm_token_type_ids``/``second_per_grid_ts`` for its 3D RoPE).

The transformers video processors need torchvision (not installable here), and the SmolVLM processor needs
``num2words``; so frames are prepared here with the PIL/numpy functions transformers' PIL image processors
use (``transformers.image_transforms``), following each video processor's steps:

- SmolVLM2 (Idefics3 layout, ``SmolVLMForConditionalGeneration``): resize to longest edge = S keeping the
  aspect ratio (even side), then to S x S, LANCZOS; mean/std 0.5. ``pixel_values`` [T, 3, S, S]; prompt
  "You are provided the following series of {n} frames from a {H:MM:SS} [H:MM:SS] video." with
  "\\nFrame from {MM:SS}:" + ``<fake_token_around_image><global-img><image>*k<fake_token_around_image>`` per
  frame (k = (S/patch)^2 / scale_factor^2).
- Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): ``smart_resize`` to multiples of patch * merge within
  [min_pixels, max_pixels], BICUBIC, CLIP mean/std, frames paired in time (the last repeated to an even
  count) and flattened into patches ``pixel_values_videos`` [t*h*w, 3*2*p*p] with ``video_grid_thw``;
  ``<|vision_start|><|video_pad|>*(t*h*w/merge^2)<|vision_end|>``.
- InternVL3 (``InternVLForConditionalGeneration``, the ``-hf`` layout): each frame to S x S, BICUBIC, ImageNet
  mean/std; ``Frame{i}: <img><IMG_CONTEXT>*k</img>`` lines (k = (S/patch)^2 * downsample_ratio^2).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn

from ray_slt.errors import ConfigError
from ray_slt.registry import Registry

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
# PIL resampling filters (PIL.Image.Resampling values)
LANCZOS, BICUBIC = 1, 3
# Qwen2VLVideoProcessor's class defaults (pixels per frame), used when a checkpoint states no video bounds.
QWEN_VIDEO_MIN_PIXELS, QWEN_VIDEO_MAX_PIXELS = 128 * 28 * 28, 768 * 28 * 28


@dataclass(frozen=True)
class FrameSpec:
    """How frames become pixel values for one model (recorded in cache keys and checkpoints)."""

    family: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resample: int
    size: int | None = None  # square side (SmolVLM, InternVL)
    patch_size: int | None = None  # Qwen2.5-VL
    merge_size: int | None = None
    temporal_patch_size: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameSpec:
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


@dataclass
class VideoLayout:
    """What the prompt needs to know about a sample's video (stored with cached features)."""

    num_frames: int
    timestamps: list[float] = field(default_factory=list)  # seconds of each kept frame
    duration: float = 0.0  # seconds of the sample's span
    grid_thw: list[int] | None = None  # Qwen2.5-VL: (t, h, w) patch grid of the video
    second_per_grid: float | None = None  # Qwen2.5-VL: seconds per temporal patch

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoLayout:
        return cls(**d)


def frame_times(frame_indices: np.ndarray, fps: float | None, span_len: int) -> tuple[list[float], float]:
    """Timestamps (s) of the kept frames and the span's duration (s); 1 frame per second if fps is unknown."""
    fps = float(fps) if fps and fps > 0 else 1.0
    return [float(i) / fps for i in np.asarray(frame_indices).tolist()], span_len / fps


# ----------------------------------------------------------------------------------------- image helpers


def _resize(frame: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """An RGB uint8 frame [H, W, 3] resized with PIL (as transformers' PIL image processors do)."""
    from transformers.image_transforms import resize
    from transformers.image_utils import ChannelDimension

    if frame.shape[0] == height and frame.shape[1] == width:
        return frame
    return resize(
        frame,
        (height, width),
        resample=resample,
        data_format=ChannelDimension.LAST,
        input_data_format=ChannelDimension.LAST,
    )


def _normalise(frames: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W]: x / 255, then (x - mean) / std per channel."""
    from transformers.image_transforms import normalize, rescale
    from transformers.image_utils import ChannelDimension

    out = []
    for f in frames:
        x = rescale(f, 1 / 255, data_format=ChannelDimension.FIRST, input_data_format=ChannelDimension.LAST)
        x = normalize(
            x.astype(np.float32),
            mean,
            std,
            data_format=ChannelDimension.FIRST,
            input_data_format=ChannelDimension.FIRST,
        )
        out.append(np.asarray(x, dtype=np.float32))
    return torch.from_numpy(np.stack(out))


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be RGB uint8 [T, H, W, 3] with T >= 1, got shape {frames.shape}")
    return frames.astype(np.uint8, copy=False)


_ONES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """English words of 0 <= n < 10000, as ``num2words`` writes them (``64`` -> ``sixty-four``)."""
    if n < 0 or n >= 10000:
        raise ValueError(f"number_words covers 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    if rest == 0:
        return number_words(n // 1000) + " thousand"
    joiner = " and " if rest < 100 else ", "
    return number_words(n // 1000) + " thousand" + joiner + number_words(rest)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize rule: both sides multiples of ``factor``, area within bounds, aspect ratio kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} is larger than 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _pre(pre: dict, key: str, default: Any = None) -> Any:
    """A preprocessing setting: the video processor's, else the image processor's, else ``default``."""
    for part in ("video", "image"):
        value = (pre.get(part) or {}).get(key)
        if value is not None:
            return value
    return default


def _mean_std(pre: dict, default_mean, default_std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = _pre(pre, "image_mean"), _pre(pre, "image_std")
    return (
        tuple(float(v) for v in mean) if mean else default_mean,
        tuple(float(v) for v in std) if std else default_std,
    )


# ---------------------------------------------------------------------------------------------- families


class Family:
    """The family-specific half of the VLM translator (see the module docstring)."""

    name: str = ""
    model_types: tuple[str, ...] = ()
    lm_path: str = ""  # module path of the language model inside the ForConditionalGeneration model
    end_token: str = ""  # ends an assistant turn: appended to targets, stops generation
    special_tokens: tuple[str, ...] = ()
    default_system: str | None = None

    def __init__(self, model_type: str | None = None):
        self.model_type = model_type or self.model_types[0]

    # -- model classes and parts ------------------------------------------------------------------------------
    def model_class(self) -> type:
        raise NotImplementedError

    def vision_tower(self, model: nn.Module) -> nn.Module:
        """The frozen part (for Qwen2.5-VL the whole ``visual`` module; its ``merger`` is the connector)."""
        raise NotImplementedError

    def connector(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def frozen_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The frozen vision weights (pre-connector) by name: what the vision-feature cache depends on."""
        conn = {id(p) for p in self.connector(model).parameters()}
        return {k: p for k, p in self.vision_tower(model).named_parameters() if id(p) not in conn} | {
            k: b for k, b in self.vision_tower(model).named_buffers()
        }

    def vision_config(self, model_config) -> dict[str, Any]:
        """The config values the vision features depend on (recorded in cache keys)."""
        return model_config.vision_config.to_dict()

    # -- frames -----------------------------------------------------------------------------------------------
    def frame_spec(self, model_config, pre: dict, overrides) -> FrameSpec:
        raise NotImplementedError

    def pixels(self, frames: np.ndarray, spec: FrameSpec) -> dict[str, torch.Tensor]:
        """RGB uint8 frames [T, H, W, 3] -> the tensors the vision tower takes."""
        raise NotImplementedError

    def layout(
        self, pixels: dict[str, torch.Tensor], spec: FrameSpec, timestamps: list[float], duration: float
    ) -> VideoLayout:
        return VideoLayout(num_frames=len(timestamps), timestamps=timestamps, duration=duration)

    # -- vision tower and connector ---------------------------------------------------------------------------
    def encode(self, model: nn.Module, pixels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Frozen tower output before the connector, for one sample (call under ``torch.no_grad()``)."""
        raise NotImplementedError

    def connect(self, model: nn.Module, features: torch.Tensor, layout: VideoLayout) -> torch.Tensor:
        """Connector: cached/computed tower output of one sample -> LM input embeddings [N, E]."""
        raise NotImplementedError

    def tokens_per_video(self, model_config, layout: VideoLayout) -> int:
        raise NotImplementedError

    # -- text -------------------------------------------------------------------------------------------------
    def video_text(self, model_config, layout: VideoLayout) -> str:
        raise NotImplementedError

    def prefix(self, video: str, prompt: str, system: str | None) -> str:
        """The chat-formatted prompt up to where the answer starts."""
        raise NotImplementedError

    def target(self, text: str) -> str:
        """The answer text as it follows the prefix (the end token is appended as an id)."""
        return text

    def mm_inputs(
        self, embeds: list[torch.Tensor], layouts: list[VideoLayout], input_ids: torch.Tensor, tokenizer
    ) -> dict[str, Any]:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=torch.cat(embeds))}}

    # -- tiny random models -----------------------------------------------------------------------------------
    def tiny_config(self, tiny, tokenizer):
        raise NotImplementedError

    def tiny_template_texts(self) -> list[str]:
        """Text of the chat format, so a tiny tokenizer learns merges for it."""
        return []

    def tiny_preprocessor(self, tiny) -> dict[str, Any]:
        """The ``video_preprocessor_config.json`` of a tiny checkpoint (the values :meth:`frame_spec` reads)."""
        return {}


class SmolVLMFamily(Family):
    name = "smolvlm"
    model_types = ("smolvlm", "idefics3")
    lm_path = "model.text_model"
    end_token = "<end_of_utterance>"
    special_tokens = ("<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<global-img>", "<image>")
    intro = "You are provided the following series of {frame_count} frames from a {video_duration} [H:MM:SS] video.\n"

    def model_class(self) -> type:
        from transformers import Idefics3ForConditionalGeneration, SmolVLMForConditionalGeneration

        return SmolVLMForConditionalGeneration if self.model_type == "smolvlm" else Idefics3ForConditionalGeneration

    def vision_tower(self, model):
        return model.model.vision_model

    def connector(self, model):
        return model.model.connector

    def vision_config(self, model_config) -> dict[str, Any]:
        return {"vision": model_config.vision_config.to_dict(), "model_type": model_config.model_type}

    def frame_spec(self, model_config, pre, overrides) -> FrameSpec:
        mean, std = _mean_std(pre, HALF, HALF)
        size = overrides.size or int(model_config.vision_config.image_size)
        return FrameSpec("smolvlm", mean, std, int(_pre(pre, "resample", LANCZOS)), size=size)

    def pixels(self, frames, spec):
        frames = _check_frames(frames)
        s = spec.size
        h, w = frames.shape[1:3]
        # the SmolVLM video processor: longest edge -> s (aspect kept, even other side), then s x s
        if w >= h:
            nw, nh = s, int(s / (w / h))
            nh += nh % 2
        else:
            nh, nw = s, int(s * (w / h))
            nw += nw % 2
        out = np.stack(
            [_resize(_resize(f, max(nh, 1), max(nw, 1), spec.resample), s, s, spec.resample) for f in frames]
        )
        return {"pixel_values": _normalise(out, spec.mean, spec.std)}

    def encode(self, model, pixels):
        tower = self.vision_tower(model)
        px = pixels["pixel_values"].to(device=tower.device, dtype=tower.dtype)
        p = model.config.vision_config.patch_size
        mask = torch.ones(px.shape[0], px.shape[2] // p, px.shape[3] // p, dtype=torch.bool, device=px.device)
        return tower(pixel_values=px, patch_attention_mask=mask).last_hidden_state

    def connect(self, model, features, layout):
        conn = self.connector(model)
        dtype = next(conn.parameters()).dtype
        out = conn(features.to(dtype))
        return out.reshape(-1, out.shape[-1])

    def image_seq_len(self, model_config) -> int:
        v = model_config.vision_config
        return int(((v.image_size // v.patch_size) ** 2) / (model_config.scale_factor**2))

    def tokens_per_video(self, model_config, layout):
        return layout.num_frames * self.image_seq_len(model_config)

    def video_text(self, model_config, layout):
        k = self.image_seq_len(model_config)
        frame = "<fake_token_around_image><global-img>" + "<image>" * k + "<fake_token_around_image>"
        text = self.intro.format(
            frame_count=number_words(layout.num_frames), video_duration=str(timedelta(seconds=int(layout.duration)))
        )
        for t in layout.timestamps:
            text += f"\nFrame from {int(t // 60):02d}:{int(t % 60):02d}:" + frame
        return text + "\n\n"

    def prefix(self, video, prompt, system):
        sys_turn = f"System: {system}<end_of_utterance>\n" if system else ""
        return f"<|im_start|>{sys_turn}User: {video}{prompt}<end_of_utterance>\nAssistant:"

    def target(self, text):
        return " " + text

    def tiny_config(self, tiny, tokenizer):
        from transformers import SmolVLMConfig

        ids = tokenizer.convert_tokens_to_ids
        return SmolVLMConfig(
            vision_config=dict(
                hidden_size=tiny.vision_hidden,
                intermediate_size=tiny.vision_intermediate,
                num_hidden_layers=tiny.vision_layers,
                num_attention_heads=tiny.vision_heads,
                image_size=tiny.image_size,
                patch_size=tiny.patch_size,
                initializer_range=tiny.init_std,
            ),
            text_config=dict(
                model_type="llama",
                vocab_size=len(tokenizer),
                hidden_size=tiny.hidden,
                intermediate_size=tiny.intermediate,
                num_hidden_layers=tiny.layers,
                num_attention_heads=tiny.heads,
                num_key_value_heads=tiny.kv_heads,
                max_position_embeddings=4096,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=ids(self.end_token),
                initializer_range=tiny.init_std,
                tie_word_embeddings=False,
            ),
            scale_factor=2,
            image_token_id=ids("<image>"),
            pad_token_id=tokenizer.pad_token_id,
            initializer_range=tiny.init_std,
        )

    def tiny_template_texts(self):
        return [
            self.intro.format(frame_count="sixty-four", video_duration="0:00:04"),
            "\nFrame from 00:01:",
            "User: Assistant:",
        ]

    def tiny_preprocessor(self, tiny):
        return {"image_mean": list(HALF), "image_std": list(HALF), "resample": LANCZOS}


class Qwen25VLFamily(Family):
    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    lm_path = "model.language_model"
    end_token = "<|im_end|>"
    special_tokens = (
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|video_pad|>",
        "<|image_pad|>",
        "<|endoftext|>",
    )
    default_system = "You are a helpful assistant."

    def model_class(self) -> type:
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def vision_tower(self, model):
        return model.model.visual

    def connector(self, model):
        return model.model.visual.merger

    def vision_config(self, model_config):
        return {"vision": model_config.vision_config.to_dict(), "model_type": model_config.model_type}

    def frame_spec(self, model_config, pre, overrides) -> FrameSpec:
        v = model_config.vision_config
        mean, std = _mean_std(pre, CLIP_MEAN, CLIP_STD)
        # pixel bounds per frame: the video processor's only (the image processor's bounds are for single images)
        video = pre.get("video") or {}
        size = video.get("size") or {}
        min_px = overrides.min_pixels or video.get("min_pixels") or size.get("shortest_edge") or QWEN_VIDEO_MIN_PIXELS
        max_px = overrides.max_pixels or video.get("max_pixels") or size.get("longest_edge") or QWEN_VIDEO_MAX_PIXELS
        return FrameSpec(
            "qwen2_5_vl",
            mean,
            std,
            int(_pre(pre, "resample", BICUBIC)),
            patch_size=int(v.patch_size),
            merge_size=int(v.spatial_merge_size),
            temporal_patch_size=int(v.temporal_patch_size),
            min_pixels=int(min_px),
            max_pixels=int(max_px),
        )

    def pixels(self, frames, spec):
        frames = _check_frames(frames)
        p, m, tp = spec.patch_size, spec.merge_size, spec.temporal_patch_size
        h, w = smart_resize(frames.shape[1], frames.shape[2], p * m, spec.min_pixels, spec.max_pixels)
        video = _normalise(np.stack([_resize(f, h, w, spec.resample) for f in frames]), spec.mean, spec.std)
        if pad := -len(video) % tp:  # the video processor repeats the last frame to fill the last temporal patch
            video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)])
        t, c = len(video) // tp, video.shape[1]
        gh, gw = h // p, w // p
        patches = video.view(t, tp, c, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        flat = patches.reshape(t * gh * gw, c * tp * p * p).contiguous()
        return {"pixel_values_videos": flat, "video_grid_thw": torch.tensor([[t, gh, gw]], dtype=torch.long)}

    def layout(self, pixels, spec, timestamps, duration):
        grid = [int(v) for v in pixels["video_grid_thw"][0].tolist()]
        n = len(timestamps)
        # the video processor's second_per_grid_ts = temporal_patch_size / fps of the sampled frames
        sampled_fps = n / duration if duration > 0 else 1.0
        return VideoLayout(
            num_frames=n,
            timestamps=timestamps,
            duration=duration,
            grid_thw=grid,
            second_per_grid=spec.temporal_patch_size / sampled_fps,
        )

    def encode(self, model, pixels):
        tower = self.vision_tower(model)
        pv = pixels["pixel_values_videos"].to(device=tower.device, dtype=tower.dtype)
        return tower(pv, grid_thw=pixels["video_grid_thw"].to(tower.device)).last_hidden_state

    def connect(self, model, features, layout):
        from transformers.vision_utils import get_vision_window_index

        tower = self.vision_tower(model)
        vc = tower.config
        grid = torch.tensor([layout.grid_thw], dtype=torch.long)
        window_index, _ = get_vision_window_index(grid, vc.spatial_merge_size, vc.window_size, vc.patch_size)
        merger = self.connector(model)
        # the tower's output is in window order; the merger works per group of merge^2 rows, then the order is
        # restored, exactly as Qwen2_5_VisionTransformerPretrainedModel.forward does
        merged = merger(features.to(next(merger.parameters()).dtype))
        return merged[torch.argsort(window_index).to(merged.device)]

    def tokens_per_video(self, model_config, layout):
        t, h, w = layout.grid_thw
        return t * h * w // model_config.vision_config.spatial_merge_size**2

    def video_text(self, model_config, layout):
        return "<|vision_start|>" + "<|video_pad|>" * self.tokens_per_video(model_config, layout) + "<|vision_end|>"

    def prefix(self, video, prompt, system):
        sys_turn = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
        return f"{sys_turn}<|im_start|>user\n{video}{prompt}<|im_end|>\n<|im_start|>assistant\n"

    def mm_inputs(self, embeds, layouts, input_ids, tokenizer):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
        types = (input_ids == video_id).to(torch.int32) * 2  # text 0, image 1, video 2
        return {
            "mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=list(embeds))},
            "video_grid_thw": torch.tensor(
                [lay.grid_thw for lay in layouts], dtype=torch.long, device=input_ids.device
            ),
            "second_per_grid_ts": torch.tensor(
                [lay.second_per_grid for lay in layouts], dtype=torch.float32, device=input_ids.device
            ),
            "mm_token_type_ids": types,
        }

    def tiny_config(self, tiny, tokenizer):
        from transformers import Qwen2_5_VLConfig

        ids = tokenizer.convert_tokens_to_ids
        head_dim = tiny.hidden // tiny.heads
        half = head_dim // 2
        section = [half - 2 * (half // 3), half // 3, half // 3]
        return Qwen2_5_VLConfig(
            vision_config=dict(
                depth=tiny.vision_layers,
                hidden_size=tiny.vision_hidden,
                intermediate_size=tiny.vision_intermediate,
                num_heads=tiny.vision_heads,
                out_hidden_size=tiny.hidden,
                patch_size=tiny.patch_size,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=2 * 2 * tiny.patch_size,
                fullatt_block_indexes=[tiny.vision_layers - 1],
                tokens_per_second=2,
                initializer_range=tiny.init_std,
            ),
            text_config=dict(
                vocab_size=len(tokenizer),
                hidden_size=tiny.hidden,
                intermediate_size=tiny.intermediate,
                num_hidden_layers=tiny.layers,
                num_attention_heads=tiny.heads,
                num_key_value_heads=tiny.kv_heads,
                max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "mrope_section": section, "rope_theta": 10000.0},
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=ids(self.end_token),
                initializer_range=tiny.init_std,
                tie_word_embeddings=False,
            ),
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
            initializer_range=tiny.init_std,
            tie_word_embeddings=False,
        )

    def tiny_template_texts(self):
        return ["system\nYou are a helpful assistant.", "user\n", "assistant\n"]

    def tiny_preprocessor(self, tiny):
        # frames of about tiny.image_size^2 pixels (a few merged tokens per pair of frames)
        return {
            "image_mean": list(CLIP_MEAN),
            "image_std": list(CLIP_STD),
            "resample": BICUBIC,
            "min_pixels": (4 * tiny.patch_size) ** 2,
            "max_pixels": 2 * tiny.image_size**2,
            "patch_size": tiny.patch_size,
            "merge_size": 2,
            "temporal_patch_size": 2,
        }


class InternVLFamily(Family):
    name = "internvl"
    model_types = ("internvl",)
    lm_path = "model.language_model"
    end_token = "<|im_end|>"
    special_tokens = ("<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<|endoftext|>")

    def model_class(self) -> type:
        from transformers import InternVLForConditionalGeneration

        return InternVLForConditionalGeneration

    def vision_tower(self, model):
        return model.model.vision_tower

    def connector(self, model):
        return model.model.multi_modal_projector

    def vision_config(self, model_config):
        return {
            "vision": model_config.vision_config.to_dict(),
            "vision_feature_layer": model_config.vision_feature_layer,
            "vision_feature_select_strategy": model_config.vision_feature_select_strategy,
        }

    def frame_spec(self, model_config, pre, overrides) -> FrameSpec:
        mean, std = _mean_std(pre, IMAGENET_MEAN, IMAGENET_STD)
        size = overrides.size or int(model_config.vision_config.image_size[0])
        return FrameSpec("internvl", mean, std, int(_pre(pre, "resample", BICUBIC)), size=size)

    def pixels(self, frames, spec):
        frames = _check_frames(frames)
        s = spec.size
        return {
            "pixel_values": _normalise(np.stack([_resize(f, s, s, spec.resample) for f in frames]), spec.mean, spec.std)
        }

    def encode(self, model, pixels):
        tower = self.vision_tower(model)
        px = pixels["pixel_values"].to(device=tower.device, dtype=tower.dtype)
        layer = model.config.vision_feature_layer
        if not isinstance(layer, int):
            raise ConfigError(f"vision_feature_layer {layer!r}: only a single layer is supported")
        out = tower(pixel_values=px, output_hidden_states=layer != -1)
        feats = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        if model.config.vision_feature_select_strategy == "default":
            feats = feats[:, 1:, :]  # the CLS token is not an image token
        return feats

    def connect(self, model, features, layout):
        n, seq, dim = features.shape
        side = int(seq**0.5)
        proj = self.connector(model)
        x = features.to(next(proj.parameters()).dtype).reshape(n, side, side, dim)
        x = model.model.pixel_shuffle(x, scale_factor=model.config.downsample_ratio)
        x = proj(x.reshape(n, -1, x.shape[-1]))
        return x.reshape(-1, x.shape[-1])

    def image_seq_len(self, model_config) -> int:
        v = model_config.vision_config
        return int((v.image_size[0] // v.patch_size[0]) ** 2 * model_config.downsample_ratio**2)

    def tokens_per_video(self, model_config, layout):
        return layout.num_frames * self.image_seq_len(model_config)

    def video_text(self, model_config, layout):
        k = self.image_seq_len(model_config)
        return "\n".join(f"Frame{i + 1}: <img>" + "<IMG_CONTEXT>" * k + "</img>" for i in range(layout.num_frames))

    def prefix(self, video, prompt, system):
        sys_turn = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
        return f"{sys_turn}<|im_start|>user\n{video}\n{prompt}<|im_end|>\n<|im_start|>assistant\n"

    def tiny_config(self, tiny, tokenizer):
        from transformers import InternVLConfig

        ids = tokenizer.convert_tokens_to_ids
        return InternVLConfig(
            vision_config=dict(
                hidden_size=tiny.vision_hidden,
                num_hidden_layers=tiny.vision_layers,
                num_attention_heads=tiny.vision_heads,
                intermediate_size=tiny.vision_intermediate,
                image_size=[tiny.image_size, tiny.image_size],
                patch_size=[tiny.patch_size, tiny.patch_size],
                initializer_range=tiny.init_std,
            ),
            text_config=dict(
                model_type="qwen2",
                vocab_size=len(tokenizer),
                hidden_size=tiny.hidden,
                intermediate_size=tiny.intermediate,
                num_hidden_layers=tiny.layers,
                num_attention_heads=tiny.heads,
                num_key_value_heads=tiny.kv_heads,
                max_position_embeddings=4096,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=ids(self.end_token),
                initializer_range=tiny.init_std,
                tie_word_embeddings=False,
            ),
            image_token_id=ids("<IMG_CONTEXT>"),
            downsample_ratio=0.5,
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
            image_seq_length=(tiny.image_size // tiny.patch_size) ** 2 // 4,
            tie_word_embeddings=False,
        )

    def tiny_template_texts(self):
        return ["user\n", "assistant\n", "Frame1: Frame2: Frame3:"]

    def tiny_preprocessor(self, tiny):
        return {"image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "resample": BICUBIC}


FAMILIES = Registry(
    "VLM family",
    {
        "smolvlm": f"{__name__}:SmolVLMFamily",
        "qwen2_5_vl": f"{__name__}:Qwen25VLFamily",
        "internvl": f"{__name__}:InternVLFamily",
    },
)


def family_for(model_type: str) -> Family:
    """The family of a checkpoint's ``config.model_type``."""
    for name in FAMILIES:
        cls = FAMILIES.get(name)
        if model_type in cls.model_types:
            return cls(model_type)
    hint = ""
    if model_type == "internvl_chat":
        hint = (
            " (this is InternVL's remote-code layout; use the transformers-native '-hf' checkpoint, e.g. "
            "OpenGVLab/InternVL3-2B-hf)"
        )
    raise ConfigError(
        f"unsupported VLM model_type {model_type!r}{hint}; supported: smolvlm, idefics3, qwen2_5_vl, internvl"
    )


def family_named(name: str) -> Family:
    return FAMILIES.get(name)()


def lora_target_regex(family: Family, modules: list[str]) -> str:
    """A PEFT ``target_modules`` regex that matches the projections of the language model only."""
    names = "|".join(re.escape(m) for m in modules)
    return rf"{re.escape(family.lm_path)}\..*\.({names})"
