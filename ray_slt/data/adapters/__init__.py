"""Corpus adapters: official corpus files -> manifest rows. ``ADAPTERS`` maps a dataset name to its adapter."""

from __future__ import annotations

from ray_slt.data.adapters.base import Adapter
from ray_slt.registry import Registry

# name -> "module:Class", imported on use.
ADAPTERS = Registry(
    "dataset",
    {
        "phoenix14t": "ray_slt.data.adapters.phoenix14t:Phoenix14T",
        "csl_daily": "ray_slt.data.adapters.csl_daily:CslDaily",
        "how2sign": "ray_slt.data.adapters.how2sign:How2Sign",
        "wlasl": "ray_slt.data.adapters.wlasl:Wlasl",
        "autsl": "ray_slt.data.adapters.autsl:Autsl",
        "openasl": "ray_slt.data.adapters.openasl:OpenAsl",
        "isign": "ray_slt.data.adapters.isign:ISign",
        "openpose": "ray_slt.data.adapters.openpose:OpenPoseFrames",
        "prompt2sign": "ray_slt.data.adapters.openpose:Prompt2Sign",
        "synthetic": "ray_slt.data.adapters.synthetic:Synthetic",
        "synthetic_isolated": "ray_slt.data.adapters.synthetic:SyntheticIsolated",
    },
)


def get_adapter(name: str) -> Adapter:
    return ADAPTERS.get(name)()
