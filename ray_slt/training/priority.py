"""SignLLM's Priority Learning Channel (PLC; paper 5, Sec. 3.4; SPEC_papers_3_5.md C.1.5 and C.5 item 1): training
batches drawn with probability proportional to a priority from each sample's latest loss,
P(i) = p_i^eta / sum_j p_j^eta.

The paper writes the priority as the reward r = -MSE raised to eta, which is undefined for negative r and
non-integer eta; the readings offered here (``kind``):

- ``inverse`` (default; the paper's words, "the most rewarding samples", i.e. the lowest loss):
  p_i = 1 / (L_i + eps);
- ``loss`` (prioritised experience replay's reading, the hardest samples first): p_i = L_i + eps.

eta = 0.6 by default (PER's; the paper gives none). A sample not yet seen has the largest priority so far (it is
drawn early). Priorities change only through :meth:`PrioritySampler.update` with the losses of the samples just
trained on. Importance-sampling weights (N P(i))^-beta / max are offered (``beta`` 0: none, the paper's).

With several Ray Train workers every rank holds the same sampler: the draw of step ``s`` comes from a generator
seeded by (seed, s) and each rank takes its share of the global batch; the ranks all-gather the (index, loss)
pairs of the step and apply the same update, so their priorities stay identical without a parameter server.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KINDS = ("inverse", "loss")


class PrioritySampler:
    """Priority-proportional sampling over ``n`` samples (see the module docstring)."""

    def __init__(self, n: int, eta: float = 0.6, kind: str = "inverse", eps: float = 1e-6, seed: int = 0):
        if n < 1:
            raise ValueError("a priority sampler needs at least one sample")
        if kind not in KINDS:
            raise ValueError(f"unknown priority kind {kind!r}; use one of {', '.join(KINDS)}")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, not {eta}")
        self.n, self.eta, self.kind, self.eps, self.seed = n, eta, kind, eps, seed
        self.priority = np.ones(n)
        self.seen = np.zeros(n, bool)
        self.count = np.zeros(n, np.int64)  # how often each sample was trained on (updates received)

    def probabilities(self) -> np.ndarray:
        p = self.priority.copy()
        if self.seen.any():
            p[~self.seen] = self.priority[self.seen].max()  # unseen samples: the largest priority so far
        w = p**self.eta
        return w / w.sum()

    def draw(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> np.ndarray:
        """This rank's indices of step ``step``: the global batch (``batch_size`` per rank) is drawn with
        replacement from :meth:`probabilities` by a generator seeded by (seed, step); rank r takes positions
        r, r + world, ... of it."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in a world of {world}")
        rng = np.random.default_rng((self.seed, step))
        drawn = rng.choice(self.n, size=batch_size * world, replace=True, p=self.probabilities())
        return drawn[rank::world]

    def update(self, indices: Sequence[int], losses: Sequence[float]) -> None:
        """New priorities for the samples just trained on, from their losses (the last loss of an index drawn
        twice wins)."""
        idx, loss = np.asarray(indices, dtype=np.int64), np.asarray(losses, dtype=np.float64)
        if idx.shape != loss.shape:
            raise ValueError(f"{len(idx)} indices but {len(loss)} losses")
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise ValueError("an index is outside the dataset")
        if not np.isfinite(loss).all() or (loss < 0).any():
            raise ValueError("losses must be finite and non-negative")
        self.priority[idx] = 1.0 / (loss + self.eps) if self.kind == "inverse" else loss + self.eps
        self.seen[idx] = True
        np.add.at(self.count, idx, 1)

    def weights(self, indices: Sequence[int], beta: float) -> np.ndarray:
        """Importance-sampling weights (N P(i))^-beta, divided by the largest over the dataset."""
        p = self.probabilities()
        w = (self.n * p) ** (-beta)
        return w[np.asarray(indices, dtype=np.int64)] / w.max()

    def state(self) -> dict:
        """What a checkpoint keeps (JSON-able)."""
        return {"priority": self.priority.tolist(), "seen": self.seen.tolist(), "count": self.count.tolist()}

    def load_state(self, state: dict) -> None:
        priority, seen = np.asarray(state["priority"], float), np.asarray(state["seen"], bool)
        count = np.asarray(state["count"], np.int64)
        if priority.shape != (self.n,) or seen.shape != (self.n,) or count.shape != (self.n,):
            raise ValueError(f"the saved priorities are for {len(priority)} samples, not {self.n}")
        self.priority, self.seen, self.count = priority, seen, count
