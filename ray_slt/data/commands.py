"""`ray-slt prepare`, `ray-slt stats` and `ray-slt lexicon`."""

from __future__ import annotations

import argparse
import json

from ray_slt.cli import register
from ray_slt.data.adapters import ADAPTERS
from ray_slt.errors import DataError

PREPARE_HELP = """\
Build a manifest (Parquet, one schema for every corpus) from a corpus's official files.

  ray-slt prepare phoenix14t --root ../shared/data/phoenix14t --out runs/phoenix14t/manifest.parquet
  ray-slt prepare wlasl --root s3://corpora/wlasl --out s3://runs/wlasl.parquet --option subset=100
  ray-slt prepare conf/prepare/phoenix14t.yaml splits=[dev,test]     # a config file + overrides

Bad rows stop the run with the file and line; with --skip-bad they go to MANIFEST.errors.jsonl instead.
Datasets: {datasets}.
"""


def _configure_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET|CONFIG", help="a dataset name, or a YAML config of kind 'prepare'")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    p.add_argument("--root", help="directory with the corpus's official files (local or s3://)")
    p.add_argument("--out", help="manifest to write (.parquet; default runs/DATASET/manifest.parquet)")
    p.add_argument("--splits", help="comma-separated splits to include (default: train,dev,test)")
    p.add_argument("--skip-bad", action="store_true", help="record bad rows in an error report and go on")
    p.add_argument(
        "--require-media", action="store_true", help="treat rows whose video/pose file is missing as bad rows"
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset-specific option (e.g. subset=100 for wlasl); repeatable",
    )
    p.add_argument(
        "--clean", action="store_true", help="drop samples with empty/invalid text or a pose without a person"
    )
    p.add_argument(
        "--rare-subset",
        metavar="RARE:REST",
        help="keep RARE samples with a rare word (freq < 10) plus REST others (first paper, App. A)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the rare-word subset (default 0)")


def _run_prepare(args: argparse.Namespace) -> dict:
    from ray_slt.config import build_config, load_config
    from ray_slt.data.prepare import default_out, prepare
    from ray_slt.errors import RaySltError

    if args.dataset.endswith((".yaml", ".yml")):
        flags = [f for f in ("root", "out", "splits", "rare_subset") if getattr(args, f)]
        if flags or args.option or args.skip_bad or args.require_media or args.clean:
            raise RaySltError("with a config file, change settings with KEY=VALUE overrides, not flags")
        cfg = load_config(args.dataset, args.overrides)
    else:
        if not args.root:
            raise RaySltError("--root is required (the directory with the corpus's official files)")
        data: dict = {
            "kind": "prepare",
            "dataset": args.dataset,
            "root": args.root,
            "out": args.out or default_out(args.dataset),
            "skip_bad": args.skip_bad,
            "require_media": args.require_media,
            "options": {},
        }
        if args.splits:
            data["splits"] = [s.strip() for s in args.splits.split(",") if s.strip()]
        for opt in args.option:
            key, sep, value = opt.partition("=")
            if not sep or not key:
                raise RaySltError(f"--option {opt!r} is not KEY=VALUE")
            import yaml

            data["options"][key.strip()] = yaml.safe_load(value)
        curation: dict = {"clean": args.clean}
        if args.rare_subset:
            try:
                rare, rest = (int(x) for x in args.rare_subset.split(":"))
            except ValueError:
                raise RaySltError(f"--rare-subset {args.rare_subset!r} is not RARE:REST (e.g. 30000:20000)") from None
            curation["rare_subset"] = {"rare": rare, "rest": rest, "seed": args.seed}
        data["curation"] = curation
        cfg = build_config(data, args.overrides, source="command line")
    return prepare(cfg, progress=not args.json)


def _render_prepare(summary: dict) -> str:
    from ray_slt.data.prepare import render

    return render(summary)


