"""Fixtures of the model tests: PHOENIX-2014T sentences (real data, read in place)."""

from __future__ import annotations

import csv

import pytest


@pytest.fixture(scope="session")
def phoenix_train(shared_data) -> list[dict[str, str]]:
    """PHOENIX-2014T training sentences: ``{"gloss", "text"}`` (7,096 rows)."""
    path = shared_data / "phoenix14t" / "PHOENIX-2014-T.train.corpus.csv"
    if not path.exists():
        pytest.skip(f"real sample data not available: {path}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="|", quoting=csv.QUOTE_NONE))
    return [{"gloss": r["orth"], "text": r["translation"]} for r in rows]


@pytest.fixture(scope="session")
def phoenix_texts(phoenix_train) -> list[str]:
    return [r["text"] for r in phoenix_train]
