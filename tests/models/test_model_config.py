"""Model config schemas: paper defaults, validation, and that reading them does not import the ML stack."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from ray_slt.models.config import PAPER_INSTRUCTION, PretrainConfig, SFTConfig


def test_paper_defaults():
    sft = SFTConfig()
    assert (sft.lora.target_modules, sft.lora.r, sft.lora.alpha, sft.lora.dropout) == (
        ["q_proj", "v_proj"],
        16,
        32,
        0.3,
    )
    assert (sft.lr_llm, sft.lr_projector, sft.weight_decay) == (2e-4, 2e-5, 0.0)
    assert (sft.projector.hidden, sft.fusion.alpha, sft.fusion.beta, sft.fusion.dino_dim) == (4096, 1.0, 1.0, 768)
    assert (sft.max_frames, sft.num_beams) == (300, 5)
    assert sft.prompt.startswith(PAPER_INSTRUCTION)
    pt = PretrainConfig()
    s, t = pt.skeleton, pt.text
    assert (s.layers, s.hidden, s.heads, s.ffn) == (3, 512, 8, 2048)
    assert (t.encoder_layers, t.decoder_layers, t.hidden, t.heads, t.ffn) == (3, 3, 512, 8, 2048)
    assert (pt.contrastive.dim, pt.max_frames, pt.num_beams, pt.slt_weight) == (1024, 300, 5, 1.0)


def test_round_trip_and_encoder_union():
    cfg = SFTConfig.model_validate(
        {"lm": "Qwen/Qwen3-8B", "encoder": {"type": "gloss", "layers": 2}, "fusion": {"face": False, "hand": False}}
    )
    assert cfg.encoder.type == "gloss"
    assert SFTConfig.model_validate(cfg.model_dump(mode="json")) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"encoder": {"type": "gloss"}}, "fusion.face"),
        ({"lm": "tiny:llama"}, "tiny:qwen3"),
        ({"prompt_template": "{instruction} {language}"}, "instruction"),
        ({"encoder": {"type": "skeleton", "hidden": 100, "heads": 8}}, "divisible"),
        ({"encoder": {"type": "skeleton", "temporal_kernel": 4}}, "odd"),
        ({"lora": {"rank": 8}}, "Extra inputs"),
        ({"tiny": {"heads": 4, "kv_heads": 3}}, "kv_heads"),
    ],
)
def test_invalid_sft_configs(data, message):
    with pytest.raises(ValidationError, match=message):
        SFTConfig.model_validate(data)


def test_reading_configs_does_not_import_torch():
    code = "import sys, ray_slt.models, ray_slt.models.config; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_api_resolves():
    import ray_slt.models as models

    for name in models.__all__:
        assert getattr(models, name) is not None
    with pytest.raises(AttributeError):
        models.nothing_here  # noqa: B018
