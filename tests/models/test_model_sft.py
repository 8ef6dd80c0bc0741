"""Stage-2 SFT model: layout, train/inference consistency, fusion, param groups, gloss encoder, Qwen2."""

from __future__ import annotations

import pytest
import torch
from model_helpers import pose_samples, tiny_sft

from ray_slt.errors import ConfigError
from ray_slt.models.sft import SignTranslator, build_translator, generate, param_groups


@pytest.fixture(scope="module")
def model(phoenix_texts) -> SignTranslator:
    return build_translator(tiny_sft(), texts=phoenix_texts, seed=0)


def _finished_mask(ids: torch.Tensor, eos: int) -> torch.Tensor:
    """True up to and including the first eos of each row."""
    is_eos = (ids == eos).long()
    return (is_eos.cumsum(1) - is_eos) == 0


def test_loss_is_on_target_tokens_only(model, phoenix_texts):
    model.train()
    batch = model.collator()(pose_samples(3, texts=phoenix_texts[:3]))
    prefix, mask = model.sign_embeddings(batch)
    layout = model._layout(prefix, mask, batch["target_ids"], batch["target_mask"])
    labels = layout["labels"]
    assert (labels != -100).sum() == batch["target_mask"].sum()
    for b in range(3):
        n = int(batch["target_mask"][b].sum())
        assert torch.equal(labels[b, -n:], batch["target_ids"][b, :n])  # targets close every row
        assert labels[b, -n:][-1] == model.tokenizer.eos_token_id
        assert layout["attention_mask"][b].sum() == int(mask[b].sum()) + len(model.prompt_ids) + n
    out = model(batch)
    assert torch.isfinite(out.loss)
    model.zero_grad()
    out.loss.backward()
    named = dict(model.named_parameters())
    assert all(p.grad is None for n, p in named.items() if n.startswith("lm.") and "lora_" not in n)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in named.items() if "lora_B" in n)
    for prefix_name in ("projector.", "face_proj.", "hand_proj.", "encoder."):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in named.items() if n.startswith(prefix_name))
    model.zero_grad()


def test_generation_continues_the_training_layout(model):
    """Greedy tokens from generate() are the argmax of the training forward teacher-forced on them."""
    model.eval()
    batch = model.collator()(pose_samples(3, lengths=(9, 4, 12)))
    ids = model.generate_ids(batch, num_beams=1, max_new_tokens=6)
    keep = _finished_mask(ids, model.tokenizer.eos_token_id)
    batch = dict(batch, target_ids=ids, target_mask=keep)
    with torch.no_grad():
        logits = model(batch).logits
    for b in range(3):
        n = int(keep[b].sum())
        predicted = logits[b, -n - 1 : -1].argmax(-1)
        assert torch.equal(predicted, ids[b, :n]), f"row {b}: training and generation layouts differ"


@pytest.mark.parametrize("beams", [1, 5])
def test_batched_generation_equals_one_by_one(model, beams):
    model.eval()
    samples = pose_samples(3, lengths=(9, 4, 12), seed=3)
    col = model.collator()
    together = generate(model, col(samples), num_beams=beams, max_new_tokens=6)
    alone = [generate(model, col([s]), num_beams=beams, max_new_tokens=6)[0] for s in samples]
    assert together == alone
    assert all(isinstance(t, str) for t in together)


def test_fusion_uses_dino_features_by_weight(phoenix_texts):
    samples = pose_samples(2, seed=4)
    changed = [dict(s, dino_face=s["dino_face"] + 1.0) for s in samples]
    for alpha, differs in ((1.0, True), (0.0, False)):
        m = build_translator(tiny_sft(fusion={"alpha": alpha}), texts=phoenix_texts[:500]).eval()
        col = m.collator()
        a, _ = m.sign_embeddings(col(samples))
        b, _ = m.sign_embeddings(col(changed))
        assert (not torch.allclose(a, b)) == differs
    m = build_translator(tiny_sft(fusion={"face": True, "hand": False}), texts=phoenix_texts[:500])
    assert m.hand_proj is None
    with pytest.raises(ValueError, match="dino_face"):
        m.sign_embeddings(m.collator()(pose_samples(1, dino=None)))
    m = build_translator(tiny_sft(fusion={"face": False, "hand": False}), texts=phoenix_texts[:500])
    z, _ = m.sign_embeddings(m.collator()(pose_samples(2, dino=None)))
    assert z.shape[-1] == m.lm.get_input_embeddings().embedding_dim


