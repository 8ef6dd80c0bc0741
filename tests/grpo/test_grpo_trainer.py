"""SignGRPOTrainer in one process: the TRL seams see the sign prefix, the reference policy is the SFT model,
only the new LoRA trains, and checkpoints are pickle-free translator checkpoints that resume exactly."""

from __future__ import annotations

import json
import os

import pytest
import torch
from grpo_helpers import grpo_rows, save_tiny_sft, tiny_args, tiny_gloss_sft

from ray_slt.models.checkpoint import load_translator
from ray_slt.training.grpo import MODEL_DIR, SignGRPOTrainer, hf_dataset


def _trainer(sft_uri, pairs, tmp_path, dev=None, **args):
    sft = load_translator(sft_uri)
    eval_ds = hf_dataset(grpo_rows(dev)) if dev else None
    return SignGRPOTrainer(sft, tiny_args(tmp_path / "out", **args), hf_dataset(grpo_rows(pairs)), eval_dataset=eval_ds)


def _lora(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def _completions(tokenizer, n: int, seed: int = 0):
    """TRL-style right-padded completion ids/mask of random lengths (some ending in eos)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 7, (n,), generator=g)
    ids = torch.full((n, int(lengths.max())), tokenizer.pad_token_id)
    for i, length in enumerate(lengths.tolist()):
        ids[i, :length] = torch.randint(5, len(tokenizer), (length,), generator=g)
        if i % 2:
            ids[i, length - 1] = tokenizer.eos_token_id
    mask = (torch.arange(ids.size(1))[None] < lengths[:, None]).long()
    return ids, mask


def _teacher_forced_logps(translator, rows, ids, mask, collate):
    """log p(completion token | sign, prompt, previous tokens) from the translator's own SFT forward."""
    batch = collate([{k: r[k] for k in ("gloss",)} for r in rows])
    batch = dict(batch, target_ids=ids, target_mask=mask.bool())
    with torch.no_grad():
        logits = translator(batch).logits
    out = torch.zeros(ids.shape)
    for b in range(ids.size(0)):
        n = int(mask[b].sum())
        logp = torch.log_softmax(logits[b, -n - 1 : -1].float(), -1)
        out[b, :n] = logp.gather(-1, ids[b, :n, None]).squeeze(-1)
    return out


def test_policy_and_reference_log_probs_see_the_sign_prefix(sft_checkpoint, phoenix_train, tmp_path):
    """The log-probs TRL's loss uses are exactly the translator's teacher-forced ones ([sign][prompt][tokens]),
    for the policy (merged SFT + new LoRA) and for the reference (new LoRA disabled = the SFT model)."""
    from trl.trainer.utils import use_adapter

    trainer = _trainer(sft_checkpoint, phoenix_train[:16], tmp_path)
    torch.manual_seed(1)
    for name, p in trainer.model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2)  # move the policy away from the reference
    trainer.model.eval()
    rows = grpo_rows(phoenix_train[:6])
    embeds, smask = trainer.sign_prefix(rows)
    ids, mask = _completions(trainer.processing_class, len(rows))
    prompt = torch.tensor([trainer.translator.prompt_ids.tolist()] * len(rows))
    input_ids = torch.cat([prompt, ids], 1)
    attention = torch.cat([torch.ones_like(prompt), mask], 1)
    with trainer._prefix(embeds, smask), torch.no_grad():
        policy, entropy, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention, ids.size(1), batch_size=4, compute_entropy=True
        )
        with use_adapter(trainer.model, adapter_name=None):
            reference, _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model, input_ids, attention, ids.size(1), batch_size=4
            )
    collate = trainer.translator.collator()
    want_policy = _teacher_forced_logps(trainer.translator, rows, ids, mask, collate)
    sft = load_translator(sft_checkpoint)  # un-merged SFT LoRA
    want_reference = _teacher_forced_logps(sft, rows, ids, mask, sft.collator())
    m = mask.bool()
    assert torch.allclose(policy[m], want_policy[m], atol=1e-4)
    assert torch.allclose(reference[m], want_reference[m], atol=1e-4)
    assert (policy[m] - reference[m]).abs().max() > 1e-2  # the two policies do differ here
    assert entropy.shape == ids.shape and bool((entropy[m] > 0).all())
    # the prefix matters: other glosses give other probabilities for the same tokens
    other, other_mask = trainer.sign_prefix(grpo_rows(phoenix_train[6:12]))
    with trainer._prefix(other, other_mask), torch.no_grad():
        shifted, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention, ids.size(1))
    assert (shifted[m] - policy[m]).abs().max() > 1e-3


