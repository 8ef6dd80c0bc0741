"""What a ``POST /translate`` request carries, parsed and bounded before anything looks at its bytes.

Three ways to send a clip (see the README, "Serving"):

* the file as the raw body: ``Content-Type: video/mp4`` (``video/*``), or ``application/x-pose`` for a
  ``.pose`` file (``application/octet-stream`` with ``?filename=clip.mp4`` works too);
* ``multipart/form-data`` with a ``file`` field (a video or a ``.pose``: the file name or the part's content
  type tells which), as an HTML form or ``curl -F file=@clip.mp4`` sends it; or with a ``uri`` field;
* ``application/json`` ``{"uri": "..."}``: a file the server reads itself, allowed only under the configured
  prefix (``inputs.uri_prefix``).

Every problem is a :class:`RequestError` with an HTTP status and a one-line reason. The body is never
trusted: its size is capped while it is read, its bytes are only ever handed to the video decoder (in a child
process with a deadline) or to pose-format's reader, never to pickle or ``torch.load``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv")
POSE_SUFFIX = ".pose"
VIDEO_TYPES = {
    "video/mp4": ".mp4",
    "video/x-m4v": ".m4v",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/mpeg": ".mpg",
    "video/ogg": ".ogv",
}
POSE_TYPES = ("application/x-pose", "application/pose")
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,./:=? -]{1,70}$")


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{status}: {self.reason}")


@dataclass
class ClipInput:
    """One clip: ``kind`` is ``video``, ``pose`` or ``uri``; ``candidates``: signs to rank it among, with their
    descriptions (for recognizers that rank by description), when the request names them."""

    kind: str
    data: bytes | None = None
    uri: str | None = None
    filename: str | None = None
    suffix: str = ""
    candidates: list[dict[str, str]] | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """``("type/subtype", {param: value})`` of a Content-Type header, lower-cased type."""
    if not content_type:
        return "", {}
    main, *rest = content_type.split(";")
    params = {}
    for item in rest:
        key, sep, value = item.strip().partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), params


def kind_of(filename: str | None, content_type: str | None) -> tuple[str, str]:
    """``("video" | "pose", suffix)`` from a file name (preferred) or a content type; 415 otherwise."""
    suffix = os.path.splitext(filename or "")[1].lower()
    if suffix == POSE_SUFFIX:
        return "pose", POSE_SUFFIX
    if suffix in VIDEO_SUFFIXES:
        return "video", suffix
    ctype, _ = media_type(content_type)
    if ctype in POSE_TYPES:
        return "pose", POSE_SUFFIX
    if ctype in VIDEO_TYPES:
        return "video", VIDEO_TYPES[ctype]
    if ctype.startswith("video/"):
        return "video", ".mp4"  # the decoder sniffs the container; the suffix is only a hint
    what = f"file name {filename!r}" if filename else f"content type {ctype or 'none'!r}"
    raise RequestError(
        415,
        f"unsupported input ({what}): send a video (video/*, {', '.join(VIDEO_SUFFIXES)}) or a .pose file "
        f"({POSE_TYPES[0]})",
    )


async def read_body(
    stream: AsyncIterator[bytes],
    max_bytes: int,
    content_length: str | None = None,
    drain_bytes: int = 0,
    timeout_s: float | None = None,
) -> bytes:
    """The request body, refused with 413 once it exceeds ``max_bytes`` (at once when the client declares a larger
    length). Before the 413 the rest of the body, up to ``drain_bytes`` in all, is read and thrown away: clients
    such as Python's urllib send the whole body before they read the answer, and a server that stops reading
    leaves them with a connection reset instead of the 413 and its reason. A body (drained part included) not
    received within ``timeout_s`` seconds is refused with 408: a client that trickles bytes holds nothing longer."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(stream, max_bytes, content_length, drain_bytes)
    except TimeoutError:
        raise RequestError(408, f"request body not received within {timeout_s:g} s") from None


