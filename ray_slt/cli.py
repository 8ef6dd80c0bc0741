"""``ray-slt``: the command line of ray_slt (also ``python -m ray_slt``).

Each stage registers its subcommands from a ``commands`` module of its own package (``ray_slt.data.commands``,
``ray_slt.eval.commands``, ...) through :func:`register`. A subcommand's handler returns a JSON-serialisable
result; the CLI prints it as JSON with ``--json`` and otherwise through the command's ``render`` function.
Bad input raises :class:`~ray_slt.errors.RaySltError`: the CLI prints one line naming the problem and exits 2.
Heavy libraries (torch, ray) are imported inside handlers, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ray_slt.errors import RaySltError

PROG = "ray-slt"

# Modules whose import registers subcommands, in the order `--help` lists them.
COMMAND_MODULES = (
    "ray_slt.data.commands",
    "ray_slt.features.commands",
    "ray_slt.training.commands",
    "ray_slt.eval.commands",
    "ray_slt.models.commands",
    "ray_slt.tune.commands",
    "ray_slt.serve.commands",
    "ray_slt.vlmbench.commands",
    "ray_slt.demo",
)

# Stages of the pipeline that later work adds; listed in --help so users see the whole shape.
PLANNED = {
    "extract": "video -> pose, crops and visual features on Ray Data",
    "train": "train a translator on Ray Train (DDP/DeepSpeed) or with GRPO",
    "eval": "evaluate a checkpoint on a split: predictions + metrics.json",
    "score": "score hypothesis against reference sentences (BLEU, ROUGE-L, chrF)",
    "tune": "hyperparameter sweeps on Ray Tune",
    "serve": "serve translators over HTTP on Ray Serve",
    "demo": "the whole path end to end on a laptop",
}


@dataclass
class Command:
    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]
    render: Callable[[Any], str] | None = None
    failed: Callable[[Any], str | None] | None = None  # a reason when the result means the run failed (exit 1)


_REGISTRY: dict[str, Command] = {}


def register(
    name: str,
    help: str,
    configure: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], Any],
    render: Callable[[Any], str] | None = None,
    description: str | None = None,
    failed: Callable[[Any], str | None] | None = None,
) -> None:
    """Register a subcommand: ``configure(parser)`` adds its arguments, ``run(args)`` returns its result
    (JSON-serialisable) and ``render(result)`` formats it for humans; ``failed(result)``, if given, returns a
    reason when the result (printed all the same) means the run failed: the CLI then exits 1."""
    _REGISTRY[name] = Command(name, help, description or help, configure, run, render, failed)


def _load_commands() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise RaySltError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = _Parser(
        prog=PROG,
        description="ray_slt: sign language translation, recognition and production on Ray. "
        "Every path may be local or s3://; every command takes --json for machine-readable output.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in _REGISTRY.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--json", action="store_true", help="print the result as one JSON object")
        cmd.configure(p)
        p.set_defaults(_command=cmd)
    for name, text in PLANNED.items():
        if name not in _REGISTRY:
            p = sub.add_parser(
                name,
                help=f"{text} (not available in this version)",
                description=f"{text}. Not available in this version of ray_slt.",
            )
            p.add_argument("--json", action="store_true", help="print the result as one JSON object")
            p.set_defaults(_command=None, _planned=name)
    return parser


def _print_result(cmd: Command, result: Any, as_json: bool) -> None:
    if result is None:
        return
    if as_json or cmd.render is None:
        print(json.dumps(result, ensure_ascii=False, indent=None if as_json else 2, default=str))
    else:
        print(cmd.render(result))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        # KEY=VALUE overrides may follow options (`prepare wlasl --root x skip_bad=true`); argparse only collects
        # positionals that come before them.
        if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            raise RaySltError(f"unrecognized arguments: {' '.join(extra)} (see {PROG} {args.command or ''} --help)")
        if args.command is None:
            parser.print_help()
            return 2
        if args._command is None:
            raise RaySltError(f"'{args._planned}' is not available in this version of ray_slt")
        result = args._command.run(args)
        _print_result(args._command, result, args.json)
        reason = args._command.failed(result) if args._command.failed else None
        if reason:
            print(f"{PROG}: {args.command} failed: {reason}", file=sys.stderr)
            return 1
        return 0
    except RaySltError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
