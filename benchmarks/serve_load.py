"""Load test of the serving application on loopback: throughput and latency with and without dynamic batching,
and autoscaling at work.

Run (from the repository root; a local Ray, a few minutes on 2 cores):

    .venv/bin/python benchmarks/serve_load.py [--clients 8] [--requests 96] [--checkpoint DIR]

In one run, on a local Ray bound to 127.0.0.1, with ``--clients`` concurrent HTTP clients sending the same request
set (``--requests`` synthetic ``.pose`` uploads, each its own sentence) to ``POST /translate``:

1. **batching off** and 2. **batching on** (``serve.batch``, ``--max-batch`` / ``--batch-wait``): the same
   deployments and replicas (one feature replica, ``--replicas`` translator replicas, fixed), the same requests;
   reported: requests/s, p50/p99 latency, errors (non-200) and 5xx, the mean batch size, and on/off ratios.
3. **autoscaling**: the translator deployment autoscales between 1 and ``--max-replicas`` replicas
   (target ``--target-ongoing`` ongoing requests per replica); ``--scale-clients`` clients load it for
   ``--scale-seconds``, then it idles; the replica count is sampled every 0.5 s throughout, so the table shows it
   growing under load and shrinking back after.

The model is ``conf/train/synthetic_tiny.yaml``'s translator with a somewhat larger random LM (``--lm-hidden``,
``--lm-layers``; beam search with ``--num-beams``, up to ``--max-new-tokens``) unless ``--checkpoint`` names a
trained one: decoding cost, not accuracy, is what a load test measures, and with it decoding dominates a
request's cost, as it does with a real LM (with the demo's 64-wide LM, HTTP, parsing and feature extraction
cost as much as decoding on 2 cores, and batching cannot gain more than those allow). Every phase is bounded in
requests and in time (``--max-seconds``). Results go to ``benchmarks/results/serve_load.{json,md}``. Nothing
here passes or fails on time.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import glob
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
APP = "serve_load"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_checkpoint(uri: str, texts: list[str], args) -> str:
    """A translator of conf/train/synthetic_tiny.yaml's architecture with a wider/deeper LM (random weights)."""
    import yaml

    from ray_slt.models import build_translator, save_translator
    from ray_slt.models.config import SFTConfig

    sft = yaml.safe_load((REPO / "conf" / "train" / "synthetic_tiny.yaml").read_text())["sft"]
    sft["tiny"].update(hidden=args.lm_hidden, layers=args.lm_layers, intermediate=2 * args.lm_hidden)
    sft.update(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
    save_translator(build_translator(SFTConfig.model_validate(sft), texts=texts, seed=0), uri)
    return uri


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def post(url: str, data: bytes, timeout: float) -> tuple[int, dict | None, float]:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/x-pose"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, body = r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        status, body = e.code, None
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        status, body = 0, None  # no answer at all (counted as an error)
    return status, body, time.perf_counter() - t0


def run_load(url: str, payloads: list[bytes], clients: int, max_seconds: float, timeout: float) -> dict:
    """Send every payload once, from ``clients`` threads pulling from one queue; bounded by ``max_seconds``."""
    lock = threading.Lock()
    queue = list(range(len(payloads)))
    results: list[tuple[int, dict | None, float]] = []
    deadline = time.monotonic() + max_seconds

    def worker():
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    return
                i = queue.pop(0)
            results.append(post(url + "translate", payloads[i], timeout))

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r[0] == 200]
    lat = [r[2] for r in ok]
    return {
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "errors_5xx": sum(1 for r in results if r[0] >= 500 or r[0] == 0),
        "wall_s": round(wall, 2),
        "req_per_s": round(len(ok) / wall, 2) if wall > 0 else None,
        "p50_s": round(percentile(lat, 50), 3),
        "p99_s": round(percentile(lat, 99), 3),
        "mean_batch": round(statistics.mean(r[1]["batch_size"] for r in ok), 2) if ok else None,
        "max_batch": max((r[1]["batch_size"] for r in ok), default=None),
    }


def replicas(app: str, deployment: str) -> dict:
    from ray import serve

    try:
        states = serve.status().applications[app].deployments[deployment].replica_states
    except KeyError:
        return {}
    return {str(getattr(k, "value", k)): int(v) for k, v in states.items()}


