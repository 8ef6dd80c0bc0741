"""Training state (optimizer, RNG, counters) as safetensors + JSON: no pickle anywhere.

An optimizer ``state_dict()`` is a tree of dicts/lists/tuples with tensors and plain values at the leaves.
:func:`save_tree` writes its tensors to ``{prefix}.safetensors`` and the structure (with typed keys, so that
``{0: ...}`` comes back as an int key) to ``{prefix}.json``; :func:`load_tree` rebuilds it. Leaves that are
neither tensors nor JSON values are an error unless their dict key (at any depth) is listed in ``drop``
(DeepSpeed's loss-scaler object, for instance, which its loader keeps at its default when absent).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

import torch
from safetensors.torch import load_file, save_file


class _Encoder:
    def __init__(self, drop: Iterable[str] = ()) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.drop = set(drop)

    def encode(self, obj: Any, where: str) -> Any:
        if isinstance(obj, torch.Tensor):
            key = f"t{len(self.tensors)}"
            self.tensors[key] = obj.detach().cpu().contiguous().clone()
            return {"$t": key}
        if isinstance(obj, bool) or obj is None or isinstance(obj, str):
            return obj
        if isinstance(obj, int):
            return int(obj)  # IntEnum -> int
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"$f": repr(obj)}
        if isinstance(obj, dict):
            items = [(k, v) for k, v in obj.items() if not (isinstance(k, str) and k in self.drop)]
            return {"$d": [[self.encode(k, where), self.encode(v, f"{where}.{k}")] for k, v in items]}
        if isinstance(obj, tuple):
            return {"$tuple": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        raise TypeError(f"cannot store {type(obj).__name__} at {where} as safetensors/JSON")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "$t" in obj:
            return tensors[obj["$t"]]
        if "$f" in obj:
            return float(obj["$f"])
        if "$tuple" in obj:
            return tuple(_decode(v, tensors) for v in obj["$tuple"])
        if "$d" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["$d"]}
    return obj


def save_tree(tree: dict[str, Any], prefix: str, drop: Iterable[str] = ()) -> None:
    """Write ``tree`` as ``{prefix}.safetensors`` + ``{prefix}.json`` (local files)."""
    enc = _Encoder(drop)
    meta = enc.encode(tree, "state")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    save_file(enc.tensors, f"{prefix}.safetensors", metadata={"format": "pt"})
    with open(f"{prefix}.json", "w", encoding="utf-8") as f:
        json.dump(meta, f)


def load_tree(prefix: str) -> dict[str, Any]:
    """Read a tree written by :func:`save_tree`."""
    with open(f"{prefix}.json", encoding="utf-8") as f:
        meta = json.load(f)
    return _decode(meta, load_file(f"{prefix}.safetensors"))


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
