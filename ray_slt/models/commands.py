"""`ray-slt` subcommands for saved producers: ``producer-set`` (assemble SignLLM's multi-language producer) and
``produce`` (text in, a ``.pose`` file and an animated GIF out)."""

from __future__ import annotations

import argparse
import base64
from typing import Any

from ray_slt import storage
from ray_slt.cli import register
from ray_slt.errors import ConfigError


def _configure_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["add", "remove", "show"], help="what to do with the set")
    p.add_argument("set", help="the producer set directory (local or s3://; created by the first add)")
    p.add_argument("--sign-language", metavar="CODE", help="ISO 639-3 code of the sign language (gsg, ase, ...)")
    p.add_argument("--producer", metavar="RUN", help="add: the producer (a run, checkpoint or model directory)")
    p.add_argument("--text2gloss", metavar="RUN",
                   help="add: the text -> gloss model in front of a gloss-reading producer")  # fmt: skip
    p.add_argument("--spoken", action="append", default=[], metavar="LANG",
                   help="add: a spoken language its sentences come in (BCP-47; repeat; none: any)")  # fmt: skip
    p.add_argument("--replace", action="store_true", help="add: replace the language if the set has it")


def _run_set(args: argparse.Namespace) -> dict[str, Any]:
    from ray_slt.models.producer_set import add_language, read_set, remove_language

    if args.action == "show":
        index = read_set(args.set)
    elif not args.sign_language:
        raise ConfigError(f"producer-set {args.action}: give --sign-language")
    elif args.action == "remove":
        index = remove_language(args.set, args.sign_language)
    else:
        if not args.producer:
            raise ConfigError("producer-set add: give --producer (a run, checkpoint or model directory)")
        index = add_language(args.set, args.sign_language, args.producer, args.text2gloss, args.spoken,
                             replace=args.replace)  # fmt: skip
    return {"set": storage.normalize(args.set), "languages": index["languages"]}


def _render_set(r: dict[str, Any]) -> str:
    lines = [f"producer set {r['set']}: {len(r['languages'])} sign language(s)"]
    for code, e in sorted(r["languages"].items()):
        chain = "text -> gloss -> pose" if e.get("text2gloss") else "text -> pose"
        if e["producer"].startswith("shared/"):
            chain += ", shared model"
        spoken = ", ".join(e["spoken"]) or "any"
        lines.append(f"  {code}: {chain} (spoken: {spoken}; from {e['from']['producer']})")
    if r["languages"]:
        lines.append(f"serve it: ray-slt serve conf/serve/produce.yaml models.produce.checkpoint={r['set']}")
    return "\n".join(lines)


register("producer-set", "assemble producers of several sign languages into one (SignLLM's MLSF)", _configure_set,
         _run_set, _render_set, description="""\
A producer set is one model directory with a text -> pose chain per sign language: an optional text -> gloss
model (stage text2gloss: Prompt2LangGloss's first stage) in front of a producer (stage produce). Each language's
models are copied into the set; adding or removing one leaves the others' files untouched (MLSF: no retraining).
Prompt2LangGloss's single shared model: add each language with the same multilingual models (trained with
text2gloss.tag=auto and produce.tag=auto on several corpora); the set keeps one shared copy of them and passes
each request's sign language to both (a shared model must know the language it is added for).
`ray-slt serve` serves it on POST /produce ({"text", "sign_language", "spoken_language"}); `ray-slt eval` scores
it like a producer (from the sentences of a split); `ray-slt produce` runs it on one sentence.

examples:
  ray-slt producer-set add models/signllm --sign-language qsl --spoken en \\
      --producer runs/produce_synthetic_tiny --text2gloss runs/text2gloss_synthetic_tiny
  ray-slt producer-set add models/signllm --sign-language qsb --spoken en \
      --producer runs/produce_synthetic_multi_tiny --text2gloss runs/text2gloss_synthetic_multi_tiny
  ray-slt producer-set show models/signllm
  ray-slt producer-set remove models/signllm --sign-language qsl""")  # fmt: skip


