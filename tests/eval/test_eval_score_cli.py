"""`ray-slt score`: the table, the --json keys, agreement with sacrebleu on real files, and bad inputs."""

from __future__ import annotations

import json

import pytest
import sacrebleu

from ray_slt.cli import main
from ray_slt.eval.metrics import corpus_scores

KEYS = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf", "bleu_signature"]


def write(path, lines, newline="\n", final=True):
    path.write_text(newline.join(lines) + (newline if final else ""), encoding="utf-8")
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_on_real_phoenix_sentences(tmp_path, capsys, phoenix_test):
    hyps = phoenix_test[1:] + phoenix_test[:1]
    hyp = write(tmp_path / "hyp.txt", hyps)
    ref = write(tmp_path / "ref.txt", phoenix_test)
    code, out, err = run(capsys, "score", "--hyp", hyp, "--ref", ref, "--lang", "de", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert list(result) == KEYS
    expected = corpus_scores(hyps, phoenix_test, lang="de")
    for key in KEYS[:-1]:
        assert result[key] == pytest.approx(expected[key], abs=1e-12), key
    assert result["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [phoenix_test]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [phoenix_test]).score)
    assert result["bleu_signature"] == expected["bleu_signature"]
    assert "tok:13a" in result["bleu_signature"] and "nrefs:1" in result["bleu_signature"]


def test_table_for_humans(tmp_path, capsys, how2sign_test):
    hyp = write(tmp_path / "hyp.txt", how2sign_test[:100])
    ref = write(tmp_path / "ref.txt", how2sign_test[:100])
    code, out, _ = run(capsys, "score", "--hyp", hyp, "--ref", ref)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["metric", "score"]
    rows = dict(line.split() for line in lines[2:8])
    assert rows == {m: "100.00" for m in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "chrF")}
    assert lines[8].startswith("BLEU signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_chinese_and_multiple_references(tmp_path, capsys, csl_test):
    refs = csl_test[:200]
    hyps = [s[:-2] + s[-1] for s in refs]  # drop the last character before the punctuation
    hyp = write(tmp_path / "hyp.txt", hyps, newline="\r\n")  # Windows line ends are accepted
    ref = write(tmp_path / "ref.txt", refs, final=False)  # as is a missing final newline
    ref2 = write(tmp_path / "ref2.txt", hyps)
    code, out, _ = run(capsys, "score", "--json", "--hyp", hyp, "--ref", ref, "--lang", "zh")
    one = json.loads(out)
    assert code == 0 and "tok:zh" in one["bleu_signature"]
    assert one["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score)
    assert 0 < one["bleu4"] < 100
    code, out, _ = run(capsys, "score", "--json", "--hyp", hyp, "--ref", ref, "--ref", ref2, "--lang", "zh")
    two = json.loads(out)
    assert code == 0 and "nrefs:2" in two["bleu_signature"] and two["bleu4"] == pytest.approx(100.0)


def test_mismatched_line_counts(tmp_path, capsys):
    hyp = write(tmp_path / "hyp.txt", ["a b c", "d e f", "g h i"])
    ref = write(tmp_path / "ref.txt", ["a b c", "d e f"])
    code, out, err = run(capsys, "score", "--hyp", hyp, "--ref", ref)
    assert code == 2 and out == ""
    assert err.strip() == (
        f"ray-slt: error: {ref}:3: 2 reference lines but {hyp} has 3 hypothesis lines (first unmatched line 3)"
    )


def test_empty_file(tmp_path, capsys):
    hyp = write(tmp_path / "hyp.txt", ["a b c"])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    for args in (["--hyp", str(empty), "--ref", hyp], ["--hyp", hyp, "--ref", str(empty)]):
        code, _, err = run(capsys, "score", *args)
        assert code == 2
        assert err.strip() == f"ray-slt: error: {empty}: empty file: expected one sentence per line"


def test_invalid_utf8(tmp_path, capsys):
    ref = write(tmp_path / "ref.txt", ["regen im norden", "sonne im süden"])
    bad = tmp_path / "hyp.txt"
    bad.write_bytes(b"regen im norden\n" + "sonne im süden\n".encode("latin-1"))
    code, _, err = run(capsys, "score", "--hyp", str(bad), "--ref", ref)
    assert code == 2
    assert err.strip() == f"ray-slt: error: {bad}:2: not valid utf-8 (byte 0xfc at offset 26)"


def test_missing_file_and_arguments(tmp_path, capsys):
    ref = write(tmp_path / "ref.txt", ["a"])
    code, _, err = run(capsys, "score", "--hyp", str(tmp_path / "nope.txt"), "--ref", ref)
    assert code == 2 and "nope.txt: no such file" in err
    code, _, err = run(capsys, "score", "--ref", ref)
    assert code == 2 and "--hyp" in err and len(err.strip().splitlines()) == 1


def test_help_lists_score(capsys):
    with pytest.raises(SystemExit) as e:
        main(["score", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--hyp" in out and "--ref" in out and "--lang" in out and "bleu_signature" in out
