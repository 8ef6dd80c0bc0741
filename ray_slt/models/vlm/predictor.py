"""The predictor of the small-VLM translators (model kind ``vlm``): video in, text out.

A sample names its video (``video_uri``: a file or a frame folder, local or remote, plus the manifest row's span,
fps and bbox when it has them). The predictor decodes the Eq. 1 frames itself, with the model's own frame and
decode settings, and prepares them as its family does; with a vision cache (``cache``: the root the VLM cache job
wrote, looked up under this model's key) a cached sample skips decoding and the frozen tower. ``ray-slt eval``
and the Serve application use it alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt.errors import DataError
from ray_slt.models.predictor import Predictor
from ray_slt.models.registry import ModelRef


class VLMPredictor(Predictor):
    """Options: ``num_beams``, ``max_new_tokens`` (None: the model's), ``cache`` (a vision-cache root),
    ``cache_required`` (a sample missing from the cache is an error instead of being decoded)."""

    kind = "vlm"
    inputs = "video"

    def __init__(
        self,
        ref: ModelRef,
        device: str = "cpu",
        model_id: str | None = None,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        cache: str | None = None,
        cache_required: bool = False,
    ):
        from ray_slt.models.vlm.cache import VisionCache
        from ray_slt.models.vlm.checkpoint import load_vlm
        from ray_slt.models.vlm.data import VideoSource

        super().__init__(ref, device, model_id)
        self.model = load_vlm(ref.model).to(self.device).eval()
        v = self.model.cfg
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.cache = VisionCache.for_model(cache, self.model) if cache else None
        self.cache_required = cache_required
        self.source = VideoSource(v.frames.t_max, v.decode)

    @classmethod
    def options_from(cls, train_config: Mapping[str, Any] | None) -> dict[str, Any]:
        vlm = (train_config or {}).get("vlm") or {}
        return {"cache": vlm.get("cache"), "cache_required": bool(vlm.get("cache_required"))}

    def settings(self) -> dict[str, Any]:
        v = self.model.cfg
        return {
            "num_beams": self.num_beams or v.num_beams,
            "max_new_tokens": self.max_new_tokens or v.max_new_tokens,
            "frames": f"uniform:{v.frames.t_max} (Eq. 1)",
            "do_sample": False,
        }

    def sample(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A row as the model's collator takes it: the cached tower output, or the decoded, prepared frames."""
        from ray_slt.features.sampling import SampleError
        from ray_slt.models.vlm.cache import VisionCache
        from ray_slt.models.vlm.data import sample_from_payload
        from ray_slt.models.vlm.model import prepare_video

        row = dict(row)
        uri = self.cache.lookup(row) if self.cache is not None else None
        if uri is not None:
            s = sample_from_payload(VisionCache.load(uri, row["sample_id"], self.cache.key))
        else:
            if self.cache is not None and self.cache_required:
                raise DataError(f"sample {row.get('sample_id')!r} is not in the cache (cache_required)", self.cache.dir)
            try:
                clip = self.source.clip(row)
            except SampleError as e:
                raise DataError(f"cannot decode the video ({e.stage}: {e.reason})", row.get("video_uri")) from None
            pixels, layout = prepare_video(self.model.family, self.model.frame_spec, clip.frames, clip.frame_indices,
                                           clip.fps, clip.span[1] - clip.span[0])  # fmt: skip
            s = {"vision": None, "pixels": pixels, "layout": layout}
        s.update({k: row.get(k) for k in ("sample_id", "sign_language")})
        return s

    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        import torch

        if not samples:
            return []
        batch = self.model.collate([self.sample(r) for r in samples])
        with torch.no_grad():
            texts = self.model.generate(batch, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)
        return [{"text": t} for t in texts]

    def close(self) -> None:
        self.source.close()
