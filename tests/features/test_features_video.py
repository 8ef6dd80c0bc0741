"""Decoding real clips (spans, bbox, sampling, frame folders) and turning broken files into sample errors."""

from __future__ import annotations

import numpy as np
import pytest
from testlib import retag

from ray_slt.features.sampling import SampleError, parse_sampling
from ray_slt.features.video import (
    Decoder,
    count_decodable,
    decode_video,
    image_request,
    list_frame_images,
    video_request,
)

ALL = parse_sampling("all")


def _request(path, sampling=ALL, row=None, **kw):
    args = {"bbox_margin": 0.1, "max_side": 1280, "max_missing": 0.05} | kw
    return video_request(str(path), row or {}, sampling, **args)


def test_over_reported_frames_are_not_decoded(shared_data):
    # The container of WLASL 00338 claims 72 frames; 71 decode (the shared data's README says so too).
    probe = count_decodable(str(shared_data / "wlasl/videos/00338.mp4"))
    assert (probe.claimed, probe.decodable, probe.complete, probe.width, probe.height) == (72, 71, True, 288, 192)
    clip = decode_video(str(shared_data / "wlasl/videos/00338.mp4"), ALL)
    assert clip.frames.shape == (71, 192, 288, 3)
    assert clip.span == (0, 71) and clip.reported_frames == 72 and clip.decodable_frames == 71
    # An end frame from a table that over-reports is clipped to what decodes.
    clip = decode_video(str(shared_data / "wlasl/videos/00338.mp4"), ALL, start_frame=10, end_frame=72)
    assert clip.span == (10, 71) and clip.frame_indices.tolist() == list(range(61))


def test_a_sample_that_ends_early_needs_only_its_frames(shared_data, corrupt_videos):
    probe = count_decodable(str(shared_data / "wlasl/videos/00338.mp4"), stop_after=30)
    assert (probe.decodable, probe.complete) == (30, False)
    # The cut-off file still holds intact frames for a sample that ends before the cut.
    clip = decode_video(str(corrupt_videos["truncated_faststart"]), ALL, start_frame=5, end_frame=25)
    assert clip.span == (5, 25) and clip.frames.shape[0] == 20
    with pytest.raises(SampleError, match="truncated"):
        decode_video(str(corrupt_videos["truncated_faststart"]), ALL, start_frame=5, end_frame=80)


def test_uniform_sampling_decodes_only_the_sampled_frames(shared_data):
    path = str(shared_data / "wlasl/videos/05732.mp4")
    full = decode_video(path, ALL)
    clip = decode_video(path, parse_sampling("uniform:8"), start_frame=10, end_frame=74)
    want = [(i + 1) * 64 // 8 - 1 for i in range(8)]
    assert clip.frame_indices.tolist() == want
    assert clip.frames.shape[0] == 8
    for k, i in enumerate(want):  # the very frames of the span, nothing else
        assert np.array_equal(clip.frames[k], full.frames[10 + i])


def test_bbox_crop_and_scaling_map_back_to_source_pixels(shared_data):
    path = str(shared_data / "wlasl/videos/56557.mp4")  # 1920x1080
    clip = decode_video(path, parse_sampling("uniform:4"), bbox=[400, 50, 1500, 1080], max_side=640)
    h, w = clip.frames.shape[1:3]
    assert max(h, w) <= 641 and clip.width == 1920 and clip.height == 1080
    pts = np.array([[300.0, 60.0], [1500.0, 1000.0]], dtype=np.float32)
    back = clip.to_source(clip.to_frames(pts))
    assert np.allclose(back, pts, atol=1e-3)
    # The crop's top-left is the bbox grown by 10% (clamped to the frame), in source pixels.
    assert abs(clip.offset[0] - 290) <= 3 and clip.offset[1] == 0


def test_bbox_outside_the_frame_is_a_metadata_error(shared_data):
    with pytest.raises(SampleError) as e:
        decode_video(str(shared_data / "wlasl/videos/00338.mp4"), ALL, bbox=[2000, 2000, 2100, 2100])
    assert e.value.stage == "metadata"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("truncated", "unreadable"),
        ("truncated_faststart", "truncated: 44 of 86"),
        ("zero", "unreadable"),
        ("wrong_extension", "unreadable"),
    ],
)
def test_broken_videos_are_decode_errors_in_the_child(corrupt_videos, name, words):
    with Decoder(timeout_s=60) as dec:
        with pytest.raises(SampleError) as e:
            dec.decode(_request(corrupt_videos[name]))
        assert e.value.stage == "decode" and words in e.value.reason
        # The same child decodes the next (good) request: one bad file costs one sample.
        clip = dec.decode(_request(corrupt_videos["zero"].parent / "faststart.mp4", parse_sampling("uniform:4")))
        assert clip.frames.shape[0] == 4


