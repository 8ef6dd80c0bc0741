"""Helpers of the serving tests: tiny translator checkpoints, a small HTTP client, multipart bodies."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

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


def multipart(fields: dict[str, tuple[str | None, str | None, bytes]]) -> tuple[bytes, str]:
    """``(body, content_type)`` of a multipart/form-data request: ``{name: (filename, content_type, data)}``."""
    boundary = f"----ray-slt-test-{uuid.uuid4().hex}"
    parts = []
    for name, (filename, ctype, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        parts.append(head.encode() + b"\r\n" + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_until(predicate, timeout: float, interval: float = 0.5):
    """Poll ``predicate()`` until it returns a truthy value (returned) or ``timeout`` passes (None)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