def _configure_stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", metavar="MANIFEST", help="a manifest (.parquet, local or s3://)")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots (frame lengths, token frequencies) here")
    p.add_argument(
        "--tokenizer",
        choices=["whitespace", "char"],
        help="how to count text tokens (default: char for Chinese/Japanese, else whitespace)",
    )
    p.add_argument("--splits", help="comma-separated splits to report (default: all present)")


def _run_stats(args: argparse.Namespace) -> dict:
    from ray_slt.data.manifest import filter_splits, read_manifest
    from ray_slt.data.stats import corpus_stats, write_plots

    table = read_manifest(args.manifest)
    if args.splits:
        table = filter_splits(table, [s.strip() for s in args.splits.split(",")])
    result = corpus_stats(table, args.tokenizer)
    if args.plots:
        result["plots"] = write_plots(table, args.plots, args.tokenizer)
    return result


def _render_stats(result: dict) -> str:
    from ray_slt.data.stats import render

    text = render(result)
    if result.get("plots"):
        text += "\nplots: " + ", ".join(result["plots"])
    return text


register(
    "prepare",
    "build a manifest from a corpus's official files",
    _configure_prepare,
    _run_prepare,
    _render_prepare,
    description=PREPARE_HELP.format(datasets=", ".join(sorted(ADAPTERS))),
)
register(
    "stats",
    "per-split corpus statistics (samples, frames, vocabulary) and plots",
    _configure_stats,
    _run_stats,
    _render_stats,
    description="Per-split statistics of a manifest: samples; frame counts (mean, max, number over 300) "
    "where known; text tokens, types, %% of types with frequency < 10 and > 100; gloss vocabulary. "
    "The definitions follow the first paper's Tables 2 and 9 (see ray_slt.data.stats).",
)


LEXICON_HELP = """\
Build a lexicon table (gloss,description,language,source,...: the one format the recognizers, the VLM
benchmarks and production read) from ASL-LEX 2.0's sign data or from a table of your own, and report how it
covers a corpus's glosses.

  ray-slt lexicon ../shared/data/asl_lex/signdata-11-5-20.csv --out runs/lexicons/asl_lex.csv
  ray-slt lexicon signdata-11-5-20.csv --match ../shared/data/wlasl/WLASL_v0.3.json --out runs/wlasl/lexicon.csv
  ray-slt lexicon my_signs.csv --language ase --match runs/wlasl100/manifest.parquet --out lexicon.csv

SOURCE is ASL-LEX 2.0's signdata CSV (recognised by its columns; descriptions rendered from the phonological
coding by ray_slt.data.lexicon's template, one parameter per comma-separated fragment) or a lexicon table
(CSV with gloss,description[,language], or .parquet). With --match (a manifest, WLASL_v0.3.json or a class
list) the lexicon is restated in the corpus's glosses (WLASL's "thank you" for ASL-LEX's "thank_you") and the
coverage report (matched, matched by alias, unmatched, ambiguous, with the glosses) is written beside --out as
<out stem>.coverage.json. A bad table row stops the run with its file and line; --skip-bad keeps every good row
and lists the bad ones.
"""


def _configure_lexicon(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="ASL-LEX 2.0 signdata CSV, or a lexicon table (CSV/.parquet)")
    p.add_argument("--out", required=True, help="the lexicon to write (.csv or .parquet; local or s3://)")
    p.add_argument("--match", metavar="CORPUS", help="a manifest, WLASL_v0.3.json or class list to match glosses to")
    p.add_argument("--language", help="a user table's sign language (ISO 639-3) for rows without one")
    p.add_argument("--skip-bad", action="store_true", help="keep every good row of a user table; list the bad")


def _run_lexicon(args: argparse.Namespace) -> dict:
    from ray_slt import storage
    from ray_slt.data import lexicon as lx

    bad: list[dict] = []
    if lx.is_asl_lex(args.source):
        entries, source = lx.asl_lex_lexicon(args.source), "asl-lex-2.0"
    else:
        entries, bad = lx.read_lexicon(args.source, language=args.language or "und", skip_bad=args.skip_bad)
        source = "table"
    result: dict = {"source": source, "entries": len(entries), "bad_rows": bad, "out": args.out}
    if args.match:
        glosses = lx.corpus_glosses(args.match)
        entries, coverage = lx.corpus_lexicon(glosses, entries)
        report = {"corpus": args.match, "lexicon": args.source, **coverage.summary(), "matched_glosses":
                  coverage.matched, "by_alias_glosses": coverage.by_alias, "unmatched_glosses": coverage.unmatched,
                  "ambiguous_glosses": coverage.ambiguous}  # fmt: skip
        stem = args.out.rsplit(".", 1)[0]
        result["coverage_report"] = f"{stem}.coverage.json"
        storage.write_text(result["coverage_report"], json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        result["coverage"] = coverage.summary()
        result["entries"] = len(entries)
        if not entries:
            raise DataError("the lexicon describes none of the corpus's glosses", args.match)
    lx.write_lexicon(entries, args.out)
    return result


def _render_lexicon(result: dict) -> str:
    lines = [f"wrote {result['entries']} entries ({result['source']}) to {result['out']}"]
    if result["bad_rows"]:
        lines.append(f"skipped {len(result['bad_rows'])} bad rows:")
        lines += [f"  {b['source']}:{b['line']}: {b['reason']}" for b in result["bad_rows"][:20]]
    c = result.get("coverage")
    if c:
        lines.append(f"coverage of the corpus's {c['glosses']} glosses: {c['matched']} matched "
                     f"({100 * c['coverage']:.1f}%; {c['by_alias']} by alias), {c['unmatched']} unmatched, "
                     f"{c['ambiguous']} ambiguous (the lowest variant used)")  # fmt: skip
        lines.append(f"coverage report: {result['coverage_report']}")
    return "\n".join(lines)


register(
    "lexicon",
    "build a lexicon (gloss -> description) from ASL-LEX or a table; gloss coverage of a corpus",
    _configure_lexicon,
    _run_lexicon,
    _render_lexicon,
    description=LEXICON_HELP,
)
