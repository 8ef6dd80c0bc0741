"""`ray-slt` subcommands of the eval stage (registered with ray_slt.cli.register).

``ray-slt score --hyp FILE --ref FILE [--ref FILE ...] [--lang LANG] [--json]`` scores one sentence per line
with :func:`ray_slt.eval.metrics.corpus_scores`.
"""

from __future__ import annotations

import argparse

from ray_slt import cli, storage
from ray_slt.errors import DataError

SCORE_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf", "bleu_signature")


def read_lines(uri: str) -> list[str]:
    """The sentences of a one-sentence-per-line file (UTF-8, local or s3://); a final newline is optional,
    ``\\r\\n`` line ends are accepted. Invalid UTF-8 and empty files are DataErrors naming the file."""
    text = storage.decode_text(storage.read_bytes(uri), uri)
    if not text.strip():
        raise DataError("empty file: expected one sentence per line", uri)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _configure_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hyp", required=True, metavar="FILE", help="hypotheses, one sentence per line")
    p.add_argument(
        "--ref",
        required=True,
        action="append",
        metavar="FILE",
        help="references, one sentence per line, line i for hypothesis i; repeat for several references",
    )
    p.add_argument(
        "--lang",
        default=None,
        help="spoken language of the text (BCP-47/ISO 639, e.g. de, en, zh): picks the BLEU tokenizer "
        "(zh for Chinese, 13a otherwise; default 13a)",
    )


def _run_score(args: argparse.Namespace) -> dict:
    from ray_slt.eval.metrics import corpus_scores

    hyps = read_lines(args.hyp)
    streams = []
    for ref in args.ref:
        lines = read_lines(ref)
        if len(lines) != len(hyps):
            line = min(len(lines), len(hyps)) + 1
            raise DataError(
                f"{len(lines)} reference lines but {args.hyp} has {len(hyps)} hypothesis lines "
                f"(first unmatched line {line})",
                ref,
                line,
            )
        streams.append(lines)
    scores = corpus_scores(hyps, streams, lang=args.lang)
    return {k: scores[k] for k in SCORE_KEYS}


def _render_score(result: dict) -> str:
    names = [("BLEU-1", "bleu1"), ("BLEU-2", "bleu2"), ("BLEU-3", "bleu3"), ("BLEU-4", "bleu4")]
    names += [("ROUGE-L", "rouge_l"), ("chrF", "chrf")]
    width = max(len(n) for n, _ in names)
    lines = [f"{'metric':<{width}}  {'score':>6}", f"{'-' * width}  {'-' * 6}"]
    lines += [f"{name:<{width}}  {result[key]:6.2f}" for name, key in names]
    lines.append(f"BLEU signature: {result['bleu_signature']}")
    return "\n".join(lines)


cli.register(
    "score",
    "score hypotheses against references (BLEU-1..4, ROUGE-L, chrF)",
    _configure_score,
    _run_score,
    _render_score,
    description="Score hypothesis sentences against reference sentences (one per line, UTF-8) with the "
    "metrics of ray_slt.eval.metrics: BLEU-1..4 (sacrebleu, signature printed), ROUGE-L F1 and chrF, on a "
    "0-100 scale. --json prints one object with keys " + ", ".join(SCORE_KEYS) + ".",
)


