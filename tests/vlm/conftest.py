"""Fixtures of the VLM tests: tiny random models of the three real architecture classes, saved as checkpoint
directories, and a manifest of real clips from ../shared/data."""

from __future__ import annotations

import pytest
from vlm_helpers import FAMILIES, TEXTS, real_rows


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory) -> dict[str, str]:
    """``family -> directory`` of a materialised tiny model (tokenizer trained on TEXTS, seed 0)."""
    from vlm_helpers import tiny_cfg

    from ray_slt.models.vlm.tiny import save_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny_vlm")
    out = {}
    for fam in FAMILIES:
        path = root / fam
        save_tiny_checkpoint(fam, tiny_cfg(fam, path).tiny, TEXTS, str(path))
        out[fam] = str(path)
    return out


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def tiny_model(family, tiny_paths):
    """A fresh translator (new LoRA) around the family's tiny model, in float32 on the CPU."""
    from vlm_helpers import tiny_cfg

    from ray_slt.models.vlm.model import build_vlm

    return build_vlm(tiny_cfg(family, tiny_paths[family]), seed=0)


@pytest.fixture(scope="session")
def real_manifest(tmp_path_factory, shared_data) -> str:
    """A manifest of real clips (How2Sign, PHOENIX-2014T excerpts, SLP site, AUTSL) read in place."""
    from ray_slt.data.manifest import write_manifest

    for sub in ("how2sign", "phoenix14t", "slp_site", "autsl"):
        if not (shared_data / sub).exists():
            pytest.skip(f"real sample data not available: {shared_data / sub}")
    path = tmp_path_factory.mktemp("vlm_manifest") / "manifest.parquet"
    write_manifest(real_rows(shared_data), str(path))
    return str(path)
