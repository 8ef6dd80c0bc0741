"""Unit tests of the training stage's pieces that need no Ray: config rules, LR schedule, DeepSpeed config,
and the pickle-free training-state format."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from ray_slt.config import build_config
from ray_slt.errors import ConfigError
from ray_slt.training.loop import deepspeed_config, lr_factor, steps_per_epoch, total_steps
from ray_slt.training.state import load_tree, save_tree

BASE = {"kind": "train", "data": {"features": "runs/x"}}


def cfg(*overrides):
    return build_config(BASE, list(overrides))


def test_config_rules():
    c = cfg("sft.lr_llm=1e-3", "trainer.backend=deepspeed")
    assert c.stage == "sft" and c.sft.lr_llm == 1e-3 and not hasattr(c, "pretrain")
    assert c.trainer.deepspeed == {"zero_optimization": {"stage": 2}}  # deepspeed without a file: ZeRO-2
    assert build_config({**BASE, "stage": "pretrain"}).pretrain.skeleton.hidden == 512
    with pytest.raises(ConfigError, match=r"section 'sft:' is stage sft's, but this config's stage is 'pretrain'"):
        build_config({**BASE, "sft": {"lr_llm": 1e-3}}, ["stage=pretrain"])
    with pytest.raises(ConfigError, match="test split is never used during training"):
        cfg("data.dev_split=test")
    with pytest.raises(ConfigError, match=r"exactly one of data\.features"):
        build_config({"kind": "train", "data": {"features": "a", "manifest": "b.parquet"}})
    with pytest.raises(ConfigError, match="unknown stage 'sftt'"):
        build_config({**BASE, "stage": "sftt"})
    with pytest.raises(ConfigError, match=r"unknown key 'optim.epoch'.*did you mean 'optim.epochs'"):
        cfg("optim.epoch=3")
    with pytest.raises(ConfigError, match="fail_rank 2 is not a rank of 2 workers"):
        cfg("trainer.num_workers=2", "trainer.fail_rank=2")


def test_priority_sampling_and_its_correction_are_refused_where_they_cannot_work():
    """Refused by the preflight's recipe check (before Ray starts): priority sampling for a stage whose loss
    gives no per-sample losses, importance-sampling weights (beta) for one that cannot weigh its loss per sample
    or without priority sampling. beta anneals linearly to beta_end over the run's steps."""
    from ray_slt.training.recipe import recipe_for
    from ray_slt.training.task import task_for
    from ray_slt.training.tasks_production import ProduceTask

    with pytest.raises(ConfigError, match="needs per-sample losses"):
        c = cfg("optim.sampling=priority")
        recipe_for(c, task_for(c)).check()
    with pytest.raises(ConfigError, match="beta corrects priority sampling"):
        build_config({**BASE, "stage": "produce"}, ["optim.priority.beta=0.4"])
    c = build_config({**BASE, "stage": "produce"}, ["optim.sampling=priority", "optim.priority.beta=0.4",
                                                    "optim.priority.beta_end=1.0"])  # fmt: skip
    recipe_for(c, task_for(c)).check()  # the producer weighs its loss per sample
    unweighted = type("Unweighted", (ProduceTask,), {"takes_sample_weights": False})(c)
    with pytest.raises(ConfigError, match="does not weigh its loss per sample"):
        recipe_for(c, unweighted).check()
    p = c.optim.priority
    assert [p.beta_at(s, 5) for s in range(6)] == pytest.approx([0.4, 0.55, 0.7, 0.85, 1.0, 1.0])
    assert build_config({**BASE, "stage": "produce"}, ["optim.sampling=priority", "optim.priority.beta=0.3"]
                        ).optim.priority.beta_at(7, 10) == 0.3  # fmt: skip


def test_steps_and_lr_schedule():
    c = cfg("optim.batch_size=4", "optim.grad_accum=2", "trainer.num_workers=2", "optim.epochs=3",
            "optim.warmup_steps=2", "optim.min_lr_ratio=0.1")  # fmt: skip
    # 101 samples -> 50 per worker -> 13 micro-batches -> 6 full accumulation groups per epoch
    assert steps_per_epoch(c, 101) == 6 and total_steps(c, 101) == 18
    total = total_steps(c, 101)
    f = [lr_factor(s, total, c) for s in range(total)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0)  # linear warm-up over 2 steps
    assert all(a >= b for a, b in itertools.pairwise(f[1:]))  # then non-increasing (cosine)
    assert f[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert lr_factor(total, total, c) == pytest.approx(0.1)  # the floor
    const = cfg("optim.schedule=constant", "optim.warmup_ratio=0.25")
    assert [lr_factor(s, 8, const) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert total_steps(cfg("optim.max_steps=5"), 1000) == 5


def test_deepspeed_config_takes_sizes_from_the_training_config(tmp_path):
    path = tmp_path / "z3.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}, "train_batch_size": 999}))
    c = cfg("trainer.backend=deepspeed", f"trainer.deepspeed={path}", "optim.batch_size=3", "optim.grad_accum=2",
            "optim.max_grad_norm=0.5")  # fmt: skip
    ds = deepspeed_config(c, world_size=4, bf16=True)
    assert ds["zero_optimization"] == {"stage": 3}
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (
        3,
        2,
        24,
    )
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"] == {"enabled": True} and ds["fp16"] == {"enabled": False}
    bad = build_config(BASE, ["trainer.backend=deepspeed"])
    bad.trainer.deepspeed = {"optimizer": {"type": "Adam"}}
    with pytest.raises(ConfigError, match="must not define an optimizer"):
        deepspeed_config(bad, 1, False)


def test_every_shipped_deepspeed_config_is_valid_json():
    from testlib import REPO

    for name, stage in (("zero2.json", 2), ("zero3.json", 3)):
        c = cfg("trainer.backend=deepspeed", f"trainer.deepspeed={REPO / 'conf' / 'deepspeed' / name}")
        assert deepspeed_config(c, 2, False)["zero_optimization"]["stage"] == stage


def test_state_tree_round_trip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW([{"params": model.parameters(), "lr": 0.1, "name": "all"}], betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tree = {"optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state()}, "x": [1, 2.5, None, "s"],
            "nan": float("nan"), "junk": object()}  # fmt: skip
    with pytest.raises(TypeError, match=r"cannot store object at state\.junk"):
        save_tree(tree, str(tmp_path / "bad"))
    save_tree(tree, str(tmp_path / "rank-0"), drop=["junk"])
    back = load_tree(str(tmp_path / "rank-0"))
    assert "junk" not in back and math.isnan(back["nan"]) and back["x"] == [1, 2.5, None, "s"]
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)  # tuples stay tuples
    state = back["optimizer"]["state"]
    assert sorted(state) == [0, 1]  # int keys stay ints, as load_state_dict needs
    for k in (0, 1):
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state[k][name], opt.state_dict()["state"][k][name])
    assert torch.equal(back["rng"]["torch"], tree["rng"]["torch"])
    fresh = torch.optim.AdamW([{"params": model.parameters(), "lr": 0.1, "name": "all"}])
    fresh.load_state_dict(back["optimizer"])  # what a resume does
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9)
    # the files are safetensors + JSON: nothing to unpickle
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank-0.json", "rank-0.safetensors"]