async def _read_body(stream: AsyncIterator[bytes], max_bytes: int, content_length: str | None, drain_bytes: int):
    limit_mb = f"{max_bytes / 1e6:g} MB"
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise RequestError(400, f"invalid Content-Length {content_length!r}") from None
        if declared > max_bytes:
            if declared <= drain_bytes:
                await _drain(stream, drain_bytes)
            raise RequestError(413, f"request body of {declared} bytes exceeds the limit of {limit_mb}")
    chunks, total = [], 0
    async for chunk in stream:
        total += len(chunk)
        if total > max_bytes:
            await _drain(stream, drain_bytes - total)
            raise RequestError(413, f"request body exceeds the limit of {limit_mb}")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(stream: AsyncIterator[bytes], budget: int) -> None:
    """Read and discard the rest of a body, at most ``budget`` bytes."""
    seen = 0
    while seen <= budget:
        try:
            chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        seen += len(chunk)


def parse_multipart(body: bytes, boundary: str | None) -> dict[str, tuple[str | None, str | None, bytes]]:
    """``{field: (filename, content_type, data)}`` of a ``multipart/form-data`` body (RFC 7578).

    A small strict parser: the body is already bounded in size; a field given twice is an error.
    """
    if not boundary or not _BOUNDARY.match(boundary):
        raise RequestError(400, "multipart/form-data without a valid boundary parameter")
    delimiter = b"--" + boundary.encode("ascii")
    if not body.startswith(delimiter):
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise RequestError(400, "malformed multipart body: the boundary does not occur in it")
        body = body[start + 2 :]
    fields: dict[str, tuple[str | None, str | None, bytes]] = {}
    pos = len(delimiter)
    while True:
        if body[pos : pos + 2] == b"--":
            return fields  # the closing delimiter
        if body[pos : pos + 2] != b"\r\n":
            raise RequestError(400, "malformed multipart body: a boundary line is not followed by CRLF")
        head_end = body.find(b"\r\n\r\n", pos + 2)
        if head_end < 0:
            raise RequestError(400, "malformed multipart body: a part has no end of headers")
        end = body.find(b"\r\n" + delimiter, head_end + 4)
        if end < 0:
            raise RequestError(400, "malformed multipart body: truncated (no closing boundary)")
        headers = BytesHeaderParser().parsebytes(body[pos + 2 : head_end + 2])
        disposition = headers.get("content-disposition", "")
        if not disposition.lower().startswith("form-data"):
            raise RequestError(400, "malformed multipart body: a part is not form-data")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise RequestError(400, "malformed multipart body: a part has no field name")
        if name in fields:
            raise RequestError(400, f"field {name!r} given more than once")
        filename = headers.get_filename()
        fields[name] = (filename, headers.get("content-type"), body[head_end + 4 : end])
        pos = end + 2 + len(delimiter)


MAX_CANDIDATES, MAX_GLOSS_CHARS, MAX_DESCRIPTION_CHARS = 1000, 100, 2000


def parse_candidates(value: object) -> list[dict[str, str]]:
    """A request's candidate signs: a JSON list (or its text) of ``{"gloss", "description"}`` objects, bounded
    (at most 1000; a gloss up to 100 and a description up to 2000 characters), glosses distinct."""
    if isinstance(value, bytes | str):
        try:
            value = json.loads(value)
        except (UnicodeDecodeError, ValueError) as e:
            raise RequestError(400, f"'candidates' is not valid JSON ({e})") from None
    if not isinstance(value, list) or not value:
        raise RequestError(400, '\'candidates\' must be a non-empty list of {"gloss", "description"} objects')
    if len(value) > MAX_CANDIDATES:
        raise RequestError(413, f"{len(value)} candidates exceed the limit of {MAX_CANDIDATES}")
    out, seen = [], set()
    for i, c in enumerate(value):
        if not isinstance(c, dict) or not isinstance(c.get("gloss"), str) or not isinstance(c.get("description"), str):
            raise RequestError(400, f"candidate {i} is not an object with string 'gloss' and 'description'")
        gloss, text = c["gloss"].strip(), " ".join(c["description"].split())
        if not gloss or not text:
            raise RequestError(400, f"candidate {i} has an empty gloss or description")
        if len(gloss) > MAX_GLOSS_CHARS or len(text) > MAX_DESCRIPTION_CHARS:
            raise RequestError(413, f"candidate {i} is too long (gloss <= {MAX_GLOSS_CHARS}, description <= "
                               f"{MAX_DESCRIPTION_CHARS} characters)")  # fmt: skip
        if gloss in seen:
            raise RequestError(400, f"candidate gloss {gloss!r} is given twice")
        seen.add(gloss)
        out.append({"gloss": gloss, "description": text})
    return out


