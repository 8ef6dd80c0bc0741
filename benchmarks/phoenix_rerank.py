"""PHOENIX-2014T text side: noisy-channel re-ranking of trained models' beam hypotheses with the reverse direction
(gloss -> German re-ranked with a German -> gloss model, or the other way round) and, with ``--lm``, a language model
of the output side too, or with ``--peer``, other models of the same direction (an n-best ensemble), against the
same model's plain beam search, every setting chosen on dev and test decoded once with each choice.

Run (from the repository root, after training both directions, e.g. with benchmarks/phoenix_text.py; ~10-20 min
on 2 cores, all of it decoding):

    .venv/bin/python benchmarks/phoenix_rerank.py --forward runs/bench_g2t/train --channel runs/bench_t2g/train \\
        --name phoenix_gloss2text_channel [--lm runs/textlm_phoenix_de] [--peer runs/bench_g2t_b/train]

What it does, with ``ray-slt eval``'s code (``choose_decoding`` then ``evaluate`` on test):

1. plain beam search: beam size x length penalty chosen on dev (``--beams``, ``--length-penalties``);
2. re-ranked (:mod:`ray_slt.models.rerank`): the beam's hypotheses re-scored with
   ``log p(y|x) + W log p(x|y) + B |y|``; beam size, length penalty, W (``--channel-weights``) and B
   (``--length-bonuses``) chosen on dev together (the weights re-score one decoding per beam setting);
   with ``--lm`` also ``+ L log p(y)`` (a ``textlm`` run of the output side), L (``--lm-weights``) chosen with them;
   with ``--peer`` (repeatable) a setting whose candidates are pooled from every peer's beam too and scored with
   ``+ E sum_j log p_j(y|x)``, E (``--peer-weights``) chosen with the others;
3. test decoded once with each dev choice; BLEU-1..4, ROUGE-L, chrF with the sacrebleu signature;
4. the training minutes of the system: each model's ``train_time_s`` (run.json), following a GRPO run's ``init``
   back to the SFT run it started from; the channel model's (and the language model's, the peers') minutes are
   part of the re-ranked system's.

Writes ``benchmarks/results/{name}.json`` and ``.md``. Nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import phoenix_setup
from phoenix_text import SCORE_KEYS, score_table

REPO = phoenix_setup.REPO
RESULTS = REPO / "benchmarks" / "results"


def training_chain(run: str) -> list[dict]:
    """The runs that trained ``run``'s model, newest first: the run itself, then (for a run that started from
    another model, e.g. GRPO's ``init``) the run that trained that model, and so on; each with its stage and
    ``train_time_s``."""
    chain = []
    here: Path | None = Path(run).resolve()
    while here is not None:
        info = json.loads((here / "run.json").read_text())
        chain.append({"run": here.name if here.name != "train" else f"{here.parent.name}/{here.name}",
                      "stage": info.get("stage"), "train_time_s": info.get("train_time_s")})  # fmt: skip
        here = None
        for parent in Path(info["init"]).resolve().parents if info.get("init") else ():
            if (parent / "run.json").exists():
                here = parent
                break
    return chain


def shown(path: str | None) -> str | None:
    """A run's path as the results record it: relative to the repository when inside it, else to the working
    directory (no machine's absolute paths in the results)."""
    if path is None:
        return None
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else os.path.relpath(p)


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--forward", required=True, help="the run whose outputs are re-ranked (its best checkpoint)")
    p.add_argument("--channel", required=True, help="the reverse-direction run that re-ranks them")
    p.add_argument("--name", required=True, help="results file stem under benchmarks/results")
    p.add_argument("--out", default="runs/bench_rerank", help="working directory (the manifest, Ray)")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--beams", default="4,8", help="beam sizes tried on dev (both settings)")
    p.add_argument("--length-penalties", default="1.0,1.2", help="length penalties tried on dev (both settings)")
    p.add_argument("--channel-weights", default="0,0.25,0.5,0.75,1.0,1.5", help="W tried on dev")
    p.add_argument("--length-bonuses", default="0,0.25,0.5,1.0,1.5,2.0", help="B (per output token) tried on dev")
    p.add_argument("--lm", help="a language model run of the output side (stage textlm): a third setting adds it")
    p.add_argument("--lm-weights", default="0,0.1,0.25,0.5", help="L tried on dev (with --lm)")
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        help="another run of the same direction (repeatable): a setting adds their candidates and scores",
    )
    p.add_argument("--peer-weights", default="0.5,1.0", help="E tried on dev (with --peer)")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    for run in (args.forward, args.channel, *([args.lm] if args.lm else []), *args.peer):
        if not (Path(run) / "run.json").exists():
            p.error(f"{run}: not a finished run directory (no run.json)")
    t_start = time.perf_counter()
    out = str(Path(args.out).resolve())
    manifest = phoenix_setup.start(out, args.cpus)
    if manifest is None:
        return 2
    from ray_slt.eval.run import choose_decoding, evaluate

    beams = {"num_beams": [int(v) for v in args.beams.split(",")], "length_penalty": floats(args.length_penalties)}
    weights = {"channel_weight": floats(args.channel_weights), "length_bonus": floats(args.length_bonuses)}
    channel = str(Path(args.channel).resolve())
    settings = {
        "plain beam search": ({}, beams),
        "re-ranked with the reverse model": ({"channel": channel}, {**beams, **weights}),
    }
    if args.lm:
        settings["re-ranked with the reverse model and the LM"] = (
            {"channel": channel, "lm": str(Path(args.lm).resolve())},
            {**beams, **weights, "lm_weight": floats(args.lm_weights)},
        )
    if args.peer:
        settings["re-ranked with the reverse model and the peers"] = (
            {"channel": channel, "peer": [str(Path(r).resolve()) for r in args.peer]},
            {**beams, **weights, "peer_weight": floats(args.peer_weights)},
        )
    rows = {}
    for label, (fixed, grid) in settings.items():
        t0 = time.perf_counter()
        choice = choose_decoding(args.forward, grid, split="dev", data=manifest, batch_size=args.batch_size,
                                 fixed=fixed)  # fmt: skip
        dev_s = time.perf_counter() - t0
        test = evaluate(args.forward, split="test", data=manifest, predictor_options=choice["best"],
                        batch_size=args.batch_size, out=f"{out}/eval/{label.split()[0]}-test",
                        extra={"decoding_chosen_on": {"split": "dev", "file": choice["file"]}})  # fmt: skip
        chosen = next(r for r in choice["results"] if {**fixed, **r["options"]} == choice["best"])
        dev = json.loads(Path(chosen["metrics_file"]).read_text())
        top = sorted(choice["results"], key=lambda r: -r["bleu4"])[:5]
        rows[label] = {
            "decoding": {k: v for k, v in choice["best"].items() if k not in ("channel", "lm", "peer")},
            "dev": {k: dev[k] for k in SCORE_KEYS},
            "test": {k: test[k] for k in SCORE_KEYS},
            "grid": {k: list(v) for k, v in grid.items()},
            "grid_size": len(choice["results"]),
            "dev_grid_s": round(dev_s, 1),
            "top_dev": [{"options": r["options"], "bleu4": r["bleu4"]} for r in top],
        }
        print(f"{label}: dev {dev['bleu4']:.2f} with {rows[label]['decoding']}, test {test['bleu4']:.2f}", flush=True)
        signature, rouge = test["bleu_signature"], test["rouge_impl"]
    forward_chain, channel_chain = training_chain(args.forward), training_chain(args.channel)
    lm_chain = training_chain(args.lm) if args.lm else []
    peer_chains = [training_chain(r) for r in args.peer]
    minutes = {"forward": sum(r["train_time_s"] or 0 for r in forward_chain) / 60,
               "channel": sum(r["train_time_s"] or 0 for r in channel_chain) / 60,
               "lm": sum(r["train_time_s"] or 0 for r in lm_chain) / 60,
               "peers": sum(r["train_time_s"] or 0 for c in peer_chains for r in c) / 60}  # fmt: skip
    result = {
        "benchmark": "noisy-channel re-ranking on PHOENIX-2014T (text side), models trained from scratch on CPU",
        "machine": phoenix_setup.machine(args.cpus),
        "forward": shown(args.forward),
        "channel": shown(args.channel),
        "forward_training": forward_chain,
        "channel_training": channel_chain,
        "lm": shown(args.lm),
        "lm_training": lm_chain,
        "peers": [shown(r) for r in args.peer],
        "peers_training": peer_chains,
        "train_minutes": {k: round(v, 1) for k, v in minutes.items()},
        "settings": rows,
        "bleu_signature": signature,
        "rouge_impl": rouge,
        "total_wall_s": round(time.perf_counter() - t_start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render(result))
    print(render(result))
    return 0


def _chain(chain: list[dict]) -> str:
    return " <- ".join(f"{r['stage']} `{r['run']}` {r['train_time_s'] / 60:.1f} min" for r in chain)


def render(r: dict) -> str:
    m = r["train_minutes"]
    lines = [
        "# Noisy-channel re-ranking on PHOENIX-2014T (text side)",
        "",
        f"Re-ranked: `{r['forward']}` (trained: {_chain(r['forward_training'])}); reverse model `{r['channel']}` "
        f"(trained: {_chain(r['channel_training'])}). Training in all: {m['forward']:.1f} min plain, "
        f"{m['forward'] + m['channel']:.1f} min with the reverse model"
        + (
            f", {m['forward'] + m['channel'] + m['lm']:.1f} min with the language model `{r['lm']}` too (trained: "
            f"{_chain(r['lm_training'])})"
            if r.get("lm")
            else ""
        )
        + (
            f", {m['forward'] + m['channel'] + m.get('peers', 0):.1f} min with the peers "
            + ", ".join(f"`{p}` (trained: {_chain(c)})" for p, c in zip(r["peers"], r["peers_training"]))
            if r.get("peers")
            else ""
        )
        + f", on {r['machine']['cpus']} CPUs.",
        "",
        "Every setting chosen on dev (BLEU-4), test decoded once with it; score = log p(y|x) + W log p(x|y) "
        + ("+ L log p(y) " if r.get("lm") else "")
        + ("(+ E sum_j log p_j(y|x) over the peers' hypotheses too, in its setting) " if r.get("peers") else "")
        + "+ B |y| over the beam's hypotheses (`ray_slt.models.rerank`).",
        "",
        "| setting | decoding chosen on dev | dev BLEU-4 | test BLEU-1 | test BLEU-4 | test ROUGE-L | test chrF |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, s in r["settings"].items():
        decoding = ", ".join(f"{k} {v}" for k, v in s["decoding"].items())
        t = s["test"]
        lines.append(f"| {label} | {decoding} | {s['dev']['bleu4']:.2f} | {t['bleu1']:.2f} | {t['bleu4']:.2f} | "
                     f"{t['rouge_l']:.2f} | {t['chrf']:.2f} |")  # fmt: skip
    for label, s in r["settings"].items():
        grid = "; ".join(f"{k} {', '.join(str(v) for v in vs)}" for k, vs in s["grid"].items())
        lines += ["", f"{label}:", "", *score_table([("dev", s["dev"]), ("test", s["test"])]), "",
                  f"best of the dev grid ({grid}: {s['grid_size']} settings, {s['dev_grid_s'] / 60:.1f} min): "
                  + "; ".join(", ".join(f"{k} {v}" for k, v in g["options"].items()) + f": {g['bleu4']:.2f}"
                              for g in s["top_dev"])]  # fmt: skip
    lines += ["", f"sacrebleu signature: `{r['bleu_signature']}`; ROUGE-L: {r['rouge_impl']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
