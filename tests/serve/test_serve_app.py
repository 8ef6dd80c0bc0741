"""The serving application end to end on a local Ray: one Serve instance for the module, bound to 127.0.0.1 on
an ephemeral port, with a tiny random translator checkpoint, bearer-token auth on, two translator replicas,
real clips from ../shared/data and synthetic .pose files.

Covers the endpoints, uploads (raw, multipart, URIs under the allowed prefix), dynamic batching, the bad
inputs of the issue (each a 4xx with a reason while the service stays healthy), auth, the web page in headless
Chromium (upload, recording, pose drawing, refusals), and a translator replica killed mid-load (Serve restarts
it; clients get an answer or a clean 503, none hang)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import glob
import http.client
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cdp import Chromium, chromium_path
from serve_helpers import multipart, request, tiny_checkpoint, wait_until
from testlib import free_port

TOKEN_ENV = "RAY_SLT_TEST_SERVE_TOKEN"


@pytest.fixture(scope="module")
def media(tmp_path_factory, shared_data) -> SimpleNamespace:
    """Inputs: synthetic .pose files, real clips, and a media folder (the server's allowed URI prefix)."""
    from ray_slt.data import synthetic

    d = tmp_path_factory.mktemp("serve_media")
    synthetic.generate(str(d / "synthetic"), synthetic.SyntheticSpec(train=8, dev=2, test=2, signers=2, seed=1))
    poses = sorted(glob.glob(str(d / "synthetic" / "poses" / "*.pose")))
    allowed = d / "allowed"
    allowed.mkdir()
    shutil.copy(poses[0], allowed / "clip.pose")
    (allowed / "notes.txt").write_text("not a clip")
    (d / "outside.pose").write_bytes(Path(poses[1]).read_bytes())
    os.symlink(d / "outside.pose", allowed / "link.pose")  # inside by name, outside in fact
    return SimpleNamespace(
        root=d,
        poses=poses,
        allowed=allowed,
        different=shared_data / "slp_site" / "asl_different.mp4",  # 2.14 s
        house=shared_data / "slp_site" / "asl_house.mp4",  # 2.92 s: over this server's 2.5 s limit
        holistic=shared_data / "slp_pose" / "holistic_example.pose",
    )


@pytest.fixture(scope="module")
def server(ray_local, media, tmp_path_factory):
    from ray import serve

    from ray_slt.config import build_config
    from ray_slt.serve.app import start

    ckpt = tiny_checkpoint(str(tmp_path_factory.mktemp("serve_ckpt") / "tiny"))
    token = uuid.uuid4().hex
    os.environ[TOKEN_ENV] = token
    cfg = build_config(
        {
            "kind": "serve",
            "app_name": "test_app",
            "models": {
                "translate": {
                    "checkpoint": ckpt,
                    "batching": {"enabled": True, "max_batch_size": 8, "wait_timeout_s": 0.5},
                    "deployment": {"min_replicas": 2, "max_replicas": 2, "num_cpus": 0.1, "max_ongoing_requests": 16},
                }
            },
            "features": {"deployment": {"num_cpus": 0.1, "max_ongoing_requests": 8}},
            "ingress": {"num_cpus": 0},
            "http": {"port": free_port()},
            "limits": {
                "max_upload_mb": 1.0,
                "max_video_s": 2.5,
                "max_pose_frames": 200,
                "retries": 1,
                "body_timeout_s": 3.0,
            },
            "auth": {"token_env": TOKEN_ENV, "required": True},
            "inputs": {"uri_prefix": str(media.allowed)},
        }
    )
    url = start(cfg)
    try:
        yield SimpleNamespace(url=url, cfg=cfg, ckpt=ckpt, token=token, auth={"Authorization": f"Bearer {token}"})
    finally:
        serve.shutdown()
        os.environ.pop(TOKEN_ENV, None)


def post(server, data: bytes, ctype: str | None, query: str = "", auth: bool = True, timeout: float = 120):
    return request(server.url + "translate" + query, data, ctype, server.auth if auth else None, timeout=timeout)


def healthy(server) -> bool:
    status, body = request(server.url + "healthz")
    return status == 200 and body["status"] == "ok"


# --------------------------------------------------------------------------------------------------- endpoints


def test_health_docs_and_web_page(server):
    from ray_slt.models.registry import model_id, resolve

    status, body = request(server.url + "healthz")  # open without a token
    assert status == 200 and body["status"] == "ok" and body["auth"] is True
    route = body["routes"]["translate"]
    ref = resolve(server.ckpt)
    assert route["model_id"] == f"{ref.name}@{model_id(ref.model)}" and route["kind"] == "translator"
    assert (route["inputs"], route["predicts"], route["protocol"]) == ("pose", "text", "translation")
    assert route["batching"]["enabled"] is True and body["limits"]["max_video_s"] == 2.5
    assert body["endpoints"] == ["POST translate", "GET healthz"]
    status, spec = request(server.url + "openapi.json")
    assert status == 200
    # only the models that exist have endpoints: no recognizer or producer yet
    assert set(spec["paths"]) == {"/translate", "/healthz"}
    assert set(spec["paths"]["/translate"]) == {"post"}
    assert "multipart/form-data" in spec["paths"]["/translate"]["post"]["requestBody"]["content"]
    status, page = request(server.url)
    assert status == 200 and 'id="file"' in page and "static/app.js" in page
    status, js = request(server.url + "static/app.js")
    assert status == 200 and "?include_pose=true" in js and 'route = "translate"' in js
    assert request(server.url + "static/..%2Fapp.py")[0] == 404
    assert request(server.url + "docs")[0] == 200


def test_pose_upload_raw_and_multipart(server, media):
    from ray_slt.data.poses import read_pose

    data = Path(media.poses[0]).read_bytes()
    frames = read_pose(media.poses[0]).body.data.shape[0]
    status, raw = post(server, data, "application/x-pose", "?include_pose=true")
    assert status == 200, raw
    health = request(server.url + "healthz")[1]
    assert isinstance(raw["text"], str) and raw["model_id"] == health["routes"]["translate"]["model_id"]
    assert raw["input_kind"] == "pose" and raw["pose_estimator"] == "shipped" and raw["num_frames"] == frames
    assert raw["route"] == "translate"
    assert {"read_s", "features_s", "model_call_s", "model_s", "total_s"} <= set(raw["timings"])
    pose = raw["pose"]
    assert len(pose["points"]) == frames and all(len(p) == 77 * 2 for p in pose["points"])
    assert pose["frames"] == list(range(frames)) and pose["edges"] and (pose["width"], pose["height"]) == (640, 480)
    body, ctype = multipart({"file": ("sample.pose", "application/octet-stream", data)})
    status, form = post(server, body, ctype)
    assert status == 200 and form["text"] == raw["text"] and "pose" not in form
    # a real MediaPipe Holistic pose (another layout source) goes through the same path
    status, real = post(server, media.holistic.read_bytes(), "application/x-pose")
    assert status == 200 and real["num_frames"] == 97


def test_dynamic_batching_groups_concurrent_requests_without_changing_results(server, media):
    files = media.poses[:8]
    sequential = [post(server, Path(f).read_bytes(), "application/x-pose") for f in files]
    assert all(s == 200 for s, _ in sequential)
    assert all(r["batch_size"] == 1 for _, r in sequential)  # one at a time: nothing to batch with
    with cf.ThreadPoolExecutor(len(files)) as pool:
        concurrent = list(pool.map(lambda f: post(server, Path(f).read_bytes(), "application/x-pose"), files))
    assert all(s == 200 for s, _ in concurrent)
    assert max(r["batch_size"] for _, r in concurrent) > 1, "concurrent requests were never batched"
    # padding a sample into a batch must not change its translation
    assert [r["text"] for _, r in concurrent] == [r["text"] for _, r in sequential]


def test_video_upload_runs_the_extraction_stage_code(server, media):
    """A real clip through HTTP gives the keypoints that the extraction stage's SampleProcessor gives for the
    same file in this process, and the text the checkpoint gives for them."""
    from ray_slt.features.extract import SampleProcessor
    from ray_slt.features.store import decode_row
    from ray_slt.models.registry import load_predictor

    body, ctype = multipart({"file": ("asl_different.mp4", "video/mp4", media.different.read_bytes())})
    status, out = post(server, body, ctype, "?include_pose=true")
    assert status == 200, out
    assert out["input_kind"] == "video" and out["pose_estimator"] == "mediapipe-holistic"
    proc = SampleProcessor(server.cfg.extract_config(), out=str(media.root / "extract"), run_id="test")
    try:
        row = proc.process({"sample_id": "different", "video_uri": str(media.different)})
    finally:
        proc.close()
    assert row["status"] == "ok", row
    row = decode_row(row)
    assert out["num_frames"] == row["num_frames"] == 64
    pixels = row["keypoints"] * row["norm_scale"] + row["norm_center"]
    served = np.array([[np.nan if v is None else v for v in frame] for frame in out["pose"]["points"]])
    served = served.reshape(len(served), 77, 2)
    assert np.array_equal(~np.isnan(served[..., 0]), row["keypoints_valid"])
    assert np.nanmax(np.abs(served - np.where(row["keypoints_valid"][..., None], pixels, np.nan))) < 0.06
    predictor = load_predictor(server.ckpt)
    assert out["text"] == predictor.predict([row])[0]["text"]


def test_uri_inputs_only_under_the_allowed_prefix(server, media):
    status, out = post(server, b'{"uri": "clip.pose"}', "application/json")  # relative to the prefix
    assert status == 200 and out["input_kind"] == "pose"
    direct = post(server, Path(media.poses[0]).read_bytes(), "application/x-pose")[1]
    assert out["text"] == direct["text"]
    body, ctype = multipart({"uri": (None, None, str(media.allowed / "clip.pose").encode())})
    assert post(server, body, ctype)[0] == 200
    for uri, expected in [
        ("../outside.pose", 403),
        (str(media.root / "outside.pose"), 403),
        ("link.pose", 403),  # a symlink that leaves the prefix
        ("/etc/passwd", 403),
        ("s3://some-bucket/clip.pose", 403),
        ("file://" + str(media.root / "outside.pose"), 403),
        ("clip.pose/../../outside.pose", 403),
        ("./sub/../../outside.pose", 403),
        ("http://127.0.0.1:9/clip.pose", 403),
        ("gs://some-bucket/clip.pose", 403),
        ("%2e%2e/outside.pose", 404),  # never URL-decoded: a name inside the prefix, which does not exist
        ("missing.pose", 404),
        ("notes.txt", 415),
    ]:
        status, out = post(server, f'{{"uri": "{uri}"}}'.encode(), "application/json")
        assert status == expected, (uri, out)
        assert out["error"]


# ------------------------------------------------------------------------------------------------- bad inputs


def _reencode(src: Path, dst: Path, codec: str, fmt: str, **options) -> bytes:
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt, options=options) as out:
        stream = out.add_stream(codec, rate=30)  # 64 frames: 2.1 s, under the 2.5 s limit
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for frame in inp.decode(video=0):
            img = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            for pkt in stream.encode(img):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return dst.read_bytes()