def deploy(cfg_dict: dict) -> str:
    from ray_slt.config import build_config
    from ray_slt.serve.app import start

    return start(build_config(cfg_dict))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=96, help="requests per batching phase")
    p.add_argument("--replicas", type=int, default=1, help="translator replicas in the batching phases")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--batch-wait", type=float, default=0.05)
    p.add_argument("--num-beams", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--lm-hidden", type=int, default=128, help="width of the random tiny LM (default model only)")
    p.add_argument("--lm-layers", type=int, default=4)
    p.add_argument("--checkpoint", help="a trained translator checkpoint (default: tiny random, demo-sized)")
    p.add_argument("--max-seconds", type=float, default=240, help="bound on each phase's load")
    p.add_argument("--timeout", type=float, default=120, help="client timeout per request")
    p.add_argument("--max-replicas", type=int, default=3)
    p.add_argument("--target-ongoing", type=float, default=2.0)
    p.add_argument("--scale-clients", type=int, default=12)
    p.add_argument("--scale-seconds", type=float, default=45)
    p.add_argument("--idle-seconds", type=float, default=45, help="how long to watch the replicas after the load")
    p.add_argument("--skip-autoscaling", action="store_true", help="only the batching phases")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: the machine's)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from ray_slt.data import synthetic

    work = tempfile.mkdtemp(prefix="ray_slt_serve_load_")
    n = max(args.requests, 8)
    print(f"serve_load: {n} synthetic sentences as .pose uploads; work dir {work}", flush=True)
    synthetic.generate(os.path.join(work, "corpus"), synthetic.SyntheticSpec(train=n, dev=4, test=4, signers=4, seed=7))
    files = sorted(glob.glob(os.path.join(work, "corpus", "poses", "*.pose")))[:n]
    payloads = [Path(f).read_bytes() for f in files]
    texts = [line.split("\t")[4] for line in Path(work, "corpus", "synthetic.tsv").read_text().splitlines()[1:]]
    ckpt = args.checkpoint or tiny_checkpoint(os.path.join(work, "ckpt"), texts, args)

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    base = {
        "kind": "serve",
        "app_name": APP,
        "models": {"translate": {"checkpoint": ckpt}},
        "features": {"deployment": {"num_cpus": 0.25, "max_ongoing_requests": 32}},
        "ingress": {"num_cpus": 0, "max_ongoing_requests": 512},
        "http": {"host": "127.0.0.1", "port": port},
        "limits": {"request_timeout_s": args.timeout},
    }
    fixed = {"min_replicas": args.replicas, "max_replicas": args.replicas, "num_cpus": 0.25, "max_ongoing_requests": 64}
    report: dict = {
        "setup": {
            "clients": args.clients,
            "requests": n,
            "translator_replicas": args.replicas,
            "feature_replicas": 1,
            "max_batch": args.max_batch,
            "batch_wait_s": args.batch_wait,
            "num_beams": args.num_beams,
            "max_new_tokens": args.max_new_tokens,
            "checkpoint": "trained: " + args.checkpoint
            if args.checkpoint
            else f"random tiny Qwen3 (hidden {args.lm_hidden}, {args.lm_layers} layers) behind the demo encoder",
            "cpus": ray.cluster_resources().get("CPU"),
            "host": "127.0.0.1",
        }
    }
    try:
        for name, enabled in (("batching_off", False), ("batching_on", True)):
            cfg = json.loads(json.dumps(base))
            cfg["models"]["translate"]["batching"] = {"enabled": enabled, "max_batch_size": args.max_batch,
                                             "wait_timeout_s": args.batch_wait}  # fmt: skip
            cfg["models"]["translate"]["deployment"] = fixed
            url = deploy(cfg)
            for data in payloads[:4]:  # warm-up: first calls load lazily
                post(url + "translate", data, args.timeout)
            print(f"serve_load: {name}: {args.clients} clients, {n} requests ...", flush=True)
            report[name] = run_load(url, payloads, args.clients, args.max_seconds, args.timeout)
            print(f"serve_load: {name}: {report[name]}", flush=True)
            serve.delete(APP)
        off, on = report["batching_off"], report["batching_on"]
        report["ratio_on_over_off"] = {
            "req_per_s": round(on["req_per_s"] / off["req_per_s"], 2) if off["req_per_s"] else None,
            "p50": round(on["p50_s"] / off["p50_s"], 2) if off["p50_s"] else None,
            "p99": round(on["p99_s"] / off["p99_s"], 2) if off["p99_s"] else None,
        }
        if not args.skip_autoscaling:
            report["autoscaling"] = autoscale(base, payloads, args)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)  # the synthetic corpus and the tiny checkpoint
    os.makedirs(args.out, exist_ok=True)
    Path(args.out, "serve_load.json").write_text(json.dumps(report, indent=2))
    Path(args.out, "serve_load.md").write_text(render(report))
    print(render(report))
    return 0


