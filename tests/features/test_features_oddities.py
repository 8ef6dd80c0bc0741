"""Video oddities real corpora contain (made by the tests with PyAV from a real clip; nothing downloaded or
committed): each gives a .pose of exactly the frames that decode, or one specific error record; a valid video
is never lost. Through the child-process decoder that extraction and serving share, and through `ray-slt
extract` on Ray Data (the same files through `POST /translate` are in tests/serve/test_serve_features.py)."""

from __future__ import annotations

import numpy as np
import pytest
from features_helpers import read_pose_file, video_row
from testlib import N_ODDITY_SRC, ODDITIES, make_oddities, shared

from ray_slt.data.manifest import write_manifest
from ray_slt.features import store
from ray_slt.features.extract import ExtractConfig, run_extract
from ray_slt.features.layouts import layout77
from ray_slt.features.sampling import SampleError, parse_sampling
from ray_slt.features.video import Decoder, video_request


@pytest.fixture(scope="module")
def oddities(tmp_path_factory):
    odd = make_oddities(tmp_path_factory.mktemp("odd") / "videos", shared(*N_ODDITY_SRC))
    assert tuple(odd) == ODDITIES
    return odd


@pytest.fixture(scope="module")
def decoder():
    with Decoder(timeout_s=120) as dec:
        yield dec


@pytest.mark.parametrize("name", ODDITIES)
def test_each_oddity_decodes_to_its_frames_or_gives_one_error(oddities, decoder, name):
    path, expected = oddities[name]
    req = video_request(str(path), {}, parse_sampling("all"), bbox_margin=0.1, max_side=1280, max_missing=0.05)
    if isinstance(expected, int):
        clip = decoder.decode(req)
        assert clip.frames.shape[0] == expected == clip.decodable_frames, name
        assert max(clip.frames.shape[1:3]) <= 1280
    else:
        with pytest.raises(SampleError) as e:
            decoder.decode(req)
        assert e.value.stage == "decode" and expected in e.value.reason, (name, e.value.reason)
        assert str(path.parent) not in e.value.reason  # no file names in reasons (a server's temp paths)
    # the same child goes on to decode the next file: one bad file costs one sample
    assert decoder.decode(video_request(str(oddities["plain"][0]), {}, parse_sampling("uniform:2"), bbox_margin=0.1,
                                        max_side=1280, max_missing=0.05)).frames.shape[0] == 2  # fmt: skip


def test_a_phone_video_is_turned_upright(oddities, decoder):
    """Frames stored sideways with a display rotation decode upright: the same pixels as the upright original."""
    req = lambda p: video_request(str(p), {}, parse_sampling("all"), bbox_margin=0.1, max_side=1280,  # noqa: E731
                                  max_missing=0.05)  # fmt: skip
    upright, phone = decoder.decode(req(oddities["plain"][0])), decoder.decode(req(oddities["phone_rotation"][0]))
    assert (phone.width, phone.height) == (upright.width, upright.height) == (320, 240)
    assert phone.frames.shape == upright.frames.shape
    assert np.abs(phone.frames.astype(int) - upright.frames.astype(int)).mean() < 4  # encoding noise only


def test_extraction_keeps_every_valid_oddity(ray_local, oddities, tmp_path):
    rows = [video_row(f"odd.{name}", path) for name, (path, _) in oddities.items()]
    manifest = tmp_path / "manifest.parquet"
    write_manifest(rows, str(manifest))
    cfg = ExtractConfig.model_validate({
        "kind": "extract", "manifest": str(manifest), "out": str(tmp_path / "features"), "progress": False,
        "frames": {"sampling": "all", "max_frames": 64}, "decode": {"timeout_s": 120},
    })  # fmt: skip
    summary = run_extract(cfg, echo=False)
    good = {f"odd.{n}": e for n, (_, e) in oddities.items() if isinstance(e, int)}
    bad = {f"odd.{n}": e for n, (_, e) in oddities.items() if not isinstance(e, int)}
    assert (summary["ok"], summary["errors"]) == (len(good), len(bad))
    assert set(store.read_index(cfg.out).column("sample_id").to_pylist()) == set(good)
    errors = store.read_errors(cfg.out).to_pylist()
    assert sorted(r["sample_id"] for r in errors) == sorted(bad)  # each once
    for r in errors:
        assert r["stage"] == "decode" and bad[r["sample_id"]] in r["reason"], r
    for sid, frames in good.items():
        pose = read_pose_file(store.pose_uri(cfg.out, sid))
        assert pose.body.data.shape[0] == frames, sid
    # the phone video's keypoints are the upright original's (MediaPipe on the turned frames)
    a = layout77(read_pose_file(store.pose_uri(cfg.out, "odd.plain")))
    b = layout77(read_pose_file(store.pose_uri(cfg.out, "odd.phone_rotation")))
    both = a.valid & b.valid
    assert both[:, :9].mean() > 0.8  # the body was found in both
    assert np.median(np.abs(a.coords - b.coords)[both]) < 0.05  # shoulder widths
