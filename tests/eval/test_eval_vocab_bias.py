"""ray_slt.eval.vocab_bias on real PHOENIX-2014T sentences: counts, ordering, and the JSON/markdown/PNG files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ray_slt.errors import DataError
from ray_slt.eval.vocab_bias import to_markdown, vocabulary_bias, write_report


@pytest.fixture(scope="module")
def phoenix_report(phoenix_test, phoenix_train):
    pytest.importorskip("HanTa", reason="the default tagger HanTa is not installed")
    # A "model" that always answers with training sentences: its predictions mirror the training distribution.
    predictions = phoenix_train[-len(phoenix_test) :]
    report = vocabulary_bias(predictions, phoenix_test, phoenix_train[:1500], lang="de", top_k=20)
    return report, predictions, phoenix_train[:1500]


def test_word_counts_and_order(phoenix_report, phoenix_test):
    report, predictions, train = phoenix_report
    # PHOENIX translations are lowercase words separated by spaces: count them independently.
    counts = {
        "predicted": Counter(w for s in predictions for w in s.split()),
        "test": Counter(w for s in phoenix_test for w in s.split()),
        "train": Counter(w for s in train for w in s.split()),
    }
    words = report["units"]["words"]
    top_pred = [r["term"] for r in words["top_predicted"]]
    assert top_pred == [w for w, _ in sorted(counts["predicted"].items(), key=lambda kv: (-kv[1], kv[0]))[:20]]
    top_test = [r["term"] for r in words["top_test"]]
    assert top_test == [w for w, _ in sorted(counts["test"].items(), key=lambda kv: (-kv[1], kv[0]))[:20]]
    for row in words["top_predicted"] + words["top_test"]:
        for name in ("predicted", "test", "train"):
            assert row[name] == counts[name][row["term"]]
            total = sum(counts[name].values())
            assert row[f"{name}_per_1k"] == pytest.approx(1000 * counts[name][row["term"]] / total, abs=1e-3)
    assert report["totals"]["test"] == {
        "sentences": 642,
        "word_tokens": sum(counts["test"].values()),
        "word_types": len(counts["test"]),
    }


# The paper's Table 16: the most frequent "noun phrases" of the PHOENIX-2014T test set, with test counts.
PAPER_TABLE_16 = {
    "es": 110,
    "sich": 70,
    "norden": 54,
    "süden": 50,
    "wettervorhersage": 42,
    "uns": 37,
    "westen": 35,
    "tag": 31,
    "osten": 30,
    "samstag": 28,
}


def test_nouns_match_the_papers_tables(phoenix_report):
    """HanTa's nouns and pronouns find the paper's Table 16 terms among the 20 most frequent test-set nouns,
    with test counts within 10% of the paper's for single-word terms ("es" and "osten" are also parts of
    longer noun phrases in the paper's counting)."""
    report, _, _ = phoenix_report
    nouns = report["units"]["nouns"]
    assert report["tagger"] == "HanTa (de)"
    rows = {r["term"]: r for r in nouns["top_test"]}
    assert len(rows.keys() & PAPER_TABLE_16.keys()) >= 9
    for term in ("sich", "norden", "süden", "wettervorhersage", "uns", "westen", "samstag"):
        assert rows[term]["test"] == pytest.approx(PAPER_TABLE_16[term], rel=0.1), term
    assert not rows.keys() & {"und", "im", "der", "die", "am", "in", "morgen"}
    test_counts = [r["test"] for r in nouns["top_test"]]
    assert test_counts == sorted(test_counts, reverse=True)
    pred_counts = [r["predicted"] for r in nouns["top_predicted"]]
    assert pred_counts == sorted(pred_counts, reverse=True)


def test_report_files(phoenix_report, tmp_path):
    report, _, _ = phoenix_report
    paths = write_report(report, str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "vocab_bias.json").read_text(encoding="utf-8")) == report
    md = (tmp_path / "out" / "vocab_bias.md").read_text(encoding="utf-8")
    assert md == to_markdown(report)
    assert "| term | predicted | test | train |" in md and "Table 15" in md and "Table 16" in md
    first = report["units"]["nouns"]["top_test"][0]
    assert f"| {first['term']} | {first['predicted']} | {first['test']} | {first['train']} |" in md
    png = (tmp_path / "out" / "vocab_bias.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    image = matplotlib.image.imread(paths["png"])
    assert image.shape[0] >= 300 and image.shape[1] >= 1000
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_chinese_reports_words_without_a_tagger(csl_test, tmp_path):
    report = vocabulary_bias(csl_test[:200], csl_test[200:400], csl_test[400:], lang="zh", top_k=5)
    assert "nouns" not in report["units"] and "no default part-of-speech tagger" in report["nouns_unavailable"]
    top = report["units"]["words"]["top_test"]
    assert len(top) == 5 and all(len(r["term"]) == 1 for r in top)  # characters
    expected = Counter(c for s in csl_test[200:400] for c in s if c.isalnum())
    assert [r["test"] for r in top] == sorted(expected.values(), reverse=True)[:5]
    write_report(report, str(tmp_path))
    assert (tmp_path / "vocab_bias.png").stat().st_size > 0


def test_plugged_tagger_and_bad_inputs():
    def tagger(text):
        return [(w, "NOUN" if w[0].isupper() else "X") for w in text.split()]

    report = vocabulary_bias(["Regen Regen im Norden"], ["Regen im Süden"], ["Sonne", "Regen"], tagger=tagger)
    rows = {r["term"]: r for r in report["units"]["nouns"]["top_predicted"]}
    assert rows["regen"]["predicted"] == 2 and rows["regen"]["test"] == 1 and rows["regen"]["train"] == 1
    assert rows["norden"]["test"] == 0
    with pytest.raises(DataError, match="train set is empty"):
        vocabulary_bias(["a"], ["a"], [])
    with pytest.raises(DataError, match="2 predictions but 1 test"):
        vocabulary_bias(["a", "b"], ["a"], ["a"])
