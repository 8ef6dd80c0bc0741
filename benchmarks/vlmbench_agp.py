"""AGP's quality protocol end to end on the synthetic isolated signs, in one run (paper 4, Tables 5/6/12).

Run (from the repository root):

    .venv/bin/python benchmarks/vlmbench_agp.py          # ~10 minutes on 2 CPU cores

1. The synthetic isolated signs (60 made-up signs; ``ray-slt prepare synthetic_isolated``) and their features.
2. **Reference**: HALI trained on the corpus's own descriptions (the 30 seen signs), zero-shot top-1/top-5 on the 20
   test-unseen signs (``ray-slt eval --protocol zsl``).
3. **AGP**: one training video per *seen* sign, drawn from its ``.pose`` by pose-format's visualizer, described by a
   VLM (``protocol: describe``, the benchmark runner), the descriptions summarised per sign (one per sign here, so
   kept as they are), and the quality lexicon built: generated descriptions for the seen signs, reference ones for
   the unseen (:func:`ray_slt.vlmbench.agp.quality_lexicon`). HALI trained on it with the same seed and partition,
   evaluated on the same unseen signs with their reference descriptions.

The describing VLM here is a tiny random SmolVLM: its descriptions carry no information about the signs, so the
AGP row measures what training on uninformative descriptions of the seen signs costs against the reference
descriptions; with a real VLM (``--vlm MODEL_ID`` on a GPU machine) it measures the VLM's descriptions as the
paper does. Results go to benchmarks/results/vlmbench_agp.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONF = REPO / "conf" / "train" / "recognition"
RESULTS = REPO / "benchmarks" / "results"


def write_video(path: str, frames, fps: float) -> None:
    """BGR frames (pose-format's drawing) -> an MPEG-4 file, with PyAV."""
    import av

    with av.open(path, "w") as container:
        stream = None
        for img in frames:
            if stream is None:
                stream = container.add_stream("mpeg4", rate=round(fps))
                stream.height, stream.width = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
                stream.pix_fmt = "yuv420p"
            frame = av.VideoFrame.from_ndarray(img[: stream.height, : stream.width].copy(), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vlm", default="tiny:smolvlm", help="the describing VLM: tiny:<family>, a model id or a path")
    ap.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="agp_")

    import ray
    from pose_format import Pose
    from pose_format.pose_visualizer import PoseVisualizer

    from ray_slt.cli import main as cli
    from ray_slt.config import load_config
    from ray_slt.data.lexicon import read_lexicon, write_lexicon
    from ray_slt.data.manifest import read_manifest
    from ray_slt.eval.protocols import class_partition
    from ray_slt.eval.run import evaluate
    from ray_slt.training.run import run_training
    from ray_slt.vlmbench.agp import clean_description, describe_questions, generated_lexicon, quality_lexicon
    from ray_slt.vlmbench.config import BenchConfig
    from ray_slt.vlmbench.questions import write_questions
    from ray_slt.vlmbench.report import score_run
    from ray_slt.vlmbench.runner import build_tasks, read_answers, run_answers

    root = f"{out}/synthetic_isolated"
    manifest, features, reference = f"{root}/manifest.parquet", f"{root}/features", f"{root}/corpus/lexicon.csv"
    if cli(["prepare", "synthetic_isolated", "--root", f"{root}/corpus", "--out", manifest]) != 0:
        return 1
    if cli(["extract", manifest, "--out", features, "--no-progress", "--json"]) != 0:
        return 1
    ray.shutdown()
    ref_entries, _ = read_lexicon(reference)
    hali = load_config(str(CONF / "hali_synthetic_tiny.yaml"))
    p = hali.hali.partition
    part = class_partition(sorted(e.gloss for e in ref_entries), p.seen, p.val_unseen, p.test_unseen, p.seed)
    seen = set(part["seen"])

    # AGP perceive: one training video per seen sign, drawn from its pose
    rows = []
    for r in read_manifest(manifest).to_pylist():
        if r["split"] != "train" or r["gloss"] not in seen or any(x["gloss"] == r["gloss"] for x in rows):
            continue
        uri = r["pose_uri"] if os.path.isabs(r["pose_uri"]) else os.path.join(os.path.dirname(manifest), r["pose_uri"])
        pose = Pose.read(Path(uri).read_bytes())
        video = f"{out}/videos/{r['sample_id']}.mp4"
        os.makedirs(os.path.dirname(video), exist_ok=True)
        write_video(video, PoseVisualizer(pose).draw(), pose.body.fps)
        rows.append({"sample_id": r["sample_id"], "gloss": r["gloss"], "video_uri": video, "fps": pose.body.fps})
    qfile = f"{out}/describe.jsonl"
    write_questions(qfile, {"benchmark": "agp-describe", "protocol": "describe", "seed": 0, "examples": []},
                    describe_questions(rows, per_gloss=1))  # fmt: skip
    vlm = {"model": args.vlm, "dtype": "float32"}
    if args.vlm.startswith("tiny:"):
        vlm["tiny"] = {"path": f"{out}/tiny_vlm"}
    bench = BenchConfig.model_validate({
        "questions": qfile, "out": f"{out}/describe_run", "model": {"vlm": vlm}, "frames": "uniform:8",
        "max_new_tokens": 48, "decode": {"max_side": 256},
    })  # fmt: skip
    t0 = time.perf_counter()
    counts = run_answers(bench, echo=True)
    describe_s = time.perf_counter() - t0
    stats = score_run(bench)["results"]["dictionary|video"]
    ray.shutdown()
    answers = read_answers(f"{out}/describe_run/answers.jsonl")
    header = {"protocol": "describe", "candidates": [], "examples": []}
    from ray_slt.vlmbench.questions import read_questions

    _, questions = read_questions(qfile)
    gold = {q["qid"]: q["gold"] for q in questions}
    generated = {gold[t["qid"]]: clean_description(answers[t["key"]]["reply"])
                 for t in build_tasks(bench, header, questions) if t["key"] in answers}  # fmt: skip
    generated = {g: d for g, d in generated.items() if d}
    entries = generated_lexicon(generated, bench.model.name(), "qsl")
    combined, mix = quality_lexicon(entries, ref_entries)
    quality = f"{out}/quality_lexicon.csv"
    write_lexicon(combined, quality)

    results = {}
    for name, lexicon in (("reference descriptions", reference), ("AGP descriptions (seen signs)", quality)):
        cfg = load_config(str(CONF / "hali_synthetic_tiny.yaml"), [
            f"trainer.storage={out}/runs", f"trainer.name=agp_{len(results)}", f"data.features={features}",
            f"hali.lexicon={lexicon}",
        ])  # fmt: skip
        s = run_training(cfg)
        zsl = evaluate(s["run_dir"], split="test", protocol="zsl")
        results[name] = {"dev_top1": s["best"]["dev_top1"], "zsl_top1": zsl["top1"], "zsl_top5": zsl["top5"]}
        print(f"{name}: ZSL top-1 {zsl['top1']:.1f}, top-5 {zsl['top5']:.1f}", flush=True)
        ray.shutdown()
    report = {"vlm": bench.model.name(), "seen_signs": len(seen), "described": stats, "answers": counts,
              "describe_seconds": round(describe_s, 1), "lexicon_mix": mix, "results": results,
              "chance_top1": 100.0 / p.test_unseen}  # fmt: skip
    md = [f"# AGP quality protocol on the synthetic isolated signs (describing VLM: {report['vlm']})", "",
          f"{stats['described']} of {stats['n']} seen-sign videos described ({stats['mean_words']} words on average) "
          f"in {describe_s:.0f} s; the training lexicon: {mix['generated']} generated, {mix['reference']} reference "
          f"entries. Zero-shot on {p.test_unseen} test-unseen signs (chance top-1 {100 / p.test_unseen:.1f}):", "",
          "| training descriptions of the seen signs | dev top-1 (val-unseen) | ZSL top-1 | ZSL top-5 |",
          "|---|---|---|---|",
          *(f"| {k} | {v['dev_top1']:.1f} | {v['zsl_top1']:.1f} | {v['zsl_top5']:.1f} |" for k, v in results.items()),
          ""]  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vlmbench_agp.json").write_text(json.dumps(report, indent=1, default=float))
    (RESULTS / "vlmbench_agp.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