def _uri_input(value: object) -> ClipInput:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(400, "'uri' must be a non-empty string")
    if "\x00" in value or len(value) > 4096:
        raise RequestError(400, "'uri' is not a valid path")
    return ClipInput(kind="uri", uri=value.strip())


def parse_request(content_type: str | None, body: bytes, query: Mapping[str, str]) -> ClipInput:
    """The clip of a ``POST /translate`` request (see the module docstring for the accepted forms)."""
    ctype, params = media_type(content_type)
    if not ctype:
        raise RequestError(415, "missing Content-Type: send multipart/form-data, video/*, application/x-pose "
                           "or application/json")  # fmt: skip
    if ctype == "multipart/form-data":
        fields = parse_multipart(body, params.get("boundary"))
        if "file" in fields and "uri" in fields:
            raise RequestError(400, "send either a 'file' or a 'uri' field, not both")
        candidates = parse_candidates(fields["candidates"][2]) if "candidates" in fields else None
        if "uri" in fields:
            clip = _uri_input(fields["uri"][2].decode("utf-8", "replace"))
        elif "file" not in fields:
            raise RequestError(400, f"missing field 'file' (got {sorted(fields) or 'no fields'})")
        else:
            filename, part_type, data = fields["file"]
            kind, suffix = kind_of(filename, part_type)
            clip = _file_input(kind, suffix, data, filename)
        clip.candidates = candidates
        return clip
    if ctype == "application/json":
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise RequestError(400, f"body is not valid JSON ({e})") from None
        if not isinstance(payload, dict) or "uri" not in payload:
            raise RequestError(400, "missing field 'uri' in the JSON body")
        clip = _uri_input(payload["uri"])
        if "candidates" in payload:
            clip.candidates = parse_candidates(payload["candidates"])
        return clip
    filename = query.get("filename")
    if ctype == "application/octet-stream":
        if not filename:
            raise RequestError(415, "application/octet-stream needs ?filename=NAME.mp4 or NAME.pose to say what "
                               "it is; or send video/* or application/x-pose")  # fmt: skip
        kind, suffix = kind_of(filename, None)
    else:
        kind, suffix = kind_of(filename, ctype)
    return _file_input(kind, suffix, body, filename)


def _file_input(kind: str, suffix: str, data: bytes, filename: str | None) -> ClipInput:
    if not data:
        raise RequestError(400, f"the {kind} file is empty (0 bytes)")
    return ClipInput(kind=kind, data=data, filename=filename, suffix=suffix)


def parse_text_request(content_type: str | None, body: bytes, field: str, max_chars: int) -> dict[str, str]:
    """The text input of a route whose model reads text or glosses: a JSON object with the ``field`` (``text``
    or ``gloss``) and optional string fields (``spoken_language``, ``sign_language``), or a ``text/plain``
    body that is the field itself. 400 for a missing/empty field or a non-string value, 413 when longer than
    ``max_chars``."""
    ctype, _ = media_type(content_type)
    if ctype == "application/json":
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise RequestError(400, f"body is not valid JSON ({e})") from None
        if not isinstance(payload, dict):
            raise RequestError(400, f"the JSON body must be an object with a {field!r} field")
    elif ctype == "text/plain":
        try:
            payload = {field: body.decode("utf-8")}
        except UnicodeDecodeError:
            raise RequestError(400, "the text/plain body is not UTF-8") from None
    else:
        raise RequestError(415, f"this model reads {field}: send application/json {{\"{field}\": ...}} or text/plain "
                           f"(got {ctype or 'no content type'})")  # fmt: skip
    out: dict[str, str] = {}
    for key, value in payload.items():
        if key not in TEXT_FIELDS:
            continue
        if not isinstance(value, str):
            raise RequestError(400, f"field {key!r} must be a string")
        if "\x00" in value:
            raise RequestError(400, f"field {key!r} contains a NUL character")
        out[key] = value
    value = out.get(field, "").strip()
    if not value:
        raise RequestError(400, f"missing or empty field {field!r}")
    if len(value) > max_chars:
        raise RequestError(413, f"{field} of {len(value)} characters exceeds the limit of {max_chars}")
    out[field] = value
    return out


TEXT_FIELDS = ("text", "gloss", "spoken_language", "sign_language")
