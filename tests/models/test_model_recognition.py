"""The recognizer model: the temporal pyramid and the fragment pooling against direct computations, a frozen
text encoder (cached, no gradients, same features), ranking by head and by description, and the checkpoint
round trip (safetensors + JSON; a mismatching file refused)."""

from __future__ import annotations

import json

import pytest
import torch
from model_helpers import pose_samples

from ray_slt.errors import DataError, StorageError
from ray_slt.models.recognition import (
    build_recognizer,
    fragment_spans,
    load_recognizer,
    param_groups,
    pyramid_weights,
    save_recognizer,
)
from ray_slt.models.recognition_config import RecognizerConfig

LEXICON = {
    "HOUSE": "Flat hands, touching at the fingertips, moving down and apart.",
    "TREE": "Open hand, upright on the other arm; twisting at the wrist.",
    "CAT": "Pinched fingers at the cheek, pulling out twice.",
    "DOG": "Flat hand, patting the thigh, then snapping the fingers.",
}


def config(**extra) -> RecognizerConfig:
    base = {"encoder": {"hidden": 32, "heads": 4, "ffn": 64, "layers": 1, "gcn_channels": [16], "dropout": 0.0},
            "hali": {"dim": 16}, "text": {"tiny": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}},
            "max_frames": 16, "dropout": 0.0}  # fmt: skip
    for k, v in extra.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return RecognizerConfig.model_validate(base)


def batch_of(model, glosses, seed=0):
    samples = pose_samples(len(glosses), lengths=(9, 6, 12, 3), seed=seed, dino=None)
    for s, g in zip(samples, glosses):
        s["gloss"] = g
    return model.collator()(samples)


def test_pyramid_bins_are_non_overlapping_means():
    lengths = torch.tensor([12, 5, 1])
    w = pyramid_weights(lengths, 12, [2, 4])
    assert w.shape == (3, 6, 12)
    z = torch.randn(3, 12, 7)
    out = w @ z
    for i, n in enumerate(lengths.tolist()):
        row = 0
        for k in (2, 4):
            for j in range(k):
                lo, hi = (j * n) // k, ((j + 1) * n) // k
                if hi <= lo:  # a bin a short sample leaves empty takes its nearest frame
                    lo, hi = min(lo, n - 1), min(lo, n - 1) + 1
                assert torch.allclose(out[i, row], z[i, lo:hi].mean(0), atol=1e-6), (i, k, j)
                row += 1
        assert torch.all(w[i, :, n:] == 0)  # padding frames never count
    # each level's bins cover every valid frame exactly once
    assert torch.allclose((w[0, :2] > 0).sum(0).float(), torch.ones(12))


