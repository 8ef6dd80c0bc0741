"""Vocabulary-bias report: do predictions over-use the training set's frequent words?

The first paper's Appendix E (Tables 15-16) lists the most frequent noun phrases of the predictions with their
frequency in the predictions, the test references and the training references, and the most frequent ones of
the test references likewise. :func:`vocabulary_bias` computes both tables for two kinds of unit:

- ``nouns``: lowercased words a part-of-speech tagger marks NOUN, PROPN or PRON (the paper's tables list
  pronouns such as "es", "sich", "uns" among their "noun phrases"); the tagger is pluggable and defaults to
  HanTa (see :mod:`ray_slt.eval.semantic`), so this unit needs a tagger for languages HanTa lacks;
- ``words``: every token as ROUGE-L sees it (lowercased letter/digit runs, CJK one character per token).

Counts are occurrences; because the training set is much larger, each row also gives the rate per 1000
word tokens of that set. :func:`write_report` writes ``vocab_bias.json``, ``vocab_bias.md`` and
``vocab_bias.png`` (rates of the top units, matplotlib Agg) through :mod:`ray_slt.storage`.
"""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from collections.abc import Sequence

from ray_slt import storage
from ray_slt.errors import ConfigError, DataError
from ray_slt.eval.metrics import rouge_tokens
from ray_slt.eval.semantic import HanTaTagger, Tagger

NOUN_UPOS = frozenset({"NOUN", "PROPN", "PRON"})
SETS = ("predicted", "test", "train")


def _rows(order: Sequence[tuple[str, int]], counts: dict, totals: dict) -> list[dict]:
    rows = []
    for term, _ in order:
        row: dict = {"term": term}
        for name in SETS:
            row[name] = counts[name][term]
        for name in SETS:
            row[f"{name}_per_1k"] = round(1000.0 * counts[name][term] / max(totals[name], 1), 3)
        rows.append(row)
    return rows


def _top(counter: Counter, k: int) -> list[tuple[str, int]]:
    # Ties broken alphabetically so the report is deterministic.
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def vocabulary_bias(
    predictions: Sequence[str],
    test_refs: Sequence[str],
    train_refs: Sequence[str],
    lang: str | None = None,
    top_k: int = 10,
    tagger: Tagger | None = None,
) -> dict:
    """The report as a JSON-serialisable dict (see the module docstring)."""
    sets = {"predicted": list(predictions), "test": list(test_refs), "train": list(train_refs)}
    for name, sents in sets.items():
        if not sents:
            raise DataError(f"vocabulary bias: the {name} set is empty")
    if len(sets["predicted"]) != len(sets["test"]):
        raise DataError(
            f"vocabulary bias: {len(sets['predicted'])} predictions but {len(sets['test'])} test references"
        )
    if top_k < 1:
        raise ValueError("top_k must be at least 1")

    word_counts = {name: Counter(t for s in sents for t in rouge_tokens(s)) for name, sents in sets.items()}
    totals = {name: sum(c.values()) for name, c in word_counts.items()}
    report: dict = {
        "lang": lang,
        "top_k": top_k,
        "totals": {
            name: {"sentences": len(sets[name]), "word_tokens": totals[name], "word_types": len(word_counts[name])}
            for name in SETS
        },
        "units": {},
    }

    tagger_name = None
    if tagger is None and lang:
        try:
            tagger = HanTaTagger(lang)
        except ConfigError as e:  # no default tagger for this language: report words only, say why
            report["nouns_unavailable"] = str(e)
    elif tagger is None:
        report["nouns_unavailable"] = "no language given for the default tagger"
    if tagger is not None:
        tagger_name = f"HanTa ({tagger.lang})" if isinstance(tagger, HanTaTagger) else type(tagger).__name__
        noun_counts = {
            name: Counter(w.lower() for s in sents for w, tag in tagger(s) if tag in NOUN_UPOS)
            for name, sents in sets.items()
        }
        report["units"]["nouns"] = {
            "top_predicted": _rows(_top(noun_counts["predicted"], top_k), noun_counts, totals),
            "top_test": _rows(_top(noun_counts["test"], top_k), noun_counts, totals),
        }
    report["tagger"] = tagger_name
    report["units"]["words"] = {
        "top_predicted": _rows(_top(word_counts["predicted"], top_k), word_counts, totals),
        "top_test": _rows(_top(word_counts["test"], top_k), word_counts, totals),
    }
    return report