def test_sampling_continues_the_sign_prefix(sft_checkpoint, phoenix_train, tmp_path):
    """TRL's generation path (greedy here) produces the translator's own translations of the same glosses."""
    trainer = _trainer(sft_checkpoint, phoenix_train[:16], tmp_path, max_completion_length=6)
    trainer.model.eval()
    rows = grpo_rows(phoenix_train[:5])
    embeds, smask = trainer.sign_prefix(rows)
    trainer.generation_config.do_sample = False
    with trainer._prefix(embeds, smask):
        completions, logprobs = trainer._generate_single_turn(None, None, {}, 1)
    batch = trainer.translator.collator()([{"gloss": r["gloss"]} for r in rows])
    want = trainer.translator.generate_ids(batch, num_beams=1, max_new_tokens=6)
    eos = trainer.processing_class.eos_token_id
    for got, row in zip(completions, want.tolist()):
        n = row.index(eos) + 1 if eos in row else len(row)
        assert got == row[:n]  # up to and including the first eos, as TRL keeps them
    assert logprobs is None


def test_grpo_steps_train_only_the_new_lora(sft_checkpoint, phoenix_train, tmp_path):
    trainer = _trainer(sft_checkpoint, phoenix_train[:16], tmp_path, max_steps=2)
    frozen = {k: v.clone() for k, v in trainer.translator.state_dict().items() if "lora_" not in k}
    lora0 = _lora(trainer.model)
    assert lora0 and all(float(v.abs().sum()) == 0 for k, v in lora0.items() if "lora_B" in k)  # a fresh adapter
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora0} == {"q_proj", "v_proj"}
    r = next(iter(trainer.model.peft_config.values()))
    assert (r.r, r.lora_alpha, r.lora_dropout) == (64, 128, 0.05)  # the paper's stage-3 adapter
    trainer.train()
    lora1 = _lora(trainer.model)
    assert any(not torch.equal(lora0[k], lora1[k]) for k in lora0)
    after = trainer.translator.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)  # base LM, encoder, projector untouched
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 2
    for key in ("rewards/bleu4/mean", "rewards/rouge_l/mean", "kl", "reward_std", "completions/mean_length"):
        assert key in logs[0]
    # R = 0.5 BLEU-4 + 0.5 ROUGE-L (TRL's weighted sum of the two reward functions)
    parts = logs[0]["rewards/bleu4/mean"], logs[0]["rewards/rouge_l/mean"]
    assert logs[0]["reward"] == pytest.approx(0.5 * parts[0] + 0.5 * parts[1])


def _no_pickle(directory) -> None:
    for root, _, files in os.walk(directory):
        for f in files:
            assert not f.endswith((".pt", ".pth", ".bin", ".pkl", ".pickle")), os.path.join(root, f)


def test_save_and_resume_round_trip(sft_checkpoint, phoenix_train, phoenix_dev, tmp_path):
    """4 steps straight == 2 steps, a checkpoint, a new process-like trainer resuming for 2 more; the checkpoint
    is a translator checkpoint (what ray-slt eval loads) plus safetensors/JSON training state."""
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2,
                  per_device_eval_batch_size=8, num_generations_eval=1)  # fmt: skip
    straight = _trainer(sft_checkpoint, phoenix_train[:24], tmp_path / "a", dev=phoenix_dev[:8], **common)
    straight.train()
    ckpt = tmp_path / "a" / "out" / "checkpoint-2"
    assert sorted(os.listdir(ckpt)) == [
        "dev_predictions.jsonl", "grpo_args.json", MODEL_DIR, "optimizer.json", "optimizer.safetensors", "rng",
        "scheduler.json", "scheduler.safetensors", "trainer_state.json",
    ]  # fmt: skip
    _no_pickle(tmp_path / "a")
    preds = [json.loads(line) for line in (ckpt / "dev_predictions.jsonl").read_text().splitlines()]
    assert [p["sample_id"] for p in preds] == sorted(r["name"] for r in phoenix_dev[:8])
    assert any("dev_bleu4" in h for h in straight.state.log_history)

    resumed = _trainer(sft_checkpoint, phoenix_train[:24], tmp_path / "b", dev=phoenix_dev[:8], **common)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == 4
    a, b = _lora(straight.model), _lora(resumed.model)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    steps = [h["step"] for h in resumed.state.log_history if "reward" in h]
    assert steps == [1, 2, 3, 4]  # the log history (reward curve) continues across the resume
    # the saved policy is the trainer's policy: same translations from the loaded checkpoint
    loaded = load_translator(str(tmp_path / "a" / "out" / "checkpoint-4" / MODEL_DIR))
    assert loaded.cfg.lora.r == 64 and loaded.cfg.lm == "tiny:qwen3"
    batch = loaded.collator()([{"gloss": p["gloss"]} for p in phoenix_dev[:6]])
    straight.model.eval()
    assert loaded.generate(batch, num_beams=1) == straight.translator.generate(batch, num_beams=1)


