"""OpenASL, iSign and OpenPose-JSON (Prompt2Sign) adapters on fixtures written in the official layouts.

OpenASL's and iSign's release files are not available here, so the tests write small tables in their official
column layouts (sources cited at each fixture). The OpenPose frames are the real OpenPose 1.3 JSON files of
../shared/data/slp_pose/openpose_json, staged in Prompt2Sign's folder layout.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from testlib import REPO, shared

from ray_slt import storage
from ray_slt.cli import main
from ray_slt.data import manifest, poses
from ray_slt.data.adapters import get_adapter
from ray_slt.data.adapters.base import ErrorReport
from ray_slt.data.adapters.isign import seeded_split, video_id_of
from ray_slt.data.adapters.openasl import clip_stem, parse_timestamp
from ray_slt.data.adapters.openpose import frames_to_pose
from ray_slt.data.prepare import PrepareConfig, prepare
from ray_slt.errors import ConfigError, DataError

ALL = ("train", "dev", "test")


def read(name: str, root, options: dict | None = None, skip_bad: bool = False, splits=ALL):
    adapter = get_adapter(name)
    report = ErrorReport(skip_bad=skip_bad)
    rows = adapter.read(str(root), adapter.Options.model_validate(options or {}), report, splits=splits)
    return rows, report


def by_id(rows):
    return {r["sample_id"]: r for r in rows}


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------------------
# OpenASL. Layout: github.com/chevalierNoir/OpenASL, data/openasl-v1.0.tsv, tab-separated, read by the release's
# prep/download.py and prep/crop_video.py with pandas.read_csv(sep="\t"); header
# vid yid start end raw-text tokenized-text gloss split (vid = "{yid}-{start}-{end}", splits train/valid/test,
# gloss filled for valid/test rows). Rows below are shaped like the release's (HH:MM:SS.mmm times).
# --------------------------------------------------------------------------------------------------------------

OPENASL_HEADER = ["vid", "yid", "start", "end", "raw-text", "tokenized-text", "gloss", "split"]
OPENASL_ROWS = [
    [
        "AFnaBCqKXjY-00:00:00.500-00:00:09.442",
        "AFnaBCqKXjY",
        "00:00:00.500",
        "00:00:09.442",
        "The White House responded to the NAD lawsuit by saying they do not have to provide an interpreter.",
        "the white house responded to the nad lawsuit by saying they do not have to provide an interpreter",
        "",
        "train",
    ],
    [
        "CZiiD1UoDfQ-00:01:59.700-00:02:04.060",
        "CZiiD1UoDfQ",
        "00:01:59.700",
        "00:02:04.060",
        'The second thing on my agenda is the "President-President"  meetings I\'ve been having.',
        "the second thing on my agenda is the president president meetings i 've been having",
        "",
        "train",
    ],
    [
        "CZiiD1UoDfQ-00:02:29.000-00:02:32.200",
        "CZiiD1UoDfQ",
        "00:02:29.000",
        "00:02:32.200",
        "I've met about 40 people on the videophone so far, and I want to meet more going forward.",
        "i 've met about 40 people on the videophone so far and i want to meet more going forward",
        "That since approximate 40 people I videophone I want more henceforth. ",
        "valid",
    ],
    [
        "Ca-QuAhymDI-01:00:00.920-01:00:16.399",
        "Ca-QuAhymDI",
        "01:00:00.920",
        "01:00:16.399",
        "Hello, my name is Linda Bove.",
        "hello my name is linda bove",
        "Hello my name Linda Bove.",
        "test",
    ],
]


def write_tsv(path: Path, header, rows) -> Path:
    """Write like pandas.DataFrame.to_csv(sep='\\t'): minimal double-quote quoting, '\\n' line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


@pytest.fixture
def openasl_root(tmp_path) -> Path:
    root = tmp_path / "OpenASL"
    write_tsv(root / "data" / "openasl-v1.0.tsv", OPENASL_HEADER, OPENASL_ROWS)
    bbox = {OPENASL_ROWS[0][0]: [0.25, 0.1, 0.75, 0.9]}
    (root / "data" / "bbox-v1.0.json").write_text(json.dumps(bbox))
    return root


def test_openasl_timestamps_and_clip_names():
    assert parse_timestamp("00:01:59.700", "start") == pytest.approx(119.7)
    assert parse_timestamp("01:00:00.920", "start") == pytest.approx(3600.92)
    with pytest.raises(DataError, match="HH:MM:SS"):
        parse_timestamp("119.7", "start")
    assert clip_stem("AFnaBCqKXjY-00:00:00.500-00:00:09.442") == "AFnaBCqKXjY-00%00%00.500-00%00%09.442"


