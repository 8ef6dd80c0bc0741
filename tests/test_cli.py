"""The `ray-slt` command line: --help everywhere, --json, one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from testlib import REPO, shared

from ray_slt.cli import build_parser, main


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_stage_of_the_design_is_a_subcommand():
    assert {"prepare", "stats", "extract", "train", "eval", "score", "tune", "serve", "demo"} <= set(subcommands())


@pytest.mark.parametrize("name", subcommands())
def test_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ray-slt") and "--json" in out


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "ray_slt", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "prepare" in done.stdout and "stats" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prepare", "nosuchcorpus", "--root", "x"], "unknown dataset 'nosuchcorpus'"),
        (["prepare", "wlasl"], "--root is required"),
        (["prepare", "wlasl", "--root", "x", "--out", "m.csv"], "must be a .parquet path"),
        (["prepare", "wlasl", "--root", "x", "--rare-subset", "3"], "is not RARE:REST"),
        (["prepare", "wlasl", "--root", "x", "skip_bda=1"], "unknown key 'skip_bda'"),
        (["prepare", "conf/prepare/wlasl100.yaml", "--skip-bad"], "with a config file"),
        (["prepare", "wlasl", "--root", "/definitely/not/here"], "WLASL_v0.3.json not found"),
        (["prepare", "wlasl", "--root", "x", "--option", "subset=7"], "options.subset"),
        (["stats"], "the following arguments are required: MANIFEST"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ray-slt: error: ") and err.count("\n") == 1 and message in err, err


TRAIN = "conf/train/recognition/islr_synthetic_tiny.yaml"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.epochs=abc"], "optim.epochs: Input should be a valid integer"),
        (["islr.bogus=1"], "unknown key 'islr.bogus'"),
        (["data.features=/nowhere/features"], "/nowhere/features: not a feature store"),
        (["data.features=s3://no-such-bucket-here/features"], "no credentials for s3://"),
        (["trainer.storage=s3://no-such-bucket-here/runs", "data.features={store}"], "no credentials for s3://"),
        (
            ["trainer.backend=deepspeed", "trainer.deepspeed=/nowhere/zero2.json", "data.features={store}"],
            "trainer.deepspeed /nowhere/zero2.json: no such file",
        ),
    ],
)
def test_bad_training_configs_fail_in_one_line_before_ray_starts(overrides, message, tmp_path):
    """In a fresh process without S3 credentials: one line on stderr, exit 2, and no Ray started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))  # fmt: skip
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "index.parquet").write_bytes(b"")  # enough to pass the data check
    overrides = [o.format(store=tmp_path / "store") for o in overrides]
    done = subprocess.run([sys.executable, "-m", "ray_slt", "train", TRAIN, *overrides], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert done.stderr.startswith("ray-slt: error: ") and message in done.stderr, done.stderr
    assert "Ray instance" not in done.stderr + done.stdout


def test_prepare_json_output(tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert (
        main(
            [
                "prepare",
                "phoenix14t",
                "--root",
                str(shared("phoenix14t")),
                "--out",
                str(out),
                "--splits",
                "dev",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["splits"] == {"dev": 519} and result["manifest"] == str(out) and result["bad_rows"] == 0
    assert (
        main(["prepare", "phoenix14t", "--root", str(shared("phoenix14t")), "--out", str(out), "--splits", "dev"]) == 0
    )
    assert capsys.readouterr().out.startswith(f"wrote {out}: 519 samples (dev 519)")


def test_serve_runs_until_ctrl_c_and_then_stops_cleanly(tmp_path):
    """`ray-slt serve` on its own local Ray: answers /healthz, and one SIGINT stops the app and Ray (exit 0)."""
    import signal
    import time
    import urllib.request

    from testlib import free_port, tiny_checkpoint

    ckpt = tiny_checkpoint(str(tmp_path / "tiny"))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ray_slt", "serve", "conf/serve/default.yaml", f"models.translate.checkpoint={ckpt}",
         f"http.port={port}", "ray_address=local"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        assert any("ready at" in x for x in lines), lines
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as r:
            assert r.status == 200
        time.sleep(1.0)  # idle in its wait loop, as a user's server is when they press Ctrl-C
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "stopping" in out and "stopped" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["extract", "/nowhere/m.parquet", "--out", "{tmp}/f"], "/nowhere/m.parquet: no such file"),
        (["extract", "s3://no-such-bucket-here/m.parquet", "--out", "{tmp}/f"], "no credentials for s3://"),
        (["prepare", "conf/prepare/wlasl100.yaml", "root=s3://no-such-bucket-here/w", "out={tmp}/m.parquet"],
         "no credentials for s3://"),
        (["tune", "conf/tune/synthetic_tiny.yaml", "overrides.data.features=/nowhere/f"],
         "/nowhere/f: not a feature store"),
        (["tune", "conf/tune/synthetic_tiny.yaml", "storage=s3://no-such-bucket-here/t",
          "overrides.data.features={store}"], "no credentials for s3://"),
        (["tune", "conf/tune/synthetic_tiny.yaml", "search.num_samples=abc"], "valid integer"),
        (["serve", "conf/serve/default.yaml", "models.translate.checkpoint=/nowhere/ckpt"], "not a run directory"),
        (["serve", "conf/serve/default.yaml", "models.translate.checkpoint=s3://no-such-bucket-here/c"],
         "no credentials for s3://"),
        (["vlmbench", "conf/vlmbench/wlasl_tiny.yaml", "questions=/nowhere/q.jsonl"], "/nowhere/q.jsonl: no such file"),
        (["vlmbench", "conf/vlmbench/wlasl_tiny.yaml", "questions=s3://no-such-bucket-here/q.jsonl"],
         "no credentials for s3://"),
        (["vlmbench", "conf/vlmbench/wlasl_tiny.yaml", "workers=abc"], "workers: Input should be a valid integer"),
        (["vlmbench", "conf/vlmbench/wlasl_tiny.yaml", "bogus=1"], "unknown key 'bogus'"),
    ],
)  # fmt: skip
def test_bad_configs_of_every_kind_fail_in_one_line_before_ray_starts(argv, message, tmp_path, monkeypatch, capsys):
    """Wrong types, unknown keys, paths to nowhere and s3:// without credentials, for every config-driven command
    but training (above): exit 2, one line on stderr, and no Ray started."""
    import ray

    for k in [k for k in os.environ if k.startswith(("AWS_", "RAY_ADDRESS"))]:
        monkeypatch.delenv(k)
    for k, v in {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                 "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "index.parquet").write_bytes(b"")
    monkeypatch.chdir(REPO)
    argv = [a.format(tmp=tmp_path, store=tmp_path / "store") for a in argv]
    if "s3://" in message:
        # a fresh process: this one's S3 filesystems (the suite's S3 server) are cached by fsspec
        done = subprocess.run([sys.executable, "-m", "ray_slt", *argv], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ), cwd=REPO)  # fmt: skip
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
        assert done.stderr.startswith("ray-slt: error: ") and message in done.stderr, done.stderr
        assert "Ray instance" not in done.stderr + done.stdout
        return
    if ray.is_initialized():
        ray.shutdown()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ray-slt: error: ") and err.count("\n") == 1 and message in err, err
    assert not ray.is_initialized()
