"""Elastic preprocessing at corpus scale: extraction with worker processes killed at random mid-run, resumed, and
compared with an uninterrupted run, in one invocation (issue: nothing valid lost, nothing bad let in, item 5).

Run (from the repository root):

    .venv/bin/python benchmarks/extract_kills.py --samples 2000 --kills 6     # ~25 minutes on 2 CPU cores

1. A corpus of ``--samples`` samples made from the real clips of ../shared/data (WLASL, AUTSL, How2Sign videos),
   each clip used many times under distinct sample ids and spans, with oddities mixed in every ``--odd-every``
   samples: a missing file, an empty file, a copy cut to half its bytes, a directory where a file should be, a
   text file named ``.mp4``.
2. **Clean**: ``ray-slt extract`` (MediaPipe Holistic on ``uniform:4`` frames at <= 256 px, no visual features),
   uninterrupted.
3. **Killed**: the same extraction into another folder while a killer thread sends SIGKILL to a random Ray worker
   process of the pose or writer pools every ``--kill-every`` seconds (``--kills`` times: what an out-of-memory
   kill or a lost node does to a worker). Ray Data restarts the actors and retries their tasks; should the run
   fail all the same, it is resumed by running the same command again, as a user would.
4. The two outputs are compared: every sample's row of the index (all columns but the run id) and every ``.pose``
   file byte for byte, the errors table (the same bad samples, each once).

Reported: samples, bad samples, kills, reruns needed, resumed == clean, errors, wall time of each run, and the
time lost per kill ((killed - clean) / kills). Results go to benchmarks/results/extract_kills.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = (REPO / ".." / "shared" / "data").resolve()


def clips() -> list[dict]:
    """The real clips: WLASL (with their official spans and boxes), AUTSL, How2Sign."""
    import csv

    out = []
    with open(SHARED / "wlasl" / "clips.csv", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            end = int(r["frame_end"])
            out.append({"video": str(SHARED / "wlasl" / r["file"]), "start": int(r["frame_start"]) - 1,
                        "end": None if end == -1 else end, "gloss": r["gloss"]})  # fmt: skip
    out.append({"video": str(SHARED / "autsl" / "signer0_sample1000_color.mp4"), "start": 0, "end": None,
                "gloss": "rica_etmek"})  # fmt: skip
    for p in sorted((SHARED / "how2sign" / "videos").glob("*.mp4"))[:6]:
        out.append({"video": str(p), "start": 0, "end": 60, "gloss": None})
    return [c for c in out if os.path.exists(c["video"])]


def oddities(root: Path) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    good = next(iter(sorted((SHARED / "wlasl" / "videos").glob("*.mp4"))))
    (root / "empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (root / "half.mp4").write_bytes(data[: len(data) // 2])
    (root / "a_directory.mp4").mkdir(exist_ok=True)
    (root / "text.mp4").write_text("not a video\n")
    return [str(root / "missing.mp4"), str(root / "empty.mp4"), str(root / "half.mp4"), str(root / "a_directory.mp4"),
            str(root / "text.mp4")]  # fmt: skip


def corpus(work: Path, n: int, odd_every: int) -> tuple[str, set[str]]:
    from ray_slt.data.manifest import make_row, write_manifest

    real, odd = clips(), oddities(work / "odd")
    rng = random.Random(0)
    rows, bad = [], set()
    for k in range(n):
        sid = f"kills.{k:05d}"
        if odd_every and k % odd_every == odd_every - 1:
            uri, start, end = odd[(k // odd_every) % len(odd)], None, None
            bad.add(sid)
        else:
            c = real[k % len(real)]
            uri, start = c["video"], c["start"] + rng.randint(0, 3)
            end = None if c["end"] is None else max(start + 8, c["end"] - rng.randint(0, 3))
        row = {"sample_id": sid, "dataset": "kills", "split": "train", "sign_language": "ase", "spoken_language": "en",
               "video_uri": uri, "start_frame": start, "end_frame": end, "text": "x"}  # fmt: skip
        rows.append(make_row(**row))
    path = str(work / "manifest.parquet")
    write_manifest(rows, path)
    return path, bad


def config(manifest: str, out: str):
    from ray_slt.features.extract import ExtractConfig

    return ExtractConfig.model_validate({
        "kind": "extract", "manifest": manifest, "out": out, "progress": False,
        "frames": {"sampling": "uniform:4"}, "decode": {"max_side": 256, "timeout_s": 60},
        "output": {"shard_rows": 32},
    })  # fmt: skip


def worker_pids() -> list[int]:
    """Ray worker processes of this run's extraction (pose actors, shard writers, Data tasks): descendants of this
    process (the local Ray it started), never another Ray's on the same machine, never the driver."""
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if cmd.startswith("ray::") and any(k in cmd for k in ("MapWorker", "PoseStage", "ShardWriter", "MapBatches")):
            out.append(p.pid)
    return out


