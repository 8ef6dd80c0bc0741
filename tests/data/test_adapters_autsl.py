"""AUTSL: the official class list (../shared/data/autsl/SignList_ClassId_TR_EN.csv, 226 classes) and a label
table in the release's ``sample,class_id`` layout (the shared data's one real sample, signer0_sample1000 of class
164, with its MediaPipe .pose), read in place; bad label rows name their file and line."""

from __future__ import annotations

import shutil

import pytest
from testlib import REPO, shared

from ray_slt.cli import main
from ray_slt.data import manifest
from ray_slt.data.adapters import get_adapter
from ray_slt.data.adapters.autsl import read_classes
from ray_slt.data.adapters.base import ErrorReport
from ray_slt.data.lexicon import read_class_list
from ray_slt.errors import DataError


@pytest.fixture(scope="module")
def autsl_dir():
    root = shared() / "autsl"
    if not (root / "SignList_ClassId_TR_EN.csv").exists():
        pytest.skip("the shared data's AUTSL files are not available")
    return root


def read(root, options, skip_bad=False, splits=("train", "dev", "test")):
    adapter = get_adapter("autsl")
    report = ErrorReport(skip_bad=skip_bad)
    return adapter.read(str(root), adapter.Options.model_validate(options), report, splits=splits), report


def test_the_official_class_list(autsl_dir):
    classes = read_classes(str(autsl_dir / "SignList_ClassId_TR_EN.csv"))
    assert len(classes) == 226 and classes[0] == {"class_id": 0, "tr": "abla", "en": "sister"}
    assert classes[164]["tr"] == "rica_etmek" and classes[164]["en"] == "request"
    # islr.classes reads the same list: the Turkish names, in ClassId order
    assert read_class_list(str(autsl_dir / "SignList_ClassId_TR_EN.csv")) == [c["tr"] for c in classes]


def test_the_real_sample_in_place(autsl_dir):
    rows, report = read(autsl_dir, {"labels": {"test": "labels.csv"}, "video_template": "{sample}_color.mp4",
                                    "pose_template": "{sample}.holistic.pose"})  # fmt: skip
    assert len(report) == 0 and len(rows) == 1
    row = rows[0]
    assert row["sample_id"] == "autsl.signer0_sample1000" and row["split"] == "test" and row["signer"] == "signer0"
    assert row["gloss"] == "rica_etmek" and row["text"] == "request" and row["sign_language"] == "tsm"
    assert row["video_uri"].endswith("autsl/signer0_sample1000_color.mp4")
    assert row["pose_uri"].endswith("autsl/signer0_sample1000.holistic.pose")


def test_prepare_cli_with_the_conf_file(autsl_dir, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    code = main(["prepare", str(REPO / "conf" / "prepare" / "autsl.yaml"), f"root={autsl_dir}", f"out={out}",
                 "options.labels={test: labels.csv}", 'options.video_template="{sample}_color.mp4"',
                 "require_media=true", "splits=[test]"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    table = manifest.read_manifest(str(out))
    assert table.num_rows == 1 and table.column("gloss").to_pylist() == ["rica_etmek"]


@pytest.fixture
def staged(autsl_dir, tmp_path):
    """The official class list beside label tables written here (train: good rows, dev: bad rows)."""
    shutil.copy(autsl_dir / "SignList_ClassId_TR_EN.csv", tmp_path)
    (tmp_path / "train_labels.csv").write_text("signer1_sample5,0\nsigner2_sample9,225\n")
    (tmp_path / "validation_labels.csv").write_text(
        "signer3_sample1,12\nsigner3_sample2,226\nsigner3_sample3,x\nnot_a_sample,3\nsigner4_sample7,7,extra\n"
    )
    return tmp_path


def test_bad_label_rows_name_file_and_line(staged):
    with pytest.raises(DataError) as e:
        read(staged, {"labels": {"dev": "validation_labels.csv"}})
    assert e.value.line == 2 and "class_id 226 is not in the class list (0..225)" in str(e.value)
    assert e.value.source.endswith("validation_labels.csv")


def test_skip_bad_keeps_every_good_row(staged):
    rows, report = read(staged, {"labels": {"train": "train_labels.csv", "dev": "validation_labels.csv"}},
                        skip_bad=True)  # fmt: skip
    assert sorted(r["sample_id"] for r in rows) == [
        "autsl.signer1_sample5", "autsl.signer2_sample9", "autsl.signer3_sample1"]  # fmt: skip
    assert [r["split"] for r in sorted(rows, key=lambda r: r["sample_id"])] == ["train", "train", "dev"]
    assert [(r["line"], r["reason"]) for r in report.records] == [
        (2, "class_id 226 is not in the class list (0..225)"),
        (3, "class_id 'x' is not an integer"),
        (4, "sample 'not_a_sample' is not signer<S>_sample<N>"),
        (5, "expected 2 fields (sample, class_id), found 3"),
    ]
    assert rows[0]["video_uri"].endswith("train/signer1_sample5_color.mp4")


def test_missing_tables_and_bad_class_list(staged):
    with pytest.raises(DataError, match="the test label table is missing"):
        read(staged, {"labels": {"train": "train_labels.csv", "test": "test_labels.csv"}})
    (staged / "bad.csv").write_text("ClassId,TR,EN\n0,abla,sister\n2,acele,hurry\n")
    with pytest.raises(DataError) as e:
        read(staged, {"class_list": "bad.csv", "labels": {"train": "train_labels.csv"}})
    assert e.value.line == 3 and "ClassId 2 out of order (expected 1)" in str(e.value)
    with pytest.raises(DataError, match="video_template or pose_template"):
        read(staged, {"video_template": None})
