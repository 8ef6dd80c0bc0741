"""`ray-slt demo` (``make demo``): the embedded path end to end on a laptop, narrated step by step.

With no arguments it generates the SYNTHETIC corpus (see :mod:`ray_slt.data.synthetic`), builds its manifest
and prints the corpus statistics; every output goes under ``--out`` (default ``demo_out/``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from ray_slt import storage
from ray_slt.cli import register


class Narrator:
    """Prints numbered steps with their durations, and collects a final summary."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.quiet = total, 0, quiet
        self.summary: dict[str, Any] = {"steps": []}

    def step(self, title: str, fn: Callable[[], Any]) -> Any:
        self.done += 1
        if not self.quiet:
            print(f"\n[{self.done}/{self.total}] {title} ...", flush=True)
        start = time.time()
        result = fn()
        seconds = round(time.time() - start, 1)
        self.summary["steps"].append({"step": title, "seconds": seconds})
        if not self.quiet:
            print(f"[{self.done}/{self.total}] done in {seconds} s", flush=True)
        return result

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


def run_demo(out: str, size: str = "default", quiet: bool = False) -> dict:
    from ray_slt.config import build_config
    from ray_slt.data.manifest import read_manifest
    from ray_slt.data.prepare import prepare
    from ray_slt.data.stats import corpus_stats, render, write_plots

    sizes = {"default": {"train": 600, "dev": 60, "test": 60}, "small": {"train": 120, "dev": 20, "test": 20}}
    corpus, manifest_uri = storage.join(out, "corpus"), storage.join(out, "manifest.parquet")
    narrator = Narrator(total=2, quiet=quiet)
    narrator.say(f"ray_slt demo: everything is written under {out}")
    cfg = build_config(
        {
            "kind": "prepare",
            "dataset": "synthetic",
            "root": corpus,
            "out": manifest_uri,
            "options": {**sizes[size], "signers": 6, "seed": 0},
        }
    )
    prepared = narrator.step(
        "Generating the SYNTHETIC sign corpus (made-up signs, not a real sign language) and its manifest",
        lambda: prepare(cfg, progress=not quiet),
    )
    narrator.say(f"    {prepared['samples']} samples: {prepared['splits']}")

    def stats():
        table = read_manifest(manifest_uri)
        result = corpus_stats(table)
        result["plots"] = write_plots(table, storage.join(out, "stats"))
        return result

    result = narrator.step("Corpus statistics", stats)
    narrator.say(render(result))
    narrator.summary.update(
        manifest=manifest_uri,
        samples=prepared["samples"],
        splits=prepared["splits"],
        stats=result["splits"],
        plots=result["plots"],
    )
    narrator.say(f"\nSummary: manifest {manifest_uri}; plots {', '.join(result['plots'])}")
    return narrator.summary


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="directory for every output (default: demo_out)")
    p.add_argument(
        "--size",
        choices=["default", "small"],
        default="default",
        help="corpus size: default (600/60/60 sentences) or small (120/20/20)",
    )
    p.add_argument("--data", metavar="DIR", help="a real corpus directory with videos instead of the synthetic corpus")


def _run(args: argparse.Namespace) -> dict:
    from ray_slt.errors import RaySltError

    if args.data:
        raise RaySltError("--data needs the extraction and training stages, which this version does not have yet")
    return run_demo(args.out, args.size, quiet=args.json)


register(
    "demo",
    "the whole path end to end on a laptop (synthetic corpus by default)",
    _configure,
    _run,
    render=lambda summary: f"demo finished in {sum(s['seconds'] for s in summary['steps']):.1f} s",
    description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
)
