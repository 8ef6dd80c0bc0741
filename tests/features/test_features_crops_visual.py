"""Hand/face boxes from keypoints (with reuse of the last good box) and DINOv2 embeddings of the crops."""

from __future__ import annotations

import numpy as np
import pytest

from ray_slt.errors import RaySltError
from ray_slt.features.crops import BACKFILLED, DETECTED, NONE, REUSED, crop_parts, part_boxes
from ray_slt.features.layouts import PARTS, layout77, layout77_from_arrays
from ray_slt.features.sampling import parse_sampling
from ray_slt.features.video import decode_video
from ray_slt.features.visual import Dinov2Embedder


def _inside(box, pts):
    return (
        (pts[:, 0] >= box[0]).all()
        and (pts[:, 0] <= box[2]).all()
        and (pts[:, 1] >= box[1]).all()
        and (pts[:, 1] <= box[3]).all()
    )


def test_boxes_are_squares_around_the_detected_parts(autsl_holistic):
    lay = layout77(autsl_holistic)
    boxes, source = part_boxes(lay.pixels, lay.valid, lay.scale)
    assert boxes.shape == (43, 3, 4) and source.shape == (43, 3)
    for j, part in enumerate(("face", "left_hand", "right_hand")):
        for i in np.flatnonzero(source[:, j] == DETECTED):
            x0, y0, x1, y1 = boxes[i, j]
            assert x1 - x0 == pytest.approx(y1 - y0, rel=1e-5)
            sl = PARTS["face"] if part == "face" else PARTS[part]
            assert _inside(boxes[i, j], lay.pixels[i, sl][lay.valid[i, sl]])
    # A hand box is hand-sized: between a fifth and one shoulder width.
    sides = boxes[source[:, 2] == DETECTED, 2, 2] - boxes[source[:, 2] == DETECTED, 2, 0]
    assert (sides > 0.2 * lay.scale).all() and (sides < 1.0 * lay.scale).all()


def test_failed_detections_reuse_the_last_good_box(autsl_holistic):
    data = np.array(np.ma.getdata(autsl_holistic.body.data)[:, 0])
    conf = np.array(autsl_holistic.body.confidence[:, 0])
    h = autsl_holistic.header
    rh = h.get_point_index("RIGHT_HAND_LANDMARKS", "WRIST")
    conf[0:3, rh : rh + 21] = 0  # not yet found
    conf[10:15, rh : rh + 21] = 0  # lost for five frames
    lh = h.get_point_index("LEFT_HAND_LANDMARKS", "WRIST")
    conf[:, lh : lh + 21] = 0  # never found
    lay = layout77_from_arrays(data, conf, h)
    boxes, source = part_boxes(lay.pixels, lay.valid, lay.scale)
    assert (source[0:3, 2] == BACKFILLED).all() and (boxes[0:3, 2] == boxes[3, 2]).all()
    assert (source[10:15, 2] == REUSED).all() and (boxes[10:15, 2] == boxes[9, 2]).all()
    assert source[9, 2] == DETECTED and source[15, 2] == DETECTED
    assert (source[:, 1] == NONE).all() and np.isnan(boxes[:, 1]).all()


def test_crops_are_224_and_black_outside_the_frame(shared_data):
    clip = decode_video(str(shared_data / "slp_pose/SOUP.mp4"), parse_sampling("uniform:2"))
    f = clip.frames
    h, w = f.shape[1:3]
    boxes = np.full((2, 3, 4), np.nan, dtype=np.float32)
    boxes[:, 0] = [0, 0, w, h]  # the whole frame
    boxes[:, 1] = [-50, -50, 50, 50]  # three quarters outside
    crops = crop_parts(f, boxes, 224)
    assert crops.shape == (2, 3, 224, 224, 3) and crops.dtype == np.uint8
    import cv2

    whole = cv2.resize(f[0], (224, 224), interpolation=cv2.INTER_LINEAR)
    assert np.abs(crops[0, 0].astype(int) - whole.astype(int)).mean() < 3
    assert (crops[:, 1, :100, :100] == 0).all() and crops[:, 1, 120:, 120:].mean() > 20
    assert (crops[:, 2] == 0).all()  # no box


def test_dinov2_embeddings_of_crops(shared_data, tiny_dinov2, autsl_holistic):
    clip = decode_video(str(shared_data / "autsl/signer0_sample1000_color.mp4"), parse_sampling("all"))
    lay = layout77(autsl_holistic)
    boxes, _ = part_boxes(lay.pixels, lay.valid, lay.scale)
    crops = crop_parts(clip.frames[:6], clip.to_frames(boxes[:6]), 224).reshape(-1, 224, 224, 3)
    emb = Dinov2Embedder(tiny_dinov2, device="cpu", batch_size=4)
    a = emb.embed(crops)
    assert a.shape == (18, 32) and a.dtype == np.float32 and np.isfinite(a).all()
    b = Dinov2Embedder(tiny_dinov2, device="cpu", batch_size=64).embed(crops)
    assert np.allclose(a, b, atol=1e-5)  # batching does not change embeddings; loading is deterministic
    faces, hands = a.reshape(6, 3, 32)[:, 0], a.reshape(6, 3, 32)[:, 2]
    assert np.linalg.norm(faces - hands, axis=1).min() > 1e-3  # different crops, different embeddings
    info = emb.info()
    assert info["model"] == tiny_dinov2 and info["hidden_size"] == 32 and info["embedding"] == "pooler_output"


def test_dinov2_loading_refuses_pickled_weights(tmp_path, tiny_dinov2):
    import shutil

    import torch
    from safetensors.torch import load_file

    d = tmp_path / "pickled"
    d.mkdir()
    shutil.copy(f"{tiny_dinov2}/config.json", d / "config.json")
    torch.save(load_file(f"{tiny_dinov2}/model.safetensors"), d / "pytorch_model.bin")
    with pytest.raises(RaySltError, match="cannot load DINOv2"):
        Dinov2Embedder(str(d), device="cpu")
    # ... and an extraction run refuses such a model before it starts any worker, in one line
    from ray_slt.features.extract import ExtractConfig, run_extract

    for model, why in ((d, "needs config.json and \\*.safetensors"), (tmp_path / "missing", "no such directory")):
        cfg = ExtractConfig.model_validate({"kind": "extract", "manifest": str(tmp_path / "m.parquet"),
                                            "out": str(tmp_path / "out"), "features": {"kind": "dinov2",
                                            "model": str(model)}})  # fmt: skip
        with pytest.raises(RaySltError, match=f"features.model: cannot load DINOv2 model .*{why}"):
            run_extract(cfg, echo=False)
    assert not (tmp_path / "out").exists()
