"""Pose extraction throughput: what users do today vs a straightforward loop vs the Ray Data pipeline.

Run (from the repository root; reads the real clips in ../shared/data, takes a few minutes on 2 cores):

    .venv/bin/python benchmarks/extract.py [--cpus 2] [--json out.json]

On the same real clips, in one run, with MediaPipe Holistic and all frames of every clip:

1. ``videos_to_poses`` (pose-format's command, one process) on a folder holding the clips;
2. the straightforward loop in one process: decode (decord) -> pose -> 77-point layout -> boxes and 224x224
   crops -> .pose file, clip after clip;
3. the pipeline's own per-sample work without Ray: one pinned decoder child per CPU (decode + MediaPipe, as in a
   pose actor), fed clip by clip from threads of one process: the ceiling Ray's own costs are measured against;
4. ``ray_slt.features.extract`` (Ray Data, a local Ray with ``--cpus`` CPUs, one pose actor per CPU);
5. the same pipeline with ``uniform:64`` sampling: only the sampled frames are decoded and estimated.

Reported: videos/s, frames/s, per-stage time (summed over workers), the CPU-seconds the machine spent busy
during each method and the cores that kept busy on average (Linux), and speedup ratios against the one-process
baselines. A one-process baseline that already keeps more than one core busy (MediaPipe runs its models on
threads of its own) bounds the speedup N workers can give: at best N / its cores busy, for the same work.
Ray's start-up (``ray.init`` and the helper actors Ray Data starts on a cluster's first dataset) is timed
separately: a cluster pays it once. Nothing here passes or fails on time.
Ratios need the machine to itself: on a shared one, run it with a raised priority (``nice -n -20``, as root) so
other work does not decide the outcome; every method then runs at that priority.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO / ".." / "shared" / "data").resolve()

# Every real RGB signing clip of the shared data (WLASL, How2Sign, the SLP site and pose-format samples, AUTSL,
# PHOENIX excerpts): ~2200 frames of many sizes, frame rates and codecs.
CLIPS = [
    *(f"wlasl/videos/{v}.mp4" for v in (
        "00335", "00336", "00338", "00339", "02233", "02238", "02712", "05732", "11767", "13158", "14882", "14893",
        "24955", "25241", "38530", "56557", "62780", "65145", "65402", "66755",
    )),
    *(f"how2sign/videos/{v}-rgb_front.mp4" for v in (
        "-fZc293MpJk_0-1", "-g0iPSnQt6w_16-1", "-g0iPSnQt6w_2-1", "-g0iPSnQt6w_3-1", "-g0iPSnQt6w_8-1",
    )),
    "slp_site/asl_house.mp4",
    "slp_site/asl_different.mp4",
    "slp_pose/SOUP.mp4",
    "slp_pose/test_video.mp4",
    "slp_pose/sample_video.mp4",
    "autsl/signer0_sample1000_color.mp4",
    "phoenix14t/video_excerpts/excerpt_a.mp4",
    "phoenix14t/video_excerpts/excerpt_b.mp4",
]  # fmt: skip


def busy_cpu_s() -> float:
    """CPU-seconds the whole machine has spent busy since boot (Linux's /proc/stat; nan elsewhere)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is already in user/nice


def measured(fn, *args) -> dict:
    """Run one method; add the CPU-seconds the machine spent busy meanwhile and the cores that kept busy on
    average. On a quiet machine this is the method's own work plus whatever it starts (children, Ray's
    processes), which is what decides how far spreading the work over more cores can go."""
    cpu = busy_cpu_s()
    r = fn(*args)
    r["cpu_s"] = busy_cpu_s() - cpu
    r["cores_busy"] = r["cpu_s"] / r["wall_s"]
    return r


def videos_to_poses(clips: list[Path], work: Path) -> dict:
    """pose-format's `videos_to_poses` on a folder of the clips (one worker: what its docs run)."""
    folder = work / "videos_to_poses"
    folder.mkdir()
    for i, c in enumerate(clips):
        os.symlink(c, folder / f"{i:02d}_{c.name}")
    exe = Path(sys.executable).parent / "videos_to_poses"
    t0 = time.perf_counter()
    r = subprocess.run(
        [str(exe), "--format", "mediapipe", "--directory", str(folder), "--num-workers", "1"],
        capture_output=True,
        text=True,
        input="y\n",
    )
    wall = time.perf_counter() - t0
    made = sorted(folder.glob("*.pose"))
    if r.returncode != 0 or len(made) != len(clips):
        raise RuntimeError(f"videos_to_poses failed ({r.returncode}): {r.stderr[-2000:]}")
    return {"wall_s": wall, "videos": len(made)}


def straightforward_loop(clips: list[Path], work: Path) -> dict:
    """decode -> pose -> layout -> boxes + crops -> .pose, one clip after another, in this process."""
    from ray_slt.data.poses import build_pose, pose_bytes
    from ray_slt.features.crops import crop_parts, part_boxes
    from ray_slt.features.layouts import layout77_from_arrays
    from ray_slt.features.pose import MediaPipeHolistic
    from ray_slt.features.sampling import parse_sampling
    from ray_slt.features.video import decode_video

    out = work / "loop"
    out.mkdir()
    est = MediaPipeHolistic()
    stage = {"decode": 0.0, "pose": 0.0, "crops": 0.0}
    frames = 0
    t0 = time.perf_counter()
    for i, c in enumerate(clips):
        t = time.perf_counter()
        clip = decode_video(str(c), parse_sampling("all"))
        stage["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        data, conf = est.estimate(clip.frames)
        data[..., :2] = clip.to_source(data[..., :2])
        pose = build_pose(est.components(), data, conf, clip.fps, clip.width, clip.height)
        lay = layout77_from_arrays(data, conf, pose.header)
        (out / f"{i:02d}.pose").write_bytes(pose_bytes(pose))
        stage["pose"] += time.perf_counter() - t
        t = time.perf_counter()
        boxes, _ = part_boxes(lay.pixels, lay.valid, lay.scale)
        crop_parts(clip.frames, clip.to_frames(boxes), 224)
        stage["crops"] += time.perf_counter() - t
        frames += len(clip.frame_indices)
    wall = time.perf_counter() - t0
    est.close()
    return {"wall_s": wall, "videos": len(clips), "frames": frames, "stage_s": stage}


def pinned_children(clips: list[Path], cpus: int) -> dict:
    """The pipeline's per-sample work without Ray: one decoder child per CPU, each pinned to its CPU, decoding and
    running MediaPipe exactly as a pose actor's child does; threads of this process hand out the clips one at a
    time (as Ray Data does). What is left between this row and ``ray_data`` is what Ray itself costs."""
    import queue
    import threading

    from ray_slt.features.extract import ExtractConfig
    from ray_slt.features.video import Decoder, video_request

    cfg = ExtractConfig.model_validate({"kind": "extract"})
    spec = {"backend": "mediapipe", "options": cfg.pose.options()}
    d, sampling = cfg.decode, cfg.frames.build()
    todo: queue.Queue = queue.Queue()
    for c in clips:
        todo.put(c)
    totals = {"frames": 0, "decode": 0.0, "pose": 0.0}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})  # this thread's CPU; the child it starts inherits it
        try:
            with Decoder(timeout_s=cfg.decode.timeout_s) as dec:
                while True:
                    try:
                        c = todo.get_nowait()
                    except queue.Empty:
                        return
                    req = video_request(str(c), {}, sampling, bbox_margin=d.bbox_margin,
                                        max_side=d.max_side, max_missing=d.max_missing)  # fmt: skip
                    t = time.perf_counter()
                    _, data, _, pose_s = dec.decode_pose(req, spec, return_frames=False,
                                                         pose_timeout_s=cfg.pose.timeout_s)  # fmt: skip
                    with lock:
                        totals["frames"] += len(data)
                        totals["pose"] += pose_s
                        totals["decode"] += time.perf_counter() - t - pose_s
        except BaseException as e:  # reported by the caller
            errors.append(e)

    cores = sorted(os.sched_getaffinity(0))[:cpus]
    threads = [threading.Thread(target=work, args=(cpu,)) for cpu in cores]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"pinned children failed: {errors[0]!r}")
    stage = {"decode": totals["decode"], "pose": totals["pose"], "crops": 0.0}
    return {"wall_s": wall, "videos": len(clips), "frames": totals["frames"], "stage_s": stage}