def test_param_groups_split_lora_projector_encoder(model, phoenix_texts):
    groups = param_groups(model)
    assert [(g["name"], g["lr"]) for g in groups] == [("lora", 2e-4), ("projector", 2e-5), ("encoder", 2e-5)]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("lora_" in names[id(p)] for p in groups[0]["params"])
    torch.optim.AdamW(groups)  # a valid optimizer spec
    frozen = build_translator(tiny_sft(freeze_encoder=True, lr_llm=1e-3), texts=phoenix_texts[:500])
    assert [(g["name"], g["lr"]) for g in param_groups(frozen)] == [("lora", 1e-3), ("projector", 2e-5)]
    frozen.train()
    assert not frozen.encoder.training and frozen.projector.training


def test_same_seed_same_model(phoenix_texts):
    a = build_translator(tiny_sft(), texts=phoenix_texts[:800], seed=5)
    b = build_translator(tiny_sft(), texts=phoenix_texts[:800], seed=5)
    c = build_translator(tiny_sft(), texts=phoenix_texts[:800], seed=6)
    assert a.tokenizer.get_vocab() == b.tokenizer.get_vocab()
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_gloss_encoder_with_qwen2(phoenix_train):
    rows = phoenix_train[:300]
    cfg = tiny_sft(
        lm="tiny:qwen2",
        encoder={"type": "gloss", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1, "max_length": 5},
        fusion={"face": False, "hand": False},
    )
    m = build_translator(cfg, texts=[r["text"] for r in rows], glosses=[r["gloss"] for r in rows])
    assert type(m.lm.get_base_model()).__name__ == "Qwen2ForCausalLM"
    batch = m.collator()(rows[:4])
    assert batch["gloss_ids"].shape[1] <= 5 and "coords" not in batch
    loss = m(batch).loss
    loss.backward()
    assert torch.isfinite(loss) and m.encoder.embed.weight.grad.abs().sum() > 0
    m.eval()
    out = m.generate(batch, num_beams=2, max_new_tokens=4)
    assert len(out) == 4
    with pytest.raises(ConfigError, match="glosses"):
        build_translator(cfg, texts=[r["text"] for r in rows])


def test_label_smoothing_is_the_smoothed_cross_entropy_of_the_targets(phoenix_texts):
    """sft.label_smoothing eps: the loss is, over the target tokens (</s> included), the mean of
    -(1 - eps) log p(label) - eps / V * sum_v log p(v), computed here token by token from the LM's logits; with
    eps 0 it is the LM's own loss."""
    from ray_slt.models.sft import smoothed_loss

    eps = 0.1
    model = build_translator(tiny_sft(label_smoothing=eps), texts=phoenix_texts[:500], seed=0).eval()
    batch = model.collator()(pose_samples(3, texts=phoenix_texts[:3]))
    with torch.no_grad():
        loss = model(batch).loss
        prefix, mask = model.sign_embeddings(batch)
        layout = model._layout(prefix, mask, batch["target_ids"], batch["target_mask"])
        labels = layout.pop("labels")
        out = model.lm(**layout, labels=labels)
    logp = torch.log_softmax(out.logits.double(), -1)
    terms = []
    for b in range(labels.size(0)):
        for t in range(1, labels.size(1)):
            y = int(labels[b, t])
            if y == -100:
                continue
            row = logp[b, t - 1]  # position t-1 predicts token t
            terms.append(-(1 - eps) * row[y] - eps * row.mean())
    assert len(terms) == int(batch["target_mask"].sum())
    assert float(loss) == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)
    assert float(smoothed_loss(out.logits, labels, 0.0)) == pytest.approx(float(out.loss), rel=1e-5)