def _configure_produce(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a producer set, a producer or a lexicon producer (run, checkpoint or model dir)")
    p.add_argument("text", nargs="?", help="the sentence (a producer set, a sentence-reading producer) or glosses")
    p.add_argument("--sentences", metavar="FILE",
                   help="produce every line of FILE instead (or a TSV with text/gloss, id, sign_language columns) on "
                        "Ray Data; --out is then a directory")  # fmt: skip
    p.add_argument("--sign-language", metavar="CODE", help="which of a set's sign languages (default: its only one)")
    p.add_argument("--spoken-language", metavar="LANG", help="the sentence's language (checked against the set)")
    p.add_argument("--out", required=True, metavar="FILE.pose|DIR", help="where to write the production (.pose)")
    p.add_argument("--gif", metavar="FILE.gif", help="also render it as an animated GIF (pose-format's viewer)")
    p.add_argument("--video", metavar="FILE.mp4", help="also render it as an H.264 MP4 (pose-format's drawing)")
    p.add_argument("--workers", type=int, default=1, help="--sentences: Ray Data actors, one model each (1)")


def _run_produce(args: argparse.Namespace) -> dict[str, Any]:
    from ray_slt.models.registry import load_predictor

    if (args.text is None) == (args.sentences is None):
        raise ConfigError("give either a sentence or --sentences FILE")
    if args.sentences is not None:
        from ray_slt.models.produce_batch import produce_batch

        if args.gif or args.video or args.sign_language or args.spoken_language:
            raise ConfigError("--sentences takes the languages from its table's columns and renders no GIF or video")
        if args.workers < 1:
            raise ConfigError("--workers must be at least 1")
        return produce_batch(args.model, args.sentences, args.out, workers=args.workers, progress=not args.json)
    if not args.out.endswith(".pose"):
        raise ConfigError(f"--out {args.out}: name a .pose file")
    if args.gif and not args.gif.endswith(".gif"):
        raise ConfigError(f"--gif {args.gif}: name a .gif file")
    if args.video and not args.video.endswith(".mp4"):
        raise ConfigError(f"--video {args.video}: name a .mp4 file")
    if not args.text.strip():
        raise ConfigError("the text to produce is empty")
    predictor = load_predictor(args.model)
    field = "text" if predictor.inputs == "text" else "gloss"
    sample = {"sample_id": "cli", field: args.text.strip(), "sign_language": args.sign_language,
              "spoken_language": args.spoken_language}  # fmt: skip
    (out,) = predictor.predict([sample])
    data = base64.b64decode(out["pose_b64"])
    storage.write_bytes(args.out, data)
    result = {"model_id": predictor.model_id, "pose": storage.normalize(args.out), "num_frames": out["num_frames"],
              "fps": out["fps"], "gloss": out.get("gloss"), "sign_language": out.get("sign_language")}  # fmt: skip
    if args.gif:
        from ray_slt.data.poses import parse_pose
        from ray_slt.features.prompt2sign import gif_bytes

        storage.write_bytes(args.gif, gif_bytes(parse_pose(data, args.out)))
        result["gif"] = storage.normalize(args.gif)
    if args.video:
        from ray_slt.data.poses import parse_pose
        from ray_slt.features.prompt2sign import mp4_bytes

        storage.write_bytes(args.video, mp4_bytes(parse_pose(data, args.out)))
        result["video"] = storage.normalize(args.video)
    return result


def _render_produce(r: dict[str, Any]) -> str:
    if "items" in r:
        return (f"{r['produced']} produced, {r['errors']} errors, {r['skipped']} already done of {r['items']}: "
                f"{r['index']}")  # fmt: skip
    lines = [f"{r['pose']}: {r['num_frames']} frames at {r['fps']:g} fps ({r['model_id']})"]
    if r.get("gloss") is not None:
        lines.append(f"glosses ({r['sign_language']}): {r['gloss']}")
    if r.get("gif"):
        lines.append(f"animation: {r['gif']}")
    if r.get("video"):
        lines.append(f"video: {r['video']}")
    return "\n".join(lines)


register("produce", "produce a sentence (or glosses) as a pose: a .pose file and an animated GIF", _configure_produce,
         _run_produce, _render_produce, description="""\
Run a producer set (text -> gloss -> pose per sign language) or a single producer on one input and write the
production as a .pose file (Prompt2Sign's 50 joints, a full header: it opens in pose-format's viewer), optionally
rendered as an animated GIF.

examples:
  ray-slt produce models/signllm "the weather is nice" --sign-language qsl --out hello.pose --gif hello.gif
  ray-slt produce runs/produce_synthetic_tiny "SIGN1 SIGN2" --out two_signs.pose
  ray-slt produce models/signllm --sentences sentences.txt --out runs/produced --workers 2""")  # fmt: skip


def _configure_lexicon(p: argparse.ArgumentParser) -> None:
    p.add_argument("lexicon", help="a lexicon directory (spoken-to-signed's index.csv + .pose files), "
                                   "'spoken-to-signed' (the package's fingerspelling lexicon), or a synthetic corpus "
                                   "root (its signs are written out as a lexicon first)")  # fmt: skip
    p.add_argument("--signed-language", required=True, metavar="CODE", help="whose entries (ase, gsg, qsl, ...)")
    p.add_argument("--spoken-language", metavar="LANG", help="only entries of this spoken language")
    p.add_argument("--out", required=True, help="the model directory to write (local or s3://)")
    p.add_argument("--fps", type=float, default=25.0, help="the producer's pose rate before --frame-step (25)")
    p.add_argument("--frame-step", type=int, default=1, help="keep every N-th frame, as a producer's frame_step (1)")
    p.add_argument("--max-frames", type=int, default=300, help="the longest production (300)")
    p.add_argument("--blend", type=int, default=4, help="interpolated frames between two signs (4)")
    p.add_argument("--trim-margin", type=int, default=5, help="frames kept around the raised-hand span (5)")
    p.add_argument("--max-sign-seconds", type=float, default=0.8,
                   help="longer signs are sped up to this (0.8 s, spoken-to-signed's; 0: never)")  # fmt: skip


def _run_lexicon(args: argparse.Namespace) -> dict[str, Any]:
    import os

    from ray_slt.models.lexicon_producer import build_lexicon_producer

    lexicon = args.lexicon
    if lexicon == "spoken-to-signed":
        try:
            import spoken_to_signed
        except ImportError:
            raise ConfigError("the spoken-to-signed package is not installed (pip install spoken-to-signed)") from None
        lexicon = os.path.join(os.path.dirname(spoken_to_signed.__file__), "assets", "fingerspelling_lexicon")
    elif storage.exists(storage.join(lexicon, "synthetic.json")) and not storage.exists(
        storage.join(lexicon, "index.csv")
    ):
        from ray_slt.data.synthetic import write_sign_lexicon

        corpus, lexicon = lexicon, storage.normalize(args.out).rstrip("/") + "-lexicon"
        write_sign_lexicon(corpus, lexicon)
    for name in ("frame_step", "max_frames"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    return build_lexicon_producer(lexicon, args.out, args.signed_language, args.spoken_language, pose_fps=args.fps,
                                  frame_step=args.frame_step, max_frames=args.max_frames, blend=args.blend,
                                  trim_margin=args.trim_margin, max_sign_seconds=args.max_sign_seconds or None,
                                  progress=not args.json)  # fmt: skip


def _render_lexicon(r: dict[str, Any]) -> str:
    lines = [f"lexicon producer {r['out']}: {r['entries']} {r['signed_language']} signs from {r['source']}"]
    if r["skipped"]:
        lines.append(f"skipped {len(r['skipped'])} unreadable entries, e.g. line {r['skipped'][0]['line']}: "
                     f"{r['skipped'][0]['reason']}")  # fmt: skip
    lines.append(f"evaluate it: ray-slt eval {r['out']} --split test --data FEATURES")
    return "\n".join(lines)


register("lexicon-producer", "build the lexicon-concatenation production baseline (spoken-to-signed's)",
         _configure_lexicon, _run_lexicon, _render_lexicon, description="""\
Build a lexicon producer: glosses in, the lexicon's isolated signs concatenated out (spoken-to-signed's baseline:
look up, trim to the raised-hand span, join with short transitions), in the same Prompt2Sign frames as a trained
producer, so `ray-slt eval` scores it the same way (DTW, --back-translator) and `ray-slt serve` serves it.

examples:
  ray-slt lexicon-producer runs/synthetic/corpus --signed-language qsl --out runs/lexicon_qsl --frame-step 3 \\
      --max-frames 64
  ray-slt eval runs/lexicon_qsl --split test --data runs/synthetic/features
  ray-slt lexicon-producer spoken-to-signed --signed-language ase --out runs/fingerspelling_ase""")  # fmt: skip