def test_openasl_happy_path(openasl_root):
    rows, report = read("openasl", openasl_root)
    assert len(report) == 0
    rows = by_id(rows)
    assert list(rows) == [f"openasl.{r[0]}" for r in OPENASL_ROWS]
    first = rows["openasl.AFnaBCqKXjY-00:00:00.500-00:00:09.442"]
    assert first["split"] == "train"
    assert (first["dataset"], first["sign_language"], first["spoken_language"]) == ("openasl", "ase", "en")
    assert first["text"] == OPENASL_ROWS[0][4]
    assert first["gloss"] is None
    assert first["video_uri"] == str(openasl_root / "video-clip" / "AFnaBCqKXjY-00%00%00.500-00%00%09.442.mp4")
    assert first["start_s"] is None and first["end_s"] is None
    meta = manifest.meta_of(first)
    assert meta["yid"] == "AFnaBCqKXjY"
    assert (meta["start"], meta["end"]) == ("00:00:00.500", "00:00:09.442")
    assert meta["source_start_s"] == pytest.approx(0.5) and meta["source_end_s"] == pytest.approx(9.442)
    assert meta["tokenized_text"] == OPENASL_ROWS[0][5]
    assert meta["bbox_norm"] == [0.25, 0.1, 0.75, 0.9]
    # raw text, quotes and double spaces included, never the tokenised copy
    second = rows["openasl.CZiiD1UoDfQ-00:01:59.700-00:02:04.060"]
    assert second["text"] == 'The second thing on my agenda is the "President-President"  meetings I\'ve been having.'
    assert "bbox_norm" not in manifest.meta_of(second)
    dev = rows["openasl.CZiiD1UoDfQ-00:02:29.000-00:02:32.200"]
    assert dev["split"] == "dev" and manifest.meta_of(dev)["native_split"] == "valid"
    assert dev["gloss"] == "That since approximate 40 people I videophone I want more henceforth."
    assert rows["openasl.Ca-QuAhymDI-01:00:00.920-01:00:16.399"]["split"] == "test"
    manifest.to_table(list(rows.values()))  # a valid manifest


def test_openasl_full_videos_and_split_filter(openasl_root):
    rows, _ = read("openasl", openasl_root, {"clips": False}, splits=("test",))
    assert len(rows) == 1
    (row,) = rows
    assert row["video_uri"] == str(openasl_root / "raw-video" / "Ca-QuAhymDI.mp4")
    assert row["start_s"] == pytest.approx(3600.92) and row["end_s"] == pytest.approx(3616.399)
    rows, _ = read("openasl", openasl_root, {"video_template": "clips/{split}/{vid}.mp4"}, splits=("dev",))
    assert rows[0]["video_uri"] == str(openasl_root / "clips" / "valid" / "CZiiD1UoDfQ-00:02:29.000-00:02:32.200.mp4")
    with pytest.raises(ConfigError, match="video_template"):
        read("openasl", openasl_root, {"video_template": "clips/{nope}.mp4"})


def test_openasl_extra_columns_go_to_meta(tmp_path):
    rows = [[*OPENASL_ROWS[0], "note"]]
    write_tsv(tmp_path / "openasl-v1.0.tsv", [*OPENASL_HEADER, "comment"], rows)
    (row,), _ = read("openasl", tmp_path)
    assert manifest.meta_of(row)["comment"] == "note"


def test_openasl_missing_column_names_file_and_line_1(tmp_path):
    table = write_tsv(tmp_path / "openasl-v1.0.tsv", OPENASL_HEADER[:-1], [r[:-1] for r in OPENASL_ROWS])
    with pytest.raises(DataError) as e:
        read("openasl", tmp_path)
    assert e.value.source == str(table) and e.value.line == 1
    assert "split" in e.value.reason


def test_openasl_comma_separated_table_is_rejected_at_line_1(tmp_path):
    table = tmp_path / "openasl-v1.0.tsv"
    table.write_text(",".join(OPENASL_HEADER) + "\n" + ",".join(OPENASL_ROWS[3]) + "\n")
    with pytest.raises(DataError, match="missing columns") as e:
        read("openasl", tmp_path)
    assert (e.value.source, e.value.line) == (str(table), 1)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (OPENASL_ROWS[0][:-2], "expected 8 fields"),
        ([*OPENASL_ROWS[0][:-1], "extra"], "unknown split 'extra'"),
        ([*OPENASL_ROWS[0][:2], "0.5", *OPENASL_ROWS[0][3:]], "HH:MM:SS"),
        ([*OPENASL_ROWS[0][:2], "00:00:09.442", "00:00:00.500", *OPENASL_ROWS[0][4:]], "empty or reversed"),
        ([*OPENASL_ROWS[0][:4], "  ", *OPENASL_ROWS[0][5:]], "empty 'raw-text'"),
    ],
)
def test_openasl_bad_row_names_its_line(tmp_path, row, reason):
    table = write_tsv(tmp_path / "openasl-v1.0.tsv", OPENASL_HEADER, [OPENASL_ROWS[1], row, OPENASL_ROWS[2]])
    with pytest.raises(DataError, match=reason) as e:
        read("openasl", tmp_path)
    assert (e.value.source, e.value.line) == (str(table), 3)
    assert f"{table}:3:" in str(e.value)


