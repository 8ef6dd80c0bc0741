"""GRPO on Ray Train with two workers: TRL's trainer inside train_func (prepare_trainer + Ray's report
callback), dev evaluation with the shared metrics, checkpoints in the run directory, resume by re-running."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from grpo_helpers import INSTRUCTION

from ray_slt.cli import main
from ray_slt.config import build_config


@pytest.fixture(scope="module")
def phoenix_manifest(tmp_path_factory, shared_data) -> str:
    """The PHOENIX-2014T manifest made by the real prepare stage from the official tables."""
    from ray_slt.data.prepare import prepare

    root = shared_data / "phoenix14t"
    if not root.exists():
        pytest.skip(f"real sample data not available: {root}")
    out = str(tmp_path_factory.mktemp("phoenix") / "manifest.parquet")
    cfg = build_config({"kind": "prepare", "dataset": "phoenix14t", "root": str(root), "out": out})
    prepare(cfg, progress=False)
    return out


def grpo_data(storage, init, manifest) -> dict:
    return {
        "kind": "train",
        "stage": "grpo",
        "data": {"manifest": manifest, "lang": "de", "limit_train": 16, "limit_dev": 8},
        "grpo": {
            "init": init,
            "num_generations": 4,
            "max_completion_length": 8,
            "lr": 1e-3,
            "trl": {"gradient_checkpointing": False},
        },
        "optim": {"max_steps": 2, "batch_size": 2, "schedule": "constant", "seed": 0},
        "trainer": {
            "num_workers": 2,
            "cpus_per_worker": 1,
            "storage": str(storage),
            "name": "grpo2",
            "checkpoint_every": 1,
            "num_to_keep": 2,
            "log_every": 1,
        },
        "eval": {"every_epochs": 1, "batch_size": 8, "num_beams": 1, "max_new_tokens": 8},
    }


def grpo_config(storage, init, manifest, **overrides):
    return build_config(grpo_data(storage, init, manifest), [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_workers_train_checkpoint_resume_and_eval(ray_local, tmp_path, sft_checkpoint, phoenix_manifest, capsys):
    """`ray-slt train` on a stage-grpo config: 2 Ray Train workers, a checkpoint and a dev evaluation per step,
    the best on dev BLEU-4; the Ray checkpoint resumes (in this process, the code path a re-run takes); `ray-slt
    eval` scores the run's best checkpoint. One Ray run only: starting Ray Train workers is the slow part here."""
    from testlib import serve_once

    from ray_slt.models.registry import load_predictor, resolve
    from ray_slt.training.grpo import CurveWriter, build_trainer, resume_dir

    conf = tmp_path / "grpo.yaml"
    conf.write_text(yaml.safe_dump(grpo_data(tmp_path / "runs", sft_checkpoint, phoenix_manifest)))
    capsys.readouterr()
    assert main(["train", str(conf), "--json"]) == 0  # the one driver runs stage grpo with the grpo recipe
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run_dir = tmp_path / "runs" / "grpo2"
    assert summary["steps"] == 2 and summary["num_workers"] == 2 and summary["stage"] == "grpo"
    assert (summary["recipe"], summary["protocol"], summary["selection"]) == (
        "grpo", "translation", {"metric": "dev_bleu4", "mode": "max"})  # fmt: skip
    # 2 workers x 2 prompts x 4 samples per step
    assert summary["completions_per_step"] == 16 and summary["completions_per_s"] > 0
    assert len(summary["checkpoints"]) == 2
    assert all(c["dev_bleu4"] is not None for c in summary["checkpoints"])
    best = summary["best"]
    assert best["model"] == os.path.join(best["checkpoint"], "model")
    assert {"rank-0.json", "rank-1.json"} <= set(os.listdir(os.path.join(best["checkpoint"], "rng")))
    assert json.loads((run_dir / "run.json").read_text())["best"] == best
    # the checkpoint is an ordinary translator for everything that loads saved models (by the kind it records)
    ref = resolve(best["checkpoint"])
    assert (ref.kind, ref.stage, ref.protocol, ref.model) == ("translator", "grpo", "translation", best["model"])
    decoding = {"num_beams": 1, "max_new_tokens": 6}
    predictor = load_predictor(str(run_dir), **decoding)
    assert predictor.inputs == "gloss" and predictor.model.cfg.lora.r == 64
    assert len(predictor.predict([{"gloss": "MORGEN REGEN"}, {"gloss": "HEUTE SONNE"}])) == 2
    model = predictor.model
    # ... and served over real HTTP: a gloss translator's route takes JSON glosses
    body = json.dumps({"gloss": "MORGEN REGEN"}).encode()
    status, out, health = serve_once(str(run_dir), "gloss2text", body, "application/json", options=decoding)
    assert status == 200, out
    route = health["routes"]["gloss2text"]
    assert (route["kind"], route["stage"], route["inputs"]) == ("translator", "grpo", "gloss")
    assert out["model_id"] == predictor.model_id and out["input_kind"] == "gloss"
    assert out["text"] == predictor.predict([{"gloss": "MORGEN REGEN"}])[0]["text"]
    batch = model.collator()([{"gloss": "MORGEN REGEN"}, {"gloss": "HEUTE SONNE"}])
    assert len(model.generate(batch, num_beams=1, max_new_tokens=6)) == 2
    rewards = [r for r in _jsonl(run_dir / "metrics" / "train.jsonl") if "reward" in r]
    assert [r["step"] for r in rewards] == [1, 2]
    assert all(0 <= r["reward"] <= 1 and "kl" in r and "rewards/bleu4/mean" in r for r in rewards)
    dev = _jsonl(run_dir / "metrics" / "dev.jsonl")
    assert [d["step"] for d in dev] == [1, 2] and all("dev_bleu4" in d for d in dev)

    # the latest Ray checkpoint resumes: adapter, optimizer, step and the reward curve carry on to step 3
    cfg = grpo_config(tmp_path / "runs", sft_checkpoint, phoenix_manifest, **{"optim.max_steps": 3})
    trainer = build_trainer(cfg, str(run_dir), str(tmp_path / "out"), callbacks=[CurveWriter(str(run_dir))])
    trainer.train(resume_from_checkpoint=resume_dir(summary["latest"]))
    assert trainer.state.global_step == 3
    assert [r["step"] for r in _jsonl(run_dir / "metrics" / "train.jsonl") if "reward" in r] == [1, 2, 3]

    # `ray-slt eval` takes the run directory: the best GRPO checkpoint, the run's data, the shared metrics
    assert main(["eval", str(run_dir), "--split", "dev", "--num-beams", "1", "--max-new-tokens", "6", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["stage"] == "grpo" and scores["n_samples"] == 519 and "bleu4" in scores
    assert scores["model"] == json.loads((run_dir / "run.json").read_text())["best"]["model"]


def test_grpo_configs_refuse_what_they_cannot_do(tmp_path, sft_checkpoint, phoenix_manifest):
    from ray_slt.errors import ConfigError
    from ray_slt.training.grpo import grpo_args, read_sft_config

    with pytest.raises(ConfigError, match=r"grpo\.lr"):
        grpo_config(tmp_path, sft_checkpoint, phoenix_manifest, **{"grpo.trl": {"learning_rate": 1e-4}})
    with pytest.raises(ConfigError, match="vLLM"):
        grpo_config(tmp_path, sft_checkpoint, phoenix_manifest, **{"grpo.trl": {"use_vllm": True}})
    with pytest.raises(ConfigError, match="needs its model section"):
        build_config({"kind": "train", "stage": "grpo", "data": {"manifest": phoenix_manifest}})
    sft = read_sft_config(sft_checkpoint)
    assert sft.instruction == INSTRUCTION
    cfg = grpo_config(tmp_path, sft_checkpoint, phoenix_manifest, **{"grpo.trl": {"scal_rewards": "batch"}})
    with pytest.raises(ConfigError, match=r"did you mean trl\.scale_rewards"):
        grpo_args(cfg, str(tmp_path / "o"), sft)
    cfg = grpo_config(tmp_path, sft_checkpoint, phoenix_manifest, **{"grpo.trl": {"scale_rewards": "batch"},
                                                                     "grpo.reward.bleu_weight": 0.25})  # fmt: skip
    args = grpo_args(cfg, str(tmp_path / "o"), sft)
    assert args.scale_rewards == "batch" and args.reward_weights == [0.25, 0.75]
    assert args.per_device_train_batch_size == 2 * 4 and args.num_generations == 4
    assert (args.beta, args.epsilon, args.loss_type, args.learning_rate) == (0.04, 0.2, "grpo", 1e-3)
