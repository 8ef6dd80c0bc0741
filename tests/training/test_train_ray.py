"""The training loop on a local 2-CPU Ray: DeepSpeed ZeRO-2 on two workers with checkpoints in S3 (a loopback
server) and a resumed run; DDP on two workers (stage-1 pretraining); a worker killed mid-run that the run
survives, ending in exactly the state of an uninterrupted run."""

from __future__ import annotations

import json
import shutil

import fsspec
import pytest
import torch
from safetensors.torch import load_file
from testlib import REPO

from ray_slt import storage
from ray_slt.config import load_config
from ray_slt.training.run import run_training
from ray_slt.training.state import load_tree

CONF = str(REPO / "conf" / "train" / "synthetic_tiny.yaml")


def small(store: dict, storage_uri: str, name: str, *overrides: str):
    """The tiny synthetic config on 64 training / 8 dev samples, short decoding."""
    return load_config(
        CONF,
        [
            f"data.features={store['features']}",
            "data.limit_train=64",
            "data.limit_dev=8",
            f"trainer.storage={storage_uri}",
            f"trainer.name={name}",
            "sft.max_new_tokens=6",
            "optim.epochs=1",
            "optim.batch_size=4",
            "eval.every_epochs=1",
            *overrides,
        ],
    )


def curve(uri: str) -> list[dict]:
    return [json.loads(x) for x in storage.read_text(uri).splitlines() if x.strip()]


@pytest.fixture(scope="module")
def ray_with_s3(s3_server, ray_local):
    """Ray started after the S3 endpoint is in the environment, so that its workers reach the loopback S3."""
    return ray_local


def test_deepspeed_zero2_two_workers_checkpoints_to_s3_and_resumes(ray_with_s3, synthetic_store, s3_bucket, tmp_path):
    runs = f"{s3_bucket}/runs"
    zero2 = REPO / "conf" / "deepspeed" / "zero2.json"
    ds = [
        "trainer.num_workers=2",
        "trainer.backend=deepspeed",
        f"trainer.deepspeed={zero2}",
        "trainer.checkpoint_every=3",
    ]
    first = run_training(small(synthetic_store, runs, "ds", *ds))
    # 64 samples over 2 workers, 4 per micro-batch: 8 optimizer steps per epoch
    assert (first["steps"], first["samples"], first["total_steps"]) == (8, 64, 8)
    latest = first["latest"]
    assert latest.startswith(f"{runs}/ds/checkpoint_e001_s0000008")
    fs = fsspec.filesystem("s3")
    files = {p.split("checkpoint_e001_s0000008/", 1)[1] for p in fs.find(latest)}
    # rank 0's consolidated model (safetensors; the tiny random LM trains in full) and every rank's ZeRO
    # optimizer shard
    expected = {
        "model/MANIFEST.json",
        "model/modules.safetensors",
        "model/base_lm/model.safetensors",
        "train_state.json",
        "state/rank-0.safetensors",
        "state/rank-1.safetensors",
        "dev_predictions.jsonl",
    }
    assert expected <= files
    state = json.loads(storage.read_text(f"{latest}/train_state.json"))
    assert state["step"] == 8 and state["epoch"] == 1 and state["world_size"] == 2
    a, b = state["param_checksums"]
    assert a == pytest.approx(b, rel=1e-9, abs=1e-9)  # ZeRO-2 replicas hold the same weights
    steps = [r["step"] for r in curve(first["curves"]["train"])]
    assert steps == list(range(1, 9))

    # the same run with a second epoch resumes from the S3 checkpoint: model, ZeRO optimizer shards, counters
    second = run_training(small(synthetic_store, runs, "ds", *ds, "optim.epochs=2"))
    assert (second["steps"], second["samples"]) == (16, 128)
    rows = curve(second["curves"]["train"])
    assert [r["step"] for r in rows] == list(range(1, 17))  # one history, no step twice
    assert all(r["epoch"] == 1 for r in rows[8:])
    final = second["latest"]
    assert final.startswith(f"{runs}/ds/checkpoint_e002_s0000016")
    local = tmp_path / "rank-1"
    for ext in (".json", ".safetensors"):
        storage.copy(f"{final}/state/rank-1{ext}", f"{local}{ext}")
    opt = load_tree(str(local))["optimizer"]
    # AdamW's step count in rank 1's shard continued from the checkpoint (8) instead of restarting at 0
    steps_seen = {float(s["step"]) for s in opt["base_optimizer_state"]["state"].values()}
    assert steps_seen == {16.0}
    dev = curve(f"{runs}/ds/metrics/dev.jsonl")
    assert [r["step"] for r in dev] == [8, 16] and all(r["dev_samples"] == 8 for r in dev)


