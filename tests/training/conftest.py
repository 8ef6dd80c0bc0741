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


@pytest.fixture(scope="session")
def synthetic_translator(synthetic_store, tmp_path_factory) -> dict:
    """The shipped demo translator (conf/train/synthetic_tiny.yaml: 12 epochs on two DDP workers) trained once
    per session with `ray-slt train`, reading the 49 points a Prompt2Sign production carries
    (``sft.encoder.points=p2s50``): the learning test of tests/training/test_train_cli.py asserts on it, and
    tests/training/test_production_learning.py uses it to read productions back (back-translation).
    ``summary``: the run's summary, ``run``: its directory."""
    runs = tmp_path_factory.mktemp("translator") / "runs"
    done = run_cli("train", str(REPO / "conf" / "train" / "synthetic_tiny.yaml"),
                   f"data.features={synthetic_store['features']}", f"trainer.storage={runs}",
                   "sft.encoder.points=p2s50", "--json", timeout=1500)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {"summary": last_json(done.stdout), "run": str(runs / "train_synthetic_tiny")}
