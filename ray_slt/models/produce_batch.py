"""Producing many sentences at once on Ray Data: ``ray-slt produce MODEL --sentences FILE --out DIR`` (and
``jobs/produce.py`` on a cluster).

The input is a text file with one sentence (or gloss sequence, for a model that reads glosses) per line, or a
tab-separated table with a header holding ``text`` (or ``gloss``) and optionally ``id``, ``sign_language``,
``spoken_language``. Each line becomes ``{out}/poses/{id}.pose`` (ids: the table's, else the line number) and one
record of ``{out}/index.jsonl`` (id, input, glosses written, frames, fps, sign language, the ``.pose`` path, the
model id), or one record of ``{out}/errors.jsonl`` (id, reason) when the model cannot produce it (an unknown sign
language, no gloss it knows); a bad line never stops the others. Production runs in Ray Data actors, one model
each (``workers``); a rerun skips the ids already in the index, so an interrupted run resumes.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

from ray_slt import storage
from ray_slt.errors import DataError, RaySltError

INDEX, ERRORS = "index.jsonl", "errors.jsonl"


def read_inputs(uri: str, field: str) -> list[dict[str, str]]:
    """The items of a sentences file (see the module docstring); ``field``: what the model reads."""
    text = storage.decode_text(storage.read_bytes(uri), uri)
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataError("no sentence in the file", uri)
    header = lines[0].split("\t")
    if field in header or "text" in header or "gloss" in header:
        column = field if field in header else ("text" if "text" in header else "gloss")
        items = []
        for n, row in enumerate(csv.DictReader(io.StringIO(text), delimiter="\t"), start=2):
            value = (row.get(column) or "").strip()
            if not value:
                raise DataError(f"empty {column!r}", uri, n)
            item = {"id": (row.get("id") or f"{n - 1:06d}").strip(), field: value}
            item.update({k: row[k].strip() for k in ("sign_language", "spoken_language") if row.get(k)})
            items.append(item)
    else:
        items = [{"id": f"{n:06d}", field: line.strip()} for n, line in enumerate(lines, start=1) if line.strip()]
    ids = [i["id"] for i in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"id {dup!r} appears twice", uri)
    return items


class ProductionWorker:
    """A Ray Data actor: loads the model once, produces a batch of items, writes their ``.pose`` files."""

    def __init__(self, model: str, out: str, torch_threads: int = 1):
        import torch

        from ray_slt.models.registry import load_predictor

        torch.set_num_threads(torch_threads)
        self.predictor = load_predictor(model)
        self.out = out

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        records: list[dict[str, Any]] = []
        for row in rows:  # one at a time: a bad item costs only itself
            sample = {k: v for k, v in row.items() if isinstance(v, str) and v}
            try:
                (out,) = self.predictor.predict([{**sample, "sample_id": row["id"]}])
            except RaySltError as e:
                records.append({"id": row["id"], "ok": False, "reason": str(e)})
                continue
            uri = storage.join(self.out, "poses", f"{storage.safe_name(row['id'])}.pose")
            storage.write_bytes(uri, base64.b64decode(out["pose_b64"]))
            records.append({"id": row["id"], "ok": True, "num_frames": out["num_frames"], "fps": out["fps"],
                            "gloss": out.get("gloss"), "sign_language": out.get("sign_language"), "pose": uri,
                            "model_id": self.predictor.model_id, "missing": out.get("missing")})  # fmt: skip
        return {"record": [json.dumps(r, ensure_ascii=False) for r in records]}


def _done(out: str) -> set[str]:
    uri = storage.join(out, INDEX)
    if not storage.exists(uri):
        return set()
    return {json.loads(line)["id"] for line in storage.read_text(uri).splitlines() if line.strip()}


def produce_batch(model: str, sentences: str, out: str, workers: int = 1, batch_size: int = 8,
                  progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Produce every item of ``sentences`` with ``model`` (see the module docstring); returns the counts."""
    import ray

    from ray_slt.models.registry import predictor_class, resolve

    ref = resolve(model)
    cls = predictor_class(ref.kind)
    if cls.predicts != "pose":
        raise DataError(f"{model}: a {ref.kind} model does not produce poses")
    field = cls.requirements(ref)["inputs"]
    items = read_inputs(sentences, field)
    done = _done(out)
    todo = [i for i in items if i["id"] not in done]
    counts = {"items": len(items), "skipped": len(items) - len(todo), "produced": 0, "errors": 0}
    if todo:
        if not ray.is_initialized():
            import os

            # a Ray job (RAY_ADDRESS set) joins its cluster; otherwise a local Ray without a dashboard
            local = {} if os.environ.get("RAY_ADDRESS") else {"include_dashboard": False}
            ray.init(ignore_reinit_error=True, log_to_driver=False, **local)
        ray.data.DataContext.get_current().enable_progress_bars = False
        keys = sorted({k for i in todo for k in i})
        table = [{k: i.get(k, "") for k in keys} for i in todo]
        blocks = max(1, min(len(table), workers * 4))  # enough blocks for every actor to get work
        ds = ray.data.from_items(table, override_num_blocks=blocks).map_batches(
            ProductionWorker, fn_constructor_kwargs={"model": model, "out": out}, batch_size=batch_size,
            concurrency=workers, batch_format="numpy",
        )  # fmt: skip
        index, errors = [], []
        for row in _rows(ds, len(todo), progress):
            record = json.loads(row)
            if record.pop("ok"):
                index.append(record)
            else:
                errors.append(record)
        _append(storage.join(out, INDEX), index)
        _append(storage.join(out, ERRORS), errors)
        counts.update(produced=len(index), errors=len(errors))
    return {**counts, "out": storage.normalize(out), "index": storage.join(out, INDEX)}


def _rows(ds, total: int, progress: bool) -> Iterator[str]:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="producing", unit="sentence")
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for r in batch["record"]:
            if bar:
                bar.update(1)
            yield str(r)
    if bar:
        bar.close()


def _append(uri: str, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    before = storage.read_text(uri) if storage.exists(uri) else ""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sorted(records, key=lambda r: r["id"]))
    storage.write_text(uri, before + lines)
