"""Learning test: the SFT translator learns a toy sign -> sentence mapping far better than its untrained start.

Six pose 'signs' (fixed random 77-point motions, each with its own DINOv2-like face/hand feature sequences)
map to six PHOENIX-2014T sentences. Training sees fresh noisy copies each step (coordinate noise, 10% of points
missing, feature noise); evaluation uses other noisy copies. The paper's LoRA settings (q_proj/v_proj, r=16,
alpha=32) on a tiny random Qwen3; learning rates raised for a 150-step CPU run.

Margins asserted: held-out target cross-entropy falls below half its untrained value, and greedy decoding
reproduces at least 5 of the 6 sentences exactly (0 of 6 untrained). Observed on the development machine:
cross-entropy ~7.2 -> ~2.0 and 12/12 held-out samples exact (greedy and beam 5).
"""

from __future__ import annotations

import numpy as np
import torch
from model_helpers import DINO, tiny_sft

from ray_slt.models.sft import build_translator, param_groups

K, T, STEPS = 6, 12, 150


def test_sft_learns_toy_mapping(phoenix_texts):
    sentences = [t for t in dict.fromkeys(phoenix_texts) if 25 < len(t) < 45][:K]
    cfg = tiny_sft(
        lr_llm=3e-3,
        lr_projector=3e-3,
        lora={"dropout": 0.0},
        max_new_tokens=24,
        instruction="Translate the sign language into German.",
    )
    model = build_translator(cfg, texts=phoenix_texts, seed=0)
    rng = np.random.default_rng(0)
    protos = [
        (rng.normal(size=(T, 77, 2)), rng.normal(size=(T, DINO)), rng.normal(size=(T, 2 * DINO))) for _ in range(K)
    ]
    collate = model.collator()

    def batch(n, seed):
        r = np.random.default_rng(seed)
        samples = []
        for i in range(n):
            pose, face, hand = protos[i % K]
            samples.append(
                {
                    "coords": (pose + 0.3 * r.normal(size=pose.shape)).astype(np.float32),
                    "mask": r.random((T, 77)) > 0.1,
                    "dino_face": (face + 0.3 * r.normal(size=face.shape)).astype(np.float32),
                    "dino_hand": (hand + 0.3 * r.normal(size=hand.shape)).astype(np.float32),
                    "text": sentences[i % K],
                }
            )
        return collate(samples)

    held_out = batch(2 * K, seed=10_000)

    def evaluate(beams=1):
        model.eval()
        with torch.no_grad():
            loss = model(held_out).loss.item()
        hyps = model.generate(held_out, num_beams=beams)
        model.train()
        return loss, sum(h == ref for h, ref in zip(hyps, held_out["texts"]))

    loss0, exact0 = evaluate()
    torch.manual_seed(0)
    opt = torch.optim.AdamW(param_groups(model))
    model.train()
    for step in range(STEPS):
        loss = model(batch(8, seed=step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss1, exact1 = evaluate()
    _, exact_beam = evaluate(beams=5)
    print(f"held-out CE {loss0:.2f} -> {loss1:.2f}; exact greedy {exact0} -> {exact1}/{2 * K}, beam5 {exact_beam}")
    assert exact0 == 0
    assert loss1 < 0.5 * loss0
    assert exact1 >= 10 and exact_beam >= 10  # >= 5 of 6 sentences, each seen twice
