"""The feature service in-process (the class the Serve deployment wraps): container quirks of real uploads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_LIVE_WEBM = """
import sys, av
src, dst = sys.argv[1], sys.argv[2]
with av.open(src) as inp, av.open(dst, "w", format="webm", options={"live": "1"}) as out:
    stream = out.add_stream("libvpx", rate=30)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    for frame in inp.decode(video=0):
        for pkt in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
            out.mux(pkt)
    for pkt in stream.encode():
        out.mux(pkt)
"""


def _live_webm(src: Path, dst: Path) -> bytes:
    """The real clip as a browser's MediaRecorder writes WebM: a live stream, no duration, no index.

    Encoded in a fresh interpreter: once decord is loaded (any earlier test in the session may have loaded it),
    its bundled FFmpeg libraries break PyAV's libvpx encoder in that process."""
    subprocess.run([sys.executable, "-c", _LIVE_WEBM, str(src), str(dst)], check=True, capture_output=True)
    return dst.read_bytes()


def test_a_recorded_webm_without_duration_is_decoded(shared_data, tmp_path):
    data = _live_webm(shared_data / "slp_site" / "asl_different.mp4", tmp_path / "live.webm")
    import decord

    from ray_slt.serve.config import ServeConfig
    from ray_slt.serve.deployments import FeatureService, probe_video

    duration, codec, complete = probe_video(str(tmp_path / "live.webm"), max_s=10)
    assert not complete and codec == "vp8" and 2.0 < duration < 2.3  # from the packets: no duration stated
    with pytest.raises(decord.DECORDError, match="metadata"):  # the decoder alone refuses it: why we remux
        decord.VideoReader(str(tmp_path / "live.webm"))
    frames = {"sampling": "uniform:16"}  # 16 of the 64 frames: a quicker test
    cfg = ServeConfig.model_validate(
        {"models": {"translate": {"checkpoint": "unused"}}, "features": {"frames": frames}}
    )
    service = FeatureService(cfg)
    try:
        out = service.extract({"kind": "video", "data": data, "suffix": ".webm"})
    finally:
        service.close()
    assert out["ok"], out
    assert out["info"]["num_frames"] == 16 and out["info"]["pose_estimator"] == "mediapipe-holistic"


def test_an_upload_whose_tags_are_not_utf8_is_probed_remuxed_and_decoded(shared_data, tmp_path):
    """The serving path opens uploads with the same tolerant opener: a clip with latin-1 tags is a video."""
    from testlib import retag

    from ray_slt.serve.deployments import probe_video, remux

    dst = tmp_path / "tagged.mp4"
    retag(shared_data / "slp_site" / "asl_house.mp4", dst)
    duration, codec, complete = probe_video(str(dst), max_s=30)
    assert codec == "h264" and complete and duration == pytest.approx(73 / 25, abs=0.05)
    import av

    with av.open(remux(str(dst), str(tmp_path / "copy.mkv"))) as c:
        assert sum(1 for _ in c.decode(video=0)) == 73


def test_every_video_oddity_through_the_upload_path(tmp_path):
    """The oddities of tests/features/test_features_oddities.py uploaded to the feature service: each valid one
    gives exactly its frames (a phone video upright: the same keypoints as the upright original), each broken
    one a 422 with its reason and no server path."""
    import numpy as np
    from testlib import N_ODDITY_SRC, make_oddities, shared

    from ray_slt.serve.config import ServeConfig
    from ray_slt.serve.deployments import FeatureService

    odd = make_oddities(tmp_path / "odd", shared(*N_ODDITY_SRC))
    cfg = ServeConfig.model_validate(
        {"models": {"translate": {"checkpoint": "unused"}}, "features": {"frames": {"sampling": "all"}}}
    )
    service = FeatureService(cfg)
    outs = {}
    try:
        for name, (path, expected) in odd.items():
            if path.is_dir() or path.is_symlink():
                continue  # not something an upload can be
            out = service.extract({"kind": "video", "data": path.read_bytes(), "suffix": path.suffix})
            outs[name] = out
            if isinstance(expected, int):
                assert out["ok"] and out["info"]["num_frames"] == expected, (name, out)
            else:
                assert not out["ok"] and out["status"] == 422 and expected in out["reason"], (name, out)
                assert service.tmp not in out["reason"]
    finally:
        service.close()
    a, b = outs["plain"]["sample"], outs["phone_rotation"]["sample"]
    both = a["keypoints_valid"] & b["keypoints_valid"]
    assert both[:, :9].mean() > 0.8
    assert np.median(np.abs(a["keypoints"] - b["keypoints"])[both]) < 0.05
