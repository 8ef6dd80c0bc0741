"""Translator checkpoints: save -> load gives identical generations (local, s3, real-LM path, gloss encoder)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from model_helpers import pose_samples, tiny_sft

from ray_slt import storage
from ray_slt.errors import StorageError
from ray_slt.models.checkpoint import load_translator, save_translator
from ray_slt.models.sft import build_translator, param_groups
from ray_slt.models.tiny import build_tiny_lm, train_tokenizer


def _train_a_little(model, batch, steps=3):
    """A few large steps so that LoRA B, the projector and the encoder all move away from their init."""
    model.train()
    opt = torch.optim.AdamW([{**g, "lr": 1e-2} for g in param_groups(model)])
    for _ in range(steps):
        loss = model(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    lora_b = [p for n, p in model.lm.named_parameters() if "lora_B" in n]
    assert all(p.abs().sum() > 0 for p in lora_b)


def _assert_same(a, b, batch):
    with torch.no_grad():
        assert a(batch).loss.item() == pytest.approx(b(batch).loss.item(), rel=1e-6)
    for beams in (1, 5):
        assert a.generate(batch, num_beams=beams) == b.generate(batch, num_beams=beams)
    assert torch.equal(a.generate_ids(batch, num_beams=1), b.generate_ids(batch, num_beams=1))


@pytest.fixture(scope="module")
def trained(phoenix_texts):
    m = build_translator(tiny_sft(), texts=phoenix_texts, seed=0)
    batch = m.collator()(pose_samples(3, texts=phoenix_texts[:3]))
    _train_a_little(m, batch)
    return m, batch


def test_local_round_trip_identical_generations(trained, tmp_path):
    m, batch = trained
    save_translator(m, str(tmp_path / "ckpt"))
    files = sorted(
        os.path.relpath(os.path.join(r, f), tmp_path / "ckpt") for r, _, fs in os.walk(tmp_path / "ckpt") for f in fs
    )
    assert {
        "translator.json",
        "modules.safetensors",
        "lora/adapter_model.safetensors",
        "lora/adapter_config.json",
        "tokenizer/tokenizer.json",
        "base_lm/model.safetensors",
        "base_lm/config.json",
        "MANIFEST.json",
    } <= set(files)
    assert all(f.endswith((".json", ".safetensors", ".md")) for f in files), files  # no pickles
    manifest = json.loads((tmp_path / "ckpt" / "MANIFEST.json").read_text())
    assert {f["path"] for f in manifest["files"]} == set(files) - {"MANIFEST.json"}
    adapter = json.loads((tmp_path / "ckpt" / "lora" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (16, 32, 0.3)
    assert set(adapter["target_modules"]) == {"q_proj", "v_proj"}

    loaded = load_translator(str(tmp_path / "ckpt"))
    assert not loaded.training and loaded.cfg == m.cfg
    _assert_same(m, loaded, batch)

    resumed = load_translator(str(tmp_path / "ckpt"), trainable=True)
    assert resumed.training
    groups = {g["name"]: g for g in param_groups(resumed)}
    assert groups["lora"]["params"] and all("lora_" in n for n, p in resumed.lm.named_parameters() if p.requires_grad)


def test_incomplete_checkpoint_is_refused(trained, tmp_path):
    m, _ = trained
    save_translator(m, str(tmp_path / "ckpt"))
    os.remove(tmp_path / "ckpt" / "MANIFEST.json")
    with pytest.raises(StorageError, match="MANIFEST"):
        load_translator(str(tmp_path / "ckpt"))
    save_translator(m, str(tmp_path / "pickled"))
    lora = tmp_path / "pickled" / "lora"
    (lora / "adapter_model.safetensors").rename(lora / "adapter_model.bin")  # what PEFT would fall back to
    with pytest.raises(StorageError, match="only loaded from safetensors"):
        load_translator(str(tmp_path / "pickled"))


def test_s3_round_trip(trained, s3_bucket):
    m, batch = trained
    uri = f"{s3_bucket}/runs/sft/ckpt"
    save_translator(m, uri)
    assert storage.exists(f"{uri}/lora/adapter_model.safetensors")
    _assert_same(m, load_translator(uri), batch)


def test_real_lm_directory_is_referenced_not_copied(phoenix_texts, tmp_path):
    """An LM given by path (as a real checkpoint would be) loads via AutoModelForCausalLM.from_pretrained and
    the translator checkpoint stores only the adapter, pointing back at it."""
    lm_dir = tmp_path / "my-lm"
    tok = train_tokenizer(phoenix_texts, 800)
    build_tiny_lm(tok, "qwen2", seed=3).save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    m = build_translator(
        tiny_sft(
            lm=str(lm_dir),
            encoder={"type": "skeleton", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1, "gcn_channels": [16]},
        )
    )
    assert len(m.tokenizer) == len(tok)
    batch = m.collator()(pose_samples(2, texts=phoenix_texts[:2]))
    _train_a_little(m, batch, steps=2)
    save_translator(m, str(tmp_path / "ckpt"))
    assert not (tmp_path / "ckpt" / "base_lm").exists()
    assert json.loads((tmp_path / "ckpt" / "translator.json").read_text())["base_lm"] == str(lm_dir)
    _assert_same(m, load_translator(str(tmp_path / "ckpt")), batch)


def test_gloss_translator_round_trip(phoenix_train, tmp_path):
    rows = phoenix_train[:400]
    cfg = tiny_sft(
        lm="tiny:qwen2",
        encoder={"type": "gloss", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1},
        fusion={"face": False, "hand": False},
    )
    m = build_translator(cfg, texts=[r["text"] for r in rows], glosses=[r["gloss"] for r in rows])
    batch = m.collator()(rows[:3])
    _train_a_little(m, batch)
    save_translator(m, str(tmp_path / "g"))
    loaded = load_translator(str(tmp_path / "g"))
    assert loaded.gloss_tokenizer.get_vocab() == m.gloss_tokenizer.get_vocab()
    _assert_same(m, loaded, loaded.collator()(rows[:3]))


def test_lm_and_tokenizer_from_an_s3_directory(phoenix_texts, tmp_path, s3_bucket):
    """lm: s3://... (a plain save_pretrained directory, no manifest) is fetched through ray_slt.storage."""
    lm_dir = tmp_path / "lm"
    tok = train_tokenizer(phoenix_texts[:1000], 500)
    lm = build_tiny_lm(tok, "qwen3", seed=4)
    lm.save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    for f in os.listdir(lm_dir):
        storage.copy(str(lm_dir / f), f"{s3_bucket}/models/lm/{f}")
    m = build_translator(tiny_sft(lm=f"{s3_bucket}/models/lm", fusion={"face": False, "hand": False}))
    assert m.tokenizer.get_vocab() == tok.get_vocab()
    base = m.lm.get_base_model()
    assert torch.equal(base.model.embed_tokens.weight, lm.model.embed_tokens.weight)


