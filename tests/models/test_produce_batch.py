"""Producing many sentences on Ray Data (`ray-slt produce --sentences`): every good line becomes a `.pose` file and an
index record with what the model wrote, a line the model cannot produce becomes one error record and costs only
itself, and a rerun skips what is done."""

from __future__ import annotations

import json

import numpy as np
import pytest
from testlib import tiny_producer, tiny_text2gloss

from ray_slt.cli import main
from ray_slt.errors import DataError
from ray_slt.models.produce_batch import read_inputs
from ray_slt.models.producer_set import add_language
from ray_slt.models.registry import load_predictor


def test_sentences_files_are_read_as_lines_or_a_table(tmp_path):
    plain = tmp_path / "s.txt"
    plain.write_text("the man eats\n\n  tomorrow it rains \n")
    assert read_inputs(str(plain), "text") == [{"id": "000001", "text": "the man eats"},
                                               {"id": "000003", "text": "tomorrow it rains"}]  # fmt: skip
    table = tmp_path / "s.tsv"
    table.write_text("id\ttext\tsign_language\na\tthe man eats\tase\nb\tit rains\t\n")
    assert read_inputs(str(table), "text") == [{"id": "a", "text": "the man eats", "sign_language": "ase"},
                                               {"id": "b", "text": "it rains"}]  # fmt: skip
    table.write_text("id\ttext\na\tx\na\ty\n")
    with pytest.raises(DataError, match="'a' appears twice"):
        read_inputs(str(table), "text")
    table.write_text("id\ttext\na\t\n")
    with pytest.raises(DataError, match=r"s\.tsv:2: empty 'text'"):
        read_inputs(str(table), "text")


def test_a_producer_set_produces_a_file_of_sentences(ray_local, tmp_path, capsys):
    from pose_format import Pose

    model = str(tmp_path / "signllm")
    add_language(model, "ase", tiny_producer(str(tmp_path / "p")), tiny_text2gloss(str(tmp_path / "t")), ["en"])
    add_language(model, "bfi", tiny_producer(str(tmp_path / "pt"), input="text", seed=1))
    sentences = tmp_path / "sentences.tsv"
    rows = [("s1", "the man eats an apple", "ase"), ("s2", "my sister reads a book", "bfi"),
            ("s3", "tomorrow it rains", "ase"), ("s4", "it rains", "gsg"), ("s5", "a red apple", "bfi")]  # fmt: skip
    sentences.write_text("id\ttext\tsign_language\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in rows))
    out = tmp_path / "produced"
    args = ["produce", model, "--sentences", str(sentences), "--out", str(out), "--workers", "2", "--json"]
    assert main(args) == 0
    counts = json.loads(capsys.readouterr().out)
    assert {k: counts[k] for k in ("items", "produced", "errors", "skipped")} == {
        "items": 5, "produced": 4, "errors": 1, "skipped": 0}  # fmt: skip
    index = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
    assert [r["id"] for r in index] == ["s1", "s2", "s3", "s5"]
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert errors == [{"id": "s4", "reason": "no producer for sign language 'gsg' (this set has: ase, bfi)"}]
    t2g = load_predictor(str(tmp_path / "t"))
    for r in index:
        pose = Pose.read((out / "poses" / f"{r['id']}.pose").read_bytes())
        assert pose.body.data.shape[:3] == (r["num_frames"], 1, 50) and np.isfinite(pose.body.data).all()
        text, code = next((b, c) for a, b, c in rows if a == r["id"])
        assert r["sign_language"] == code
        assert r["gloss"] == (t2g.predict([{"text": text}])[0]["gloss"] if code == "ase" else None)
    # a rerun skips what is done and retries the failed line
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["skipped"], again["produced"], again["errors"]) == (4, 0, 1)
    assert len((out / "index.jsonl").read_text().splitlines()) == 4
