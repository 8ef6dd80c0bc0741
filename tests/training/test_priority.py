"""The Priority Learning Channel's sampler: draws follow P(i) = p_i^eta / sum p_j^eta with the priorities from the
latest losses (both readings), unseen samples first, ranks drawing disjoint shares of one global batch and staying
identical through the same updates; importance weights by their formula."""

from __future__ import annotations

import numpy as np
import pytest

from ray_slt.training.priority import PrioritySampler


def frequencies(s: PrioritySampler, steps: int, batch: int) -> np.ndarray:
    counts = np.zeros(s.n)
    for step in range(steps):
        np.add.at(counts, s.draw(step, batch), 1)
    return counts / counts.sum()


@pytest.mark.parametrize("kind", ["inverse", "loss"])
def test_sampling_frequencies_follow_the_priorities(kind):
    losses = np.array([0.1, 0.5, 1.0, 2.0, 4.0])
    s = PrioritySampler(5, eta=0.6, kind=kind, eps=1e-6, seed=3)
    s.update(range(5), losses)
    p = 1 / (losses + 1e-6) if kind == "inverse" else losses + 1e-6
    expected = p**0.6 / (p**0.6).sum()  # the formula, directly
    assert np.allclose(s.probabilities(), expected, rtol=1e-12)
    seen = frequencies(s, steps=4000, batch=50)  # 200,000 draws
    sd = np.sqrt(expected * (1 - expected) / 200_000)
    assert (np.abs(seen - expected) < 5 * sd).all(), (seen, expected)
    # the paper's reading favours the low-loss samples, PER's the high-loss ones
    assert (np.argmax(seen) == 0) == (kind == "inverse")


def test_unseen_samples_take_the_largest_priority_and_eta_zero_is_uniform():
    s = PrioritySampler(4, eta=1.0, kind="loss")
    assert np.allclose(s.probabilities(), 0.25)
    s.update([0, 1], [1.0, 3.0])
    assert np.allclose(s.probabilities(), np.array([1, 3, 3, 3]) / 10, atol=1e-6)
    flat = PrioritySampler(4, eta=0.0)
    flat.update([0], [9.0])
    assert np.allclose(flat.probabilities(), 0.25)


def test_ranks_draw_shares_of_one_global_batch_and_stay_identical():
    ranks = [PrioritySampler(10, seed=7) for _ in range(2)]
    for step in range(5):
        shares = [s.draw(step, 4, rank=r, world=2) for r, s in enumerate(ranks)]
        whole = PrioritySampler(10, seed=7)
        whole.priority, whole.seen = ranks[0].priority.copy(), ranks[0].seen.copy()
        assert sorted(np.concatenate(shares).tolist()) == sorted(whole.draw(step, 8).tolist())
        gathered_idx = np.concatenate(shares)
        gathered_loss = 0.1 + gathered_idx / 10  # what the all-gather gives every rank
        for s in ranks:
            s.update(gathered_idx, gathered_loss)
        assert np.array_equal(ranks[0].priority, ranks[1].priority)
    restored = PrioritySampler(10, seed=7)
    restored.load_state(ranks[0].state())
    assert np.array_equal(restored.draw(9, 4), ranks[0].draw(9, 4))


def test_importance_weights_and_bad_input():
    s = PrioritySampler(3, eta=1.0, kind="loss")
    s.update([0, 1, 2], [1.0, 2.0, 5.0])
    p = s.probabilities()
    w = (3 * p) ** -0.4
    assert np.allclose(s.weights([0, 2], beta=0.4), w[[0, 2]] / w.max())
    assert np.allclose(s.weights([0, 1, 2], beta=0.0), 1.0)
    for bad in (([0], [1.0, 2.0]), ([3], [1.0]), ([0], [float("nan")]), ([0], [-1.0])):
        with pytest.raises(ValueError):
            s.update(*bad)
    with pytest.raises(ValueError, match="kind"):
        PrioritySampler(3, kind="reward")
    with pytest.raises(ValueError, match="rank"):
        s.draw(0, 2, rank=2, world=2)
