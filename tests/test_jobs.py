"""jobs/*.py through the real job-submission API of a local Ray head on 127.0.0.1 (token auth on)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from testlib import REPO, free_port, request, shared, tiny_checkpoint

# The job client runs in its own process: Ray reads RAY_AUTH_MODE when it is imported, and this test session
# has imported Ray long before (without auth) for other tests. A user's shell is such a separate process too.
CLIENT = """
import json, sys, time
from ray.job_submission import JobSubmissionClient, JobStatus
address, entrypoint, working_dir = sys.argv[1:4]
client = JobSubmissionClient(address)
if entrypoint == "--ping":
    client.list_jobs()
    sys.exit(0)
deadline = time.time() + 240
while True:  # the head's job agent comes up after its HTTP API, which answers "try again later" until then
    try:
        job = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": working_dir})
        break
    except RuntimeError as e:
        if "No available agent" not in str(e) or time.time() > deadline:
            raise
        time.sleep(2)
deadline = time.time() + 300
while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
    if time.time() > deadline:
        raise TimeoutError(job)
    time.sleep(1)
print(json.dumps({"status": str(client.get_job_status(job).value), "logs": client.get_job_logs(job)}))
"""


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head started like on a cluster (`ray start --head`), dashboard/job API on 127.0.0.1, token auth.

    Yields a function submitting an entrypoint and returning (status, logs)."""
    temp_dir = tempfile.mkdtemp(prefix="rsj_", dir="/tmp")  # short: Ray's socket paths are length-limited
    dash_port = free_port()
    env = dict(
        os.environ,
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        RAY_USAGE_STATS_ENABLED="0",
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    )
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    proc = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash_port}",
            # the agents' fixed default ports (52365, ...) are taken when another Ray runs on this machine: the
            # head then comes up without a job agent ("No available agent to submit job")
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            "--num-cpus=1",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash_port}"

    def client(entrypoint: str, token: str | None = None) -> subprocess.CompletedProcess:
        run_env = env if token is None else dict(env, RAY_AUTH_TOKEN=token)
        return subprocess.run(
            [sys.executable, "-c", CLIENT, address, entrypoint, str(REPO)],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=400,
        )

    try:
        deadline = time.time() + 180
        while (ping := client("--ping")).returncode != 0:
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the Ray head did not come up (exit code {proc.poll()}): {ping.stderr[-500:]}")
            time.sleep(2)

        def submit(entrypoint: str) -> tuple[str, str]:
            done = client(entrypoint)
            assert done.returncode == 0, done.stderr[-2000:]
            result = json.loads(done.stdout.strip().splitlines()[-1])
            return result["status"], result["logs"]

        submit.client = client  # type: ignore[attr-defined]
        yield submit
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:  # the head's graceful stop waits on its Serve app for ~30 s: nothing of it is needed after the tests
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_prepare_job_runs_through_job_submission(ray_head, tmp_path):
    root = shared("phoenix14t")
    out = tmp_path / "manifest.parquet"
    status, logs = ray_head(f"python jobs/prepare.py conf/prepare/phoenix14t.yaml root={root} out={out} splits=[dev]")
    assert status == "SUCCEEDED", logs
    summary = json.loads(logs.strip().splitlines()[-1])
    assert summary["splits"] == {"dev": 519} and out.exists()


def test_bad_job_input_fails_with_a_one_line_reason(ray_head, tmp_path):
    status, logs = ray_head(
        f"python jobs/prepare.py conf/prepare/phoenix14t.yaml root={tmp_path} out={tmp_path}/m.parquet"
    )
    assert status == "FAILED"
    assert "prepare: error:" in logs and "corpus CSV not found" in logs


def test_unauthenticated_clients_are_refused(ray_head):
    refused = ray_head.client("--ping", token="0" * 64)
    assert refused.returncode != 0 and "Invalid authentication token" in refused.stderr


def test_serve_job_deploys_an_app_that_outlives_the_job(ray_head, tmp_path):
    """jobs/serve.py as the README launches it: the job returns, the app keeps answering on the cluster."""
    from ray_slt.data import synthetic

    ckpt = tiny_checkpoint(str(tmp_path / "tiny"))
    synthetic.generate(str(tmp_path / "syn"), synthetic.SyntheticSpec(train=2, dev=1, test=1, signers=1, seed=3))
    pose = sorted((tmp_path / "syn" / "poses").glob("*.pose"))[0].read_bytes()
    port = free_port()
    small = "deployment.num_cpus=0.1"  # the test head has one CPU
    status, logs = ray_head(
        f"python jobs/serve.py conf/serve/default.yaml models.translate.checkpoint={ckpt} http.port={port} "
        f"app_name=job_app models.translate.{small} features.{small} models.translate.deployment.max_replicas=1"
    )
    assert status == "SUCCEEDED", logs
    deployed = json.loads(logs.strip().splitlines()[-1])
    assert deployed == {"app": "job_app", "url": f"http://127.0.0.1:{port}/"}
    try:
        code, health = request(deployed["url"] + "healthz")
        assert code == 200 and health["status"] == "ok" and health["auth"] is False
        code, out = request(deployed["url"] + "translate", pose, "application/x-pose")
        assert code == 200 and isinstance(out["text"], str) and out["input_kind"] == "pose", out
    finally:
        status, logs = ray_head("python -c 'from ray import serve; serve.shutdown()'")
    assert status == "SUCCEEDED", logs

    def gone() -> bool:  # the proxy goes with Serve: connections are refused
        try:
            request(deployed["url"] + "healthz", timeout=5)
        except OSError:
            return True
        return False

    deadline = time.time() + 60
    while not gone():
        assert time.time() < deadline, "the app still answers after serve.shutdown()"
        time.sleep(1)


def test_serve_job_with_a_missing_checkpoint_fails_before_deploying(ray_head, tmp_path):
    status, logs = ray_head(f"python jobs/serve.py conf/serve/default.yaml models.translate.checkpoint={tmp_path}/none")
    assert status == "FAILED"
    assert "serve: error:" in logs and str(tmp_path / "none") in logs


def test_produce_job_writes_a_pose_per_sentence(ray_head, tmp_path):
    """jobs/produce.py as the README launches it: a file of gloss sequences produced on the cluster's Ray Data."""
    from testlib import tiny_producer

    model = tiny_producer(str(tmp_path / "producer"))
    sentences = tmp_path / "glosses.txt"
    sentences.write_text("MAN APPLE EAT\nTOMORROW RAIN\n")
    out = tmp_path / "produced"
    status, logs = ray_head(f"python jobs/produce.py {model} --sentences {sentences} --out {out}")
    assert status == "SUCCEEDED", logs[-2000:]
    summary = json.loads(logs.strip().splitlines()[-1])
    assert (summary["items"], summary["produced"], summary["errors"]) == (2, 2, 0)
    index = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
    assert [r["id"] for r in index] == ["000001", "000002"]
    assert all((out / "poses" / f"{r['id']}.pose").stat().st_size > 0 and r["num_frames"] >= 1 for r in index)
