"""Request parsing of POST /translate, without a server: content types, multipart, JSON, size caps."""

from __future__ import annotations

import asyncio

import pytest
from serve_helpers import multipart

from ray_slt.serve.inputs import RequestError, parse_multipart, parse_request, read_body


def _status(fn, *args):
    with pytest.raises(RequestError) as e:
        fn(*args)
    return e.value.status, e.value.reason


def test_multipart_round_trips_binary_bytes_exactly(shared_data):
    video = (shared_data / "slp_site" / "asl_house.mp4").read_bytes()
    tricky = b"--x\r\n\r\n--\r\n" + bytes(range(256)) + b"\r\n"  # boundary-like bytes and CRLFs inside the data
    body, ctype = multipart({"file": ("asl_house.mp4", "video/mp4", video), "note": (None, None, tricky)})
    fields = parse_multipart(body, ctype.split("boundary=")[1])
    assert fields["file"] == ("asl_house.mp4", "video/mp4", video)
    assert fields["note"][2] == tricky
    clip = parse_request(ctype, body, {})
    assert (clip.kind, clip.suffix, clip.filename, clip.data) == ("video", ".mp4", "asl_house.mp4", video)


def test_kinds_from_file_names_and_content_types():
    body, ctype = multipart({"file": ("clip.pose", "application/octet-stream", b"x")})
    assert parse_request(ctype, body, {}).kind == "pose"
    assert parse_request("video/webm", b"x", {}).suffix == ".webm"
    assert parse_request("application/x-pose", b"x", {}).kind == "pose"
    assert parse_request("application/octet-stream", b"x", {"filename": "a.MOV"}).suffix == ".mov"
    clip = parse_request("application/json", b'{"uri": "clips/a.mp4"}', {})
    assert (clip.kind, clip.uri) == ("uri", "clips/a.mp4")
    body, ctype = multipart({"uri": (None, None, b"s3://bucket/a.pose")})
    assert parse_request(ctype, body, {}).uri == "s3://bucket/a.pose"


@pytest.mark.parametrize(
    ("ctype", "body", "query", "status", "words"),
    [
        (None, b"x", {}, 415, "missing Content-Type"),
        ("text/plain", b"x", {}, 415, "unsupported input"),
        ("image/png", b"x", {}, 415, "unsupported input"),
        ("application/octet-stream", b"x", {}, 415, "filename"),
        ("application/octet-stream", b"x", {"filename": "a.txt"}, 415, "a.txt"),
        ("video/mp4", b"", {}, 400, "empty"),
        ("application/json", b"{not json", {}, 400, "not valid JSON"),
        ("application/json", b'{"url": "a.mp4"}', {}, 400, "missing field 'uri'"),
        ("application/json", b'{"uri": 3}', {}, 400, "non-empty string"),
        ("application/json", b"[1, 2]", {}, 400, "missing field 'uri'"),
        ("multipart/form-data", b"x", {}, 400, "boundary"),
        ("multipart/form-data; boundary=abc", b"no delimiter here", {}, 400, "boundary does not occur"),
        ("multipart/form-data; boundary=abc", b'--abc\r\nContent-Disposition: form-data; name="file"', {}, 400,
         "no end of headers"),
        ("multipart/form-data; boundary=abc", b'--abc\r\nContent-Disposition: form-data; name="file"\r\n\r\ndata', {},
         400, "truncated"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_with_a_reason(ctype, body, query, status, words):
    got, reason = _status(parse_request, ctype, body, query)
    assert got == status and words in reason


def test_multipart_field_problems():
    body, ctype = multipart({"video": ("a.mp4", "video/mp4", b"x")})
    assert _status(parse_request, ctype, body, {}) == (400, "missing field 'file' (got ['video'])")
    body, ctype = multipart({"file": ("a.mp4", "video/mp4", b"x"), "uri": (None, None, b"a.mp4")})
    assert _status(parse_request, ctype, body, {})[0] == 400
    body, ctype = multipart({"file": ("a.mp4", "video/mp4", b"")})
    assert _status(parse_request, ctype, body, {}) == (400, "the video file is empty (0 bytes)")
    body, ctype = multipart({"file": ("notes.txt", "text/plain", b"hello")})
    assert _status(parse_request, ctype, body, {})[0] == 415
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pose"\r\n\r\nxx\r\n'
    assert "more than once" in _status(parse_multipart, part + part + b"--b--\r\n", "b")[1]
    no_name = b'--b\r\nContent-Disposition: form-data; filename="a.pose"\r\n\r\nxx\r\n--b--\r\n'
    assert "no field name" in _status(parse_multipart, no_name, "b")[1]


async def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_read_body_caps_size_with_and_without_content_length():
    data = b"x" * 5000
    assert asyncio.run(read_body(_chunks(data, 700), 5000, "5000")) == data
    assert asyncio.run(read_body(_chunks(data, 700), 5000, None)) == data
    with pytest.raises(RequestError) as e:
        asyncio.run(read_body(_chunks(data, 700), 4999, "5000"))  # refused from the header, before reading
    assert e.value.status == 413
    with pytest.raises(RequestError) as e:
        asyncio.run(read_body(_chunks(data, 700), 4999, None))  # chunked: refused while reading
    assert e.value.status == 413
    with pytest.raises(RequestError) as e:
        asyncio.run(read_body(_chunks(data, 700), 10_000, "12; drop"))
    assert e.value.status == 400


async def _stalls_after(data: bytes, stalled: asyncio.Event):
    yield data
    stalled.set()
    await asyncio.Event().wait()  # never set: the client sends nothing more


def test_read_body_times_out_on_a_stalled_body_and_not_on_a_complete_one():
    async def stalled_read():
        stalled = asyncio.Event()
        with pytest.raises(RequestError) as e:
            await read_body(_stalls_after(b"x" * 10, stalled), 5000, "5000", timeout_s=0.2)
        assert stalled.is_set()
        return e.value

    err = asyncio.run(stalled_read())
    assert (err.status, err.reason) == (408, "request body not received within 0.2 s")
    data = b"x" * 5000
    assert asyncio.run(read_body(_chunks(data, 700), 5000, "5000", timeout_s=0.2)) == data
    # the drain before a 413 counts too: a client cannot hold the connection by trickling an oversized body
    with pytest.raises(RequestError) as e:
        asyncio.run(read_body(_stalls_after(b"x" * 10, asyncio.Event()), 5, "6000", drain_bytes=10_000, timeout_s=0.2))
    assert e.value.status == 408
