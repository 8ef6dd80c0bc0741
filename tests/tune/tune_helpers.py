"""Helpers of the sweep tests (importable: ``from tune_helpers import run_cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from testlib import REPO


def cli_env() -> dict[str, str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RAY_ADDRESS", None)  # every command starts its own local Ray
    return env


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m ray_slt ARGS`` in a fresh process, from the repository root."""
    cmd = [sys.executable, "-m", "ray_slt", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=cli_env())


def start_cli(*args: str, log) -> subprocess.Popen:
    """``python -m ray_slt ARGS`` started in the background, its output going to the file ``log``."""
    cmd = [sys.executable, "-m", "ray_slt", *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True, env=cli_env())


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])