def test_a_named_lm_is_merged_once_and_referenced(tmp_path, phoenix_train):
    """For an LM loaded from a directory (not a tiny random one), the merged SFT weights go to one directory
    that every GRPO checkpoint names as its LM; the loaded checkpoint is the trained policy."""
    from ray_slt.models.checkpoint import MANIFEST, save_translator
    from ray_slt.models.sft import build_translator
    from ray_slt.models.tiny import build_tiny_lm, train_tokenizer

    rows = phoenix_train[:60]
    cfg = tiny_gloss_sft()
    tokenizer = train_tokenizer([r["text"] for r in rows], 600, "wordpiece")
    lm_dir = tmp_path / "lm"  # a "named" LM: a directory with weights and tokenizer, as a hub model would be
    build_tiny_lm(tokenizer, "qwen3", cfg.tiny).save_pretrained(lm_dir)
    tokenizer.save_pretrained(lm_dir)
    model = build_translator(tiny_gloss_sft(lm=str(lm_dir)), glosses=[r["gloss"] for r in rows])
    for name, p in model.lm.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2)  # a non-trivial SFT adapter to merge
    save_translator(model, str(tmp_path / "sft"))
    merged = str(tmp_path / "run" / "merged_base")
    trainer = SignGRPOTrainer(
        load_translator(str(tmp_path / "sft")),
        tiny_args(tmp_path / "out", max_steps=1, save_strategy="steps", save_steps=1),
        hf_dataset(grpo_rows(rows[:8])),
        merged_lm=merged,
    )
    trainer.train()
    assert os.path.exists(os.path.join(merged, MANIFEST))
    out = tmp_path / "out" / "checkpoint-1" / MODEL_DIR
    assert json.loads((out / "translator.json").read_text())["config"]["lm"] == merged
    assert not (out / "base_lm").exists()
    loaded = load_translator(str(out))
    batch = loaded.collator()([{"gloss": r["gloss"], "text": r["text"]} for r in rows[:4]])
    trainer.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(batch).logits, trainer.translator(batch).logits, atol=1e-4)
    sft = load_translator(str(tmp_path / "sft"))
    with torch.no_grad(), loaded.lm.disable_adapter():  # without the new adapter: the merged SFT model
        assert torch.allclose(sft(batch).logits, loaded(batch).logits, atol=1e-4)


@pytest.mark.parametrize("disable", [False, True])
def test_disable_dropout_makes_training_log_probs_deterministic(phoenix_train, tmp_path, disable):
    """An SFT translator trained with dropout in its LM (attention 0.1, input embeddings 0.2): with TRL's
    ``disable_dropout`` two log-probability passes in training mode agree exactly (the attention layers' float
    rate is zeroed too, which TRL's own switch leaves on); without it they differ, as dropout should make them."""
    rows = phoenix_train[:60]
    sft = save_tiny_sft(str(tmp_path / "sft"), rows, tiny={"dropout": 0.1}, embed_dropout=0.2)
    trainer = _trainer(sft, rows[:16], tmp_path, disable_dropout=disable)
    rates = [m.attention_dropout for m in trainer.model.modules() if hasattr(m, "attention_dropout")]
    assert rates and all(r == (0.0 if disable else 0.1) for r in rates), rates
    trainer.model.train()
    batch = grpo_rows(rows[:6])
    embeds, smask = trainer.sign_prefix(batch)
    ids, mask = _completions(trainer.processing_class, len(batch))
    prompt = torch.tensor([trainer.translator.prompt_ids.tolist()] * len(batch))
    input_ids, attention = torch.cat([prompt, ids], 1), torch.cat([torch.ones_like(prompt), mask], 1)
    with trainer._prefix(embeds, smask), torch.no_grad():
        a, b = (trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention, ids.size(1))[0]
                for _ in range(2))  # fmt: skip
    m = mask.bool()
    if disable:
        assert torch.equal(a[m], b[m])
    else:
        assert (a[m] - b[m]).abs().max() > 1e-4


def test_grpo_from_a_gpt2_sft_trains_a_lora_on_its_fused_attention(phoenix_train, tmp_path):
    """The PHOENIX recipe's LM is a tiny GPT-2 (conf/train/phoenix_gloss2text.yaml), whose query, key and value
    projections are one module, ``c_attn`` (conf/train/grpo_phoenix_gloss2text.yaml's LoRA target): GRPO adds the
    adapter there, trains it and nothing else."""
    from ray_slt.models.config import LoraSettings

    rows = phoenix_train[:60]
    sft = save_tiny_sft(str(tmp_path / "sft"), rows, lm="tiny:gpt2", lm_training="full", tiny={"dropout": 0.1})
    lora = LoraSettings(target_modules=["c_attn"], r=8, alpha=16, dropout=0.0)
    trainer = SignGRPOTrainer(load_translator(sft), tiny_args(tmp_path / "out", disable_dropout=True),
                              hf_dataset(grpo_rows(rows[:16])), lora=lora)  # fmt: skip
    assert type(trainer.model.get_base_model()).__name__ == "GPT2LMHeadModel"
    frozen = {k: v.clone() for k, v in trainer.translator.state_dict().items() if "lora_" not in k}
    lora0 = _lora(trainer.model)
    assert lora0 and {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora0} == {"c_attn"}
    trainer.train()
    lora1 = _lora(trainer.model)
    assert any(not torch.equal(lora0[k], lora1[k]) for k in lora0)
    after = trainer.translator.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
