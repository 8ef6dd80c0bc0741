"""The shared body of the ``jobs/*.py`` scripts that ``ray job submit`` runs.

Each job takes ``CONFIG [key=value ...]`` (the same arguments as its ``ray-slt`` command), runs on the cluster
it is submitted to (``RAY_ADDRESS``), prints its summary as JSON on the last line of the job's log, and exits 2
with one line ``NAME: error: reason`` on bad input or a failed run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def job_main(argv: list[str], doc: str | None, name: str, run: Callable[[Any], Any],
             load: Callable[[str, list[str]], Any] | None = None,
             failed: Callable[[Any], str | None] | None = None) -> int:  # fmt: skip
    """Parse ``argv``, load the config (``load``, default :func:`ray_slt.config.load_config`), ``run`` it and
    print the summary; ``--help`` (or no argument) prints the job's ``doc``. ``failed(summary)``, if given,
    returns a reason when the summary means the run failed: the job then exits 1 (after printing it)."""
    from ray_slt.config import load_config
    from ray_slt.errors import RaySltError

    if not argv or argv[0] in ("-h", "--help"):
        print(doc)
        return 0 if argv else 2
    try:
        cfg = (load or load_config)(argv[0], argv[1:])
        summary = run(cfg)
    except RaySltError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False, default=str))
    reason = failed(summary) if failed else None
    if reason:
        print(f"{name}: failed: {reason}", file=sys.stderr)
        return 1
    return 0


def require(cfg: Any, source: str, kind: str, stage: str | None = None) -> None:
    """Refuse a config of another kind (or training stage) than the job runs."""
    from ray_slt.errors import ConfigError

    if cfg.kind != kind or (stage is not None and getattr(cfg, "stage", None) != stage):
        want = f"kind {kind!r}" + (f" with stage {stage!r}" if stage else "")
        have = f"kind {cfg.kind!r}" + (f", stage {cfg.stage!r}" if getattr(cfg, "stage", None) else "")
        raise ConfigError(f"{source}: a config of {want} is needed, not {have}")
