"""Serving a checkpoint that fuses DINOv2 face/hand features (fusion.face/hand): the feature service runs the
extraction stage's crops and its DINOv2 stage on a real clip, and the translator reads them. In-process (the
same classes the Serve deployments wrap), with a tiny randomly initialised DINOv2 saved as safetensors."""

from __future__ import annotations

import pytest
from serve_helpers import tiny_checkpoint


@pytest.fixture(scope="module")
def visual_setup(tmp_path_factory):
    import torch
    from transformers import Dinov2Config, Dinov2Model

    d = tmp_path_factory.mktemp("visual")
    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, patch_size=14)
    Dinov2Model(cfg).save_pretrained(d / "dinov2")
    ckpt = tiny_checkpoint(str(d / "ckpt"), fusion={"face": True, "hand": True, "dino_dim": 32})
    return d, ckpt


def test_fused_checkpoint_needs_the_visual_settings(visual_setup):
    from ray_slt.config import build_config
    from ray_slt.errors import ConfigError
    from ray_slt.models.registry import predictor_class, resolve
    from ray_slt.serve.app import build_app

    _, ckpt = visual_setup
    ref = resolve(ckpt)
    assert predictor_class(ref.kind).requirements(ref) == {"inputs": "pose", "needs_visual": True}
    with pytest.raises(ConfigError, match=r"features\.visual\.kind=dinov2"):
        build_app(build_config({"kind": "serve", "models": {"translate": {"checkpoint": ckpt}}}))


def test_video_gets_dinov2_features_and_a_pose_is_refused(visual_setup, shared_data):
    from ray_slt.models.registry import load_predictor
    from ray_slt.serve.config import ServeConfig
    from ray_slt.serve.deployments import FeatureService

    d, ckpt = visual_setup
    cfg = ServeConfig.model_validate(
        {
            "models": {"translate": {"checkpoint": ckpt}},
            "features": {
                "frames": {"sampling": "uniform:16"},  # 16 of the clip's 64 frames: a quicker test
                "visual": {"kind": "dinov2", "model": str(d / "dinov2"), "crop_size": 56, "device": "cpu"},
            },
        }
    )
    service = FeatureService(cfg, needs_visual=True)
    try:
        video = (shared_data / "slp_site" / "asl_different.mp4").read_bytes()
        out = service.extract({"kind": "video", "data": video, "visual": True})
        assert out["ok"], out
        sample = out["sample"]
        t = sample["keypoints"].shape[0]
        assert t == 16
        for part in ("face", "left_hand", "right_hand"):
            assert sample[f"{part}_features"].shape == (t, 32)
        assert out["timings"]["visual_s"] > 0
        predictor = load_predictor(ckpt)
        assert predictor.needs_visual and isinstance(predictor.predict([sample])[0]["text"], str)
        pose = (shared_data / "slp_pose" / "holistic_example.pose").read_bytes()
        refused = service.extract({"kind": "pose", "data": pose, "visual": True})
        assert refused["ok"] is False and refused["status"] == 422 and "DINOv2" in refused["reason"]
    finally:
        service.close()
