"""Running a benchmark: every question x prompt variant x condition answered once, on Ray Data, resumable.

A *task* is one question asked in one prompt variant under one condition (``video``; ``blind``: the text only;
``perturb:P``: the frames temporally perturbed with probability P, :func:`ray_slt.vlmbench.frames.perturb`). Its
key hashes the question id, the model's name, the variant, the condition, the frame setting and how the answer
is read; ``answers.jsonl`` in the output directory holds one record per answered key and is the cache a rerun
resumes from: answered tasks are skipped, so an interrupted run loses at most the batches in flight, and a run
with another model, variant or frame setting adds its own records beside.

Answering runs in Ray Data actors (:class:`Answerer`, one model each; ``workers`` of them, GPUs by
``gpus_per_worker``); an endpoint actor keeps ``endpoint.concurrency`` requests in flight. The driver appends
each finished batch to ``answers.jsonl`` as it arrives, with a progress bar.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ray_slt import storage
from ray_slt.config import config_dict
from ray_slt.errors import DataError
from ray_slt.vlmbench.config import BenchConfig
from ray_slt.vlmbench.prompts import VARIANTS, check_variants, render
from ray_slt.vlmbench.questions import read_questions

ANSWERS = "answers.jsonl"


def task_key(qid: str, model: str, variant: str, condition: str, frames: str, answer_by: str) -> str:
    blob = "\x1f".join((qid, model, variant, condition, frames if condition != "blind" else "-", answer_by))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def build_tasks(cfg: BenchConfig, header: Mapping[str, Any], questions: Sequence[Mapping[str, Any]]) -> list[dict]:
    protocol = header["protocol"]
    variants = check_variants(protocol, cfg.variants or list(VARIANTS[protocol]))
    if cfg.answer_by == "loglik" and protocol != "mcq":
        raise DataError(f"answer_by: loglik reads option likelihoods; protocol {protocol} has no options")
    model = cfg.model.name()
    tasks = []
    for q in questions[: cfg.limit] if cfg.limit else questions:
        for variant in variants:
            system, prompt = render(q, variant, header.get("candidates") or (), header.get("examples") or ())
            for condition in cfg.conditions:
                tasks.append({
                    "key": task_key(q["qid"], model, variant, condition, cfg.frames, cfg.answer_by),
                    "qid": q["qid"], "variant": variant, "condition": condition, "system": system, "prompt": prompt,
                    "video": q["video"], "n_options": len(q.get("options") or ()),
                })  # fmt: skip
    return tasks


def read_answers(uri: str) -> dict[str, dict[str, Any]]:
    """The records of ``answers.jsonl`` by key; a torn last line (a killed run) is ignored."""
    if not storage.exists(uri):
        return {}
    out = {}
    for line in storage.read_text(uri).splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "key" in rec:
            out[rec["key"]] = rec
    return out


def torn_end(path: str) -> None:
    """End the file on a newline: a killed run may have left half a record as its last line, and the next
    record appended must not be glued to it."""
    import os

    if os.path.exists(path) and os.path.getsize(path):
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


# ------------------------------------------------------------------------------------------------ answering


class FrameLoader:
    """Decodes a question's clip once (all frames of its span, up to ``max_frames``) and picks the frames a
    setting shows."""

    def __init__(self, decode: Mapping[str, Any], max_frames: int):
        from ray_slt.features.extract import DecodeConfig
        from ray_slt.features.sampling import Sampling
        from ray_slt.features.video import Decoder

        self.decode = DecodeConfig.model_validate(dict(decode))
        self.sampling = Sampling("all", max_frames=max_frames)
        self.decoder = Decoder(timeout_s=self.decode.timeout_s, isolated=self.decode.isolate)
        self.lock = threading.Lock()  # one decoding child process, one request at a time (endpoint threads share it)

    def close(self) -> None:
        self.decoder.close()

    def frames(self, video: Mapping[str, Any], setting: str, perturb_p: float, key: str) -> dict[str, Any]:
        from ray_slt.features.video import decode_sample
        from ray_slt.vlmbench.frames import perturb, select

        row = dict(video)
        with self.lock:
            clip, _, _ = decode_sample(row, row["video_uri"], self.sampling, self.decode,
                                       lambda req: (self.decoder.decode(req), None))  # fmt: skip
        span_len = clip.span[1] - clip.span[0]
        fps = clip.fps or self.decode.default_fps
        # frames decoded at uniformly spaced positions when the span was longer than max_frames
        rate = fps * len(clip.frame_indices) / max(1, span_len)
        idx = select(len(clip.frames), rate, setting)
        idx = perturb(idx, perturb_p, key)
        return {"frames": clip.frames[idx], "frame_indices": np.asarray(clip.frame_indices)[idx], "fps": fps,
                "span_len": span_len}  # fmt: skip


class Answerer:
    """A Ray Data actor: one model (local VLM or endpoint client) answering batches of tasks."""

    def __init__(self, config: dict[str, Any]):
        self.cfg = BenchConfig.model_validate(config)
        self.loader = FrameLoader(config_dict(self.cfg.decode), self.cfg.max_frames_decoded)
        m = self.cfg.model
        if m.endpoint is not None:
            from ray_slt.vlmbench.endpoint import EndpointClient

            self.client, self.chat = EndpointClient(config_dict(m.endpoint)), None
        else:
            import torch

            from ray_slt.models.vlm.chat import VLMChat

            torch.set_num_threads(max(1, int(self.cfg.cpus_per_worker)))
            self.client = None
            self.chat = VLMChat.load(checkpoint=m.checkpoint, vlm=m.vlm)
            if self.cfg.gpus_per_worker > 0 and torch.cuda.is_available():
                self.chat.model.to("cuda")

    def _question(self, t: dict[str, Any]) -> dict[str, Any]:
        q = {"prompt": t["prompt"], "system": t["system"], "frames": None}
        cond = t["condition"]
        if cond != "blind":
            p = float(cond.split(":")[1]) if cond.startswith("perturb:") else 0.0
            q.update(self.loader.frames(t["video"], self.cfg.frames, p, t["qid"] + "|" + cond))
        return q

    def _one(self, t: dict[str, Any]) -> dict[str, Any]:
        from ray_slt.features.sampling import SampleError

        started = time.perf_counter()
        rec = {k: t[k] for k in ("key", "qid", "variant", "condition")}
        rec.update({"model": self.cfg.model.name(), "frames": self.cfg.frames, "answer_by": self.cfg.answer_by,
                    "reply": "", "error": None})  # fmt: skip
        try:
            q = self._question(t)
            rec["shown_frames"] = 0 if q["frames"] is None else len(q["frames"])
            if self.client is not None:
                rec["reply"], rec["error"] = self.client.ask(q["system"], q["prompt"], q["frames"])
            elif self.cfg.answer_by == "loglik":
                letters = "ABCD"[: t["n_options"]]
                scores = self.chat.option_logprobs(q, list(letters))
                rec["option_logprobs"] = scores
                rec["reply"] = letters[int(np.argmax(scores))]
            else:
                rec["reply"] = self.chat.reply([q], max_new_tokens=self.cfg.max_new_tokens)[0]
        except SampleError as e:
            rec["error"] = f"video ({e.stage}): {e.reason}"
        except Exception as e:  # one question's failure is its error record, never the run's end
            rec["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        rec["seconds"] = round(time.perf_counter() - started, 3)
        return rec

    def __call__(self, batch):
        from ray_slt.features.pipeline import batch_rows

        tasks = batch_rows(batch)
        if self.client is not None:
            with ThreadPoolExecutor(self.cfg.model.endpoint.concurrency) as pool:
                records = list(pool.map(self._one, tasks))
        else:
            records = [self._one(t) for t in tasks]
        import pyarrow as pa

        return pa.table({"record": [json.dumps(r) for r in records]})


def prepare_local_model(cfg: BenchConfig, tasks: Sequence[Mapping[str, Any]]) -> None:
    """Materialise a ``tiny:`` model once in the driver (its tokenizer learns the benchmark's prompts), so the
    actors load one and the same checkpoint."""
    if cfg.model.vlm is None:
        return
    from ray_slt.models.vlm.config import VLMConfig
    from ray_slt.models.vlm.tiny import ensure_tiny

    vlm = VLMConfig.model_validate(cfg.model.vlm)
    if vlm.is_tiny:
        texts = list(dict.fromkeys(str(t["prompt"]) for t in tasks)) + list({str(t["system"]) for t in tasks})
        ensure_tiny(vlm, texts)


def run_answers(cfg: BenchConfig, *, echo: bool = True) -> dict[str, Any]:
    """Answer every pending task of the run; returns counts (tasks, cached, answered, errors)."""
    import ray
    from tqdm import tqdm

    from ray_slt.features.pipeline import rows_dataset

    if not storage.is_local(cfg.out):
        raise DataError("out must be a local directory: answers.jsonl is appended as answers arrive", cfg.out)
    header, questions = read_questions(cfg.questions)
    tasks = build_tasks(cfg, header, questions)
    path = storage.join(cfg.out, ANSWERS)
    done = read_answers(path)
    pending = [t for t in tasks if t["key"] not in done]
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if echo else (lambda m: None)
    say(f"vlmbench: {len(tasks)} tasks ({len(questions)} questions, {header['benchmark']}), "
        f"{len(tasks) - len(pending)} answered before, {len(pending)} to ask {cfg.model.name()}")  # fmt: skip
    errors = 0
    if pending:
        if cfg.model.endpoint is not None:
            from ray_slt.vlmbench.endpoint import EndpointClient

            EndpointClient(config_dict(cfg.model.endpoint))  # a missing API key fails here, before Ray starts
        prepare_local_model(cfg, pending)
        if not ray.is_initialized():
            import os

            # a Ray job (RAY_ADDRESS set) joins its cluster; otherwise a local Ray without a dashboard
            local = {} if os.environ.get("RAY_ADDRESS") else {"include_dashboard": False}
            ray.init(ignore_reinit_error=True, log_to_driver=False, **local)
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = rows_dataset(pending).map_batches(
            Answerer, fn_constructor_kwargs={"config": config_dict(cfg)}, batch_size=cfg.batch_size,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=cfg.workers), num_cpus=cfg.cpus_per_worker,
            num_gpus=cfg.gpus_per_worker,
        )  # fmt: skip
        storage.makedirs(cfg.out)
        torn_end(path)
        with (
            open(path, "a", encoding="utf-8") as f,
            tqdm(total=len(pending), desc="answers", unit="q", disable=not echo, file=sys.stderr) as bar,
        ):
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                for line in batch.column("record").to_pylist():
                    f.write(line + "\n")
                    errors += json.loads(line).get("error") is not None
                f.flush()
                bar.update(batch.num_rows)
    return {"tasks": len(tasks), "cached": len(tasks) - len(pending), "answered": len(pending), "errors": errors}
