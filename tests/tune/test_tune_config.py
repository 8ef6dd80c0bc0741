"""Sweep configs (kind `tune`) without a cluster: the search space is checked against the training schema before
any trial starts, search spaces map to Tune's, Optuna suggests inside the space, ASHA's rungs are rebuilt from
the runs' dev curves on resume, and results rows/tables come from what the trials reported."""

from __future__ import annotations

import json

import pytest
from testlib import REPO
from tune_helpers import run_cli

from ray_slt.config import build_config
from ray_slt.errors import ConfigError
from ray_slt.tune.config import SweepConfig, base_train_dict, check_space, load_sweep, max_epochs, yaml_value

CONF = str(REPO / "conf" / "tune" / "synthetic_tiny.yaml")


def sweep(**changes) -> SweepConfig:
    data = {
        "kind": "tune",
        "train": str(REPO / "conf" / "train" / "synthetic_tiny.yaml"),
        "space": {"sft.lora.r": {"grid": [4, 16]}},
        # the tiny LM stands in for a pretrained one whose LoRA is swept (a random LM trains in full, no LoRA)
        "overrides": {"sft.lm_training": "lora"},
    }
    data.update(changes)
    cfg = build_config(data)
    assert isinstance(cfg, SweepConfig)
    return cfg


def test_shipped_sweep_configs_validate_against_their_training_configs():
    for path in sorted((REPO / "conf" / "tune").glob("*.yaml")):
        cfg = load_sweep(str(path))
        base = base_train_dict(cfg)
        check_space(cfg, base)
        assert cfg.scheduler.type == "fifo" or max_epochs(cfg, base) >= cfg.scheduler.grace_period


def test_unknown_paths_and_invalid_values_fail_before_any_trial():
    cfg = sweep(space={"sft.lora.alhpa": {"grid": [4]}})
    with pytest.raises(ConfigError, match=r"unknown key 'sft.lora.alhpa'.*did you mean 'sft.lora.alpha'"):
        check_space(cfg, base_train_dict(cfg))
    cfg = sweep(space={"sft.lora.dropout": {"uniform": [0.0, 1.5]}})
    with pytest.raises(ConfigError, match=r"space sft.lora.dropout: value 1.5 is invalid.*less than 1"):
        check_space(cfg, base_train_dict(cfg))
    cfg = sweep(space={"optim.schedule": {"choice": ["cosine", "linear"]}})
    with pytest.raises(ConfigError, match=r"space optim.schedule: value 'linear' is invalid"):
        check_space(cfg, base_train_dict(cfg))
    # nested overrides are dotted keys of the training config
    cfg = sweep(overrides={"optim": {"epochs": 0}, "sft.lm_training": "lora"})
    with pytest.raises(ConfigError, match=r"optim.epochs"):
        base_train_dict(cfg)
    with pytest.raises(ConfigError, match=r"space.sft.lora.r: .*exactly one of"):
        sweep(space={"sft.lora.r": {"grid": [4], "choice": [8]}})
    with pytest.raises(ConfigError, match=r"loguniform needs low > 0"):
        sweep(space={"sft.lr_llm": {"loguniform": [0, 1e-3]}})
    with pytest.raises(ConfigError, match=r"trainer.storage is set by the sweep"):
        sweep(space={"trainer.storage": {"choice": ["a", "b"]}})
    with pytest.raises(ConfigError, match=r"same_as 'sft.lr_x' must name a sampled key"):
        sweep(space={"sft.lr_llm": {"grid": [1e-3]}, "sft.lr_projector": {"same_as": "sft.lr_x"}})
    with pytest.raises(ConfigError, match=r"grid/choice entries, not ranges: sft.lr_llm"):
        sweep(space={"sft.lr_llm": {"loguniform": [1e-5, 1e-3]}}, search={"algorithm": "grid"})
    with pytest.raises(ConfigError, match=r"eval.every_epochs is 0"):
        base_train_dict(sweep(overrides={"eval.every_epochs": 0}))
    cfg = sweep(
        train=str(REPO / "conf" / "train" / "grpo_phoenix_gloss2text.yaml"),
        space={"grpo.beta": {"grid": [0.0, 0.04]}},
        overrides={},
    )
    with pytest.raises(ConfigError, match=r"stage grpo trains with the grpo recipe, which sweeps do not run"):
        base_train_dict(cfg)


