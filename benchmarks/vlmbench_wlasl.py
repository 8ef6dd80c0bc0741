"""The VLM benchmarks end to end on the real WLASL clips of ../shared/data, with a tiny random SmolVLM, in one run.

Run (from the repository root):

    .venv/bin/python benchmarks/vlmbench_wlasl.py                  # ~5 minutes on 2 CPU cores

It builds the three question sets from the clips that exist locally (WLASL300 open set and binary matching over
all splits: the official test split has no local video here; LexSign-Bench over WLASL2000 with ASL-LEX 2.0
iconicity types and phonological distractors), answers them with a tiny random SmolVLM (the real architecture
class, random weights), and reports every protocol's scores with their bootstrap intervals, the blind and
temporal-perturbation controls, answering by generated letter vs by option likelihood, and the answering
throughput of 1 vs 2 Ray Data actors (questions per second, taken in the same run).

**A tiny random model measures plumbing only**: it names no sign, so open-set top-1 is 0, binary matching sits
at its refusal or always-one-answer rate, and multiple choice by likelihood is at chance (25%) within its
interval. The numbers that matter here are the counts (questions asked, answered, cached, errors) and that the
controls behave as chance predicts.

Results go to benchmarks/results/vlmbench.{md,json}. Nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    args = ap.parse_args()

    import ray

    from ray_slt.data.lexicon import asl_lex_lexicon
    from ray_slt.vlmbench.config import BenchConfig
    from ray_slt.vlmbench.lexsign import build_lexsign
    from ray_slt.vlmbench.questions import write_questions
    from ray_slt.vlmbench.report import score_run, summary_table
    from ray_slt.vlmbench.runner import run_answers
    from ray_slt.vlmbench.wlasl import binary_questions, open_questions, wlasl_rows

    wlasl, lexfile = os.path.join(args.data, "wlasl"), os.path.join(args.data, "asl_lex", "signdata-11-5-20.csv")
    if not os.path.exists(wlasl) or not os.path.exists(lexfile):
        print(f"needs {wlasl} and {lexfile}", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="vlmbench_")
    lex = asl_lex_lexicon(lexfile)
    splits = ("train", "dev", "test")
    rows300, candidates, missing300 = wlasl_rows(wlasl, 300, splits)
    rows2000, vocab, _ = wlasl_rows(wlasl, 2000, splits)
    qfiles = {}
    qfiles["open"] = write_questions(os.path.join(work, "open.jsonl"),
        {"benchmark": "wlasl300-zeroshot-open", "protocol": "open", "seed": 42, "candidates": candidates,
         "params": {"splits": list(splits), "missing_videos": missing300}}, open_questions(rows300))  # fmt: skip
    bq, coverage = binary_questions(rows300, lex)
    qfiles["binary"] = write_questions(os.path.join(work, "binary.jsonl"), {"benchmark": "wlasl300-zeroshot-binary",
        "protocol": "binary", "seed": 42, "params": {"coverage": coverage}}, bq)  # fmt: skip
    lq, params = build_lexsign(rows2000, lex, count=75, seed=0, vocabulary=vocab)
    head = {"benchmark": "lexsign-bench", "protocol": "mcq", "seed": 0, "params": params}
    qfiles["mcq"] = write_questions(os.path.join(work, "lexsign.jsonl"), head, lq)
    paths = {"open": "open.jsonl", "binary": "binary.jsonl", "mcq": "lexsign.jsonl"}

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    tiny = {"model": "tiny:smolvlm", "tiny": {"path": os.path.join(work, "tiny_smolvlm")}, "dtype": "float32"}

    def cfg(protocol: str, out: str, **kw) -> BenchConfig:
        data = {"questions": os.path.join(work, paths[protocol]), "out": os.path.join(work, out),
                "model": {"vlm": tiny}, "frames": "uniform:8", "decode": {"max_side": 256}, "max_new_tokens": 8,
                "batch_size": 4}  # fmt: skip
        data.update(kw)
        return BenchConfig.model_validate(data)

    runs = {
        "open": cfg("open", "open"),
        "binary": cfg("binary", "binary", max_new_tokens=16),
        "mcq_generate": cfg("mcq", "mcq_gen", frames="central:16@5", conditions=["video", "blind", "perturb:0.2"]),
        "mcq_loglik": cfg(
            "mcq", "mcq_ll", frames="central:16@5", answer_by="loglik", conditions=["video", "blind", "perturb:0.2"]
        ),
    }
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "model": "tiny:smolvlm (random)",
                    "questions": {k: v["questions"] for k, v in qfiles.items()},
                    "content_hash": {k: v["content_hash"] for k, v in qfiles.items()}, "runs": {}}  # fmt: skip
    md = ["# VLM benchmarks on the real WLASL clips (tiny random SmolVLM: plumbing only)", "",
          f"Machine: {report['machine']}. Question sets: " + ", ".join(
              f"{k} {v['questions']} ({v['content_hash'][:15]}...)" for k, v in qfiles.items()), ""]  # fmt: skip
    for name, c in runs.items():
        t0 = time.perf_counter()
        counts = run_answers(c, echo=True)
        wall = time.perf_counter() - t0
        metrics = score_run(c)
        report["runs"][name] = {"counts": counts, "seconds": round(wall, 1), "metrics": metrics}
        md += [f"## {name}", "", f"{counts['answered']} answers in {wall:.0f} s, {counts['errors']} errors.", "",
               summary_table(metrics)]  # fmt: skip

    # throughput: 1 vs 2 Ray Data actors answering the same tasks (fresh answer caches)
    speed = {}
    for workers in (1, 2):
        c = cfg("mcq", f"speed_{workers}", frames="central:16@5", answer_by="loglik", workers=workers,
                conditions=["video"], cpus_per_worker=1.0)  # fmt: skip
        t0 = time.perf_counter()
        counts = run_answers(c, echo=False)
        speed[workers] = counts["answered"] / (time.perf_counter() - t0)
    report["questions_per_s"] = {str(k): round(v, 2) for k, v in speed.items()}
    md += ["## Throughput (LexSign-Bench by likelihood, video condition, one run)", "",
           "| actors | questions/s | vs 1 |", "|---|---|---|",
           *(f"| {w} | {v:.2f} | {v / speed[1]:.2f}x |" for w, v in speed.items()), ""]  # fmt: skip
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "vlmbench.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=float)
    with open(os.path.join(args.out, "vlmbench.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
