"""`ray-slt stats`: the published PHOENIX-2014T statistics (first paper, Tables 2 and 9) and the plots."""

from __future__ import annotations

import json

import pytest
from testlib import shared

from ray_slt.cli import main
from ray_slt.config import build_config
from ray_slt.data.prepare import prepare


@pytest.fixture(scope="module")
def phoenix_manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("phoenix") / "manifest.parquet"
    cfg = build_config({"kind": "prepare", "dataset": "phoenix14t", "root": str(shared("phoenix14t")), "out": str(out)})
    prepare(cfg, progress=False)
    return out


def test_phoenix_train_matches_the_published_statistics(phoenix_manifest, capsys, tmp_path):
    assert main(["stats", str(phoenix_manifest), "--json", "--plots", str(tmp_path / "plots")]) == 0
    result = json.loads(capsys.readouterr().out)
    train = result["splits"]["train"]
    assert result["tokenizer"] == "whitespace"
    # Table 2: 7,096 training videos, 116.59 mean frames, 23 over 300 frames
    assert train["samples"] == 7096
    assert round(train["frames_mean"], 2) == 116.59 and train["frames_over_300"] == 23
    # Table 9: 99,081 tokens, 2,887 unique, 72.1 % with frequency < 10, 6.3 % > 100
    assert train["tokens"] == 99081 and train["types"] == 2887
    # (the paper truncates: 2,083 of 2,887 types = 72.15 %, 182 = 6.30 %)
    assert train["rare_type_pct"] == pytest.approx(100 * 2083 / 2887) and int(train["rare_type_pct"] * 10) == 721
    assert train["frequent_type_pct"] == pytest.approx(100 * 182 / 2887) and int(train["frequent_type_pct"] * 10) == 63
    assert train["gloss_types"] == 1085 and result["splits"]["dev"]["samples"] == 519
    for png in result["plots"]:
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert {p.rsplit("/", 1)[1] for p in result["plots"]} == {"frame_lengths.png", "token_frequencies.png"}


def test_human_table_and_split_filter(phoenix_manifest, capsys):
    assert main(["stats", str(phoenix_manifest), "--splits", "dev"]) == 0
    out = capsys.readouterr().out
    assert "dev" in out and "train" not in out and "% types freq < 10" in out and "519" in out


def test_chinese_counts_characters(tmp_path, capsys):
    out = tmp_path / "csl.parquet"
    prepare(
        build_config(
            {
                "kind": "prepare",
                "dataset": "csl_daily",
                "root": str(shared("csl_daily")),
                "out": str(out),
                "splits": ["dev"],
            }
        ),
        progress=False,
    )
    assert main(["stats", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    dev = result["splits"]["dev"]
    assert result["tokenizer"] == "char"
    texts = [line.split("|")[3] for line in shared("csl_daily", "csl-daily.dev.csv").read_text().splitlines()[1:]]
    assert dev["tokens"] == sum(len(t.replace(" ", "")) for t in texts)


def test_stats_errors_are_one_line(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "missing.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file" in err
