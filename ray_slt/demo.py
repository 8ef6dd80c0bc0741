"""`ray-slt demo` (``make demo``): the embedded path end to end on a laptop, narrated step by step.

With no arguments, on a local Ray (every output under ``--out``, default ``demo_out/``):

1. generates the SYNTHETIC corpus (:mod:`ray_slt.data.synthetic`: made-up signs composed into sentences with
   English translations, shipped as ``.pose`` files; not a real sign language) and its manifest;
2. prints the corpus statistics;
3. extracts the 77-point keypoints into a feature store (``ray-slt extract``; the corpus ships poses);
4. trains a tiny translator (``ray-slt train conf/train/synthetic_tiny.yaml``) for a few minutes;
5. evaluates it and the same model untrained on the dev split (``ray-slt eval``): dev BLEU-4, trained vs untrained;
6. recognises signs never seen in training from their descriptions: generates the SYNTHETIC isolated signs (signs
   composed from handshape, orientation, location, movement and handedness, each with a dictionary-style
   description), extracts them, trains HALI (``conf/train/recognition/hali_synthetic_tiny.yaml``) on the seen
   signs and scores zero-shot top-1/top-5 on the test-unseen ones (``ray-slt eval --protocol zsl``);
7. produces signing from text: a tiny text -> pose producer (``conf/train/production/synthetic_tiny.yaml`` with
   ``produce.input=text``, SignLLM-style: Progressive-Transformers decoder, Gaussian noise, the counter that stops
   it) trained on the same poses, its dev DTW-MJE against the untrained start, and the held-out test sentence
   produced as a ``.pose`` file and an animated GIF (under ``{out}/production``);
8. serves the three models in one application (``ray-slt serve``, 127.0.0.1), translates a held-out test sample
   over HTTP (its ``.pose`` uploaded to ``POST /translate``), recognises an unseen sign (``POST /recognize`` with
   the candidate signs' descriptions in the request) and produces the held-out sentence (``POST /produce``);
9. stops the server and Ray, and prints a summary.

``--data DIR`` runs the same on a real corpus directory of videos with a ``labels.csv`` (columns ``file,text``
and optionally ``split`` (train/dev/test), ``signer``, ``lang``; ``file`` relative to DIR). Without ``split`` every
tenth clip goes to dev and the next to test. Pose extraction runs MediaPipe Holistic on the videos, and the
held-out test video itself is uploaded to the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray_slt import storage
from ray_slt.cli import register

TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "train" / "synthetic_tiny.yaml"
HALI_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "train" / "recognition" / "hali_synthetic_tiny.yaml"
PRODUCE_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "train" / "production" / "synthetic_tiny.yaml"
# the isolated signs of the recognition step: corpus options and the zero-shot class partition, per demo size
ISOLATED = {
    "default": ({"classes": 60, "train": 6, "dev": 2, "test": 2}, {"seen": 36, "val_unseen": 8, "test_unseen": 16}),
    "small": ({"classes": 30, "train": 4, "dev": 2, "test": 2}, {"seen": 18, "val_unseen": 4, "test_unseen": 8}),
    "tiny": ({"classes": 16, "train": 2, "dev": 1, "test": 1}, {"seen": 8, "val_unseen": 4, "test_unseen": 4}),
}
SIZES = {
    "default": {"train": 600, "dev": 60, "test": 60},
    "small": {"train": 120, "dev": 20, "test": 20},
    "tiny": {"train": 32, "dev": 8, "test": 8},
}


class Narrator:
    """Prints numbered steps with their durations, and collects a final summary."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.quiet = total, 0, quiet
        self.summary: dict[str, Any] = {"steps": []}

    def step(self, title: str, fn: Callable[[], Any]) -> Any:
        self.done += 1
        if not self.quiet:
            print(f"\n[{self.done}/{self.total}] {title} ...", flush=True)
        start = time.time()
        result = fn()
        seconds = round(time.time() - start, 1)
        self.summary["steps"].append({"step": title, "seconds": seconds})
        if not self.quiet:
            print(f"[{self.done}/{self.total}] done in {seconds} s", flush=True)
        return result

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


