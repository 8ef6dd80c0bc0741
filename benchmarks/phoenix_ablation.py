"""The dev ablation of PHOENIX-2014T German -> gloss (SignLLM Table 8's setting), trained from scratch on CPUs: one
row per recipe choice, every row the same budget, every choice made on dev.

Run (from the repository root; reads ../shared/data/phoenix14t in place; about 11 minutes a row on 2 cores):

    .venv/bin/python benchmarks/phoenix_ablation.py [--epochs 5] [--rows full,lora,...] [--out DIR]

Rows (each is ``conf/train/text2gloss/phoenix.yaml`` with ``BASE``, the Prompt2LangGloss recipe this ablation starts
from: a tiny Qwen3, German templates, ``GSL_`` tags, no label smoothing, no LM dropout, greedy; then the overrides
shown in the table;
the shipped config has since become the dev-chosen recipe of the ablation and the long runs after it):

- ``lora``: the former recipe, LoRA adapters on the randomly initialised LM (its own weights never move);
- ``full``: ``BASE``, every weight of the random LM trained;
- ``seq2seq``: an encoder-decoder (a tiny random mBART, the same width and depth per stack) behind the same word
  encoder, instead of the causal LM;
- ``ls``: ``full`` + label smoothing 0.1;
- ``ls_avg``: ``ls``'s three best checkpoints on dev averaged (``ray-slt average --best 3``; no training of its own);
- ``ls_drop``: ``ls`` + dropout in the LM (0.2 on its input embeddings, 0.1 on its attention; the tiny Qwen3 has
  no dropout of its own);
- ``no_templates``: ``full`` without the German prompt templates (the bare sentence in);
- ``no_tags``: ``full`` without the ``GSL_`` language tags on the target glosses.

Each row trains with Ray Train (2 DDP workers) for ``--epochs`` epochs (cosine schedule over them), scores dev
after every epoch with greedy decoding and keeps the best checkpoint on dev BLEU-4. The row with the best dev
BLEU-4 is then decoded with beam size and length penalty chosen on dev, and test is decoded once with that choice
(test is reported, never used for a choice). A finished row is not trained again when the script is rerun with the
same ``--out`` (its record is ``{out}/rows/{row}.json``; the results name each row's run directory relative to
``--out``).

Writes ``benchmarks/results/phoenix_text2gloss_ablation.{json,md}``. Nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import phoenix_setup
from phoenix_text import DIRECTIONS, SCORE_KEYS, describe, load, score_table

REPO = phoenix_setup.REPO
RESULTS = REPO / "benchmarks" / "results"
KEYS = SCORE_KEYS

#: the recipe every row starts from (the shipped config's values when the ablation was measured)
BASE = ["text2gloss.lm=tiny:qwen3", "text2gloss.templates=de", "text2gloss.tag=GSL", "text2gloss.label_smoothing=0.0",
        "text2gloss.embed_dropout=0.0", "text2gloss.tiny.dropout=null", "text2gloss.num_beams=1"]  # fmt: skip

#: row -> (what it is, overrides of BASE, the row whose checkpoints it averages or None)
ROWS: dict[str, tuple[str, list[str], str | None]] = {
    "lora": ("LoRA on the random LM (the former recipe)", ["text2gloss.lm_training=lora"], None),
    "full": ("full training (BASE: templates de, tag GSL)", [], None),
    "seq2seq": ("encoder-decoder (tiny mBART) instead of the causal LM", ["text2gloss.lm=tiny:mbart"], None),
    "ls": ("full + label smoothing 0.1", ["text2gloss.label_smoothing=0.1"], None),
    "ls_avg": ("full + label smoothing 0.1 + best-3 checkpoint averaging", [], "ls"),
    "ls_drop": (
        "full + label smoothing 0.1 + LM dropout (input embeddings 0.2, attention 0.1)",
        ["text2gloss.label_smoothing=0.1", "text2gloss.embed_dropout=0.2", "text2gloss.tiny.dropout=0.1"],
        None,
    ),
    "no_templates": ("full, prompt templates off", ["text2gloss.templates=none"], None),
    "no_tags": ("full, language tags off", ["text2gloss.tag=null"], None),
}


def train_row(
    name: str, overrides: list[str], conf: Path, manifest: str, out: str, epochs: int, common: list[str]
) -> dict:
    from ray_slt.training.run import run_training

    cfg = load(conf, name, manifest, out, *BASE, *common, *overrides, "trainer.num_workers=2", f"optim.epochs={epochs}",
               "eval.every_epochs=1", "trainer.num_to_keep=3")  # fmt: skip
    t0 = time.perf_counter()
    summary = run_training(cfg)
    wall = time.perf_counter() - t0
    # the loop scored dev (greedy) after every epoch: the row's dev scores are the best checkpoint's
    curve = [json.loads(line) for line in Path(summary["curves"]["dev"]).read_text().splitlines() if line.strip()]
    best = next(c for c in curve if c["step"] == summary["best"]["step"])
    return {
        "model": describe(cfg),
        "config_hash": summary["config_hash"],
        "run_dir": summary["run_dir"],
        "train_wall_s": round(wall, 1),
        "train_samples_per_s": summary["train_samples_per_s"],
        "best_step": summary["best"]["step"],
        "dev_curve": [round(c["dev_bleu4"], 2) for c in curve if c.get("dev_bleu4") is not None],
        "dev": {k: best[f"dev_{k}"] for k in KEYS},
    }


def average_row(source: dict, manifest: str, out: str, name: str) -> dict:
    from ray_slt.eval.run import evaluate
    from ray_slt.training.average import average_run

    info = average_run(source["run_dir"], k=3, by="best", out=f"{out}/{name}")
    dev = evaluate(info["out"], split="dev", data=manifest, predictor_options={"num_beams": 1}, batch_size=64,
                   out=f"{out}/eval/{name}/dev")  # fmt: skip
    return {"model": source["model"], "averaged_steps": info["steps"], "run_dir": info["out"],
            "train_wall_s": source["train_wall_s"], "dev": {k: dev[k] for k in KEYS}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5, help="epochs per row (the same for every row)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows, in order (from {', '.join(ROWS)})")
    p.add_argument("--out", default="runs/bench_phoenix_ablation", help="working directory (reruns resume here)")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the .json (no training)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every row (repeatable), e.g. a shorter LM or another seed",
    )
    p.add_argument("--beams", default="1,4", help="beam sizes tried on dev for the chosen row")
    p.add_argument("--length-penalties", default="0.8,1.0,1.2", help="length penalties tried on dev")
    args = p.parse_args(argv)
    if args.render:
        result = json.loads((RESULTS / "phoenix_text2gloss_ablation.json").read_text())
        write(result)
        print(render(result))
        return 0
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    for r in rows:
        src = ROWS[r][2]
        if src and src not in rows:
            p.error(f"row {r!r} averages row {src!r}'s checkpoints: add {src!r} to --rows")
    conf = DIRECTIONS["text2gloss"]["config"]
    out = str(Path(args.out).resolve())
    manifest = phoenix_setup.start(out, args.cpus)
    if manifest is None:
        return 2
    from ray_slt.eval.run import choose_decoding, evaluate

    result = {
        "benchmark": "PHOENIX-2014T German -> gloss, dev ablation, from scratch on CPU",
        "machine": phoenix_setup.machine(args.cpus),
        "config": str(conf.relative_to(REPO)),
        "epochs_per_row": args.epochs,
        "base_overrides": BASE,
        "common_overrides": args.set,
        "rows": [],
        "published_reference": DIRECTIONS["text2gloss"]["published"],
    }
    done: dict[str, dict] = {}
    (Path(out) / "rows").mkdir(parents=True, exist_ok=True)
    for r in rows:
        record = Path(out) / "rows" / f"{r}.json"
        if record.exists():
            done[r] = json.loads(record.read_text())
            print(f"{r}: done before (dev BLEU-4 {done[r]['dev']['bleu4']:.2f})", flush=True)
            continue
        label, overrides, src = ROWS[r]
        print(f"{r}: {label} ...", flush=True)
        res = average_row(done[src], manifest, out, r) if src else train_row(r, overrides, conf, manifest, out,
                                                                             args.epochs, args.set)  # fmt: skip
        res.update(row=r, label=label, overrides=overrides)
        record.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
        done[r] = res
        print(f"{r}: dev BLEU-4 {res['dev']['bleu4']:.2f} (greedy)", flush=True)
        result["rows"] = [done[x] for x in rows if x in done]
        write(result)  # the table so far: an interrupted run still leaves its finished rows

    # the dev-chosen row: decoding chosen on dev, test decoded once with that choice
    best = max(done.values(), key=lambda res: res["dev"]["bleu4"])
    grid = {"num_beams": [int(v) for v in args.beams.split(",")],
            "length_penalty": [float(v) for v in args.length_penalties.split(",")]}  # fmt: skip
    choice = choose_decoding(best["run_dir"], split="dev", grid=grid, batch_size=64, data=manifest)
    decoding = choice["best"]
    chosen = {split: evaluate(best["run_dir"], split=split, data=manifest, predictor_options=decoding, batch_size=64,
                              out=f"{out}/eval/chosen/{split}") for split in ("dev", "test")}  # fmt: skip
    result.update(
        chosen_on_dev=best["row"],
        decoding=decoding,
        decoding_grid_dev=[{"options": g["options"], "bleu4": g[choice["metric"]]} for g in choice["results"]],
        chosen_dev={k: chosen["dev"][k] for k in KEYS},
        chosen_test={k: chosen["test"][k] for k in KEYS},
        bleu_signature=chosen["test"]["bleu_signature"],
    )
    write(result)
    print(render(result))
    return 0


def write(result: dict) -> None:
    """The results files; each row's run is named relative to ``--out`` (the working directory is this machine's)."""
    rows = [{("run" if k == "run_dir" else k): (Path(v).name if k == "run_dir" else v) for k, v in row.items()}
            for row in result["rows"]]  # fmt: skip
    public = {**result, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "phoenix_text2gloss_ablation.json").write_text(json.dumps(public, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / "phoenix_text2gloss_ablation.md").write_text(render(result))


def render(r: dict) -> str:
    lines = [
        "# PHOENIX-2014T German -> gloss: the dev ablation, trained from scratch on CPUs",
        "",
        f"Every row: `{r['config']}` with {' '.join(f'`{o}`' for o in r.get('base_overrides', BASE))} (the "
        f"recipe the rows vary), then the overrides shown, {r['epochs_per_row']} epochs on "
        f"{r['machine']['cpus']} CPUs (2 DDP workers), the best checkpoint on dev BLEU-4 (greedy, scored after every "
        "epoch); dev scored with greedy decoding.",
        "",
        "| row | overrides | dev BLEU-1 | dev BLEU-4 | dev ROUGE-L | dev chrF | dev BLEU-4 per epoch | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        d = row["dev"]
        curve = ", ".join(f"{v:.2f}" for v in row.get("dev_curve", []))
        if "averaged_steps" in row:
            curve = "averaged steps " + ", ".join(str(s) for s in row["averaged_steps"])
        overrides = " ".join(f"`{o}`" for o in row["overrides"]) or "-"
        source = ROWS.get(row["row"], ("", [], None))[2]
        if source:
            overrides = f"`{source}`'s run, then `ray-slt average RUN --best 3`"
        lines.append(f"| {row['label']} | {overrides} | {d['bleu1']:.2f} | {d['bleu4']:.2f} | {d['rouge_l']:.2f} | "
                     f"{d['chrf']:.2f} | {curve} | {row['train_wall_s'] / 60:.1f} |")  # fmt: skip
    if "decoding" not in r:
        return "\n".join([*lines, "", "(Rows still running: no row chosen on dev yet.)", ""])
    decoding = ", ".join(f"{k} {v}" for k, v in r["decoding"].items())
    lines += [
        "",
        f"Chosen on dev: **{r['chosen_on_dev']}**; its decoding chosen on dev: {decoding}. With that choice:",
        "",
        *score_table([("dev", r["chosen_dev"]), ("test", r["chosen_test"])]),
        "",
        f"sacrebleu signature: `{r['bleu_signature']}`. Reference points: {r['published_reference']}.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
