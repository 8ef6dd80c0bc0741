"""`ray-slt demo` end to end at a small size (a tiny synthetic corpus, one epoch), and the labels.csv layout of
``make demo DATA=DIR``. The full ``make demo`` (600 sentences, a few minutes of training) is run by hand."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
from testlib import shared

from ray_slt.errors import DataError


@pytest.mark.slow
def test_demo_runs_every_step_and_serves_the_trained_model(tmp_path):
    import ray

    from ray_slt import storage
    from ray_slt.data.manifest import read_manifest
    from ray_slt.demo import run_demo
    from ray_slt.features.store import load_sample
    from ray_slt.models.recognition import read_meta
    from ray_slt.models.registry import load_predictor, resolve

    out = tmp_path / "demo"
    summary = run_demo(str(out), size="tiny", quiet=True, train_overrides=["optim.epochs=1"], cpus=2,
                       recognition_overrides=["optim.epochs=2"], produce_overrides=["optim.epochs=2",
                       "optim.batch_size=8", "eval.every_epochs=2"])  # fmt: skip
    assert len(summary["steps"]) == 9
    assert summary["splits"] == {"train": 32, "dev": 8, "test": 8}
    assert summary["extract"]["ok"] == 48 and summary["extract"]["errors"] == 0
    for name in ("untrained", "trained"):
        assert summary["dev"][name]["n"] == 8 and 0 <= summary["dev"][name]["bleu4"] <= 100
    assert summary["train"]["steps"] > 0
    # the held-out sample is a test sample, translated over HTTP by the trained checkpoint
    http = summary["http"]
    manifest = {r["sample_id"]: r for r in read_manifest(str(out / "manifest.parquet")).to_pylist()}
    assert manifest[http["sample_id"]]["split"] == "test"
    assert http["reference"] == manifest[http["sample_id"]]["text"]
    predictor = load_predictor(summary["train"]["run_dir"])
    assert http["model_id"] == predictor.model_id
    sample = load_sample(str(out / "features"), http["sample_id"])
    assert http["hypothesis"] == predictor.predict([sample])[0]["text"]
    # stopped cleanly: no Ray left in this process, nothing listening on the demo's port
    assert not ray.is_initialized()
    with pytest.raises(OSError):
        urllib.request.urlopen(http["url"] + "healthz", timeout=5)
    assert json.loads((out / "summary.json").read_text())["http"]["hypothesis"] == http["hypothesis"]
    # recognition: HALI on the seen isolated signs, zero-shot scores on the test-unseen ones, an unseen sign served
    rec = summary["recognition"]
    assert rec["partition"] == {"seen": 8, "val_unseen": 4, "test_unseen": 4} and rec["test_n"] == 4
    assert 0 <= rec["test"]["top1"] <= rec["test"]["top5"] <= 100 and rec["chance_top1"] == 25.0
    ref = resolve(rec["run_dir"])
    metrics = json.loads(storage.read_text(storage.join(ref.checkpoint, "eval", "test", "metrics.json")))
    assert metrics["protocol"]["name"] == "zsl" and metrics["top1"] == pytest.approx(rec["test"]["top1"], abs=0.05)
    unseen = set(read_meta(ref.model)["partition"]["test_unseen"])
    answer = http["recognize"]
    assert answer["gloss"] in unseen and answer["candidates"] == 4 and sorted(answer["ranked"]) == sorted(unseen)
    # production: the held-out sentence produced (a .pose pose-format reads, a GIF of every frame) and served
    from PIL import Image
    from pose_format import Pose

    prod = summary["production"]
    assert prod["sample_id"] == http["sample_id"] and prod["steps"] > 0
    assert prod["dev_dtw"]["trained"] > 0 and prod["dev_dtw"]["untrained"] > 0
    pose = Pose.read(Path(prod["pose"]).read_bytes())
    assert pose.body.data.shape[:3] == (prod["num_frames"], 1, 50)
    assert Image.open(prod["gif"]).n_frames == prod["num_frames"]
    want = load_predictor(prod["run_dir"]).predict([{"text": http["reference"]}])[0]
    assert want["num_frames"] == prod["num_frames"]  # in process, as the demo produced it
    # over HTTP (another process: float rounding may move the counter's stop by a frame or two)
    assert 1 <= http["produce"]["num_frames"] <= 64
    assert http["produce"]["model_id"] == load_predictor(prod["run_dir"]).model_id


def _corpus(tmp_path, rows: list[str], clips: dict[str, str]):
    d = tmp_path / "corpus"
    d.mkdir()
    for name, src in clips.items():
        os.symlink(src, d / name)
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return d


def test_labels_csv_layout_of_make_demo_data(tmp_path):
    from ray_slt.data.manifest import read_manifest
    from ray_slt.demo import labels_manifest

    videos = sorted(shared("wlasl", "videos").glob("*.mp4"))[:12]
    clips = {f"clip{i:02d}.mp4": str(v) for i, v in enumerate(videos)}
    rows = ["file,text", *(f"{name},sign number {i}" for i, name in enumerate(clips))]
    d = _corpus(tmp_path, rows, clips)
    out = labels_manifest(str(d), str(tmp_path / "m.parquet"))
    # no split column: every tenth clip to dev, the next to test
    assert out["splits"] == {"train": 10, "dev": 1, "test": 1}
    table = read_manifest(str(tmp_path / "m.parquet")).to_pylist()
    assert {r["video_uri"] for r in table} == {str(d / n) for n in clips}
    assert {r["sign_language"] for r in table} == {"sgn"} and {r["spoken_language"] for r in table} == {"en"}
    by_id = {r["sample_id"]: r for r in table}
    assert by_id["custom:clip08"]["split"] == "dev" and by_id["custom:clip09"]["split"] == "test"


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        (["file,label", "a.mp4,hello"], "missing columns ['text']"),
        (["file,text", "missing.mp4,hello"], "no such video"),
        (["file,text,split", "a.mp4,hello,train", "a.mp4,again,dev"], "duplicate"),
        (["file,text,split", "a.mp4,hello,train"], "needs train, dev and test"),
        (["file,text,split", "a.mp4,hello,holdout"], "labels.csv:2: unknown split 'holdout'"),
        (["file,text", "a.mp4,"], "empty file or text"),
    ],
)
def test_labels_csv_problems_name_the_line(tmp_path, rows, words):
    from ray_slt.demo import labels_manifest

    clip = shared("slp_site", "asl_house.mp4")
    d = _corpus(tmp_path, rows, {"a.mp4": str(clip)})
    with pytest.raises(DataError, match=words.replace("[", r"\[").replace("]", r"\]")):
        labels_manifest(str(d), str(tmp_path / "m.parquet"))
