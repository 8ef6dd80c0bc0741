"""Benchmark runs end to end on the real WLASL clips of ../shared/data: a tiny random SmolVLM (the real
architecture class) answering LexSign-Bench by option likelihood and binary matching by its replies on Ray Data,
resuming from its answer cache, and the endpoint client questioning this project's OpenAI-compatible server over
HTTP. Tiny random models measure plumbing only: the assertions are on what was asked, shown, cached and counted,
and on chance-level scores."""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from testlib import free_port, shared


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Question files of the three protocols from the real clips, and a tiny model directory."""
    from ray_slt.data.lexicon import asl_lex_lexicon
    from ray_slt.vlmbench.lexsign import build_lexsign
    from ray_slt.vlmbench.questions import write_questions
    from ray_slt.vlmbench.wlasl import binary_questions, open_questions, wlasl_rows

    root = tmp_path_factory.mktemp("vlmbench")
    lex = asl_lex_lexicon(str(shared("asl_lex", "signdata-11-5-20.csv")))
    rows, vocab, _ = wlasl_rows(str(shared("wlasl")), 2000, ("train", "dev", "test"))
    out = {"root": root, "tiny": str(root / "tiny_smolvlm")}
    qs, params = build_lexsign(rows, lex, count=75, seed=0, vocabulary=vocab)
    out["lexsign"] = str(root / "lexsign.jsonl")
    write_questions(out["lexsign"], {"benchmark": "lexsign-bench", "protocol": "mcq", "seed": 0, "params": params}, qs)
    rows300, candidates, _ = wlasl_rows(str(shared("wlasl")), 300, ("train", "dev", "test"))
    out["open"] = str(root / "open.jsonl")
    write_questions(out["open"], {"benchmark": "wlasl300-zeroshot-open", "protocol": "open", "seed": 42,
                                  "candidates": candidates}, open_questions(rows300))  # fmt: skip
    bq, _ = binary_questions(rows300, lex)
    out["binary"] = str(root / "binary.jsonl")
    write_questions(out["binary"], {"benchmark": "wlasl300-zeroshot-binary", "protocol": "binary", "seed": 42}, bq)
    return out


def _config(files, questions: str, out: str, **kw):
    from ray_slt.vlmbench.config import BenchConfig

    data = {
        "questions": questions, "out": out,
        "model": {"vlm": {"model": "tiny:smolvlm", "tiny": {"path": files["tiny"]}, "dtype": "float32"}},
        "frames": "uniform:4", "decode": {"max_side": 128}, "max_new_tokens": 4, "batch_size": 8, "bootstrap": 200,
    }  # fmt: skip
    data.update(kw)
    return BenchConfig.model_validate(data)


def _records(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def test_lexsign_by_likelihood_with_blind_control_and_resume(files, ray_local):
    from ray_slt.vlmbench.report import score_run, write_report
    from ray_slt.vlmbench.runner import ANSWERS, run_answers

    out = files["root"] / "lexsign_run"
    cfg = _config(files, files["lexsign"], str(out), answer_by="loglik", variants=["original"],
                  conditions=["video", "blind", "perturb:0.2"])  # fmt: skip
    n_q = len(Path(files["lexsign"]).read_text().splitlines()) - 1
    counts = run_answers(cfg, echo=False)
    assert counts == {"tasks": 3 * n_q, "cached": 0, "answered": 3 * n_q, "errors": 0}
    recs = _records(out / ANSWERS)
    assert len(recs) == 3 * n_q and len({r["key"] for r in recs}) == 3 * n_q
    for r in recs:
        assert len(r["option_logprobs"]) == 4 and all(math.isfinite(x) and x < 0 for x in r["option_logprobs"])
        assert r["reply"] == "ABCD"[int(np.argmax(r["option_logprobs"]))]
        shown = {"video": 4, "blind": 0}.get(r["condition"])
        if shown is not None:
            assert r["shown_frames"] == shown
        else:  # perturbed: around 4 frames (dropped or repeated, p = 0.2 each)
            assert 1 <= r["shown_frames"] <= 8
    metrics = score_run(cfg)
    blind = metrics["results"]["original|blind"]
    assert blind["errors"] == 0 and blind["refusals"] == 0
    lo, hi = blind["AVG ci95"]
    assert lo <= 25.0 <= hi  # a random model without the video: chance, within its bootstrap interval
    files_out = write_report(cfg, metrics)
    assert "| original | blind |" in Path(files_out["summary"]).read_text()
    assert Path(files_out["plot"]).read_bytes()[:4] == b"\x89PNG"

    # resume: nothing is asked twice; a killed run's torn last line and lost answers are asked again
    assert run_answers(cfg, echo=False)["answered"] == 0
    lines = (out / ANSWERS).read_text().splitlines()
    (out / ANSWERS).write_text("\n".join(lines[:-5]) + '\n{"key": "torn', encoding="utf-8")
    again = run_answers(cfg, echo=False)
    assert again["answered"] == 5 and again["cached"] == 3 * n_q - 5
    assert {r["key"] for r in _records_tolerant(out / ANSWERS)} == {r["key"] for r in recs}


def _records_tolerant(path) -> list[dict]:
    from ray_slt.vlmbench.runner import read_answers

    return list(read_answers(str(path)).values())


def test_binary_matching_generated_replies(files, ray_local):
    from ray_slt.vlmbench.report import score_run
    from ray_slt.vlmbench.runner import run_answers

    cfg = _config(files, files["binary"], str(files["root"] / "binary_run"), variants=["skeptical", "nodesc"],
                  limit=6, max_new_tokens=6)  # fmt: skip
    counts = run_answers(cfg, echo=False)
    assert counts["answered"] == 12 and counts["errors"] == 0
    from ray_slt.vlmbench.questions import read_questions

    positives = sum(bool(q["label"]) for q in read_questions(files["binary"])[1][:6])
    m = score_run(cfg)
    for key in ("skeptical|video", "nodesc|video"):
        r = m["results"][key]
        assert r["n"] == 6 and r["positives"] == positives and r["errors"] == 0
        # every question is a TP, FP, FN or TN, or a refused negative (a refused positive is a FN)
        assert r["tp"] + r["fp"] + r["fn"] + r["tn"] <= 6 and r["tp"] + r["fn"] == positives
        assert r["always_yes"]["recall"] == 100.0


@pytest.fixture(scope="module")
def server(files):
    """This project's OpenAI-compatible server on loopback, serving the tiny model."""
    import uvicorn

    from ray_slt.models.vlm.chat import VLMChat
    from ray_slt.serve.openai_compat import build_app

    chat = VLMChat.load(vlm={"model": "tiny:smolvlm", "tiny": {"path": files["tiny"]}, "dtype": "float32"},
                        texts=["What is the ASL gloss of this sign?"])  # fmt: skip
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(build_app(chat, "tiny-smolvlm", max_body_mb=1.0, max_frames=8),
                                        host="127.0.0.1", port=port, log_level="warning"))  # fmt: skip
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        t.join(0.05)
    yield {"url": f"http://127.0.0.1:{port}/v1", "chat": chat}
    srv.should_exit = True
    t.join(10)


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_endpoint_client_against_a_real_server(files, server, ray_local):
    from ray_slt.vlmbench.endpoint import EndpointClient
    from ray_slt.vlmbench.report import score_run
    from ray_slt.vlmbench.runner import read_answers, run_answers

    client = EndpointClient({"base_url": server["url"], "model": "tiny-smolvlm", "api_key_env": None,
                             "timeout_s": 60, "max_tokens": 5, "image_max_side": 64, "jpeg_quality": 85,
                             "retries": 0})  # fmt: skip
    frames = np.random.default_rng(0).integers(0, 255, (3, 48, 64, 3), dtype=np.uint8)
    reply, err = client.ask("Answer briefly.", "What is the ASL gloss of this sign?", frames)
    assert err is None and reply
    # the same question through the model directly gives the same greedy reply (frames through JPEG aside)
    import io

    from PIL import Image

    decoded = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=85)
        decoded.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    direct = server["chat"].reply([{"system": "Answer briefly.", "prompt": "What is the ASL gloss of this sign?",
                                    "frames": np.stack(decoded), "frame_indices": np.arange(3), "fps": None,
                                    "span_len": 3}], max_new_tokens=5)[0]  # fmt: skip
    assert reply == direct

    cfg = _config(files, files["open"], str(files["root"] / "open_run"), variants=["open", "candidates"], limit=3,
                  model={"endpoint": {"base_url": server["url"], "model": "tiny-smolvlm", "api_key_env": None,
                                      "max_tokens": 5, "image_max_side": 64, "concurrency": 2}})  # fmt: skip
    counts = run_answers(cfg, echo=False)
    assert counts == {"tasks": 6, "cached": 0, "answered": 6, "errors": 0}
    recs = list(read_answers(str(files["root"] / "open_run" / "answers.jsonl")).values())
    assert all(r["model"] == "endpoint:tiny-smolvlm" and r["shown_frames"] == 4 for r in recs)
    m = score_run(cfg)
    for r in m["results"].values():
        assert r["errors"] == 0 and r["exact"]["n"] == 3 and 0.0 <= r["synonym"]["accuracy"] <= 100.0
        assert r["synonym"]["accuracy"] >= r["exact"]["accuracy"]

    # a dead endpoint: every question an error record, the run itself completes and counts them
    dead = _config(files, files["open"], str(files["root"] / "dead_run"), variants=["open"], limit=2,
                   model={"endpoint": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "m",
                                       "api_key_env": None, "retries": 0}})  # fmt: skip
    assert run_answers(dead, echo=False)["errors"] == 2
    assert score_run(dead)["results"]["open|video"]["errors"] == 2


