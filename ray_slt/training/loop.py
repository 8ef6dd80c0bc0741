"""The ``supervised`` recipe: the per-worker training function that Ray Train runs on every worker, for every
:class:`~ray_slt.training.task.SupervisedTask`.

``train_func(config)`` (config: :func:`ray_slt.training.recipe.loop_config` of a TrainConfig) does, on rank r of W::

    setup    task = task_for(cfg); model = task.build(ctx) or the checkpoint's model (resume);
             DDP (ray.train.torch.prepare_model) or DeepSpeed (deepspeed.initialize with the ZeRO config);
             optimizer/RNG/step state restored from ray.train.get_checkpoint() when resuming
    train    for each epoch: shard = ray.train.get_dataset_shard("train"); iter_batches -> task.collator ->
             task.loss; gradient accumulation; warm-up + cosine/constant LR; clipping; bf16 autocast on GPUs.
             With optim.sampling: priority (SignLLM's PLC), every rank holds the whole split and each step's
             batch is drawn by the shared priority sampler; task.sample_losses' per-sample losses, all-gathered,
             refresh it on every rank alike
    save     every trainer.checkpoint_every steps and at every epoch end: every rank writes its part of a
             checkpoint directory (rank 0: the consolidated model + train_state.json; each rank: its optimizer
             shard and RNG state) and calls ray.train.report(metrics, checkpoint=...) (Ray merges them)
    eval     each eval.every_epochs epochs: dev predictions (task.predict) split over the ranks, gathered on rank 0,
             scored by the task's protocol (task.evaluator()); reported as dev_* (translators: dev_bleu4 etc.); Ray
             keeps the best checkpoint on the protocol's selection metric in its direction
    curves   rank 0 writes {run_dir}/metrics/train.jsonl|csv (loss, lr per group, grad norm, samples/s per
             step) and dev.jsonl|csv (scores per evaluation); dev predictions under {run_dir}/predictions/

Checkpoint directory (one per report)::

    model/                  the consolidated model (task.save: safetensors + PEFT adapter + tokenizer)
    train_state.json        step, epoch, position in the epoch, samples seen, metrics, stage, protocol, config
    state/rank-{r}.json|.safetensors   optimizer state (every rank under DeepSpeed, rank 0 under DDP) + RNG
    dev_predictions.jsonl   the evaluation's predictions, when the checkpoint was evaluated

Resume restores the model, optimizer, step/epoch counters and RNG (and the priority sampler's state: its draws go
by the global step), and skips the batches of the interrupted epoch that were already consumed. With one worker
the data order is deterministic, so a resumed run ends in the same state as an uninterrupted one; with several
workers Ray Data's split of the stream may differ.
DeepSpeed optimizer state is per rank: resuming it needs the same number of workers (otherwise the model is
restored and the optimizer starts afresh, with a warning).
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

from ray_slt import storage
from ray_slt.config import config_dict, config_hash
from ray_slt.errors import ConfigError, RaySltError
from ray_slt.models.registry import MODEL_DIR, STATE_FILE
from ray_slt.training.config import TrainConfig
from ray_slt.training.curves import Curves, finite
from ray_slt.training.recipe import Recipe, checkpoint_name, parse_loop_config
from ray_slt.training.task import SupervisedTask

log = logging.getLogger("ray_slt.train")

PREDICTIONS_FILE = "dev_predictions.jsonl"
# DeepSpeed optimizer state entries that are objects, not data; its loader keeps its defaults for them.
DS_DROP = ("loss_scaler", "param_slice_mappings", "universal_checkpoint_info")


# ------------------------------------------------------------------------------------------ configuration
def steps_per_epoch(cfg: TrainConfig, num_train_samples: int) -> int:
    """Optimizer steps per epoch: each worker gets an equal share of the samples (Ray Train's equal split);
    a final incomplete gradient-accumulation group of an epoch is skipped."""
    per_worker = num_train_samples // cfg.trainer.num_workers
    micro = math.ceil(per_worker / cfg.optim.batch_size)
    return micro // cfg.optim.grad_accum


def total_steps(cfg: TrainConfig, num_train_samples: int) -> int:
    total = steps_per_epoch(cfg, num_train_samples) * cfg.optim.epochs
    return min(total, cfg.optim.max_steps) if cfg.optim.max_steps else total


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """LR multiplier for optimizer step ``step`` (0-based): linear warm-up, then constant or cosine decay to
    ``min_lr_ratio``."""
    o = cfg.optim
    warmup = o.warmup_steps if o.warmup_steps is not None else int(o.warmup_ratio * total)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if o.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def use_bf16(cfg: TrainConfig) -> bool:
    import torch

    if cfg.trainer.precision == "fp32":
        return False
    available = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if cfg.trainer.precision == "bf16" and not available:
        log.warning("precision=bf16 requested but this device has no bf16 support; training in fp32")
    return available


def deepspeed_config(cfg: TrainConfig, world_size: int, bf16: bool) -> dict[str, Any]:
    """The DeepSpeed config: the ZeRO settings of ``trainer.deepspeed`` (a JSON file or a mapping) with batch
    sizes, accumulation, clipping and precision filled in from this config (they must agree)."""
    src = cfg.trainer.deepspeed
    ds = json.loads(storage.read_text(src)) if isinstance(src, str) else json.loads(json.dumps(src))
    o = cfg.optim
    if "optimizer" in ds or "scheduler" in ds:
        raise ConfigError(
            "the DeepSpeed config must not define an optimizer or scheduler: the task's AdamW parameter groups "
            "and the optim section's schedule are used"
        )
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        if ds.get(key, "auto") != "auto":
            log.info("deepspeed %s=%s is replaced by the training config", key, ds[key])
    ds["train_micro_batch_size_per_gpu"] = o.batch_size
    ds["gradient_accumulation_steps"] = o.grad_accum
    ds["train_batch_size"] = o.batch_size * o.grad_accum * world_size
    ds["gradient_clipping"] = float(o.max_grad_norm or 0.0)
    ds["bf16"] = {"enabled": bool(bf16)}
    ds["fp16"] = {"enabled": False}
    ds["zero_allow_untested_optimizer"] = True
    ds.setdefault("steps_per_print", 1 << 30)
    ds.setdefault("wall_clock_breakdown", False)
    return ds


# ------------------------------------------------------------------------------------------ distributed bits
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()


def all_mean(values: list[float], device) -> list[float]:
    import torch

    dist = _dist()
    if dist is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def all_sum(values: list[float], device) -> list[float]:
    import torch

    dist = _dist()
    if dist is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_json(obj: Any, device) -> list[Any] | None:
    """Every rank's ``obj`` (JSON values) on rank 0 (None elsewhere), without pickling."""
    everyone = all_gather_json(obj, device)
    dist = _dist()
    return everyone if dist is None or dist.get_rank() == 0 else None


def all_gather_json(obj: Any, device) -> list[Any]:
    """Every rank's ``obj`` (JSON values) on every rank, in rank order, without pickling."""
    import torch

    dist = _dist()
    if dist is None:
        return [obj]
    data = torch.tensor(list(json.dumps(obj).encode()), dtype=torch.uint8, device=device)
    size = torch.tensor([data.numel()], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[: data.numel()] = data
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return [json.loads(bytes(p[: int(s.item())].cpu().tolist()).decode()) for p, s in zip(parts, sizes)]


# ------------------------------------------------------------------------------------------ the loop
class _Trainer:
    """State of one worker's training run (built by :func:`train_func`)."""

    def __init__(self, config: Mapping[str, Any]):
        import ray.train
        import ray.train.torch
        import torch

        from ray_slt.training.task import TaskContext, task_for

        self.cfg, self.run_dir, self.num_train_samples = parse_loop_config(config)
        cfg = self.cfg
        tctx = ray.train.get_context()
        self.rank, self.world = tctx.get_world_rank(), tctx.get_world_size()
        self.device = ray.train.torch.get_device() if cfg.trainer.use_gpu else torch.device("cpu")
        if not cfg.trainer.use_gpu:
            torch.set_num_threads(max(1, int(cfg.trainer.cpus_per_worker)))
        self.task = task_for(cfg)
        if not isinstance(self.task, SupervisedTask):
            raise ConfigError(f"stage {cfg.stage!r} is not trained by the supervised loop (recipe {self.task.recipe})")
        self.evaluator = self.task.evaluator()
        self.selection = self.evaluator.selection
        self.ctx = TaskContext(self.rank, self.world, self.device, self.run_dir, cfg.optim.seed, barrier)
        self.bf16 = use_bf16(cfg)
        self.deepspeed = cfg.trainer.backend == "deepspeed"
        self.zero3 = False
        self.steps_per_epoch = max(1, steps_per_epoch(cfg, self.num_train_samples))
        self.total = max(1, total_steps(cfg, self.num_train_samples))
        self.step = self.epoch = self.step_in_epoch = 0
        self.samples = 0
        self.best: dict[str, Any] | None = None
        self.stale = 0  # dev evaluations since the selection metric last improved by more than eval.min_delta
        self.stopped_early = False
        self.train_time = 0.0
        self.train_samples_timed = 0
        self.last_dev: dict[str, float] = {}
        self.last_loss = float("nan")
        self.sampler = None  # the priority sampler (optim.sampling: priority)
        self.train_rows: list[dict[str, Any]] = []

    # -- setup -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        import ray.train
        import torch

        cfg = self.cfg
        checkpoint = ray.train.get_checkpoint()
        resume_dir = None
        self._resume_ctx = contextlib.ExitStack()
        if checkpoint is not None:
            resume_dir = self._resume_ctx.enter_context(checkpoint.as_directory())
        elif cfg.trainer.resume_from:
            from ray_slt.models.checkpoint import localized

            resume_dir = self._resume_ctx.enter_context(localized(cfg.trainer.resume_from))
        self.resume_state = None
        if resume_dir is not None:
            with open(os.path.join(resume_dir, STATE_FILE), encoding="utf-8") as f:
                self.resume_state = json.load(f)
            model = self.task.load(os.path.join(resume_dir, MODEL_DIR), trainable=True)
            log.info("rank %d: resuming from %s (step %d)", self.rank, resume_dir, self.resume_state["step"])
        else:
            model = self.task.build(self.ctx)
        self.module = model
        # dropout and any other randomness of training: seeded per rank (a resume restores the saved state)
        torch.manual_seed(cfg.optim.seed * 1000 + self.rank)
        groups = self.task.param_groups(model)
        self.base_lrs = [g["lr"] for g in groups]
        self.group_names = [g.get("name", f"group{i}") for i, g in enumerate(groups)]
        optimizer = torch.optim.AdamW(groups, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
        if self.deepspeed:
            import deepspeed

            ds_cfg = deepspeed_config(cfg, self.world, self.bf16)
            self.zero3 = ds_cfg.get("zero_optimization", {}).get("stage", 0) == 3
            model.to(self.device)
            self.engine, self.optimizer, _, _ = deepspeed.initialize(
                model=model, optimizer=optimizer, config=ds_cfg, dist_init_required=False
            )
            self.wrapped = self.engine
            self.module = self.engine.module
        else:
            import ray.train.torch

            self.optimizer = optimizer
            self.wrapped = ray.train.torch.prepare_model(model, parallel_strategy="ddp" if self.world > 1 else None)
            self.module = model
        self.collate = self.task.collator(self.module)
        if cfg.optim.sampling == "priority":
            self._setup_priority()
        if self.resume_state is not None:
            self._restore(resume_dir)
        self._resume_ctx.close()
        self.curves = Curves(self.run_dir, self.step if self.resume_state else None, enabled=self.rank == 0)

    def _setup_priority(self) -> None:
        """Every rank reads the whole training split (in sample-id order, so an index means the same sample on
        every rank) and holds the same priority sampler."""
        import ray.train

        from ray_slt.training.priority import PrioritySampler

        shard = ray.train.get_dataset_shard("train")
        rows = sorted(shard.iter_rows(), key=lambda r: str(r["sample_id"]))
        if not rows:
            raise RaySltError("priority sampling: the training split is empty")
        self.train_rows = rows
        p = self.cfg.optim.priority
        self.sampler = PrioritySampler(len(rows), eta=p.eta, kind=p.kind, seed=self.cfg.optim.seed)

    def _restore(self, resume_dir: str) -> None:
        from ray_slt.training.state import load_tree, set_rng_state

        st = self.resume_state
        if self.sampler is not None:
            if "priority" not in st:
                raise RaySltError(f"{resume_dir} was saved without priority sampling; it cannot resume with it")
            self.sampler.load_state(st["priority"])
        self.step, self.epoch, self.step_in_epoch = st["step"], st["epoch"], st["step_in_epoch"]
        self.samples = st["samples"]
        self.best = st.get("best")
        self.stale, self.stopped_early = st.get("stale", 0), st.get("stopped_early", False)
        prefix = os.path.join(resume_dir, "state", f"rank-{self.rank}")
        same_world = st["world_size"] == self.world and st["backend"] == self.cfg.trainer.backend
        if self.deepspeed:
            if same_world and os.path.exists(prefix + ".json"):
                opt_state = load_tree(prefix)["optimizer"]
                lists = [None] * self.world
                lists[self.rank] = opt_state
                self.optimizer.load_state_dict(lists, load_optimizer_states=True, load_from_fp32_weights=True)
            else:
                log.warning("optimizer state not restored (saved by %s workers with %s; now %s with deepspeed)",
                            st["world_size"], st["backend"], self.world)  # fmt: skip
        elif st["backend"] == "ddp":  # one replica's state serves any number of DDP workers
            opt_prefix = os.path.join(resume_dir, "state", "rank-0")
            self.optimizer.load_state_dict(load_tree(opt_prefix)["optimizer"])
        else:
            log.warning("optimizer state not restored (saved with %s, now ddp)", st["backend"])
        if os.path.exists(prefix + ".json"):
            set_rng_state(load_tree(prefix)["rng"])

    # -- one optimizer step ----------------------------------------------------------------------------------
    def _autocast(self):
        import torch

        if self.bf16 and not self.deepspeed and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, batch: dict) -> dict:
        import torch

        from ray_slt.models.batch import to_device

        batch = to_device(batch, self.device)
        if self.deepspeed and self.bf16:  # DeepSpeed bf16 holds the weights in bf16: inputs follow
            batch = {k: v.bfloat16() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                     for k, v in batch.items()}  # fmt: skip
        return batch

    def _set_lr(self) -> list[float]:
        factor = lr_factor(self.step, self.total, self.cfg)
        lrs = []
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
            lrs.append(group["lr"])
        return lrs

    def _loss(self, batch: dict, indices: Any) -> tuple[Any, dict[str, float], list[float]]:
        if indices is None:
            return (*self.task.loss(self.wrapped, batch), [])
        loss, logs, per_sample = self.task.sample_losses(self.wrapped, batch)
        return loss, logs, per_sample.float().cpu().tolist()

    def train_step(self, micro_batches: list, indices: list | None = None) -> dict[str, float]:
        """One optimizer step over ``micro_batches`` (rows each); ``indices`` (priority sampling): each
        micro-batch's row indices, whose per-sample losses refresh the sampler's priorities on every rank."""
        import torch

        lrs = self._set_lr()
        ga = len(micro_batches)
        loss_sum, logs_sum, n = 0.0, {}, 0
        seen: list[tuple[list[int], list[float]]] = []
        for i, rows in enumerate(micro_batches):
            batch = self._to_device(self.collate(rows))
            n += len(batch.get("sample_ids") or batch.get("texts") or [])
            last = i == ga - 1
            idx = None if indices is None else indices[i]
            if idx is not None and self.cfg.optim.priority.corrects:
                beta = self.cfg.optim.priority.beta_at(self.step, self.total)
                weights = torch.as_tensor(self.sampler.weights(idx, beta), dtype=torch.float32)
                batch["sample_weights"] = weights.to(self.device)
                logs_is = {"is_weight": float(weights.mean()), "is_beta": beta}
            else:
                logs_is = {}
            if self.deepspeed:
                with self._autocast():
                    loss, logs, per_sample = self._loss(batch, idx)
                self.engine.backward(loss)
                self.engine.step()
            else:
                sync = last or not hasattr(self.wrapped, "no_sync")
                ctx = contextlib.nullcontext() if sync else self.wrapped.no_sync()
                with ctx:
                    with self._autocast():
                        loss, logs, per_sample = self._loss(batch, idx)
                    (loss / ga).backward()
            if idx is not None:
                seen.append(([int(j) for j in idx], per_sample))
            loss_sum += float(loss.detach())
            for k, v in {**logs, **logs_is}.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + float(v)
        if self.deepspeed:
            grad_norm = self.engine.get_global_grad_norm()
            grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        else:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            if self.cfg.optim.max_grad_norm:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.max_grad_norm))
            else:
                grad_norm = float(torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.sampler is not None:  # every rank applies every rank's losses, in rank order
            for part in all_gather_json(seen, self.device):
                for idx, losses in part:
                    self.sampler.update(idx, losses)
        keys = sorted(logs_sum)
        means = all_mean([loss_sum / ga, *[logs_sum[k] / ga for k in keys]], self.device)
        total_n = int(all_sum([float(n)], self.device)[0])
        out = {"loss": means[0], **{k: v for k, v in zip(keys, means[1:])}, "grad_norm": grad_norm}
        out.update({f"lr/{name}": lr for name, lr in zip(self.group_names, lrs)})
        out["batch_samples"] = total_n
        return out

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self) -> tuple[dict[str, Any], list[dict]]:
        """Dev predictions split over the ranks, scored on rank 0 by the task's protocol (``{}`` elsewhere):
        its dev metrics as ``dev_*``, plus ``dev_loss`` and ``dev_samples``."""
        import ray.train
        import torch

        from ray_slt.features.source import rows_of

        cfg = self.cfg
        shard = ray.train.get_dataset_shard("dev")
        module = self.module
        was_training = module.training
        module.eval()
        mine: list[dict] = []
        loss_sum, loss_n = 0.0, 0
        bs = cfg.eval.batch_size
        with torch.no_grad():
            for rows in shard.iter_batches(batch_size=bs * self.world, batch_format="numpy"):
                everyone = rows_of(rows)
                rows = everyone[self.rank :: self.world]
                dummy = False
                if not rows:
                    if not self.zero3:
                        continue
                    # ZeRO-3: every rank must take part in every forward pass; predict a copy, drop its output
                    rows, dummy = everyone[:1], True
                batch = self._to_device(self.collate(rows))
                with self._autocast():
                    loss, _ = self.task.loss(module, batch)
                    preds = self.task.predict(module, batch, synced_gpus=self.zero3)
                if dummy:
                    continue
                loss_sum += float(loss) * len(preds)
                loss_n += len(preds)
                mine += preds
        if was_training:
            module.train()
        loss_sum, loss_n = all_sum([loss_sum, float(loss_n)], self.device)
        gathered = gather_json(mine, self.device)
        if gathered is None:
            return {}, []
        preds = sorted((p for g in gathered for p in g), key=lambda p: p["sample_id"])
        if not preds:
            raise RaySltError("the dev split has no samples to evaluate")
        scores = self.evaluator.score(preds)
        metrics = {f"dev_{k}": v for k, v in self.evaluator.dev_metrics(scores).items()}
        metrics["dev_loss"] = loss_sum / max(1.0, loss_n)
        metrics["dev_samples"] = len(preds)
        return metrics, preds

    # -- checkpoints -----------------------------------------------------------------------------------------
    def _gathered_params(self):
        if self.zero3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None)
        return contextlib.nullcontext()

    def report(
        self,
        metrics: dict[str, Any],
        checkpoint: bool,
        preds: list[dict] | None = None,
        position: tuple[int, int] | None = None,
    ) -> None:
        """``ray.train.report`` from this rank, with its part of a checkpoint. ``position`` is the (epoch,
        optimizer steps done in it) a resume continues from (default: the current one)."""
        import ray.train

        from ray_slt.training.state import rng_state, save_tree

        epoch, step_in_epoch = position or (self.epoch, self.step_in_epoch)
        key = self.selection.key
        evaluated = self.selection.is_score(metrics.get(key))
        if not evaluated:  # Ray keeps the best checkpoint on this key: an unevaluated one ranks below any score
            metrics = {**metrics, key: self.selection.unevaluated}
        metrics = {**metrics, "evaluated": evaluated, "step": self.step, "epoch": epoch, "samples": self.samples}
        if not checkpoint:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="ray_slt_ckpt_") as d:
            with self._gathered_params():
                if self.rank == 0:
                    self.task.save(self.module, os.path.join(d, MODEL_DIR))
            state: dict[str, Any] = {"rng": rng_state()}
            if self.deepspeed or self.rank == 0:
                state["optimizer"] = self.optimizer.state_dict()
            save_tree(state, os.path.join(d, "state", f"rank-{self.rank}"), drop=DS_DROP)
            # every rank's trainable weights, summarised: replicas (DDP, ZeRO-1/2) must agree
            checksums = gather_json(self._param_checksum(), self.device)
            if self.rank == 0:
                train_state = {
                    "step": self.step,
                    "epoch": epoch,
                    "step_in_epoch": step_in_epoch,
                    "samples": self.samples,
                    "world_size": self.world,
                    "backend": self.cfg.trainer.backend,
                    "stage": self.cfg.stage,
                    "protocol": self.task.protocol,
                    "selection": {"metric": self.selection.key, "mode": self.selection.mode},
                    "config_hash": config_hash(self.cfg),
                    "metrics": finite(metrics),
                    "best": self.best,
                    "stale": self.stale,
                    "stopped_early": self.stopped_early,
                    "param_checksums": checksums,
                    "config": config_dict(self.cfg),
                }
                if self.sampler is not None:
                    train_state["priority"] = self.sampler.state()
                with open(os.path.join(d, STATE_FILE), "w", encoding="utf-8") as f:
                    json.dump(train_state, f, indent=1, ensure_ascii=False)
                if preds:
                    with open(os.path.join(d, PREDICTIONS_FILE), "w", encoding="utf-8") as f:
                        f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in preds)
            name = checkpoint_name(epoch, self.step)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d), checkpoint_dir_name=name)

    def _param_checksum(self) -> list[float] | None:
        """Sum and sum of squares of this rank's trainable parameters (None under ZeRO-3, which shards them)."""
        import torch

        if self.zero3:
            return None
        with torch.no_grad():
            params = [p.detach().double() for p in self.module.parameters() if p.requires_grad]
            return [float(sum(p.sum() for p in params)), float(sum((p * p).sum() for p in params))]

    def _maybe_fail(self) -> None:
        t = self.cfg.trainer
        if t.fail_at_step != self.step or t.fail_rank != self.rank:
            return
        marker = storage.join(self.run_dir, "faults", f"step-{self.step}-rank-{self.rank}")
        if storage.exists(marker):
            return
        storage.write_text(marker, json.dumps({"step": self.step, "time": time.time()}))
        log.warning("fault injection: rank %d exits at step %d", self.rank, self.step)
        self.curves.flush()
        os._exit(3)

    # -- the run ---------------------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> Iterator[list]:
        import ray.train

        o = self.cfg.optim
        if self.sampler is not None:
            yield from self._priority_batches()
            return
        shard = ray.train.get_dataset_shard("train")
        pool = max(o.group_by_length, 1)
        it = shard.iter_batches(
            batch_size=o.batch_size * pool,
            batch_format="numpy",
            local_shuffle_buffer_size=max(o.batch_size * pool * 16, 64),
            local_shuffle_seed=o.seed * 1000 + epoch * 10 + self.rank,
        )
        if pool > 1:
            rng = random.Random(o.seed * 1000 + epoch * 10 + self.rank)
            it = (rows for big in it for rows in length_groups(big, self.task.sample_sizes(big), o.batch_size, rng))
        group: list = []
        for rows in it:
            group.append(rows)
            if len(group) == o.grad_accum:
                yield group
                group = []

    def _priority_batches(self) -> Iterator[tuple[list, list]]:
        """(micro-batches of rows, their indices) of the coming steps, each step's draw seeded by the step (a
        resume draws what the uninterrupted run would have) and made with the priorities of that moment."""
        o = self.cfg.optim
        while True:
            drawn = self.sampler.draw(self.step, o.batch_size * o.grad_accum, self.rank, self.world)
            parts = [drawn[i * o.batch_size : (i + 1) * o.batch_size] for i in range(o.grad_accum)]
            yield [[self.train_rows[j] for j in part] for part in parts], parts

    def _evaluate_and_log(self) -> tuple[dict[str, Any], list[dict]]:
        t0 = time.perf_counter()
        metrics, preds = self.evaluate()
        if self.rank == 0:
            metrics["dev_eval_s"] = round(time.perf_counter() - t0, 3)
            self.last_dev = metrics
            self.curves.add("dev", {"step": self.step, "epoch": self.epoch, **finite(metrics)})
            storage.write_text(
                storage.join(self.run_dir, "predictions", f"dev_step{self.step:07d}.jsonl"),
                "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds),
            )
            self.curves.flush()
        return metrics, preds

    def run(self) -> dict[str, Any] | None:
        cfg = self.cfg
        if self.cfg.eval.at_start and self.resume_state is None:
            self._evaluate_and_log()
        done = self.total <= self.step or self.stopped_early  # a run that stopped early stays stopped
        log_every = cfg.trainer.log_every
        t_log = time.perf_counter()
        while not done and self.epoch < cfg.optim.epochs:
            skip = 0 if self.sampler is not None else self.step_in_epoch  # priority draws go by the step
            for group in self._epoch_batches(self.epoch):
                if skip:
                    skip -= 1
                    continue
                if self.step_in_epoch >= self.steps_per_epoch:
                    break  # keep every rank at the same number of steps
                t0 = time.perf_counter()
                logs = self.train_step(*group) if self.sampler is not None else self.train_step(group)
                dt = time.perf_counter() - t0
                self.step += 1
                self.step_in_epoch += 1
                self.samples += logs["batch_samples"]
                self.last_loss = logs["loss"]
                self.train_time += dt
                self.train_samples_timed += logs["batch_samples"]
                record = {"step": self.step, "epoch": self.epoch, **logs, "samples": self.samples,
                          "samples_per_s": logs["batch_samples"] / dt if dt > 0 else float("nan")}  # fmt: skip
                self.curves.add("train", finite(record))
                if self.step % log_every == 0:
                    self.curves.flush()
                    log.info("step %d loss %.4f (%.1fs)", self.step, logs["loss"], time.perf_counter() - t_log)
                    t_log = time.perf_counter()
                end_of_epoch = self.step_in_epoch >= self.steps_per_epoch
                done = self.step >= self.total
                k = cfg.trainer.checkpoint_every
                if k and self.step % k == 0 and not end_of_epoch and not done:
                    # mid-epoch checkpoints carry no dev score: they never become the best (Ray keeps the latest
                    # one anyway, for resuming)
                    self.report({"loss": logs["loss"]}, checkpoint=True)
                self._maybe_fail()
                if done or end_of_epoch:
                    break
            stop = self._end_epoch(done)
            self.epoch += 1
            self.step_in_epoch = 0
            if stop:
                if self.rank == 0:
                    log.info("early stopping at epoch %d: dev %s has not improved for %d evaluations",
                             self.epoch, self.selection.key, self.stale)  # fmt: skip
                break
        self.curves.flush()
        if self.rank != 0:
            return None
        return {
            "step": self.step,
            "total_steps": self.total,
            "epoch": self.epoch,
            "samples": self.samples,
            "train_time_s": self.train_time,
            "train_samples_per_s": self.train_samples_timed / self.train_time if self.train_time else None,
            "best": self.best,
            "stopped_early": self.stopped_early,
            "last_dev": finite(self.last_dev),
        }

    def _end_epoch(self, done: bool) -> bool:
        """Evaluate on dev when due, checkpoint; True when early stopping ends the run here."""
        cfg = self.cfg
        every = cfg.eval.every_epochs
        evaluate = bool(every) and ((self.epoch + 1) % every == 0 or done or self.epoch + 1 == cfg.optim.epochs)
        metrics: dict[str, Any] = {}
        preds: list[dict] = []
        if evaluate:
            metrics, preds = self._evaluate_and_log()
            key = self.selection.key
            stop = 0.0
            if self.rank == 0:
                previous = (self.best or {}).get(key)
                if self.selection.better(metrics[key], previous):
                    self.best = {"step": self.step, "epoch": self.epoch, key: metrics[key]}
                sign = 1 if self.selection.mode == "max" else -1
                gain = None if previous is None else (metrics[key] - previous) * sign
                self.stale = 0 if gain is None or gain > cfg.eval.min_delta else self.stale + 1
                stop = float(cfg.eval.patience is not None and self.stale >= cfg.eval.patience and not done)
            # rank 0 scored the dev split: every rank stops with it
            self.stopped_early = all_sum([stop], self.device)[0] > 0
        metrics = {**metrics, "loss": self.last_loss}
        # the epoch is complete: a resume continues with the next one
        self.report(metrics, checkpoint=True, preds=preds, position=(self.epoch + 1, 0))
        return self.stopped_early


