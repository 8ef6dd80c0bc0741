"""Floating-point dtypes by name, as configs spell them (one table for every model and feature extractor)."""

from __future__ import annotations

from typing import Any

from ray_slt.errors import ConfigError

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def torch_dtype(name: str, what: str = "dtype") -> Any:
    """The ``torch.dtype`` named ``name`` (one of :data:`DTYPE_NAMES`, or ``auto``: bfloat16 where a CUDA device
    is available, else float32). ``what`` names the setting in the error for any other name."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if name not in DTYPE_NAMES:
        raise ConfigError(f"{what} must be one of {', '.join(DTYPE_NAMES)} or auto, not {name!r}")
    return getattr(torch, name)