# ----------------------------------------------------------------------------------------------- the corpus


def _synthetic_manifest(out: str, size: str, quiet: bool) -> dict:
    from ray_slt.config import build_config
    from ray_slt.data.prepare import prepare

    cfg = build_config(
        {
            "kind": "prepare",
            "dataset": "synthetic",
            "root": storage.join(out, "corpus"),
            "out": storage.join(out, "manifest.parquet"),
            "options": {**SIZES[size], "signers": 6, "seed": 0},
        }
    )
    return prepare(cfg, progress=not quiet)


def _holdout(n: int) -> int:
    """Without a split column: 0 (train) for most clips, 1 (dev) for every tenth, 2 (test) for the next."""
    return {8: 1, 9: 2}.get(n % 10, 0)


def labels_manifest(data_dir: str, out_uri: str) -> dict:
    """A manifest from ``DIR/labels.csv`` (``file,text[,split,signer,lang]``); see the module docstring."""
    import csv
    import io

    from ray_slt.data.manifest import canonical_split, make_row, write_manifest
    from ray_slt.errors import DataError

    table_uri = storage.join(data_dir, "labels.csv")
    if not storage.exists(table_uri):
        raise DataError(f"no labels.csv in {data_dir} (columns: file,text[,split,signer,lang])", table_uri)
    reader = csv.DictReader(io.StringIO(storage.read_text(table_uri)))
    missing = {"file", "text"} - set(reader.fieldnames or [])
    if missing:
        raise DataError(f"missing columns {sorted(missing)} (have {reader.fieldnames})", table_uri)
    rows, seen = [], set()
    for n, rec in enumerate(reader):
        line = n + 2
        file, text = (rec.get("file") or "").strip(), (rec.get("text") or "").strip()
        if not file or not text:
            raise DataError("empty file or text", table_uri, line)
        video = storage.join(data_dir, file)
        if not storage.exists(video):
            raise DataError(f"no such video: {file}", table_uri, line)
        given = (rec.get("split") or "").strip()
        split = canonical_split(given, table_uri, line) if given else ("train", "dev", "test")[_holdout(n)]
        sid = f"custom:{os.path.splitext(file)[0]}"
        if sid in seen:
            raise DataError(f"duplicate file {file!r}", table_uri, line)
        seen.add(sid)
        try:
            rows.append(
                make_row(
                    sample_id=sid,
                    dataset="custom",
                    split=split,
                    sign_language="sgn",  # ISO 639-3: sign languages (unspecified)
                    spoken_language=(rec.get("lang") or "en").strip(),
                    video_uri=video,
                    text=text,
                    signer=(rec.get("signer") or "").strip() or None,
                    meta={"source": "labels.csv"},
                )
            )
        except DataError as e:
            raise DataError(e.reason, table_uri, line) from None
    splits = {s: sum(r["split"] == s for r in rows) for s in ("train", "dev", "test")}
    if not splits["train"] or not splits["dev"] or not splits["test"]:
        raise DataError(f"labels.csv needs train, dev and test clips (has {splits})", table_uri)
    write_manifest(rows, out_uri)
    return {"samples": len(rows), "splits": splits, "out": out_uri}


# ------------------------------------------------------------------------------------------------ the steps


def _extract(manifest: str, features: str, video: bool, quiet: bool) -> dict:
    from ray_slt.config import build_config
    from ray_slt.features.extract import run_extract

    cfg = build_config(
        {
            "kind": "extract",
            "manifest": manifest,
            "out": features,
            "progress": False,
            "frames": {"sampling": "all", "max_frames": 128},
            "pose": {"backend": "mediapipe" if video else "none"},
            "decode": {"max_side": 640},
        }
    )
    return run_extract(cfg, echo=not quiet)


