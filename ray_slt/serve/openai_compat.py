"""An OpenAI-compatible chat-completions server for the project's VLMs (``ray-slt vlmbench-serve``).

``POST /v1/chat/completions`` takes the OpenAI request shape (``model``, ``messages`` with a ``system`` message and
``user`` content as text or a list of ``text`` and ``image_url`` parts, ``max_tokens`` or
``max_completion_tokens``) and answers greedily with the served model (:class:`~ray_slt.models.vlm.chat.VLMChat`):
the images of a request are the frames of one video, in order. ``GET /v1/models`` lists the served model. Any
OpenAI client, and the benchmark runner's endpoint mode, can therefore question a checkpoint of this project
running on another machine exactly as it questions a hosted model.

Limits: a body over ``max_body_mb`` gets 413 (read to its end first, so clients that send the whole body before
reading the answer see the 413), more than ``max_frames`` images 413, ``max_tokens`` is capped; images must be
``data:`` URLs (the server never fetches a remote URL); a wrong ``model`` is 404. It binds 127.0.0.1 unless told
otherwise.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np


class BadRequest(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _image(url: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not url.startswith("data:image/") or ";base64," not in url:
        raise BadRequest(400, "image_url must be a data:image/...;base64 URL (remote URLs are not fetched)")
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        img = Image.open(io.BytesIO(raw))
        img.load()
    except (ValueError, UnidentifiedImageError, OSError) as e:
        raise BadRequest(400, f"an image_url is not a readable image ({type(e).__name__})") from None
    return np.asarray(img.convert("RGB"))


def parse_request(body: Mapping[str, Any], max_frames: int) -> tuple[str | None, str, np.ndarray | None]:
    """``(system, prompt, frames)`` of a chat request (several user texts are joined by newlines)."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest(400, "messages must be a non-empty list")
    system, texts, frames = None, [], []
    for m in msgs:
        if not isinstance(m, Mapping) or m.get("role") not in ("system", "developer", "user"):
            raise BadRequest(400, "each message needs a role of system, developer or user (no multi-turn history)")
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise BadRequest(400, "message content must be a string or a list of parts")
        for part in parts:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text" and isinstance(part.get("text"), str):
                if m["role"] == "user":
                    texts.append(part["text"])
                else:
                    system = part["text"] if system is None else system + "\n" + part["text"]
            elif kind == "image_url" and m["role"] == "user":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, Mapping) else url
                if not isinstance(url, str):
                    raise BadRequest(400, "image_url needs a url")
                frames.append(url)
                if len(frames) > max_frames:
                    raise BadRequest(413, f"more than {max_frames} images in one request")
            else:
                raise BadRequest(400, f"unsupported content part {kind!r}")
    if not texts:
        raise BadRequest(400, "no user text in the request")
    images = [_image(u) for u in frames]
    if images:
        h, w = images[0].shape[:2]
        if any(i.shape[:2] != (h, w) for i in images):
            from PIL import Image

            images = [np.asarray(Image.fromarray(i).resize((w, h))) if i.shape[:2] != (h, w) else i for i in images]
    return system, "\n".join(texts), (np.stack(images) if images else None)


def build_app(chat, model_name: str, max_body_mb: float = 64.0, max_frames: int = 128, max_tokens: int = 1024):
    """The Starlette application serving ``chat`` as ``model_name``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lock = threading.Lock()  # one generation at a time per model copy
    limit = int(max_body_mb * 1024 * 1024)

    def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "ray_slt"}]})

    async def completions(request: Request) -> JSONResponse:
        import json

        body, size, too_big = bytearray(), 0, False
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                too_big = True  # keep reading (and dropping) so the client sees the answer, not a reset
                continue
            body.extend(chunk)
        if too_big:
            return error(413, f"request body of {size} bytes exceeds {max_body_mb:g} MB")
        try:
            req = json.loads(bytes(body))
            if not isinstance(req, dict):
                raise ValueError
        except ValueError:
            return error(400, "the body is not a JSON object")
        if req.get("model") not in (model_name, None):
            return error(404, f"model {req.get('model')!r} is not served here (this server has {model_name!r})",
                         "model_not_found")  # fmt: skip
        try:
            system, prompt, frames = parse_request(req, max_frames)
        except BadRequest as e:
            return error(e.status, e.message, e.kind)
        n = req.get("max_completion_tokens") or req.get("max_tokens") or 256
        if not isinstance(n, int) or n < 1:
            return error(400, "max_tokens must be a positive integer")
        q = {"system": system, "prompt": prompt, "frames": frames}
        if frames is not None:
            q.update({"frame_indices": np.arange(len(frames)), "fps": None, "span_len": len(frames)})
        from starlette.concurrency import run_in_threadpool

        def answer() -> str:
            with lock:
                return chat.reply([q], max_new_tokens=min(n, max_tokens))[0]

        text = await run_in_threadpool(answer)
        return JSONResponse({
            "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        })  # fmt: skip

    return Starlette(routes=[Route("/v1/models", models, methods=["GET"]),
                             Route("/v1/chat/completions", completions, methods=["POST"])])  # fmt: skip
