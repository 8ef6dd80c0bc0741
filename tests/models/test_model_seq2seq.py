"""Encoder-decoder translators: the sign (or gloss) encoder's projected output, then the prompt, are the encoder's
input embeddings of any transformers seq2seq class (tiny random mBART and T5 here, the real classes); the target is
the decoder's labels. Trains, saves, loads and generates identically; training and generation see the same
layout; label smoothing is the smoothed cross-entropy of the (unshifted) decoder logits; LoRA works on it too."""

from __future__ import annotations

import os

import pytest
import torch
from model_helpers import tiny_sft

from ray_slt.models.checkpoint import load_translator, save_translator
from ray_slt.models.sft import build_translator, param_groups, smoothed_loss

GLOSS = {"type": "gloss", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1}
TINY = {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate": 64, "init_std": 0.1}


def seq2seq(arch: str, **overrides):
    base = {"lm": f"tiny:{arch}", "lm_training": "auto", "tiny": TINY, "encoder": GLOSS,
            "tokenizer": {"kind": "word", "vocab_size": 3000}, "fusion": {"face": False, "hand": False}}  # fmt: skip
    return tiny_sft(**{**base, **overrides})


def build(phoenix_train, arch: str, n: int = 400, **overrides):
    rows = phoenix_train[:n]
    cfg = seq2seq(arch, **overrides)
    return build_translator(cfg, texts=[r["text"] for r in rows], glosses=[r["gloss"] for r in rows], seed=0), rows


def fit(model, batch, steps: int, lr: float = 1e-2) -> list[float]:
    model.train()
    opt = torch.optim.AdamW([{**g, "lr": lr} for g in param_groups(model)])
    losses = []
    for _ in range(steps):
        loss = model(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.mark.parametrize("arch,cls", [("mbart", "MBartForConditionalGeneration"), ("t5", "T5ForConditionalGeneration")])
def test_a_tiny_seq2seq_translator_learns_saves_loads_and_generates_identically(phoenix_train, tmp_path, arch, cls):
    model, rows = build(phoenix_train, arch)
    assert type(model.lm).__name__ == cls and model.seq2seq and not model.cfg.uses_lora
    batch = model.collator()(rows[:4])
    with torch.no_grad():
        start = float(model(batch).loss)
    losses = fit(model, batch, steps=80)
    # measured on four sentences, 80 steps: mBART 6.8 -> 0.02, T5 7.3 -> under 1.8; margin: a quarter of the start
    assert losses[-1] < start / 4, losses[::8]
    model.eval()
    greedy = model.generate(batch, num_beams=1, max_new_tokens=30)
    assert sum(h == " ".join(r["text"].split()) for h, r in zip(greedy, rows[:4])) >= 3, greedy  # memorised

    save_translator(model, str(tmp_path / arch))
    root = tmp_path / arch
    files = {os.path.relpath(os.path.join(r, f), root) for r, _, fs in os.walk(root) for f in fs}
    assert {"base_lm/model.safetensors", "base_lm/config.json", "gloss_tokenizer/tokenizer.json"} <= files
    assert not any(f.startswith("lora/") for f in files)
    loaded = load_translator(str(root))
    assert type(loaded.lm).__name__ == cls and loaded.cfg == model.cfg
    with torch.no_grad():
        assert float(loaded(batch).loss) == pytest.approx(float(model(batch).loss), rel=1e-6)
    for beams in (1, 4):
        assert loaded.generate(batch, num_beams=beams, max_new_tokens=30) == model.generate(
            batch, num_beams=beams, max_new_tokens=30
        )
    # tied embeddings are tied again after loading (one tensor for the encoder's, decoder's and output's words)
    lm = loaded.lm
    assert lm.get_input_embeddings().weight.data_ptr() == lm.get_output_embeddings().weight.data_ptr()


def test_generation_continues_the_training_layout_and_batches_like_one_by_one(phoenix_train):
    """Greedy decoder tokens are the argmax of the training forward teacher-forced on them, and right-padded
    encoder inputs of different lengths decode as each sample alone does."""
    model, rows = build(phoenix_train, "mbart", n=200)
    fit(model, model.collator()(rows[:6]), steps=10)
    batch = model.collator()(rows[:3])
    assert len(set(batch["gloss_ids"].ne(model.gloss_tokenizer.pad_token_id).sum(1).tolist())) > 1
    ids = model.generate_ids(batch, num_beams=1, max_new_tokens=8)
    assert (ids[:, 0] == model.lm.config.decoder_start_token_id).all()
    eos, pad = model.tokenizer.eos_token_id, model.tokenizer.pad_token_id
    # the generated tokens up to their first </s>, closed by </s> as every training target is
    closed = [[*r[1:].tolist(), eos] for r in ids]
    rows_ids = [c[: c.index(eos)] for c in closed]
    width = max(len(r) for r in rows_ids) + 1
    targets = torch.full((3, width), pad, dtype=torch.long)
    keep = torch.zeros(3, width, dtype=torch.bool)
    for b, r in enumerate(rows_ids):
        targets[b, : len(r) + 1] = torch.tensor([*r, eos])
        keep[b, : len(r) + 1] = True
    with torch.no_grad():
        logits = model(dict(batch, target_ids=targets, target_mask=keep)).logits
    for b, r in enumerate(rows_ids):
        assert logits[b, : len(r)].argmax(-1).tolist() == r, f"row {b}: training and generation layouts differ"
    col = model.collator()
    for beams in (1, 3):
        together = model.generate(col(rows[:3]), num_beams=beams, max_new_tokens=8)
        assert together == [model.generate(col([r]), num_beams=beams, max_new_tokens=8)[0] for r in rows[:3]]


def test_label_smoothing_on_the_decoder_is_the_smoothed_cross_entropy(phoenix_train):
    """eps on an encoder-decoder: mean over target tokens of -(1 - eps) log p(label) - eps / V sum_v log p(v),
    where decoder position t predicts label t (no shift), computed token by token; eps 0: the class's own loss."""
    eps = 0.2
    model, rows = build(phoenix_train, "t5", n=200, label_smoothing=eps)
    model.eval()
    batch = model.collator()(rows[:3])
    with torch.no_grad():
        loss = model(batch).loss
        layout = model._layout(*model.sign_embeddings(batch), batch["target_ids"], batch["target_mask"])
        out = model.lm(**layout)
    labels = layout["labels"]
    logp = torch.log_softmax(out.logits.double(), -1)
    terms = [
        -(1 - eps) * logp[b, t, int(labels[b, t])] - eps * logp[b, t].mean()
        for b in range(labels.size(0))
        for t in range(labels.size(1))
        if int(labels[b, t]) != -100
    ]
    assert len(terms) == int(batch["target_mask"].sum())
    assert float(loss) == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)
    assert float(smoothed_loss(out.logits, labels, 0.0, shift=False)) == pytest.approx(float(out.loss), rel=1e-5)


def test_lora_on_an_encoder_decoder(phoenix_train, tmp_path):
    """lm_training lora (what a pretrained mBART / NLLB gets by default): PEFT's seq2seq adapter on both stacks,
    only the adapters of the LM learn, and the checkpoint keeps them under lora/."""
    model, rows = build(
        phoenix_train, "mbart", n=200, lm_training="lora", lora={"target_modules": ["q_proj", "v_proj"]}
    )
    assert type(model.lm).__name__ == "PeftModelForSeq2SeqLM"
    names = [n for n, p in model.lm.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any(".encoder." in n for n in names) and any(".decoder." in n for n in names)
    batch = model.collator()(rows[:3])
    fit(model, batch, steps=3)
    save_translator(model, str(tmp_path / "lora"))
    assert (tmp_path / "lora" / "lora" / "adapter_model.safetensors").is_file()
    loaded = load_translator(str(tmp_path / "lora"))
    assert loaded.generate(batch, num_beams=2) == model.generate(batch, num_beams=2)


def test_grpo_refuses_an_encoder_decoder_start(phoenix_train, tmp_path):
    from ray_slt.training.grpo import read_sft_config, sft_is_seq2seq

    model, _ = build(phoenix_train, "t5", n=100)
    save_translator(model, str(tmp_path / "t5"))
    assert sft_is_seq2seq(str(tmp_path / "t5"), read_sft_config(str(tmp_path / "t5")))
    causal = build_translator(tiny_sft(), texts=[r["text"] for r in phoenix_train[:100]], seed=0)
    save_translator(causal, str(tmp_path / "qwen"))
    assert not sft_is_seq2seq(str(tmp_path / "qwen"), read_sft_config(str(tmp_path / "qwen")))
