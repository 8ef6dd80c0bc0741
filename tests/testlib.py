"""Helpers importable from any test module (``from testlib import shared``); fixtures live in conftest.py."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def shared(*parts: str) -> Path:
    """A path inside ../shared/data; the test is skipped (with the reason) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data not available: {path} (expected beside the repository)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Sentences of the synthetic corpus's grammar: the tiny tokenizer is trained on them.
TEXTS = [
    "the man eats an apple",
    "yesterday the woman bought a red book",
    "tomorrow the child will see the dog",
    "the teacher does not like the old car",
    "the doctor drinks water",
    "a friend reads the letter",
]


def tiny_checkpoint(uri: str, seed: int = 0, **overrides) -> str:
    """Save a tiny randomly initialised SFT translator (real classes, no training) to ``uri``."""
    from ray_slt.models import build_translator, save_translator
    from ray_slt.models.config import SFTConfig

    cfg = {
        "lm": "tiny:qwen3",
        "tokenizer": {"kind": "wordpiece", "vocab_size": 200},
        "encoder": {"type": "skeleton", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1, "gcn_channels": [16]},
        "fusion": {"face": False, "hand": False},
        "projector": {"hidden": 64},
        "max_new_tokens": 8,
        "num_beams": 1,
        **overrides,
    }
    save_translator(build_translator(SFTConfig.model_validate(cfg), texts=TEXTS * 20, seed=seed), uri)
    return uri


def request(
    url: str,
    data: bytes | None = None,
    content_type: str | None = None,
    headers: dict | None = None,
    timeout: float = 120.0,
    method: str | None = None,
) -> tuple[int, dict | str]:
    """``(status, JSON body or text)`` of one HTTP request; 4xx/5xx are returned, not raised."""
    hdrs = dict(headers or {})
    if content_type:
        hdrs["Content-Type"] = content_type
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, body, ctype = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read(), e.headers.get("content-type", "")
    if "json" in ctype:
        return status, json.loads(body)
    return status, body.decode("utf-8", "replace")


def serve_once(
    checkpoint: str, route: str, body: bytes, content_type: str, features: dict | None = None, **model
) -> tuple[int, dict, dict]:
    """Serve ``checkpoint`` (a run, checkpoint or model directory) at ``POST /{route}`` on the running Ray,
    send one request, shut Serve down. Returns ``(status, answer, healthz)``: the route's model as the
    server describes it and what it answered, so a test can compare with the model loaded in process.
    ``features``: the server's extraction settings (default: the extraction stage's defaults)."""
    from ray import serve

    from ray_slt.config import build_config
    from ray_slt.serve.app import start

    cfg = build_config(
        {
            "kind": "serve",
            "app_name": f"once_{route}",
            "models": {route: {"checkpoint": checkpoint, "deployment": {"num_cpus": 0.1}, **model}},
            "features": {"deployment": {"num_cpus": 0.1}, **(features or {})},
            "ingress": {"num_cpus": 0},
            "http": {"port": free_port()},
        }
    )
    url = start(cfg)
    try:
        status, health = request(url + "healthz")
        assert status == 200, health
        status, answer = request(url + route, body, content_type, timeout=300)
        return status, answer, health
    finally:
        serve.shutdown()


def retag(src, dst, title: str = "Gebärden für Anfänger ÿ") -> None:
    """``src``'s video stream copied (no re-encoding) into an MP4 whose tags are latin-1 bytes, as some scraping
    tools write them: not valid UTF-8."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", metadata_encoding="latin-1") as out:
        out.metadata["title"] = title
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
