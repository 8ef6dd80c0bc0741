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


PAIRS = [("the man eats an apple", "MAN APPLE EAT"), ("my sister reads a book", "MY SISTER BOOK READ"),
         ("tomorrow it rains", "TOMORROW RAIN")]  # fmt: skip


def tiny_text2gloss(uri: str, tag: str = "ASL", seed: int = 0, languages: tuple[str, ...] = ()) -> str:
    """An (untrained) tiny text -> gloss model with English templates and ``tag`` tags, saved at ``uri``;
    ``tag="auto"``: a multilingual one writing ``languages``."""
    from ray_slt.models.checkpoint import save_translator
    from ray_slt.models.config import Text2GlossConfig
    from ray_slt.models.sft import build_translator
    from ray_slt.models.text2gloss import vocabulary_texts

    cfg = Text2GlossConfig.model_validate({
        "tiny": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate": 64},
        "encoder": {"type": "gloss", "hidden": 32, "heads": 2, "ffn": 64, "layers": 1}, "projector": {"hidden": 32},
        "templates": "en", "tag": tag, "max_new_tokens": 6, "num_beams": 1, "languages": list(languages),
    })  # fmt: skip
    rows = [{"sample_id": f"{lang}{i}", "text": t, "gloss": g, "sign_language": lang}
            for lang in (languages or ("ase",)) for i, (t, g) in enumerate(PAIRS)]  # fmt: skip
    targets, inputs = vocabulary_texts(cfg, rows)
    save_translator(build_translator(cfg, texts=targets, glosses=inputs, seed=seed), uri, kind="text2gloss")
    return uri


def tiny_producer(uri: str, input: str = "gloss", seed: int = 0, languages: tuple[str, ...] = ()) -> str:
    """An (untrained) tiny producer reading glosses (or sentences), saved at ``uri``; with ``languages``, the
    shared multilingual one (``tag: auto``) for them."""
    from ray_slt.models.producer import build_producer, producer_words, save_producer
    from ray_slt.models.producer_config import ProducerConfig

    multi = {"tag": "auto", "languages": list(languages)} if languages else {}
    cfg = ProducerConfig.model_validate({"size": "custom", "hidden": 32, "layers": 1, "heads": 2, "ffn": 64,
                                         "max_frames": 12, "frame_step": 2, "stop_at": 0.97,
                                         "input": input, **multi})  # fmt: skip
    texts = [producer_words({"text": t, "gloss": g, "sign_language": lang}, cfg)
             for lang in (languages or (None,)) for t, g in PAIRS]  # fmt: skip
    save_producer(build_producer(cfg, texts, seed=seed), uri)
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


# ------------------------------------------------------------------------------------- the video oddities

N_ODD = 12  # frames of each oddity made from the real clip
N_ODDITY_SRC = ("slp_site", "asl_house.mp4")  # the real clip (a signer on camera), under ../shared/data
ODDITIES = ("plain", "latin1_tags", "long_metadata", "phone_rotation", "odd_size_444", "variable_frame_rate", "ten_bit",
            "yuv444", "vp9_webm", "mpeg4_part2", "one_frame", "zero_frames", "truncated_no_moov", "uhd_4k",
            "unicode_name", "audio_only", "symlink_loop", "directory")  # fmt: skip


