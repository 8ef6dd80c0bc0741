"""DTW-MJE between pose sequences: the fast recursion against a slow enumeration of every warping path, zero for
a sequence against itself and against any time-stretching of it, the variant choices in the signature, and on
real ASL fingerspelling poses a letter is nearer a re-timed, jittered repeat of itself than the other letters."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ray_slt.errors import DataError
from ray_slt.eval.dtw import DTWSettings, corpus_dtw, dtw_mje, frame_costs, warp

RAW = DTWSettings(norm="none", trim=False)


def all_paths(n: int, m: int):
    """Every monotone path from (0, 0) to (n-1, m-1) with steps (1,0), (0,1), (1,1)."""

    def walk(i, j):
        if (i, j) == (n - 1, m - 1):
            yield [(i, j)]
            return
        for di, dj in ((1, 1), (1, 0), (0, 1)):
            if i + di < n and j + dj < m:
                for rest in walk(i + di, j + dj):
                    yield [(i, j), *rest]

    return list(walk(0, 0))


def slow_dtw_mje(a: np.ndarray, b: np.ndarray) -> float:
    """The definition, directly: over every warping path, the smallest total of per-frame costs (mean per-joint
    L2), ties to the shortest path; that total over the path's length."""
    cost = lambda i, j: float(np.mean([np.linalg.norm(a[i, k] - b[j, k]) for k in range(a.shape[1])]))  # noqa: E731
    best = min((sum(cost(i, j) for i, j in p), len(p)) for p in all_paths(len(a), len(b)))
    return best[0] / best[1]


@pytest.mark.parametrize("n,m,seed", [(1, 1, 0), (1, 4, 1), (4, 1, 2), (3, 5, 3), (5, 5, 4), (6, 4, 5)])
def test_the_recursion_equals_the_minimum_over_every_path(n, m, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, 3, 2)), rng.normal(size=(m, 3, 2))
    assert dtw_mje(a, b, RAW) == pytest.approx(slow_dtw_mje(a, b), rel=1e-12)


def test_zero_for_itself_and_for_any_time_stretching_and_symmetric():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(20, 5, 3)), axis=0)
    assert dtw_mje(x, x, RAW) == 0.0
    stretched = np.repeat(x, rng.integers(1, 4, size=len(x)), axis=0)  # each frame held 1-3 times
    assert len(stretched) > len(x) and dtw_mje(stretched, x, RAW) == 0.0 and dtw_mje(x, stretched, RAW) == 0.0
    y = x + rng.normal(scale=0.5, size=x.shape)
    assert dtw_mje(x, y, RAW) > 0 and dtw_mje(x, y, RAW) == pytest.approx(dtw_mje(y, x, RAW), rel=1e-12)
    # dropping frames costs something, and less than a different sequence
    assert 0 < dtw_mje(x[::3], x, RAW) < dtw_mje(np.cumsum(rng.normal(size=(20, 5, 3)), axis=0), x, RAW)


def test_missing_points_fill_trim_normalise_and_the_signature():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 4, 2))
    valid = np.ones((8, 4), bool)
    valid[2, 1] = False
    y = x.copy()
    y[2, 1] = [50.0, 50.0]  # garbage where the point is missing
    skip = DTWSettings(norm="none", trim=False, fill="skip")
    zero = DTWSettings(norm="none", trim=False, fill="zero")
    assert dtw_mje(y, x, skip, produced_valid=valid) == 0.0  # a missing point is left out
    assert dtw_mje(y, x, zero, produced_valid=valid) > 0  # or counted at the origin
    # skip: the cost of a frame pair is the mean over the joints both observe (checked by hand on one pair)
    c = frame_costs(y, valid, x, np.ones((8, 4), bool), "skip")
    assert c[2, 3] == pytest.approx(np.mean([np.linalg.norm(x[2, k] - x[3, k]) for k in (0, 2, 3)]))
    # trim: frames with nothing observed at either end are dropped
    padded = np.concatenate([np.zeros((3, 4, 2)), x])
    pvalid = np.concatenate([np.zeros((3, 4), bool), np.ones((8, 4), bool)])
    assert dtw_mje(padded, x, DTWSettings(norm="none", trim=True), produced_valid=pvalid) == 0.0
    # shoulder normalisation: a moved and scaled copy is the same pose
    norm = DTWSettings(norm="shoulder", shoulders=(0, 1))
    assert dtw_mje(3.0 * x + 7.0, x, norm) == pytest.approx(0.0, abs=1e-12)
    assert norm.signature() == "dtw-mje|dist:l2|joints:all|fill:skip|trim:yes|norm:shoulder|impl:ray_slt"
    hands = DTWSettings(norm="none", joints=(2, 3), label="hands")
    assert "|joints:hands|" in hands.signature()
    assert dtw_mje(y, x, hands) == 0.0  # the subset leaves out the changed joint 1
    with pytest.raises(ValueError, match="shoulders"):
        DTWSettings(norm="shoulder")
    only = lambda k: np.arange(4)[None].repeat(8, 0) == k  # noqa: E731 - joint k observed, the rest missing
    with pytest.raises(DataError, match="never observe"):
        dtw_mje(x, x, skip, produced_valid=only(0), reference_valid=only(1))
    assert warp(np.zeros((2, 3))) == (0.0, 3)


def retime(x: np.ndarray, rate: float) -> np.ndarray:
    """x played at ``rate`` (linear interpolation between frames)."""
    t = np.linspace(0, len(x) - 1, max(2, round(len(x) / rate)))
    i = np.floor(t).astype(int)
    j = np.minimum(i + 1, len(x) - 1)
    w = (t - i)[:, None, None]
    return (1 - w) * x[i] + w * x[j]


def test_real_fingerspelling_a_letter_is_nearest_its_own_repeat(shared_data):
    from pose_format import Pose

    from ray_slt.features.layouts import LEFT_SHOULDER, RIGHT_SHOULDER, layout77_pixels

    paths = sorted((shared_data / "fingerspelling_ase" / "ase").glob("*.pose"))
    if len(paths) < 10:
        pytest.skip("the ASL fingerspelling poses are not under ../shared/data")
    letters = []
    for path in paths:
        xy, valid, _ = layout77_pixels(Pose.read(path.read_bytes()))
        xy = np.where(valid[..., None], xy, np.nan)[::2]  # every other frame: a faster test, the same motions
        letters.append(xy)
    settings = DTWSettings(shoulders=(LEFT_SHOULDER, RIGHT_SHOULDER), label="layout77")
    rng = np.random.default_rng(0)
    wins = 0
    for k, x in enumerate(letters):
        repeat = retime(x, rate=0.8) + rng.normal(scale=2.0, size=retime(x, 0.8).shape)  # slower, jittered (px)
        own = dtw_mje(repeat, x, settings)
        others = [dtw_mje(repeat, y, settings) for i, y in enumerate(letters) if i != k]
        wins += own < min(others)
    # measured: 26 of 26; the same clip re-timed and jittered is nearer than any other letter
    assert wins >= 0.9 * len(letters), wins
    report = corpus_dtw(letters[:3], letters[:3], settings)
    assert report["dtw"] == 0.0 and report["n"] == 3 and report["dtw_signature"].startswith("dtw-mje|")


def test_itertools_paths_helper_counts_delannoy_numbers():
    # the slow reference enumerates every path: their number is the Delannoy number D(n-1, m-1)
    assert [len(all_paths(n, n)) for n in (1, 2, 3, 4)] == [1, 3, 13, 63]
    assert len(list(itertools.islice(all_paths(3, 4), 100))) == 25
