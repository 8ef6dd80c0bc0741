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
`ray-slt serve` serves it on POST /produce ({"text", "sign_language", "spoken_language"}); `ray-slt eval` scores
it like a producer (from the sentences of a split); `ray-slt produce` runs it on one sentence.

examples:
  ray-slt producer-set add models/signllm --sign-language qsl --spoken en \\
      --producer runs/produce_synthetic_tiny --text2gloss runs/text2gloss_synthetic_tiny
  ray-slt producer-set show models/signllm
  ray-slt producer-set remove models/signllm --sign-language qsl""")  # fmt: skip


def _configure_produce(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a producer set, or a producer (a run, checkpoint or model directory)")
    p.add_argument("text", help="the sentence (a producer set, a sentence-reading producer) or gloss sequence")
    p.add_argument("--sign-language", metavar="CODE", help="which of a set's sign languages (default: its only one)")
    p.add_argument("--spoken-language", metavar="LANG", help="the sentence's language (checked against the set)")
    p.add_argument("--out", required=True, metavar="FILE.pose", help="where to write the production (.pose)")
    p.add_argument("--gif", metavar="FILE.gif", help="also render it as an animated GIF (pose-format's viewer)")


def _run_produce(args: argparse.Namespace) -> dict[str, Any]:
    from ray_slt.models.registry import load_predictor

    if not args.out.endswith(".pose"):
        raise ConfigError(f"--out {args.out}: name a .pose file")
    if args.gif and not args.gif.endswith(".gif"):
        raise ConfigError(f"--gif {args.gif}: name a .gif file")
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
    return result


def _render_produce(r: dict[str, Any]) -> str:
    lines = [f"{r['pose']}: {r['num_frames']} frames at {r['fps']:g} fps ({r['model_id']})"]
    if r.get("gloss") is not None:
        lines.append(f"glosses ({r['sign_language']}): {r['gloss']}")
    if r.get("gif"):
        lines.append(f"animation: {r['gif']}")
    return "\n".join(lines)


register("produce", "produce a sentence (or glosses) as a pose: a .pose file and an animated GIF", _configure_produce,
         _run_produce, _render_produce, description="""\
Run a producer set (text -> gloss -> pose per sign language) or a single producer on one input and write the
production as a .pose file (Prompt2Sign's 50 joints, a full header: it opens in pose-format's viewer), optionally
rendered as an animated GIF.

examples:
  ray-slt produce models/signllm "the weather is nice" --sign-language qsl --out hello.pose --gif hello.gif
  ray-slt produce runs/produce_synthetic_tiny "SIGN1 SIGN2" --out two_signs.pose""")  # fmt: skip
