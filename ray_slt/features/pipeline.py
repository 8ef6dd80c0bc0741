"""The Ray Data plumbing every per-sample stage shares (extraction, the VLM cache, the VLM training rows).

Manifest rows travel as one JSON string per row (:func:`rows_dataset`; their columns differ from corpus to
corpus, and JSON keeps every value as the manifest wrote it); a stage is a callable class run by an actor pool
(:func:`actor_pool`) that turns a batch of such rows (:func:`batch_rows`) into a pyarrow table of results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

MAX_BLOCKS = 20_000


def rows_dataset(rows: Sequence[dict[str, Any]]):
    """A ``ray.data.Dataset`` with one ``row`` (JSON) per manifest row, in one block per row (up to a cap), so
    that an actor pool takes them one by one."""
    import ray.data

    items = [{"row": json.dumps(r, default=str)} for r in rows]
    return ray.data.from_items(items, override_num_blocks=max(1, min(len(items), MAX_BLOCKS)))


def batch_rows(batch) -> list[dict[str, Any]]:
    """The manifest rows of a batch of :func:`rows_dataset` (a pyarrow table)."""
    return [json.loads(r) for r in batch.column("row").to_pylist()]


def actor_pool(min_size: int, max_size: int, n: int, in_flight: int | None = None):
    """An autoscaling actor pool of ``min_size..max_size`` actors, started at its full size (capped by the ``n``
    samples there are to do)."""
    import ray.data

    max_size = max(min_size, max_size)
    kwargs = {} if in_flight is None else {"max_tasks_in_flight_per_actor": in_flight}
    return ray.data.ActorPoolStrategy(
        min_size=min_size, max_size=max_size, initial_size=max(min_size, min(max_size, n)), **kwargs
    )
