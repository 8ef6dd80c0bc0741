"""ray_slt.storage on the local filesystem and against a real S3-compatible server on loopback."""

from __future__ import annotations

import os

import pytest

from ray_slt import storage
from ray_slt.errors import DataError, StorageError


def test_local_roundtrip_and_listing(tmp_path):
    base = str(tmp_path / "a")
    storage.write_text(storage.join(base, "x.txt"), "héllo\n")
    storage.write_bytes(storage.join(base, "sub", "y.bin"), b"\x00\x01")
    assert storage.read_text(storage.join(base, "x.txt")) == "héllo\n"
    assert storage.read_bytes(storage.join(base, "sub", "y.bin")) == b"\x00\x01"
    assert storage.exists(storage.join(base, "x.txt")) and not storage.exists(storage.join(base, "nope"))
    assert [storage.basename(p) for p in storage.listdir(base)] == ["sub", "x.txt"]
    assert [storage.basename(p) for p in storage.glob(storage.join(base, "**", "*.bin"))] == ["y.bin"]
    assert storage.size(storage.join(base, "sub", "y.bin")) == 2


def test_atomic_write_keeps_previous_file_when_the_writer_fails(tmp_path):
    target = str(tmp_path / "out.txt")
    storage.write_text(target, "old")
    with pytest.raises(RuntimeError), storage.atomic_write(target) as f:
        f.write(b"partial new content")
        raise RuntimeError("killed mid-write")
    assert storage.read_text(target) == "old"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temp file left behind


def test_missing_and_undecodable_files_name_the_file_and_line(tmp_path):
    with pytest.raises(StorageError, match="no such file"):
        storage.read_bytes(str(tmp_path / "missing.csv"))
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"name|text\nok|fine\nbad|caf\xe9\n")
    with pytest.raises(DataError) as err:
        storage.read_text(str(bad))
    assert err.value.line == 3 and "0xe9" in str(err.value) and "latin1.csv" in str(err.value)


def test_ensure_within_rejects_escapes(tmp_path):
    root = str(tmp_path / "allowed")
    os.makedirs(root)
    assert storage.ensure_within(os.path.join(root, "a", "b.mp4"), root).endswith("b.mp4")
    for bad in (os.path.join(root, "..", "secret"), str(tmp_path / "allowed2" / "x"), "/etc/passwd"):
        with pytest.raises(StorageError):
            storage.ensure_within(bad, root)
    assert storage.ensure_within("s3://bkt/prefix/a.mp4", "s3://bkt/prefix") == "s3://bkt/prefix/a.mp4"
    for bad in ("s3://bkt/prefix/../other/a.mp4", "s3://bkt/prefixed/a", "s3://other/prefix/a", "/local/a"):
        with pytest.raises(StorageError):
            storage.ensure_within(bad, "s3://bkt/prefix")


def test_safe_name_is_injective_and_filesystem_safe():
    names = ["phoenix14t.a-1", "how2sign.-fZc293MpJk_0-1-rgb_front", "x/y", "x_y", "x:y", "..", ".hidden"]
    safe = [storage.safe_name(n) for n in names]
    assert len(set(safe)) == len(names)
    assert safe[0] == "phoenix14t.a-1"  # already safe names are unchanged
    assert all("/" not in s and ":" not in s and not s.startswith(".") for s in safe)


def test_s3_roundtrip_listing_and_local_copy(s3_bucket, tmp_path):
    uri = f"{s3_bucket}/dir/file.txt"
    storage.write_text(uri, "über")
    storage.write_bytes(f"{s3_bucket}/dir/sub/b.bin", b"123")
    assert storage.exists(uri) and storage.read_text(uri) == "über"
    assert storage.listdir(f"{s3_bucket}/dir") == [f"{s3_bucket}/dir/file.txt", f"{s3_bucket}/dir/sub"]
    assert storage.glob(f"{s3_bucket}/dir/**/*.bin") == [f"{s3_bucket}/dir/sub/b.bin"]
    with storage.local_file(uri) as path, open(path, encoding="utf-8") as f:
        assert f.read() == "über"
    storage.copy(uri, str(tmp_path / "copy.txt"))
    assert (tmp_path / "copy.txt").read_text(encoding="utf-8") == "über"
    with pytest.raises(StorageError, match="no such file"):
        storage.read_bytes(f"{s3_bucket}/dir/missing")


def test_s3_failed_write_creates_no_object_and_keeps_the_old_one(s3_bucket):
    uri = f"{s3_bucket}/result.json"
    with pytest.raises(RuntimeError), storage.atomic_write(uri) as f:
        f.write(b"{half")
        raise RuntimeError("killed")
    assert not storage.exists(uri)
    storage.write_text(uri, "v1")
    with pytest.raises(RuntimeError), storage.atomic_write(uri) as f:
        f.write(b"v2 partial")
        raise RuntimeError("killed")
    assert storage.read_text(uri) == "v1"