def run_with_kills(cfg, kills: int, every: float, seed: int) -> dict:
    from ray_slt.features.extract import run_extract

    rng = random.Random(seed)
    done = threading.Event()
    killed: list[dict] = []

    def killer() -> None:
        while not done.wait(every) and len(killed) < kills:
            pids = worker_pids()
            if pids:
                pid = rng.choice(pids)
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append({"pid": pid, "at_s": round(time.perf_counter() - t0, 1)})
                except ProcessLookupError:
                    pass

    t0 = time.perf_counter()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    reruns, summary = 0, None
    while True:
        try:
            summary = run_extract(cfg, echo=False)
            if summary.get("index_samples") is not None:
                break
        except Exception as e:  # a run the kills brought down: resume it, as a user would
            print(f"run failed ({type(e).__name__}: {' '.join(str(e).split())[:200]}); resuming", flush=True)
        reruns += 1
        if reruns > 10:
            raise SystemExit("not finished after 10 resumes")
    done.set()
    thread.join()
    return {"summary": summary, "kills": killed, "reruns": reruns, "seconds": time.perf_counter() - t0}


def compare(a: str, b: str) -> dict:
    import numpy as np

    from ray_slt.features import store

    def rows(out: str) -> dict:
        res = {}
        for s in store.iter_samples(out):
            s = dict(s)
            s.pop("run_id")
            res[s["sample_id"]] = s
        return res

    ra, rb = rows(a), rows(b)
    same = ra.keys() == rb.keys()
    diffs = 0
    for sid in ra.keys() & rb.keys():
        for key, value in ra[sid].items():
            other = rb[sid][key]
            eq = np.array_equal(value, other, equal_nan=value.dtype.kind == "f") if isinstance(value, np.ndarray) \
                else value == other  # fmt: skip
            diffs += not eq
            if not eq:
                print(f"differs: {sid} {key}", flush=True)
        if Path(store.pose_uri(a, sid)).read_bytes() != Path(store.pose_uri(b, sid)).read_bytes():
            diffs += 1
            print(f"differs: {sid} .pose", flush=True)
    ea = store.read_errors(a).column("sample_id").to_pylist()
    eb = store.read_errors(b).column("sample_id").to_pylist()
    return {"samples_a": len(ra), "samples_b": len(rb), "same_ids": same, "differences": diffs,
            "errors_a": sorted(ea), "errors_b": sorted(eb), "errors_unique": len(eb) == len(set(eb))}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--kill-every", type=float, default=30.0, help="seconds between kills")
    ap.add_argument("--odd-every", type=int, default=50, help="one oddity every N samples")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    import ray

    work = Path(args.work or tempfile.mkdtemp(prefix="extract_kills_"))
    manifest, bad = corpus(work, args.samples, args.odd_every)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    from ray_slt.features.extract import run_extract

    t0 = time.perf_counter()
    clean = run_extract(config(manifest, str(work / "clean")), echo=False)
    clean_s = time.perf_counter() - t0
    print(f"clean: {clean['ok']} ok, {clean['errors']} errors in {clean_s:.0f} s", flush=True)
    shutil.rmtree(work / "killed", ignore_errors=True)
    killed = run_with_kills(config(manifest, str(work / "killed")), args.kills, args.kill_every, seed=1)
    print(f"killed: {len(killed['kills'])} kills, {killed['reruns']} reruns, {killed['seconds']:.0f} s", flush=True)
    cmp = compare(str(work / "clean"), str(work / "killed"))
    ok = cmp["same_ids"] and cmp["differences"] == 0 and cmp["errors_a"] == cmp["errors_b"] == sorted(bad)
    report = {
        "samples": args.samples, "bad_samples": len(bad), "kills": killed["kills"], "reruns": killed["reruns"],
        "resumed_equals_clean": ok, "errors_are_the_bad_samples": cmp["errors_b"] == sorted(bad),
        "errors_unique": cmp["errors_unique"], "differences": cmp["differences"], "clean_s": round(clean_s, 1),
        "killed_s": round(killed["seconds"], 1),
        "lost_per_kill_s": round((killed["seconds"] - clean_s) / max(1, len(killed["kills"])), 1),
        "clean_summary": {k: clean[k] for k in ("ok", "errors", "samples_per_s")},
    }  # fmt: skip
    md = ["# Extraction with workers killed mid-run, resumed, vs uninterrupted (one run)", "",
          f"{os.cpu_count()} CPUs; MediaPipe Holistic on uniform:4 frames at <= 256 px.", "",
          "| samples | bad (oddities) | kills | reruns | resumed == clean (index rows, .pose bytes) | errors = the bad "
          "samples, each once | clean | killed | lost per kill |", "|---|---|---|---|---|---|---|---|---|",
          f"| {args.samples} | {len(bad)} | {len(killed['kills'])} | {killed['reruns']} | {ok} | "
          f"{report['errors_are_the_bad_samples'] and report['errors_unique']} | {clean_s:.0f} s | "
          f"{killed['seconds']:.0f} s | {report['lost_per_kill_s']:.1f} s |", ""]  # fmt: skip
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "extract_kills.json").write_text(json.dumps(report, indent=1))
    (results / "extract_kills.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
