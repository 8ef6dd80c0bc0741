"""Fixtures of the sweep tests: a small synthetic feature store made by the real stages (prepare + extract)."""

from __future__ import annotations

import pytest
from testlib import REPO
from tune_helpers import last_json, run_cli


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> dict[str, str]:
    """A synthetic corpus of 96 train / 12 dev / 4 test sentences, its manifest and its feature store (poses),
    built once per session with `ray-slt prepare` and `ray-slt extract`."""
    root = tmp_path_factory.mktemp("tune_synthetic")
    manifest, features = str(root / "manifest.parquet"), str(root / "features")
    done = run_cli(
        "prepare", str(REPO / "conf" / "prepare" / "synthetic.yaml"), f"root={root / 'corpus'}", f"out={manifest}",
        "options.train=96", "options.dev=12", "options.test=4",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli("extract", manifest, "--out", features, "--no-progress", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert last_json(done.stdout)["index_samples"] == 112
    return {"manifest": manifest, "features": features}
