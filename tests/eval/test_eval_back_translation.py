"""Back-translation of productions (the production protocol's ``back_translator``): a pose's 50 joints go back to
their points of the 77-point layout exactly, a translator trained on those points (``encoder.points: p2s50``)
ignores every other point, and the protocol's ``bt_*`` / ``bt_ref_*`` scores are the translator's own readings of
the productions / references scored by the shared metrics; a model that does not translate poses, or samples
without a sentence, are refused."""

from __future__ import annotations

import numpy as np
import pytest
from testlib import tiny_checkpoint, tiny_producer

from ray_slt.errors import DataError
from ray_slt.eval.metrics import corpus_scores
from ray_slt.eval.production import ProductionProtocol
from ray_slt.features import prompt2sign as p2s
from ray_slt.models.registry import load_predictor

P2S_ENCODER = {"type": "skeleton", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1, "gcn_channels": [16],
               "points": "p2s50"}  # fmt: skip


def joints(n: int, seed: int) -> np.ndarray:
    """A smooth random 50-joint sequence [n, 50, 3] (around the shoulder-normalised origin)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(1, 50, 3)) + 0.05 * rng.normal(size=(n, 50, 3)).cumsum(0)).astype(np.float64)


def test_the_50_joints_go_back_to_their_points():
    j = joints(7, 0)
    xy, valid = p2s.to_layout77(j)
    assert xy.shape == (7, 77, 2) and valid.sum(1).tolist() == [49] * 7  # the neck has no point of its own
    assert sorted(np.flatnonzero(valid[0]).tolist()) == list(p2s.LAYOUT77_POINTS)
    back, ok = p2s.from_layout77(xy, valid)
    others = [k for k in range(50) if k != p2s.ROOT]
    assert ok.all() and np.allclose(back[:, others], j[:, others, :2], atol=1e-6)
    # the neck comes back as the shoulders' midpoint, as it is defined
    assert np.allclose(back[:, p2s.ROOT], (j[:, 2, :2] + j[:, 5, :2]) / 2, atol=1e-6)
    with pytest.raises(DataError, match="50 joints"):
        p2s.to_layout77(np.zeros((3, 49, 3)))
    with pytest.raises(DataError, match="non-finite"):
        p2s.to_layout77(np.full((2, 50, 3), np.nan))


def test_a_p2s50_translator_reads_only_the_points_productions_carry(tmp_path):
    model = tiny_checkpoint(str(tmp_path / "p2s"), encoder=P2S_ENCODER)
    translator = load_predictor(model)
    xy, valid = p2s.to_layout77(joints(9, 1))
    rng = np.random.default_rng(2)
    full = xy.copy()
    face = ~valid
    full[face] = rng.normal(size=(int(face.sum()), 2))  # the face and the rest present, with any values
    sample = {"sample_id": "a", "keypoints": xy, "keypoints_valid": valid, "num_frames": 9}
    richer = {"sample_id": "a", "keypoints": full, "keypoints_valid": np.ones_like(valid), "num_frames": 9}
    batch_a, batch_b = translator.collate([sample]), translator.collate([richer])
    assert batch_b["point_mask"].sum() == batch_a["point_mask"].sum() == 9 * 49
    assert translator.predict([sample]) == translator.predict([richer])
    # an all-points translator does read them
    plain = load_predictor(tiny_checkpoint(str(tmp_path / "all")))
    assert plain.collate([richer])["point_mask"].sum() == 9 * 77


def test_back_translation_scores_are_the_translators_readings(tmp_path):
    model = tiny_checkpoint(str(tmp_path / "bt"), encoder=P2S_ENCODER)
    proto = ProductionProtocol(back_translator=model, lang="en", batch_size=2)
    texts = ["the man eats an apple", "my sister reads a book", "tomorrow it rains"]
    seqs = [joints(6 + k, 10 + k) for k in range(3)]
    refs = [joints(8, 20 + k) for k in range(3)]
    preds = [{"sample_id": f"s{k}", "text": t, "frames": np.c_[s.reshape(len(s), -1), p2s.counter(len(s))].tolist(),
              "reference": np.c_[r.reshape(len(r), -1), p2s.counter(len(r))].tolist()}
             for k, (t, s, r) in enumerate(zip(texts, seqs, refs))]  # fmt: skip
    scores = proto.score(preds)
    translator = load_predictor(model)

    def read(poses):
        out = []
        for j in poses:
            xy, valid = p2s.to_layout77(j)
            out += [o["text"] for o in translator.predict([{"keypoints": xy, "keypoints_valid": valid,
                                                             "num_frames": len(xy)}])]  # fmt: skip
        return out

    hyps, ceiling = read(seqs), read(refs)
    direct, direct_ref = corpus_scores(hyps, texts, lang="en"), corpus_scores(ceiling, texts, lang="en")
    for k in ("bleu1", "bleu4", "rouge_l", "chrf"):
        assert scores[f"bt_{k}"] == pytest.approx(direct[k], abs=1e-9)
        assert scores[f"bt_ref_{k}"] == pytest.approx(direct_ref[k], abs=1e-9)
    assert [p["back_translation"] for p in preds] == hyps
    assert scores["bt_bleu_signature"] == direct["bleu_signature"] and scores["back_translator"] == translator.model_id
    assert scores["n"] == 3 and "dtw" in scores
    with pytest.raises(DataError, match="needs each sample's sentence"):
        proto.score([{**preds[0], "text": None}])
    with pytest.raises(DataError, match="does not translate poses"):
        ProductionProtocol(back_translator=tiny_producer(str(tmp_path / "producer")))
