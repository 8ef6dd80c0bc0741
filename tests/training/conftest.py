"""Fixtures of the training tests: a small synthetic feature store, made by the real stages (prepare + extract)."""

from __future__ import annotations

import pytest
from testlib import REPO
from train_helpers import last_json, run_cli


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory) -> dict[str, str]:
    """The synthetic corpus (train 600 / dev 60 / test 60, as conf/prepare/synthetic.yaml), its manifest and
    its feature store (poses only), built once per session with `ray-slt prepare` and `ray-slt extract`."""
    root = tmp_path_factory.mktemp("synthetic")
    manifest, features = str(root / "manifest.parquet"), str(root / "features")
    done = run_cli(
        "prepare", str(REPO / "conf" / "prepare" / "synthetic.yaml"), f"root={root / 'corpus'}", f"out={manifest}"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli("extract", manifest, "--out", features, "--no-progress", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = last_json(done.stdout)
    assert summary["errors"] == 0 and summary["index_samples"] == 720
    return {"manifest": manifest, "features": features, "root": str(root)}
