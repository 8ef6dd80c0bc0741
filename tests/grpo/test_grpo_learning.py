"""Learning test: from one SFT checkpoint, GRPO raises the held-out expected reward by a wide margin, while the
same number of steps of continued SFT does not.

The task is one where sentence-level RL has something to add to maximum likelihood. K=4 real PHOENIX-2014T
gloss sequences map to their real German sentences, but the training targets are noisy: half the time the
middle word of the sentence is replaced by one of 8 weather words. Maximum likelihood converges to that target
distribution (it samples the clean sentence about half the time, a corrupted one otherwise), and more SFT
cannot change that. The expected reward R = 0.5 BLEU-4 + 0.5 ROUGE-L against a reference drawn from the same
noisy distribution is highest for the clean sentence, which shares most n-grams with every variant (about
0.78 for a policy that always says it, about 0.67 for the SFT policy). GRPO, rewarded against noisy training
references, moves the policy there. The noise sits at one position, so SFT reaches its plateau in ~100 steps
and the test is short.

- SFT: gloss encoder -> projector -> tiny random Qwen3 (2 layers, width 64) with LoRA on all projections,
  ``SFT_STEPS`` steps of 16 fresh noisy pairs; saved as a translator checkpoint that both arms start from.
- Arms, ``STEPS`` optimizer steps each: continued SFT (the same run carries on: its optimizer state, learning
  rate and fresh noisy pairs) and GRPO (:class:`SignGRPOTrainer` from the saved checkpoint: merged SFT LoRA +
  the paper's new q/v LoRA, r=64, alpha=128; 4 inputs x N=8 samples per step at ``LR``, decaying linearly to 0
  (the Trainer's default schedule); KL 0.04; rewards against noisy training references).
- Held-out metric: the expected reward of the policy: ``SAMPLES`` sampled translations per input (temperature 1,
  the policy GRPO optimises; fixed sampling seed), each scored against every variant of its reference weighted
  by its probability (exact over the references, so only the policy's samples are random).

Margins asserted: GRPO raises the held-out expected reward by at least ``MARGIN`` over the SFT checkpoint and
by at least ``MARGIN`` (0.04) more than continued SFT; continued SFT's change stays below ``MARGIN``. Observed on
the development machine (expected reward, clean-sentence share of samples in brackets), the same in every run:

- seed 0: SFT checkpoint 0.638 (0.46); +120 SFT steps 0.596 (0.31); +120 GRPO steps 0.734 (0.85);
- seed 1: SFT checkpoint 0.643 (0.47); +120 SFT steps 0.595 (0.29); +120 GRPO steps 0.741 (0.86).

Why this recipe (measured, each from the same SFT checkpoints; the SFT arm and the start repeat exactly across
machines, GRPO's sampled trajectory does not, since it depends on the machine's floating-point results):

- A constant learning rate let the policy climb and then fall back: seed 1 at 5e-3 constant, evaluated every
  10 steps, went 0.68, ..., 0.734 at step 60, then 0.689 and 0.646 at step 80, back at its start (earlier this
  machine had measured 0.743 at step 80 with the same code; a later fresh install and the CI, 0.653). Decaying
  the rate linearly, the curves rise steadily and stay: seeds 0-3 gained +0.055, +0.064, +0.075, +0.072 in 80
  steps (256 samples per input); with 120 steps seeds 0-3 gain +0.096, +0.098, +0.106, +0.096, 2.4 to 2.6 times
  the margin (seeds 2 and 3 checked once; the suite runs 0 and 1). A higher peak (1e-2, linear) dipped to 0.50
  before recovering (seed 0); 1e-2 constant for 60 steps collapses.
- 16 samples per input made the estimate itself noisy: the same start measured 0.60-0.67 with four sampling
  seeds. 128 per input narrow that several-fold at the cost of a second of generation.
- The tokenizer is byte-level BPE, whose training is deterministic: with WordPiece (trained afresh in each
  process, and not deterministic across processes) the SFT start varied from 0.65 to 0.69 and about one run in
  five failed.
- With 60% noise instead of 50% the single noisy reference per group drowns the signal in 40 steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from grpo_helpers import tiny_args, tiny_gloss_sft
from transformers import GenerationConfig

from ray_slt.models.checkpoint import load_translator, save_translator
from ray_slt.models.config import LoraSettings
from ray_slt.models.sft import build_translator, param_groups
from ray_slt.training.grpo import SignGRPOTrainer, hf_dataset
from ray_slt.training.rewards import bleu_rouge

K, SFT_STEPS, STEPS, LR, MARGIN = 4, 100, 120, 5e-3, 0.04
P_NOISE, SAMPLES = 0.5, 128
FILL_WORDS = ["heute", "morgen", "regen", "sonne", "wind", "norden", "süden", "schnee"]
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Task:
    """K gloss -> sentence pairs; a target is the clean sentence (1 - P_NOISE) or one of 8 corrupted variants."""

    def __init__(self, pairs):
        chosen, seen = [], set()
        for p in pairs:
            words = p["text"].split()
            fits = 5 <= len(words) <= 6 and len(p["gloss"].split()) >= 3 and not set(words) & set(FILL_WORDS)
            if fits and p["text"] not in seen:
                seen.add(p["text"])
                chosen.append(p)
        self.pairs = chosen[:K]
        self.probs = np.array([1 - P_NOISE] + [P_NOISE / len(FILL_WORDS)] * len(FILL_WORDS))

    @staticmethod
    def variants(text: str) -> list[str]:
        """The clean sentence, then the sentence with its middle word replaced by each weather word."""
        w, m = text.split(), len(text.split()) // 2
        return [text] + [" ".join([*w[:m], f, *w[m + 1 :]]) for f in FILL_WORDS]

    def batch(self, n: int, seed: int) -> list[dict[str, str]]:
        rng = np.random.default_rng(seed)
        out = []
        for i in range(n):
            pair = self.pairs[i % K]
            v = self.variants(pair["text"])
            out.append({"gloss": pair["gloss"], "text": v[rng.choice(len(v), p=self.probs)]})
        return out

    def expected_reward(self, model) -> tuple[float, float]:
        """(expected R of the policy's sampled translations against the reference distribution, fraction of
        samples that are the clean sentence)."""
        model.eval()
        tok = model.tokenizer
        batch = model.collator()([{"gloss": p["gloss"]} for p in self.pairs])
        with torch.no_grad():
            prefix, mask = model.sign_embeddings(batch)
            inputs = model._layout(prefix, mask)
            inputs.pop("position_ids")
            gen = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                   num_return_sequences=SAMPLES, eos_token_id=tok.eos_token_id,
                                   pad_token_id=tok.pad_token_id)  # fmt: skip
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1234)
                ids = model.lm.generate(**inputs, generation_config=gen)
        hyps = [h.strip() for h in tok.batch_decode(ids, skip_special_tokens=True)]
        total, clean = 0.0, 0
        for i, pair in enumerate(self.pairs):
            mine, refs = hyps[i * SAMPLES : (i + 1) * SAMPLES], self.variants(pair["text"])
            r = np.array(bleu_rouge([h for h in mine for _ in refs], [v for _ in mine for v in refs]))
            total += float((r.reshape(len(mine), len(refs)) @ self.probs).mean())
            clean += sum(h == pair["text"] for h in mine)
        return total / K, clean / len(hyps)


class SFT:
    """Supervised training on fresh noisy pairs (16 per step), one optimizer for the whole run."""

    def __init__(self, model, task: Task):
        self.model, self.task = model, task
        self.collate = model.collator()
        self.opt = torch.optim.AdamW(param_groups(model))
        self.seen = 0

    def steps(self, n: int) -> None:
        self.model.train()
        for _ in range(n):
            loss = self.model(self.collate(self.task.batch(16, seed=self.seen))).loss
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.seen += 1
        self.model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_grpo_beats_continued_sft_on_held_out_reward(phoenix_train, tmp_path, seed):
    task = Task(phoenix_train)
    cfg = tiny_gloss_sft(
        tiny={"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 128, "init_std": 0.3},
        tokenizer={"kind": "bpe", "vocab_size": 600},
        lora={"target_modules": ALL_PROJECTIONS, "dropout": 0.0},
        lm_training="lora",  # tuned as LoRA SFT (the tiny LM stands in for a pretrained one)
        lr_llm=1e-2,
        lr_projector=1e-2,
        instruction="Translate.",
        max_new_tokens=12,
    )
    texts = [p["text"] for p in task.pairs] + [" ".join(FILL_WORDS)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sft = SFT(build_translator(cfg, texts=texts, glosses=[p["gloss"] for p in task.pairs], seed=seed), task)
        sft.steps(SFT_STEPS)
        save_translator(sft.model, str(tmp_path / "sft"))
        start, start_clean = task.expected_reward(sft.model)
        sft.steps(STEPS)  # arm 1: the same SFT run carries on (optimizer state, learning rate, fresh pairs)
    after_sft, after_sft_clean = task.expected_reward(sft.model)

    # arm 2: GRPO, STEPS steps of 4 inputs x 8 samples, rewards against noisy training references
    pool = [{"prompt": "p", "reference": s["text"], "gloss": s["gloss"], "sample_id": f"s{n:04d}", "lang": "de"}
            for n, s in enumerate(task.batch(4 * STEPS, seed=20_000 + seed))]  # fmt: skip
    args = tiny_args(tmp_path / "grpo", per_device_train_batch_size=32, num_generations=8, max_completion_length=12,
                     max_steps=STEPS, learning_rate=LR, lr_scheduler_type="linear", logging_steps=10, seed=seed,
                     data_seed=seed)  # fmt: skip
    lora = LoraSettings(target_modules=["q_proj", "v_proj"], r=64, alpha=128, dropout=0.0)
    trainer = SignGRPOTrainer(load_translator(str(tmp_path / "sft")), args, hf_dataset(pool), lora=lora)
    trainer.train()
    after_grpo, after_grpo_clean = task.expected_reward(trainer.translator)

    print(
        f"held-out expected reward (clean-sentence share of samples): SFT checkpoint {start:.3f} ({start_clean:.2f}); "
        f"+{STEPS} SFT steps {after_sft:.3f} ({after_sft_clean:.2f}); "
        f"+{STEPS} GRPO steps {after_grpo:.3f} ({after_grpo_clean:.2f})"
    )
    assert after_grpo - start >= MARGIN
    assert after_grpo - after_sft >= MARGIN
    assert after_sft - start < MARGIN
