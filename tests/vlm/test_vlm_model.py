"""The VLM translators on tiny random models of the three real architecture classes (SmolVLM, Qwen2.5-VL,
InternVL): inputs in each family's expected form, the cached-features hook, LoRA/connector/frozen parts,
checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vlm_helpers import TEXTS, native_inputs, random_frames, sample, tiny_cfg

from ray_slt.models.vlm.config import FAMILY_DEFAULTS, PAPER_PROMPTS


# ---------------------------------------------------------------------------------------- frames and prompts
def test_frames_match_transformers_pil_image_processors():
    """Our per-frame preparation gives exactly what transformers' own (PIL) image processors give a frame."""
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from ray_slt.models.vlm import families as F

    frame = random_frames(1, 60, 80, seed=3)[0]
    # InternVL: each frame to S x S, bicubic, ImageNet mean/std
    ref = GotOcr2ImageProcessorPil(
        size={"height": 32, "width": 32},
        crop_to_patches=False,
        image_mean=F.IMAGENET_MEAN,
        image_std=F.IMAGENET_STD,
        resample=3,
    )
    spec = F.FrameSpec("internvl", F.IMAGENET_MEAN, F.IMAGENET_STD, F.BICUBIC, size=32)
    ours = F.InternVLFamily().pixels(frame[None], spec)["pixel_values"]
    assert torch.equal(ours, ref(images=[frame], return_tensors="pt")["pixel_values"])
    # Qwen2.5-VL: an image is a video of that frame twice (temporal patch 2): same patches and grid
    ref = Qwen2VLImageProcessorPil(
        min_pixels=1024,
        max_pixels=2048,
        patch_size=8,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=F.CLIP_MEAN,
        image_std=F.CLIP_STD,
    )
    spec = F.FrameSpec(
        "qwen2_5_vl",
        F.CLIP_MEAN,
        F.CLIP_STD,
        F.BICUBIC,
        patch_size=8,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=1024,
        max_pixels=2048,
    )
    expected = ref(images=[frame], return_tensors="pt")
    for video in (np.stack([frame, frame]), frame[None]):  # one frame: the last frame is repeated, as in Qwen
        ours = F.Qwen25VLFamily().pixels(video, spec)
        assert torch.equal(ours["pixel_values_videos"], expected["pixel_values"])
        assert ours["video_grid_thw"].tolist() == expected["image_grid_thw"].tolist() == [[1, 4, 6]]
    # SmolVLM: a square frame, longest edge -> S, no splitting
    square = random_frames(1, 64, 64, seed=4)[0]
    ref = SmolVLMImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": 32},
        max_image_size={"longest_edge": 32},
        image_mean=F.HALF,
        image_std=F.HALF,
        resample=F.LANCZOS,
    )
    spec = F.FrameSpec("smolvlm", F.HALF, F.HALF, F.LANCZOS, size=32)
    ours = F.SmolVLMFamily().pixels(square[None], spec)["pixel_values"]
    assert torch.equal(ours, ref(images=[[square]], return_tensors="pt")["pixel_values"][0])


def test_number_words_and_smart_resize():
    from ray_slt.models.vlm.families import number_words, smart_resize

    assert [number_words(n) for n in (0, 7, 13, 20, 21, 64, 100, 128, 1000, 2048)] == [
        "zero",
        "seven",
        "thirteen",
        "twenty",
        "twenty-one",
        "sixty-four",
        "one hundred",
        "one hundred and twenty-eight",
        "one thousand",
        "two thousand and forty-eight",
    ]
    # a PHOENIX frame (260 x 210) under Qwen2.5-VL's video defaults: multiples of 28, within the pixel bounds
    h, w = smart_resize(260, 210, 28, 128 * 28 * 28, 768 * 28 * 28)
    assert h % 28 == 0 and w % 28 == 0 and 128 * 28 * 28 <= h * w <= 768 * 28 * 28
    assert abs(h / w - 260 / 210) < 0.1


