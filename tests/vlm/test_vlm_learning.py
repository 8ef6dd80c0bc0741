"""Learning test: a tiny SmolVLM (the paper's best model, random weights, frozen random vision tower) learns to
name made-up signs drawn as skeleton videos, through the cached-features path, on a CPU."""

from __future__ import annotations

import numpy as np
import torch
from vlm_helpers import SIGN_WORDS, sign_videos, tiny_cfg

from ray_slt.features.sampling import uniform_indices


def test_tiny_vlm_learns_to_name_signs_from_video(tmp_path):
    from ray_slt.models.vlm.model import build_vlm, param_groups, prepare_video
    from ray_slt.models.vlm.tiny import save_tiny_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread is several times faster than two here
    try:
        cfg = tiny_cfg("smolvlm", tmp_path / "base", frames={"t_max": 8}, lr=2e-3)
        save_tiny_checkpoint("smolvlm", cfg.tiny, list(SIGN_WORDS.values()), cfg.tiny.path)
        model = build_vlm(cfg, seed=0)

        def samples(videos):
            out = []
            for i, (frames, word) in enumerate(videos):
                idx = uniform_indices(len(frames), cfg.frames.t_max)  # Eq. 1
                pixels, layout = prepare_video(model.family, model.frame_spec, frames[idx], idx, 25.0, len(frames))
                out.append(
                    {
                        "sample_id": str(i),
                        "text": word,
                        "sign_language": "qsl",
                        "layout": layout,
                        "vision": model.vision_features(pixels),
                        "pixels": None,
                    }
                )
            return out

        train = samples(sign_videos(6, seed=1))  # 48 videos
        held_out = samples(sign_videos(2, seed=2))  # 16 new renderings (signers, speed, noise)

        def accuracy(data) -> float:
            model.eval()
            hyps = model.generate(model.collate([{**s, "text": None} for s in data]), max_new_tokens=6)
            return float(np.mean([h == s["text"] for h, s in zip(hyps, data)]))

        start_acc = accuracy(held_out)
        opt = torch.optim.AdamW(param_groups(model))
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(250):
            model.train()
            loss = model(model.collate([train[i] for i in rng.choice(len(train), 8, replace=False)])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        end_acc = accuracy(held_out)
    finally:
        torch.set_num_threads(threads)
    # untrained: no word right; trained: most held-out videos named (chance is 1/8), a margin of >= 0.5
    assert start_acc == 0.0
    assert end_acc >= start_acc + 0.5, (start_acc, end_acc)
    assert np.mean(losses[-20:]) < 0.25 * np.mean(losses[:5])
