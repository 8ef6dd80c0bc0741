"""The embedded path on a busy machine. On a local Ray started without the dashboard, Ray Train's
placement-group cleaner cannot reach the State API, and under CPU contention it once read an empty answer as "the
controller is dead" and removed the placement group of a healthy run. The driver leaves that cleaner out where the
State API cannot answer (`ray_slt.training.run.trainer_class`); here a training run and an extraction run to
completion with a busy-loop process on every core. That one takes about 6 minutes on 2 cores, so `make test`
leaves it out (marker ``contention``) and `make test-contention` runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import toy_family

from ray_slt.config import build_config

TOY = {
    "kind": "train", "stage": "toy", "data": {"manifest": "unused.parquet"}, "toy": {"lr": 0.05},
    "optim": {"epochs": 2, "batch_size": 16, "schedule": "constant", "max_grad_norm": None},
    "trainer": {"num_to_keep": 1, "log_every": 100, "num_workers": 2},
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def registered():
    with toy_family.registered():
        yield


@pytest.fixture
def busy():
    """One busy-loop process per core for the duration of a test."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield len(procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_an_embedded_ray_trains_without_the_placement_group_cleaner(ray_local, tmp_path):
    from ray_slt.training.run import build_trainer, state_api_available

    assert not state_api_available(timeout_s=2)  # the module's Ray runs no dashboard
    trainer, _ = build_trainer(build_config(TOY, [f"trainer.storage={tmp_path}"]))
    names = [type(c).__name__ for c in trainer._create_default_callbacks()]
    assert "PlacementGroupCleanerCallback" not in names and "BackendSetupCallback" in names


@pytest.mark.contention
def test_training_and_extraction_complete_with_every_core_busy(ray_local, busy, tmp_path, capsys):
    import json

    from ray_slt.cli import main
    from ray_slt.training.run import run_training

    summary = run_training(build_config(TOY, [f"trainer.storage={tmp_path}", "trainer.name=toy"]))
    dev = [json.loads(x) for x in (tmp_path / "toy" / "metrics" / "dev.jsonl").read_text().splitlines()]
    assert summary["steps"] == summary["total_steps"] and len(dev) == 2  # every step, every dev evaluation
    root = tmp_path / "syn"
    manifest, features = str(root / "manifest.parquet"), str(root / "features")
    opts = [f"--option={k}={v}" for k, v in {"train": 4, "dev": 1, "test": 1}.items()]
    assert main(["prepare", "synthetic", "--root", str(root / "corpus"), "--out", manifest, *opts]) == 0
    capsys.readouterr()
    assert main(["extract", manifest, "--out", features, "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["samples"], report["ok"], report["errors"]) == (6, 6, 0)


@pytest.mark.contention
def test_a_sweep_completes_with_every_core_busy(ray_local, busy, tmp_path):
    """Two toy trials, two at a time, each a 1-worker Ray Train run, with a busy-loop process on every core: every
    trial runs all its epochs and reports every dev evaluation (no trial or worker lost to a false 'dead' verdict)."""
    from ray_slt.tune.config import SweepConfig
    from ray_slt.tune.sweep import run_sweep

    train = {k: v for k, v in TOY.items() if k != "kind"}
    train["trainer"] = {**train["trainer"], "num_workers": 1}
    sweep = SweepConfig.model_validate({
        "train": train, "overrides": {"optim": {"epochs": 2}}, "space": {"toy.lr": {"grid": [0.05, 0.01]}},
        "search": {"algorithm": "grid", "max_concurrent_trials": 2}, "scheduler": {"type": "fifo"},
        "storage": str(tmp_path), "name": "toy_sweep_busy",
    })  # fmt: skip
    summary = run_sweep(sweep)
    assert len(summary["trials"]) == 2 and all(t["epochs"] == 2 for t in summary["trials"]), summary["trials"]
