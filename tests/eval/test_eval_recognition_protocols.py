"""The recognition protocols (islr, zsl, gzsl): top-k per instance and per class, S/U/H, the seeded nested class
partition and the files written beside metrics.json, each checked against values worked out by hand."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from ray_slt.errors import DataError
from ray_slt.eval.protocols import class_partition, protocol_for, ranking_scores


def pred(label, *ranked):
    return {"sample_id": f"{label}-{random.random()}", "label": label, "ranked": list(ranked),
            "scores": [1.0 / (i + 1) for i in range(len(ranked))]}  # fmt: skip


# Class a: 3 samples (2 right at top-1), class b: 1 sample (wrong at top-1, right at 2nd), class c: 1 sample
# (gold ranked 6th). Per instance top-1 = 2/5; per class top-1 = mean(2/3, 0, 0) = 2/9.
PREDS = [
    pred("a", "a", "b"),
    pred("a", "a", "c"),
    pred("a", "b", "c", "d", "e", "f", "a"),
    pred("b", "a", "b"),
    pred("c", "a", "b", "d", "e", "f", "c"),
]


def test_top_k_per_instance_and_per_class():
    s = ranking_scores(PREDS)
    assert s["n"] == 5 and s["classes"] == 3
    assert s["top1_pi"] == pytest.approx(100 * 2 / 5) and s["top1_pc"] == pytest.approx(100 * (2 / 3) / 3)
    # top-5: a: 2 of 3 (the third sample's gold is 7th), b: 1 of 1, c: 0 of 1 (6th)
    assert s["top5_pi"] == pytest.approx(100 * 3 / 5) and s["top5_pc"] == pytest.approx(100 * (2 / 3 + 1) / 3)
    with pytest.raises(DataError, match="no predictions"):
        ranking_scores([])


def test_headline_and_selection_per_protocol():
    islr, zsl = protocol_for("islr"), protocol_for("zsl")
    assert islr.score(PREDS)["top1"] == pytest.approx(40.0)  # per instance (the paper's P-I)
    assert zsl.score(PREDS)["top1"] == pytest.approx(100 * 2 / 9)  # per class (the ZSL convention)
    assert [p.selection.key for p in (islr, zsl, protocol_for("gzsl"))] == ["dev_top1", "dev_top1", "dev_h1"]
    assert all(p.selection.mode == "max" for p in (islr, zsl))


def test_gzsl_seen_unseen_and_harmonic_mean():
    g = protocol_for("gzsl", seen=["a", "b"], unseen=["c", "d"])
    preds = [pred("a", "a"), pred("a", "c"), pred("b", "b"), pred("c", "a"), pred("c", "c"), pred("d", "a")]
    s = g.score(preds)
    S, U = 100 * (1 / 2 + 1) / 2, 100 * (1 / 2 + 0) / 2  # per-class top-1 on the seen / unseen classes' samples
    assert (s["s1"], s["u1"]) == (pytest.approx(S), pytest.approx(U))
    assert s["h1"] == pytest.approx(2 * S * U / (S + U)) and (s["n_seen"], s["n_unseen"]) == (3, 3)
    # H is 0 when either side is 0, and needs samples of both sides
    assert g.score([pred("a", "a"), pred("c", "a")])["h1"] == 0.0
    with pytest.raises(DataError, match="samples of both seen"):
        g.score([pred("a", "a")])


def test_zero_shot_setup_takes_the_models_partition():
    model = SimpleNamespace(partition={"seen": ["a", "b"], "val_unseen": ["v"], "test_unseen": ["t1", "t2"]},
                            candidates=None)  # fmt: skip
    zsl = protocol_for("zsl")
    zsl.setup(model, "test")
    assert model.candidates == ["t1", "t2"] and zsl.keep({"gloss": "t2"}) and not zsl.keep({"gloss": "a"})
    dev = protocol_for("zsl")
    dev.setup(model, "dev")
    assert model.candidates == ["v"]
    g = protocol_for("gzsl")
    g.setup(model, "test")
    assert model.candidates == ["a", "b", "t1", "t2"] and not g.keep({"gloss": "v"})
    with pytest.raises(DataError, match="records no test_unseen"):
        protocol_for("zsl").setup(SimpleNamespace(partition=None, candidates=None), "test")


def test_class_partition_is_seeded_nested_and_disjoint():
    glosses = [f"g{i:04d}" for i in range(2000)] * 2
    parts = {n: class_partition(glosses, n, 100, 200, seed=3) for n in (100, 300, 1000)}
    for p in parts.values():
        assert len(p["val_unseen"]) == 100 and len(p["test_unseen"]) == 200
        assert not set(p["seen"]) & set(p["val_unseen"]) and not set(p["seen"]) & set(p["test_unseen"])
        assert not set(p["val_unseen"]) & set(p["test_unseen"])
        assert p["val_unseen"] == parts[100]["val_unseen"] and p["test_unseen"] == parts[100]["test_unseen"]
    assert set(parts[100]["seen"]) < set(parts[300]["seen"]) < set(parts[1000]["seen"])
    assert class_partition(glosses, 100, 100, 200, seed=3) == parts[100]
    assert class_partition(glosses, 100, 100, 200, seed=4)["test_unseen"] != parts[100]["test_unseen"]
    with pytest.raises(DataError, match="needs 2001; there are 2000"):
        class_partition(glosses, 1701, 100, 200)


def test_per_class_and_confusion_files(tmp_path):
    islr = protocol_for("islr")
    files = islr.write(str(tmp_path), PREDS, islr.score(PREDS))
    per = list(csv.DictReader(io.StringIO(Path(files["per_class"]).read_text())))
    assert [(r["class"], r["samples"], float(r["top1"]), float(r["top5"])) for r in per] == [
        ("a", "3", 66.67, 66.67), ("b", "1", 0.0, 100.0), ("c", "1", 0.0, 0.0)]  # fmt: skip
    conf = [tuple(r.values()) for r in csv.DictReader(io.StringIO(Path(files["confusion"]).read_text()))]
    assert conf == [("a", "a", "2"), ("a", "b", "1"), ("b", "a", "1"), ("c", "a", "1")]
    assert (tmp_path / "predictions.jsonl").read_text().count("\n") == 5