def test_server_answers_bad_requests_readably(server):
    url = server["url"] + "/chat/completions"
    ok = {"model": "tiny-smolvlm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    status, body = _post(url, json.dumps(ok).encode())
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"
    status, body = _post(url, json.dumps({**ok, "model": "gpt-5"}).encode())
    assert status == 404 and "not served here" in body["error"]["message"]
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/x.jpg"}}
    status, body = _post(
        url,
        json.dumps({**ok, "messages": [{"role": "user", "content": [remote, {"type": "text", "text": "?"}]}]}).encode(),
    )
    assert status == 400 and "remote URLs are not fetched" in body["error"]["message"]
    status, body = _post(url, b"[1, 2]")
    assert status == 400
    # over the body limit: urllib sends the whole body first and still reads the 413
    status, body = _post(url, b"x" * (2 * 1024 * 1024))
    assert status == 413 and "exceeds" in body["error"]["message"]
    with urllib.request.urlopen(server["url"] + "/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "tiny-smolvlm"


def test_agp_describe_then_summarise_into_a_lexicon(files, ray_local, tmp_path):
    """AGP end to end through the CLI: describe two videos per gloss, merge, write the lexicon and the quality
    protocol's training lexicon."""
    import yaml

    from ray_slt.cli import main as cli
    from ray_slt.data.lexicon import read_lexicon

    lexfile = str(shared("asl_lex", "signdata-11-5-20.csv"))
    q = str(tmp_path / "describe.jsonl")
    assert cli(["vlmbench-describe", "--corpus", str(shared("wlasl")), "--out", q, "--per-gloss", "2",
                "--splits", "train,dev,test", "--examples", lexfile]) == 0  # fmt: skip
    from ray_slt.vlmbench.questions import read_questions

    header, questions = read_questions(q)
    assert len(header["examples"]) == 3 and header["protocol"] == "describe"
    per_gloss: dict[str, int] = {}
    for x in questions:
        per_gloss[x["gold"]] = per_gloss.get(x["gold"], 0) + 1
    assert max(per_gloss.values()) == 2 and len(per_gloss) == 14  # the 14 glosses with local clips
    conf = tmp_path / "describe.yaml"
    conf.write_text(yaml.safe_dump({
        "kind": "vlmbench", "questions": q, "out": str(tmp_path / "run"),
        "model": {"vlm": {"model": "tiny:smolvlm", "tiny": {"path": files["tiny"]}, "dtype": "float32"}},
        "frames": "uniform:4", "decode": {"max_side": 128}, "max_new_tokens": 12,
    }))  # fmt: skip
    assert cli(["vlmbench", str(conf), "--json"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    r = metrics["results"]["dictionary|video"]
    assert r["n"] == len(questions) and r["errors"] == 0
    out = str(tmp_path / "agp.csv")
    assert cli(["vlmbench-summarise", str(conf), "--out", out, "--reference", lexfile]) == 0
    generated, bad = read_lexicon(out)
    assert not bad and {e.source for e in generated} == {"vlm:tiny:smolvlm@seed0"}
    described = {g for g, n in per_gloss.items()}
    assert {e.gloss for e in generated} <= described and len(generated) == r["glosses"]
    quality, _ = read_lexicon(str(tmp_path / "agp.quality.csv"))
    by_gloss = {e.gloss.casefold(): e for e in quality}
    for e in generated:  # the described (training) classes carry the generated descriptions
        assert by_gloss[e.gloss.casefold()].source.startswith("vlm:")
    assert sum(e.source == "asl-lex-2.0" for e in quality) > 2500  # every other class its reference description
