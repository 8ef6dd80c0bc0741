"""Corpus statistics per split: the first paper's Table 2 (frames) and Table 9 (vocabulary).

Definitions (stated because published numbers depend on them):

* ``frames_*``: over samples whose frame count is known (``num_frames``, else ``end_frame - start_frame``);
  ``frames_over_300`` counts samples with strictly more than 300 frames.
* ``tokens``/``types``: tokens of the ``text`` column by the stated tokenizer (``whitespace``: lower-case,
  split on whitespace, punctuation stays attached, the papers' convention; ``char``: characters, for Chinese).
* ``rare_type_pct``: % of types occurring fewer than 10 times; ``frequent_type_pct``: more than 100 times.
* ``gloss_tokens``/``gloss_types``: whitespace-separated glosses, case preserved, where glosses exist.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_slt import storage
from ray_slt.data.manifest import SPLITS
from ray_slt.data.text import get_tokenizer, tokenizer_name_for

RARE_BELOW, FREQUENT_ABOVE, LONG_FRAMES = 10, 100, 300


def frame_counts(table: pa.Table) -> list[int | None]:
    out = []
    for n, s, e in zip(
        table.column("num_frames").to_pylist(),
        table.column("start_frame").to_pylist(),
        table.column("end_frame").to_pylist(),
    ):
        out.append(n if n is not None else (e - s if s is not None and e is not None else None))
    return out


def split_stats(table: pa.Table, tokenizer: str) -> dict:
    tok = get_tokenizer(tokenizer)
    frames = [f for f in frame_counts(table) if f is not None]
    counts = Counter(w for text in table.column("text").to_pylist() for w in tok(text))
    types = len(counts)
    out = {
        "samples": table.num_rows,
        "frames_known": len(frames),
        "frames_mean": float(np.mean(frames)) if frames else None,
        "frames_max": int(max(frames)) if frames else None,
        "frames_over_300": sum(1 for f in frames if f > LONG_FRAMES) if frames else None,
        "tokens": int(sum(counts.values())),
        "types": types,
        "rare_type_pct": 100.0 * sum(1 for c in counts.values() if c < RARE_BELOW) / types if types else None,
        "frequent_type_pct": 100.0 * sum(1 for c in counts.values() if c > FREQUENT_ABOVE) / types if types else None,
    }
    glosses = [g for g in table.column("gloss").to_pylist() if g]
    if glosses:
        gcounts = Counter(g for line in glosses for g in line.split())
        out.update(gloss_tokens=int(sum(gcounts.values())), gloss_types=len(gcounts))
    return out


def corpus_stats(table: pa.Table, tokenizer: str | None = None) -> dict:
    """Statistics of every split present in a manifest (plus the dataset names and tokenizer used)."""
    langs = sorted(set(table.column("spoken_language").to_pylist()))
    name = tokenizer or tokenizer_name_for(langs[0] if len(langs) == 1 else None)
    splits = {}
    for split in SPLITS:
        part = table.filter(pc.equal(table.column("split"), split))
        if part.num_rows:
            splits[split] = split_stats(part, name)
    return {
        "datasets": sorted(set(table.column("dataset").to_pylist())),
        "tokenizer": name,
        "spoken_languages": langs,
        "splits": splits,
    }


def render(stats: dict) -> str:
    splits = list(stats["splits"])
    keys = [
        "samples",
        "frames_mean",
        "frames_max",
        "frames_over_300",
        "tokens",
        "types",
        "rare_type_pct",
        "frequent_type_pct",
        "gloss_tokens",
        "gloss_types",
    ]
    labels = {"rare_type_pct": "% types freq < 10", "frequent_type_pct": "% types freq > 100"}

    def fmt(v):
        if v is None:
            return "-"
        return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}"

    rows = [
        [labels.get(k, k)] + [fmt(stats["splits"][s].get(k)) for s in splits]
        for k in keys
        if any(k in stats["splits"][s] for s in splits)
    ]
    widths = [max(len(r[i]) for r in [["", *splits], *rows]) for i in range(len(splits) + 1)]
    lines = [
        f"{', '.join(stats['datasets'])} (tokenizer: {stats['tokenizer']})",
        "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(["", *splits], widths))),
    ]
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def write_plots(table: pa.Table, out_dir: str, tokenizer: str | None = None) -> list[str]:
    """PNG plots: frame-length histogram per split and rank-frequency of tokens per split."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    stats = corpus_stats(table, tokenizer)
    tok = get_tokenizer(stats["tokenizer"])
    written = []

    def save(fig, name):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        uri = storage.join(out_dir, name)
        storage.write_bytes(uri, buf.getvalue())
        written.append(uri)

    fig, ax = plt.subplots(figsize=(7, 4))
    plotted = False
    for split in stats["splits"]:
        part = table.filter(pc.equal(table.column("split"), split))
        frames = [f for f in frame_counts(part) if f is not None]
        if frames:
            ax.hist(frames, bins=40, alpha=0.5, label=f"{split} (n={len(frames)})")
            plotted = True
    if plotted:
        ax.axvline(LONG_FRAMES, color="k", ls="--", lw=1, label="300 frames")
        ax.set_xlabel("frames per sample")
        ax.set_ylabel("samples")
        ax.set_title("Sample lengths")
        ax.legend()
        save(fig, "frame_lengths.png")
    else:
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for split in stats["splits"]:
        part = table.filter(pc.equal(table.column("split"), split))
        counts = sorted(Counter(w for t in part.column("text").to_pylist() for w in tok(t)).values(), reverse=True)
        ax.loglog(np.arange(1, len(counts) + 1), counts, label=f"{split} ({len(counts)} types)")
    ax.axhline(RARE_BELOW, color="gray", ls=":", lw=1, label="frequency 10")
    ax.axhline(FREQUENT_ABOVE, color="gray", ls="--", lw=1, label="frequency 100")
    ax.set_xlabel("type rank")
    ax.set_ylabel("frequency")
    ax.set_title(f"Token frequencies ({stats['tokenizer']} tokens)")
    ax.legend()
    save(fig, "token_frequencies.png")
    return written