_TITLES = {
    "top_predicted": "Top {k} {unit} of the predictions, with their frequencies in the predicted, test and "
    "training sets (the paper's Table 15)",
    "top_test": "Top {k} {unit} of the test references, with their frequencies in the predicted, test and "
    "training sets (the paper's Table 16)",
}
_UNIT_NAMES = {"nouns": "nouns/pronouns", "words": "words"}


def to_markdown(report: dict) -> str:
    lines = ["# Vocabulary bias", ""]
    t = report["totals"]
    lines.append(
        "Sentences / word tokens: predicted "
        f"{t['predicted']['sentences']} / {t['predicted']['word_tokens']}, test "
        f"{t['test']['sentences']} / {t['test']['word_tokens']}, train "
        f"{t['train']['sentences']} / {t['train']['word_tokens']}. Rates are per 1000 word tokens of each set."
    )
    if report.get("tagger"):
        lines.append(f"Nouns tagged by {report['tagger']}.")
    if report.get("nouns_unavailable"):
        lines.append(f"Nouns not reported: {report['nouns_unavailable']}")
    for unit, tables in report["units"].items():
        for which, rows in tables.items():
            lines += ["", "## " + _TITLES[which].format(k=report["top_k"], unit=_UNIT_NAMES[unit]), ""]
            lines.append("| term | predicted | test | train | predicted/1k | test/1k | train/1k |")
            lines.append("|---|---:|---:|---:|---:|---:|---:|")
            for r in rows:
                term = r["term"].replace("|", "\\|")
                lines.append(
                    f"| {term} | {r['predicted']} | {r['test']} | {r['train']} | {r['predicted_per_1k']:.2f} "
                    f"| {r['test_per_1k']:.2f} | {r['train_per_1k']:.2f} |"
                )
    return "\n".join(lines) + "\n"


def to_png(report: dict) -> bytes:
    """Grouped bars of per-1k rates for the top units (nouns when tagged, else words)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    unit = "nouns" if "nouns" in report["units"] else "words"
    tables = report["units"][unit]
    k = report["top_k"]
    fig = Figure(figsize=(12, max(3.0, 0.45 * k + 1.5)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colors = {"predicted": "tab:red", "test": "tab:blue", "train": "tab:gray"}
    for ax, which in zip(axes, ("top_predicted", "top_test")):
        rows = tables[which]
        height = 0.27
        for j, name in enumerate(SETS):
            ys = [i + (j - 1) * height for i in range(len(rows))]
            ax.barh(ys, [r[f"{name}_per_1k"] for r in rows], height=height, color=colors[name], label=name)
        ax.set_yticks(range(len(rows)), [r["term"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel("occurrences per 1000 word tokens")
        ax.set_title(f"top {k} {_UNIT_NAMES[unit]}: {'predictions' if which == 'top_predicted' else 'test set'}")
        ax.legend(loc="lower right")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # Without a CJK font installed, Chinese labels render as boxes; the numbers are in the JSON/markdown.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_report(report: dict, out_dir: str) -> dict[str, str]:
    """Write the report as JSON, markdown and PNG under ``out_dir`` (local or s3://); returns the paths."""
    paths = {
        "json": storage.join(out_dir, "vocab_bias.json"),
        "markdown": storage.join(out_dir, "vocab_bias.md"),
        "png": storage.join(out_dir, "vocab_bias.png"),
    }
    storage.write_text(paths["json"], json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    storage.write_text(paths["markdown"], to_markdown(report))
    storage.write_bytes(paths["png"], to_png(report))
    return paths
