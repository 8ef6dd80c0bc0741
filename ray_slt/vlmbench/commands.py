"""`ray-slt` subcommands of the VLM benchmarks.

``ray-slt vlmbench-wlasl ROOT --out FILE`` and ``ray-slt vlmbench-lexsign --corpus ... --lexicon ... --out FILE``
write question files; ``ray-slt vlmbench CONFIG [key=value ...]`` answers one with a model and scores it.
"""

from __future__ import annotations

import argparse
from typing import Any

from ray_slt import cli


def _lexicon(uri: str):
    from ray_slt.data.lexicon import asl_lex_lexicon, is_asl_lex, read_lexicon

    return asl_lex_lexicon(uri) if is_asl_lex(uri) else read_lexicon(uri)[0]


def _configure_wlasl(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="the WLASL directory (WLASL_v0.3.json and videos/{video_id}.mp4)")
    p.add_argument("--out", required=True, help="the question file to write (.jsonl)")
    p.add_argument("--protocol", choices=("open", "binary"), default="open",
                   help="open: name the gloss (three prompt levels at run time); binary: 'is this sign GLOSS?' "
                   "against a lexicon's descriptions (default: open)")  # fmt: skip
    p.add_argument("--subset", type=int, choices=(100, 300, 1000, 2000), default=300,
                   help="WLASL100/300/1000/2000 (default 300, the paper's)")  # fmt: skip
    p.add_argument("--splits", default="test", help="comma-separated official splits (train, dev, test; default test)")
    p.add_argument("--lexicon", help="binary: descriptions (ASL-LEX 2.0's signdata CSV or a lexicon table)")
    p.add_argument(
        "--seed", type=int, default=42, help="evaluation order and binary negatives (default 42, the authors')"
    )
    p.add_argument("--keep-missing", action="store_true",
                   help="keep instances whose video file is missing (default: leave them out, counted)")  # fmt: skip


def _run_wlasl(args: argparse.Namespace) -> dict[str, Any]:
    from ray_slt.errors import ConfigError
    from ray_slt.vlmbench.questions import write_questions
    from ray_slt.vlmbench.wlasl import binary_questions, open_questions, wlasl_rows

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    rows, candidates, missing = wlasl_rows(args.root, args.subset, splits, require_video=not args.keep_missing)
    params: dict[str, Any] = {"subset": args.subset, "splits": splits, "missing_videos": missing}
    if args.protocol == "open":
        questions = open_questions(rows, args.seed)
    else:
        if not args.lexicon:
            raise ConfigError("--protocol binary needs --lexicon (the descriptions to match against)")
        questions, params["lexicon_coverage"] = binary_questions(rows, _lexicon(args.lexicon), args.seed)
    header = {"benchmark": f"wlasl{args.subset}-zeroshot-{args.protocol}", "protocol": args.protocol,
              "seed": args.seed, "params": params, "candidates": candidates}  # fmt: skip
    head = write_questions(args.out, header, questions)
    return {"out": args.out, **{k: head[k] for k in ("benchmark", "questions", "content_hash")}, **params}


def _configure_lexsign(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True,
                   help="a manifest (.parquet, rows with gloss and video) or a WLASL directory")  # fmt: skip
    p.add_argument("--lexicon", required=True, help="ASL-LEX 2.0's signdata CSV or a lexicon table with iconicity_type")
    p.add_argument("--out", required=True, help="the question file to write (.jsonl)")
    p.add_argument("--count", type=int, default=75, help="glosses per iconicity type (default 75, the paper's)")
    p.add_argument("--confusion", help="a recognizer's confusion.csv (ray-slt eval) for hard distractors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", default="train,dev,test", help="WLASL directory: splits whose videos are asked about")


def _run_lexsign(args: argparse.Namespace) -> dict[str, Any]:
    from ray_slt.vlmbench.lexsign import build_lexsign, read_confusion
    from ray_slt.vlmbench.questions import write_questions

    vocabulary: list[str] = []
    if args.corpus.endswith(".parquet"):
        from ray_slt.data.manifest import read_manifest

        rows = read_manifest(args.corpus).to_pylist()
    else:
        from ray_slt.vlmbench.wlasl import wlasl_rows

        splits = [s.strip() for s in args.splits.split(",") if s.strip()]
        rows, vocabulary, _ = wlasl_rows(args.corpus, 2000, splits)
    confusion = read_confusion(args.confusion) if args.confusion else None
    questions, params = build_lexsign(rows, _lexicon(args.lexicon), args.count, args.seed, confusion, vocabulary)
    header = {"benchmark": "lexsign-bench", "protocol": "mcq", "seed": args.seed, "params": params}
    head = write_questions(args.out, header, questions)
    return {"out": args.out, **{k: head[k] for k in ("benchmark", "questions", "content_hash")}, **params}