def autoscale(base: dict, payloads: list[bytes], args) -> dict:
    """Load an autoscaling translator deployment, then let it idle; sample its replicas throughout."""
    cfg = json.loads(json.dumps(base))
    cfg["models"]["translate"]["batching"] = {"enabled": True, "max_batch_size": args.max_batch,
                                     "wait_timeout_s": args.batch_wait}  # fmt: skip
    cfg["models"]["translate"]["deployment"] = {
        "min_replicas": 1,
        "max_replicas": args.max_replicas,
        "target_ongoing_requests": args.target_ongoing,
        "upscale_delay_s": 2,
        "downscale_delay_s": 10,
        "num_cpus": 0.25,
        "max_ongoing_requests": 16,
    }
    url = deploy(cfg)
    post(url + "translate", payloads[0], args.timeout)
    samples: list[dict] = []
    stop = threading.Event()
    t0 = time.monotonic()
    phase = {"name": "load"}

    def sampler():
        while not stop.is_set():
            states = replicas(APP, "model-translate")
            samples.append({"t_s": round(time.monotonic() - t0, 1), "phase": phase["name"],
                            "running": states.get("RUNNING", 0), "starting": states.get("STARTING", 0),
                            "stopping": states.get("STOPPING", 0)})  # fmt: skip
            stop.wait(0.5)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    print(f"serve_load: autoscaling: {args.scale_clients} clients for {args.scale_seconds:g} s ...", flush=True)
    many = payloads * (1 + int(args.scale_seconds * 50 / max(len(payloads), 1)))
    load = run_load(url, many, args.scale_clients, args.scale_seconds, args.timeout)
    phase["name"] = "idle"
    print(f"serve_load: autoscaling: load {load}; watching the idle deployment ...", flush=True)
    end = time.monotonic() + args.idle_seconds
    while time.monotonic() < end:
        time.sleep(1)
        if samples and samples[-1]["running"] == 1 and samples[-1]["stopping"] == 0 and time.monotonic() > end - 5:
            break
    stop.set()
    watcher.join()
    from ray import serve

    serve.delete(APP)
    peak = max((s["running"] for s in samples), default=0)
    return {
        "load": load,
        "min_replicas": 1,
        "max_replicas": args.max_replicas,
        "peak_running": peak,
        "final_running": samples[-1]["running"] if samples else None,
        "timeline": samples,
    }


def render(r: dict) -> str:
    s = r["setup"]
    lines = [
        "# Serving load test (benchmarks/serve_load.py)",
        "",
        f"Loopback (127.0.0.1), local Ray with {s['cpus']:g} CPUs; {s['clients']} concurrent clients; "
        f"{s['requests']} `.pose` uploads per phase (same set); {s['translator_replicas']} translator replica(s), "
        f"1 feature replica; model: {s['checkpoint']}, beam search {s['num_beams']}, up to "
        f"{s['max_new_tokens']} new tokens; batching: up to {s['max_batch']} requests, {s['batch_wait_s']} s wait.",
        "",
        "| phase | requests | req/s | p50 (s) | p99 (s) | errors | 5xx | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("batching_off", "batching_on"):
        x = r[name]
        lines.append(f"| {name.replace('_', ' ')} | {x['requests']} | {x['req_per_s']} | {x['p50_s']} | {x['p99_s']} "
                     f"| {x['errors']} | {x['errors_5xx']} | {x['mean_batch']} |")  # fmt: skip
    q = r["ratio_on_over_off"]
    lines += ["", f"Batching on / off: throughput x{q['req_per_s']}, p50 x{q['p50']}, p99 x{q['p99']}.", ""]
    a = r.get("autoscaling")
    if a:
        x = a["load"]
        lines += [
            f"## Autoscaling (translator {a['min_replicas']}..{a['max_replicas']} replicas)",
            "",
            f"Load: {x['requests']} requests, {x['req_per_s']} req/s, p50 {x['p50_s']} s, p99 {x['p99_s']} s, "
            f"{x['errors']} errors ({x['errors_5xx']} 5xx). Peak running replicas: {a['peak_running']}; "
            f"after the idle period: {a['final_running']}.",
            "",
            "| t (s) | phase | running | starting | stopping |",
            "|---|---|---|---|---|",
        ]
        last = None
        for sample in a["timeline"]:
            key = (sample["phase"], sample["running"], sample["starting"], sample["stopping"])
            if key != last:  # only the changes
                lines.append(f"| {sample['t_s']} | {sample['phase']} | {sample['running']} | {sample['starting']} "
                             f"| {sample['stopping']} |")  # fmt: skip
                last = key
        lines.append(f"| {a['timeline'][-1]['t_s']} | end | {a['final_running']} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
