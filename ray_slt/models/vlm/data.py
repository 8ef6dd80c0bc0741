"""Samples of the VLM translators: manifest row -> Eq. 1 frames (the extraction stage's decoder) -> the model's
pixel tensors, or the frozen tower's cached output; and the payload format that carries either through Ray Data.

A *payload* is one safetensors blob (bytes, never pickle) holding a sample's tensors and, in its metadata, the
video layout (frame count, timestamps, Qwen's patch grid) as JSON. Its ``kind`` metadata says what it holds:

- ``pixels``: the family's pixel tensors (``pixel_values`` or ``pixel_values_videos`` + ``video_grid_thw``);
- ``vision``: the frozen tower's output before the connector (``vision``), as the cache stores it, with the
  cache key and sample id it was computed for (so a misplaced file is detected, never silently used).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import torch

from ray_slt.errors import DataError
from ray_slt.features.extract import DecodeConfig
from ray_slt.features.sampling import SampleError, Sampling

PAYLOAD_FORMAT = "ray_slt.vlm_payload/1"


# ------------------------------------------------------------------------------------------------ payloads


def pack(tensors: Mapping[str, torch.Tensor], kind: str, layout: Mapping[str, Any], **meta: str) -> bytes:
    """A safetensors blob of ``tensors`` with the layout and ``meta`` strings in its metadata."""
    from safetensors.torch import save

    header = {"format": PAYLOAD_FORMAT, "kind": kind, "layout": json.dumps(dict(layout), sort_keys=True)}
    header.update({k: str(v) for k, v in meta.items()})
    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=header)


def payload_meta(data: bytes) -> dict[str, str]:
    """The metadata of a payload (read from its header only)."""
    if len(data) < 8:
        raise DataError("not a safetensors payload (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"not a safetensors payload ({e})") from None
    return dict(header.get("__metadata__") or {})


def unpack(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a payload."""
    from safetensors.torch import load

    meta = payload_meta(data)
    if meta.get("format") != PAYLOAD_FORMAT:
        raise DataError(f"not a ray_slt VLM payload (format {meta.get('format')!r})")
    return load(data), meta


def sample_from_payload(data: bytes) -> dict[str, Any]:
    """A payload as the ``vision``/``pixels`` + ``layout`` part of a :meth:`VLMTranslator.collate` sample."""
    tensors, meta = unpack(data)
    layout = json.loads(meta["layout"])
    if meta["kind"] == "vision":
        return {"vision": tensors["vision"], "pixels": None, "layout": layout}
    return {"vision": None, "pixels": tensors, "layout": layout}


# ------------------------------------------------------------------------------------------------ decoding


class VideoSource:
    """Decodes the Eq. 1 frames of manifest rows with :mod:`ray_slt.features.video` (a child-process decoder
    with a deadline; frame-image folders too)."""

    def __init__(
        self, t_max: int, decode: DecodeConfig, manifest_dir: str | None = None, media_root: str | None = None
    ):
        from ray_slt.features.video import Decoder

        self.sampling = Sampling("uniform", t_max=t_max)
        self.decode_cfg = decode
        self.manifest_dir = manifest_dir
        self.media_root = media_root
        self.decoder = Decoder(timeout_s=decode.timeout_s, isolated=decode.isolate)

    def close(self) -> None:
        self.decoder.close()

    def clip(self, row: Mapping[str, Any]):
        """The row's :class:`~ray_slt.features.video.Clip` (frames RGB uint8 [T, H, W, 3]); ``SampleError`` if
        the video cannot be decoded."""
        from ray_slt.features.video import decode_sample, media_uri

        row = dict(row)
        video = media_uri(row.get("video_uri"), self.manifest_dir, self.media_root)
        if video is None:
            raise SampleError("metadata", "the row has no video_uri (the VLM translators read video)")
        clip, _, _ = decode_sample(
            row, video, self.sampling, self.decode_cfg, lambda req: (self.decoder.decode(req), None)
        )
        return clip


def input_fingerprint(row: Mapping[str, Any]) -> str:
    """What a cached sample was computed from: the row's media reference and span (a changed row -> a miss)."""
    import hashlib

    keys = ("sample_id", "video_uri", "start_frame", "end_frame", "start_s", "end_s", "fps", "bbox")
    values = {k: row.get(k) for k in keys}
    if values["bbox"] is not None:
        values["bbox"] = [int(v) for v in values["bbox"]]
    for k in ("start_s", "end_s", "fps"):
        if values[k] is not None:
            values[k] = round(float(values[k]), 6)
    for k in ("start_frame", "end_frame"):
        if values[k] is not None:
            values[k] = int(values[k])
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
