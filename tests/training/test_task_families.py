"""A task family registered from outside ray_slt (tests/training/toy_family.py: model, task with its own config
section, a protocol whose selection metric is minimised, a predictor) goes through the one training path: the
driver, the supervised recipe on Ray Train, best-checkpoint choice on its own metric, the run summary, the model
registry, and an ASHA sweep that reads the metric and its direction from the task."""

from __future__ import annotations

import json

import pytest
import torch
import toy_family

from ray_slt.config import build_config

TOY = {
    "kind": "train",
    "stage": "toy",
    "data": {"manifest": "unused.parquet"},  # the toy task makes its own rows
    "toy": {"lr": 0.05},
    "optim": {"epochs": 8, "batch_size": 16, "schedule": "constant", "max_grad_norm": None},
    "trainer": {"num_to_keep": 1, "log_every": 100},
}


@pytest.fixture(scope="module", autouse=True)
def registered():
    with toy_family.registered():
        yield


def _jsonl(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_config_section_and_selection_come_from_the_registered_task():
    from ray_slt.errors import ConfigError
    from ray_slt.training.task import task_for

    cfg = build_config(TOY, ["toy.lr=0.1"])
    assert type(cfg).__name__ == "TrainConfig_toy" and cfg.toy.lr == 0.1
    with pytest.raises(ConfigError, match=r"unknown key 'toy\.rate': toy has no field 'rate'"):
        build_config(TOY, ["toy.rate=0.1"])
    selection = task_for(cfg).selection
    assert (selection.key, selection.mode) == ("dev_mae", "min")


def test_best_checkpoint_is_chosen_on_the_task_metric_and_direction(ray_local, tmp_path):
    from ray_slt.models.registry import load_predictor, resolve
    from ray_slt.training.run import run_training

    cfg = build_config(TOY, [f"trainer.storage={tmp_path}", "trainer.name=toy"])
    summary = run_training(cfg)
    run_dir = tmp_path / "toy"
    dev = _jsonl(run_dir / "metrics" / "dev.jsonl")
    maes = [d["dev_mae"] for d in dev]
    assert len(maes) == 8
    lowest = min(range(len(maes)), key=maes.__getitem__)
    # the dev error falls, then rises: the best is inside the run, and the highest is not it
    assert 0 < lowest < len(maes) - 1 and maes[lowest] < 0.5 * maes[0] and maes[-1] > 2 * maes[lowest]
    assert summary["selection"] == {"metric": "dev_mae", "mode": "min"} and summary["protocol"] == "toy_mae"
    best = summary["best"]
    assert best["step"] == dev[lowest]["step"] and best["dev_mae"] == pytest.approx(maes[lowest])
    # Ray kept the best checkpoint on the same metric (num_to_keep 1: it and the latest)
    state = json.loads((tmp_path / "toy" / best["checkpoint"].rsplit("/", 1)[-1] / "train_state.json").read_text())
    assert state["protocol"] == "toy_mae" and state["selection"] == {"metric": "dev_mae", "mode": "min"}
    # the saved model loads through the registry of saved models, by the kind its manifest records
    ref = resolve(str(run_dir))
    assert (ref.kind, ref.stage, ref.protocol, ref.checkpoint) == ("toy", "toy", "toy_mae", best["checkpoint"])
    predictor = load_predictor(str(run_dir))
    dev_rows = toy_family.rows(16, 1.0, "dev")
    protocol = toy_family.ToyProtocol()
    preds = [protocol.prediction(r, o) for r, o in zip(dev_rows, predictor.predict(dev_rows))]
    assert protocol.score(preds)["mae"] == pytest.approx(best["dev_mae"], abs=1e-6)


def test_early_stopping_on_the_task_metric_stops_every_rank_and_stays_stopped(ray_local, tmp_path):
    """eval.patience 2 on the toy task (dev error falls, then rises; minimised): two workers stop together two
    evaluations after the lowest dev error, which is the best checkpoint; running the config again does not train
    on. The same run without patience trains all 8 epochs (the first test)."""
    from ray_slt.training.run import run_training

    cfg = build_config(TOY, [f"trainer.storage={tmp_path}", "trainer.name=toy_es", "eval.patience=2",
                             "trainer.num_workers=2", "optim.batch_size=8"])  # fmt: skip
    summary = run_training(cfg)
    dev = _jsonl(tmp_path / "toy_es" / "metrics" / "dev.jsonl")
    maes = [d["dev_mae"] for d in dev]
    lowest = min(range(len(maes)), key=maes.__getitem__)
    assert summary["stopped_early"] and len(maes) == lowest + 3 < 8  # the lowest, then two without a gain
    assert all(m >= maes[lowest] for m in maes[lowest + 1 :])
    assert summary["best"]["step"] == dev[lowest]["step"] and summary["steps"] == dev[-1]["step"]
    again = run_training(cfg)
    assert again["steps"] == summary["steps"] and again["stopped_early"]
    assert len(_jsonl(tmp_path / "toy_es" / "metrics" / "dev.jsonl")) == len(maes)


def test_checkpoint_averaging_is_the_mean_of_the_chosen_checkpoints(ray_local, tmp_path):
    """`ray-slt average` (average_run): the last 3 checkpoints' weights, element by element, written as a checkpoint
    of the run that loads through the registry and evaluates; --best takes the 3 lowest dev errors (min metric);
    asking for more checkpoints than the run kept names trainer.num_to_keep."""
    from safetensors.torch import load_file

    from ray_slt.errors import ConfigError
    from ray_slt.models.registry import load_predictor, resolve
    from ray_slt.training.average import average_run
    from ray_slt.training.run import run_training

    cfg = build_config(TOY, [f"trainer.storage={tmp_path}", "trainer.name=toy_avg", "trainer.num_to_keep=8",
                             "optim.epochs=5"])  # fmt: skip
    summary = run_training(cfg)
    run = tmp_path / "toy_avg"
    info = average_run(str(run), k=3, by="last")
    kept = sorted(summary["checkpoints"], key=lambda c: c["step"])
    assert info["steps"] == [c["step"] for c in kept[-3:]] and info["out"] == str(run / "averaged-last3")
    weights = [load_file(f"{c['checkpoint']}/model/toy.safetensors") for c in kept[-3:]]
    averaged = load_file(str(run / "averaged-last3" / "model" / "toy.safetensors"))
    for name, value in averaged.items():
        assert torch.allclose(value, sum(w[name] for w in weights) / 3, atol=1e-7), name
    ref = resolve(str(run / "averaged-last3"))
    assert ref.kind == "toy" and ref.train_config is not None
    assert len(load_predictor(ref).predict(toy_family.rows(4, 1.0, "dev"))) == 4

    best = average_run(str(run), k=3, by="best")
    lowest = sorted(kept, key=lambda c: c["dev_mae"])[:3]
    assert best["steps"] == sorted(c["step"] for c in lowest)
    with pytest.raises(ConfigError, match=r"averaging the last 9 needs trainer.num_to_keep >= 9"):
        average_run(str(run), k=9)


def test_asha_sweep_minimises_the_task_metric(ray_local, tmp_path):
    """Two trials one after the other: the one that learns first, then one that barely moves. ASHA, on the
    task's metric in its direction (min), stops the second at its first rung; with max it would not."""
    from ray_slt.tune.config import SweepConfig
    from ray_slt.tune.sweep import run_sweep

    sweep = SweepConfig.model_validate(
        {
            "train": {k: v for k, v in TOY.items() if k != "kind"},
            "overrides": {"optim": {"epochs": 4}},
            "space": {"toy.lr": {"grid": [0.05, 0.0005]}},
            "search": {"algorithm": "grid", "max_concurrent_trials": 1},
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
            "storage": str(tmp_path),
            "name": "toy_sweep",
        }
    )
    summary = run_sweep(sweep)
    assert (summary["metric"], summary["mode"]) == ("dev_mae", "min")
    trials = {t["params"]["toy.lr"]: t for t in summary["trials"]}
    assert trials[0.05]["epochs"] == 4 and trials[0.0005]["epochs"] == 1  # stopped at the first rung
    assert summary["best"]["params"] == {"toy.lr": 0.05}
    assert summary["best"]["dev_mae"] == pytest.approx(min(t["best"] for t in summary["trials"]))
