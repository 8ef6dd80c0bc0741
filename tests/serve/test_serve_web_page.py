"""The web page in headless Chromium (Debian's package, installed by .ci/run): a real clip chosen in the page's
file input is uploaded by the page itself; the page shows the server's translation and draws the extracted
pose over the frames. A bad file shows the server's refusal. Skipped (with the reason) only without Chromium."""

from __future__ import annotations

import asyncio
import glob
from pathlib import Path
from types import SimpleNamespace

import pytest
from cdp import Chromium, chromium_path
from serve_helpers import request, tiny_checkpoint
from testlib import free_port

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (.ci/run installs Debian's chromium package)"
)


@pytest.fixture(scope="module")
def server(ray_local, tmp_path_factory):
    from ray import serve

    from ray_slt.config import build_config
    from ray_slt.serve.app import start

    ckpt = tiny_checkpoint(str(tmp_path_factory.mktemp("web_ckpt") / "tiny"), seed=3)
    cfg = build_config(
        {
            "kind": "serve",
            "app_name": "web_test",
            "translator": {"checkpoint": ckpt, "deployment": {"num_cpus": 0.1}},
            "features": {"deployment": {"num_cpus": 0.1}},
            "ingress": {"num_cpus": 0},
            "http": {"port": free_port()},
            "limits": {"max_video_s": 10},
        }
    )
    url = start(cfg)
    try:
        yield SimpleNamespace(url=url, cfg=cfg)
    finally:
        serve.shutdown()


async def _upload_in_page(url: str, clip: str, profile: str, screenshot: str | None = None) -> dict:
    async with Chromium.launch(profile) as browser:
        page = await browser.new_page()
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": 1000, "height": 1400, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        await page.goto(url)
        service = await page.wait_for(
            "document.getElementById('service').textContent.startsWith('model') && "
            "document.getElementById('service').textContent"
        )
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


def test_page_uploads_a_real_video_and_draws_its_pose(server, shared_data, tmp_path):
    clip = shared_data / "slp_site" / "asl_different.mp4"
    shot = tmp_path / "page.png"
    out = asyncio.run(_upload_in_page(server.url, str(clip), str(tmp_path / "profile"), str(shot)))
    assert out["state"] == "done", out["status"]
    result = out["result"]
    assert result["input_kind"] == "video" and result["pose_estimator"] == "mediapipe-holistic"
    assert out["translation"] == (result["text"] or "(empty translation)")
    assert result["model_id"] in out["service"]
    # the page shows what the API answers for the same file
    status, api = request(server.url + "translate", clip.read_bytes(), "video/mp4")
    assert status == 200 and api["text"] == result["text"] and api["num_frames"] == result["num_frames"]
    canvas = out["canvas"]
    assert (canvas["width"], canvas["height"]) == (320, 240)  # the clip's own pixels
    assert canvas["coloured"] > 200, "no skeleton drawn over the video"
    assert "64 frames extracted" in canvas["frameInfo"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_animates_a_pose_file(server, tmp_path):
    from ray_slt.data import synthetic

    synthetic.generate(str(tmp_path / "syn"), synthetic.SyntheticSpec(train=2, dev=1, test=1, signers=1, seed=2))
    pose_file = sorted(glob.glob(str(tmp_path / "syn" / "poses" / "*.pose")))[0]
    out = asyncio.run(_upload_in_page(server.url, pose_file, str(tmp_path / "profile")))
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


async def _record_in_page(url: str, profile: str, camera: str, seconds: float) -> dict:
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


def test_page_records_a_clip_and_translates_it(server, shared_data, tmp_path):
    """The page records from the camera (a real signing clip fed to Chromium's fake camera) and uploads the
    browser's own WebM (no duration, variable frame timing): the server decodes it and finds the signer."""
    camera = _camera_feed(shared_data / "slp_site" / "asl_different.mp4", tmp_path / "camera.y4m")
    out = asyncio.run(_record_in_page(server.url, str(tmp_path / "profile"), camera, seconds=2.0))
    assert out["clip"].startswith("recording.webm")
    assert out["state"] == "done", out["status"]
    result = out["result"]
    assert result["input_kind"] == "video" and result["pose_estimator"] == "mediapipe-holistic"
    assert result["num_frames"] > 10  # about 2 s of recording


def test_page_shows_the_servers_refusal(server, tmp_path):
    bad = Path(tmp_path / "notes.mp4")
    bad.write_text("this is not a video\n" * 10)
    out = asyncio.run(_upload_in_page(server.url, str(bad), str(tmp_path / "profile")))
    assert out["state"] == "error"
    assert out["status"].startswith("422") and "not a readable video" in out["status"]
    assert request(server.url + "healthz")[0] == 200