def test_ddp_two_workers_pretraining(ray_with_s3, synthetic_store, tmp_path):
    cfg = load_config(
        str(REPO / "conf" / "train" / "pretrain_synthetic_tiny.yaml"),
        [
            f"data.features={synthetic_store['features']}",
            "data.limit_train=64",
            "data.limit_dev=8",
            f"trainer.storage={tmp_path}",
            "trainer.name=pt",
            "trainer.num_workers=2",
            "optim.epochs=3",
            "optim.batch_size=4",
            "optim.lr=3e-3",
            "eval.every_epochs=3",
            "pretrain.skeleton={hidden: 32, heads: 4, ffn: 64, layers: 1, gcn_channels: [16]}",
            "pretrain.text={hidden: 32, heads: 4, ffn: 64, encoder_layers: 1, decoder_layers: 1, "
            "tokenizer: {vocab_size: 300}}",
            "pretrain.contrastive.dim=32",
            "pretrain.max_new_tokens=6",
            "pretrain.num_beams=1",
        ],
    )
    s = run_training(cfg)
    assert (s["steps"], s["samples"]) == (24, 192)
    rows = curve(s["curves"]["train"])
    assert {"loss", "loss_con", "loss_slt", "lr/all", "grad_norm", "samples_per_s"} <= set(rows[0])
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first - 0.5, (first, last)  # nats: a clear fall from the untrained start
    state = json.loads(storage.read_text(f"{s['latest']}/train_state.json"))
    a, b = state["param_checksums"]
    assert a == pytest.approx(b, rel=1e-9, abs=1e-9)  # DDP keeps both replicas identical
    assert state["stage"] == "pretrain" and storage.exists(f"{s['latest']}/model/pretrain.json")
    assert s["best"]["dev_bleu4"] is not None and s["best"]["checkpoint"] == s["latest"]

    # the stage-1 run is served like every other translator (its text decoder translates), over real HTTP
    from testlib import serve_once

    from ray_slt.features.store import load_sample, pose_uri
    from ray_slt.models.registry import load_predictor

    sid = sorted(json.loads(x)["sample_id"] for x in storage.read_text(
        storage.join(s["run_dir"], "predictions", f"dev_step{s['steps']:07d}.jsonl")).splitlines())[0]  # fmt: skip
    pose = storage.read_bytes(pose_uri(synthetic_store["features"], sid))
    status, out, health = serve_once(s["run_dir"], "translate", pose, "application/x-pose")
    assert status == 200, out
    assert health["routes"]["translate"]["kind"] == "pretrain" and health["routes"]["translate"]["stage"] == "pretrain"
    predictor = load_predictor(s["run_dir"])
    assert out["model_id"] == predictor.model_id
    assert out["text"] == predictor.predict([load_sample(synthetic_store["features"], sid)])[0]["text"]


def test_killed_worker_resumes_to_the_same_state(ray_with_s3, synthetic_store, tmp_path):
    # one worker: its data order is deterministic (several workers share the stream in whatever order they ask)
    common = ["trainer.num_workers=1", "optim.batch_size=8", "trainer.checkpoint_every=3", "eval.every_epochs=0"]
    # (the encoder's dropout draws random numbers at every step: the resumed RNG state must be the saved one)
    plain = run_training(small(synthetic_store, str(tmp_path), "plain", *common))
    assert plain["steps"] == 8
    # the same starting model for the second run (its init directory is keyed by the model config's hash)
    init = next(p for p in (tmp_path / "plain").iterdir() if p.name.startswith("init-"))
    shutil.copytree(init, tmp_path / "killed" / init.name)
    killed = run_training(
        small(synthetic_store, str(tmp_path), "killed", *common, "trainer.fail_at_step=5", "trainer.max_failures=1")
    )
    # the worker process really died at step 5 (after the checkpoint at step 3) and the run went on from there
    assert (tmp_path / "killed" / "faults" / "step-5-rank-0").exists()
    assert killed["steps"] == 8
    rows_a, rows_b = curve(plain["curves"]["train"]), curve(killed["curves"]["train"])
    assert [r["step"] for r in rows_b] == list(range(1, 9))
    assert [r["loss"] for r in rows_b] == [r["loss"] for r in rows_a]
    for name in ("modules.safetensors", "base_lm/model.safetensors"):
        a = load_file(f"{plain['latest']}/model/{name}")
        b = load_file(f"{killed['latest']}/model/{name}")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name  # bit for bit
