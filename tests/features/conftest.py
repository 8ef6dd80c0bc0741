"""Fixtures of the features tests: manifests built from the real clips in ../shared/data, corrupt copies of
them made here, PHOENIX-style frame folders, and a tiny randomly initialised DINOv2 saved as safetensors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from features_helpers import holistic_pose


@pytest.fixture(scope="session")
def corrupt_videos(tmp_path_factory, shared_data) -> dict[str, Path]:
    """Broken inputs made from real clips: a truncated download, a truncated fast-start file (its header
    claims 86 frames), an empty file, and a text file with a video extension."""
    import av

    d = tmp_path_factory.mktemp("corrupt")
    src = shared_data / "wlasl" / "videos" / "05732.mp4"
    data = src.read_bytes()
    out = {}
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) * 6 // 10])
    out["zero"] = d / "zero.mp4"
    out["zero"].write_bytes(b"")
    out["wrong_extension"] = d / "clips.mp4"
    shutil.copy(shared_data / "wlasl" / "clips.csv", out["wrong_extension"])
    # Re-encode the same real clip with its index up front ("faststart"), then cut it: the container still
    # claims every frame, but only the first part decodes.
    fast = d / "faststart.mp4"
    with av.open(str(src)) as inp, av.open(str(fast), "w", options={"movflags": "faststart"}) as outp:
        stream = outp.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for frame in inp.decode(video=0):
            for pkt in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
                outp.mux(pkt)
        for pkt in stream.encode():
            outp.mux(pkt)
    blob = fast.read_bytes()
    out["truncated_faststart"] = d / "truncated_faststart.mp4"
    out["truncated_faststart"].write_bytes(blob[: len(blob) * 6 // 10])
    return out


@pytest.fixture(scope="session")
def phoenix_frames(tmp_path_factory, shared_data) -> Path:
    """A PHOENIX-2014T-style sample folder ``{name}/1/images0001.png ...`` with the frames of a real PHOENIX
    clip excerpt (the corpus ships PNG frames, the shared data only the excerpt video)."""
    import decord
    from PIL import Image

    vr = decord.VideoReader(str(shared_data / "phoenix14t" / "video_excerpts" / "excerpt_a.mp4"))
    frames = vr.get_batch(list(range(len(vr)))).asnumpy()
    root = tmp_path_factory.mktemp("phoenix") / "excerpt_a"
    (root / "1").mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(root / "1" / f"images{i + 1:04d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory) -> str:
    """A tiny randomly initialised ``Dinov2Model`` (the real architecture class) saved with safetensors."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=224, patch_size=14
    )
    path = tmp_path_factory.mktemp("dinov2") / "tiny-dinov2"
    Dinov2Model(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def soup_holistic(shared_data):
    """Our MediaPipe Holistic pose of slp_pose/SOUP.mp4 (all 41 frames)."""
    return holistic_pose(shared_data / "slp_pose" / "SOUP.mp4")


@pytest.fixture(scope="session")
def autsl_holistic(shared_data):
    """Our MediaPipe Holistic pose of the AUTSL sample video (all 43 frames)."""
    return holistic_pose(shared_data / "autsl" / "signer0_sample1000_color.mp4")
