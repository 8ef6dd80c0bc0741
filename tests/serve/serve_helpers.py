"""Helpers of the serving tests: multipart bodies, polling; tiny checkpoints and the HTTP client live in testlib."""

from __future__ import annotations

import time
import uuid

from testlib import TEXTS, request, tiny_checkpoint  # noqa: F401  (the serving tests import them from here)


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