def test_a_run_directory_with_checkpoints_of_another_model_is_not_resumed(tmp_path):
    from ray_slt import storage
    from ray_slt.config import dump_yaml
    from ray_slt.training.run import check_resumable

    rdir = str(tmp_path / "run")
    first = cfg("sft.lora.r=64")
    check_resumable(cfg("sft.lora.r=8"), rdir)  # nothing there yet
    storage.write_text(f"{rdir}/train_config.yaml", dump_yaml(first))
    check_resumable(cfg("sft.lora.r=8"), rdir)  # a config but no checkpoint: nothing would be resumed
    (tmp_path / "run" / "checkpoint_e001_s0000004").mkdir()
    check_resumable(cfg("sft.lora.r=64", "optim.epochs=9", "optim.lr=0.01"), rdir)  # same model: resumes
    with pytest.raises(ConfigError, match=r"different model \(sft.lora.r: 64 -> 8\).*another trainer.name"):
        check_resumable(cfg("sft.lora.r=8"), rdir)
    with pytest.raises(ConfigError, match="stage: 'sft' -> 'pretrain'"):
        check_resumable(cfg("stage=pretrain"), rdir)


def test_length_groups_batch_neighbours_by_size_and_keep_every_row():
    """optim.group_by_length: a pool of rows is sorted by size (stable) and cut into batches of neighbours, the
    batches in a seeded shuffled order; every row lands in exactly one batch, with its columns aligned."""
    import random

    import numpy as np

    from ray_slt.training.loop import length_groups

    sizes = [7, 3, 9, 3, 1, 8, 2, 6, 5, 4]
    rows = {"sample_id": np.array([f"s{i}" for i in range(10)]), "size": np.array(sizes)}
    batches = length_groups(rows, sizes, 4, random.Random(0))
    assert [len(b["sample_id"]) for b in sorted(batches, key=lambda b: b["size"].min())] == [4, 4, 2]
    assert sorted(s for b in batches for s in b["sample_id"]) == sorted(rows["sample_id"])
    for b in batches:  # columns stay aligned
        assert [sizes[int(s[1:])] for s in b["sample_id"]] == b["size"].tolist()
    by_min = sorted(batches, key=lambda b: b["size"].min())
    assert [b["size"].tolist() for b in by_min] == [[1, 2, 3, 3], [4, 5, 6, 7], [8, 9]]  # neighbours, stable
    orders = {tuple(tuple(b["sample_id"]) for b in length_groups(rows, sizes, 4, random.Random(s))) for s in range(8)}
    assert len(orders) > 1  # the batch order is shuffled by the seed
    assert length_groups(rows, sizes, 4, random.Random(3))[0]["sample_id"].tolist() == \
        length_groups(rows, sizes, 4, random.Random(3))[0]["sample_id"].tolist()  # fmt: skip


def test_sample_sizes_and_group_by_length_rules():
    """Sizes are frames where rows carry them, else the characters of text and gloss; group_by_length groups the
    shuffled epoch only (refused with priority sampling)."""
    import numpy as np

    from ray_slt.training.task import task_for

    task = task_for(cfg())
    assert task.sample_sizes({"num_frames": np.array([5, 12]), "text": np.array(["a", "bb"])}) == [5, 12]
    assert task.sample_sizes({"text": np.array(["abc", "de"]), "gloss": np.array(["X Y", None])}) == [6, 2]
    with pytest.raises(ConfigError, match="gives no sample sizes"):
        task.sample_sizes({"sample_id": np.array(["a"])})
    with pytest.raises(ConfigError, match="group_by_length groups the shuffled epoch"):
        build_config({**BASE, "stage": "produce"}, ["optim.sampling=priority", "optim.group_by_length=4"])
    assert cfg("optim.group_by_length=8").optim.group_by_length == 8