def test_a_random_lm_trains_in_full_and_round_trips(phoenix_texts, tmp_path, caplog):
    """lm_training auto: a tiny (random) LM trains every weight, not LoRA; its checkpoint carries the whole
    trained LM (no adapter) and reloads to identical generations, trainable again for a resume. An explicit
    LoRA on a random LM is warned about with the reason; a pretrained LM (a model id) keeps LoRA under auto."""
    cfg = tiny_sft(lm_training="auto")
    assert not cfg.uses_lora and tiny_sft(lm="Qwen/Qwen3-8B", lm_training="auto").uses_lora
    m = build_translator(cfg, texts=phoenix_texts, seed=0)
    assert not any("lora_" in n for n, _ in m.lm.named_parameters())
    lm_params = [p for p in m.lm.parameters()]
    groups = {g["name"]: g for g in param_groups(m)}
    assert "lora" not in groups and {id(p) for p in groups["lm"]["params"]} == {id(p) for p in lm_params}
    start = {n: p.detach().clone() for n, p in m.lm.named_parameters()}
    batch = m.collator()(pose_samples(3, texts=phoenix_texts[:3]))
    m.train()
    opt = torch.optim.AdamW([{**g, "lr": 1e-2} for g in param_groups(m)])
    for _ in range(3):
        loss = m(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    moved = [n for n, p in m.lm.named_parameters() if not torch.equal(p, start[n])]
    assert len(moved) == len(start)  # every LM weight learnt, attention and MLP alike

    save_translator(m, str(tmp_path / "full"))
    root = tmp_path / "full"
    files = {os.path.relpath(os.path.join(r, f), root) for r, _, fs in os.walk(root) for f in fs}
    assert "base_lm/model.safetensors" in files and not any(f.startswith("lora/") for f in files)
    loaded = load_translator(str(tmp_path / "full"))
    assert loaded.cfg == m.cfg and not loaded.cfg.uses_lora
    _assert_same(m, loaded, batch)
    resumed = load_translator(str(tmp_path / "full"), trainable=True)
    assert all(p.requires_grad for p in resumed.lm.parameters())

    with caplog.at_level("WARNING", logger="ray_slt.models"):
        build_translator(tiny_sft(lm_training="lora"), texts=phoenix_texts[:500], seed=0)
    assert "randomly initialised and its frozen weights never learn" in caplog.text


def test_a_checkpoint_from_before_lm_training_loads_as_lora(trained, tmp_path):
    """Checkpoints written before ``lm_training`` existed have no such key and always trained LoRA (whatever the
    LM): they load with their adapter, not as a random LM trained in full."""
    m, batch = trained
    save_translator(m, str(tmp_path / "old"))
    meta_path = tmp_path / "old" / "translator.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["lm_training"]
    meta_path.write_text(json.dumps(meta))
    loaded = load_translator(str(tmp_path / "old"))
    assert loaded.cfg.uses_lora
    _assert_same(m, loaded, batch)
