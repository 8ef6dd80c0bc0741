"""A client of OpenAI-compatible chat-completions endpoints, for benchmarking hosted or served VLMs.

A question's frames go as JPEG ``image_url`` parts (data URLs, downscaled to ``image_max_side``) after the text,
the way OpenAI's and Gemini's OpenAI-compatible APIs and vLLM take several images; a blind question sends the text
only. An empty reply or a transient HTTP error (429, 5xx, timeout) is retried ``retries`` times (the authors retry
once on an empty reply); anything else is an error recorded with the answer, never a crash of the run.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import numpy as np

from ray_slt.errors import ConfigError

TRANSIENT = {408, 409, 425, 429, 500, 502, 503, 504}


def jpeg_data_url(frame: np.ndarray, max_side: int, quality: int) -> str:
    from PIL import Image

    img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def messages(system: str | None, prompt: str, frames: np.ndarray | None, max_side: int, quality: int) -> list:
    content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    for f in [] if frames is None else frames:
        content.append({"type": "image_url", "image_url": {"url": jpeg_data_url(f, max_side, quality)}})
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    return [*out, {"role": "user", "content": content}]


class EndpointClient:
    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = dict(cfg)
        env = self.cfg.get("api_key_env")
        self.api_key = os.environ.get(env) if env else None
        if env and not self.api_key and not self.cfg["base_url"].startswith(("http://127.0.0.1", "http://localhost")):
            raise ConfigError(f"endpoint {self.cfg['base_url']}: set the API key in the environment variable {env}")

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(self.cfg["base_url"] + "/chat/completions", data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(req, timeout=self.cfg["timeout_s"]) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def ask(self, system: str | None, prompt: str, frames: np.ndarray | None) -> tuple[str, str | None]:
        """``(reply, error)``: the reply text ("" with an error message when every try failed)."""
        body: dict[str, Any] = {
            "model": self.cfg["model"],
            "messages": messages(system, prompt, frames, self.cfg["image_max_side"], self.cfg["jpeg_quality"]),
            "max_tokens": self.cfg["max_tokens"],
        }
        if self.cfg.get("temperature") is not None:
            body["temperature"] = self.cfg["temperature"]
        error = None
        for attempt in range(int(self.cfg.get("retries", 1)) + 1):
            try:
                out = self._post(body)
                text = (out.get("choices") or [{}])[0].get("message", {}).get("content") or ""
                if text.strip():
                    return text.strip(), None
                error = "empty reply"
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode("utf-8", "replace")
                error = f"HTTP {e.code}: {' '.join(detail.split())}"
                if e.code not in TRANSIENT:
                    break
            except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
                error = f"{type(e).__name__}: {e}"
            time.sleep(min(8.0, 0.5 * 2**attempt))
        return "", error