def test_prompt_layout_per_family(tiny_model):
    """The chat format of each family, its video placeholders (one per connector output row) and the paper's
    Table 17 prompt of the sample's sign language."""
    m = tiny_model
    for lang, prompt in PAPER_PROMPTS.items():
        s = sample(m, 5, "hallo", sign_language=lang)
        text = m.prompt_text(s["layout"], lang)
        assert prompt in text
        assert text.endswith(
            {"smolvlm": "Assistant:", "qwen2_5_vl": "<|im_start|>assistant\n", "internvl": "<|im_start|>assistant\n"}[
                m.family.name
            ]
        )
    s = sample(m, 5, "hallo")
    batch = m.collate([s])
    ids = batch["input_ids"][0]
    placeholder = {"smolvlm": "<image>", "qwen2_5_vl": "<|video_pad|>", "internvl": "<IMG_CONTEXT>"}[m.family.name]
    n_tokens = int((ids == m.tokenizer.convert_tokens_to_ids(placeholder)).sum())
    assert n_tokens == m.video_embeddings(m.vision_features(s["pixels"]), s["layout"]).shape[0] > 0
    if m.family.name == "smolvlm":
        assert "five frames from a 0:00:00 [H:MM:SS] video" in m.prompt_text(s["layout"], "gsg")
        assert m.prompt_text(s["layout"], "gsg").count("\nFrame from 00:00:") == 5
    if m.family.name == "internvl":
        assert m.prompt_text(s["layout"], "gsg").count("</img>") == 5
    if m.family.name == "qwen2_5_vl":  # 5 frames -> 3 temporal patches (the last frame repeated)
        assert s["layout"].grid_thw[0] == 3
    # the target ends with the family's end-of-turn token, and only the target is labelled
    labels = batch["labels"][0]
    target = labels[labels != -100].tolist()
    assert target[-1] == m.end_id and m.tokenizer.decode(target[:-1]).strip() == "hallo"


# ------------------------------------------------------------------------------------- the cached-features hook
def test_cached_features_give_the_same_loss_gradients_and_translation(tiny_model):
    """Exact equivalence: tower output computed in the step vs read from the cache vs transformers' own
    pixel_values path -> the same loss (bitwise), the same gradients of LoRA and connector, the same greedy
    output. (Each pass starts from the same RNG state: LoRA dropout draws the same masks.)"""
    m = tiny_model.train()
    pix = [sample(m, 6, TEXTS[0], seed=1)]
    cached = [sample(m, 6, TEXTS[0], seed=1, cached=True)]
    losses, grads = [], []
    for samples in (pix, cached):
        m.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        loss = m(m.collate(samples)).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad})
    torch.manual_seed(7)
    native = m.hf(**native_inputs(m, pix, m.collate(pix))).loss
    assert torch.equal(losses[0], losses[1]) and torch.equal(losses[0], native.detach())
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name
    # connector gradients are there (it trains on cached features too)
    assert any(g.abs().sum() > 0 for n, g in grads[1].items() if "lora_" not in n)
    # a batch of two (padding) agrees as well
    two_pix = [sample(m, 6, TEXTS[0], seed=1), sample(m, 3, TEXTS[1], seed=2)]
    two_cached = [sample(m, 6, TEXTS[0], seed=1, cached=True), sample(m, 3, TEXTS[1], seed=2, cached=True)]
    m.eval()
    with torch.no_grad():
        a = m(m.collate(two_pix)).loss
        b = m(m.collate(two_cached)).loss
        c = m.hf(**native_inputs(m, two_pix, m.collate(two_pix))).loss
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(a, c, rtol=0, atol=1e-6)
    assert (
        m.generate_ids(m.collate(pix), max_new_tokens=8).tolist()
        == m.generate_ids(m.collate(cached), max_new_tokens=8).tolist()
    )


