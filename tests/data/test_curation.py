"""Cleaning and the rare-word-aware subset (first paper, Appendix A)."""

from __future__ import annotations

import numpy as np
import pytest
from testlib import shared

from ray_slt.config import build_config
from ray_slt.data import manifest, synthetic
from ray_slt.data.curation import clean, rare_word_subset, text_problem
from ray_slt.data.poses import write_pose
from ray_slt.data.prepare import prepare


def _row(i, text, split="train", pose_uri=None):
    return manifest.make_row(
        sample_id=f"t.{i}",
        dataset="t",
        split=split,
        sign_language="ins",
        spoken_language="en",
        text=text,
        video_uri=None if pose_uri else f"v{i}.mp4",
        pose_uri=pose_uri,
    )


def test_text_problems():
    assert text_problem("hello there") is None and text_problem("他今年四岁。") is None
    assert text_problem("   ") == "empty text"
    assert text_problem("nan").startswith("placeholder") and text_problem("#NAME?").startswith("placeholder")
    assert text_problem("...!?") == "text has no letters or digits"
    assert "U+FFFD" in text_problem("caf\ufffd")
    assert "control" in text_problem("a\x00b")


def test_clean_drops_bad_text_and_personless_poses_with_reasons(tmp_path):
    kp, conf = synthetic.render_sentence(
        ["APPLE"], synthetic.build_inventory(0), synthetic.make_signers(1, 0)[0], np.random.default_rng(0)
    )
    write_pose(synthetic.to_pose(kp, conf), str(tmp_path / "person.pose"))
    write_pose(synthetic.to_pose(kp, np.zeros_like(conf)), str(tmp_path / "empty.pose"))
    table = manifest.to_table(
        [
            _row(0, "a good sentence"),
            _row(1, ""),
            _row(2, "???"),
            _row(3, "fine too", pose_uri=str(tmp_path / "person.pose")),
            _row(4, "no signer visible", pose_uri=str(tmp_path / "empty.pose")),
        ]
    )
    kept, dropped = clean(table)
    assert kept.column("sample_id").to_pylist() == ["t.0", "t.3"]
    assert {d["sample_id"]: d["reason"] for d in dropped} == {
        "t.1": "empty text",
        "t.2": "text has no letters or digits",
        "t.4": "pose shows no person",
    }
    kept_no_pose_check, _ = clean(table, check_poses=False)
    assert "t.4" in kept_no_pose_check.column("sample_id").to_pylist()


def test_rare_word_subset_prefers_rare_words_and_is_seeded():
    # 60 sentences of frequent words, 10 sentences each containing one rare word
    rows = [_row(i, "the weather is nice today") for i in range(60)]
    rows += [_row(60 + i, f"the weather is nice word{i}") for i in range(10)]
    table = manifest.to_table(rows)
    sub, report = rare_word_subset(table, rare=4, rest=5, threshold=2, seed=1)
    ids = sub.column("sample_id").to_pylist()
    assert len(ids) == 9 and report["chosen_with_rare_word"] == 4 and report["with_rare_word_before"] == 10
    assert sum(int(i.split(".")[1]) >= 60 for i in ids) >= 4
    assert ids == sorted(ids, key=lambda s: int(s.split(".")[1]))  # keeps the manifest order
    again, _ = rare_word_subset(table, rare=4, rest=5, threshold=2, seed=1)
    other, _ = rare_word_subset(table, rare=4, rest=5, threshold=2, seed=2)
    assert again.column("sample_id").to_pylist() == ids and other.column("sample_id").to_pylist() != ids
    everything, rep = rare_word_subset(table, rare=100, rest=100, threshold=2)
    assert everything.num_rows == 70 and rep["rare_types_after"] == rep["rare_types_before"] == 10


def test_rare_subset_on_phoenix_keeps_more_rare_types_than_random(tmp_path):
    out = tmp_path / "m.parquet"
    cfg = build_config(
        {
            "kind": "prepare",
            "dataset": "phoenix14t",
            "root": str(shared("phoenix14t")),
            "out": str(out),
            "splits": ["train"],
            "curation": {"rare_subset": {"rare": 1500, "rest": 1000, "seed": 0}},
        }
    )
    summary = prepare(cfg, progress=False)
    rep = summary["rare_subset"]
    assert summary["samples"] == 2500 == rep["samples_after"] and rep["chosen_with_rare_word"] == 1500
    table = manifest.read_manifest(
        str(
            prepare(
                build_config({**cfg.model_dump(), "curation": {}, "out": str(tmp_path / "all.parquet")}), progress=False
            )["manifest"]
        )
    )
    rng = np.random.default_rng(0)
    random_pick = table.take(rng.choice(table.num_rows, 2500, replace=False))
    from ray_slt.data.text import whitespace_tokens

    def rare_types_kept(t):
        from collections import Counter

        all_counts = Counter(w for s in table.column("text").to_pylist() for w in whitespace_tokens(s))
        rare = {w for w, c in all_counts.items() if c < 10}
        return len(rare & {w for s in t.column("text").to_pylist() for w in whitespace_tokens(s)})

    assert rep["rare_types_after"] > 1.2 * rare_types_kept(random_pick)


def test_subset_sizes_are_validated():
    with pytest.raises(Exception, match="greater than or equal to 0"):
        build_config(
            {
                "kind": "prepare",
                "dataset": "isign" if False else "wlasl",
                "root": "r",
                "out": "o.parquet",
                "curation": {"rare_subset": {"rare": -1}},
            }
        )