def _av1(src: Path, dst: Path) -> bytes:
    """The same real clip re-encoded as AV1: PyAV can write it, the video decoder (decord) cannot read it."""
    return _reencode(src, dst, "libsvtav1", "matroska")


def _truncated_faststart(src: Path, dst: Path) -> bytes:
    """The real clip with its index up front, cut at 60%: the container claims every frame, a part decodes."""
    data = _reencode(src, dst, "libx264", "mp4", movflags="faststart")
    return data[: len(data) * 6 // 10]


def _long_pose(src: str, frames: int) -> bytes:
    from ray_slt.data.poses import build_pose, pose_bytes, read_pose

    pose = read_pose(src)
    data = np.ma.getdata(pose.body.data)[:, 0]
    conf = np.asarray(pose.body.confidence)[:, 0]
    reps = -(-frames // len(data))
    return pose_bytes(build_pose(pose.header.components, np.tile(data, (reps, 1, 1))[:frames],
                                    np.tile(conf, (reps, 1))[:frames], 25.0, 640, 480))  # fmt: skip


def _empty_pose(src: str) -> bytes:
    from ray_slt.data.poses import build_pose, pose_bytes, read_pose

    pose = read_pose(src)
    data = np.ma.getdata(pose.body.data)[:, 0]
    return pose_bytes(build_pose(pose.header.components, data, np.zeros(data.shape[:2]), 25.0, 640, 480))


def test_bad_inputs_are_refused_with_a_reason_and_the_service_stays_healthy(server, media, tmp_path):
    video = media.different.read_bytes()
    cases = [
        ("zero-byte upload", b"", "video/mp4", 400, "empty"),
        ("truncated download", video[: len(video) * 6 // 10], "video/mp4", 422, "not a readable video"),
        (
            "truncated video",
            _truncated_faststart(media.different, tmp_path / "fast.mp4"),
            "video/mp4",
            422,
            "truncated",
        ),
        ("text sent as a video", b"hello, this is not a video\n" * 20, "video/mp4", 422, "not a readable video"),
        ("text file named .mp4", multipart({"file": ("clip.mp4", "video/mp4", b"x" * 500)}), None, 422, "video"),
        ("unsupported codec (AV1)", _av1(media.different, tmp_path / "av1.mkv"), "video/x-matroska", 422, "av1"),
        ("clip too long", media.house.read_bytes(), "video/mp4", 413, "exceeds the limit of 2.5 s"),
        ("oversized upload", os.urandom(1_200_000), "video/mp4", 413, "exceeds the limit of 1 MB"),
        ("corrupt .pose", b"\x00\x01garbage" * 50, "application/x-pose", 422, "not a readable .pose"),
        ("too many pose frames", _long_pose(media.poses[0], 250), "application/x-pose", 413, "250 frames"),
        ("pose without a person", _empty_pose(media.poses[0]), "application/x-pose", 422, "no person"),
        ("missing file field", multipart({"clip": ("a.pose", None, b"x")}), None, 400, "missing field 'file'"),
        ("wrong content type", b"hello", "text/plain", 415, "unsupported input"),
        ("image upload", multipart({"file": ("a.png", "image/png", b"\x89PNG")}), None, 415, "unsupported input"),
        ("JSON without uri", b'{"file": "a.mp4"}', "application/json", 400, "missing field 'uri'"),
        ("broken JSON", b'{"uri": ', "application/json", 400, "not valid JSON"),
    ]
    for name, data, ctype, expected, words in cases:
        if isinstance(data, tuple):
            data, ctype = data
        status, out = post(server, data, ctype)
        assert status == expected, (name, out)
        assert words in out["error"], (name, out["error"])
        assert str(media.root) not in out["error"] and "ray_slt_serve_" not in out["error"], "leaks server paths"
        assert healthy(server), f"unhealthy after: {name}"
    # an oversized body without a Content-Length (chunked) is cut off while it is read
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = (b"\x00" * 100_000 for _ in range(15))
    conn.request("POST", "/translate", body=chunks, encode_chunked=True,
                 headers={"Content-Type": "video/mp4", **server.auth})  # fmt: skip
    response = conn.getresponse()
    assert response.status == 413 and b"exceeds the limit" in response.read()
    conn.close()
    status, out = post(server, Path(media.poses[1]).read_bytes(), "application/x-pose")
    assert status == 200 and out["text"] is not None


def test_an_oversized_upload_gets_a_readable_413_from_an_ordinary_client(server):
    """urllib sends the whole body before it reads the answer: the server reads the rest (and drops it) so that
    the client sees the 413 and its reason, not a connection reset."""
    status, out = request(server.url + "translate", os.urandom(12_000_000), "video/mp4", server.auth)
    assert status == 413 and "exceeds the limit of 1 MB" in out["error"]
    assert healthy(server)


def _trickle(url: str, auth: dict, declared: int) -> socket.socket:
    """A connection that sends the headers of a ``declared``-byte POST and 10 bytes of its body, then nothing."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=60)
    head = (f"POST {u.path}translate HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/x-pose\r\n"
            f"Content-Length: {declared}\r\nAuthorization: {auth['Authorization']}\r\n\r\n")  # fmt: skip
    sock.sendall(head.encode() + b"\x00" * 10)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict, float]:
    """Read a whole HTTP answer: (status, JSON body, seconds waited)."""
    t0 = time.monotonic()
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    body = json.loads(resp.read())
    sock.close()
    return resp.status, body, time.monotonic() - t0


def test_slow_drip_bodies_time_out_and_never_delay_good_requests(server, media):
    """Clients that send a few bytes of a body and then stall get 408 after limits.body_timeout_s (3 s here),
    while good requests sent meanwhile, alongside oversized ones, are answered as usual (well inside the request
    timeout): the stalled bodies hold no replica and no batch."""
    timeout = server.cfg.limits.body_timeout_s
    data = Path(media.poses[1]).read_bytes()
    status, alone = post(server, data, "application/x-pose")
    assert status == 200
    drips = [_trickle(server.url, server.auth, 500_000) for _ in range(6)]
    with cf.ThreadPoolExecutor(8) as pool:
        good = [pool.submit(post, server, data, "application/x-pose") for _ in range(6)]
        big = [pool.submit(post, server, os.urandom(1_200_000), "application/x-pose") for _ in range(2)]
        answers = [f.result() for f in good]
        bigs = [f.result() for f in big]
        dripped = list(pool.map(_answer, drips))
    for status, out in answers:
        assert status == 200 and out["text"] == alone["text"]
        assert out["timings"]["total_s"] < server.cfg.limits.request_timeout_s
    assert all(status == 413 and "exceeds the limit" in out["error"] for status, out in bigs)
    for status, out, waited in dripped:
        assert status == 408 and out["error"] == f"request body not received within {timeout:g} s"
        assert waited < timeout + 30  # answered after the body timeout, not held until the client gives up
    assert healthy(server)


def test_bearer_token_auth(server, media):
    data = Path(media.poses[2]).read_bytes()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                    {"Authorization": "Bearer"}):  # fmt: skip
        status, out = request(server.url + "translate", data, "application/x-pose", headers)
        assert status == 401 and "bearer token" in out["error"]
    status, _ = request(server.url + "translate", data, "application/x-pose", server.auth)
    assert status == 200
    assert request(server.url + "healthz")[0] == 200  # health, page and docs stay open


def test_a_request_past_its_deadline_gets_504_and_the_service_stays_up(server, media):
    """A second application on the same Serve instance, whose deadline no translation can meet (the translator
    alone waits up to 0.5 s to fill a batch): 504 with the reason, and both applications stay healthy."""
    from ray import serve

    from ray_slt.serve.app import start

    cfg = server.cfg.model_copy(
        update={
            "app_name": "test_deadline",
            "http": server.cfg.http.model_copy(update={"route_prefix": "/slow"}),
            "limits": server.cfg.limits.model_copy(update={"request_timeout_s": 0.02}),
        }
    )
    url = start(cfg)
    try:
        assert url.endswith("/slow/")
        status, out = request(url + "translate", Path(media.poses[0]).read_bytes(), "application/x-pose", server.auth)
        assert status == 504 and out["error"] == "not answered within 0.02 s"
        assert request(url + "healthz")[0] == 200
    finally:
        serve.delete("test_deadline")
    assert healthy(server)
    status, out = post(server, Path(media.poses[0]).read_bytes(), "application/x-pose")
    assert status == 200 and out["text"] is not None


def test_auth_required_but_unset_refuses_to_start(server, monkeypatch):
    from ray_slt.config import build_config
    from ray_slt.errors import ConfigError
    from ray_slt.serve.app import build_app

    monkeypatch.delenv("RAY_SLT_UNSET_TOKEN", raising=False)
    cfg = build_config({"kind": "serve", "models": {"translate": {"checkpoint": server.ckpt}},
                        "auth": {"token_env": "RAY_SLT_UNSET_TOKEN", "required": True}})  # fmt: skip
    with pytest.raises(ConfigError, match="RAY_SLT_UNSET_TOKEN"):
        build_app(cfg)


# ---------------------------------------------------------------------------------------- the web page (Chromium)
# Headless Debian Chromium (installed by .ci/run), driven over the DevTools protocol: the page itself uploads a real
# clip chosen in its file input (or recorded from the camera), shows the server's translation and draws the
# extracted pose over the frames; the access token is entered in the page, as auth is on.

needs_chromium = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (.ci/run installs Debian's chromium package)"
)


async def _enter_token(page, token: str) -> None:
    assert await page.eval("!document.getElementById('token-row').hidden"), "the page hides the token field"
    await page.eval(f"document.getElementById('token').value = {json.dumps(token)}")


async def _upload_in_page(url: str, clip: str, profile: str, token: str, screenshot: str | None = None) -> dict:
    async with Chromium.launch(profile) as browser:
        page = await browser.new_page()
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": 1000, "height": 1400, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        await page.goto(url)
        service = await page.wait_for(
            "document.getElementById('service').textContent.startsWith('model') && "
            "document.getElementById('service').textContent"
        )
        await _enter_token(page, token)
        await page.set_files("#file", [clip])
        await page.wait_for("!document.getElementById('translate').disabled")
        await page.eval("document.getElementById('translate').click()")
        state = await page.wait_for(
            "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state", timeout=180
        )
        out = {
            "service": service,
            "state": state,
            "status": await page.eval("document.getElementById('status').textContent"),
            "translation": await page.eval("document.getElementById('translation').textContent"),
            "result": await page.eval("window.lastResult || null"),
        }
        if state == "done":
            # the skeleton animation runs: frames get drawn, and the canvas holds coloured pixels
            await page.wait_for("Number(document.getElementById('overlay').dataset.drawn) > 10", timeout=30)
            out["canvas"] = await page.eval(
                """(() => { const c = document.getElementById('overlay');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let coloured = 0;
                   for (let i = 0; i < d.length; i += 4)
                     if (d[i + 3] > 0 && (d[i] > 60 || d[i + 1] > 60 || d[i + 2] > 60)) coloured++;
                   return {width: c.width, height: c.height, coloured,
                           frameInfo: document.getElementById('frame-info').textContent}; })()"""
            )
        if screenshot:
            await page.screenshot(screenshot)
        return out


@needs_chromium
def test_page_uploads_a_real_video_and_draws_its_pose(server, shared_data, tmp_path):
    clip = shared_data / "slp_site" / "asl_different.mp4"
    shot = tmp_path / "page.png"
    out = asyncio.run(_upload_in_page(server.url, str(clip), str(tmp_path / "profile"), server.token, str(shot)))
    assert out["state"] == "done", out["status"]
    result = out["result"]
    assert result["input_kind"] == "video" and result["pose_estimator"] == "mediapipe-holistic"
    assert out["translation"] == (result["text"] or "(empty translation)")
    assert result["model_id"] in out["service"]
    # the page shows what the API answers for the same file
    status, api = post(server, clip.read_bytes(), "video/mp4")
    assert status == 200 and api["text"] == result["text"] and api["num_frames"] == result["num_frames"]
    canvas = out["canvas"]
    assert (canvas["width"], canvas["height"]) == (320, 240)  # the clip's own pixels
    assert canvas["coloured"] > 200, "no skeleton drawn over the video"
    assert "64 frames extracted" in canvas["frameInfo"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_page_animates_a_pose_file(server, media, tmp_path):
    out = asyncio.run(_upload_in_page(server.url, media.poses[3], str(tmp_path / "profile"), server.token))
    assert out["state"] == "done", out["status"]
    assert out["result"]["input_kind"] == "pose"
    assert out["canvas"]["coloured"] > 200 and (out["canvas"]["width"], out["canvas"]["height"]) == (640, 480)


def _camera_feed(src: Path, dst: Path) -> str:
    """A real clip as raw YUV4MPEG frames: what Chromium's fake camera plays (in a loop) instead of a webcam."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for frame in inp.decode(video=0):
            for pkt in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return str(dst)


async def _record_in_page(url: str, profile: str, token: str, camera: str, seconds: float) -> dict:
    flags = (
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",  # grant the camera without a prompt
        f"--use-file-for-fake-video-capture={camera}",
        "--disable-renderer-backgrounding",
        "--disable-background-timer-throttling",
    )
    async with Chromium.launch(profile, extra_flags=flags) as browser:
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for("document.getElementById('service').textContent.startsWith('model')")
        await _enter_token(page, token)
        await page.eval("document.getElementById('record').click()")
        await page.wait_for("document.body.dataset.state === 'recording'")
        await asyncio.sleep(seconds)
        await page.eval("document.getElementById('stop').click()")
        await page.wait_for("!document.getElementById('translate').disabled")
        clip = await page.eval("document.getElementById('clip-name').textContent")
        await page.eval("document.getElementById('translate').click()")
        state = await page.wait_for(
            "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state", timeout=180
        )
        status = await page.eval("document.getElementById('status').textContent")
        result = await page.eval("window.lastResult || null")
        return {"clip": clip, "state": state, "status": status, "result": result}


@needs_chromium
def test_page_records_a_clip_and_translates_it(server, shared_data, tmp_path):
    """The page records from the camera (a real signing clip fed to Chromium's fake camera) and uploads the
    browser's own WebM (no duration, variable frame timing): the server decodes it and finds the signer."""
    camera = _camera_feed(shared_data / "slp_site" / "asl_different.mp4", tmp_path / "camera.y4m")
    out = asyncio.run(_record_in_page(server.url, str(tmp_path / "profile"), server.token, camera, seconds=2.0))
    assert out["clip"].startswith("recording.webm")
    assert out["state"] == "done", out["status"]
    result = out["result"]
    assert result["input_kind"] == "video" and result["pose_estimator"] == "mediapipe-holistic"
    assert result["num_frames"] > 10  # about 2 s of recording


@needs_chromium
def test_page_shows_the_servers_refusal(server, tmp_path):
    bad = Path(tmp_path / "notes.mp4")
    bad.write_text("this is not a video\n" * 10)
    out = asyncio.run(_upload_in_page(server.url, str(bad), str(tmp_path / "profile"), server.token))
    assert out["state"] == "error"
    assert out["status"].startswith("422") and "not a readable video" in out["status"]
    assert request(server.url + "healthz")[0] == 200


# ---------------------------------------------------------------------------------------------- failure drill


def _translator_replicas(ray) -> list[str]:
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and "#model-translate#" in a["name"]
    )


def _running_translators(app: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments["model-translate"]
    return int(status.replica_states.get("RUNNING", 0))


def test_replica_killed_mid_load_is_restarted_and_no_client_hangs(server, media, ray_local):
    ray = ray_local
    before = _translator_replicas(ray)
    assert len(before) == 2
    files = [Path(f).read_bytes() for f in media.poses[:6]]
    done = []

    def client(i: int):
        results = []
        for k in range(5):
            t0 = time.monotonic()
            status, out = post(server, files[(i + k) % len(files)], "application/x-pose", timeout=90)
            results.append((status, out, time.monotonic() - t0))
            done.append(1)
        return results

    with cf.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(client, i) for i in range(6)]
        assert wait_until(lambda: len(done) >= 4, timeout=120), "no request completed before the kill"
        victim = ray.get_actor(before[0], namespace="serve")
        ray.kill(victim, no_restart=True)
        results = [r for f in futures for r in f.result(timeout=300)]  # none hangs
    statuses = [s for s, _, _ in results]
    assert len(results) == 30
    assert set(statuses) <= {200, 503}, [(s, o) for s, o, _ in results if s not in (200, 503)]
    assert statuses.count(200) >= 20
    for status, out, _ in results:
        if status == 503:
            assert "unavailable" in out["error"]
    # Serve replaces the dead replica
    assert wait_until(lambda: _running_translators(server.cfg.app_name) == 2
                      and before[0] not in _translator_replicas(ray), timeout=120)  # fmt: skip
    assert healthy(server)
    assert post(server, files[0], "application/x-pose")[0] == 200
