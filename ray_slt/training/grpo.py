"""RVLF stage 3: GRPO of the SFT translator with TRL, on Ray Train (``stage: grpo``).

Launch (config and its docs: ``conf/grpo_*.yaml``, :mod:`ray_slt.training.grpo_config`)::

    ray-slt train conf/train/grpo_phoenix_gloss2text.yaml grpo.init=runs/phoenix_gloss2text
    ray job submit --working-dir . -- python jobs/grpo.py conf/train/grpo_phoenix_gloss2text.yaml

What it does (paper Sec. 3.3 and supplement): load the SFT translator, merge its LoRA into the LM (an LM trained in
full needs no merge), add a new LoRA (q_proj/v_proj, r=64, alpha=128, dropout 0.05), then for each input sample N
translations from the policy, score each with R = lambda * BLEU-4 + (1 - lambda) * ROUGE-L
(:mod:`ray_slt.training.rewards`), normalise the rewards within each group of N, and minimise TRL's clipped-ratio
GRPO loss with a KL penalty to the reference policy. The reference policy is the merged SFT model: TRL computes its
log-probabilities by disabling the new adapter (``use_adapter(model, None)``), so no second copy of the LM is held.
The sign encoder, DINOv2 projections and projector stay frozen at their SFT values (the paper trains LoRA only
here).

**Where TRL is extended, and why.** TRL's ``GRPOTrainer`` turns a text prompt into token ids and feeds
``input_ids`` to ``generate`` and to every log-probability pass. Our prompt is the *sign-feature sequence,
projected into the LM's embedding space and prepended* to the instruction's token embeddings
(:class:`~ray_slt.models.sft.SignTranslator`), which no token id can express. :class:`SignGRPOTrainer`
subclasses ``GRPOTrainer`` and overrides only the methods that build model inputs:

- ``_generate_and_score_completions``: wraps TRL's (unchanged) method. Before it runs, the rows of the
  generation batch (their dataset columns: glosses or pose/DINOv2 features) are collated by the translator's
  collator and projected once to the sign prefix; TRL's method then samples, scores with the reward
  functions, normalises advantages per group and computes old/reference log-probs exactly as for text,
  calling the two overrides below. The prefix is added to TRL's output batch (``sign_embeds`` /
  ``sign_mask``), so TRL's own shuffling and splitting into micro-batches keep it aligned with its rows;
- ``_compute_loss``: makes each micro-batch's prefix current, then runs TRL's loss unchanged (clipped ratio,
  KL, ``loss_type``, entropy/masking options, all metrics);
- ``_generate_single_turn``: samples completions with ``generate(inputs_embeds=[sign][prompt])`` (the SFT
  layout, :meth:`SignTranslator._layout`) instead of ``generate(input_ids=prompt)``;
- ``_get_per_token_logps_and_entropies``: scores completions with ``inputs_embeds = [sign][prompt]
  [completion]`` and explicit position ids (real positions only, as in SFT) through TRL's fused LM head;
- ``_tokenize_prompts``: the prompt ids are the translator's (its instruction, tokenised as in SFT).

``prepare_inputs``/``_prepare_inputs`` stays TRL's (the prefix rides in the batch it buffers), and
``model_init_kwargs`` is no seam at all (it only builds a text LM from a name). Generation through vLLM or
continuous batching takes token ids and is refused (:data:`~ray_slt.training.grpo_config.UNSUPPORTED`).

Two Trainer behaviours are replaced for the project's contracts: ``evaluate`` decodes the dev split
deterministically (beam/greedy, as ``ray-slt eval`` does) and scores it with
:func:`ray_slt.eval.metrics.corpus_scores` (``dev_bleu4``, ``dev_rouge_l``, ..., plus ``dev_reward``), and
checkpoints are written without pickle: the model as a translator checkpoint (``model/``, the format of
:mod:`ray_slt.models.checkpoint` that ``ray-slt eval`` loads), optimizer/scheduler/RNG state as
safetensors + JSON (:mod:`ray_slt.training.state`), plus TRL's ``trainer_state.json``.

**On Ray Train**: the ``grpo`` recipe (:class:`GRPORecipe`) behind the one driver of every stage
(:func:`ray_slt.training.run.run_training`), :func:`grpo_train_func` on each worker: every worker builds the
same trainer (same seed, same data order; TRL's sampler gives each rank its slice of each generation batch and
gathers rewards across ranks for the group statistics), DDP over gloo/NCCL through Accelerate.
``ray.train.huggingface.transformers.prepare_trainer`` wraps the trainer and :class:`RayReporter` reports every
Trainer checkpoint with the latest metrics; Ray keeps the best on ``dev_bleu4``. A Ray checkpoint is the
Trainer checkpoint, with the layout every recipe writes (``model/`` + ``train_state.json``)::

    checkpoint_e{epoch}_s{step}/model/                  translator (merged SFT base for tiny LMs + new LoRA)
    checkpoint_e{epoch}_s{step}/train_state.json        stage, step, protocol, config (what ray-slt eval reads)
    checkpoint_e{epoch}_s{step}/trainer_state.json      TRL/Trainer state: step, log history (reward curve)
    checkpoint_e{epoch}_s{step}/optimizer.json|.safetensors   AdamW state; scheduler.json|.safetensors
    checkpoint_e{epoch}_s{step}/rng/rank-{r}.json|.safetensors RNG state of each rank
    checkpoint_e{epoch}_s{step}/dev_predictions.jsonl   the dev evaluation of this step

Resuming (a re-run with the same ``trainer.storage``/``trainer.name``, or ``trainer.resume_from``) restores
the adapter, optimizer, scheduler, RNG and step, and TRL regenerates completions from there. For an LM that
is not a tiny random one, the merged SFT weights are written once to ``{run_dir}/merged_base`` and the
checkpoints' config names that directory as their LM. Curves go to ``{run_dir}/metrics/train.jsonl`` and
``dev.jsonl``; ``run.json`` in the run directory summarises the run (best checkpoint, throughput).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.models import unwrap_model_for_generation

from ray_slt import storage
from ray_slt.errors import ConfigError, DataError, RaySltError
from ray_slt.eval.protocols import TranslationProtocol
from ray_slt.features.source import FEATURE_COLUMNS, POSE_COLUMNS, decode_rows
from ray_slt.models.batch import to_device
from ray_slt.models.checkpoint import load_translator, save_translator
from ray_slt.models.config import TINY_SEQ2SEQ, SFTConfig
from ray_slt.models.registry import MANIFEST, MODEL_DIR, STATE_FILE
from ray_slt.models.sft import SignTranslator, is_tiny, lora_config
from ray_slt.training.config import TrainConfig
from ray_slt.training.curves import Curves, finite
from ray_slt.training.grpo_config import GRPOSection
from ray_slt.training.recipe import Recipe, checkpoint_name
from ray_slt.training.rewards import RewardSettings, reward_functions
from ray_slt.training.state import load_tree, save_tree

log = logging.getLogger("ray_slt.train")

PREDICTIONS_FILE = "dev_predictions.jsonl"
MERGED_BASE = "merged_base"


# ------------------------------------------------------------------------------------------ the trainer
class SignGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` for a :class:`~ray_slt.models.sft.SignTranslator` (see the module docstring).

    Args:
        sft: the SFT translator to start from (its LoRA is merged here; the object is consumed).
        args: TRL's ``GRPOConfig`` (``per_device_train_batch_size`` counts completions).
        train_dataset: a ``datasets.Dataset`` with ``prompt`` (any text, kept for logs), ``reference`` (the
            raw target sentence), optional ``lang`` and ``sample_id``, and the translator's inputs (``gloss``,
            or pose/feature columns as the feature store writes them).
        eval_dataset: the same for the dev split (decoded by :meth:`evaluate`), or None.
        lora: the new adapter (default: the paper's, :class:`~ray_slt.training.grpo_config.GRPOSection`).
        reward: reward weights and the short-sentence rule (:class:`~ray_slt.training.rewards.RewardSettings`).
        merged_lm: a directory (local or remote) for the merged SFT LM, written once by rank 0 and named as
            the ``lm`` of saved checkpoints; required unless the LM is a tiny random one (whose merged
            weights every checkpoint carries).
        lang: the targets' language for BLEU (None: the rows' ``lang``); num_beams / max_new_tokens: dev
            decoding (None: the SFT config's).
        train_config: the run's TrainConfig (as a dict); when given, checkpoints carry ``train_state.json``
            (stage, step, config), which ``ray-slt eval`` reads to find the model and the data.
    """

    def __init__(
        self,
        sft: SignTranslator,
        args: GRPOConfig,
        train_dataset,
        eval_dataset=None,
        lora=None,
        reward: RewardSettings | None = None,
        merged_lm: str | None = None,
        lang: str | None = None,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        callbacks: Sequence[TrainerCallback] | None = None,
        train_config: dict[str, Any] | None = None,
    ):
        if args.use_vllm or args.use_transformers_continuous_batching:
            raise ConfigError("GRPO on sign features generates from embeddings: vLLM/continuous batching unsupported")
        lora = lora or GRPOSection.model_fields["lora"].default_factory()
        cfg = _export_config(sft.cfg, lora, merged_lm)
        funcs, weights = reward_functions(reward)
        if args.reward_weights is None:
            args.reward_weights = weights
        elif len(args.reward_weights) != len(funcs):
            raise ConfigError(f"reward_weights must have {len(funcs)} entries (bleu4, rouge_l)")
        # the reference policy: W + the SFT LoRA's delta (or the SFT LM itself when it was trained in full)
        base = sft.lm.merge_and_unload() if sft.cfg.uses_lora else sft.lm
        if merged_lm is not None and not is_tiny(sft.cfg) and args.should_save:
            save_merged_base(base, sft.tokenizer, merged_lm)  # what saved checkpoints name as their LM
        frozen = {k: v for k, v in sft.state_dict().items() if not k.startswith("lm.")}
        self._sign_prefix: tuple[torch.Tensor, torch.Tensor] | None = None
        self._dev_predictions: tuple[int, list[dict[str, Any]]] | None = None
        self.lang = lang
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.reward_settings = reward or RewardSettings()
        self.train_config = train_config
        super().__init__(
            model=base,
            reward_funcs=funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=sft.tokenizer,
            peft_config=lora_config(cfg),  # TRL wraps the merged LM with the new adapter
            callbacks=list(callbacks or []),
        )
        # The translator around the policy: same sign encoder/projector (frozen), LM = TRL's PEFT model.
        translator = SignTranslator(cfg, sft.encoder, self.model, sft.tokenizer, sft.gloss_tokenizer)
        missing, unexpected = translator.load_state_dict(frozen, strict=False)
        if unexpected or any(not k.startswith("lm.") for k in missing):
            raise RaySltError(f"SFT modules do not fit the translator: missing {missing[:5]}, unexpected {unexpected}")
        for name, p in translator.named_parameters():
            if not name.startswith("lm."):
                p.requires_grad_(False)
        for module in (translator.encoder, translator.projector, translator.face_proj, translator.hand_proj):
            if module is not None:
                module.eval()  # frozen: inference behaviour (no dropout), whatever mode the LM is in
        self.translator = translator.to(self.args.device)
        self._collate = translator.collator()
        if args.disable_dropout:  # (the translator's embed_dropout acts only in its forward, which GRPO never calls)
            disable_attention_dropout(self.model)

    # -- sign prefix -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _prefix(self, embeds: torch.Tensor, mask: torch.Tensor) -> Iterator[None]:
        previous, self._sign_prefix = self._sign_prefix, (embeds, mask)
        try:
            yield
        finally:
            self._sign_prefix = previous

    def sign_prefix(self, rows: Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected sign sequences [B, T', E] and their masks [B, T'] of dataset rows (no gradient)."""
        batch = to_device(self._collate(decode_rows(list(rows))), self.args.device)
        with torch.no_grad():
            return self.translator.sign_embeddings(batch)

    def _prompt_layout(self, embeds: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Left-padded ``[sign][instruction]`` embeddings and attention mask (the SFT layout)."""
        out = self.translator._layout(embeds, mask)
        out.pop("position_ids")
        return out

    # -- TRL seams -----------------------------------------------------------------------------------------
    def _tokenize_prompts(self, prompts: list):
        ids = self.translator.prompt_ids.tolist()
        return [list(ids) for _ in prompts], None, {}

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        embeds, mask = self.sign_prefix(inputs)
        with self._prefix(embeds, mask):
            out = super()._generate_and_score_completions(inputs)
        out["sign_embeds"], out["sign_mask"] = embeds, mask
        return out

    def _compute_loss(self, model, inputs):
        with self._prefix(inputs["sign_embeds"], inputs["sign_mask"]):
            return super()._compute_loss(model, inputs)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self._sign_prefix is None:
            raise RuntimeError("no sign prefix is set for this generation batch")
        if images is not None or multimodal_fields:
            raise ValueError("sign translation prompts carry no images")
        embeds, mask = self._sign_prefix
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            # from inputs_embeds alone, generate returns the new tokens only
            ids = unwrapped.generate(**self._prompt_layout(embeds, mask), generation_config=self.generation_config)
        # keep each completion up to and including its first end-of-sequence token (as TRL does)
        is_eos = torch.isin(ids, torch.tensor(self.eos_token_ids, device=ids.device))
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(ids[:, 0], ids.size(1)))
        keep = torch.arange(ids.size(1), device=ids.device)[None] <= first[:, None]
        return [row[m].tolist() for row, m in zip(ids.cpu(), keep.cpu())], None

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **multimodal,
    ):
        """TRL's contract (log-probs of the last ``logits_to_keep`` tokens of ``input_ids``, optionally
        entropies and the MoE aux loss), with the prompt tokens replaced by ``[sign][instruction]``."""
        if self._sign_prefix is None:
            raise RuntimeError("no sign prefix is set for this batch")
        if any(v is not None for v in multimodal.values()):
            raise ValueError(
                f"unexpected multimodal inputs {sorted(k for k, v in multimodal.items() if v is not None)}"
            )
        embeds, smask = self._sign_prefix
        if embeds.size(0) != input_ids.size(0):
            raise RuntimeError(f"sign prefix for {embeds.size(0)} rows, batch of {input_ids.size(0)}")
        embed_tokens = self.accelerator.unwrap_model(model).get_input_embeddings()
        batch_size = batch_size or input_ids.size(0)
        logps, entropies, aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            prompt = self._prompt_layout(embeds[start:end], smask[start:end])
            comp_ids = input_ids[start:end, -logits_to_keep:]
            comp_mask = attention_mask[start:end, -logits_to_keep:].to(prompt["attention_mask"].dtype)
            attn = torch.cat([prompt["attention_mask"], comp_mask], dim=1)
            inputs = {
                "inputs_embeds": torch.cat([prompt["inputs_embeds"], embed_tokens(comp_ids)], dim=1),
                "attention_mask": attn,
                "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),
            }
            if compute_aux_loss:
                inputs["output_router_logits"] = True
            labels = torch.cat(
                [torch.full_like(prompt["attention_mask"], -100), comp_ids.masked_fill(comp_mask == 0, -100)], dim=1
            )
            with self.accelerator.autocast():
                out = model(**inputs, labels=labels, fused_lm_head=True)
            logps.append(out.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(out.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                aux.append(out.aux_loss)
        return (
            torch.cat(logps, dim=0),
            torch.cat(entropies, dim=0) if compute_entropy else None,
            torch.stack(aux).mean() if compute_aux_loss else None,
        )

    # -- dev evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "dev") -> dict[str, float]:
        """Deterministic decoding of the dev rows (split over the ranks), scored with the shared metrics:
        ``dev_bleu1..4``, ``dev_rouge_l``, ``dev_chrf``, and ``dev_reward`` (mean R of the decoded output)."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            return {}
        rank, world = self.args.process_index, self.args.world_size
        mine = [dataset[i] for i in range(rank, len(dataset), world)]
        was_training = self.model.training
        self.model.eval()
        local = []
        bs = self.args.per_device_eval_batch_size
        for i in range(0, len(mine), bs):
            rows = mine[i : i + bs]
            batch = to_device(self._collate(decode_rows(rows)), self.args.device)
            hyps = self.translator.generate(batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens)
            for n, (row, hyp) in enumerate(zip(rows, hyps)):
                sid = str(row.get("sample_id", f"{rank}-{i + n}"))
                ref, lang = row["reference"], row.get("lang")
                local.append({"sample_id": sid, "hypothesis": hyp, "reference": ref, "lang": lang})
        if was_training:
            self.model.train()
        preds = sorted(gather_object(local) if world > 1 else local, key=lambda p: p["sample_id"])
        hyps, refs = [p["hypothesis"] for p in preds], [p["reference"] for p in preds]
        protocol = TranslationProtocol(self.lang)
        lang = protocol.language(preds)
        dev = protocol.dev_metrics(protocol.score(preds))
        funcs, weights = reward_functions(self.reward_settings)
        parts = [f(completions=hyps, reference=refs, lang=[lang] * len(hyps)) for f in funcs]
        reward = [sum(w * p[i] for w, p in zip(weights, parts)) for i in range(len(hyps))]
        out = {f"{metric_key_prefix}_{k}": float(v) for k, v in dev.items() if isinstance(v, int | float)}
        out[f"{metric_key_prefix}_reward"] = float(np.mean(reward))
        for p, r in zip(preds, reward):
            p["reward"] = r
        self._dev_predictions = (self.state.global_step, preds)
        self.model.eval()  # GRPOTrainer.log reads the mode: eval mode keeps its train metrics buffered
        self.log(dict(out))
        if was_training:
            self.model.train()
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=out)
        return out

    # -- checkpoints without pickle ----------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        save_translator(self.translator, os.path.join(output_dir, MODEL_DIR))
        with open(os.path.join(output_dir, "grpo_args.json"), "w", encoding="utf-8") as f:
            f.write(self.args.to_json_string())
        if self.train_config is not None:
            latest: dict[str, Any] = {}
            for entry in self.state.log_history:
                latest.update({k: v for k, v in entry.items() if isinstance(v, int | float) and math.isfinite(v)})
            state = {"stage": "grpo", "protocol": TranslationProtocol.name, "step": self.state.global_step,
                     "epoch": self.state.epoch, "metrics": latest, "config": self.train_config}  # fmt: skip
            with open(os.path.join(output_dir, STATE_FILE), "w", encoding="utf-8") as f:
                json.dump(state, f, indent=1, ensure_ascii=False)
        if self._dev_predictions is not None and self._dev_predictions[0] == self.state.global_step:
            with open(os.path.join(output_dir, PREDICTIONS_FILE), "w", encoding="utf-8") as f:
                for p in self._dev_predictions[1]:
                    f.write(json.dumps(p, ensure_ascii=False) + "\n")

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if self.args.should_save:
            save_tree(self.optimizer.state_dict(), os.path.join(output_dir, "optimizer"))
            save_tree(self.lr_scheduler.state_dict(), os.path.join(output_dir, "scheduler"))

    def _save_scaler(self, output_dir: str) -> None:
        if getattr(self.accelerator, "scaler", None) is not None:
            raise ConfigError("fp16 loss scaling is not supported by GRPO checkpoints; use bf16 or fp32")

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)  # TRL's adaptive-entropy state, if any
        if checkpoint is None:
            return
        prefix = os.path.join(checkpoint, "optimizer")
        if not os.path.isfile(prefix + ".json"):
            raise DataError("a GRPO checkpoint without optimizer state", checkpoint)
        self.optimizer.load_state_dict(load_tree(prefix))
        self.lr_scheduler.load_state_dict(load_tree(os.path.join(checkpoint, "scheduler")))

    def _save_rng_state(self, output_dir: str) -> None:
        np_state = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": [
                np_state[0],
                np_state[1].tolist(),
                *(s.item() if hasattr(s, "item") else s for s in np_state[2:]),
            ],
            "torch": torch.random.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        save_tree(state, os.path.join(output_dir, "rng", f"rank-{self.args.process_index}"))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        prefix = os.path.join(checkpoint, "rng", f"rank-{self.args.process_index}")
        if not os.path.isfile(prefix + ".json"):
            log.warning("no RNG state for rank %d in %s: sampling will not repeat exactly", self.args.process_index,
                        checkpoint)  # fmt: skip
            return
        state = load_tree(prefix)
        random.setstate(state["python"])
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        torch.random.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = os.path.join(resume_from_checkpoint, MODEL_DIR, "lora", "adapter_model.safetensors")
        if not os.path.isfile(path):
            raise DataError(
                f"not a GRPO checkpoint (no {MODEL_DIR}/lora/adapter_model.safetensors)", resume_from_checkpoint
            )
        result = set_peft_model_state_dict(self.accelerator.unwrap_model(model or self.model), load_file(path))
        if result.unexpected_keys:
            raise DataError(
                f"adapter weights do not fit the policy: {result.unexpected_keys[:5]}", resume_from_checkpoint
            )


def disable_attention_dropout(model: torch.nn.Module) -> None:
    """Finish what TRL's ``disable_dropout`` starts: it zeroes every ``nn.Dropout`` module, but the attention layers
    of transformers' causal LMs (Qwen3, Llama, ...) read a float ``attention_dropout`` at call time instead, which it
    leaves on: an SFT LM trained with attention dropout (``sft.tiny.dropout``) would keep dropping attention weights
    in every GRPO log-probability pass."""
    for module in model.modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def _export_config(sft_cfg: SFTConfig, lora, merged_lm: str | None) -> SFTConfig:
    """The translator config of the GRPO policy: the SFT one with the new LoRA (on the SFT LM's weights, which
    are no longer random even for a tiny LM) and the merged LM."""
    data = sft_cfg.model_dump(mode="json")
    data["lora"] = lora.model_dump(mode="json")
    data["lm_training"] = "lora"
    if not is_tiny(sft_cfg):
        if merged_lm is None:
            raise ConfigError(f"the merged SFT LM ({sft_cfg.lm} + LoRA) needs a directory: pass merged_lm")
        data["lm"] = merged_lm
    return SFTConfig.model_validate(data)


def save_merged_base(lm, tokenizer, uri: str) -> str:
    """Write a merged LM (``save_pretrained``, safetensors) and its tokenizer to ``uri`` (local or remote) unless
    a complete copy is there already (``MANIFEST.json`` written last). Returns ``uri``."""
    from ray_slt.models.checkpoint import publish

    if storage.exists(storage.join(uri, MANIFEST)):
        return uri
    with tempfile.TemporaryDirectory(prefix="ray_slt_merged_") as d:
        lm.save_pretrained(d, safe_serialization=True)
        tokenizer.save_pretrained(d)
        publish(d, uri)
    return uri


# ------------------------------------------------------------------------------------------ data
def resolve_init(uri: str) -> str:
    """The SFT translator directory named by ``grpo.init``: a model directory, a checkpoint directory or a run
    directory (its best checkpoint), as :func:`ray_slt.models.registry.resolve` finds it; it must be a
    translator."""
    from ray_slt.errors import StorageError
    from ray_slt.models.registry import resolve

    try:
        ref = resolve(uri)
    except StorageError as e:
        raise ConfigError(f"grpo.init={uri}: no translator checkpoint there ({e})") from None
    if ref.kind != "translator":
        raise ConfigError(f"grpo.init={uri}: a {ref.kind} model, not an SFT translator")
    return ref.model


def read_sft_config(uri: str) -> SFTConfig:
    """The SFTConfig of a translator checkpoint (its ``translator.json``; no weights are read)."""
    meta = json.loads(storage.read_text(storage.join(resolve_init(uri), "translator.json")))
    return SFTConfig.model_validate(meta["config"])


def sft_is_seq2seq(uri: str, sft_cfg: SFTConfig) -> bool:
    """Whether a translator checkpoint's LM is an encoder-decoder: a tiny seq2seq name, or the saved LM's config
    (a pretrained model id's config is not fetched: its weights are loaded on the workers)."""
    if sft_cfg.lm in TINY_SEQ2SEQ:
        return True
    config = storage.join(resolve_init(uri), "base_lm", "config.json")
    return storage.exists(config) and bool(json.loads(storage.read_text(config)).get("is_encoder_decoder"))


def split_rows(cfg: TrainConfig, split: str, sft_cfg: SFTConfig) -> list[dict[str, Any]]:
    """The rows of a split as GRPO datasets hold them, in sample_id order (``data.limit_*`` applied):
    ``prompt`` (the SFT instruction prompt, for TRL's logs), ``reference`` (the raw target sentence, lower-cased
    for a translator trained on lower-cased targets), ``lang``,
    ``sample_id``, and the translator's inputs (``gloss``, or the feature store's pose/feature columns)."""
    from ray_slt.training.tasks import source_of

    gloss = sft_cfg.encoder.type == "gloss"
    columns = ["sample_id", "spoken_language", "text", "gloss"]
    if not gloss:
        columns = list(POSE_COLUMNS) + (list(FEATURE_COLUMNS) if sft_cfg.fusion.face or sft_cfg.fusion.hand else [])
    if cfg.data.manifest is not None and not gloss:
        raise ConfigError("data.manifest carries no pose features: use data.features or a gloss-encoder SFT model")
    rows = []
    for r in source_of(cfg, columns).samples(split):
        if not r.get("text"):
            raise DataError("a GRPO sample needs its reference text", str(r.get("sample_id")))
        row = {k: v for k, v in r.items() if k in columns and k not in ("text", "spoken_language", "split")}
        reference = r["text"].lower() if sft_cfg.lowercase else r["text"]  # what the policy learnt to write
        row.update(prompt=sft_cfg.prompt, reference=reference, lang=cfg.data.lang or r.get("spoken_language"))
        if not gloss:
            row.pop("gloss", None)
        rows.append(row)
    return rows


def hf_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` of rows (TRL samples it by index; numpy arrays become nested lists)."""
    from datasets import Dataset

    return Dataset.from_list(
        [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in rows]
    )


# ------------------------------------------------------------------------------------------ configuration
def grpo_args(cfg: TrainConfig, output_dir: str, sft_cfg: SFTConfig, bf16: bool = False) -> GRPOConfig:
    """TRL's ``GRPOConfig`` for a training config (``grpo`` section + shared optim/trainer/eval sections)."""
    g, o, t, e = cfg.grpo, cfg.optim, cfg.trainer, cfg.eval
    if t.backend != "ddp":
        raise ConfigError("stage grpo runs with trainer.backend: ddp (TRL + Accelerate DDP)")
    evaluate = e.every_epochs > 0
    if t.checkpoint_every:
        cadence = {"save_strategy": "steps", "save_steps": t.checkpoint_every}
        cadence.update({"eval_strategy": "steps", "eval_steps": t.checkpoint_every} if evaluate else {})
    else:
        cadence = {"save_strategy": "epoch", "eval_strategy": "epoch" if evaluate else "no"}
    schedule: dict[str, Any] = {"lr_scheduler_type": "constant_with_warmup"}
    if o.schedule == "cosine":
        schedule = {"lr_scheduler_type": "cosine"}
        if o.min_lr_ratio > 0:
            schedule = {
                "lr_scheduler_type": "cosine_with_min_lr",
                "lr_scheduler_kwargs": {"min_lr_rate": o.min_lr_ratio},
            }
    kwargs = dict(
        output_dir=output_dir,
        learning_rate=g.lr,
        weight_decay=g.weight_decay,
        num_generations=g.num_generations,
        beta=g.beta,
        epsilon=g.epsilon,
        temperature=g.temperature,
        max_completion_length=g.max_completion_length or sft_cfg.max_new_tokens,
        loss_type=g.loss_type,
        reward_weights=g.reward.weights(),
        per_device_train_batch_size=o.batch_size * g.num_generations,
        gradient_accumulation_steps=o.grad_accum,
        num_train_epochs=o.epochs,
        max_steps=o.max_steps or -1,
        seed=o.seed,
        data_seed=o.seed,
        warmup_steps=o.warmup_steps if o.warmup_steps is not None else o.warmup_ratio,
        max_grad_norm=o.max_grad_norm or 0.0,
        adam_beta1=o.betas[0],
        adam_beta2=o.betas[1],
        adam_epsilon=o.eps,
        bf16=bf16,
        fp16=False,
        use_cpu=not t.use_gpu,
        logging_steps=t.log_every,
        per_device_eval_batch_size=e.batch_size,
        num_generations_eval=1,  # unused: evaluate() decodes deterministically
        save_total_limit=1,  # local copies; Ray Train keeps the reported checkpoints
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **schedule,
        **cadence,
    )
    kwargs.update(g.trl)
    try:
        return GRPOConfig(**kwargs)
    except TypeError as err:
        import dataclasses
        import difflib

        known = {f.name for f in dataclasses.fields(GRPOConfig)}
        bad = sorted(set(g.trl) - known)
        if not bad:
            raise
        close = difflib.get_close_matches(bad[0], sorted(known), n=1)
        hint = f" (did you mean trl.{close[0]}?)" if close else ""
        raise ConfigError(f"grpo.trl.{bad[0]} is not a trl.GRPOConfig field{hint}") from err
    except ValueError as err:
        raise ConfigError(f"grpo: TRL refuses the settings: {err}") from err


class CurveWriter(TrainerCallback):
    """Rank 0 writes every Trainer log line to the run's learning curves with the loop's :class:`Curves`
    (``{run_dir}/metrics/train.jsonl|csv``; dev evaluations to ``dev.jsonl|csv``): step, epoch, reward (and its
    BLEU-4 / ROUGE-L parts), KL, loss, completion lengths, ... A resumed run drops what came after its checkpoint."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.curves: Curves | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.curves = Curves(self.run_dir, state.global_step, enabled=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.curves is None:
            self.curves = Curves(self.run_dir, state.global_step, enabled=True)
        kind = "dev" if any(k.startswith("dev_") for k in logs) else "train"
        self.curves.add(kind, {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **finite(logs)})
        self.curves.flush()


# ------------------------------------------------------------------------------------------ Ray Train
def build_trainer(cfg: TrainConfig, run_dir: str, output_dir: str, callbacks=()) -> SignGRPOTrainer:
    """The :class:`SignGRPOTrainer` of a config on this process (rank and world size from the environment)."""
    from ray_slt.config import config_dict
    from ray_slt.training.loop import use_bf16

    init = resolve_init(cfg.grpo.init)
    sft = load_translator(init)
    train = split_rows(cfg, cfg.data.train_split, sft.cfg)
    dev = split_rows(cfg, cfg.data.dev_split, sft.cfg) if cfg.eval.every_epochs or cfg.eval.at_start else []
    args = grpo_args(cfg, output_dir, sft.cfg, bf16=use_bf16(cfg))
    return SignGRPOTrainer(
        sft,
        args,
        hf_dataset(train),
        eval_dataset=hf_dataset(dev) if dev else None,
        lora=cfg.grpo.lora,
        reward=cfg.grpo.reward,
        merged_lm=None if is_tiny(sft.cfg) else storage.join(run_dir, MERGED_BASE),
        lang=cfg.data.lang,
        num_beams=cfg.eval.num_beams,
        max_new_tokens=cfg.eval.max_new_tokens,
        callbacks=list(callbacks),
        train_config=config_dict(cfg),
    )


def resume_dir(local: str) -> str:
    """A (Ray) checkpoint directory that TRL's Trainer can resume from (its ``trainer_state.json``)."""
    if not os.path.isfile(os.path.join(local, "trainer_state.json")):
        raise DataError("not a GRPO checkpoint (no trainer_state.json)", local)
    return local


class RayReporter(TrainerCallback):
    """Reports every Trainer checkpoint to Ray Train as the other recipes do: the Trainer checkpoint directory
    itself is the Ray checkpoint (``model/`` + ``train_state.json`` at its top; each rank adds its RNG state),
    named ``checkpoint_e{epoch}_s{step}``; the metrics are the latest logs plus ``evaluated`` (a dev evaluation
    at this step) and the selection metric (``unevaluated`` when there was none)."""

    def __init__(self, selection):
        self.selection = selection

    def on_save(self, args, state, control, **kwargs):
        import ray.train
        import transformers

        metrics: dict[str, Any] = {}
        for entry in state.log_history:
            metrics.update(entry)
        key = self.selection.key
        evaluated = any(key in e and e.get("step") == state.global_step for e in state.log_history)
        if not evaluated:
            metrics[key] = self.selection.unevaluated
        metrics = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
        metrics.update(evaluated=evaluated, step=state.global_step, epoch=state.epoch or 0.0)
        source = transformers.trainer.get_last_checkpoint(args.output_dir)
        checkpoint = ray.train.Checkpoint.from_directory(source) if source is not None else None
        name = checkpoint_name(math.floor(state.epoch or 0), state.global_step)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


def grpo_train_func(config: dict[str, Any]) -> dict[str, Any]:
    """The per-worker function Ray Train runs: build the trainer, resume if there is a checkpoint, train."""
    import ray.train
    from ray.train.huggingface.transformers import prepare_trainer

    from ray_slt.training.grpo_config import GRPOStage
    from ray_slt.training.recipe import parse_loop_config

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    cfg, run_dir, _ = parse_loop_config(config)
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="ray_slt_grpo_") as output_dir:
        callbacks = [RayReporter(GRPOStage(cfg).selection), CurveWriter(run_dir), timer]
        trainer = prepare_trainer(build_trainer(cfg, run_dir, output_dir, callbacks=callbacks))
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as local:
                trainer.train(resume_from_checkpoint=resume_dir(local))
        elif cfg.trainer.resume_from is not None:
            from ray_slt.models.checkpoint import localized

            with localized(cfg.trainer.resume_from) as local:
                trainer.train(resume_from_checkpoint=resume_dir(local))
        else:
            if cfg.eval.at_start:
                trainer.evaluate()  # step 0 of the dev curve: the SFT model (the new LoRA starts at zero)
            trainer.train()
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    prompts = timer.steps * per_step // args.num_generations
    return {
        "step": trainer.state.global_step,
        "total_steps": trainer.state.max_steps,
        "num_train_samples": len(trainer.train_dataset),
        "samples": prompts,  # prompts of this session (each sampled num_generations times)
        "train_time_s": timer.busy,
        "train_samples_per_s": prompts / timer.busy if timer.busy else None,
        "steps_this_session": timer.steps,
        "completions_per_step": per_step,
        "completions_per_s": timer.steps * per_step / timer.busy if timer.busy else None,
    }


class StepTimer(TrainerCallback):
    """Time spent in optimizer steps (sampling, scoring, loss, backward, update), without evaluation or
    checkpointing: the denominator of completions/s."""

    def __init__(self):
        self.busy, self.steps, self._t0 = 0.0, 0, None

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._t0 is not None:
            self.busy += time.perf_counter() - self._t0
            self.steps += 1
            self._t0 = None


class GRPORecipe(Recipe):
    """RVLF stage 3 with TRL's GRPOTrainer on Ray Train (:func:`grpo_train_func` on every worker; DDP through
    Accelerate). The workers read their rows themselves (:func:`split_rows`); the driver checks the SFT
    checkpoint and TRL's settings before any worker starts."""

    name = "grpo"
    sweepable = False  # TRL evaluates on its own schedule (per step or epoch); sweeps run the supervised loop

    def check(self) -> None:
        sft_cfg = read_sft_config(self.cfg.grpo.init)
        if sft_is_seq2seq(self.cfg.grpo.init, sft_cfg):
            raise ConfigError(
                f"grpo.init {self.cfg.grpo.init} is an encoder-decoder translator ({sft_cfg.lm}); GRPO here trains "
                "causal LMs through TRL (start from a translator with a causal LM, e.g. tiny:qwen3 or Qwen3)"
            )
        with tempfile.TemporaryDirectory() as d:
            grpo_args(self.cfg, d, sft_cfg)  # refuse bad TRL settings here, before any worker starts

    def train_func(self):
        return grpo_train_func

    def summary(self, figures) -> dict[str, Any]:
        return {
            "init": resolve_init(self.cfg.grpo.init),
            "completions_per_step": figures.get("completions_per_step"),
            "completions_per_s": figures.get("completions_per_s"),
        }
