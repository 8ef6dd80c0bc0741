"""Training-step speed of the PHOENIX-2014T text-side translators on one CPU thread: what the three ways of
spending fewer positions buy, as ratios to the straightforward step measured in the same run.

Run (from the repository root; reads ../shared/data/phoenix14t in place; a few minutes):

    .venv/bin/python benchmarks/sft_step_speed.py [--steps 12] [--set KEY=VALUE ...]

The gloss -> German config (``conf/train/phoenix_gloss2text.yaml``, or ``--config``) builds its model once; each
setting then trains ``--steps`` optimizer steps of the same per-worker batch size on the same training rows (after
two untimed steps), one thread, and reports seconds per step, the padded length of a batch's rows and the ratio of its
steps per second to the baseline's:

- **logits**: the LM's output head over every position of the layout (the straightforward way) or only over the
  positions that predict a target token (``SignTranslator.target_logits_only``);
- **prompt**: the 43-token instruction of the config or eight ``<s>`` separators (``sft.prompt_template``);
- **batches**: rows in shuffled order or grouped by length (``optim.group_by_length`` 8: eight batches' worth of
  shuffled rows sorted by size, then cut into batches of neighbours).

Writes ``benchmarks/results/sft_step_speed.{json,md}``. Nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import phoenix_setup

REPO = phoenix_setup.REPO
RESULTS = REPO / "benchmarks" / "results"
SEPARATORS = "<s>" * 8


def batches(task, rows: list[dict], batch_size: int, steps: int, group: int) -> list[list[dict]]:
    """``steps + 2`` batches of rows: consecutive shuffled rows, or (``group`` > 1) length groups of them."""
    from ray_slt.training.loop import length_groups

    need = (steps + 2) * batch_size
    if group <= 1:
        return [rows[i : i + batch_size] for i in range(0, need, batch_size)]
    out: list[list[dict]] = []
    rng = random.Random(0)
    pool = batch_size * group
    for start in range(0, len(rows), pool):
        chunk = rows[start : start + pool]
        columns = {k: [r[k] for r in chunk] for k in chunk[0]}
        for part in length_groups(columns, task.sample_sizes(columns), batch_size, rng):
            out.append([dict(zip(part, values)) for values in zip(*part.values())])
        if len(out) >= steps + 2:
            return out[: steps + 2]
    raise SystemExit("not enough training rows for --steps")


def measure(task, model, rows: list[dict], steps: int, batch_size: int, group: int) -> dict:
    import torch

    collate = task.collator(model)
    data = [collate(b) for b in batches(task, rows, batch_size, steps, group)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step(batch) -> None:
        loss, _ = task.loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for b in data[:2]:
        step(b)
    prompt = len(model.prompt_ids)
    positions = [int((b["gloss_mask"].sum(1) + prompt + b["target_mask"].sum(1)).max()) for b in data[2:]]
    t0 = time.perf_counter()
    for b in data[2:]:
        step(b)
    dt = (time.perf_counter() - t0) / steps
    return {"s_per_step": round(dt, 4), "padded_length": round(sum(positions) / len(positions), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "conf" / "train" / "phoenix_gloss2text.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides (repeatable)")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per setting")
    p.add_argument("--out", default="runs/bench_sft_step_speed")
    args = p.parse_args(argv)
    manifest = phoenix_setup.start(args.out, 1)
    if manifest is None:
        return 1
    import torch

    from ray_slt.config import load_config
    from ray_slt.training.task import task_for

    torch.set_num_threads(1)
    results = []
    for prompt in ("instruction", "separators"):
        extra = [f"sft.prompt_template={SEPARATORS}"] if prompt == "separators" else []
        cfg = load_config(args.config, [f"data.manifest={manifest}", *args.set, *extra])
        task = task_for(cfg)
        torch.manual_seed(0)
        model = task.fresh()
        rows = list(task.source().samples("train"))
        random.Random(0).shuffle(rows)
        for logits in ("all", "targets"):
            for group in (0, 8):
                model.target_logits_only = logits == "targets"
                r = measure(task, model, rows, args.steps, cfg.optim.batch_size, group)
                r.update(prompt=prompt, logits=logits, batches="by length" if group else "shuffled")
                results.append(r)
                print(r, flush=True)
    base = results[0]["s_per_step"]
    for r in results:
        r["speed_vs_baseline"] = round(base / r["s_per_step"], 2)
    config = Path(args.config).resolve()
    out = {"config": str(config.relative_to(REPO) if config.is_relative_to(REPO) else config.name),
           "overrides": args.set, "steps": args.steps, "batch_size": cfg.optim.batch_size,
           "machine": phoenix_setup.machine(1), "results": results}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sft_step_speed.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Training-step speed of the text-side translator (one CPU thread)", "",
             f"Config `{out['config']}`{''.join(' ' + o for o in args.set)}, per-worker batch {out['batch_size']}, "
             f"{args.steps} timed steps per setting after 2 untimed, the same shuffled PHOENIX-2014T training rows; "
             "`benchmarks/sft_step_speed.py`.", "",
             "| prompt | LM head on | batches | padded row length (mean) | s per step | speed vs the first row |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        head = "every position" if r["logits"] == "all" else "target positions"
        lines.append(f"| {r['prompt']} | {head} | {r['batches']} | {r['padded_length']} | {r['s_per_step']} | "
                     f"{r['speed_vs_baseline']}x |")  # fmt: skip
    (RESULTS / "sft_step_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
