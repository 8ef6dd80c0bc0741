"""Asking a VLM of the project a question about a video: free-form replies and option log-likelihoods.

The VLM benchmarks (:mod:`ray_slt.vlmbench`) put their own prompt and system message to a model, show it the frames
they chose (or none: the blind control) and read either its greedy reply or, for multiple choice with a local
model, the log-likelihood of each option's answer text after the prompt. :class:`VLMChat` does both on a
:class:`~ray_slt.models.vlm.model.VLMTranslator` (a trained checkpoint, or a base model from a model id, a path or
``tiny:<family>`` with fresh LoRA layers, which start at zero and so leave the base model's outputs unchanged).

A question: ``prompt``, ``system`` (None: no system turn), and ``frames`` (RGB uint8 [T, H, W, 3], or None for a
text-only question) with ``frame_indices`` and ``fps`` (the frames' positions and rate, for the families that state
timestamps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ray_slt.errors import DataError


class VLMChat:
    def __init__(self, model):
        self.model = model.eval()

    @classmethod
    def load(cls, checkpoint: str | None = None, vlm: Mapping[str, Any] | None = None, texts: Sequence[str] = ()):
        """A trained VLM checkpoint (``checkpoint``), or a base model from a ``vlm`` config section (model id,
        path, or ``tiny:<family>``, whose tokenizer is trained on ``texts`` the first time it is built)."""
        if (checkpoint is None) == (vlm is None):
            raise DataError("give exactly one of a VLM checkpoint or a vlm config")
        if checkpoint is not None:
            from ray_slt.models.vlm.checkpoint import load_vlm

            return cls(load_vlm(checkpoint))
        from ray_slt.models.vlm.config import VLMConfig
        from ray_slt.models.vlm.model import build_vlm

        return cls(build_vlm(VLMConfig.model_validate(dict(vlm)), texts=list(texts) or None))

    @property
    def model_id(self) -> str:
        """What answered: the base model (id, path or ``tiny:<family>``) and the family."""
        return f"{self.model.cfg.model}|{self.model.family.name}"

    def _sample(self, q: Mapping[str, Any], text: str | None = None) -> dict[str, Any]:
        from ray_slt.models.vlm.model import prepare_video

        s: dict[str, Any] = {"prompt": q["prompt"], "system": q.get("system"), "text": text, "vision": None}
        frames = q.get("frames")
        if frames is None:
            s["layout"], s["pixels"] = None, None
            return s
        frames = np.asarray(frames)
        idx = np.asarray(q.get("frame_indices", np.arange(len(frames))))
        span = int(q.get("span_len") or (int(idx.max()) + 1 if len(idx) else len(frames)))
        s["pixels"], s["layout"] = prepare_video(self.model.family, self.model.frame_spec, frames, idx,
                                                 q.get("fps"), span)  # fmt: skip
        return s

    def _text_only_batch(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        m = self.model
        prompts = [m.text_ids(m.prompt_text(None, None, s["prompt"], system=s["system"])) for s in samples]
        targets = [m.target_ids(s["text"]) if s["text"] is not None else [] for s in samples]
        pw = max(len(p) for p in prompts)
        prompt_ids = torch.full((len(prompts), pw), m.pad_id, dtype=torch.long)
        prompt_mask = torch.zeros_like(prompt_ids)
        for i, p in enumerate(prompts):
            prompt_ids[i, pw - len(p) :] = torch.tensor(p)
            prompt_mask[i, pw - len(p) :] = 1
        fulls = [p + t for p, t in zip(prompts, targets)]
        width = max(len(f) for f in fulls)
        ids = torch.full((len(fulls), width), m.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i, (p, t) in enumerate(zip(prompts, targets)):
            ids[i, : len(p) + len(t)] = torch.tensor(p + t)
            mask[i, : len(p) + len(t)] = 1
            if t:
                labels[i, len(p) : len(p) + len(t)] = torch.tensor(t)
        return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "input_ids": ids, "attention_mask": mask,
                "labels": labels}  # fmt: skip

    @torch.no_grad()
    def reply(self, questions: Sequence[Mapping[str, Any]], max_new_tokens: int = 32) -> list[str]:
        """Greedy replies, one per question (video questions batched together, text-only ones apart)."""
        out: list[str | None] = [None] * len(questions)
        groups = {True: [], False: []}
        for i, q in enumerate(questions):
            groups[q.get("frames") is None].append(i)
        m = self.model
        for blind, idx in groups.items():
            if not idx:
                continue
            samples = [self._sample(questions[i]) for i in idx]
            if blind:
                batch = self._text_only_batch(samples)
                gen = m.hf.generate(
                    input_ids=batch["prompt_ids"].to(m.device), attention_mask=batch["prompt_mask"].to(m.device),
                    max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=m.end_id, pad_token_id=m.pad_id,
                )  # fmt: skip
                texts = m.tokenizer.batch_decode(gen[:, batch["prompt_ids"].shape[1] :], skip_special_tokens=True)
                texts = [t.strip() for t in texts]
            else:
                texts = m.generate(m.collate(samples), max_new_tokens=max_new_tokens, num_beams=1)
            for i, t in zip(idx, texts):
                out[i] = t
        return [t or "" for t in out]

    @torch.no_grad()
    def option_logprobs(self, question: Mapping[str, Any], answers: Sequence[str]) -> list[float]:
        """``log P(answer | video, prompt)`` of each candidate answer text (summed over its tokens, the
        end-of-turn token not included): the options' scores for answering by likelihood."""
        m = self.model
        samples = [self._sample(question, text=a) for a in answers]
        if question.get("frames") is None:
            batch = self._text_only_batch(samples)
            logits = m.hf(input_ids=batch["input_ids"].to(m.device),
                          attention_mask=batch["attention_mask"].to(m.device), use_cache=False).logits  # fmt: skip
        else:
            batch = m.collate(samples)
            ids = batch["input_ids"].to(m.device)
            logits = m.hf(input_ids=ids, attention_mask=batch["attention_mask"].to(m.device), use_cache=False,
                          **m.mm_inputs(batch, ids)).logits  # fmt: skip
        labels = batch["labels"].to(logits.device)
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        tgt = labels[:, 1:]
        keep = tgt != -100
        # drop each answer's last target token: the end-of-turn token
        last = keep.long().cumsum(1) == keep.long().sum(1, keepdim=True)
        keep = keep & ~last
        picked = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return [float(v) for v in (picked * keep).sum(1)]
