"""DINOv2 embeddings of hand/face crops (RVLF stage 2: ``facebook/dinov2-base`` on 224x224 crops).

The model is transformers' ``Dinov2Model``, loaded with ``from_pretrained`` (a hub id or a local/s3 directory;
safetensors only, so loading never runs pickled code). The embedding of a crop is the model's
``pooler_output`` (the final-layer-normed CLS token), ``hidden_size`` floats (768 for dinov2-base). Crops are
normalised with the ImageNet mean/std DINOv2 was trained with, or with the model directory's
``preprocessor_config.json`` when it has one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ray_slt import storage
from ray_slt.errors import RaySltError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU (in a Ray GPU actor, the one Ray assigned), else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Dinov2Embedder:
    """Batched DINOv2 embeddings of uint8 RGB crops ``[N, H, W, 3]`` -> float32 ``[N, hidden_size]``."""

    def __init__(
        self,
        model: str = "facebook/dinov2-base",
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 64,
    ):
        import torch
        from transformers import Dinov2Model

        from ray_slt.dtypes import torch_dtype

        self.device = resolve_device(device)
        self.dtype = torch_dtype(dtype, "features.dtype")
        self.batch_size = int(batch_size)
        self.model_id = model
        self.revision = revision
        with _local_model_dir(model) as path:
            try:
                self.model = Dinov2Model.from_pretrained(
                    path, revision=revision, use_safetensors=True, dtype=self.dtype
                )
            except (OSError, ValueError) as e:
                raise RaySltError(f"cannot load DINOv2 model {model!r}: {e}") from None
            mean, std = _normalisation(path)
        self.model.eval().to(self.device)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.dim = int(self.model.config.hidden_size)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        import torch

        crops = np.asarray(crops, dtype=np.uint8)
        n = crops.shape[0]
        out = np.zeros((n, self.dim), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, n, self.batch_size):
                x = torch.from_numpy(crops[i : i + self.batch_size]).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(255.0)
                x = ((x - self._mean) / self._std).to(self.dtype)
                pooled = self.model(pixel_values=x).pooler_output
                out[i : i + len(x)] = pooled.float().cpu().numpy()
        return out

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "model": self.model_id,
            "revision": self.revision,
            "hidden_size": self.dim,
            "dtype": str(self.dtype).replace("torch.", ""),
            "embedding": "pooler_output",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }


def check_model_source(model: str, revision: str | None = None) -> None:
    """Fail early, in one line, when the DINOv2 model cannot be loaded: before a pipeline starts actors that
    would each fail with a traceback. Reads only the model's ``config.json`` (and lists a directory)."""
    from transformers import Dinov2Config

    def fail(why: str):
        raise RaySltError(f"features.model: cannot load DINOv2 model {model!r}: {why}")

    if not storage.is_local(model) or os.path.isdir(storage.normalize(model)):
        try:
            names = {storage.basename(u) for u in storage.listdir(model)}
        except (RaySltError, OSError) as e:
            fail(str(e))
        if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
            fail("the directory needs config.json and *.safetensors weights")
        return
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        fail("no such directory")
    try:  # a hub id: its config.json from the local cache or the hub
        Dinov2Config.from_pretrained(model, revision=revision)
    except (OSError, ValueError) as e:
        fail(f"{str(e).splitlines()[0]} (offline? give a local or s3 directory)")


class _local_model_dir:
    """A path ``from_pretrained`` can read: hub ids and local paths as they are, s3 directories downloaded."""

    def __init__(self, model: str):
        self.model = model
        self._tmp = None

    def __enter__(self) -> str:
        if storage.is_local(self.model):
            return storage.normalize(self.model) if os.path.exists(storage.normalize(self.model)) else self.model
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="ray_slt_dinov2_")
        for uri in storage.listdir(self.model):
            name = storage.basename(uri)
            if name.endswith((".json", ".safetensors", ".txt")):
                with open(os.path.join(self._tmp.name, name), "wb") as f:
                    f.write(storage.read_bytes(uri))
        return self._tmp.name

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _normalisation(path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(cfg):
        with open(cfg, encoding="utf-8") as f:
            data = json.load(f)
        if "image_mean" in data and "image_std" in data:
            return tuple(data["image_mean"]), tuple(data["image_std"])
    return IMAGENET_MEAN, IMAGENET_STD