class _Identity:
    def __call__(self, batch):
        return batch


def warm_up_ray_data() -> None:
    """Run a two-row actor-pool dataset, so that Ray Data's helper actors exist before the pipeline is timed.

    On a cluster's first dataset Ray Data starts detached helper actors (its stats actor, autoscaling coordinator
    and actor-location tracker; ~1 CPU-s each to start, measured here) that later runs reuse: like Ray itself, a
    cluster pays for them once, so they count as Ray's start-up here.
    """
    import ray

    ray.data.range(2).map_batches(_Identity, compute=ray.data.ActorPoolStrategy(size=1), batch_size=1).materialize()


def pipeline(manifest: str, out: Path, sampling: str) -> dict:
    from ray_slt.features.extract import ExtractConfig, run_extract

    cfg = ExtractConfig.model_validate(
        {"kind": "extract", "manifest": manifest, "out": str(out), "progress": False,
         "frames": {"sampling": sampling}, "output": {"shard_rows": 4}}
    )  # fmt: skip
    s = run_extract(cfg, echo=False)
    if s["errors"]:
        raise RuntimeError(f"pipeline errors: {s['error_records']}")
    return {"wall_s": s["wall_s"], "videos": s["ok"], "frames": s["frames"], "stage_s": s["stage_s"],
            "pools": s["pools"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--clips", type=int, default=len(CLIPS), help="only the first N clips (a quick check)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("GLOG_minloglevel", "2")
    # Ray starts its workers at niceness +15 by default; the one-process baselines run at the caller's. Same
    # priority for every method, or a busy machine would starve the pipeline's workers and not the baselines.
    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 (Ray reads this exact name)
    clips = [DATA / c for c in CLIPS[: args.clips]]
    missing = [str(c) for c in clips if not c.exists()]
    if missing:
        print(f"benchmark needs the real clips in {DATA}: missing {missing}", file=sys.stderr)
        return 2

    import ray

    from ray_slt.data.manifest import make_row, write_manifest
    from ray_slt.features.sampling import uniform_indices
    from ray_slt.features.video import count_decodable

    work = Path(tempfile.mkdtemp(prefix="ray_slt_bench_extract_"))
    try:
        decodable = [count_decodable(str(c)).decodable for c in clips]
        rows = [
            make_row(sample_id=f"bench.{i:02d}", dataset="bench", split="test", sign_language="ase",
                     spoken_language="en", video_uri=str(c), text=c.stem)
            for i, c in enumerate(clips)
        ]  # fmt: skip
        manifest = str(work / "manifest.parquet")
        write_manifest(rows, manifest)

        results = {}
        print(f"{len(clips)} clips, {sum(decodable)} frames; one process each for the baselines", file=sys.stderr)
        results["videos_to_poses"] = measured(videos_to_poses, clips, work)
        results["videos_to_poses"]["frames"] = sum(decodable)
        results["loop"] = measured(straightforward_loop, clips, work)
        results["pinned_children_no_ray"] = measured(pinned_children, clips, args.cpus)
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        warm_up_ray_data()
        ray_start = time.perf_counter() - t0
        results["ray_data"] = measured(pipeline, manifest, work / "pipeline_all", "all")
        results["ray_data_uniform64"] = measured(pipeline, manifest, work / "pipeline_u64", "uniform:64")
        ray.shutdown()
        expected_u64 = sum(len(uniform_indices(n, 64)) for n in decodable)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = results["videos_to_poses"]["wall_s"]
    loop = results["loop"]["wall_s"]
    lines = [
        f"| method ({args.cpus} CPUs, {len(clips)} real clips) | wall s | videos/s | frames/s | decode s | pose s "
        "| crops s | CPU-s | cores busy | vs videos_to_poses | vs loop |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        st = r.get("stage_s", {})
        lines.append(
            f"| {name} | {r['wall_s']:.1f} | {r['videos'] / r['wall_s']:.2f} | {r['frames'] / r['wall_s']:.1f} "
            f"| {st.get('decode', float('nan')):.1f} | {st.get('pose', float('nan')):.1f} "
            f"| {st.get('crops', float('nan')):.2f} | {r['cpu_s']:.1f} | {r['cores_busy']:.2f} "
            f"| {base / r['wall_s']:.2f}x | {loop / r['wall_s']:.2f}x |"
        )
    lines.append(f"Ray start-up incl. Ray Data's helper actors (not in the pipeline rows): {ray_start:.1f}s. "
                 f"uniform:64 estimated {results['ray_data_uniform64']['frames']} frames "
                 f"(Eq. 1 expects {expected_u64}) of {sum(decodable)}.")  # fmt: skip
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "ray_start_s": ray_start}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
