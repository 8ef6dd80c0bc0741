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
