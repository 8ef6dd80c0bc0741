"""Helpers of the training tests (importable: ``from train_helpers import run_cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from testlib import REPO


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m ray_slt ARGS`` in a fresh process (its own local Ray), from the repository root."""
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    full_env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "ray_slt", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def jsonl(path) -> list[dict]:
    """The objects of a JSON-lines file (blank lines skipped)."""
    from pathlib import Path

    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])
