"""Learning curves of a run (``{run_dir}/metrics/train.jsonl|csv`` and ``dev.jsonl|csv``), written by rank 0 of
every recipe."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from typing import Any

from ray_slt import storage


class Curves:
    """Rank 0's learning curves: JSONL + CSV files rewritten atomically (works on object stores, which have
    no append), reloaded on resume and cut at the resumed step so a curve never has two histories."""

    def __init__(self, run_dir: str, resume_step: int | None, enabled: bool):
        self.enabled = enabled
        self.dir = storage.join(run_dir, "metrics")
        self.records: dict[str, list[dict]] = {"train": [], "dev": []}
        self.dirty: set[str] = set()
        if enabled and resume_step is not None:
            for name in self.records:
                uri = storage.join(self.dir, f"{name}.jsonl")
                if storage.exists(uri):
                    rows = [json.loads(x) for x in storage.read_text(uri).splitlines() if x.strip()]
                    self.records[name] = [r for r in rows if r.get("step", 0) <= resume_step]

    def add(self, name: str, record: dict) -> None:
        if self.enabled:
            self.records[name].append(record)
            self.dirty.add(name)

    def flush(self) -> None:
        for name in sorted(self.dirty):
            rows = self.records[name]
            storage.write_text(
                storage.join(self.dir, f"{name}.jsonl"), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            )
            keys = list(dict.fromkeys(k for r in rows for k in r))
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
            storage.write_text(storage.join(self.dir, f"{name}.csv"), buf.getvalue())
        self.dirty.clear()


def finite(d: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics: non-finite floats become None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
