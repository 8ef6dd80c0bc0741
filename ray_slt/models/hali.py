"""HALI's losses (LexSign, ``research/003``; the equations as ``research/SPEC_papers_3_5.md`` Paper B sets them out).

Notation, per batch of B (video, description) pairs: video-level ``xv [B, D]``, snippet-level ``xs [B, T_s, D]``,
subunit-level ``xu [B, T_u, D]`` with ``T_u = M * T_s`` laid out snippet-major (row ``t * M + m`` is part ``m``
of snippet ``t``); description-level ``yd [B, D]`` and fragment-level ``yf [B, L_f, D]`` with a fragment mask
``fmask [B, L_f]`` (False = padding). ``rho`` is cosine similarity. ``same [B, B]`` marks pairs whose videos show
the same gloss: in a batch with two videos of one gloss, the other video's description is no negative (the
paper is silent; masking such pairs out of the denominators is the reading chosen here, as the spec advises).

* Eq. 2-3, :func:`global_loss`: symmetric InfoNCE on ``rho(xv_i, yd_j)`` with temperature ``tau`` (0.03).
* Eq. 4, :func:`fine_grained_similarities` and :func:`fine_grained_loss`: FILIP-style similarities of all B x B
  pairs from the affinities ``A = rho(x_t, y_l)``: video->description ``mean_t max_l A`` and description->video
  ``mean_l max_t A``, padded fragments excluded from both the max and the mean; then Eq. 2 on them. Used for
  (snippet, fragment) and for (subunit, fragment).
* Eq. 6-8, :func:`hierarchical_consistency`: on each matched pair, the subunit-fragment affinities are brought to
  snippet resolution by averaging the M part rows of each snippet (Eq. 8's hierarchy assumption; the spec's
  sensible reading of "interpolate"), each row of both affinity maps becomes a distribution over the valid
  fragments (``softmax(A / tau_p)``, ``tau_p = tau``: unspecified in the paper), and the loss is the symmetric KL
  averaged over snippets and over the batch. It is 0 exactly when the two alignments agree.
* Eq. 5 and 7: ``L_HALI = L_Global + w_s L_FG^(s,f) + w_u L_FG^(u,f) + w_hc L_HC`` (:func:`hali_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

NEG = -1e4  # stands for -inf in masked maxima/softmaxes (finite: no NaN from inf - inf)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``rho`` of every row of ``a [..., N, D]`` with every row of ``b [..., M, D]``: ``[..., N, M]``."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)


def infonce(v2d: torch.Tensor, d2v: torch.Tensor, tau: float, same: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2 from similarity matrices: ``v2d[i, j] = s_v2d(V_i, S_j)``, ``d2v[i, j] = s_d2v(S_i, V_j)``.

    ``-(1/2B) sum_i [log softmax_j(v2d[i] / tau)[i] + log softmax_j(d2v[i] / tau)[i]]``, with the entries
    ``same[i, j]`` (j != i) left out of both denominators."""
    b = v2d.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=v2d.device)
    drop = (same & ~eye) if same is not None else torch.zeros_like(eye)
    logits_v = (v2d / tau).masked_fill(drop, NEG)
    logits_d = (d2v / tau).masked_fill(drop, NEG)
    target = torch.arange(b, device=v2d.device)
    return 0.5 * (F.cross_entropy(logits_v, target) + F.cross_entropy(logits_d, target))


def global_loss(xv: torch.Tensor, yd: torch.Tensor, tau: float, same: torch.Tensor | None = None) -> torch.Tensor:
    """``L_Global`` (Eq. 2-3): ``s_v2d = s_d2v = rho(X^(v), Y^(d))``."""
    sim = cosine(xv, yd)  # [B, B]: rho(V_i, S_j)
    return infonce(sim, sim.t(), tau, same)