def train_func(config: dict[str, Any]) -> dict[str, Any] | None:
    """The Ray Train per-worker function (TorchTrainer's ``train_loop_per_worker``); everything comes from
    ``config`` (see :func:`loop_config`). Returns the run summary on rank 0."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trainer = _Trainer(config)
    trainer.setup()
    return trainer.run()


class SupervisedRecipe(Recipe):
    """The generic loop (:func:`train_func`) over a :class:`~ray_slt.training.task.SupervisedTask`: the task's
    Ray Datasets are streamed to the workers (train split among them, dev read whole by every rank)."""

    name = "supervised"

    def check(self) -> None:
        if not isinstance(self.task, SupervisedTask):
            raise ConfigError(f"stage {self.cfg.stage!r} is not a supervised task")
        if self.cfg.optim.sampling == "priority" and not self.task.gives_sample_losses:
            raise ConfigError(f"optim.sampling: priority needs per-sample losses, which stage {self.cfg.stage!r} "
                              "does not give; use optim.sampling: shuffle")  # fmt: skip
        if self.cfg.optim.priority.corrects and not self.task.takes_sample_weights:
            raise ConfigError(f"stage {self.cfg.stage!r} does not weigh its loss per sample: optim.priority.beta "
                              "must stay 0")  # fmt: skip

    def train_func(self):
        return train_func

    def datasets(self) -> dict[str, Any]:
        """The task's datasets, with dev (read by every worker at each evaluation) and, when no CPU would be
        left to stream it (``data.materialize``), train read into the object store once."""
        import ray
        from ray.data import DataContext

        # Per-epoch progress bars of the split coordinator interleave with the workers' logs; the learning
        # curves report progress instead.
        DataContext.get_current().enable_progress_bars = False
        datasets = dict(self.task.datasets())
        if "dev" in datasets:
            datasets["dev"] = datasets["dev"].materialize()
        t = self.cfg.trainer
        d = self.cfg.data
        materialize = d.materialize
        if materialize is None:
            spare = ray.cluster_resources().get("CPU", 0) - t.num_workers * t.cpus_per_worker
            materialize = spare < 1
            if materialize:
                log.info("no CPU left for streaming reads beside %d workers: materializing the training data",
                         t.num_workers)  # fmt: skip
            elif d.features is not None:
                from ray_slt.features.store import shard_bytes

                size = sum(shard_bytes(f, d.train_split) for f in d.feature_stores())
                # a small split is read once instead of once per epoch (each read costs seconds of task start-up)
                materialize = size <= d.materialize_below_mb * 2**20
                if materialize:
                    log.info("the training data (%.1f MB of shards) is read into the object store once",
                             size / 2**20)  # fmt: skip
        if materialize:
            datasets["train"] = datasets["train"].materialize()
        return datasets

    def num_train_samples(self, datasets) -> int:
        n = self.task.num_train_samples()
        n = int(n) if n is not None else int(datasets["train"].count())
        if steps_per_epoch(self.cfg, n) < 1:
            o = self.cfg.optim
            raise RaySltError(
                f"{n} training samples make no optimizer step per epoch with {self.cfg.trainer.num_workers} "
                f"workers, batch {o.batch_size} and grad_accum {o.grad_accum}"
            )
        return n

    def total_steps(self, num_train_samples: int) -> int:
        return total_steps(self.cfg, num_train_samples)

    def dataset_config(self):
        import ray.train
        from ray.data import ExecutionOptions

        options = ExecutionOptions(preserve_order=True)  # a deterministic order (for exact resumes)
        # priority sampling draws from the whole split on every worker
        split = [] if self.cfg.optim.sampling == "priority" else ["train"]
        return ray.train.DataConfig(datasets_to_split=split, execution_options=options)


def length_groups(rows: Mapping[str, Any], sizes: Sequence[int], batch_size: int, rng: random.Random) -> list[dict]:
    """Columnar ``rows`` cut into batches of ``batch_size`` neighbours by ``sizes`` (a stable sort; the last batch
    may be short), the batches in ``rng``'s shuffled order: ``optim.group_by_length``."""
    import numpy as np

    order = np.argsort(np.asarray(sizes), kind="stable")
    parts = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(parts)
    return [{k: np.asarray(v)[idx] for k, v in rows.items()} for idx in parts]
