"""`ray-slt serve`: deploy the translation service (Ray Serve) from a config of kind ``serve``."""

from __future__ import annotations

import argparse
import signal
import time

from ray_slt.cli import register

SERVE_HELP = """\
Serve saved models over HTTP on Ray Serve: one route per entry of the config's `models` (POST /translate: a
video, a .pose or a URI in, text out), GET /healthz (the routes and their models), a web page at /, OpenAPI
docs at /docs. Any model the training stages write is served by the kind its directory records. Binds
127.0.0.1 by default.

  ray-slt serve conf/serve/default.yaml models.translate.checkpoint=runs/demo/train/best
  ray-slt serve conf/serve/default.yaml http.port=8080 models.translate.batching.enabled=false
  ray-slt serve conf/serve/default.yaml models.translate.options.num_beams=4 models.vlm.checkpoint=runs/vlm_tiny
  SLT_TOKEN=secret ray-slt serve conf/serve/default.yaml auth.token_env=SLT_TOKEN     # bearer-token auth

Without ray_address a local Ray starts and the server runs until Ctrl-C (then stops cleanly). With
ray_address (or RAY_ADDRESS) and --detach, the app is deployed on that cluster and the command returns.
"""


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="a YAML config of kind 'serve' (e.g. conf/serve/default.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    p.add_argument(
        "--detach", action="store_true", help="deploy on an existing cluster (ray_address) and return at once"
    )


def _run(args: argparse.Namespace) -> dict:
    import os

    import ray
    from ray import serve

    from ray_slt.config import load_config
    from ray_slt.errors import RaySltError
    from ray_slt.serve.app import start

    cfg = load_config(args.config, args.overrides)
    if cfg.kind != "serve":
        raise RaySltError(f"{args.config}: a config of kind 'serve' is needed, not {cfg.kind!r}")
    if args.detach and not (cfg.ray_address or os.environ.get("RAY_ADDRESS")):
        raise RaySltError("--detach needs a running cluster (ray_address=... or RAY_ADDRESS); a local Ray "
                          "would stop with this command")  # fmt: skip
    url = start(cfg)
    print(f"ray-slt serve: {cfg.app_name} ready at {url} (docs: {url}docs, health: {url}healthz)", flush=True)
    summary = {"app": cfg.app_name, "url": url, "detached": bool(args.detach)}
    if args.detach:
        return summary
    # The handler takes no lock (it appends to a list) and the main thread polls: an Event.set() in a handler
    # can block on the lock of the Event.wait() it interrupted, and a user then saw Ctrl-C ignored.
    signals: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: signals.append(signum))
    print("ray-slt serve: press Ctrl-C to stop", flush=True)
    while not signals:
        time.sleep(0.2)
    print("ray-slt serve: stopping ...", flush=True)
    serve.shutdown()
    ray.shutdown()
    return {**summary, "stopped": True}


register(
    "serve",
    "serve models over HTTP on Ray Serve (a web page, one route per model, /healthz)",
    _configure,
    _run,
    render=lambda s: f"ray-slt serve: {s['app']} {'deployed' if s['detached'] else 'stopped'} ({s['url']})",
    description=SERVE_HELP,
)
