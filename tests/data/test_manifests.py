"""Corpus adapters on the real official tables in ../shared/data, the manifest contract and bad input."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
from testlib import shared

from ray_slt.config import build_config
from ray_slt.data import manifest
from ray_slt.data.prepare import prepare
from ray_slt.errors import DataError


def run_prepare(dataset, root, out, **kw):
    cfg = build_config({"kind": "prepare", "dataset": dataset, "root": str(root), "out": str(out), **kw})
    return prepare(cfg, progress=False)


def by_id(table):
    return {r["sample_id"]: r for r in table.to_pylist()}


def test_phoenix14t_official_tables(tmp_path):
    root = shared("phoenix14t")
    summary = run_prepare("phoenix14t", root, tmp_path / "m.parquet")
    assert summary["splits"] == {"train": 7096, "dev": 519, "test": 642} and summary["bad_rows"] == 0
    table = manifest.read_manifest(str(tmp_path / "m.parquet"))
    rows = by_id(table)
    r = rows["phoenix14t.11August_2010_Wednesday_tagesschau-1"]
    assert r["split"] == "train" and r["sign_language"] == "gsg" and r["spoken_language"] == "de"
    assert r["text"] == "und nun die wettervorhersage für morgen donnerstag den zwölften august"
    assert r["gloss"] == "JETZT WETTER MORGEN DONNERSTAG ZWOELF FEBRUAR"
    assert r["signer"] == "Signer08" and r["num_frames"] == 86 and r["fps"] == 25.0
    assert r["start_frame"] is None and r["end_frame"] is None
    assert r["video_uri"].endswith("features/fullFrame-210x260px/train/11August_2010_Wednesday_tagesschau-1/1")
    # the one verbatim official dev row agrees with the reconstructed dev table
    official = (root / "official_row" / "PHOENIX-2014-T.dev.corpus.csv").read_text(encoding="utf-8")
    name, _, _, _, speaker, orth, translation = official.splitlines()[1].split("|")
    test_row = rows[f"phoenix14t.{name}"]
    assert (test_row["signer"], test_row["gloss"], test_row["text"]) == (speaker, orth, translation)


def test_csl_daily_tables(tmp_path):
    shared("csl_daily")
    summary = run_prepare("csl_daily", shared("csl_daily"), tmp_path / "m.parquet")
    assert summary["splits"] == {"train": 18401, "dev": 1077, "test": 1176}
    r = by_id(manifest.read_manifest(str(tmp_path / "m.parquet")))["csl_daily.S000020_P0000_T00"]
    assert (r["split"], r["text"], r["gloss"], r["num_frames"], r["signer"]) == (
        "dev",
        "他今年四岁。",
        "他 今天 年龄 4",
        54,
        "0",
    )
    assert r["spoken_language"] == "zh" and r["sign_language"] == "csl"


def test_how2sign_realigned_tables_tab_and_comma(tmp_path):
    root = shared("how2sign")
    summary = run_prepare("how2sign", root, tmp_path / "m.parquet", splits=["dev", "test"])
    assert summary["splits"] == {"dev": 1741, "test": 2357}
    rows = by_id(manifest.read_manifest(str(tmp_path / "m.parquet")))
    hi = rows["how2sign.-fZc293MpJk_0-1-rgb_front"]
    assert hi["text"] == "Hi!" and hi["split"] == "test" and hi["start_s"] is None  # clips: times not applied
    assert json.loads(hi["meta"])["start_realigned"] == 0.26
    assert hi["video_uri"].endswith("videos/-fZc293MpJk_0-1-rgb_front.mp4")
    # CSV quoting inside the tab-separated official file is undone: raw sentence, inner quotes kept
    quoted = rows["how2sign.-g0iPSnQt6w_5-1-rgb_front"]["text"]
    assert quoted == "You can't get into the middle of the dive and just decide, \"You know what?"
    # the val file re-saved with commas is read too, and val is recorded as dev
    assert rows["how2sign.-d5dN54tH2E_1-1-rgb_front"]["text"] == "I call it painting the wall."
    assert rows["how2sign.-d5dN54tH2E_1-1-rgb_front"]["split"] == "dev"
    # the clips staged in ../shared/data exist where the manifest says
    staged = run_prepare("how2sign", root, tmp_path / "m2.parquet", splits=["test"], require_media=True, skip_bad=True)
    assert staged["samples"] == 5 and staged["bad_rows"] == 2357 - 5


def test_how2sign_full_videos_use_realigned_times(tmp_path):
    run_prepare("how2sign", shared("how2sign"), tmp_path / "m.parquet", splits=["test"], options={"clips": False})
    r = by_id(manifest.read_manifest(str(tmp_path / "m.parquet")))["how2sign.-fZc293MpJk_0-1-rgb_front"]
    assert (r["start_s"], r["end_s"]) == (0.26, 6.79) and r["video_uri"].endswith("videos/-fZc293MpJk-1-rgb_front.mp4")


def test_wlasl_subsets_agree_with_the_official_split_file(tmp_path):
    root = shared("wlasl")
    run_prepare("wlasl", root, tmp_path / "m.parquet", options={"subset": 100})
    table = manifest.read_manifest(str(tmp_path / "m.parquet"))
    nslt = json.loads((root / "nslt_100.json").read_text())
    ours = {r["sample_id"].split(".", 1)[1]: r for r in table.to_pylist()}
    assert set(ours) == set(nslt)  # WLASL100 = the first 100 glosses, same videos as the official file
    for vid, ann in nslt.items():
        row = ours[vid]
        assert json.loads(row["meta"])["class_id"] == ann["action"][0]
        assert row["split"] == {"val": "dev"}.get(ann["subset"], ann["subset"])
        # (its frame numbers are relative to pre-trimmed clips for some videos, so only classes/splits compare)
    classes = (root / "wlasl_class_list.txt").read_text().splitlines()[:100]
    assert {json.loads(r["meta"])["class_id"]: r["gloss"] for r in table.to_pylist()} == {
        int(line.split("\t")[0]): line.split("\t")[1] for line in classes
    }
    full = run_prepare("wlasl", root, tmp_path / "all.parquet")
    assert full["samples"] == 21083 - full["bad_rows"]


def test_wlasl_frames_and_bbox_of_a_staged_clip(tmp_path):
    root = shared("wlasl")
    run_prepare("wlasl", root, tmp_path / "m.parquet", require_media=True, skip_bad=True)
    rows = by_id(manifest.read_manifest(str(tmp_path / "m.parquet")))
    assert set(rows) == {f"wlasl.{p.stem}" for p in (root / "videos").glob("*.mp4")}  # exactly the staged clips
    r = rows["wlasl.00335"]
    assert (r["gloss"], r["split"], r["signer"], r["bbox"]) == ("abdomen", "test", "2", [57, 5, 246, 240])
    assert (r["start_frame"], r["end_frame"]) == (0, None)


def test_a_relative_root_gives_absolute_media_paths(tmp_path, monkeypatch):
    # Extraction resolves relative media URIs against the manifest's folder, so a root typed relative to the
    # working directory must not end up relative in the manifest.
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    rel = os.path.relpath(shared("wlasl"), tmp_path / "cwd")
    run_prepare("wlasl", rel, tmp_path / "out" / "m.parquet", require_media=True, skip_bad=True)
    uris = [r["video_uri"] for r in manifest.read_manifest(str(tmp_path / "out" / "m.parquet")).to_pylist()]
    assert uris and all(os.path.isabs(u) and os.path.isfile(u) for u in uris)


# ------------------------------------------------------------------------------------------------ bad input
def _copy_phoenix(tmp_path):
    root = tmp_path / "phoenix"
    root.mkdir()
    for split in ("train", "dev", "test"):
        shutil.copy(shared("phoenix14t", f"PHOENIX-2014-T.{split}.corpus.csv"), root)
    return root


def _rewrite(path, transform):
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(transform(lines)))


def test_malformed_row_is_named_and_skip_bad_keeps_every_good_row(tmp_path):
    root = _copy_phoenix(tmp_path)
    dev = root / "PHOENIX-2014-T.dev.corpus.csv"
    _rewrite(dev, lambda ls: [*ls[:5], b"only|three|fields", *ls[5:]])  # becomes line 6
    with pytest.raises(DataError, match=r"PHOENIX-2014-T.dev.corpus.csv:6: expected 7 fields"):
        run_prepare("phoenix14t", root, tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()
    summary = run_prepare("phoenix14t", root, tmp_path / "m.parquet", skip_bad=True)
    assert summary["splits"]["dev"] == 519 and summary["bad_rows"] == 1
    record = json.loads((tmp_path / "m.errors.jsonl").read_text())
    assert record["line"] == 6 and record["source"].endswith("dev.corpus.csv")


def test_missing_column_non_utf8_and_empty_values(tmp_path):
    root = _copy_phoenix(tmp_path)
    test = root / "PHOENIX-2014-T.test.corpus.csv"
    _rewrite(test, lambda ls: [ls[0].replace(b"|translation", b"|transl"), *ls[1:]])
    with pytest.raises(DataError, match=r"test.corpus.csv:1: missing columns \['translation'\]"):
        run_prepare("phoenix14t", root, tmp_path / "m.parquet")
    shutil.copy(shared("phoenix14t", "PHOENIX-2014-T.test.corpus.csv"), test)
    k = next(i for i, line in enumerate(test.read_bytes().split(b"\n")) if i > 50 and "ü".encode() in line)
    _rewrite(test, lambda ls: [*ls[:k], ls[k].replace("ü".encode(), b"\xfc"), *ls[k + 1 :]])  # latin-1 ü
    bad_line = k + 1
    with pytest.raises(DataError, match=rf"test.corpus.csv:{bad_line}: not valid utf-8"):
        run_prepare("phoenix14t", root, tmp_path / "m.parquet")
    shutil.copy(shared("phoenix14t", "PHOENIX-2014-T.test.corpus.csv"), test)
    _rewrite(test, lambda ls: [*ls[:3], b"|".join([*ls[3].split(b"|")[:-1], b"  "]), *ls[4:]])
    with pytest.raises(DataError, match=r"test.corpus.csv:4: empty 'translation'"):
        run_prepare("phoenix14t", root, tmp_path / "m.parquet")


def test_unknown_split_and_invalid_bbox_in_wlasl(tmp_path):
    entries = json.loads(shared("wlasl", "WLASL_v0.3.json").read_text())[:3]
    entries[0]["instances"][0]["split"] = "holdout"
    entries[1]["instances"][0]["bbox"] = [10, 10, 5, 20]
    root = tmp_path / "wlasl"
    root.mkdir()
    (root / "WLASL_v0.3.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        run_prepare("wlasl", root, tmp_path / "m.parquet")
    summary = run_prepare("wlasl", root, tmp_path / "m.parquet", skip_bad=True)
    total = sum(len(e["instances"]) for e in entries)
    assert summary["samples"] == total - 2 and summary["bad_rows"] == 2
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "m.errors.jsonl").read_text().splitlines()]
    assert any("holdout" in r for r in reasons) and any("bbox" in r for r in reasons)
    # a clean re-run removes the stale error report
    (root / "WLASL_v0.3.json").write_text(json.dumps(json.loads(shared("wlasl", "WLASL_v0.3.json").read_text())[3:5]))
    run_prepare("wlasl", root, tmp_path / "m.parquet")
    assert not (tmp_path / "m.errors.jsonl").exists()


def test_manifest_contract_rejects_bad_tables(tmp_path):
    good = manifest.make_row(
        sample_id="d.1",
        dataset="d",
        split="train",
        sign_language="ase",
        spoken_language="en",
        text="hi",
        video_uri="v.mp4",
    )
    with pytest.raises(DataError, match="duplicate sample_id"):
        manifest.to_table([good, dict(good)])
    with pytest.raises(DataError, match="split 'val' is not one of"):
        manifest.make_row(**{**good, "split": "val"})
    with pytest.raises(DataError, match="end_frame 3 is not after start_frame 5"):
        manifest.make_row(**{**good, "start_frame": 5, "end_frame": 3})
    with pytest.raises(DataError, match="column 'text' is missing"):
        manifest.make_row(**{**good, "text": None})
    table = manifest.to_table([good])
    pq.write_table(table.drop(["meta"]), tmp_path / "x.parquet")
    with pytest.raises(DataError, match=r"x.parquet: not a manifest: missing columns \['meta'\]"):
        manifest.read_manifest(str(tmp_path / "x.parquet"))
    (tmp_path / "y.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a Parquet file"):
        manifest.read_manifest(str(tmp_path / "y.parquet"))


def test_prepare_reads_and_writes_s3(s3_bucket, tmp_path):
    from ray_slt import storage

    for split in ("train", "dev", "test"):
        for kind in ("corpus", "num_frames"):
            name = f"PHOENIX-2014-T.{split}.{kind}.csv"
            storage.copy(str(shared("phoenix14t", name)), f"{s3_bucket}/corpora/phoenix/annotations/manual/{name}")
    out = f"{s3_bucket}/runs/phoenix/manifest.parquet"
    summary = run_prepare("phoenix14t", f"{s3_bucket}/corpora/phoenix", out)
    assert summary["samples"] == 8257
    table = manifest.read_manifest(out)
    assert table.num_rows == 8257
    r = by_id(table)["phoenix14t.11August_2010_Wednesday_tagesschau-1"]
    assert r["num_frames"] == 86
    assert r["video_uri"] == (
        f"{s3_bucket}/corpora/phoenix/features/fullFrame-210x260px/train/11August_2010_Wednesday_tagesschau-1/1"
    )
