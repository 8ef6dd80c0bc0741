"""The extraction pipeline on Ray Data (a local 2-CPU Ray): real clips of several corpora, corrupt inputs,
determinism, resuming, a killed run, and the feature-store reader API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from features_helpers import read_pose_file, video_row, wlasl_row

from ray_slt.data.manifest import write_manifest
from ray_slt.features import store
from ray_slt.features.extract import ExtractConfig, extract_hash, run_extract
from ray_slt.features.layouts import layout77

REPO = Path(__file__).resolve().parents[2]

GOOD = {"wlasl.05732", "wlasl.00338", "how2sign.g0i_3", "phoenix.excerpt_a", "autsl.sample1000", "dgs.test_1"}
BAD = {
    "bad.truncated": "decode",
    "bad.truncated_faststart": "decode",
    "bad.zero": "decode",
    "bad.wrong_extension": "decode",
    "bad.missing": "decode",
    "bad.start_beyond_end": "metadata",
    "bad.no_uris": "metadata",
    "bad.no_person": "pose",
    "bad.pose_file": "pose",
}


def _rows(shared_data: Path, corrupt: dict, phoenix: Path, tmp: Path) -> list[dict]:
    junk_pose = tmp / "junk.pose"
    junk_pose.write_bytes(b"\x00\x01 not a pose file")
    h2s = shared_data / "how2sign/videos/-g0iPSnQt6w_3-1-rgb_front.mp4"
    return [
        wlasl_row(shared_data, "05732"),
        wlasl_row(shared_data, "00338", split="train"),
        video_row("how2sign.g0i_3", h2s, "how2sign", text="I'm having fun."),
        video_row(
            "phoenix.excerpt_a", phoenix, "phoenix14t", split="dev", sign_language="gsg", spoken_language="de", fps=25.0
        ),
        video_row(
            "autsl.sample1000",
            shared_data / "autsl/signer0_sample1000_color.mp4",
            "autsl",
            split="train",
            sign_language="tsm",
            spoken_language="tr",
            text="rica etmek",
        ),
        video_row(
            "dgs.test_1",
            None,
            "synthetic",
            sign_language="gsg",
            spoken_language="de",
            pose_uri=str(shared_data / "dgs_corpus/test/test_1_original.pose"),
            text="Ich habe im Juli den Vortrag gehalten.",
        ),
        *[video_row(f"bad.{k}", corrupt[k]) for k in ("truncated", "truncated_faststart", "zero", "wrong_extension")],
        video_row("bad.missing", tmp / "nowhere.mp4"),
        wlasl_row(shared_data, "00338", sample_id="bad.start_beyond_end", start_frame=500, end_frame=None),
        video_row("bad.no_uris", None),
        video_row("bad.no_person", h2s, bbox=[0, 0, 300, 720]),  # the empty green screen beside the signer
        video_row("bad.pose_file", None, pose_uri=str(junk_pose)),
    ]


def _config(manifest: Path, out: Path, tiny_dinov2: str, **extra) -> ExtractConfig:
    data = {
        "kind": "extract",
        "manifest": str(manifest),
        "out": str(out),
        "progress": False,
        "frames": {"sampling": "uniform:6"},
        "features": {"kind": "dinov2", "model": tiny_dinov2, "device": "cpu", "samples_per_call": 2},
        "decode": {"timeout_s": 60},
        "output": {"shard_rows": 4},
    }
    for key, value in extra.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return ExtractConfig.model_validate(data)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, shared_data, corrupt_videos, phoenix_frames) -> Path:
    d = tmp_path_factory.mktemp("manifest")
    path = d / "manifest.parquet"
    write_manifest(_rows(shared_data, corrupt_videos, phoenix_frames, d), str(path))
    return path


@pytest.fixture(scope="module")
def first_run(ray_local, manifest, tmp_path_factory, tiny_dinov2):
    out = tmp_path_factory.mktemp("run") / "features"
    cfg = _config(manifest, out, tiny_dinov2)
    return cfg, run_extract(cfg, echo=False)


def _rows_by_id(out) -> dict[str, dict]:
    rows = {}
    for s in store.iter_samples(str(out)):
        s = dict(s)
        s.pop("run_id")
        rows[s["sample_id"]] = s
    return rows


def _assert_same_samples(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for sid in a:
        for key, value in a[sid].items():
            other = b[sid][key]
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, other, equal_nan=value.dtype.kind == "f"), (sid, key)
            else:
                assert value == other, (sid, key)


def test_pipeline_writes_features_poses_and_error_records(first_run):
    cfg, summary = first_run
    out = cfg.out
    assert summary["ok"] == len(GOOD) and summary["errors"] == len(BAD) and summary["skipped"] == 0
    assert summary["frames"] == 6 * len(GOOD)
    index = store.read_index(out)
    assert set(index.column("sample_id").to_pylist()) == GOOD
    errors = {r["sample_id"]: r for r in store.read_errors(out).to_pylist()}
    assert {k: v["stage"] for k, v in errors.items()} == BAD
    assert "truncated: 44 of 86" in errors["bad.truncated_faststart"]["reason"]
    assert "no person" in errors["bad.no_person"]["reason"]
    assert "beyond" in errors["bad.start_beyond_end"]["reason"]

    samples = {s["sample_id"]: s for s in store.iter_samples(out)}
    for sid, s in samples.items():
        assert s["num_frames"] == 6 and s["keypoints"].shape == (6, 77, 2)
        assert s["keypoints_valid"][:, 3:5].any() and s["extract_hash"] == extract_hash(cfg)
        pose = read_pose_file(store.pose_uri(out, sid))
        assert pose.body.data.shape[0] == 6
        # The stored keypoints are the layout of the stored .pose.
        lay = layout77(pose)
        assert np.allclose(lay.coords, s["keypoints"], atol=1e-5) and np.array_equal(lay.valid, s["keypoints_valid"])
        if sid == "dgs.test_1":  # shipped pose, no video: no crops, no features, not an error
            assert s["input_kind"] == "pose" and s["pose_estimator"] == "shipped" and s["face_features"] is None
            assert s["layout_source"] == "holistic_reduced" and s["feature_dim"] is None
        else:
            assert s["pose_estimator"] == "mediapipe-holistic" and s["feature_dim"] == 32
            assert s["face_features"].shape == (6, 32) and np.isfinite(s["right_hand_features"]).all()
            assert s["features_model"] == cfg.features.model
    assert samples["phoenix.excerpt_a"]["input_kind"] == "frames"
    wl = samples["wlasl.05732"]
    assert (wl["width"], wl["height"], wl["span_end"]) == (640, 480, 86)
    assert wl["frame_indices"].tolist() == [(i + 1) * 86 // 6 - 1 for i in range(6)]
    assert samples["wlasl.00338"]["span_end"] == 71  # 72 claimed, 71 decode
    # Hands were found on the signing clips and their crops embedded; a never-seen hand has no feature.
    for s in samples.values():
        if s["face_features"] is not None:
            none = s["box_source"] < 0
            feats = np.stack([s["face_features"], s["left_hand_features"], s["right_hand_features"]], axis=1)
            assert (feats[none] == 0).all() and (np.abs(feats[~none]).sum(axis=-1) > 0).all()
    hands = sum(int(s["keypoints_valid"][:, 9:51].any(axis=1).sum()) for s in samples.values())
    assert hands >= 0.5 * 6 * len(GOOD)


def test_provenance(first_run):
    cfg, summary = first_run
    prov = store.read_provenance(cfg.out)
    assert prov["extract_hash"] == extract_hash(cfg) == summary["extract_hash"]
    assert prov["sampling"] == "uniform:6" and prov["pose"]["estimator"] == "mediapipe-holistic"
    assert prov["features"]["model"] == cfg.features.model
    assert prov["versions"]["mediapipe"] == "0.10.14" and prov["versions"]["transformers"]
    assert prov["runs"][-1]["run_id"] == summary["run_id"]
    shard = store.read_index(cfg.out).column("shard")[0].as_py()
    meta = pq.read_schema(os.path.join(cfg.out, shard)).metadata[store.PROVENANCE_KEY]
    assert json.loads(meta)["extract_hash"] == prov["extract_hash"]


def test_extraction_is_deterministic_across_runs(first_run, manifest, tmp_path, tiny_dinov2):
    cfg, _ = first_run
    out = tmp_path / "again"
    run_extract(_config(manifest, out, tiny_dinov2, **{"output.shard_rows": 64}), echo=False)
    _assert_same_samples(_rows_by_id(cfg.out), _rows_by_id(out))
    for sid in GOOD:
        assert Path(store.pose_uri(str(out), sid)).read_bytes() == Path(store.pose_uri(cfg.out, sid)).read_bytes()


def test_rerun_skips_what_is_done_and_retries_errors(first_run, tmp_path):
    cfg, _ = first_run
    before = _rows_by_id(cfg.out)
    again = run_extract(cfg, echo=False)
    assert again["skipped"] == len(GOOD) and again["processed"] == len(BAD) and again["errors"] == len(BAD)
    _assert_same_samples(before, _rows_by_id(cfg.out))
    # A lost .pose makes its sample untrusted: only that one is extracted again.
    Path(store.pose_uri(cfg.out, "wlasl.00338")).unlink()
    third = run_extract(cfg.model_copy(update={"features": cfg.features}), echo=False)
    assert third["skipped"] == len(GOOD) - 1 and third["ok"] == 1
    _assert_same_samples(before, _rows_by_id(cfg.out))
    # Other settings are another extraction: nothing is reused.
    other = cfg.model_copy(update={"out": cfg.out, "frames": cfg.frames.model_copy(update={"sampling": "uniform:4"})})
    assert extract_hash(other) != extract_hash(cfg)


def test_killed_run_resumes_to_the_uninterrupted_output(first_run, manifest, tmp_path, tiny_dinov2):
    cfg, _ = first_run
    out = tmp_path / "killed"
    overrides = [
        "frames.sampling=uniform:6",
        "features.kind=dinov2",
        f"features.model={tiny_dinov2}",
        "features.device=cpu",
        "features.samples_per_call=2",
        "output.shard_rows=1",
        "decode.timeout_s=60",
    ]
    cmd = [
        sys.executable,
        "-m",
        "ray_slt",
        "extract",
        str(manifest),
        "--out",
        str(out),
        "--address",
        "local",
        "--no-progress",
        "--json",
        "--set",
        *overrides,
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    shards = out / "shards"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if shards.exists() and any(p.suffix == ".parquet" for p in shards.iterdir()):
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    written = [p for p in shards.iterdir() if p.suffix == ".parquet"] if shards.exists() else []
    assert 1 <= len(written) < len(GOOD), "the run was not interrupted part-way"
    assert not (out / "index.parquet").exists()  # the index is written at the end only
    for p in written:  # whatever a killed run left is complete
        pq.read_table(p)
    resumed = run_extract(_config(manifest, out, tiny_dinov2, **{"output.shard_rows": 1}), echo=False)
    assert resumed["skipped"] >= 1 and resumed["ok"] + resumed["skipped"] == len(GOOD)
    _assert_same_samples(_rows_by_id(cfg.out), _rows_by_id(out))
    errors = store.read_errors(str(out))
    assert {r["sample_id"]: r["stage"] for r in errors.to_pylist()} == BAD


def test_reader_api(first_run, ray_local):
    cfg, _ = first_run
    out = cfg.out
    train = store.read_index(out, split="train")
    train_ids = {"wlasl.05732", "wlasl.00338", "autsl.sample1000"}
    assert set(train.column("sample_id").to_pylist()) == train_ids
    ds = store.load_features(out, split=["test", "dev"])
    rows = ds.take_all()
    assert {r["sample_id"] for r in rows} == GOOD - train_ids
    mapped = ds.filter(lambda r: r["sample_id"] == "how2sign.g0i_3").map(store.decode_row).take_all()
    assert mapped[0]["keypoints"].shape == (6, 77, 2) and mapped[0]["box_source"].shape == (6, 3)
    decoded = store.decode_row(next(r for r in rows if r["sample_id"] == "how2sign.g0i_3"))
    assert decoded["keypoints"].shape == (6, 77, 2) and decoded["face_features"].shape == (6, 32)
    assert decoded["text"] == "I'm having fun." and decoded["split"] == "test"
    one = store.load_sample(out, "dgs.test_1")
    assert one["face_features"] is None and one["gloss"] is None and one["sign_language"] == "gsg"
    slim = list(store.iter_samples(out, split="dev", columns=["keypoints", "text"]))
    assert [s["sample_id"] for s in slim] == ["phoenix.excerpt_a"] and slim[0]["keypoints"].shape == (6, 77, 2)
    with pytest.raises(KeyError):
        store.load_sample(out, "bad.zero")
