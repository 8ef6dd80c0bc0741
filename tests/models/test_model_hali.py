"""HALI's losses against slow, direct computations of the equations (loops over pairs, snippets and fragments)."""

from __future__ import annotations

import math

import pytest
import torch

from ray_slt.models.hali import (
    fine_grained_loss,
    fine_grained_similarities,
    global_loss,
    hali_loss,
    hierarchical_consistency,
)

B, TS, M, LF, D, TAU = 5, 6, 3, 4, 8, 0.07


def rho(a, b) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def eq2(s_v2d, s_d2v, tau, skip=lambda i, j: False) -> float:
    """Eq. 2 written out: s_v2d(i, j) = s_v2d(V_i, S_j), s_d2v(i, j) = s_d2v(S_i, V_j)."""
    total = 0.0
    for i in range(B):
        num_v, den_v = math.exp(s_v2d(i, i) / tau), 0.0
        num_d, den_d = math.exp(s_d2v(i, i) / tau), 0.0
        for j in range(B):
            if j != i and skip(i, j):
                continue
            den_v += math.exp(s_v2d(i, j) / tau)
            den_d += math.exp(s_d2v(i, j) / tau)
        total += math.log(num_v / den_v) + math.log(num_d / den_d)
    return -total / (2 * B)


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    xv, yd = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    xs, xu = torch.randn(B, TS, D, generator=g), torch.randn(B, TS * M, D, generator=g)
    yf = torch.randn(B, LF, D, generator=g)
    lengths = [4, 2, 3, 1, 4]  # padded fragments
    fmask = torch.tensor([[k < n for k in range(LF)] for n in lengths])
    return xv, xs, xu, yd, yf.double(), fmask


def test_global_loss_is_eq2_with_cosine_and_symmetric(tensors):
    xv, _, _, yd, _, _ = tensors
    got = float(global_loss(xv, yd, TAU))
    want = eq2(lambda i, j: rho(xv[i], yd[j]), lambda i, j: rho(yd[i], xv[j]), TAU)
    assert got == pytest.approx(want, rel=1e-5)
    # symmetric InfoNCE: swapping the roles of videos and descriptions gives the same loss
    assert float(global_loss(yd, xv, TAU)) == pytest.approx(got, rel=1e-6)


def test_two_videos_of_one_gloss_are_not_each_others_negatives(tensors):
    xv, _, _, yd, _, _ = tensors
    glosses = ["a", "b", "a", "c", "b"]
    same = torch.tensor([[gi == gj for gj in glosses] for gi in glosses])
    got = float(global_loss(xv, yd, TAU, same))
    want = eq2(lambda i, j: rho(xv[i], yd[j]), lambda i, j: rho(yd[i], xv[j]), TAU,
               skip=lambda i, j: glosses[i] == glosses[j])  # fmt: skip
    assert got == pytest.approx(want, rel=1e-5) and got != pytest.approx(float(global_loss(xv, yd, TAU)))


def _fg_direct(x, y, fmask):
    def v2d(i, j):  # (1/T) sum_t max_l A
        rows = []
        for t in range(x.shape[1]):
            rows.append(max(rho(x[i, t], y[j, f]) for f in range(LF) if fmask[j, f]))
        return sum(rows) / len(rows)

    def d2v(i, j):  # description i, video j: (1/L_f) sum_l max_t A, valid l only
        cols = [max(rho(x[j, t], y[i, f]) for t in range(x.shape[1])) for f in range(LF) if fmask[i, f]]
        return sum(cols) / len(cols)

    return v2d, d2v


@pytest.mark.parametrize("level", ["snippet", "subunit"])
def test_fine_grained_similarities_and_loss_follow_eq4_with_fragment_masks(tensors, level):
    _, xs, xu, _, yf, fmask = tensors
    x = (xs if level == "snippet" else xu).double()
    v2d, d2v = _fg_direct(x, yf, fmask)
    got_v, got_d = fine_grained_similarities(x, yf, fmask)
    for i in range(B):
        for j in range(B):
            assert float(got_v[i, j]) == pytest.approx(v2d(i, j), abs=1e-9)
            assert float(got_d[i, j]) == pytest.approx(d2v(i, j), abs=1e-9)
    assert float(fine_grained_loss(x, yf, fmask, TAU)) == pytest.approx(eq2(v2d, d2v, TAU), rel=1e-7)
    # padded fragments are never read: changing them changes nothing
    noisy = yf.clone()
    noisy[~fmask] = 100.0 * torch.randn(int((~fmask).sum()), D, dtype=yf.dtype)
    assert torch.equal(fine_grained_loss(x, noisy, fmask, TAU), fine_grained_loss(x, yf, fmask, TAU))


def test_hierarchical_consistency_is_symmetric_kl_of_the_two_alignments(tensors):
    _, xs, xu, _, yf, fmask = tensors
    xs, xu = xs.double(), xu.double()
    total = 0.0
    for i in range(B):
        valid = [f for f in range(LF) if fmask[i, f]]
        for t in range(TS):
            s = [rho(xs[i, t], yf[i, f]) / TAU for f in valid]
            u = [sum(rho(xu[i, t * M + m], yf[i, f]) for m in range(M)) / M / TAU for f in valid]  # Eq. 8
            ps = [math.exp(v) / sum(math.exp(w) for w in s) for v in s]
            pu = [math.exp(v) / sum(math.exp(w) for w in u) for v in u]
            total += sum(a * math.log(a / b) for a, b in zip(ps, pu)) + sum(b * math.log(b / a) for a, b in zip(ps, pu))
    want = total / (B * TS)
    assert float(hierarchical_consistency(xs, xu, yf, fmask, TAU)) == pytest.approx(want, rel=1e-7)


def test_hierarchical_consistency_is_zero_when_the_alignments_agree(tensors):
    _, xs, _, _, yf, fmask = tensors
    agreeing = xs.repeat_interleave(M, dim=1)  # every part of a snippet equals the snippet: A_u pooled = A_s
    assert float(hierarchical_consistency(xs, agreeing, yf.float(), fmask, TAU)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="not a multiple"):
        hierarchical_consistency(xs, agreeing[:, :-1], yf.float(), fmask, TAU)


def test_hali_is_the_weighted_sum_and_zero_weights_drop_terms(tensors):
    xv, xs, xu, yd, yf, fmask = tensors
    yf = yf.float()
    parts = hali_loss(xv, xs, xu, yd, yf, fmask, tau=TAU, w_snippet=0.5, w_subunit=2.0, w_hc=1.5)
    assert float(parts.loss) == pytest.approx(
        float(parts.global_ + 0.5 * parts.fg_snippet + 2.0 * parts.fg_subunit + 1.5 * parts.hc), rel=1e-6
    )
    only_global = hali_loss(xv, xs, xu, yd, yf, fmask, tau=TAU, w_snippet=0, w_subunit=0, w_hc=0)
    assert float(only_global.loss) == pytest.approx(float(global_loss(xv, yd, TAU)), rel=1e-6)
    assert set(parts.logs()) == {"loss_global", "loss_fg_s", "loss_fg_u", "loss_hc"}