def test_openasl_bad_bbox_entry_is_a_bad_row(openasl_root):
    (openasl_root / "data" / "bbox-v1.0.json").write_text(json.dumps({OPENASL_ROWS[2][0]: [0.1, 0.2]}))
    rows, report = read("openasl", openasl_root, skip_bad=True)
    assert len(rows) == 3
    assert report.records[0]["line"] == 4 and "bbox" in report.records[0]["reason"]


def test_openasl_non_utf8_names_the_line(tmp_path):
    table = write_tsv(tmp_path / "openasl-v1.0.tsv", OPENASL_HEADER, OPENASL_ROWS)
    data = table.read_bytes().split(b"\n")
    data[3] = data[3].replace(b"videophone", b"videoph\xf6ne")
    table.write_bytes(b"\n".join(data))
    with pytest.raises(DataError, match="not valid utf-8") as e:
        read("openasl", tmp_path)
    assert (e.value.source, e.value.line) == (str(table), 4)


def test_openasl_skip_bad_keeps_every_good_row(tmp_path):
    bad_split = [*OPENASL_ROWS[1][:-1], "dev-2"]
    short = OPENASL_ROWS[2][:3]
    rows_in = [OPENASL_ROWS[0], bad_split, OPENASL_ROWS[2], short, OPENASL_ROWS[3]]
    table = write_tsv(tmp_path / "openasl-v1.0.tsv", OPENASL_HEADER, rows_in)
    rows, report = read("openasl", tmp_path, skip_bad=True)
    assert [r["sample_id"] for r in rows] == [f"openasl.{OPENASL_ROWS[i][0]}" for i in (0, 2, 3)]
    assert [(r["source"], r["line"]) for r in report.records] == [(str(table), 3), (str(table), 5)]
    assert "unknown split" in report.records[0]["reason"] and "expected 8 fields" in report.records[1]["reason"]


def test_openasl_from_s3(openasl_root, s3_bucket):
    root = f"{s3_bucket}/OpenASL"
    for f in (openasl_root / "data").iterdir():
        storage.write_bytes(f"{root}/data/{f.name}", f.read_bytes())
    rows, _ = read("openasl", root)
    assert len(rows) == 4
    first = by_id(rows)[f"openasl.{OPENASL_ROWS[0][0]}"]
    assert first["video_uri"] == f"{root}/video-clip/AFnaBCqKXjY-00%00%00.500-00%00%09.442.mp4"
    assert manifest.meta_of(first)["bbox_norm"] == [0.25, 0.1, 0.75, 0.9]
    out = f"{s3_bucket}/runs/openasl.parquet"
    summary = prepare(PrepareConfig(dataset="openasl", root=root, out=out), progress=False)
    assert summary["splits"] == {"train": 2, "dev": 1, "test": 1}
    assert manifest.read_manifest(out).num_rows == 4