def test_greedy_generation_defaults(tiny_model):
    """Greedy decoding with at most 128 new tokens by default; deterministic; padding-independent."""
    m = tiny_model.eval()
    assert m.cfg.max_new_tokens == 128 and m.cfg.num_beams == 1
    batch = m.collate([sample(m, 4, None, seed=5, cached=True), sample(m, 2, None, seed=6, cached=True)])
    short = m.generate_ids(batch, max_new_tokens=8)
    if m.family.name == "smolvlm":  # the default limit (one family: 128 CPU decoding steps are slow)
        ids = m.generate_ids(batch)
        assert ids.shape[0] == 2 and ids.shape[1] <= 128
        if not (ids == m.end_id).any():  # an untrained model rarely stops: it runs to the limit
            assert ids.shape[1] == 128
        assert torch.equal(short, ids[:, : short.shape[1]])  # greedy: a shorter run is a prefix
    assert torch.equal(short, m.generate_ids(batch, max_new_tokens=8))  # deterministic
    # left padding does not change a sample's translation
    single = m.generate_ids(m.collate([sample(m, 2, None, seed=6, cached=True)]), max_new_tokens=8)
    assert [t for t in short[1].tolist() if t != m.pad_id] == [t for t in single[0].tolist() if t != m.pad_id]
    texts = m.generate(batch, max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


# ------------------------------------------------------------------------------ frozen / trainable parts, LoRA
def test_lora_on_the_language_model_only_with_paper_settings(tiny_model):
    m = tiny_model
    name = m.family.name
    peft_cfg = m.peft.peft_config["default"]
    assert peft_cfg.r == FAMILY_DEFAULTS[name]["r"]
    assert peft_cfg.lora_alpha == FAMILY_DEFAULTS[name]["alpha"]
    assert peft_cfg.lora_dropout == FAMILY_DEFAULTS[name]["dropout"]
    lora_modules = {n.rsplit(".lora_A", 1)[0] for n, _ in m.hf.named_parameters() if ".lora_A." in n}
    lm = m.family.lm_path + "."
    assert lora_modules and all(n.startswith(lm) for n in lora_modules)
    layers = m.config.text_config.num_hidden_layers
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert sum(n.endswith("." + proj) for n in lora_modules) == layers, proj
    trainable = {n for n, p in m.hf.named_parameters() if p.requires_grad}
    conn = {n for n, _ in m.hf.named_parameters() if n.startswith(_connector_prefix(m))}
    assert conn and conn <= trainable
    assert trainable == conn | {n for n in trainable if "lora_" in n}
    assert not any("lora_" in n for n, _ in m.vision_tower.named_parameters())


def _connector_prefix(m) -> str:
    return {
        "smolvlm": "model.connector.",
        "qwen2_5_vl": "model.visual.merger.",
        "internvl": "model.multi_modal_projector.",
    }[m.family.name]


def test_training_changes_lora_and_connector_but_not_the_frozen_weights(tiny_model):
    from ray_slt.models.vlm.model import param_groups

    m = tiny_model.train()
    before = {n: p.detach().clone() for n, p in m.hf.named_parameters()}
    groups = param_groups(m)
    assert [g["name"] for g in groups] == ["lora", "connector"]
    assert groups[0]["lr"] == FAMILY_DEFAULTS[m.family.name]["lr"]
    opt = torch.optim.AdamW(groups)
    batch = m.collate([sample(m, 4, TEXTS[0], seed=1), sample(m, 3, TEXTS[2], seed=2)])
    for _ in range(3):
        opt.zero_grad()
        m(batch).loss.backward()
        opt.step()
    changed = {n for n, p in m.hf.named_parameters() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in m.hf.named_parameters() if p.requires_grad}
    assert changed == {n for n in trainable if "lora_B" in n or "lora_A" in n or n.startswith(_connector_prefix(m))}
    frozen = [n for n in before if n not in trainable]
    assert frozen and all(torch.equal(dict(m.hf.named_parameters())[n].detach(), before[n]) for n in frozen)


# --------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("remote", [False, True])
def test_checkpoint_round_trip(family, tiny_paths, tmp_path, request, remote):
    """LoRA + connector (+ the tiny base) saved and loaded back give identical weights, loss and translation;
    locally and on S3."""
    from ray_slt.models.vlm.checkpoint import load_vlm, save_vlm
    from ray_slt.models.vlm.model import build_vlm, param_groups

    if remote and family != "smolvlm":
        pytest.skip("the S3 round trip runs for one family")
    m = build_vlm(tiny_cfg(family, tiny_paths[family]), seed=0).train()
    opt = torch.optim.AdamW(param_groups(m))
    batch = m.collate([sample(m, 4, TEXTS[0], seed=1, cached=True)])
    for _ in range(2):  # move LoRA (B starts at 0) and the connector away from their initial values
        opt.zero_grad()
        m(batch).loss.backward()
        opt.step()
    uri = f"{request.getfixturevalue('s3_bucket')}/ckpt" if remote else str(tmp_path / "ckpt")
    save_vlm(m, uri)
    back = load_vlm(uri)
    m.eval()
    mine = {n: p for n, p in m.hf.state_dict().items()}
    theirs = back.hf.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    with torch.no_grad():
        assert torch.equal(m(batch).loss, back(batch).loss)
    assert torch.equal(m.generate_ids(batch, max_new_tokens=6), back.generate_ids(batch, max_new_tokens=6))
    assert not any(p.requires_grad for p in back.parameters())
    again = load_vlm(uri, trainable=True)
    assert {n for n, p in again.hf.named_parameters() if p.requires_grad} == {
        n for n, p in m.hf.named_parameters() if p.requires_grad
    }
