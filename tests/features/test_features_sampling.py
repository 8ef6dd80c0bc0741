"""Frame selection: Eq. 1 of the small-VLM paper, the 300-frame cap, and sample spans."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ray_slt.features.sampling import SampleError, Sampling, parse_sampling, resolve_span, uniform_indices


def test_eq1_matches_the_formula_elementwise():
    for t, t_max in [(65, 64), (100, 64), (300, 64), (1000, 128), (257, 256), (12345, 64)]:
        got = uniform_indices(t, t_max)
        want = [math.floor((i + 1) * t / t_max) - 1 for i in range(t_max)]
        assert got.tolist() == want
        assert len(set(got.tolist())) == t_max and got[-1] == t - 1 and got[0] >= 0


def test_eq1_keeps_every_frame_of_short_samples():
    assert uniform_indices(64, 64).tolist() == list(range(64))
    assert uniform_indices(10, 64).tolist() == list(range(10))
    assert uniform_indices(0, 64).tolist() == []


def test_all_is_capped_by_uniform_or_truncation():
    assert Sampling("all", max_frames=300).select(120).tolist() == list(range(120))
    capped = Sampling("all", max_frames=300).select(1000)
    assert capped.tolist() == uniform_indices(1000, 300).tolist() and capped[-1] == 999
    assert Sampling("all", max_frames=300, overflow="truncate").select(1000).tolist() == list(range(300))


def test_parse_sampling():
    assert parse_sampling("all").spec == "all:300"
    assert parse_sampling("uniform").t_max == 64
    s = parse_sampling("uniform:16")
    assert (s.mode, s.t_max, s.spec) == ("uniform", 16, "uniform:16")
    for bad in ["random", "uniform:0", "uniform:x", "all:3", ""]:
        with pytest.raises(ValueError):
            parse_sampling(bad)


def test_span_from_frames_times_and_clipping():
    assert resolve_span(100) == (0, 100)
    assert resolve_span(100, start_frame=10, end_frame=50) == (10, 50)
    # An end past what decodes is clipped (containers and tables over-report).
    assert resolve_span(71, start_frame=0, end_frame=72) == (0, 71)
    # Times at 25 fps: [1.0 s, 2.0 s) -> frames [25, 50).
    assert resolve_span(100, start_s=1.0, end_s=2.0, fps=25.0) == (25, 50)
    # Frames take precedence over times.
    assert resolve_span(100, start_frame=5, end_frame=9, start_s=1.0, end_s=2.0, fps=25.0) == (5, 9)


@pytest.mark.parametrize(
    ("kwargs", "stage", "words"),
    [
        ({"start_frame": 120}, "metadata", "beyond"),
        ({"start_frame": 50, "end_frame": 50}, "metadata", "empty span"),
        ({"start_s": 1.0}, "metadata", "fps"),
        ({"start_frame": -1}, "metadata", "negative"),
    ],
)
def test_invalid_spans_are_sample_errors(kwargs, stage, words):
    with pytest.raises(SampleError) as e:
        resolve_span(100, **kwargs)
    assert e.value.stage == stage and words in e.value.reason


def test_zero_frames_is_a_decode_error():
    with pytest.raises(SampleError) as e:
        resolve_span(0)
    assert e.value.stage == "decode"


def test_selection_is_deterministic_and_increasing():
    s = parse_sampling("uniform:64")
    a, b = s.select(777), s.select(777)
    assert np.array_equal(a, b) and np.all(np.diff(a) > 0)