def test_isolated_decoder_returns_the_same_frames_as_in_process(shared_data):
    path = shared_data / "how2sign/videos/-g0iPSnQt6w_3-1-rgb_front.mp4"
    req = _request(path, parse_sampling("uniform:6"), max_side=640)
    with Decoder(isolated=True) as iso:
        a = iso.decode(req)
    b = Decoder(isolated=False).decode(req)
    assert np.array_equal(a.frames, b.frames) and a.frame_indices.tolist() == b.frame_indices.tolist()
    assert a.scale == b.scale and a.fps == pytest.approx(50.0)


def test_decoding_past_its_deadline_kills_the_child(shared_data):
    dec = Decoder(timeout_s=0.01)
    with pytest.raises(SampleError) as e:
        dec.decode(_request(shared_data / "wlasl/videos/56557.mp4"))
    assert e.value.stage == "decode" and "timed out" in e.value.reason
    assert dec._proc is None  # killed; a fresh child serves the next request
    dec.timeout_s = 60
    assert (
        dec.decode(_request(shared_data / "wlasl/videos/00338.mp4", parse_sampling("uniform:2"))).frames.shape[0] == 2
    )
    dec.close()


def test_phoenix_frame_folder(phoenix_frames):
    images = list_frame_images(str(phoenix_frames))  # descends into {name}/1/
    assert len(images) == 36 and images[0].endswith("images0001.png") and images[-1].endswith("images0036.png")
    row = {"fps": 25.0, "start_frame": 4}
    with image_request(images, row, parse_sampling("uniform:8"), bbox_margin=0.1, max_side=None) as req:
        clip = Decoder(isolated=False).decode(req)
    assert clip.frames.shape == (8, 260, 210, 3) and clip.span == (4, 36)
    assert clip.frame_indices.tolist() == [(i + 1) * 32 // 8 - 1 for i in range(8)]


def test_unreadable_frame_image_is_a_decode_error(tmp_path, phoenix_frames):
    images = list_frame_images(str(phoenix_frames))
    bad = tmp_path / "images0002.png"
    bad.write_bytes(b"not a png")
    with (
        image_request([images[0], str(bad)], {}, ALL, bbox_margin=0.1, max_side=None) as req,
        pytest.raises(SampleError) as e,
    ):
        Decoder(isolated=False).decode(req)
    assert e.value.stage == "decode" and "images0002.png" in e.value.reason


def test_a_clip_whose_tags_are_not_utf8_decodes_like_the_original(shared_data, tmp_path):
    """A valid clip with non-UTF-8 container tags was recorded as 'unreadable video' (PyAV decodes tags as
    UTF-8); every frame decodes, so it must give exactly the original's frames."""
    import av

    src, dst = shared_data / "slp_site" / "asl_house.mp4", tmp_path / "tagged.mp4"
    retag(src, dst)
    with pytest.raises(UnicodeDecodeError):
        av.open(str(dst))  # the oddity is real: PyAV's default open refuses the file
    probe, orig = count_decodable(str(dst)), count_decodable(str(src))
    assert (probe.decodable, probe.complete) == (orig.decodable, True) and probe.decodable == 73
    clip, ref = decode_video(str(dst), ALL), decode_video(str(src), ALL)
    assert np.array_equal(clip.frames, ref.frames) and clip.span == ref.span == (0, 73)
    with Decoder(timeout_s=60) as dec:  # the child-process decoder that extraction and serving use
        assert np.array_equal(dec.decode(_request(dst)).frames, ref.frames)
