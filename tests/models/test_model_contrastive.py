"""The token-level contrastive loss (RVLF Eqs. 3-9) against a direct, slow computation on random tensors."""

from __future__ import annotations

import math

import pytest
import torch

from ray_slt.models.config import ContrastiveConfig
from ray_slt.models.pretrain import ContrastiveHead, token_contrastive_loss


def slow_reference(f_s, s_len, f_t, t_len, tau, tau_prime, beta):
    """Eqs. 3-9 written out with Python loops over pairs, frames and tokens (padding cut off by length)."""
    b_size = f_s.shape[0]

    def norm(v):
        return v / math.sqrt(sum(float(x) ** 2 for x in v))

    def global_sim(a, b):
        # rows of a attend over rows of b: Eqs. 4-6
        e = [[float(torch.dot(norm(ai), norm(bj))) for bj in b] for ai in a]
        total = 0.0
        for row in e:
            w = [math.exp(x / tau) for x in row]
            z = sum(w)
            total += sum(wi / z * x for wi, x in zip(w, row))
        return total / len(a)

    s2t = [[global_sim(f_s[i, : s_len[i]], f_t[j, : t_len[j]]) for j in range(b_size)] for i in range(b_size)]
    t2s = [[global_sim(f_t[i, : t_len[i]], f_s[j, : s_len[j]]) for j in range(b_size)] for i in range(b_size)]

    def info_nce(z):
        loss = 0.0
        for i in range(b_size):
            logits = [x / tau_prime for x in z[i]]
            loss -= logits[i] - math.log(sum(math.exp(x) for x in logits))
        return loss / b_size

    l_s2t, l_t2s = info_nce(s2t), info_nce(t2s)
    return beta * l_s2t + (1 - beta) * l_t2s, l_s2t, l_t2s, s2t, t2s


def _inputs(seed=0, b=4, m=7, l_max=5, d=6):
    g = torch.Generator().manual_seed(seed)
    f_s, f_t = torch.randn(b, m, d, generator=g), torch.randn(b, l_max, d, generator=g)
    s_len, t_len = [7, 3, 5, 1][:b], [2, 5, 4, 3][:b]
    s_mask = torch.arange(m)[None] < torch.tensor(s_len)[:, None]
    t_mask = torch.arange(l_max)[None] < torch.tensor(t_len)[:, None]
    return f_s, s_mask, s_len, f_t, t_mask, t_len


@pytest.mark.parametrize(("tau", "tau_prime", "beta"), [(0.07, 0.07, 0.5), (0.5, 0.2, 0.8), (1.0, 1.0, 0.0)])
def test_loss_matches_slow_reference(tau, tau_prime, beta):
    f_s, s_mask, s_len, f_t, t_mask, t_len = _inputs()
    out = token_contrastive_loss(f_s, s_mask, f_t, t_mask, tau, tau_prime, beta)
    loss, l_s2t, l_t2s, s2t, t2s = slow_reference(f_s, s_len, f_t, t_len, tau, tau_prime, beta)
    assert torch.allclose(out.z_s2t, torch.tensor(s2t), atol=1e-5)
    assert torch.allclose(out.z_t2s, torch.tensor(t2s), atol=1e-5)
    assert out.loss_s2t.item() == pytest.approx(l_s2t, rel=1e-5)
    assert out.loss_t2s.item() == pytest.approx(l_t2s, rel=1e-5)
    assert out.loss.item() == pytest.approx(loss, rel=1e-5)


def test_padding_content_is_ignored():
    f_s, s_mask, _, f_t, t_mask, _ = _inputs(seed=1)
    ref = token_contrastive_loss(f_s, s_mask, f_t, t_mask, 0.1, 0.07, 0.5).loss
    f_s2, f_t2 = f_s.clone(), f_t.clone()
    f_s2[~s_mask] = 1e3 * torch.randn(int((~s_mask).sum()), f_s.shape[-1])
    f_t2[~t_mask] = -7.0
    again = token_contrastive_loss(f_s2, s_mask, f_t2, t_mask, 0.1, 0.07, 0.5).loss
    assert again.item() == pytest.approx(ref.item(), rel=1e-6)


def test_matched_pairs_score_lower_than_mismatched():
    """Sanity: texts that are noisy copies of their skeletons give a much lower loss than shuffled ones."""
    g = torch.Generator().manual_seed(2)
    f_s = torch.randn(6, 8, 16, generator=g)
    mask_s, mask_t = torch.ones(6, 8, dtype=torch.bool), torch.ones(6, 8, dtype=torch.bool)
    f_t = f_s + 0.1 * torch.randn(6, 8, 16, generator=g)
    matched = token_contrastive_loss(f_s, mask_s, f_t, mask_t, 0.1, 0.07, 0.5).loss
    shuffled = token_contrastive_loss(f_s, mask_s, f_t[torch.tensor([1, 2, 3, 4, 5, 0])], mask_t, 0.1, 0.07, 0.5).loss
    assert matched.item() < 0.1 < 3 < shuffled.item()


def test_head_gradients_reach_projections_and_tau():
    head = ContrastiveHead(12, ContrastiveConfig(dim=10, tau=0.2))
    f_s, s_mask, _, f_t, t_mask, _ = _inputs(d=12)
    out = head(f_s.requires_grad_(), s_mask, f_t, t_mask)
    out.loss.backward()
    assert head.log_tau.grad is not None and head.log_tau.grad.abs() > 0
    assert head.skeleton_proj[0].weight.grad.abs().sum() > 0 and head.text_proj[2].weight.grad.abs().sum() > 0
    assert f_s.grad[~s_mask].abs().sum() == 0  # no gradient flows into padding
    assert head.tau.item() == pytest.approx(0.2)
    fixed = ContrastiveHead(12, ContrastiveConfig(dim=10, learn_tau=False))
    assert "log_tau" not in dict(fixed.named_parameters())
