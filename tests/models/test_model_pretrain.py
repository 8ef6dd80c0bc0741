"""Stage-1 pretraining model: loss composition, decoding, a short alignment run, checkpoints, stage-2 init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import pose_samples, tiny_sft

from ray_slt.errors import ConfigError
from ray_slt.models.checkpoint import load_pretrain, load_pretrained_skeleton, save_pretrain
from ray_slt.models.config import PretrainConfig
from ray_slt.models.pretrain import build_pretrain_model
from ray_slt.models.sft import build_translator

SKEL = {"hidden": 32, "heads": 4, "ffn": 64, "layers": 1, "gcn_channels": [16], "dropout": 0.0}


def tiny_pretrain(**over) -> PretrainConfig:
    text = {
        "encoder_layers": 1,
        "decoder_layers": 1,
        "hidden": 32,
        "heads": 4,
        "ffn": 64,
        "dropout": 0.0,
        "max_length": 40,
        "tokenizer": {"vocab_size": 600},
    }
    return PretrainConfig.model_validate(
        {"skeleton": SKEL, "text": text, "contrastive": {"dim": 16, "tau": 0.1}, "max_new_tokens": 6, **over}
    )


@pytest.fixture(scope="module")
def texts(phoenix_texts):
    return phoenix_texts[:2000]


def test_loss_is_contrastive_plus_translation(texts):
    m = build_pretrain_model(tiny_pretrain(slt_weight=0.5), texts=texts)
    batch = m.collator()(pose_samples(4, texts=texts[:4]))
    out = m(batch)
    assert out.loss.item() == pytest.approx(out.loss_con.item() + 0.5 * out.loss_slt.item(), rel=1e-6)
    assert out.loss_con.item() == pytest.approx(0.5 * out.loss_s2t.item() + 0.5 * out.loss_t2s.item(), rel=1e-6)
    assert np.log(len(m.tokenizer)) * 0.5 < out.loss_slt.item() < np.log(len(m.tokenizer)) * 2  # untrained
    out.loss.backward()
    assert m.contrastive.log_tau.grad is not None
    assert m.skeleton.fuse.weight.grad.abs().sum() > 0
    assert m.text.get_encoder().layers[0].fc1.weight.grad.abs().sum() > 0
    assert set(out.metrics()) == {"loss", "loss_con", "loss_s2t", "loss_t2s", "loss_slt"}
    m.eval()
    for beams in (1, 3):
        hyps = m.translate(batch, num_beams=beams)
        assert len(hyps) == 4 and all(isinstance(h, str) for h in hyps)


def test_config_requires_matching_widths():
    with pytest.raises(ValueError, match=r"text\.hidden"):
        PretrainConfig.model_validate({"skeleton": {**SKEL, "hidden": 48}, "text": {"hidden": 32, "heads": 4}})
    with pytest.raises(ConfigError, match="tokenizer"):
        build_pretrain_model(tiny_pretrain())


def test_short_pretraining_aligns_skeletons_with_texts(texts):
    """4 pose 'signs' (fixed random motions + noise) paired with 4 sentences: after 120 Adam steps the
    contrastive retrieval is perfect on fresh noisy copies and both losses fall far below their start."""
    torch.manual_seed(0)
    m = build_pretrain_model(tiny_pretrain(), texts=texts, seed=1)
    rng = np.random.default_rng(0)
    protos = [rng.normal(size=(10, 77, 2)).astype(np.float32) for _ in range(4)]
    sentences = texts[10:14]

    def batch(seed):
        r = np.random.default_rng(seed)
        return m.collator()(
            [
                {
                    "coords": p + 0.3 * r.normal(size=p.shape).astype(np.float32),
                    "mask": r.random((10, 77)) > 0.1,
                    "text": t,
                }
                for p, t in zip(protos, sentences)
            ]
        )

    held_out = batch(10_000)

    def evaluate():
        m.eval()
        with torch.no_grad():
            out = m(held_out)
            z_s, s_mask = m.skeleton.encode(held_out)
            z_t = m.encode_text(held_out["target_ids"], held_out["target_mask"])
            con = m.contrastive(z_s, s_mask, z_t, held_out["target_mask"])
        m.train()
        return out, (con.z_s2t.argmax(1) == torch.arange(4)).float().mean().item()

    start, _ = evaluate()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    for step in range(120):
        loss = m(batch(step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    end, acc = evaluate()
    assert acc == 1.0
    assert end.loss_con.item() < 0.2 * start.loss_con.item()
    assert end.loss_slt.item() < 0.5 * start.loss_slt.item()


def test_checkpoint_round_trip_and_stage2_init(texts, tmp_path):
    m = build_pretrain_model(tiny_pretrain(), texts=texts, seed=2).eval()
    batch = m.collator()(pose_samples(3, texts=texts[:3]))
    save_pretrain(m, str(tmp_path / "pt"))
    m2 = load_pretrain(str(tmp_path / "pt"))
    with torch.no_grad():
        assert m2(batch).loss.item() == pytest.approx(m(batch).loss.item(), rel=1e-6)
    assert m2.translate(batch, num_beams=3) == m.translate(batch, num_beams=3)
    assert m2.text.lm_head.weight.data_ptr() == m2.text.model.shared.weight.data_ptr()  # still tied

    cfg = tiny_sft(encoder={"type": "skeleton", **SKEL}, encoder_init=str(tmp_path / "pt"))
    sft = build_translator(cfg, texts=texts)
    pre = m.skeleton.state_dict()
    assert all(torch.equal(v, pre[k]) for k, v in sft.encoder.state_dict().items())
    with pytest.raises(ConfigError, match="gcn_channels"):
        build_translator(
            tiny_sft(encoder={"type": "skeleton", **SKEL, "gcn_channels": [8]}, encoder_init=str(tmp_path / "pt")),
            texts=texts,
        )
    assert load_pretrained_skeleton(str(tmp_path / "pt")).training