def _render_built(r: dict[str, Any]) -> str:
    return f"{r['questions']} questions ({r['benchmark']}) -> {r['out']}\ncontent hash {r['content_hash']}"


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a kind: vlmbench config (e.g. conf/vlmbench/lexsign_tiny.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    p.add_argument("--score-only", action="store_true", help="score the answers already cached, ask nothing")


def _run_run(args: argparse.Namespace) -> dict[str, Any]:
    from ray_slt.config import load_config
    from ray_slt.vlmbench.report import headline, score_run, write_report
    from ray_slt.vlmbench.runner import run_answers

    cfg = load_config(args.config, args.overrides)
    counts = {} if args.score_only else run_answers(cfg)
    metrics = score_run(cfg)
    files = write_report(cfg, metrics)
    return {"counts": counts, "headline": headline(metrics), "files": files, "summary_file": files["summary"]}


def _render_run(r: dict[str, Any]) -> str:
    from ray_slt import storage

    return storage.read_text(r["summary_file"]) + "\n" + "\n".join(f"{k}: {v}" for k, v in r["files"].items())


def _configure_describe(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="a manifest (.parquet) or a WLASL directory")
    p.add_argument("--out", required=True, help="the question file to write (.jsonl)")
    p.add_argument("--per-gloss", type=int, default=1, help="videos described per gloss (default 1; paper: 1-3)")
    p.add_argument("--splits", default="train", help="splits whose videos are described (default train: the "
                   "quality protocol describes the training classes only)")  # fmt: skip
    p.add_argument("--examples", help="a reference lexicon: three of its entries become in-context examples")
    p.add_argument("--seed", type=int, default=0)


def _rows(corpus: str, splits: list[str]) -> tuple[list[dict], list[str]]:
    if corpus.endswith(".parquet"):
        from ray_slt.data.manifest import read_manifest

        rows = [r for r in read_manifest(corpus).to_pylist() if not splits or r.get("split") in splits]
        return rows, []
    from ray_slt.vlmbench.wlasl import wlasl_rows

    rows, vocab, _ = wlasl_rows(corpus, 2000, splits)
    return rows, vocab


def _run_describe(args: argparse.Namespace) -> dict[str, Any]:
    from ray_slt.vlmbench.agp import describe_questions, example_entries
    from ray_slt.vlmbench.questions import write_questions

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    rows, _ = _rows(args.corpus, splits)
    questions = describe_questions(rows, args.per_gloss, args.seed)
    examples = example_entries(_lexicon(args.examples), seed=args.seed) if args.examples else []
    header = {"benchmark": "agp-describe", "protocol": "describe", "seed": args.seed, "examples": examples,
              "params": {"per_gloss": args.per_gloss, "splits": splits}}  # fmt: skip
    head = write_questions(args.out, header, questions)
    return {"out": args.out, **{k: head[k] for k in ("benchmark", "questions", "content_hash")}}


def _configure_summarise(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the kind: vlmbench config whose describe run to summarise (its model summarises)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    p.add_argument("--out", required=True, help="the generated lexicon (.csv or .parquet)")
    p.add_argument("--reference", help="a reference lexicon: also write the quality protocol's training lexicon")
    p.add_argument("--quality-out", help="where that lexicon goes (default: OUT with .quality before the suffix)")
    p.add_argument("--language", default="ase", help="sign language of the entries (default ase)")


def _run_summarise(args: argparse.Namespace) -> dict[str, Any]:
    from ray_slt import storage
    from ray_slt.config import config_dict, load_config
    from ray_slt.data.lexicon import write_lexicon
    from ray_slt.errors import ConfigError
    from ray_slt.vlmbench.agp import clean_description, generated_lexicon, quality_lexicon, summarise
    from ray_slt.vlmbench.questions import read_questions
    from ray_slt.vlmbench.runner import build_tasks, read_answers

    cfg = load_config(args.config, args.overrides)
    header, questions = read_questions(cfg.questions)
    if header["protocol"] != "describe":
        raise ConfigError(f"{cfg.questions}: a {header['protocol']} question file; summarise needs a describe run")
    answers = read_answers(storage.join(cfg.out, "answers.jsonl"))
    gold = {q["qid"]: q["gold"] for q in questions}
    per_gloss: dict[str, list[str]] = {}
    for t in build_tasks(cfg, header, questions):
        a = answers.get(t["key"])
        if a and a.get("error") is None and t["condition"] == "video":
            per_gloss.setdefault(gold[t["qid"]], []).append(clean_description(a.get("reply") or ""))
    if not any(per_gloss.values()):
        raise ConfigError(f"{cfg.out}: no descriptions yet (run `ray-slt vlmbench {args.config}` first)")
    if cfg.model.endpoint is not None:
        from ray_slt.vlmbench.endpoint import EndpointClient

        client = EndpointClient(config_dict(cfg.model.endpoint))

        def ask(system: str, prompt: str) -> str:
            return client.ask(system, prompt, None)[0]
    else:
        from ray_slt.models.vlm.chat import VLMChat

        chat = VLMChat.load(checkpoint=cfg.model.checkpoint, vlm=cfg.model.vlm)

        def ask(system: str, prompt: str) -> str:
            q = {"system": system, "prompt": prompt, "frames": None}
            return chat.reply([q], max_new_tokens=max(cfg.max_new_tokens, 96))[0]

    merged = summarise(per_gloss, ask)
    entries = generated_lexicon(merged, cfg.model.name(), args.language)
    write_lexicon(entries, args.out)
    out: dict[str, Any] = {"out": args.out, "glosses": len(entries),
                           "summarised": sum(len([d for d in v if d]) > 1 for v in per_gloss.values())}  # fmt: skip
    if args.reference:
        stem, dot, ext = args.out.rpartition(".")
        qpath = args.quality_out or (f"{stem}.quality.{ext}" if dot else args.out + ".quality.csv")
        combined, counts = quality_lexicon(entries, _lexicon(args.reference))
        write_lexicon(combined, qpath)
        out.update({"quality_lexicon": qpath, **counts})
    return out


def _configure_serve(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a trained VLM checkpoint of this project (ray-slt train, stage vlm)")
    src.add_argument("--model", help="a base VLM: a model id or a local directory (SmolVLM2, Qwen2.5-VL, InternVL3)")
    p.add_argument("--name", help="the model name clients send (default: the checkpoint's or model's last part)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body-mb", type=float, default=64.0, help="larger request bodies get 413 (default 64)")
    p.add_argument("--max-frames", type=int, default=128, help="more images per request get 413 (default 128)")


def _run_serve(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn

    from ray_slt.models.vlm.chat import VLMChat
    from ray_slt.serve.openai_compat import build_app

    if args.checkpoint:
        chat = VLMChat.load(checkpoint=args.checkpoint)
    else:
        chat = VLMChat.load(vlm={"model": args.model})
    name = args.name or (args.checkpoint or args.model).rstrip("/").split("/")[-1]
    app = build_app(chat, name, max_body_mb=args.max_body_mb, max_frames=args.max_frames)
    print(f"serving {name} at http://{args.host}:{args.port}/v1 (OpenAI chat completions); Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return {"served": name}


cli.register("vlmbench-wlasl", "write a zero-shot WLASL question file (open set or binary matching)",
             _configure_wlasl, _run_wlasl, _render_built,
             description="Write the question file of zero-shot VLM recognition on WLASL (paper 3): the official "
             "WLASL300 test split by default (668 videos, shuffled with seed 42), open set or binary matching "
             "against a lexicon's descriptions, versioned and content-hashed.")  # fmt: skip
cli.register("vlmbench-lexsign", "write a LexSign-Bench question file (4-option questions per video)",
             _configure_lexsign, _run_lexsign, _render_built,
             description="Build LexSign-Bench (paper 4): glosses per ASL-LEX iconicity type, a subunit-level "
             "(descriptions) and a gloss-level (names) question per video, hard distractors from a confusion "
             "matrix or phonological similarity, balanced answer letters; versioned, seeded, hashed.")  # fmt: skip
cli.register("vlmbench", "answer a question file with a VLM or an endpoint and score it",
             _configure_run, _run_run, _render_run,
             description="Run a benchmark config (kind: vlmbench): every question x prompt variant x condition "
             "(video, blind, perturb:P) answered on Ray Data by a local VLM or an OpenAI-compatible endpoint, "
             "resumable from answers.jsonl; writes metrics.json, summary.md and scores.png.")  # fmt: skip
cli.register("vlmbench-describe", "write an AGP describe question file (one question per video to describe)",
             _configure_describe, _run_describe, _render_built,
             description="AGP's perceive step (paper 4): a question file asking a VLM for a dictionary-style "
             "description of each video (at most --per-gloss per gloss, the training split by default); answer it "
             "with `ray-slt vlmbench CONFIG`, then merge with `ray-slt vlmbench-summarise`.")  # fmt: skip
cli.register("vlmbench-summarise", "merge a describe run's descriptions into a lexicon (AGP's summarise step)",
             _configure_summarise, _run_summarise, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()),
             description="AGP's summarise step: the run's model (text only) or endpoint merges each gloss's "
             "descriptions into one entry; writes a lexicon (source vlm:MODEL) and, with --reference, the quality "
             "protocol's training lexicon (generated for the described classes, reference for the rest).")  # fmt: skip
cli.register("vlmbench-serve", "serve a VLM behind an OpenAI-compatible chat-completions API",
             _configure_serve, _run_serve, lambda r: f"stopped serving {r['served']}",
             description="Serve a trained VLM checkpoint or a base VLM at /v1/chat/completions (the OpenAI request "
             "shape; images as data URLs are one video's frames) and /v1/models, so the benchmark runner's "
             "endpoint mode, or any OpenAI client, can question it from another machine.")  # fmt: skip