def test_a_key_without_effect_is_refused():
    """sft.lora.* does nothing when the LM trains in full (the shipped tiny configs: a random LM): sweeping it
    would train identical trials, so the sweep is refused with the reason."""
    cfg = sweep(overrides={})
    with pytest.raises(ConfigError, match=r"space sft.lora.r: has no effect here \(the LM trains in full"):
        check_space(cfg, base_train_dict(cfg))
    check_space(sweep(), base_train_dict(sweep()))  # with LoRA on: a real knob
    # a pretrained LM is loaded as it is: the tiny: sizes and dropout do nothing
    pretrained = sweep(space={"sft.tiny.dropout": {"grid": [0.0, 0.1]}}, overrides={"sft.lm": "Qwen/Qwen3-0.6B"})
    with pytest.raises(ConfigError, match=r"space sft.tiny.dropout: has no effect here \(lm=Qwen/Qwen3-0.6B"):
        check_space(pretrained, base_train_dict(pretrained))
    tiny = sweep(space={"sft.tiny.dropout": {"grid": [0.0, 0.1]}}, overrides={})
    check_space(tiny, base_train_dict(tiny))


def test_cli_rejects_a_bad_space_in_one_line_without_starting_ray():
    done = run_cli("tune", CONF, "space={sft.lora.rr: {grid: [4, 8]}}", timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "sft.lora.rr" in lines[0] and lines[0].startswith("ray-slt: error:")
    assert "Started a local Ray instance" not in done.stdout + done.stderr
    done = run_cli("tune", str(REPO / "conf" / "train" / "synthetic_tiny.yaml"), timeout=120)
    assert done.returncode == 2 and "kind 'tune' is needed" in done.stderr


def test_override_values_round_trip_through_yaml():
    for value in (1e-5, 3, 0.1, True, None, "a: b", "1e-3", [4, 8], ["q_proj", "v_proj"]):
        cfg = build_config({"kind": "tune", "train": "x.yaml", "space": {"x": {"choice": [0]}}},
                           [f"name={yaml_value('n')}", f"overrides.v={yaml_value(value)}"])  # fmt: skip
        assert cfg.overrides["v"] == value and type(cfg.overrides["v"]) is type(value)


def test_space_entries_are_overridden_by_their_dotted_config_path():
    cfg = load_sweep(CONF, ["space.sft.projector.hidden={grid: [4]}", "space.sft.lr_llm.grid=[0.1, 0.2]"])
    assert cfg.space["sft.projector.hidden"].grid == [4]  # replaced whole
    assert cfg.space["sft.lr_llm"].grid == [0.1, 0.2]  # one field of the entry
    assert cfg.space["sft.lr_projector"].same_as == "sft.lr_llm"  # the others as the file has them
    assert len(cfg.space) == 3
    with pytest.raises(ConfigError, match=r"space\.sft\.projector\.hidden\.gird"):
        load_sweep(CONF, ["space.sft.projector.hidden.gird=[4]"])


SPACE = {
    "sft.lora.r": {"grid": [8, 16, 64]},
    "sft.lr_llm": {"loguniform": [1e-5, 1e-3]},
    "sft.lora.dropout": {"uniform": [0.0, 0.3]},
    "optim.batch_size": {"randint": [2, 4]},
    "sft.max_frames": {"choice": [64, 128, 256]},
    "sft.lr_projector": {"same_as": "sft.lr_llm"},
}


def test_search_spaces_map_to_tune():
    from ray.tune.search.sample import Categorical, Float, Integer

    from ray_slt.tune.sweep import param_space

    space = SPACE
    random_space = param_space(sweep(space=space))
    assert random_space["sft.lora.r"] == {"grid_search": [8, 16, 64]}
    assert isinstance(random_space["sft.lr_llm"], Float) and isinstance(random_space["optim.batch_size"], Integer)
    assert isinstance(random_space["sft.max_frames"], Categorical) and "sft.lr_projector" not in random_space


def test_optuna_samples_inside_the_space():
    from ray_slt.tune.sweep import _search_alg, param_space

    cfg = sweep(space=SPACE, search={"algorithm": "optuna", "seed": 3, "num_samples": 5})
    searcher = _search_alg(cfg, 2)
    assert searcher.set_search_properties("dev_bleu4", "max", param_space(cfg))
    for i in range(5):
        suggested = searcher.suggest(f"t{i}")
        assert suggested["sft.lora.r"] in (8, 16, 64) and suggested["sft.max_frames"] in (64, 128, 256)
        assert 1e-5 <= suggested["sft.lr_llm"] <= 1e-3 and 0.0 <= suggested["sft.lora.dropout"] <= 0.3
        assert suggested["optim.batch_size"] in (2, 3, 4)  # randint includes its upper end
        full = cfg.expand(suggested)
        assert full["sft.lr_projector"] == suggested["sft.lr_llm"]
        # every suggestion is a valid training config
        build_config(base_train_dict(cfg), [f"{k}={yaml_value(v)}" for k, v in full.items()])


def test_asha_rungs_are_rebuilt_from_the_runs_dev_curves(tmp_path):
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from ray_slt.tune.scheduler import ResumableASHA

    trials_dir = tmp_path / "trials"
    # two trials that ran before an interruption: their dev curves (the loop's metrics/dev.jsonl, epoch 0-based)
    for trial_id, scores in {"a_00000": [5.0, 9.0], "a_00001": [4.0, 8.0]}.items():
        curve = trials_dir / trial_id / "metrics" / "dev.jsonl"
        curve.parent.mkdir(parents=True)
        rows = [{"step": 10 * (e + 1), "epoch": e, "dev_bleu4": s} for e, s in enumerate(scores)]
        curve.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def scheduler():
        s = ResumableASHA(str(trials_dir), "dev_bleu4", time_attr="epoch", max_t=4, grace_period=1,
                          reduction_factor=2)  # fmt: skip
        s.set_search_properties("dev_bleu4", "max")
        return s

    restored = scheduler()
    for trial_id in ("a_00000", "a_00001"):
        restored.on_trial_add(None, Trial("x", trial_id=trial_id, stub=True))
    fresh = Trial("x", trial_id="a_00002", stub=True)
    restored.on_trial_add(None, fresh)
    # below the rung the restored trials set at epoch 1: stopped
    assert restored.on_trial_result(None, fresh, {"epoch": 1, "dev_bleu4": 1.0}) == TrialScheduler.STOP
    # without the replay, the first trial at a rung is never stopped
    plain = scheduler()
    plain.on_trial_add(None, fresh)
    assert plain.on_trial_result(None, fresh, {"epoch": 1, "dev_bleu4": 1.0}) == TrialScheduler.CONTINUE


def test_per_trial_resources_come_from_the_resources_section():
    from ray_slt.tune.sweep import concurrency, trial_resources

    cfg = sweep(resources={"num_workers": 2, "cpus_per_worker": 0.5, "use_gpu": True, "gpus_per_worker": 0.25})
    base = base_train_dict(cfg)
    assert base["trainer"]["num_workers"] == 2 and base["trainer"]["gpus_per_worker"] == 0.25
    assert trial_resources(base, cfg.resources.driver_cpus) == {"CPU": 1.0, "GPU": 0.5}
    assert trial_resources(base, 0.5) == {"CPU": 1.5, "GPU": 0.5}
    assert concurrency(sweep(search={"max_concurrent_trials": 3}), base) == 3


def test_grid_values_are_typed_by_the_training_schema():
    from ray_slt.tune.sweep import param_space

    # YAML 1.1 reads 1e-06 (no dot) as a string; the learning rate's field makes it a float
    cfg = load_sweep(CONF, ["space={sft.lr_llm: {grid: [1e-06, 3.0e-3]}, sft.projector.hidden: {choice: ['8', 16]}}"])
    assert cfg.space["sft.lr_llm"].grid == ["1e-06", 3.0e-3]
    typed = check_space(cfg, base_train_dict(cfg))
    assert typed.space["sft.lr_llm"].grid == [1e-06, 3.0e-3] and typed.space["sft.projector.hidden"].choice == [8, 16]
    assert param_space(typed)["sft.lr_llm"] == {"grid_search": [1e-06, 3.0e-3]}