EVAL_DESCRIPTION = """\
Run a saved model over a split and score it with its evaluation protocol (translation: BLEU-1..4 with the
sacrebleu signature, ROUGE-L, chrF; TSR/PGER with --semantic). CHECKPOINT is a run directory (its best
checkpoint), a checkpoint directory (checkpoint_*/) or a model directory; the model's kind (in its manifest)
picks the predictor that loads it. Writes the protocol's files (predictions.jsonl; for translation
hypotheses.txt and references.txt) and metrics.json (scores, signatures, protocol, config hash, model id,
split, number of samples, decoding settings) to --out (default, printed: eval/SPLIT inside the checkpoint used,
or eval/SPLIT-PROTOCOL for a protocol other than the model's own). Decoding is deterministic.
Recognizers: --protocol islr (top-1/top-5 per instance and per class), zsl or gzsl (zero-shot, over the
class partition the model was trained under); per_class.csv and confusion.csv are written beside.

Decoding is chosen on dev, never on test: --grid num_beams=1,4 --grid length_penalty=0.8,1.0 evaluates every
combination on the (dev) split and keeps the best; --decoding-from-dev then decodes the test split with it.
Options given beside --grid (e.g. --num-beams 8 --channel RUN) hold for every combination and are part of the
choice. Text-side models can pick among the beam's hypotheses instead of taking its best: --mbr (the one that
agrees most with the others) or --channel RUN (re-ranked with the reverse-direction model) and/or --lm RUN (a
language model of the output side, stage textlm) and/or --peer RUN (another model of the same direction: its
candidates pooled, its score added; an n-best ensemble). A textlm model itself is evaluated by its perplexity.

examples:
  ray-slt eval runs/train_synthetic_tiny --split test
  ray-slt eval runs/phoenix_gloss2text --split dev --grid num_beams=1,4,8 --grid length_penalty=0.8,1.0,1.2
  ray-slt eval runs/phoenix_gloss2text --split dev --grid num_beams=4,8 --grid mbr=false,true
  ray-slt eval runs/phoenix_gloss2text --split dev --num-beams 8 --channel runs/text2gloss_phoenix \
      --grid channel_weight=0,0.5,1 --grid length_bonus=0,0.1,0.2
  ray-slt eval runs/phoenix_gloss2text --split dev --num-beams 8 --channel runs/text2gloss_phoenix \
      --lm runs/textlm_phoenix_de --grid channel_weight=0.5,1 --grid lm_weight=0,0.25,0.5 --grid length_bonus=0,1
  ray-slt eval runs/phoenix_gloss2text --split dev --num-beams 8 --channel runs/text2gloss_phoenix \
      --peer runs/phoenix_gloss2text_b --grid peer_weight=0.5,1 --grid channel_weight=0.5,1 --grid length_bonus=1,1.5
  ray-slt eval runs/textlm_phoenix_de --split test
  ray-slt eval runs/phoenix_gloss2text --split test --decoding-from-dev
  ray-slt eval runs/hali_synthetic_tiny --split test --protocol gzsl
  ray-slt eval runs/x/checkpoint_e010_s0001000 --split dev --data runs/phoenix14t/manifest.parquet --json
"""


def _configure_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run directory, checkpoint directory or model directory (local or s3://)")
    p.add_argument("--split", default="dev", help="split to evaluate (default dev)")
    p.add_argument("--data", help="feature store or manifest .parquet (default: the training config's data)")
    p.add_argument("--out", help="output directory (default: eval/SPLIT[-PROTOCOL] inside the checkpoint used)")
    p.add_argument("--protocol", help="evaluation protocol (default: the one of the stage that trained the model)")
    p.add_argument("--num-beams", type=int, help="beam width (default: the model config's; 1 = greedy)")
    p.add_argument("--max-new-tokens", type=int, help="default: the model config's")
    p.add_argument("--length-penalty", type=float,
                   help="beam search's length exponent (default 1.0; > 1 favours longer outputs)")  # fmt: skip
    p.add_argument(
        "--mbr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="minimum-Bayes-risk choice among the beam's hypotheses (by sentence BLEU against each "
        "other) instead of the beam's best; translators and text -> gloss models, num_beams > 1",
    )
    p.add_argument(
        "--channel",
        metavar="RUN",
        help="re-rank the beam's hypotheses with this reverse-direction model (a text -> gloss model for a "
        "gloss -> text translator, and the other way round): log p(y|x) + W * log p(x|y) + B * |y|",
    )
    p.add_argument("--channel-weight", type=float, help="W of --channel (default 1.0; choose it on dev with --grid)")
    p.add_argument(
        "--lm",
        metavar="RUN",
        help="re-rank the beam's hypotheses with this language model of the output side too (a textlm run: "
        "`ray-slt train conf/train/textlm/...`): adds L * log p(y)",
    )
    p.add_argument("--lm-weight", type=float, help="L of --lm (default 1.0; choose it on dev with --grid)")
    p.add_argument(
        "--peer",
        metavar="RUN",
        action="append",
        help="re-rank with another model of the same direction too (repeatable): its beam adds candidates and "
        "E * its log p(y|x) joins the score (an n-best ensemble)",
    )
    p.add_argument("--peer-weight", type=float, help="E of --peer (default 1.0; choose it on dev with --grid)")
    p.add_argument("--length-bonus", type=float, help="B of --channel / --lm / --peer, per output token (default 0.0)")
    p.add_argument("--grid", action="append", metavar="OPTION=V1,V2,...",
                   help="choose decoding on this (dev) split: evaluate every combination of the values (e.g. "
                        "--grid num_beams=1,4 --grid length_penalty=0.8,1.0), keep the best on the protocol's "
                        "selection metric in CHECKPOINT/eval/decoding.json")  # fmt: skip
    p.add_argument("--decoding-from-dev", action="store_true",
                   help="decode with the options --grid chose on dev (for the test split)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lang", help="spoken language of the references for BLEU tokenization (default: the data's)")
    p.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=None,
                   help="score translations case-insensitively (default: yes for a translator trained on lower-cased "
                   "targets, sft.lowercase; metrics.json records the case)")  # fmt: skip
    p.add_argument("--semantic", action="store_true", help="also TSR and PGER (needs the embedder and HanTa)")
    p.add_argument("--embedder", help="sentence-transformers model id or directory for TSR")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--back-translator", metavar="RUN",
                   help="producers: a translator (run, checkpoint or model directory) that reads the productions; "
                        "adds back-translation BLEU/ROUGE against the sentences (bt_*)")  # fmt: skip


