"""Scores of a benchmark run from its question file and ``answers.jsonl``: ``metrics.json``, ``summary.md`` and
``scores.png`` in the run's directory.

Per prompt variant and condition:

- **open** (zero-shot recognition): exact and synonym-aware top-1 (%), and their lenient variants reported apart,
  each over all questions (an error or refusal counts as wrong; with a bootstrap 95% interval) and over the
  answered ones (the authors' denominator); errors and refusals counted;
- **binary**: accuracy, precision, recall and F1 (%) with the always-YES baseline beside them;
- **mcq** (LexSign-Bench): accuracy per level (subunit ``S``, gloss ``G``) and iconicity type, ``AVG(S)`` and
  ``AVG(G)`` as the unweighted mean over the types, ``AVG = (AVG(S) + AVG(G)) / 2`` (the paper's Table 16), with
  bootstrap 95% intervals (questions resampled within each level and type); and, when the run has several prompt
  variants, their mean (the paper's recommended score).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ray_slt import storage
from ray_slt.vlmbench.config import BenchConfig
from ray_slt.vlmbench.lexsign import ICONICITY_TYPES
from ray_slt.vlmbench.questions import read_questions
from ray_slt.vlmbench.runner import ANSWERS, build_tasks, read_answers
from ray_slt.vlmbench.scoring import (
    accuracy_block,
    binary_scores,
    exact_match,
    lenient_match,
    mean_over,
    parse_letter,
    parse_yes_no,
    synonym_match,
)


def _open(rows: list[tuple[dict, dict | None]], synonyms, seed: int) -> dict[str, Any]:
    answered = [a is not None and a.get("error") is None and bool(a.get("reply", "").strip()) for _, a in rows]
    replies = [a.get("reply") if ok else None for ok, (_, a) in zip(answered, rows)]
    golds = [q["gold"] for q, _ in rows]
    out: dict[str, Any] = {
        "errors": sum(a is None or a.get("error") is not None for _, a in rows),
        "refusals": sum(a is not None and a.get("error") is None and not a.get("reply", "").strip() for _, a in rows),
    }
    out["exact"] = accuracy_block([exact_match(r, g) for r, g in zip(replies, golds)], answered, seed)
    out["synonym"] = accuracy_block([synonym_match(r, g, synonyms) for r, g in zip(replies, golds)], answered, seed)
    out["lenient_exact"] = accuracy_block([lenient_match(r, g) for r, g in zip(replies, golds)], answered, seed)
    out["lenient_synonym"] = accuracy_block(
        [lenient_match(r, g, synonyms) for r, g in zip(replies, golds)], answered, seed
    )
    return out


def _binary(rows: list[tuple[dict, dict | None]]) -> dict[str, Any]:
    verdicts = [parse_yes_no(a.get("reply")) if a and a.get("error") is None else None for _, a in rows]
    out = binary_scores(verdicts, [bool(q["label"]) for q, _ in rows])
    out["errors"] = sum(a is None or a.get("error") is not None for _, a in rows)
    out["refusals"] -= out["errors"]  # unparsable replies only; an error has no reply to parse
    return out


def _describe(rows: list[tuple[dict, dict | None]]) -> dict[str, Any]:
    good = [(q, a) for q, a in rows if a is not None and a.get("error") is None and (a.get("reply") or "").strip()]
    words = [len(a["reply"].split()) for _, a in good]
    errors = sum(a is None or a.get("error") is not None for _, a in rows)
    return {"n": len(rows), "described": len(good), "errors": errors, "glosses": len({q["gold"] for q, _ in good}),
            "mean_words": round(float(np.mean(words)), 1) if words else 0.0}  # fmt: skip


def _mcq_avg(groups: Mapping[tuple[str, str], np.ndarray]) -> dict[str, float]:
    levels = {}
    for level in ("subunit", "gloss"):
        per_type = {t: 100.0 * v.mean() for (lv, t), v in groups.items() if lv == level and v.size}
        levels[level] = mean_over(per_type)
    both = [v for v in levels.values() if not math.isnan(v)]
    return {"AVG(S)": levels["subunit"], "AVG(G)": levels["gloss"],
            "AVG": round(sum(both) / len(both), 2) if both else math.nan}  # fmt: skip


def _mcq(rows: list[tuple[dict, dict | None]], n_boot: int, seed: int) -> dict[str, Any]:
    correct, groups_l = [], {}
    refusals = errors = 0
    for q, a in rows:
        if a is None or a.get("error") is not None:
            errors += 1
            letter = None
        else:
            letter = parse_letter(a.get("reply"), len(q["options"]))
            refusals += letter is None
        ok = letter == q["answer"]
        correct.append(ok)
        groups_l.setdefault((q["level"], q.get("iconicity_type") or "?"), []).append(ok)
    groups = {k: np.asarray(v, dtype=float) for k, v in groups_l.items()}
    out: dict[str, Any] = {"n": len(rows), "errors": errors, "refusals": refusals}
    out.update(_mcq_avg(groups))
    for level, short in (("subunit", "S"), ("gloss", "G")):
        for t in ICONICITY_TYPES:
            v = groups.get((level, t))
            if v is not None and v.size:
                out[f"{short}:{t}"] = round(100.0 * v.mean(), 2)
    rng = np.random.default_rng(seed)
    draws = {k: [] for k in ("AVG", "AVG(S)", "AVG(G)")}
    for _ in range(n_boot):
        res = {k: v[rng.integers(0, v.size, v.size)] for k, v in groups.items() if v.size}
        for k, val in _mcq_avg(res).items():
            draws[k].append(val)
    for k, vals in draws.items():
        vals = [v for v in vals if not math.isnan(v)]
        if vals:
            lo, hi = np.quantile(vals, [0.025, 0.975])
            out[f"{k} ci95"] = [round(float(lo), 2), round(float(hi), 2)]
    out["letters_answered"] = {x: sum(1 for q, a in rows if a and (a.get("reply") or "").strip()[:1] == x)
                               for x in "ABCD"}  # fmt: skip
    return out


def score_run(cfg: BenchConfig) -> dict[str, Any]:
    """Scores of every variant x condition of the run (answers missing from the cache count as errors)."""
    header, questions = read_questions(cfg.questions)
    by_id = {q["qid"]: q for q in questions}
    tasks = build_tasks(cfg, header, questions)
    answers = read_answers(storage.join(cfg.out, ANSWERS))
    protocol = header["protocol"]
    synonyms = None
    if protocol == "open":
        from ray_slt.vlmbench.wordnet import WordNet

        synonyms = WordNet(cfg.wordnet).synonyms
    cells: dict[tuple[str, str], list] = {}
    for t in tasks:
        cells.setdefault((t["variant"], t["condition"]), []).append((by_id[t["qid"]], answers.get(t["key"])))
    results = {}
    for (variant, condition), rows in cells.items():
        if protocol == "open":
            res = _open(rows, synonyms, cfg.seed)
        elif protocol == "binary":
            res = _binary(rows)
        elif protocol == "describe":
            res = _describe(rows)
        else:
            res = _mcq(rows, cfg.bootstrap, cfg.seed)
        results[f"{variant}|{condition}"] = res
    out: dict[str, Any] = {
        "benchmark": header["benchmark"], "protocol": protocol, "content_hash": header["content_hash"],
        "model": cfg.model.name(), "frames": cfg.frames, "answer_by": cfg.answer_by,
        "questions": len(tasks) // max(1, len(cells)), "results": results,
    }  # fmt: skip
    if protocol == "mcq":
        for condition in cfg.conditions:
            avgs = [r["AVG"] for k, r in results.items() if k.endswith("|" + condition) and not math.isnan(r["AVG"])]
            if len(avgs) > 1:
                out.setdefault("mean_over_variants", {})[condition] = round(sum(avgs) / len(avgs), 2)
    return out


def _cell(b: Mapping[str, Any]) -> str:
    return f"{b['accuracy']:.2f} [{b['ci95'][0]:.1f}, {b['ci95'][1]:.1f}] / {b['accuracy_answered']:.2f}"


def summary_table(metrics: Mapping[str, Any]) -> str:
    """A Markdown table of the headline numbers per variant and condition."""
    p = metrics["protocol"]
    lines = [f"{metrics['benchmark']} ({metrics['content_hash'][:19]}...), model {metrics['model']}, frames "
             f"{metrics['frames']}, {metrics['questions']} questions", ""]  # fmt: skip
    if p == "open":
        lines += ["| variant | condition | exact | synonym | lenient exact | lenient synonym | answered | errors |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for k, r in metrics["results"].items():
            v, c = k.split("|")
            cells = " | ".join(_cell(r[m]) for m in ("exact", "synonym", "lenient_exact", "lenient_synonym"))
            lines.append(f"| {v} | {c} | {cells} | {r['exact']['answered']}/{r['exact']['n']} | {r['errors']} |")
        lines += ["", "Accuracy (%) over all questions [bootstrap 95% CI] / over answered questions."]
    elif p == "binary":
        lines += ["| variant | condition | accuracy | precision | recall | F1 | accuracy (answered) | always-YES F1 | "
                  "refusals | errors |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for k, r in metrics["results"].items():
            v, c = k.split("|")
            nums = " | ".join(f"{r[m]:.2f}" for m in ("accuracy", "precision", "recall", "f1"))
            lines.append(f"| {v} | {c} | {nums} | {r['accuracy_answered']:.2f} | {r['always_yes']['f1']:.2f} | "
                         f"{r['refusals']} | {r['errors']} |")  # fmt: skip
    elif p == "describe":
        lines += [
            "| variant | condition | videos described | glosses | mean words | errors |",
            "|---|---|---|---|---|---|",
        ]
        for k, r in metrics["results"].items():
            v, c = k.split("|")
            lines.append(
                f"| {v} | {c} | {r['described']}/{r['n']} | {r['glosses']} | {r['mean_words']} | {r['errors']} |"
            )
    else:
        cols = [f"{s}:{t}" for s in "SG" for t in ICONICITY_TYPES]
        lines += ["| variant | condition | AVG | AVG(S) | AVG(G) | " + " | ".join(cols) + " | refusals | errors |",
                  "|---|---|---|---|---|" + "---|" * len(cols) + "---|---|"]  # fmt: skip
        for k, r in metrics["results"].items():
            v, c = k.split("|")
            ci = r.get("AVG ci95", [math.nan, math.nan])
            vals = " | ".join(f"{r[c_]:.1f}" if c_ in r else "-" for c_ in cols)
            lines.append(f"| {v} | {c} | {r['AVG']:.2f} [{ci[0]:.1f}, {ci[1]:.1f}] | {r['AVG(S)']:.2f} | "
                         f"{r['AVG(G)']:.2f} | {vals} | {r['refusals']} | {r['errors']} |")  # fmt: skip
        means = metrics.get("mean_over_variants") or {}
        if means:
            lines.append("\nMean AVG over the prompt variants: " + ", ".join(f"{c} {v:.2f}" for c, v in means.items()))
    return "\n".join(lines) + "\n"


def plot(metrics: Mapping[str, Any]) -> bytes:
    """A bar chart of the headline score per variant and condition, with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, vals, los, his = [], [], [], []
    for k, r in metrics["results"].items():
        if metrics["protocol"] == "open":
            v, ci = r["synonym"]["accuracy"], r["synonym"]["ci95"]
        elif metrics["protocol"] == "describe":
            v = 100.0 * r["described"] / max(1, r["n"])
            ci = [v, v]
        elif metrics["protocol"] == "binary":
            v, ci = r["f1"], [r["f1"], r["f1"]]
        else:
            v, ci = r["AVG"], r.get("AVG ci95", [r["AVG"], r["AVG"]])
        labels.append(k.replace("|", "\n"))
        vals.append(v)
        los.append(max(0.0, v - ci[0]))
        his.append(max(0.0, ci[1] - v))
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(labels)), 3.2))
    ax.bar(range(len(vals)), vals, yerr=[los, his], capsize=3, color="#4c72b0")
    if metrics["protocol"] == "mcq":
        ax.axhline(25, ls="--", c="gray", lw=1, label="chance (25%)")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(range(len(vals)), labels, fontsize=8)
    headline = {"open": "synonym top-1 (%)", "binary": "F1 (%)", "mcq": "AVG (%)", "describe": "described (%)"}[
        metrics["protocol"]
    ]
    ax.set_ylabel(headline)
    ax.set_ylim(0, 100)
    ax.set_title(f"{metrics['benchmark']}: {metrics['model']}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(cfg: BenchConfig, metrics: Mapping[str, Any]) -> dict[str, str]:
    files = {"metrics": storage.join(cfg.out, "metrics.json"), "summary": storage.join(cfg.out, "summary.md"),
             "plot": storage.join(cfg.out, "scores.png")}  # fmt: skip
    storage.write_text(files["metrics"], json.dumps(metrics, indent=1, default=float))
    storage.write_text(files["summary"], summary_table(metrics))
    storage.write_bytes(files["plot"], plot(metrics))
    return files


def headline(metrics: Mapping[str, Any]) -> dict[str, float]:
    """One number per variant|condition: synonym top-1, F1 or AVG."""
    key = {"open": lambda r: r["synonym"]["accuracy"], "binary": lambda r: r["f1"], "mcq": lambda r: r["AVG"],
           "describe": lambda r: r["described"]}  # fmt: skip
    return {k: key[metrics["protocol"]](r) for k, r in metrics["results"].items()}
