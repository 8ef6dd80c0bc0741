"""Inputs and outputs on S3 (a real S3-compatible server on loopback), and the command line / job entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from features_helpers import video_row, wlasl_row

from ray_slt import storage
from ray_slt.config import load_config
from ray_slt.data.manifest import write_manifest
from ray_slt.features import store
from ray_slt.features.extract import ExtractConfig, run_extract

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_with_s3(s3_server, ray_local):
    """The local Ray started after the S3 endpoint is in the environment, so its workers reach it."""
    return ray_local


def _upload(local: Path, uri: str) -> str:
    storage.write_bytes(uri, Path(local).read_bytes())
    return uri


def test_extract_from_and_to_s3(ray_with_s3, s3_bucket, shared_data, phoenix_frames, tiny_dinov2):
    media = f"{s3_bucket}/media"
    video = _upload(shared_data / "wlasl/videos/00338.mp4", f"{media}/00338.mp4")
    pose = _upload(shared_data / "dgs_corpus/test/test_2_original.pose", f"{media}/test_2.pose")
    frames = f"{media}/phoenix/excerpt_a"
    for p in sorted((phoenix_frames / "1").iterdir())[:20]:
        _upload(p, f"{frames}/1/{p.name}")
    model = f"{s3_bucket}/models/tiny-dinov2"
    for p in Path(tiny_dinov2).iterdir():
        _upload(p, f"{model}/{p.name}")
    rows = [
        wlasl_row(shared_data, "00338", video_uri=video),
        video_row("phoenix.excerpt_a", frames, "phoenix14t", fps=25.0, sign_language="gsg", spoken_language="de"),
        video_row("dgs.test_2", None, "synthetic", pose_uri=pose, sign_language="gsg", spoken_language="de"),
        video_row("bad.missing", f"{media}/missing.mp4"),
    ]
    manifest = f"{s3_bucket}/manifest.parquet"
    write_manifest(rows, manifest)
    out = f"{s3_bucket}/features"
    cfg = ExtractConfig.model_validate(
        {
            "kind": "extract",
            "manifest": manifest,
            "out": out,
            "progress": False,
            "media_root": s3_bucket,
            "frames": {"sampling": "uniform:4"},
            "features": {"kind": "dinov2", "model": model, "device": "cpu"},
        }
    )
    summary = run_extract(cfg, echo=False)
    assert (summary["ok"], summary["errors"]) == (3, 1)
    assert summary["error_records"][0]["sample_id"] == "bad.missing"
    index = store.read_index(out)
    assert set(index.column("sample_id").to_pylist()) == {"wlasl.00338", "phoenix.excerpt_a", "dgs.test_2"}
    for sid in index.column("sample_id").to_pylist():
        assert storage.exists(store.pose_uri(out, sid))
    samples = {s["sample_id"]: s for s in store.iter_samples(out)}
    assert samples["phoenix.excerpt_a"]["face_features"].shape == (4, 32)
    assert samples["phoenix.excerpt_a"]["span_end"] == 20 and samples["dgs.test_2"]["face_features"] is None
    assert store.load_features(out).count() == 3
    assert store.read_provenance(out)["features"]["model"] == model
    again = run_extract(cfg, echo=False)
    assert again["skipped"] == 3 and again["processed"] == 1


def test_media_outside_media_root_is_refused(ray_with_s3, s3_bucket, shared_data, tmp_path):
    manifest = tmp_path / "m.parquet"
    write_manifest([video_row("outside", shared_data / "slp_pose/SOUP.mp4")], str(manifest))
    cfg = ExtractConfig.model_validate(
        {
            "kind": "extract",
            "manifest": str(manifest),
            "out": str(tmp_path / "out"),
            "progress": False,
            "media_root": str(tmp_path),
            "frames": {"sampling": "uniform:2"},
        }
    )
    summary = run_extract(cfg, echo=False)
    assert summary["errors"] == 1 and "not under the allowed prefix" in summary["error_records"][0]["reason"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ray_slt", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_cli_help_and_bad_input(tmp_path):
    r = _cli("extract", "--help")
    assert r.returncode == 0
    for flag in ("--out", "--pose", "--features", "--frames", "mediapipe", "uniform:N"):
        assert flag in r.stdout
    r = _cli("extract", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("extract", "m.parquet", "--out", "o", "--frames", "random")
    assert r.returncode == 2 and "frames.sampling" in r.stderr
    r = _cli("extract", "m.parquet", "--out", "o", "--set", "workers.pose.max_sise=3")
    assert r.returncode == 2 and "did you mean" in r.stderr
    r = _cli("extract", "m.parquet", "--out", "o", "--set", "pose.mediapipe.min_detection_confidence=1.5")
    assert r.returncode == 2 and "min_detection_confidence" in r.stderr and "less than or equal to 1" in r.stderr


def test_a_run_where_every_sample_fails_exits_1(tmp_path):
    # (a wrong root or media prefix typically: the summary and the errors table are written all the same)
    write_manifest([video_row("bad.a", str(tmp_path / "a.mp4")), video_row("bad.b", str(tmp_path / "b.mp4"))],
                   str(tmp_path / "m.parquet"))  # fmt: skip
    r = _cli("extract", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "extract failed: every sample failed (2 errors; first: bad.a:" in r.stderr
    assert "0 ok" in r.stdout or '"ok": 0' in r.stdout
    assert store.read_errors(str(tmp_path / "o")).num_rows == 2


def test_config_file_and_job_entry_point(tmp_path):
    cfg = load_config(str(REPO / "conf/extract/default.yaml"))
    assert isinstance(cfg, ExtractConfig) and cfg.frames.sampling == "all" and cfg.frames.max_frames == 300
    assert (REPO / "conf/extract/default.yaml").read_text().startswith("# ")
    r = subprocess.run(
        [sys.executable, "jobs/extract.py", "conf/extract/default.yaml", "frames.sampling=uniform:0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.startswith("extract: error:")
    r = subprocess.run([sys.executable, "jobs/extract.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and "ray job submit" in r.stdout


_PIN = """
import os, sys, time
cpus = sorted(os.sched_getaffinity(0))[:2]
os.sched_setaffinity(0, set(cpus))
from ray_slt.features.extract import pin_to_free_cpu
cpu = pin_to_free_cpu(sys.argv[1])
print(cpu if cpu is None else f"{cpu} {sorted(os.sched_getaffinity(0))}", flush=True)
sys.stdin.read()
"""


def test_pose_actors_pin_to_distinct_cpus(tmp_path):
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")

    def start():
        p = subprocess.Popen([sys.executable, "-c", _PIN, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
        return p, p.stdout.readline().strip()

    a, got_a = start()
    b, got_b = start()
    c, got_c = start()
    try:
        assert got_a != got_b and got_a != "None" and got_b != "None"
        for got in (got_a, got_b):
            cpu, allowed = got.split(" ", 1)
            assert allowed == f"[{cpu}]"
        assert got_c == "None"  # both CPUs taken: stays unpinned
        a.kill()
        a.wait()
        d, got_d = start()  # a killed worker's CPU is free again
        assert got_d == got_a
        d.kill()
    finally:
        for p in (a, b, c):
            p.kill()
