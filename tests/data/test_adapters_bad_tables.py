"""Every table-reading corpus adapter fed the same five kinds of broken official file (issue: nothing valid lost,
nothing bad let in): a file cut short inside its last row, a row with bytes that are not UTF-8, the whole file
re-saved with another delimiter, a row whose id repeats an earlier one, and a header missing a required column.

Strict (the default), each is one DataError naming the file and the line. With ``skip_bad`` a bad *row* costs
that row only (an error record each) and every good row is kept; a file whose header cannot be read has no good
row to keep and stops, naming line 1. The real official tables of ../shared/data are used where they are here
(PHOENIX-2014T, CSL-Daily, How2Sign, AUTSL's class list), the official layouts of the test fixtures otherwise
(OpenASL, iSign)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_adapters_official_layouts import (
    ISIGN_ROWS,
    OPENASL_HEADER,
    OPENASL_ROWS,
    read,
    write_csv,
    write_tsv,
)
from testlib import shared

from ray_slt.errors import DataError

GOOD = 4  # data rows in every fixture table (lines 2-5; AUTSL's label table has no header: lines 1-4)


def _head(src: Path, dst: Path, rows: int = GOOD) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    lines = src.read_bytes().split(b"\n")
    dst.write_bytes(b"\n".join(lines[: rows + 1]) + b"\n")
    return dst


def phoenix14t(tmp):
    return _head(shared("phoenix14t", "PHOENIX-2014-T.test.corpus.csv"), tmp / "PHOENIX-2014-T.test.corpus.csv")


def csl_daily(tmp):
    return _head(shared("csl_daily", "csl-daily.test.csv"), tmp / "csl-daily.test.csv")


def how2sign(tmp):
    return _head(shared("how2sign", "how2sign_realigned_test.csv"), tmp / "how2sign_realigned_test.csv")


def autsl(tmp):
    _head(shared("autsl", "SignList_ClassId_TR_EN.csv"), tmp / "SignList_ClassId_TR_EN.csv", rows=226)
    table = tmp / "test_labels.csv"
    table.write_text("".join(f"signer{i}_sample{100 + i},{i * 7}\n" for i in range(GOOD)))
    return table


def openasl(tmp):
    return write_tsv(tmp / "openasl-v1.0.tsv", OPENASL_HEADER, [[*r[:7], "test"] for r in OPENASL_ROWS[:GOOD]])


def isign(tmp):
    return write_csv(tmp / "iSign_v1.1.csv", ["uid", "text"], ISIGN_ROWS[:GOOD])


ADAPTERS = {  # name -> (fixture, delimiter, has a header, options)
    "phoenix14t": (phoenix14t, "|", True, {}),
    "csl_daily": (csl_daily, "|", True, {}),
    "how2sign": (how2sign, "\t", True, {}),
    "autsl": (autsl, ",", False, {"labels": {"test": "test_labels.csv"}}),
    "openasl": (openasl, "\t", True, {}),
    "isign": (isign, ",", True, {"split": "test"}),
}


def _lines(table: Path) -> list[bytes]:
    return table.read_bytes().rstrip(b"\n").split(b"\n")


def _write(table: Path, lines: list[bytes], end: bytes = b"\n") -> None:
    table.write_bytes(b"\n".join(lines) + end)


def truncated(table: Path, delim: str, header: bool) -> int:
    """Cut inside the last row's first field (no newline): its other fields are gone."""
    lines = _lines(table)
    last = lines[-1]
    cut = last.index(delim.encode()) - 2
    _write(table, [*lines[:-1], last[:cut]], end=b"")
    return len(lines)


def mis_encoded(table: Path, delim: str, header: bool) -> int:
    """A Latin-1 byte inside the second data row's id."""
    lines = _lines(table)
    k = 2 if header else 1
    lines[k] = lines[k][:1] + b"\xe4" + lines[k][1:]
    _write(table, lines)
    return k + 1


def duplicated_id(table: Path, delim: str, header: bool) -> int:
    """The last row repeats the second data row."""
    lines = _lines(table)
    lines[-1] = lines[2 if header else 1]
    _write(table, lines)
    return len(lines)


def mis_delimited(table: Path, delim: str, header: bool) -> int:
    """The whole file saved with ';' instead of its delimiter."""
    table.write_bytes(table.read_bytes().replace(delim.encode(), b";"))
    return 1