def test_openasl_cli_end_to_end(openasl_root, tmp_path, capsys):
    out = tmp_path / "runs" / "openasl.parquet"
    code, stdout, err = run_cli(
        ["prepare", "openasl", "--root", str(openasl_root), "--out", str(out), "--json"], capsys
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["samples"] == 4 and summary["splits"] == {"train": 2, "dev": 1, "test": 1}
    assert summary["bad_rows"] == 0
    table = manifest.read_manifest(str(out))
    texts = dict(zip(table.column("sample_id").to_pylist(), table.column("text").to_pylist()))
    assert texts[f"openasl.{OPENASL_ROWS[1][0]}"] == OPENASL_ROWS[1][4]


def test_openasl_cli_bad_input_and_skip_bad(tmp_path, capsys):
    root = tmp_path / "OpenASL"
    table = write_tsv(root / "openasl-v1.0.tsv", OPENASL_HEADER, [OPENASL_ROWS[0], OPENASL_ROWS[1][:5]])
    out = tmp_path / "m.parquet"
    code, _, err = run_cli(["prepare", "openasl", "--root", str(root), "--out", str(out), "--json"], capsys)
    assert code == 2 and f"{table}:3:" in err and not out.exists()
    argv = ["prepare", "openasl", "--root", str(root), "--out", str(out), "--skip-bad", "--json"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["samples"] == 1 and summary["bad_rows"] == 1
    (record,) = [json.loads(x) for x in Path(summary["error_report"]).read_text().splitlines()]
    assert record["source"] == str(table) and record["line"] == 3


def test_openasl_conf_file(openasl_root, tmp_path, capsys):
    conf = REPO / "conf" / "prepare" / "openasl.yaml"
    assert conf.read_text().startswith("#")
    out = tmp_path / "openasl.parquet"
    code, stdout, err = run_cli(["prepare", str(conf), f"root={openasl_root}", f"out={out}", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["samples"] == 4


# --------------------------------------------------------------------------------------------------------------
# iSign. Layout: Hugging Face dataset Exploration-Lab/iSign, iSign_v1.1.csv, comma-separated, header "uid,text";
# uid = "{video_id}-{n}" (e.g. 1782bea75c7d-2, FyPkQyJWsjs--100); videos/poses as iSign-videos_v1.1/{uid}.mp4 and
# iSign-poses_v1.1/{uid}.pose. No split column: the release has no official splits.
# --------------------------------------------------------------------------------------------------------------

ISIGN_ROWS = [
    ["1782bea75c7d-1", "Page 111"],
    ["1782bea75c7d-2", "Make it shorter."],
    ["FyPkQyJWsjs--100", "Fancy staying back again."],
    ["aTB_lu2Im8Y-129", 'He said "yes, of course", then left.'],
    ["aTB_lu2Im8Y-130", ""],
]


def write_csv(path: Path, header, rows, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))
    return path


@pytest.fixture
def isign_root(tmp_path) -> Path:
    root = tmp_path / "iSign"
    write_csv(root / "iSign_v1.1.csv", ["uid", "text"], ISIGN_ROWS)
    return root


def test_isign_uid_video_ids():
    assert video_id_of("1782bea75c7d-2") == "1782bea75c7d"
    assert video_id_of("FyPkQyJWsjs--100") == "FyPkQyJWsjs-"
    assert video_id_of("no_sentence_number") == "no_sentence_number"


def test_isign_happy_path(isign_root):
    rows, report = read("isign", isign_root)
    assert len(report) == 0
    rows = by_id(rows)
    assert list(rows) == [f"isign.{uid}" for uid, _ in ISIGN_ROWS]
    assert {r["split"] for r in rows.values()} == {"train"}
    row = rows["isign.FyPkQyJWsjs--100"]
    assert (row["dataset"], row["sign_language"], row["spoken_language"]) == ("isign", "ins", "en")
    assert row["text"] == "Fancy staying back again."
    assert row["video_uri"] == str(isign_root / "iSign-videos_v1.1" / "FyPkQyJWsjs--100.mp4")
    assert row["pose_uri"] == str(isign_root / "iSign-poses_v1.1" / "FyPkQyJWsjs--100.pose")
    meta = manifest.meta_of(row)
    assert meta["video_id"] == "FyPkQyJWsjs-" and meta["split_rule"] == "train"
    assert rows["isign.aTB_lu2Im8Y-129"]["text"] == 'He said "yes, of course", then left.'
    # an empty translation is a well-formed release row: kept, for curation.clean to drop with a record
    assert rows["isign.aTB_lu2Im8Y-130"]["text"] == ""


def test_isign_empty_text_is_dropped_by_clean_with_a_record(isign_root, tmp_path):
    cfg = PrepareConfig(
        dataset="isign",
        root=str(isign_root),
        out=str(tmp_path / "isign.parquet"),
        options={"pose_template": None},
        curation={"clean": True},
    )
    summary = prepare(cfg, progress=False)
    assert summary["samples"] == 4 and summary["cleaning_dropped"] == 1
    dropped = [json.loads(x) for x in Path(summary["cleaning_report"]).read_text().splitlines()]
    assert dropped == [{"sample_id": "isign.aTB_lu2Im8Y-130", "split": "train", "reason": "empty text"}]


def test_isign_fixed_split_option_and_templates(isign_root):
    rows, _ = read("isign", isign_root, {"split": "test", "video_template": None, "pose_template": "p/{video_id}.pose"})
    assert {r["split"] for r in rows} == {"test"}
    assert all(r["video_uri"] is None for r in rows)
    assert by_id(rows)["isign.1782bea75c7d-2"]["pose_uri"] == str(isign_root / "p" / "1782bea75c7d.pose")
    rows, _ = read("isign", isign_root, {"split": "test"}, splits=("train", "dev"))
    assert rows == []


def test_isign_seeded_split_is_by_video_and_deterministic(tmp_path):
    videos = [f"vid{i:03d}x" for i in range(60)]
    rows_in = [[f"{v}-{n}", f"sentence {n} of {v}"] for v in videos for n in (1, 2, 3)]
    write_csv(tmp_path / "a" / "iSign_v1.1.csv", ["uid", "text"], rows_in)
    opts = {"split": "seeded", "dev_fraction": 0.2, "test_fraction": 0.2, "seed": 7}
    rows, _ = read("isign", tmp_path / "a", opts)
    split_of = {r["sample_id"]: r["split"] for r in rows}
    assert len(split_of) == 180
    for v in videos:  # every sentence of a source video lands in the same split
        assert len({split_of[f"isign.{v}-{n}"] for n in (1, 2, 3)}) == 1
    counts = {s: sum(1 for x in split_of.values() if x == s) // 3 for s in ALL}
    assert all(counts[s] > 0 for s in ALL) and counts["train"] > counts["dev"]
    # the documented function: sha256("{seed}:{video_id}") -> u in [0, 1)
    for v in videos[:10]:
        u = int(hashlib.sha256(f"7:{v}".encode()).hexdigest()[:16], 16) / 16**16
        expected = "test" if u < 0.2 else "dev" if u < 0.4 else "train"
        assert split_of[f"isign.{v}-1"] == expected == seeded_split(v, 7, 0.2, 0.2)
    # independent of row order and of which rows are present
    shuffled = rows_in[::2]
    random.Random(0).shuffle(shuffled)
    write_csv(tmp_path / "b" / "iSign_v1.1.csv", ["uid", "text"], shuffled)
    rows_b, _ = read("isign", tmp_path / "b", opts)
    assert all(split_of[r["sample_id"]] == r["split"] for r in rows_b)
    # another seed gives another assignment
    other, _ = read("isign", tmp_path / "a", {**opts, "seed": 8})
    assert any(split_of[r["sample_id"]] != r["split"] for r in other)
    assert manifest.meta_of(rows[0])["split_seed"] == 7


def test_isign_invalid_split_options_are_config_errors(isign_root, tmp_path):
    base = {"dataset": "isign", "root": str(isign_root), "out": str(tmp_path / "m.parquet")}
    with pytest.raises(ConfigError, match="dev_fraction"):
        prepare(PrepareConfig(**base, options={"split": "seeded", "dev_fraction": 0.6, "test_fraction": 0.5}))
    with pytest.raises(ConfigError, match="split"):
        prepare(PrepareConfig(**base, options={"split": "validation"}))


def test_isign_bom_header_is_accepted(tmp_path):
    write_csv(tmp_path / "iSign_v1.1.csv", ["uid", "text"], ISIGN_ROWS[:2], bom=True)
    rows, _ = read("isign", tmp_path)
    assert [r["sample_id"] for r in rows] == ["isign.1782bea75c7d-1", "isign.1782bea75c7d-2"]


def test_isign_missing_column_names_file_and_line_1(tmp_path):
    table = write_csv(tmp_path / "iSign_v1.1.csv", ["id", "text"], ISIGN_ROWS)
    with pytest.raises(DataError, match="missing columns") as e:
        read("isign", tmp_path)
    assert (e.value.source, e.value.line) == (str(table), 1)


def test_isign_malformed_rows(tmp_path):
    table = tmp_path / "iSign_v1.1.csv"
    table.write_text('uid,text\n1782bea75c7d-1,Page 111\n1782bea75c7d-2,Make it, shorter\n,No uid\nx-1,"open\n')
    with pytest.raises(DataError, match="expected 2 fields") as e:
        read("isign", tmp_path)
    assert (e.value.source, e.value.line) == (str(table), 3)
    table.write_text('uid,text\n1782bea75c7d-1,Page 111\n,No uid\nx-1,"open\n')
    with pytest.raises(DataError, match="empty 'uid'") as e:
        read("isign", tmp_path)
    assert e.value.line == 3
    # a quote never closed takes the rest of the file: one bad row naming its lines; the rows before it are kept
    table.write_text('uid,text\n1782bea75c7d-1,Page 111\nx-1,"open\n')
    with pytest.raises(DataError, match=r"never closed") as e:
        read("isign", tmp_path)
    assert (e.value.source, e.value.line) == (str(table), 3)
    rows, report = read("isign", tmp_path, skip_bad=True)
    assert [r["text"] for r in rows] == ["Page 111"] and len(report.records) == 1


def test_isign_non_utf8_names_the_line(tmp_path):
    table = write_csv(tmp_path / "iSign_v1.1.csv", ["uid", "text"], ISIGN_ROWS)
    table.write_bytes(table.read_bytes().replace(b"Fancy", b"F\xe4ncy"))
    with pytest.raises(DataError, match="not valid utf-8") as e:
        read("isign", tmp_path)
    assert (e.value.source, e.value.line) == (str(table), 4)


def test_isign_skip_bad_keeps_every_good_row(tmp_path):
    table = tmp_path / "iSign_v1.1.csv"
    table.write_text("uid,text\n1782bea75c7d-1,Page 111\n1782bea75c7d-2,a,b\n,x\nFyPkQyJWsjs--100,Fancy.\n")
    rows, report = read("isign", tmp_path, skip_bad=True)
    assert [r["sample_id"] for r in rows] == ["isign.1782bea75c7d-1", "isign.FyPkQyJWsjs--100"]
    assert [(r["source"], r["line"]) for r in report.records] == [(str(table), 3), (str(table), 4)]


def test_isign_cli_with_conf_file(isign_root, tmp_path, capsys):
    conf = REPO / "conf" / "prepare" / "isign.yaml"
    assert conf.read_text().startswith("#")
    out = tmp_path / "isign.parquet"
    argv = ["prepare", str(conf), f"root={isign_root}", f"out={out}", "options.test_fraction=0.5", "--json"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["samples"] == 5
    table = manifest.read_manifest(str(out))
    rows = by_id(table.to_pylist())
    for uid, _ in ISIGN_ROWS:
        assert rows[f"isign.{uid}"]["split"] == seeded_split(video_id_of(uid), 0, 0.05, 0.5)


def test_isign_cli_end_to_end(isign_root, tmp_path, capsys):
    out = tmp_path / "isign.parquet"
    argv = ["prepare", "isign", "--root", str(isign_root), "--out", str(out), "--option", "split=dev", "--json"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    assert json.loads(stdout)["splits"] == {"dev": 5}


# --------------------------------------------------------------------------------------------------------------
# OpenPose-JSON frame folders (Prompt2Sign). Layout: github.com/SignLLM/Prompt2Sign 2Dto3D/ (frames
# "{video}_{frame}_keypoints.json" per video folder, ordered by frame number; sentences in "{split}.text" aligned
# line by line with "{split}.files", whose lines read "{split}/{folder}"). Frames: the 9 real OpenPose 1.3 JSON
# files of slp_pose/sample_video.mp4.
# --------------------------------------------------------------------------------------------------------------

SENTENCE = "\"So we're going to go up and down; let's switch hands, down and up.\""


def real_frames() -> list[Path]:
    frames = sorted(shared("slp_pose", "openpose_json").glob("*_keypoints.json"))
    assert len(frames) == 9
    return frames


def stage_prompt2sign(root: Path, folders: dict[str, list[tuple[str, Path | bytes]]], texts: list[str], split="dev"):
    """Write {split}.files/.text and json/{split}/{folder}/ frame files (copies of real frames, or raw bytes)."""
    for folder, files in folders.items():
        d = root / "json" / split / folder
        d.mkdir(parents=True, exist_ok=True)
        for name, src in files:
            if isinstance(src, Path):
                shutil.copyfile(src, d / name)
            else:
                (d / name).write_bytes(src)
    (root / f"{split}.files").write_text("".join(f"{split}/{f}\n" for f in folders))
    (root / f"{split}.text").write_text("".join(f"{t}\n" for t in texts))


def expected_arrays(frames: list[Path]):
    """(xy, confidence) straight from the JSON numbers, in pose-format's OpenPose component order."""
    comps = ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d")
    xy, conf = [], []
    for f in frames:
        person = json.loads(f.read_text())["people"][0]
        values = np.concatenate([np.asarray(person[c], dtype=np.float32).reshape(-1, 3) for c in comps])
        xy.append(values[:, :2])
        conf.append(values[:, 2])
    return np.stack(xy), np.stack(conf)


def check_sample_pose(pose, frames: list[Path]):
    assert pose.body.data.shape == (9, 1, 137, 2)
    assert [c.name for c in pose.header.components] == [
        "pose_keypoints_2d",
        "face_keypoints_2d",
        "hand_left_keypoints_2d",
        "hand_right_keypoints_2d",
    ]
    assert [len(c.points) for c in pose.header.components] == [25, 70, 21, 21]
    xy, conf = expected_arrays(frames)
    np.testing.assert_array_equal(np.asarray(pose.body.confidence)[:, 0], conf)
    np.testing.assert_array_equal(pose.body.data.data[:, 0], xy)
    mask = np.ma.getmaskarray(pose.body.data)[:, 0]
    assert mask.shape == (9, 137, 2)
    np.testing.assert_array_equal(mask[..., 0], conf == 0)
    np.testing.assert_array_equal(mask[..., 1], conf == 0)
    assert (conf == 0).sum() == 9 * 13  # the real frames: 13 undetected lower-body points per frame
    assert not mask[conf > 0].any()


@pytest.fixture
def p2s_root(tmp_path) -> Path:
    root = tmp_path / "prompt2sign"
    frames = real_frames()
    stage_prompt2sign(root, {"sample_video": [(f.name, f) for f in frames]}, [SENTENCE])
    return root


def test_openpose_converts_real_frames(p2s_root):
    rows, report = read("prompt2sign", p2s_root, splits=("dev",))
    assert len(report) == 0
    (row,) = rows
    assert row["sample_id"] == "prompt2sign.sample_video"
    assert (row["dataset"], row["split"], row["text"]) == ("prompt2sign", "dev", SENTENCE)
    assert row["pose_uri"] == str(p2s_root / "poses_converted" / "dev" / "sample_video.pose")
    assert row["video_uri"] is None
    assert (row["num_frames"], row["fps"]) == (9, 24.0)
    meta = manifest.meta_of(row)
    assert meta["entry"] == "dev/sample_video" and meta["frames_dir"] == str(p2s_root / "json/dev/sample_video")
    pose = poses.read_pose(row["pose_uri"])
    check_sample_pose(pose, real_frames())
    assert (pose.header.dimensions.width, pose.header.dimensions.height) == (1280, 720)
    assert pose.body.fps == 24.0
    assert poses.has_person(pose)


def test_openpose_orders_frames_by_number_not_name(tmp_path):
    frames = real_frames()
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames):  # names sort z_0, y_1, ... -> reverse of the frame numbers
        shutil.copyfile(f, folder / f"{chr(ord('z') - i)}_{i}_keypoints.json")
    (folder / "notes.txt").write_text("not a frame")
    pose = frames_to_pose(str(folder), fps=30.0, width=1000, height=1000)
    check_sample_pose(pose, frames)
    assert pose.body.fps == 30.0


def test_openpose_options_video_and_pose_dir(p2s_root, tmp_path):
    pose_dir = tmp_path / "elsewhere"
    opts = {"pose_dir": str(pose_dir), "video_template": "videos/{name}.mp4", "fps": 25, "width": 1920}
    (row,), _ = read("openpose", p2s_root, opts, splits=("dev",))
    assert row["sample_id"] == "openpose.sample_video" and row["dataset"] == "openpose"
    assert row["pose_uri"] == str(pose_dir / "dev" / "sample_video.pose")
    assert row["video_uri"] == str(p2s_root / "videos" / "sample_video.mp4")
    pose = poses.read_pose(row["pose_uri"])
    assert (pose.body.fps, pose.header.dimensions.width) == (25.0, 1920)
    # overwrite=False keeps an earlier conversion
    (pose_dir / "dev" / "sample_video.pose").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty \.pose"):
        read("openpose", p2s_root, {**opts, "overwrite": False}, splits=("dev",))
    read("openpose", p2s_root, opts, splits=("dev",))
    assert poses.read_pose(row["pose_uri"]).body.data.shape[0] == 9


def test_openpose_bad_frames_are_bad_rows(tmp_path):
    frames = real_frames()
    root = tmp_path / "p2s"
    corrupt = frames[3].read_bytes()[:-40]
    folders = {
        "good": [(f.name, f) for f in frames],
        "gap": [(f.name, f) for i, f in enumerate(frames) if i != 4],
        "corrupt": [(f.name, f) for f in frames[:3]] + [(frames[3].name, corrupt)],
        "not_openpose": [(frames[0].name, b'{"version": 1.3, "people": [{"pose_keypoints_2d": [1, 2]}]}')],
        "empty": [],
    }
    texts = ["Good one.", "Gap one.", "Corrupt one.", "Wrong arrays.", "No frames."]
    stage_prompt2sign(root, folders, texts)
    text_file = str(root / "dev.text")
    with pytest.raises(DataError, match="frame 4 is missing") as e:
        read("openpose", root, splits=("dev",))
    assert e.value.source == str(root / "json/dev/gap") and "'gap'" in e.value.reason
    rows, report = read("openpose", root, skip_bad=True, splits=("dev",))
    assert [r["sample_id"] for r in rows] == ["openpose.good"]
    check_sample_pose(poses.read_pose(rows[0]["pose_uri"]), frames)
    sources = [(r["source"], r["line"]) for r in report.records]
    assert sources[0] == (str(root / "json/dev/gap"), None)
    assert sources[1][0] == str(root / "json/dev/corrupt" / frames[3].name) and sources[1][1] is not None
    assert "not valid JSON" in report.records[1]["reason"]
    assert sources[2][0] == str(root / "json/dev/not_openpose" / frames[0].name)
    assert "pose_keypoints_2d: expected 75" in report.records[2]["reason"]
    assert sources[3] == (str(root / "json/dev/empty"), None)
    assert not (root / "poses_converted" / "dev" / "gap.pose").exists()
    assert text_file not in {s for s, _ in sources}


def test_openpose_misaligned_files_and_text(tmp_path):
    frames = real_frames()
    root = tmp_path / "p2s"
    stage_prompt2sign(root, {"a": [(f.name, f) for f in frames]}, ["First.", "Orphan sentence."])
    with pytest.raises(DataError, match="has no folder") as e:
        read("openpose", root, splits=("dev",))
    assert (e.value.source, e.value.line) == (str(root / "dev.text"), 2)
    (root / "dev.text").write_text("First.\n\n")
    (root / "dev.files").write_text("dev/a\ndev/a\n")
    rows, report = read("openpose", root, skip_bad=True, splits=("dev",))
    assert len(rows) == 1
    assert report.records == [{"source": str(root / "dev.text"), "line": 2, "reason": "empty sentence"}]
    with pytest.raises(DataError, match="not found"):
        read("openpose", root, splits=("train",))


def test_openpose_non_utf8_text_names_the_line(p2s_root):
    (p2s_root / "dev.text").write_bytes(b"Caf\xe9 sentence.\n")
    with pytest.raises(DataError, match="not valid utf-8") as e:
        read("openpose", p2s_root, splits=("dev",))
    assert (e.value.source, e.value.line) == (str(p2s_root / "dev.text"), 1)


def test_openpose_table_layout(tmp_path):
    frames = real_frames()
    root = tmp_path / "corpus"
    stage_prompt2sign(root, {"s1": [(f.name, f) for f in frames]}, ["unused"], split="train")
    table = write_tsv(
        root / "sentences.tsv",
        ["name", "split", "text", "signer"],
        [["s1", "train", "Hello, world.", "A"], ["s2", "val", "Missing frames.", "B"], ["s3", "holdout", "x", "C"]],
    )
    opts = {"table": "sentences.tsv", "frames_template": "json/train/{name}", "sign_language": "gsg"}
    rows, report = read("openpose", root, opts, skip_bad=True)
    assert [(r["sample_id"], r["split"], r["text"]) for r in rows] == [("openpose.s1", "train", "Hello, world.")]
    assert rows[0]["sign_language"] == "gsg" and manifest.meta_of(rows[0])["signer"] == "A"
    assert [(r["source"], r["line"]) for r in report.records] == [
        (str(root / "json/train/s2"), None),
        (str(table), 4),
    ]
    assert "unknown split 'holdout'" in report.records[1]["reason"]
    write_tsv(root / "sentences.tsv", ["name", "text"], [["s1", "x"]])
    with pytest.raises(DataError, match="missing columns") as e:
        read("openpose", root, opts)
    assert (e.value.source, e.value.line) == (str(table), 1)


def test_openpose_from_s3(p2s_root, s3_bucket):
    root = f"{s3_bucket}/p2s"
    for f in p2s_root.rglob("*"):
        if f.is_file():
            storage.write_bytes(f"{root}/{f.relative_to(p2s_root).as_posix()}", f.read_bytes())
    (row,), report = read("prompt2sign", root, splits=("dev",))
    assert len(report) == 0
    assert row["pose_uri"] == f"{root}/poses_converted/dev/sample_video.pose"
    check_sample_pose(poses.read_pose(row["pose_uri"]), real_frames())


def test_prompt2sign_cli_end_to_end(p2s_root, tmp_path, capsys):
    out = tmp_path / "p2s.parquet"
    argv = ["prepare", "prompt2sign", "--root", str(p2s_root), "--out", str(out), "--splits", "dev"]
    code, stdout, err = run_cli([*argv, "--require-media", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["samples"] == 1 and summary["splits"] == {"dev": 1}
    (row,) = manifest.read_manifest(str(out)).to_pylist()
    assert row["text"] == SENTENCE and row["num_frames"] == 9
    check_sample_pose(poses.read_pose(row["pose_uri"]), real_frames())
