"""Fixtures of the recognition tests: the synthetic isolated signs made by the real stages (prepare + extract)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ray_slt.cli import main


@pytest.fixture(scope="module")
def iso_store(ray_local, tmp_path_factory):
    """100 synthetic signs x (6 train, 3 dev, 3 test) samples by 6 signers: `ray-slt prepare synthetic_isolated`
    and `ray-slt extract` (poses -> the 77-point feature store) on the module's Ray."""
    root = tmp_path_factory.mktemp("iso")
    manifest, features = str(root / "manifest.parquet"), str(root / "features")
    opts = [f"--option={k}={v}" for k, v in {"classes": 100, "train": 6, "dev": 3, "test": 3}.items()]
    assert main(["prepare", "synthetic_isolated", "--root", str(root / "corpus"), "--out", manifest, *opts]) == 0
    assert main(["extract", manifest, "--out", features, "--no-progress", "--json"]) == 0
    lexicon = str(root / "corpus" / "lexicon.csv")
    return SimpleNamespace(root=root, manifest=manifest, features=features, lexicon=lexicon)
