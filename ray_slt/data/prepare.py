"""Stage ``prepare``: a corpus's official files -> a validated manifest (+ an error report, + curation).

``prepare(cfg)`` is the one public function; ``ray-slt prepare`` and ``jobs/prepare.py`` call it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from ray_slt import storage
from ray_slt.config import Schema, config_hash
from ray_slt.data import curation, manifest
from ray_slt.data.adapters import ADAPTERS, get_adapter
from ray_slt.data.adapters.base import ErrorReport
from ray_slt.errors import ConfigError, DataError


class RareSubset(Schema):
    """The rare-word-aware subset of the first paper's Appendix A (30k + 20k of iSign)."""

    rare: int = Field(30000, ge=0, description="samples drawn among those containing a rare word")
    rest: int = Field(20000, ge=0, description="samples drawn among all the others")
    threshold: int = Field(10, ge=1, description="a word is rare when it occurs fewer times than this")
    seed: int = 0


class Curation(Schema):
    clean: bool = False
    """Drop samples with empty/invalid text and samples whose shipped pose shows no person."""
    rare_subset: RareSubset | None = None


class PrepareConfig(Schema):
    kind: Literal["prepare"] = "prepare"
    dataset: str
    root: str
    """Directory (local or s3://) holding the corpus's official files."""
    out: str
    """Where to write the manifest (a .parquet path, local or s3://)."""
    splits: list[Literal["train", "dev", "test"]] = ["train", "dev", "test"]
    skip_bad: bool = False
    """Record bad rows in an error report and keep every good row, instead of stopping at the first."""
    require_media: bool = False
    """Treat rows whose video/pose file does not exist as bad rows."""
    options: dict[str, Any] = {}
    """Dataset-specific options (see each adapter's Options)."""
    curation: Curation = Curation()

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ADAPTERS:
            raise ValueError(f"unknown dataset {v!r}; known: {', '.join(sorted(ADAPTERS))}")
        return v

    @field_validator("out")
    @classmethod
    def _parquet(cls, v: str) -> str:
        if not v.endswith(".parquet"):
            raise ValueError(f"{v!r} must be a .parquet path")
        return v


def error_report_uri(out: str) -> str:
    return out[: -len(".parquet")] + ".errors.jsonl"


def _check_media(rows: list[dict], report: ErrorReport) -> list[dict]:
    """Keep rows whose media exist; others go through the report (one directory listing per folder)."""
    listings: dict[str, set[str]] = {}

    def present(uri: str) -> bool:
        parent = storage.parent(uri)
        if parent not in listings:
            try:
                listings[parent] = {storage.basename(u) for u in storage.listdir(parent)}
            except Exception:  # a missing folder means missing media; listing errors are reported per row
                listings[parent] = set()
        return storage.basename(uri) in listings[parent]

    kept = []
    for row in rows:
        missing = [u for u in (row["video_uri"], row["pose_uri"]) if u is not None and not present(u)]
        if row["video_uri"] is None and row["pose_uri"] is None:
            report.add(DataError("row has neither a video nor a pose", f"sample {row['sample_id']}"))
        elif missing:
            report.add(DataError(f"media not found: {missing[0]}", f"sample {row['sample_id']}"))
        else:
            kept.append(row)
    return kept


def prepare(cfg: PrepareConfig, progress: bool = True) -> dict:
    """Build and write the manifest described by ``cfg``. Returns a summary (counts, report paths)."""
    adapter = get_adapter(cfg.dataset)
    try:
        options = adapter.Options.model_validate(cfg.options)
    except ValidationError as e:
        problems = "; ".join(f"options.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{cfg.dataset}: {problems}") from None
    report = ErrorReport(skip_bad=cfg.skip_bad)
    # An absolute root: the manifest's media URIs must not depend on the directory prepare ran in (extraction
    # resolves relative URIs against the manifest's own folder).
    rows = adapter.read(storage.normalize(cfg.root), options, report, splits=tuple(cfg.splits))
    if cfg.require_media:
        rows = _check_media(rows, report)
    # duplicates are bad rows too: keep the first occurrence
    seen, unique = set(), []
    for row in rows:
        if row["sample_id"] in seen:
            report.add(DataError(f"duplicate sample_id {row['sample_id']!r}", cfg.root))
            continue
        seen.add(row["sample_id"])
        unique.append(row)
    table = manifest.to_table(unique)

    summary: dict[str, Any] = {"dataset": cfg.dataset, "manifest": cfg.out, "config_hash": config_hash(cfg)}
    if cfg.curation.clean:
        table, dropped = curation.clean(table, progress=progress)
        summary["cleaning_dropped"] = len(dropped)
        if dropped:
            uri = cfg.out[: -len(".parquet")] + ".dropped.jsonl"
            storage.write_text(uri, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dropped))
            summary["cleaning_report"] = uri
    if cfg.curation.rare_subset is not None:
        rs = cfg.curation.rare_subset
        table, sub = curation.rare_word_subset(table, rs.rare, rs.rest, rs.threshold, rs.seed)
        summary["rare_subset"] = sub
    if table.num_rows == 0:
        raise DataError(f"no samples left for splits {cfg.splits}", cfg.root)
    manifest.write_manifest(table, cfg.out)

    errors_uri = error_report_uri(cfg.out)
    if report.records:
        storage.write_text(errors_uri, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report.records))
        summary["error_report"] = errors_uri
    elif storage.exists(errors_uri):
        storage.remove(errors_uri)  # a stale report from an earlier run would describe other data
    splits = table.column("split").to_pylist()
    summary["samples"] = table.num_rows
    summary["splits"] = {s: splits.count(s) for s in manifest.SPLITS if s in splits}
    summary["bad_rows"] = len(report.records)
    return summary


def render(summary: dict) -> str:
    parts = ", ".join(f"{s} {n:,}" for s, n in summary["splits"].items())
    lines = [f"wrote {summary['manifest']}: {summary['samples']:,} samples ({parts})"]
    if summary.get("bad_rows"):
        lines.append(f"{summary['bad_rows']:,} bad rows recorded in {summary['error_report']}")
    if summary.get("cleaning_dropped"):
        lines.append(f"cleaning dropped {summary['cleaning_dropped']:,} samples ({summary['cleaning_report']})")
    if "rare_subset" in summary:
        r = summary["rare_subset"]
        lines.append(
            f"rare-word subset: {r['samples_after']:,} of {r['samples_before']:,} samples "
            f"({r['chosen_with_rare_word']:,} with a rare word), rare types kept "
            f"{r['rare_types_after']:,}/{r['rare_types_before']:,}"
        )
    return "\n".join(lines)


def default_out(dataset: str) -> str:
    return os.path.join("runs", dataset, "manifest.parquet")
