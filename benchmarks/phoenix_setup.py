"""Set-up shared by the PHOENIX-2014T benchmarks (phoenix_text.py, grpo_phoenix.py): the data check, the
manifest (``ray-slt prepare phoenix14t``) and a local Ray."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data" / "phoenix14t").resolve()


def machine(cpus: int | None) -> dict:
    """What the results record of the machine: CPUs used, OS, CPU architecture, Python."""
    return {"cpus": cpus, "os": platform.system(), "arch": platform.machine(), "python": platform.python_version()}


def start(out: str, cpus: int) -> str | None:
    """Prepare the PHOENIX-2014T manifest under ``out`` and start a local Ray with ``cpus`` CPUs; return the
    manifest's path, or None (after saying why on stderr) when the data is not beside the repository."""
    if not (DATA / "PHOENIX-2014-T.train.corpus.csv").exists():
        print(f"PHOENIX-2014T text data not found under {DATA}", file=sys.stderr)
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from ray_slt.config import build_config
    from ray_slt.data.prepare import prepare

    manifest = f"{out}/manifest.parquet"
    prepare(build_config({"kind": "prepare", "dataset": "phoenix14t", "root": str(DATA), "out": manifest}))
    if not ray.is_initialized():  # a second direction in the same invocation reuses the first's Ray
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return manifest
