"""Corpus adapters: official corpus files -> manifest rows. ``ADAPTERS`` maps a dataset name to its adapter."""

from __future__ import annotations

import importlib

from ray_slt.data.adapters.base import Adapter
from ray_slt.errors import RaySltError

# name -> "module:Class", imported on use.
ADAPTERS: dict[str, str] = {
    "phoenix14t": "ray_slt.data.adapters.phoenix14t:Phoenix14T",
    "csl_daily": "ray_slt.data.adapters.csl_daily:CslDaily",
    "how2sign": "ray_slt.data.adapters.how2sign:How2Sign",
    "wlasl": "ray_slt.data.adapters.wlasl:Wlasl",
    "openasl": "ray_slt.data.adapters.openasl:OpenAsl",
    "isign": "ray_slt.data.adapters.isign:ISign",
    "openpose": "ray_slt.data.adapters.openpose:OpenPoseFrames",
    "prompt2sign": "ray_slt.data.adapters.openpose:Prompt2Sign",
    "synthetic": "ray_slt.data.adapters.synthetic:Synthetic",
}


def get_adapter(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise RaySltError(f"unknown dataset {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    module, _, cls = ADAPTERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()
