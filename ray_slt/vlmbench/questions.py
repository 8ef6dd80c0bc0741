"""Question files: one benchmark, versioned, seeded and content-hashed.

A question file is JSON Lines: a header, then one question per line::

    {"format": "ray_slt.vlmbench", "version": 1, "benchmark": "lexsign-bench", "protocol": "mcq", "seed": 0,
     "params": {...}, "questions": 2400, "content_hash": "sha256:...", "candidates": [...]}
    {"qid": "lexsign/wlasl-00335/subunit", "protocol": "mcq", "sample_id": "wlasl-00335", "video": {...}, ...}

``content_hash`` is the SHA-256 of the questions in file order, each as canonical JSON (sorted keys, no spaces)
with the video's location reduced to its file name, and of the header's ``candidates``: two teams with the corpus
in different places get the same hash exactly when they ask the same questions about the same clips (same clip
files, spans, options, answers). :func:`read_questions` recomputes it and refuses a file whose questions were
edited after it was written.

A question has ``qid`` (unique), ``protocol`` (``open``, ``binary`` or ``mcq``), ``sample_id``, ``video``
(``video_uri``, ``start_frame``, ``end_frame``, ``fps``, ``bbox``: the manifest row's media reference), ``gold``
(the gloss), and per protocol: binary ``label`` (does the video show ``gold``?) and ``description``; mcq
``level`` (``subunit``/``gloss``), ``options`` (4) and ``answer`` (a letter), ``iconicity_type``, ``distractors``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ray_slt import storage
from ray_slt.errors import DataError

FORMAT = "ray_slt.vlmbench"
VERSION = 1
VIDEO_KEYS = ("video_uri", "start_frame", "end_frame", "fps", "bbox")


def video_ref(row: Mapping[str, Any]) -> dict[str, Any]:
    """The media reference of a manifest row, as questions carry it."""
    out = {k: row.get(k) for k in VIDEO_KEYS}
    if out["bbox"] is not None:
        out["bbox"] = [int(v) for v in out["bbox"]]
    for k in ("start_frame", "end_frame"):
        out[k] = None if out[k] is None else int(out[k])
    out["fps"] = None if out["fps"] is None else float(out["fps"])
    return out


def _hashable(q: Mapping[str, Any]) -> dict[str, Any]:
    q = dict(q)
    if isinstance(q.get("video"), Mapping):
        v = dict(q["video"])
        v["video_uri"] = os.path.basename(str(v.get("video_uri") or "").rstrip("/"))
        q["video"] = v
    return q


def content_hash(questions: Iterable[Mapping[str, Any]], candidates: Sequence[str] = ()) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(list(candidates), ensure_ascii=False).encode())
    for q in questions:
        h.update(json.dumps(_hashable(q), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def write_questions(uri: str, header: Mapping[str, Any], questions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Write a question file; returns its header (with ``questions`` and ``content_hash`` filled in)."""
    ids = [q["qid"] for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"question id {dup!r} twice", uri)
    head = {"format": FORMAT, "version": VERSION, **header}
    head["questions"] = len(questions)
    head["content_hash"] = content_hash(questions, head.get("candidates") or ())
    lines = [json.dumps(head, ensure_ascii=False)]
    lines += [json.dumps(q, ensure_ascii=False, sort_keys=True) for q in questions]
    storage.write_text(uri, "\n".join(lines) + "\n")
    return head


def read_questions(uri: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(header, questions)`` of a question file; a bad line, another format or version, or questions that no
    longer match the header's hash are a :class:`DataError` naming the file (and line)."""
    lines = storage.read_text(uri).splitlines()
    if not lines:
        raise DataError("empty question file", uri)
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"not JSON ({e.msg})", uri, n) from None
    head, questions = records[0], records[1:]
    if head.get("format") != FORMAT:
        raise DataError(f"not a {FORMAT} question file (format {head.get('format')!r})", uri, 1)
    if head.get("version") != VERSION:
        raise DataError(f"question file version {head.get('version')!r}; this release reads {VERSION}", uri, 1)
    got = content_hash(questions, head.get("candidates") or ())
    if got != head.get("content_hash"):
        raise DataError(f"the questions do not match the header's content_hash (edited after writing?): {got}", uri)
    return head, questions