_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


def _grid(items: list[str]) -> dict[str, list]:
    from ray_slt.errors import RaySltError

    grid: dict[str, list] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise RaySltError(f"--grid {item!r}: expected OPTION=V1,V2 (e.g. num_beams=1,4)")
        parsed: list = []
        for v in values.split(","):
            if v.strip().lower() in _BOOLEANS:  # switches, e.g. --grid mbr=false,true
                parsed.append(_BOOLEANS[v.strip().lower()])
                continue
            try:
                parsed.append(int(v) if v.strip().lstrip("-").isdigit() else float(v))
            except ValueError:
                raise RaySltError(f"--grid {item!r}: {v!r} is not a number or true/false") from None
        grid[name.strip().replace("-", "_")] = parsed
    return grid


def _run_eval(args: argparse.Namespace) -> dict:
    from ray_slt.errors import RaySltError
    from ray_slt.eval.run import choose_decoding, decoding_from_dev, evaluate

    for name in ("num_beams", "max_new_tokens", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise RaySltError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    protocol_options = {"lang": args.lang, "semantic": args.semantic or None, "embedder": args.embedder,
                        "lowercase": args.lowercase, "back_translator": args.back_translator}  # fmt: skip
    options = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens,
               "length_penalty": args.length_penalty, "mbr": args.mbr, "channel": args.channel,
               "channel_weight": args.channel_weight, "length_bonus": args.length_bonus, "lm": args.lm,
               "lm_weight": args.lm_weight, "peer": args.peer, "peer_weight": args.peer_weight}  # fmt: skip
    if args.grid:
        if args.decoding_from_dev or args.out or args.protocol:
            raise RaySltError("--grid chooses decoding on its own: without --decoding-from-dev, --out or --protocol")
        return choose_decoding(args.checkpoint, _grid(args.grid), split=args.split, data=args.data,
                               protocol_options=protocol_options, batch_size=args.batch_size,
                               device=args.device, fixed=options)  # fmt: skip
    chosen = None
    if args.decoding_from_dev:
        chosen = decoding_from_dev(args.checkpoint)
        options = {**chosen["options"], **{k: v for k, v in options.items() if v is not None}}
    result = evaluate(
        args.checkpoint,
        split=args.split,
        data=args.data,
        out=args.out,
        protocol=args.protocol,
        protocol_options=protocol_options,
        predictor_options=options,
        batch_size=args.batch_size,
        device=args.device,
        extra=None if chosen is None else {"decoding_chosen_on": chosen},
    )
    return result


def _render_eval(r: dict) -> str:
    lines = [f"{r['split']}: {r['n_samples']} samples, checkpoint {r['checkpoint']} (model {r['model_id']}), "
             f"protocol {r['protocol']['name']}"]  # fmt: skip
    if "results" in r and "best" in r:  # --grid
        lines = [f"decoding on {r['split']} by {r['metric']} ({r['mode']}):"]
        lines += [f"  {o['options']}: {o[r['metric']]:.2f}" for o in r["results"]]
        lines.append(f"best: {r['best']} ({r['best_score']:.2f}); kept in {r['file']}")
        return "\n".join(lines)
    if r["protocol"]["name"] in ("translation", "gloss"):
        names = [("BLEU-1", "bleu1"), ("BLEU-2", "bleu2"), ("BLEU-3", "bleu3"), ("BLEU-4", "bleu4")]
        names += [("ROUGE-L", "rouge_l"), ("chrF", "chrf")]
        names += [(n, k) for n, k in (("TSR", "tsr"), ("PGER", "pger")) if k in r]
        lines += [f"{name:<8} {r[key]:7.2f}" for name, key in names]
        lines.append(f"BLEU signature: {r['bleu_signature']}")
    else:
        lines += [f"{k:<16} {v:9.4f}" for k, v in r.items() if isinstance(v, float)]
    lines.append(f"metrics: {r['metrics_file']}, predictions: {r['predictions']}")
    return "\n".join(lines)


cli.register("eval", "evaluate a saved model on a split: predictions + metrics.json", _configure_eval, _run_eval,
             _render_eval, description=EVAL_DESCRIPTION)  # fmt: skip