def test_fragment_features_are_means_of_their_tokens():
    torch.manual_seed(0)
    model = build_recognizer(config(), sorted(LEXICON), LEXICON, seed=0).eval()
    text = model.text
    descriptions = [LEXICON["HOUSE"], LEXICON["CAT"]]
    yd, yf, fmask = text(descriptions)
    assert fmask.tolist() == [[True, True, True], [True, True, False]]  # CAT has two fragments: one padded
    for i, d in enumerate(descriptions):
        enc = text.tokenizer([d], return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            states = text.model(**enc).last_hidden_state[0]
        assert torch.allclose(yd[i], states.mean(0), atol=1e-5)  # every token, specials included
        for f, (lo, hi) in enumerate(fragment_spans(d)):
            toks = [t for t, (a, b) in enumerate(offsets) if b > a and lo <= a < hi]
            assert toks, (d, f)
            assert torch.allclose(yf[i, f], states[toks].mean(0), atol=1e-5)


def test_a_frozen_text_encoder_caches_and_takes_no_gradients():
    frozen = build_recognizer(config(text={"freeze": True}), sorted(LEXICON), LEXICON, seed=0)
    live = build_recognizer(config(), sorted(LEXICON), LEXICON, seed=0)
    live.text.model.eval()
    ds = [LEXICON["TREE"], LEXICON["DOG"], LEXICON["TREE"]]
    a, b = frozen.text(ds), live.text.encode(ds)
    for x, y in zip(a, b):
        assert torch.allclose(x.float(), y.float(), atol=1e-5) if x.dtype != torch.bool else torch.equal(x, y)
    assert len(frozen.text._cache) == 2
    calls = []
    handle = frozen.text.model.register_forward_hook(lambda *args: calls.append(1))
    frozen.text(ds[:2])
    handle.remove()
    assert calls == []  # served from the cache
    assert not any(p.requires_grad for p in frozen.text.parameters())
    assert [g["name"] for g in param_groups(frozen)] == ["visual", "other"]
    frozen.train()
    out = frozen(batch_of(frozen, ["HOUSE", "TREE", "CAT", "DOG"]))
    out.loss.backward()
    assert frozen.desc_proj.weight.grad is not None and frozen.desc_proj.weight.grad.abs().sum() > 0


def test_ranking_by_head_and_by_description():
    model = build_recognizer(config(), sorted(LEXICON), LEXICON, seed=0).eval()
    batch = batch_of(model, ["HOUSE", "TREE", "CAT"])
    by_head = model.rank(batch, k=4)
    probs = torch.softmax(model.head(model.visual(batch)["pooled"]), -1)
    for row, p in zip(by_head, probs):
        assert [g for g, _ in row] == [model.classes[j] for j in p.argsort(descending=True).tolist()]
        assert [s for _, s in row] == pytest.approx(sorted(p.tolist(), reverse=True), abs=1e-6)
    new = {"NEW-A": "Fist, at the chest, circling.", "NEW-B": "Open hand, at the chin, tapping twice."}
    by_desc = model.rank(batch, candidates=["NEW-A", "NEW-B", "CAT"], k=3, descriptions=new)
    v = model.visual(batch)["xv"]
    yd, _, _ = model.describe([new["NEW-A"], new["NEW-B"], LEXICON["CAT"]])
    sim = torch.nn.functional.cosine_similarity(v[:, None], yd[None], dim=-1)
    for row, s in zip(by_desc, sim):
        assert dict(row) == pytest.approx(dict(zip(["NEW-A", "NEW-B", "CAT"], s.tolist())), abs=1e-5)
        assert [x for _, x in row] == sorted([x for _, x in row], reverse=True)
    with pytest.raises(DataError, match="no description of the candidate"):
        model.rank(batch, candidates=["NEW-C"])


def test_checkpoint_round_trip_and_refusal(tmp_path):
    partition = {"seen": ["CAT", "DOG"], "val_unseen": ["HOUSE"], "test_unseen": ["TREE"]}
    model = build_recognizer(config(text={"freeze": True}), sorted(LEXICON), LEXICON, seed=1, partition=partition)
    model.eval()
    uri = str(tmp_path / "rec")
    save_recognizer(model, uri)
    assert json.loads((tmp_path / "rec" / "MANIFEST.json").read_text())["kind"] == "recognizer"
    back = load_recognizer(uri)
    assert back.partition["test_unseen"] == ["TREE"] and back.text.frozen
    batch = batch_of(model, ["HOUSE", "TREE"])
    got, want = back.rank(batch, k=4), model.rank(batch, k=4)
    assert [[g for g, _ in r] for r in got] == [[g for g, _ in r] for r in want]
    assert [s for r in got for _, s in r] == pytest.approx([s for r in want for _, s in r], abs=1e-6)
    cands = ["HOUSE", "TREE", "CAT"]
    got, want = back.rank(batch, candidates=cands), model.rank(batch, candidates=cands)
    assert [[g for g, _ in r] for r in got] == [[g for g, _ in r] for r in want]
    other = build_recognizer(config(classifier=False), sorted(LEXICON), LEXICON, seed=1)
    save_recognizer(other, str(tmp_path / "other"))
    (tmp_path / "rec" / "modules.safetensors").write_bytes((tmp_path / "other" / "modules.safetensors").read_bytes())
    with pytest.raises(StorageError, match="does not match the config"):
        load_recognizer(uri)