def _encode(path: Path, frames, codec: str = "libx264", pix_fmt: str = "yuv420p", fmt: str | None = None,
            metadata: dict | None = None, vfr: bool = False) -> Path:  # fmt: skip
    """Encode RGB frames with PyAV (``vfr``: irregular timestamps, 20/40/67 ms apart)."""
    import fractions

    import av

    with av.open(str(path), "w", format=fmt) as out:
        for k, v in (metadata or {}).items():
            out.metadata[k] = v
        stream = out.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0].shape[:2] if len(frames) else (240, 320)
        stream.pix_fmt = pix_fmt
        out.start_encoding()
        t = 0
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
                t += (20, 40, 67)[i % 3]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _display_rotation(src: Path, dst: Path) -> Path:
    """``src`` with its track header's matrix saying "turn 90 degrees clockwise to display", as phones write it."""
    import struct

    data = bytearray(src.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0, "a version-0 tkhd box"
    one, minus_one = 0x00010000, 0xFFFF0000  # 16.16 fixed point
    struct.pack_into(">9I", data, at + 44, 0, one, 0, minus_one, 0, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(data))
    return dst


def make_oddities(dst: Path, src: Path) -> dict[str, tuple[Path, int | str]]:
    """Video oddities real corpora contain, made with PyAV from the first frames of a real clip (``src``, a
    signer on camera): ``{name: (path, expected)}``, ``expected`` the frames that must decode or the words of
    the one error the file must give. Written by a fresh interpreter: once decord is loaded in a process (an
    earlier test may have loaded it), its bundled FFmpeg breaks PyAV's libvpx encoders there."""
    import subprocess
    import sys

    code = "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]); import testlib; " \
        "testlib.write_oddities(Path(sys.argv[1]), Path(sys.argv[2]))"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(dst), str(src), str(Path(__file__).parent)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return oddity_table(dst)


def oddity_table(dst: Path) -> dict[str, tuple[Path, int | str]]:
    """What each oddity written by :func:`write_oddities` under ``dst`` must give."""
    return {
        "plain": (dst / "plain.mp4", N_ODD),
        "latin1_tags": (dst / "latin1_tags.mp4", N_ODD),
        "long_metadata": (dst / "long_metadata.mp4", N_ODD),
        "phone_rotation": (dst / "phone_rotation.mp4", N_ODD),
        "odd_size_444": (dst / "odd_size.mp4", N_ODD),
        "variable_frame_rate": (dst / "vfr.mp4", N_ODD),
        "ten_bit": (dst / "ten_bit.mp4", N_ODD),
        "yuv444": (dst / "yuv444.mp4", N_ODD),
        "vp9_webm": (dst / "vp9.webm", N_ODD),
        "mpeg4_part2": (dst / "mpeg4.avi", N_ODD),
        "one_frame": (dst / "one_frame.mp4", 1),
        "zero_frames": (dst / "zero_frames.mp4", "no video stream"),
        "truncated_no_moov": (dst / "no_moov.mp4", "(Invalid data found when processing input)"),
        "uhd_4k": (dst / "uhd.mp4", 4),
        "unicode_name": (dst / "Gebärde ü 手话 clip.mp4", N_ODD),
        "audio_only": (dst / "audio_only.m4a", "no video stream"),
        # extraction: "a loop of symbolic links"; PyAV: "Too many levels of symbolic links"
        "symlink_loop": (dst / "loop_a.mp4", "symbolic links"),
        # decoding: "Is a directory"; extraction reads a directory as a folder of frame images (PHOENIX's
        # layout): "no frame images in the directory"
        "directory": (dst / "a_directory.mp4", "directory"),
    }


def write_oddities(dst: Path, src: Path) -> None:
    """Write the files of :func:`oddity_table` (in this process)."""
    import os

    import av
    import numpy as np

    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(N_ODD), c.decode(video=0))]
    dst.mkdir(parents=True, exist_ok=True)
    _encode(dst / "plain.mp4", frames)
    retag(dst / "plain.mp4", dst / "latin1_tags.mp4")
    _encode(dst / "long_metadata.mp4", frames, metadata={"comment": "x" * 200_000})
    # a phone's sideways frames (stored turned 90 degrees counter-clockwise) with the rotation that shows them upright
    sideways = _encode(dst / "sideways.mp4", [np.ascontiguousarray(np.rot90(f, 1)) for f in frames])
    _display_rotation(sideways, dst / "phone_rotation.mp4")
    _encode(dst / "odd_size.mp4", [f[:239, :317] for f in frames], pix_fmt="yuv444p")
    _encode(dst / "vfr.mp4", frames, vfr=True)
    _encode(dst / "ten_bit.mp4", frames, pix_fmt="yuv420p10le")
    _encode(dst / "yuv444.mp4", frames, pix_fmt="yuv444p")
    _encode(dst / "vp9.webm", frames, codec="libvpx-vp9", fmt="webm")
    _encode(dst / "mpeg4.avi", frames, codec="mpeg4")
    _encode(dst / "one_frame.mp4", frames[:1])
    _encode(dst / "zero_frames.mp4", [])
    whole = _encode(dst / "whole.mp4", frames).read_bytes()  # the index ('moov') at the end, as cameras write
    (dst / "no_moov.mp4").write_bytes(whole[: len(whole) // 2])
    big = [np.kron(f, np.ones((12, 12, 1), np.uint8))[360:2520] for f in frames[:4]]  # 3840 x 2160
    _encode(dst / "uhd.mp4", big)
    _encode(dst / "Gebärde ü 手话 clip.mp4", frames)
    with av.open(str(dst / "audio_only.m4a"), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.symlink(dst / "loop_b.mp4", dst / "loop_a.mp4")
    os.symlink(dst / "loop_a.mp4", dst / "loop_b.mp4")
    (dst / "a_directory.mp4").mkdir()