def missing_column(table: Path, delim: str, header: bool) -> int:
    """A required column's name is gone from the header (the data rows are as before)."""
    lines = _lines(table)
    cols = lines[0].split(delim.encode())
    lines[0] = delim.encode().join([*cols[:-1], b"something_else"])
    _write(table, lines)
    return 1


ROW_CASES = {"truncated": truncated, "mis_encoded": mis_encoded, "duplicated_id": duplicated_id}
FILE_CASES = {"mis_delimited": mis_delimited, "missing_column": missing_column}


def test_a_file_cut_inside_a_quote_keeps_the_rows_before_it(tmp_path):
    table = isign(tmp_path)
    text = table.read_text()
    cut = text.index('"He said') + len('"He sa')  # inside the last row's quoted text
    table.write_text(text[:cut])
    with pytest.raises(DataError, match="never closed") as e:
        read("isign", tmp_path, {"split": "test"}, splits=("test",))
    assert (e.value.source, e.value.line) == (str(table), 5)
    rows, report = read("isign", tmp_path, {"split": "test"}, skip_bad=True, splits=("test",))
    assert len(rows) == 3 and len(report.records) == 1


@pytest.mark.parametrize("case", [*ROW_CASES, *FILE_CASES])
@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_bad_table_names_file_and_line_and_keeps_good_rows(adapter, case, tmp_path):
    make, delim, header, options = ADAPTERS[adapter]
    table = make(tmp_path)
    good, _ = read(adapter, tmp_path, options, splits=("test",))
    assert len(good) == GOOD  # the fixture itself is valid
    if case == "missing_column" and not header:
        pytest.skip("AUTSL's label tables have no header")
    line = {**ROW_CASES, **FILE_CASES}[case](table, delim, header)
    with pytest.raises(DataError) as e:
        read(adapter, tmp_path, options, splits=("test",))
    assert (e.value.source, e.value.line) == (str(table), line), str(e.value)
    if case == "duplicated_id":  # the error also names where the first one was
        assert "duplicate" in e.value.reason and f"{table}:{3 if header else 2}" in e.value.reason
    if case in ROW_CASES or not header:
        rows, report = read(adapter, tmp_path, options, skip_bad=True, splits=("test",))
        bad = GOOD if case == "mis_delimited" else 1
        assert len(rows) == GOOD - bad and len(report.records) == bad
        assert {r["sample_id"] for r in rows} <= {r["sample_id"] for r in good}
        assert all(rec["source"] == str(table) for rec in report.records)
    else:  # no header: no good row to keep, the file stops at line 1 even with skip_bad
        with pytest.raises(DataError) as e:
            read(adapter, tmp_path, options, skip_bad=True, splits=("test",))
        assert e.value.line == 1


def test_wlasl_json_truncated_duplicated_and_missing_fields(tmp_path):
    """WLASL's one JSON document: cut short -> the line where parsing stopped; a video id under two glosses ->
    a bad instance (with skip_bad the first is kept); an instance without a field -> its gloss and number."""
    import json

    entries = json.loads(shared("wlasl", "WLASL_v0.3.json").read_text())[:3]
    src = tmp_path / "WLASL_v0.3.json"
    text = json.dumps(entries, indent=1)
    src.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="not valid JSON") as e:
        read("wlasl", tmp_path)
    assert e.value.source == str(src) and e.value.line > 1
    n = sum(len(x["instances"]) for x in entries)
    entries[2]["instances"].append(dict(entries[0]["instances"][0]))  # the same video under another gloss
    src.write_text(json.dumps(entries))
    with pytest.raises(DataError, match="duplicate id") as e:
        read("wlasl", tmp_path)
    assert e.value.source == str(src)
    rows, report = read("wlasl", tmp_path, skip_bad=True)
    assert len(rows) == n and len(report.records) == 1
    first = [r for r in rows if r["sample_id"].endswith(entries[0]["instances"][0]["video_id"])]
    assert len(first) == 1 and first[0]["gloss"] == entries[0]["gloss"]
    del entries[1]["instances"][0]["split"]
    entries[2]["instances"].pop()
    src.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=rf"gloss '{entries[1]['gloss']}' instance #0: missing field 'split'"):
        read("wlasl", tmp_path)
