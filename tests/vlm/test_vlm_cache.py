"""The frozen-encoder feature cache: its key (what invalidates it and what does not), payload checks."""

from __future__ import annotations

import shutil

import pytest
import torch
from vlm_helpers import TEXTS, sample, tiny_cfg

from ray_slt.errors import DataError
from ray_slt.models.vlm.cache import VisionCache, key_fields, model_cache_key
from ray_slt.models.vlm.model import build_vlm, load_base, param_groups


def test_key_ignores_training_and_location_but_not_the_tower_frames_or_sampling(tiny_paths, tmp_path):
    fam = "internvl"
    cfg = tiny_cfg(fam, tiny_paths[fam])
    m = build_vlm(cfg, seed=0)
    key = model_cache_key(m)
    # LoRA and connector training change nothing the cache depends on
    opt = torch.optim.AdamW(param_groups(m), lr=1e-2)
    m.train()
    loss = m(m.collate([sample(m, 3, TEXTS[0])])).loss
    loss.backward()
    opt.step()
    assert model_cache_key(m) == key
    # the same weights elsewhere (another path, e.g. a copied checkpoint) are the same features
    copy = tmp_path / "copy"
    shutil.copytree(tiny_paths[fam], copy)
    assert model_cache_key(build_vlm(tiny_cfg(fam, copy))) == key
    # anything that changes the features gives another key
    variants = {
        "t_max": tiny_cfg(fam, tiny_paths[fam], frames={"t_max": 8}),
        "frame size": tiny_cfg(fam, tiny_paths[fam], frames={"size": 16}),
        "decode size": tiny_cfg(fam, tiny_paths[fam], decode={"max_side": 320}),
        "dtype": tiny_cfg(fam, tiny_paths[fam], dtype="bfloat16"),
    }
    keys = {name: model_cache_key(build_vlm(c)) for name, c in variants.items()}
    assert len(set(keys.values()) | {key}) == len(keys) + 1, keys
    # another tower (different weights under the same settings): another key
    other = tmp_path / "other"
    from ray_slt.models.vlm.tiny import save_tiny_checkpoint

    save_tiny_checkpoint(fam, cfg.tiny.model_copy(update={"seed": 1}), TEXTS, str(other))
    assert model_cache_key(build_vlm(tiny_cfg(fam, other))) != key
    # one changed frozen weight is enough
    model, _, family, spec = load_base(cfg, tiny_paths[fam])
    before = key_fields(cfg, family, model, spec)
    with torch.no_grad():
        next(family.vision_tower(model).parameters()).view(-1)[0] += 1e-3
    after = key_fields(cfg, family, model, spec)
    assert before["vision_weights_sha256"] != after["vision_weights_sha256"]


def test_connector_is_not_part_of_the_key(tiny_paths):
    """Qwen2.5-VL's connector (the patch merger) sits inside its vision module: it must not be hashed."""
    fam = "qwen2_5_vl"
    cfg = tiny_cfg(fam, tiny_paths[fam])
    model, _, family, spec = load_base(cfg, tiny_paths[fam])
    before = key_fields(cfg, family, model, spec)
    assert not any(k.startswith("merger.") for k in family.frozen_state(model))
    with torch.no_grad():
        for p in family.connector(model).parameters():
            p.add_(0.5)
    assert key_fields(cfg, family, model, spec) == before


def test_cache_entries_are_checked_on_read(tiny_paths, tmp_path):
    from ray_slt.models.vlm.data import pack, sample_from_payload

    m = build_vlm(tiny_cfg("smolvlm", tiny_paths["smolvlm"]))
    s = sample(m, 3, "x", cached=True)
    path = tmp_path / "entry.safetensors"
    path.write_bytes(pack({"vision": s["vision"]}, "vision", s["layout"].as_dict(), cache_key="k1", sample_id="a"))
    data = VisionCache.load(str(path), "a", "k1")
    back = sample_from_payload(data)
    assert torch.equal(back["vision"], s["vision"]) and back["layout"] == s["layout"].as_dict()
    with pytest.raises(DataError, match="not key k2"):
        VisionCache.load(str(path), "a", "k2")  # another model's/sampling's cache
    with pytest.raises(DataError, match="features of 'b'"):
        VisionCache.load(str(path), "b", "k1")  # another sample's entry
    path.write_bytes(b"\x00" * 4)
    with pytest.raises(DataError):
        VisionCache.load(str(path), "a", "k1")