def test_the_head_runs_on_the_target_positions_only(phoenix_texts):
    """The LM's output head runs on the positions that predict a target token (the last ``longest target + 1``
    of the left-padded layout), and the loss and every gradient equal the straightforward computation over every
    position's logits (``target_logits_only = False``), with and without label smoothing."""
    for eps in (0.0, 0.1):
        model = build_translator(tiny_sft(label_smoothing=eps), texts=phoenix_texts[:500], seed=0).eval()
        batch = model.collator()(pose_samples(3, lengths=(9, 4, 12), texts=phoenix_texts[3:6]))
        assert model.target_logits_only
        out = model(batch)
        assert out.logits.shape[1] == int(batch["target_mask"].sum(1).max()) + 1
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        model.target_logits_only = False
        full = model(batch)
        full.loss.backward()
        layout_length = int(batch["target_mask"].shape[1])  # the full logits span the whole layout
        assert full.logits.shape[1] > out.logits.shape[1] > 1 and full.logits.shape[1] > layout_length
        assert float(out.loss) == pytest.approx(float(full.loss), rel=1e-6)
        assert grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
        for n, p in model.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
        lp, n_tokens = model.sequence_logprobs(batch)  # the same log-probabilities either way
        model.target_logits_only = True
        lp_trimmed, n_trimmed = model.sequence_logprobs(batch)
        torch.testing.assert_close(lp, lp_trimmed)
        assert torch.equal(n_tokens, n_trimmed)


def test_gpt2_lm_keeps_the_layout_and_carries_its_dropout(phoenix_train, tmp_path):
    """``lm: tiny:gpt2`` (the causal class with residual dropout; learned absolute positions): greedy generation of
    a left-padded batch is the argmax of the training forward teacher-forced on it (training passes explicit
    position ids, generation derives them from the mask: the same ones), a batch decodes as its rows one by one,
    and ``tiny.dropout`` sets its three dropouts, which act in training only; it saves and loads to the same
    logits."""
    from ray_slt.models.checkpoint import load_translator, save_translator

    rows = phoenix_train[:300]
    cfg = tiny_sft(
        lm="tiny:gpt2",
        lm_training="auto",
        tiny={"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64, "dropout": 0.3},
        encoder={"type": "gloss", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1},
        fusion={"face": False, "hand": False},
    )
    m = build_translator(cfg, texts=[r["text"] for r in rows], glosses=[r["gloss"] for r in rows], seed=2)
    assert type(m.lm).__name__ == "GPT2LMHeadModel" and not cfg.uses_lora  # a random LM trains in full: no adapter
    assert (m.lm.config.resid_pdrop, m.lm.config.embd_pdrop, m.lm.config.attn_pdrop) == (0.3, 0.3, 0.3)
    samples = [rows[i] for i in (0, 5, 9)]  # gloss sequences of different lengths: a left-padded batch
    col = m.collator()
    batch = col(samples)
    assert len(set(batch["gloss_mask"].sum(1).tolist())) > 1
    m.train()
    assert not torch.equal(m(batch).loss, m(batch).loss)  # dropout acts while training
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(batch).logits, m(batch).logits)
    ids = m.generate_ids(batch, num_beams=1, max_new_tokens=6)
    keep = _finished_mask(ids, m.tokenizer.eos_token_id)
    with torch.no_grad():
        logits = m(dict(batch, target_ids=ids, target_mask=keep)).logits
    for b in range(len(samples)):
        n = int(keep[b].sum())
        assert torch.equal(logits[b, -n - 1 : -1].argmax(-1), ids[b, :n]), f"row {b}"
    for beams in (1, 3):
        together = generate(m, col(samples), num_beams=beams, max_new_tokens=6)
        assert together == [generate(m, col([s]), num_beams=beams, max_new_tokens=6)[0] for s in samples]
    save_translator(m, str(tmp_path / "gpt2"))
    loaded = load_translator(str(tmp_path / "gpt2"))
    assert type(loaded.lm).__name__ == "GPT2LMHeadModel" and loaded.lm.config.resid_pdrop == 0.3
    with torch.no_grad():
        assert torch.equal(loaded(batch).logits, m(batch).logits)
