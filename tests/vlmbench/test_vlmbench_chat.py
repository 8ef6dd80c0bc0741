"""Option log-likelihoods of a local VLM (multiple choice answered by likelihood) against a slow, direct
computation: one forward pass per answer token, without batching, padding or masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module", params=["smolvlm", "qwen2_5_vl", "internvl"])
def chat(request, tmp_path_factory):
    from ray_slt.models.vlm.chat import VLMChat

    path = tmp_path_factory.mktemp("chat") / request.param
    return VLMChat.load(vlm={"model": f"tiny:{request.param}", "tiny": {"path": str(path)}, "dtype": "float32"},
                        texts=["Which sign is it?", "the sign for book", "A B C D"])  # fmt: skip


def _direct_logprob(chat, question: dict, answer: str) -> float:
    """log P(answer tokens | prompt) token by token: the prompt alone through the model, then each prefix."""
    m = chat.model
    sample = chat._sample(question)
    if question["frames"] is None:
        prompt = m.text_ids(m.prompt_text(None, None, question["prompt"], system=question["system"]))
    else:
        prompt = m.collate([sample])["prompt_ids"][0].tolist()
    target = m.target_ids(answer)[:-1]  # the end-of-turn token is not part of the answer's score
    total = 0.0
    for k, tok in enumerate(target):
        ids = torch.tensor([prompt + target[:k]])
        if question["frames"] is None:
            logits = m.hf(input_ids=ids, use_cache=False).logits
        else:
            batch = m.collate([sample])
            batch["input_ids"] = ids
            logits = m.hf(input_ids=ids, use_cache=False, **m.mm_inputs(batch, ids)).logits
        total += float(torch.log_softmax(logits[0, -1].double(), -1)[tok])
    return total


@pytest.mark.parametrize("blind", [False, True])
def test_option_logprobs_equal_the_direct_computation(chat, blind):
    frames = None if blind else np.random.default_rng(0).integers(0, 255, (3, 40, 48, 3), dtype=np.uint8)
    q = {"prompt": "Which sign is it? A. book B. run", "system": "Answer with a letter.", "frames": frames,
         "frame_indices": np.arange(3) * 5, "fps": 25.0, "span_len": 15}  # fmt: skip
    answers = ["A", "B", "the sign for book", "D"]  # different lengths: padded together in one batch
    with torch.no_grad():
        fast = chat.option_logprobs(q, answers)
        slow = [_direct_logprob(chat, q, a) for a in answers]
    assert np.allclose(fast, slow, atol=1e-4), (fast, slow)
    assert len(set(np.round(fast, 4))) == 4  # the scores tell the answers apart
