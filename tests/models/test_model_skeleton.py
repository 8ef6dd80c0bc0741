"""The skeleton encoder over the 77-point layout, the gloss encoder, and batch collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import pose_samples

from ray_slt.errors import DataError
from ray_slt.models.batch import Collator, sample_frames
from ray_slt.models.config import GlossEncoderConfig, SkeletonEncoderConfig
from ray_slt.models.gloss import GlossEncoder
from ray_slt.models.skeleton import PART_EDGES, PARTS, SkeletonEncoder, normalized_adjacency
from ray_slt.models.tiny import train_word_tokenizer

CFG = SkeletonEncoderConfig(hidden=32, heads=4, ffn=64, layers=2, gcn_channels=[8, 16], dropout=0.0)


def _encoder(seed=0):
    torch.manual_seed(seed)
    return SkeletonEncoder(CFG).eval()


def test_parts_tile_the_layout_and_each_part_graph_is_connected():
    covered = [i for s, e in PARTS.values() for i in range(s, e)]
    assert covered == list(range(77))
    assert {k: e - s for k, (s, e) in PARTS.items()} == {
        "body": 9,
        "left_hand": 21,
        "right_hand": 21,
        "mouth": 8,
        "face": 18,
    }
    for name, (s, e) in PARTS.items():
        a = normalized_adjacency(e - s, PART_EDGES[name]) > 0
        reach = a.clone()
        for _ in range(e - s):
            reach = (reach.float() @ a.float()) > 0
        assert reach.all(), f"{name} graph is not connected"


def test_encode_shapes_and_padding_invariance():
    enc = _encoder()
    samples = pose_samples(3, lengths=(9, 4, 12), dino=None)
    batch = Collator(max_frames=300)(samples)
    z, mask = enc.encode(batch)
    assert z.shape == (3, 12, 32) and mask.tolist()[1] == [True] * 4 + [False] * 8
    assert torch.all(z[~mask] == 0)
    with torch.no_grad():
        for i, s in enumerate(samples):
            alone, _ = enc.encode(Collator()([s]))
            n = len(s["coords"])
            assert torch.allclose(alone[0], z[i, :n], atol=1e-5), f"sample {i} depends on the batch padding"


def test_missing_points_are_not_read_and_differ_from_real_zeros():
    enc = _encoder(1)
    s = pose_samples(1, lengths=(10,), dino=None)[0]
    with torch.no_grad():
        ref, _ = enc.encode(Collator()([s]))
        other = dict(s, coords=np.where(s["mask"][..., None], s["coords"], 123.0).astype(np.float32))
        same, _ = enc.encode(Collator()([other]))
        assert torch.allclose(ref, same)
        # the encoder itself ignores whatever a batch holds at missing points (not only the collator)
        batch = Collator()([s])
        batch["coords"] = torch.where(batch["point_mask"][..., None], batch["coords"], torch.tensor(-50.0))
        batch["confidence"] = torch.where(batch["point_mask"], batch["confidence"], torch.tensor(0.9))
        direct, _ = enc.encode(batch)
        assert torch.allclose(ref, direct)
        # the same coordinates (0, 0) marked present instead of missing: a different input
        zeros = dict(s, coords=np.nan_to_num(s["coords"]), mask=np.ones_like(s["mask"]))
        zeros["confidence"] = np.where(s["mask"], s["confidence"], 1.0).astype(np.float32)
        present, _ = enc.encode(Collator()([zeros]))
        assert (present - ref).abs().max() > 1e-3


def test_fully_missing_hand_frames_encode_finitely():
    enc = _encoder(2)
    s = pose_samples(1, lengths=(8,), dino=None)[0]
    s["mask"][:, 9:51] = False  # both hands lost in every frame
    z, _ = enc.encode(Collator()([s]))
    assert torch.isfinite(z).all()


def test_gradients_flow_through_every_part():
    enc = SkeletonEncoder(CFG)
    batch = Collator()(pose_samples(2, dino=None))
    z, _mask = enc.encode(batch)
    z.sum().backward()
    for name in PARTS:
        assert enc.parts[name].blocks[0].spatial.weight.grad.abs().sum() > 0, name


def test_sample_frames_is_eq1_and_collator_subsamples_deterministically():
    assert sample_frames(5, 8).tolist() == [0, 1, 2, 3, 4]
    assert sample_frames(10, 4).tolist() == [1, 4, 6, 9]  # floor((i+1)*10/4) - 1
    s = pose_samples(1, lengths=(30,))[0]
    b = Collator(max_frames=7)([s])
    idx = sample_frames(30, 7)
    assert b["coords"].shape == (1, 7, 77, 2)
    assert torch.equal(b["dino_face"][0], torch.from_numpy(s["dino_face"][idx]))
    assert torch.equal(b["point_mask"][0], torch.from_numpy(s["mask"][idx]))


def test_collator_accepts_columns_and_rejects_bad_samples():
    samples = pose_samples(2)
    cols = {k: [s[k] for s in samples] for k in samples[0]}
    a, b = Collator()(samples), Collator()(cols)
    assert torch.equal(a["coords"], b["coords"]) and a["sample_ids"] == ["s0", "s1"]
    assert not torch.isnan(a["coords"]).any()
    with pytest.raises(DataError, match="s0"):
        Collator()([dict(samples[0], coords=np.zeros((5, 76, 2)))])
    bad = dict(samples[0])
    bad["coords"] = samples[0]["coords"].copy()
    bad["coords"][0, np.argmax(bad["mask"][0])] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        Collator()([bad])


def test_gloss_encoder_interface_and_padding():
    glosses = ["REGEN MORGEN", "WETTER MORGEN DONNERSTAG", "NORD SONNE"]
    tok = train_word_tokenizer(glosses)
    torch.manual_seed(0)
    enc = GlossEncoder(GlossEncoderConfig(hidden=32, heads=4, ffn=64, layers=1, dropout=0.0), len(tok)).eval()
    col = Collator(gloss_tokenizer=tok, max_glosses=16)
    batch = col([{"gloss": g} for g in [*glosses, "UNBEKANNT SONNE"]])
    assert batch["gloss_mask"].sum(1).tolist() == [2, 3, 2, 2]
    assert batch["gloss_ids"][3, 0] == tok.unk_token_id
    z, _mask = enc.encode(batch)
    assert z.shape == (4, 3, 32)
    with torch.no_grad():
        alone, _ = enc.encode(col([{"gloss": glosses[0]}]))
    assert torch.allclose(alone[0], z[0, :2], atol=1e-5)


def test_each_encoder_names_the_input_it_needs_when_the_data_lacks_it():
    # (a pose translator evaluated on a gloss manifest, or the other way round: a one-line data error)
    text_only = Collator()([{"sample_id": "s0", "text": "regen im norden"}])
    with pytest.raises(DataError, match="reads poses, and the data has none"):
        _encoder().encode(text_only)
    enc = GlossEncoder(GlossEncoderConfig(hidden=32, heads=4, ffn=64, layers=1, dropout=0.0), 10)
    with pytest.raises(DataError, match="reads glosses"):
        enc.encode(Collator()(pose_samples(1)))


def test_collator_reads_feature_store_rows():
    """Rows as the feature store decodes them (keypoints/keypoints_valid/..., per-hand features) collate to
    the same batch as the canonical keys; the hands are concatenated left then right."""
    canonical = pose_samples(2, dino=8)
    store_rows = []
    for s in canonical:
        left, right = s["dino_hand"][:, :8], s["dino_hand"][:, 8:]
        store_rows.append(
            {
                "sample_id": s["sample_id"],
                "keypoints": np.nan_to_num(s["coords"]),
                "keypoints_valid": s["mask"],
                "keypoints_confidence": s["confidence"],
                "face_features": s["dino_face"],
                "left_hand_features": left,
                "right_hand_features": right,
                "text": "x",
                "gloss": None,
            }
        )
    a, b = Collator()(canonical), Collator()(store_rows)
    for key in ("coords", "point_mask", "confidence", "frame_mask", "dino_face", "dino_hand"):
        assert torch.equal(a[key], b[key]), key
    no_video = [dict(r, face_features=None, left_hand_features=None, right_hand_features=None) for r in store_rows]
    assert "dino_face" not in Collator()(no_video) and "dino_hand" not in Collator()(no_video)


def test_parts_agree_with_the_extraction_layout():
    layouts = pytest.importorskip("ray_slt.features.layouts", reason="extraction stage's layouts not present")
    assert {k: (v.start, v.stop) for k, v in layouts.PARTS.items()} == PARTS
    assert layouts.NUM_POINTS == 77