def fine_grained_similarities(
    x: torch.Tensor, y: torch.Tensor, fmask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 for every pair: ``(v2d [B, B], d2v [B, B])`` with ``v2d[i, j] = mean_t max_l A_ij[t, l]`` and
    ``d2v[i, j] = mean_l max_t A_ji[t, l]`` (``A_ij = rho(x_i, y_j)``; ``l`` over the valid fragments of the
    description: S_j in v2d, S_i in d2v)."""
    a = cosine(x[:, None], y[None])  # [B_v, B_d, T, L]: A for video i, description j
    valid = fmask[None, :, None, :]  # the description's fragments
    v2d = a.masked_fill(~valid, NEG).amax(dim=3).mean(dim=2)  # [B_v, B_d]
    per_fragment = a.amax(dim=2)  # [B_v, B_d, L]: max over the video's rows
    counts = fmask.sum(1).clamp(min=1).to(a.dtype)  # [B_d]
    mean_l = (per_fragment * fmask[None].to(a.dtype)).sum(2) / counts[None]  # [B_v, B_d]
    return v2d, mean_l.t()  # d2v[i, j]: description i, video j


def fine_grained_loss(
    x: torch.Tensor, y: torch.Tensor, fmask: torch.Tensor, tau: float, same: torch.Tensor | None = None
) -> torch.Tensor:
    """``L_FG`` (Eq. 4 into Eq. 2) of snippet (or subunit) features ``x [B, T, D]`` and fragments ``y``."""
    v2d, d2v = fine_grained_similarities(x, y, fmask)
    return infonce(v2d, d2v, tau, same)


def hierarchical_consistency(
    xs: torch.Tensor, xu: torch.Tensor, yf: torch.Tensor, fmask: torch.Tensor, tau: float
) -> torch.Tensor:
    """``L_HC`` (Eq. 6 with Eq. 8) on matched pairs, averaged over snippets and the batch."""
    b, ts, _ = xs.shape
    m = xu.shape[1] // ts
    if m * ts != xu.shape[1]:
        raise ValueError(f"T_u = {xu.shape[1]} is not a multiple of T_s = {ts} (M parts per snippet)")
    a_s = cosine(xs, yf)  # [B, T_s, L]
    a_u = cosine(xu, yf).reshape(b, ts, m, -1).mean(dim=2)  # [B, T_s, L]: the M parts of each snippet averaged
    valid = fmask[:, None, :]
    log_p = F.log_softmax((a_s / tau).masked_fill(~valid, NEG), dim=-1)
    log_q = F.log_softmax((a_u / tau).masked_fill(~valid, NEG), dim=-1)
    p, q = log_p.exp(), log_q.exp()
    kl_pq = (p * (log_p - log_q)).masked_fill(~valid, 0.0).sum(-1)
    kl_qp = (q * (log_q - log_p)).masked_fill(~valid, 0.0).sum(-1)
    return (kl_pq + kl_qp).mean()


@dataclass
class HaliParts:
    loss: torch.Tensor
    global_: torch.Tensor
    fg_snippet: torch.Tensor
    fg_subunit: torch.Tensor
    hc: torch.Tensor

    def logs(self) -> dict[str, float]:
        return {
            "loss_global": float(self.global_.detach()),
            "loss_fg_s": float(self.fg_snippet.detach()),
            "loss_fg_u": float(self.fg_subunit.detach()),
            "loss_hc": float(self.hc.detach()),
        }


def hali_loss(
    xv: torch.Tensor,
    xs: torch.Tensor,
    xu: torch.Tensor,
    yd: torch.Tensor,
    yf: torch.Tensor,
    fmask: torch.Tensor,
    tau: float = 0.03,
    w_snippet: float = 1.0,
    w_subunit: float = 1.0,
    w_hc: float = 1.0,
    same: torch.Tensor | None = None,
) -> HaliParts:
    """``L_HALI = L_Global + w_s L_FG^(s,f) + w_u L_FG^(u,f) + w_hc L_HC`` (Eq. 5, 7); a zero weight skips its
    term (the paper's ablation rows: ``L_Global``, ``+ (s,f)``, ``+ (u,f)``, ``+ L_HC``)."""
    zero = xv.new_zeros(())
    g = global_loss(xv, yd, tau, same)
    fs = fine_grained_loss(xs, yf, fmask, tau, same) if w_snippet else zero
    fu = fine_grained_loss(xu, yf, fmask, tau, same) if w_subunit else zero
    hc = hierarchical_consistency(xs, xu, yf, fmask, tau) if w_hc else zero
    return HaliParts(g + w_snippet * fs + w_subunit * fu + w_hc * hc, g, fs, fu, hc)
