"""Training step time of the small-VLM recipe with the frozen-encoder cache vs recomputing the encoder, in one run.

Run (from the repository root):

    .venv/bin/python benchmarks/vlm_cache.py                      # CPU: the tiny test model + SmolVLM2 proportions
    .venv/bin/python benchmarks/vlm_cache.py --configs gpu_smolvlm2_2b   # on a GPU: SmolVLM2-2.2B sizes, 64 frames

For each model size a SmolVLM (``SmolVLMForConditionalGeneration``, random weights, the paper's LoRA settings)
trains on one video sample (batch 1, as in the paper), alternating two kinds of optimizer steps so that both see
the same machine state:

- ``encoder``: the step runs the frozen vision tower on the sample's pixel values (what training without the
  cache does every epoch);
- ``cache``: the step reads the tower's output for the sample from a cache entry file (safetensors, as
  ``ray_slt.models.vlm.cache`` writes it) and runs only connector + LM.

Both compute the same loss (checked). Reported: median step times, their ratio, the fraction of the step spent
in the frozen encoder, the cache entry size, and the cost projection for the paper's PHOENIX-2014T recipe.

Sizes:

- ``tiny``: the tests' tiny model (32 x 32 frames, 8 frames);
- ``smolvlm2_proportions``: SmolVLM2-2.2B's real depths, heads, patch size, 384 x 384 frames (729 patches per
  frame) and pixel-shuffle factor 3, with every width divided by 8, and 8 frames instead of 64: vision and
  language FLOPs shrink alike, so the *fraction* of the step spent in the encoder stays close to the real
  model's (what the projection needs), at a size a 2-core CPU runs;
- ``gpu_smolvlm2_2b``: SmolVLM2-2.2B's real sizes (SigLIP 400M, 27 layers; Llama 1.7B, 24 layers), 64 frames,
  bf16 (needs a GPU with ~40 GB).

Benchmarks compare within one run; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

# Paper (RESEARCH.md section 1; Table 12, Table 2): PHOENIX-2014T, 7,096 training videos, 10 epochs, 32.1 GPU-hours
# on one A100 (jointly fine-tuning vision encoder + LM with LoRA), batch 1 x grad-accum 4.
PAPER = {"dataset": "PHOENIX-2014T", "train_videos": 7096, "epochs": 10, "gpu_hours": 32.1, "gpu": "A100"}

CONFIGS = {
    "tiny": {
        "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       image_size=32, patch_size=8),
        "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=2048),
        "scale_factor": 2, "frames": 8, "dtype": "float32", "text_tokens": 40,
    },
    "smolvlm2_proportions": {
        "vision": dict(hidden_size=1152 // 8, intermediate_size=4304 // 8, num_hidden_layers=27, num_attention_heads=2,
                       image_size=384, patch_size=14),
        "text": dict(hidden_size=2048 // 8, intermediate_size=8192 // 8, num_hidden_layers=24, num_attention_heads=4,
                     num_key_value_heads=4, vocab_size=49280 // 8),
        "scale_factor": 3, "frames": 8, "dtype": "float32", "text_tokens": 40,
    },
    "gpu_smolvlm2_2b": {
        "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                       image_size=384, patch_size=14),
        "text": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=49280),
        "scale_factor": 3, "frames": 64, "dtype": "bfloat16", "text_tokens": 40,
    },
}  # fmt: skip


def build(cfg: dict, device: str):
    """A SmolVLM of the given sizes with the paper's LoRA (r=64, alpha=64, dropout 0.1) and a trainable
    connector, frozen tower: the VLMTranslator of ray_slt.models.vlm around it."""
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMForConditionalGeneration

    from ray_slt.models.vlm.config import VLMConfig
    from ray_slt.models.vlm.families import HALF, LANCZOS, FrameSpec, SmolVLMFamily, lora_target_regex
    from ray_slt.models.vlm.model import VLMTranslator

    family = SmolVLMFamily()
    vocab = {f"w{i}": i for i in range(cfg["text"]["vocab_size"] - len(family.special_tokens) - 2)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0", pad_token="<pad>")
    tokenizer.add_special_tokens({"additional_special_tokens": [*family.special_tokens]})
    config = SmolVLMConfig(
        vision_config=cfg["vision"],
        text_config=dict(model_type="llama", max_position_embeddings=16384, **cfg["text"]),
        scale_factor=cfg["scale_factor"],
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    config.text_config.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    dtype = getattr(torch, cfg["dtype"])
    model = SmolVLMForConditionalGeneration(config).to(dtype).eval()
    lora = LoraConfig(target_modules=lora_target_regex(family, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                "up_proj", "down_proj"]),
                      r=64, lora_alpha=64, lora_dropout=0.1)  # fmt: skip
    spec = FrameSpec("smolvlm", HALF, HALF, LANCZOS, size=cfg["vision"]["image_size"])
    vcfg = VLMConfig(model="bench", default_prompt=" ".join(f"w{i + 1}" for i in range(cfg["text_tokens"])))
    m = VLMTranslator(vcfg, family, get_peft_model(model, lora), tokenizer, spec, "bench")
    return m.to(device)


def run_config(name: str, cfg: dict, steps: int, device: str, tmp: str) -> dict:
    from ray_slt import storage
    from ray_slt.models.vlm.data import pack, sample_from_payload
    from ray_slt.models.vlm.model import param_groups, prepare_video

    m = build(cfg, device).train()
    n, side = cfg["frames"], cfg["vision"]["image_size"]
    frames = np.random.default_rng(0).integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    pixels, layout = prepare_video(m.family, m.frame_spec, frames, np.arange(n), 25.0, n)
    pixels = {k: v.to(device) for k, v in pixels.items()}
    text = " ".join(f"w{i + 7}" for i in range(20))
    with torch.no_grad():
        feats = m.vision_features(pixels)
    entry = os.path.join(tmp, f"{name}.safetensors")
    storage.write_bytes(entry, pack({"vision": feats}, "vision", layout.as_dict(), cache_key="bench", sample_id="s"))
    opt = torch.optim.AdamW(param_groups(m))
    for group in opt.param_groups:  # the update runs, but with lr 0: every step sees the same weights (same loss)
        group["lr"] = 0.0

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    lengths: list[int] = []

    def step(mode: str) -> tuple[float, float, float]:
        sync()
        t0 = time.perf_counter()
        if mode == "cache":
            s = sample_from_payload(storage.read_bytes(entry))
            s["vision"] = s["vision"].to(device)
        else:
            s = {"vision": None, "pixels": pixels, "layout": layout}
        s.update(text=text, sign_language="gsg", sample_id="s")
        batch = m.collate([s])
        lengths.append(batch["input_ids"].shape[1])
        sync()
        t1 = time.perf_counter()
        torch.manual_seed(1)  # the same LoRA dropout masks in both modes
        loss = m(batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - t0, t1 - t0, float(loss.detach())

    step("encoder")  # warm-up
    step("cache")
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for mode in ("encoder", "cache"):
        with FlopCounterMode(display=False) as counter:
            step(mode)
        flops[mode] = counter.get_total_flops()
    times: dict[str, list[float]] = {"encoder": [], "cache": []}
    reads, losses = [], {}
    for i in range(steps):
        for mode in ("encoder", "cache") if i % 2 == 0 else ("cache", "encoder"):
            dt, read_s, loss = step(mode)
            times[mode].append(dt)
            losses.setdefault(mode, loss)
            if mode == "cache":
                reads.append(read_s)
    vision_s = []
    for _ in range(max(2, steps // 2)):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            m.vision_features(pixels)
        sync()
        vision_s.append(time.perf_counter() - t0)
    enc, cache = statistics.median(times["encoder"]), statistics.median(times["cache"])
    batch_len = lengths[-1]
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    return {
        "config": name,
        "frames": n,
        "frame_size": side,
        "vision_tokens": int(feats.shape[0] * feats.shape[1]),
        "step_len": int(batch_len),
        "lm_video_tokens": m.family.tokens_per_video(m.config, layout),
        "vision_params_M": round(sum(p.numel() for p in m.vision_tower.parameters()) / 1e6, 2),
        "total_params_M": round(sum(p.numel() for p in m.parameters()) / 1e6, 2),
        "trainable_params_M": round(trainable / 1e6, 2),
        "dtype": cfg["dtype"],
        "steps_per_mode": steps,
        "step_s_encoder": round(enc, 4),
        "step_s_cache": round(cache, 4),
        "speedup": round(enc / cache, 3),
        "encoder_fraction": round(1 - cache / enc, 3),  # share of the encoder step that the cache removes
        "vision_forward_s": round(statistics.median(vision_s), 4),
        "cache_read_s": round(statistics.median(reads), 4),
        "cache_entry_bytes": os.path.getsize(entry),
        "same_loss": losses["encoder"] == losses["cache"],
        "counted_tflop_encoder_step": round(flops["encoder"] / 1e12, 4),
        "counted_tflop_cache_step": round(flops["cache"] / 1e12, 4),
        "counted_encoder_flop_share": round(1 - flops["cache"] / flops["encoder"], 3),
        "model_encoder_flop_share": round(flop_model(cfg, int(batch_len))["encoder_share"], 3),
    }


def flop_model(cfg: dict, seq_len: int) -> dict:
    """Training-step FLOPs of a SmolVLM sample (batch 1) by the usual transformer accounting: 2 FLOPs per
    multiply-add of every matmul; attention scores and values 2 x 2 x L^2 x d per layer (full, not causal-halved);
    logits for every position (as transformers computes them); backward of frozen weights = activation gradients
    only (1x forward), of LoRA/connector weights 2x forward. The vision tower runs forward only (frozen, and
    nothing before it needs gradients)."""
    v, t = cfg["vision"], cfg["text"]
    n = cfg["frames"]
    p = (v["image_size"] // v["patch_size"]) ** 2
    dv, mv = v["hidden_size"], v["intermediate_size"]
    vision = n * (
        2 * p * 3 * v["patch_size"] ** 2 * dv
        + v["num_hidden_layers"] * (2 * p * 4 * dv * dv + 2 * p * 2 * dv * mv + 4 * p * p * dv)
    )
    d, f, layers, vocab = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"], t["vocab_size"]
    kv = d * t["num_key_value_heads"] // t["num_attention_heads"]
    per_layer = 2 * seq_len * (2 * d * d + 2 * d * kv + 3 * d * f) + 4 * seq_len * seq_len * d
    lm_fwd = layers * per_layer + 2 * seq_len * d * vocab
    r = 64
    lora_fwd = layers * 2 * seq_len * r * (4 * d + 2 * kv + 2 * d + 2 * f)  # A and B of the 7 projections
    tokens = n * p // cfg["scale_factor"] ** 2
    connector_fwd = 2 * tokens * dv * cfg["scale_factor"] ** 2 * d
    rest = 2 * lm_fwd + 3 * (lora_fwd + connector_fwd)
    return {
        "vision_tflop": vision / 1e12,
        "rest_tflop": rest / 1e12,
        "encoder_share": vision / (vision + rest),
        # the paper's Table 12 setting, LoRA in the encoder too: it also back-propagates through the encoder
        "joint_lora_encoder_share": 2 * vision / (2 * vision + rest),
    }


def projection(fraction: float, paper_encoder_fraction: float | None = None) -> dict:
    """The paper's PHOENIX-2014T cost with the cache, from the encoder's share of a training step.

    ``fraction``: the encoder's share of the step being cached (the frozen recipe without the cache). When
    ``paper_encoder_fraction`` is given, the paper's 32.1 GPU-h are taken to be a step with that encoder share (its
    Table 12 run, LoRA in the encoder too, back-propagates through it) and the cached step keeps only the
    non-encoder part of it. Building the cache costs one forward of the encoder per video (one epoch's forward
    share). Reading cache entries overlaps with compute (Ray Data prefetch)."""
    hours, epochs = PAPER["gpu_hours"], PAPER["epochs"]
    paper_fraction = fraction if paper_encoder_fraction is None else paper_encoder_fraction
    rest = hours * (1 - paper_fraction)  # the step without its encoder part
    # the encoder's forward over all epochs (a joint-LoRA step runs it forward and backward: ~2 forwards)
    forward = hours * paper_fraction / (1 if paper_encoder_fraction is None else 2)
    cache_pass = forward / epochs
    return {
        "paper_gpu_hours": hours,
        "encoder_fraction": round(paper_fraction, 3),
        "training_gpu_hours_with_cache": round(rest, 1),
        "one_time_cache_gpu_hours": round(cache_pass, 2),
        "total_gpu_hours_with_cache": round(rest + cache_pass, 1),
        "saving": round(hours / (rest + cache_pass), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["tiny", "smolvlm2_proportions"], choices=sorted(CONFIGS))
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per mode and config")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on shared cores)")
    p.add_argument("--out", default="benchmarks/results/vlm_cache", help="output prefix (.json and .md)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = []
    with tempfile.TemporaryDirectory(prefix="vlm_cache_bench_") as tmp:
        for name in args.configs:
            if name.startswith("gpu_") and device != "cuda":
                print(f"skip {name}: no GPU", file=sys.stderr)
                continue
            r = run_config(name, CONFIGS[name], args.steps, device, tmp)
            print(json.dumps(r), file=sys.stderr)
            results.append(r)
    realistic = next((r for r in results if r["config"] != "tiny"), results[-1])
    real = CONFIGS["gpu_smolvlm2_2b"]
    # the real model's sequence: 64 frames x 81 tokens + the same text/prompt length as measured
    real_len = real["frames"] * 81 + (realistic["step_len"] - realistic["lm_video_tokens"])
    real_model = flop_model(real, real_len)
    out = {
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "results": results,
        "smolvlm2_2b_64_frames_flop_model": {k: round(v, 3) for k, v in real_model.items()} | {"seq_len": real_len},
        "projection_from": f"{realistic['config']} (measured time share)",
        "projection": projection(realistic["encoder_fraction"]),
        "projection_flops": projection(real_model["encoder_share"]),
        "projection_flops_joint_lora": projection(
            real_model["encoder_share"], paper_encoder_fraction=real_model["joint_lora_encoder_share"]
        ),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(render(out))
    print(render(out))
    return 0


def render(out: dict) -> str:
    lines = [
        f"# Frozen-encoder cache: training step time ({out['device']}, {out['torch_threads']} thread(s), "
        f"load average {out['load_average'][0]:.1f})",
        "",
        "| config | frames | vision tokens | step, encoder (s) | step, cache (s) | speedup | encoder share of step "
        "time | of step FLOPs (counted / model) | vision fwd (s) | cache read (s) | entry (MB) | same loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["results"]:
        lines.append(
            f"| {r['config']} | {r['frames']} | {r['vision_tokens']} | {r['step_s_encoder']:.3f} | "
            f"{r['step_s_cache']:.3f} | {r['speedup']:.2f}x | {r['encoder_fraction']:.0%} | "
            f"{r['counted_encoder_flop_share']:.0%} / {r['model_encoder_flop_share']:.0%} | "
            f"{r['vision_forward_s']:.3f} | {r['cache_read_s']:.4f} | {r['cache_entry_bytes'] / 1e6:.2f} | "
            f"{r['same_loss']} |"
        )
    fm = out["smolvlm2_2b_64_frames_flop_model"]
    lines += [
        "",
        "FLOPs counted by torch's FlopCounterMode leave out attention (it has no formula for the CPU SDPA kernels); "
        "the FLOP model counts it (without attention the two agree). The tiny model's encoder is ~3% of its step: "
        "its timings are noise on a shared machine.",
        "",
        f"SmolVLM2-2.2B at T_max = 64 (FLOP model, {fm['seq_len']} tokens): frozen SigLIP forward "
        f"{fm['vision_tflop']:.1f} TFLOP, connector + LM forward/backward {fm['rest_tflop']:.1f} TFLOP per sample: "
        f"the encoder is {fm['encoder_share']:.0%} of a training step.",
        "",
    ]
    for key, src in (
        ("projection", out["projection_from"]),
        ("projection_flops", "the SmolVLM2-2.2B FLOP model, frozen recipe"),
        ("projection_flops_joint_lora", "the FLOP model, the paper's run taken as joint encoder + LM LoRA"),
    ):
        pr = out[key]
        lines.append(
            f"Projection for PHOENIX-2014T from {src} (encoder share {pr['encoder_fraction']:.0%}): paper "
            f"{pr['paper_gpu_hours']} GPU-h for 10 epochs -> {pr['training_gpu_hours_with_cache']} GPU-h training "
            f"with the cache + {pr['one_time_cache_gpu_hours']} GPU-h to build it = "
            f"{pr['total_gpu_hours_with_cache']} GPU-h ({pr['saving']}x less)."
        )
    lines += [
        "",
        "Assumptions: GPU step time splits between encoder and the rest like the measured step (or like FLOPs); "
        "the 32.1 GPU-h of the paper's Table 12 are the cost of the recipe without the cache (Table 12 measured "
        "joint LoRA on encoder + LM, which also back-propagates through the encoder: the frozen recipe is cheaper "
        "still, and the cache removes a larger share of it); building the cache costs one epoch's encoder share; "
        "cache reads overlap with compute (Ray Data prefetch).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