def _train_config(out: str, features: str, lang: str, overrides: list[str]):
    from ray_slt.config import load_config
    from ray_slt.errors import ConfigError

    if not TRAIN_CONFIG.exists():
        raise ConfigError(f"{TRAIN_CONFIG} not found: run the demo from the repository (make demo)")
    return load_config(
        str(TRAIN_CONFIG),
        [f"data.features={features}", f"data.lang={lang}", f"trainer.storage={out}", "trainer.name=train",
         *overrides],
    )  # fmt: skip


class _CurveFollower:
    """Prints the learning curves as the training loop writes them (step, loss; dev BLEU-4)."""

    def __init__(self, run_dir: str, say: Callable[[str], None], every_s: float = 15.0):
        import threading

        self.files = {k: storage.join(run_dir, "metrics", f"{k}.jsonl") for k in ("train", "dev")}
        self.say, self.every_s = say, every_s
        self.seen = {"train": 0, "dev": 0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
        self._report()  # what was written since the last look (the final evaluation)

    def _report(self) -> None:
        train, dev = self._rows("train"), self._rows("dev")
        if train:
            last = train[-1]
            loss = last.get("loss")
            self.say(f"    step {last.get('step')}: training loss {loss:.3f}" if isinstance(loss, float)
                     else f"    step {last.get('step')}")  # fmt: skip
        for d in dev:
            bleu = d.get("dev_bleu4", d.get("bleu4"))
            if bleu is not None:
                self.say(f"    step {d.get('step')}: dev BLEU-4 {bleu:.2f}")

    def _rows(self, kind: str) -> list[dict]:
        try:
            lines = storage.read_text(self.files[kind]).splitlines()
        except Exception:  # not written yet, or being replaced
            return []
        rows = [json.loads(x) for x in lines[self.seen[kind] :] if x.strip()]
        self.seen[kind] = len(lines)
        return rows

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            self._report()


def _evaluate(model: str, features: str, lang: str) -> dict:
    from ray_slt.eval.run import evaluate

    return evaluate(model, split="dev", data=features, protocol_options={"lang": lang})


def _held_out(manifest: str) -> dict:
    from ray_slt.data.manifest import read_manifest

    rows = [r for r in read_manifest(manifest).to_pylist() if r["split"] == "test"]
    return min(rows, key=lambda r: r["sample_id"])


def _production(out: str, features: str, sample: dict, overrides: list[str]) -> dict:
    """A text -> pose producer trained on the corpus's poses; dev DTW trained vs untrained; the held-out test
    sentence produced as a .pose file and an animated GIF."""
    import base64

    from ray_slt.config import load_config
    from ray_slt.data.poses import parse_pose
    from ray_slt.eval.run import evaluate
    from ray_slt.features.prompt2sign import gif_bytes
    from ray_slt.models.registry import load_predictor
    from ray_slt.training.run import run_training

    root = storage.join(out, "production")
    run_dir = storage.join(root, "producer")
    if storage.exists(run_dir):
        storage.remove(run_dir, recursive=True)
    cfg = load_config(str(PRODUCE_CONFIG), [f"data.features={features}", "produce.input=text", "optim.epochs=4",
                                            "eval.every_epochs=4", f"trainer.storage={root}", "trainer.name=producer",
                                            *overrides])  # fmt: skip
    trained = run_training(cfg)
    dev = {
        "untrained": evaluate(_init_model(run_dir), split="dev", data=features)["dtw"],
        "trained": evaluate(run_dir, split="dev", data=features)["dtw"],
    }
    predictor = load_predictor(run_dir)
    (produced,) = predictor.predict([{"sample_id": sample["sample_id"], "text": sample["text"]}])
    data = base64.b64decode(produced["pose_b64"])
    pose_uri, gif_uri = (
        storage.join(root, f"{sample['sample_id']}.pose"),
        storage.join(root, f"{sample['sample_id']}.gif"),
    )
    storage.write_bytes(pose_uri, data)
    storage.write_bytes(gif_uri, gif_bytes(parse_pose(data, pose_uri)))
    return {"run_dir": run_dir, "steps": trained["steps"], "dev_dtw": {k: round(float(v), 3) for k, v in dev.items()},
            "sample_id": sample["sample_id"], "text": sample["text"], "num_frames": produced["num_frames"],
            "fps": produced["fps"], "pose": pose_uri, "gif": gif_uri, "model_id": predictor.model_id}  # fmt: skip


def _serve_and_translate(
    model: str,
    sample: dict,
    port: int | None,
    quiet: bool,
    recognizer: dict | None = None,
    producer: dict | None = None,
) -> dict:
    """Deploy the trained model (``model``: the run directory: its best checkpoint), and the recognizer when given,
    on the running local Ray, POST the held-out sample (and an unseen sign), return the answers."""
    import urllib.request

    from ray_slt.config import build_config
    from ray_slt.serve.app import start

    if port is None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    cfg = build_config(
        {
            "kind": "serve",
            "app_name": "demo",
            "models": {"translate": {"checkpoint": model, "deployment": {"num_cpus": 0.5}}}
            | ({"recognize": {"checkpoint": recognizer["run_dir"], "deployment": {"num_cpus": 0.25}}}
               if recognizer else {})
            | ({"produce": {"checkpoint": producer["run_dir"], "deployment": {"num_cpus": 0.25}}}
               if producer else {}),
            "features": {"deployment": {"num_cpus": 0.5}, "frames": {"sampling": "all", "max_frames": 128},
                         "decode": {"max_side": 640}},
            "http": {"host": "127.0.0.1", "port": port},
        }
    )  # fmt: skip
    url = start(cfg)
    if not quiet:
        print(f"    serving at {url} (web page there, API docs at {url}docs)", flush=True)
    if sample.get("pose_uri") and not sample.get("video_uri"):
        body, ctype, what = storage.read_bytes(sample["pose_uri"]), "application/x-pose", "its .pose"
    else:
        body, what = storage.read_bytes(sample["video_uri"]), "its video"
        ctype = "video/" + {".webm": "webm", ".mov": "quicktime", ".mkv": "x-matroska"}.get(
            os.path.splitext(sample["video_uri"])[1].lower(), "mp4"
        )
    if not quiet:
        print(f"    POST {url}translate with {what} ({len(body) / 1e3:.0f} kB, {ctype})", flush=True)
    req = urllib.request.Request(url + "translate", data=body, headers={"Content-Type": ctype}, method="POST")
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        answer = json.loads(r.read())
    out = {"url": url, "sample_id": sample["sample_id"], "reference": sample["text"],
           "hypothesis": answer["text"], "model_id": answer["model_id"], "status": 200,
           "latency_s": round(time.perf_counter() - t0, 3), "timings": answer["timings"]}  # fmt: skip
    if recognizer:
        if not quiet:
            print(f"    POST {url}recognize with an unseen sign's .pose and the test-unseen signs' descriptions",
                  flush=True)  # fmt: skip
        out["recognize"] = _recognize_unseen(url, recognizer)
    if producer:
        if not quiet:
            print(f"    POST {url}produce with the held-out sentence", flush=True)
        body = json.dumps({"text": sample["text"]}).encode()
        req = urllib.request.Request(url + "produce", data=body, headers={"Content-Type": "application/json"},
                                     method="POST")  # fmt: skip
        with urllib.request.urlopen(req, timeout=300) as r:
            answer = json.loads(r.read())
        out["produce"] = {"text": sample["text"], "num_frames": answer["num_frames"], "fps": answer["fps"],
                          "model_id": answer["model_id"]}  # fmt: skip
    return out


def _recognition(out: str, size: str, quiet: bool, overrides: list[str]) -> dict:
    """The isolated signs (generated, prepared, extracted), HALI trained on the seen ones, zero-shot scores on the
    test-unseen ones."""
    from ray_slt.config import build_config, load_config
    from ray_slt.data.prepare import prepare
    from ray_slt.eval.run import evaluate
    from ray_slt.training.run import run_training

    options, partition = ISOLATED[size]
    root = storage.join(out, "recognition")
    manifest, features = storage.join(root, "manifest.parquet"), storage.join(root, "features")
    corpus = storage.join(root, "corpus")
    prepare(build_config({"kind": "prepare", "dataset": "synthetic_isolated", "root": corpus, "out": manifest,
                          "options": {**options, "signers": 6, "seed": 0}}), progress=False)  # fmt: skip
    extracted = _extract(manifest, features, False, True)
    run_dir = storage.join(root, "hali")
    if storage.exists(run_dir):
        storage.remove(run_dir, recursive=True)
    part = "{" + ", ".join(f"{k}: {v}" for k, v in partition.items()) + ", seed: 0}"
    cfg = load_config(str(HALI_CONFIG), [
        f"data.features={features}", f"hali.lexicon={storage.join(corpus, 'lexicon.csv')}", f"hali.partition={part}",
        f"trainer.storage={root}", "trainer.name=hali", *overrides,
    ])  # fmt: skip
    trained = run_training(cfg)
    scores = evaluate(run_dir, split="test", protocol="zsl")
    return {"run_dir": run_dir, "manifest": manifest, "lexicon": storage.join(corpus, "lexicon.csv"),
            "samples": extracted["ok"], "partition": partition, "steps": trained["steps"],
            "best": trained["best"], "test": {k: round(float(scores[k]), 1) for k in ("top1", "top5")},
            "test_n": scores["n"], "chance_top1": round(100 / partition["test_unseen"], 1)}  # fmt: skip


def _multipart(fields: list[tuple[str, str | None, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of ``(name, filename, content type, data)`` parts."""
    boundary = "----ray-slt-demo-" + os.urandom(8).hex()
    body = b""
    for name, filename, ctype, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        head += f"Content-Type: {ctype}\r\n" if ctype else ""
        body += (head + "\r\n").encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _recognize_unseen(url: str, rec: dict) -> dict:
    """POST a test-unseen sign's .pose to /recognize with every test-unseen sign's description as candidates."""
    import urllib.request

    from ray_slt.data.lexicon import read_lexicon
    from ray_slt.data.manifest import read_manifest

    unseen = set(rec["partition_classes"]["test_unseen"])
    sample = min((r for r in read_manifest(rec["manifest"]).to_pylist() if r["split"] == "test" and r["gloss"]
                  in unseen), key=lambda r: r["sample_id"])  # fmt: skip
    entries, _ = read_lexicon(rec["lexicon"])
    candidates = [{"gloss": e.gloss, "description": e.description} for e in entries if e.gloss in unseen]
    body, ctype = _multipart([
        ("file", "clip.pose", "application/x-pose", storage.read_bytes(sample["pose_uri"])),
        ("candidates", None, None, json.dumps(candidates).encode()),
    ])  # fmt: skip
    req = urllib.request.Request(url + "recognize", data=body, headers={"Content-Type": ctype}, method="POST")
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        answer = json.loads(r.read())
    return {"sample_id": sample["sample_id"], "gloss": sample["gloss"], "candidates": len(candidates),
            "ranked": answer["ranked"][:5], "scores": [round(x, 3) for x in answer["scores"][:5]],
            "model_id": answer["model_id"], "latency_s": round(time.perf_counter() - t0, 3),
            "description": next(c["description"] for c in candidates if c["gloss"] == sample["gloss"])}  # fmt: skip


def _stop() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


# ------------------------------------------------------------------------------------------------ the demo


def run_demo(
    out: str,
    size: str = "default",
    quiet: bool = False,
    data: str | None = None,
    train_overrides: list[str] | None = None,
    port: int | None = None,
    cpus: int | None = None,
    recognition_overrides: list[str] | None = None,
    produce_overrides: list[str] | None = None,
) -> dict:
    """Run the demo (see the module docstring); returns the summary (also written to ``{out}/summary.json``)."""
    import ray

    from ray_slt.data.manifest import read_manifest
    from ray_slt.data.stats import corpus_stats, render, write_plots

    started = time.time()
    out = storage.normalize(out)
    manifest_uri, features = storage.join(out, "manifest.parquet"), storage.join(out, "features")
    narrator = Narrator(total=9, quiet=quiet)
    say = narrator.say
    say(f"ray_slt demo: everything is written under {out}")
    if data:
        prepared = narrator.step(f"Reading the corpus in {data} (labels.csv + videos) into a manifest",
                                 lambda: labels_manifest(data, manifest_uri))  # fmt: skip
    else:
        prepared = narrator.step(
            "Generating the SYNTHETIC sign corpus (made-up signs, not a real sign language) and its manifest",
            lambda: _synthetic_manifest(out, size, quiet),
        )
    say(f"    {prepared['samples']} samples: {prepared['splits']}")
    table = read_manifest(manifest_uri)
    lang = table.column("spoken_language")[0].as_py()

    def stats():
        result = corpus_stats(table)
        result["plots"] = write_plots(table, storage.join(out, "stats"))
        return result

    result = narrator.step("Corpus statistics", stats)
    say(render(result))
    summary = narrator.summary
    summary.update(
        corpus="custom: " + data if data else f"synthetic ({size})",
        manifest=manifest_uri,
        samples=prepared["samples"],
        splits=prepared["splits"],
        stats=result["splits"],
        plots=result["plots"],
    )
    for name in ("ray.data", "ray.train", "ray.serve"):  # the narration says what happens; details are in Ray's logs
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if not ray.is_initialized():
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        what = "MediaPipe Holistic on every video" if data else "the corpus's .pose files"
        extracted = narrator.step(f"Extracting 77-point keypoints into a feature store ({what}; Ray Data)",
                                  lambda: _extract(manifest_uri, features, bool(data), quiet))  # fmt: skip
        say(f"    {extracted['ok']} samples extracted, {extracted['errors']} errors -> {features}")
        for e in extracted["error_records"][:5]:
            say(f"    error {e['sample_id']} [{e['stage']}]: {e['reason']}")
        summary["extract"] = {k: extracted[k] for k in ("ok", "errors", "frames", "wall_s")}

        cfg = _train_config(out, features, lang, train_overrides or [])
        run_dir = storage.join(out, "train")
        if storage.exists(run_dir):  # a previous demo's run would be resumed, finished: train afresh instead
            say(f"    replacing the previous demo's training run in {run_dir}")
            storage.remove(run_dir, recursive=True)
        lm_how = f"+ LoRA r={cfg.sft.lora.r}" if cfg.sft.uses_lora else "trained in full (randomly initialised)"
        say(f"    config {TRAIN_CONFIG.name}: {cfg.optim.epochs} epochs, {cfg.trainer.num_workers} worker(s) x batch "
            f"{cfg.optim.batch_size}, "
            f"{cfg.sft.lm} LM {lm_how}; learning curves in {run_dir}/metrics")  # fmt: skip

        def train():
            from ray_slt.training.run import run_training

            with _CurveFollower(run_dir, say):
                return run_training(cfg)

        trained = narrator.step("Training a tiny translator on Ray Train (CPU)", train)
        best = trained["best"]
        say(f"    {trained['steps']} steps; best checkpoint {best['checkpoint']} (dev BLEU-4 {best.get('dev_bleu4')})")
        init_model = _init_model(run_dir)

        def evaluate_both():
            return {"untrained": _evaluate(init_model, features, lang), "trained": _evaluate(run_dir, features, lang)}

        scores = narrator.step("Evaluating on the dev split: the trained model vs the same model untrained",
                               evaluate_both)  # fmt: skip
        for name in ("untrained", "trained"):
            s = scores[name]
            say(f"    {name:9s} dev BLEU-4 {s['bleu4']:6.2f}  chrF {s['chrf']:6.2f}  ROUGE-L {s['rouge_l']:6.2f}")
        summary["dev"] = {
            name: {k: round(float(scores[name][k]), 2) for k in ("bleu1", "bleu4", "chrf", "rouge_l")}
            | {"n": scores[name]["n_samples"]}
            for name in scores
        }
        summary["train"] = {"steps": trained["steps"], "best": best, "run_dir": run_dir,
                            "train_time_s": trained.get("train_time_s")}  # fmt: skip
        rec_size = size if not data else "small"
        rec = narrator.step(
            "Recognising signs never seen in training from their descriptions (HALI, synthetic isolated signs)",
            lambda: _recognition(out, rec_size, quiet, recognition_overrides or []),
        )
        rec["partition_classes"] = _partition_of(rec["run_dir"])
        p = rec["partition"]
        say(f"    {rec['samples']} isolated-sign samples; trained on {p['seen']} seen signs, {rec['steps']} steps")
        say(f"    zero-shot on {p['test_unseen']} test-unseen signs ({rec['test_n']} samples): top-1 "
            f"{rec['test']['top1']:.1f}% (chance {rec['chance_top1']}%), top-5 {rec['test']['top5']:.1f}%")  # fmt: skip
        summary["recognition"] = {k: rec[k] for k in ("run_dir", "partition", "steps", "test", "test_n", "chance_top1")}
        sample = _held_out(manifest_uri)
        prod = narrator.step(
            "Producing signing from text (a tiny SignLLM-style text -> pose producer on Ray Train)",
            lambda: _production(out, features, sample, produce_overrides or []),
        )
        say(
            f"    {prod['steps']} steps; dev DTW-MJE {prod['dev_dtw']['trained']:.3f} vs untrained "
            f"{prod['dev_dtw']['untrained']:.3f} (shoulder widths, lower is better)"
        )
        say(f"    {prod['text']!r} -> {prod['num_frames']} frames: {prod['pose']} (animated: {prod['gif']})")
        summary["production"] = {k: prod[k] for k in ("run_dir", "steps", "dev_dtw", "sample_id", "num_frames",
                                                      "pose", "gif")}  # fmt: skip
        answer = narrator.step(
            "Serving the three models (Ray Serve on 127.0.0.1): translating a held-out test sample, recognising an "
            "unseen sign and producing the held-out sentence over HTTP",
            lambda: _serve_and_translate(run_dir, sample, port, quiet, rec, prod),
        )
        say(f"    sample     {answer['sample_id']}")
        say(f"    reference  {answer['reference']}")
        say(f"    served     {answer['hypothesis']}   ({answer['model_id']}, {answer['latency_s']} s)")
        r = answer["recognize"]
        say(f"    unseen     {r['sample_id']}: {r['gloss']} ({r['description']})")
        say("    ranked     " + ", ".join(f"{g} {s:.2f}" for g, s in zip(r["ranked"], r["scores"]))
            + f"   among {r['candidates']} described candidates")  # fmt: skip
        summary["http"] = answer
    finally:
        narrator.step("Stopping the server and Ray", _stop)
    summary["total_s"] = round(time.time() - started, 1)
    storage.write_text(storage.join(out, "summary.json"), json.dumps(summary, indent=1, ensure_ascii=False))
    say("\n" + render_summary(summary))
    return summary


def _partition_of(run_dir: str) -> dict:
    from ray_slt.models.recognition import read_meta
    from ray_slt.models.registry import resolve

    return read_meta(resolve(run_dir).model)["partition"]


def _init_model(run_dir: str) -> str:
    """The untrained starting model the run saved (``init-{config hash}``)."""
    found = [u for u in storage.listdir(run_dir) if storage.basename(u).startswith("init-")]
    if not found:
        from ray_slt.errors import StorageError

        raise StorageError(f"{run_dir}: no init-* model (the untrained start of the run)")
    return found[0]


def render_summary(s: dict) -> str:
    lines = ["=" * 78, "ray_slt demo: summary", "=" * 78]
    lines.append(f"corpus        {s['corpus']}: {s['samples']} samples {s['splits']}")
    if "extract" in s:
        e = s["extract"]
        lines.append(f"features      {e['ok']} samples, {e['frames']} frames, {e['errors']} errors")
    if "dev" in s:
        u, t = s["dev"]["untrained"], s["dev"]["trained"]
        lines.append(f"dev BLEU-4    trained {t['bleu4']:.2f}  vs  untrained {u['bleu4']:.2f}   (n={t['n']}; "
                     f"chrF {t['chrf']:.1f} vs {u['chrf']:.1f})")  # fmt: skip
        lines.append(f"training      {s['train']['steps']} steps, run in {s['train']['run_dir']}")
    if "recognition" in s:
        r = s["recognition"]
        lines.append(f"zero-shot     top-1 {r['test']['top1']:.1f}% (chance {r['chance_top1']}%), top-5 "
                     f"{r['test']['top5']:.1f}% on {r['partition']['test_unseen']} never-seen signs")  # fmt: skip
    if "http" in s:
        h = s["http"]
        lines.append(f"served        POST /translate {h['sample_id']} -> {h['hypothesis']!r}")
        lines.append(f"reference     {h['reference']!r}")
        lines.append(f"model         {h['model_id']} ({h['latency_s']} s over HTTP)")
        if "recognize" in h:
            r = h["recognize"]
            lines.append(f"recognized    POST /recognize {r['sample_id']} (an unseen {r['gloss']}) -> "
                         f"{', '.join(r['ranked'][:3])}")  # fmt: skip
        if "produce" in h:
            p = h["produce"]
            lines.append(f"produced      POST /produce {p['text']!r} -> {p['num_frames']} frames at {p['fps']:g} fps")
    if "production" in s:
        p = s["production"]
        lines.append(f"production    dev DTW {p['dev_dtw']['trained']:.3f} vs untrained "
                     f"{p['dev_dtw']['untrained']:.3f}; animation {p['gif']}")  # fmt: skip
    lines.append("steps         " + "; ".join(f"{x['step'].split(' (')[0]} {x['seconds']} s" for x in s["steps"]))
    if "total_s" in s:
        lines.append(f"total         {s['total_s']} s")
    if "train" in s:
        run = s["train"]["run_dir"]
        lines.append(f"next          ray-slt serve conf/serve/default.yaml models.translate.checkpoint={run}")
    return "\n".join(lines)


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="directory for every output (default: demo_out)")
    p.add_argument(
        "--size",
        choices=list(SIZES),
        default="default",
        help="synthetic corpus size: default (600/60/60 sentences), small (120/20/20) or tiny (32/8/8)",
    )
    p.add_argument(
        "--data", metavar="DIR", help="a real corpus: a directory of videos with labels.csv (file,text[,split,...])"
    )
    p.add_argument("--port", type=int, help="HTTP port of the demo server (default: a free one on 127.0.0.1)")
    p.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of conf/train/synthetic_tiny.yaml (e.g. optim.epochs=2); repeatable",
    )
    p.add_argument(
        "--recognition",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of conf/train/recognition/hali_synthetic_tiny.yaml (e.g. optim.epochs=4); repeatable",
    )
    p.add_argument(
        "--produce",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of conf/train/production/synthetic_tiny.yaml (default 4 epochs, text input); repeatable",
    )


def _run(args: argparse.Namespace) -> dict:
    return run_demo(args.out, args.size, quiet=args.json, data=args.data, train_overrides=args.train,
                    port=args.port, cpus=args.cpus, recognition_overrides=args.recognition,
                    produce_overrides=args.produce)  # fmt: skip


register(
    "demo",
    "the whole path end to end on a laptop (synthetic corpus by default)",
    _configure,
    _run,
    render=lambda summary: f"demo finished in {summary.get('total_s')} s (the summary is above)",
    description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
)
