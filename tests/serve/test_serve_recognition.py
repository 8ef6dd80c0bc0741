"""A recognizer served beside a translator in one application: the routes come from the configuration
(``models.translate`` and ``models.recognize``), ``POST /recognize`` answers the ranked signs the model gives in
process, a request may name candidate signs with their descriptions (zero-shot), bad requests get clear 4xx,
and the web page has a tab for each route (a text language model's too: ``POST /score``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cdp import Chromium, chromium_path
from testlib import free_port, request, tiny_checkpoint, tiny_producer, tiny_text2gloss

from ray_slt.data import synthetic


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A few synthetic isolated signs (.pose files) and their lexicon."""
    root = tmp_path_factory.mktemp("iso")
    synthetic.generate_isolated(str(root), synthetic.IsolatedSpec(classes=8, train=1, dev=0, test=1, signers=2))
    lexicon = {}
    for line in (root / "lexicon.csv").read_text().splitlines()[1:]:
        gloss, rest = line.split(",", 1)
        lexicon[gloss] = rest.rsplit(",", 2)[0].strip('"')
    return SimpleNamespace(root=root, poses=sorted((root / "poses").glob("*.pose")), lexicon=lexicon)


@pytest.fixture(scope="module")
def recognizer(corpus, tmp_path_factory) -> str:
    from ray_slt.models.recognition import build_recognizer, save_recognizer
    from ray_slt.models.recognition_config import RecognizerConfig

    cfg = RecognizerConfig.model_validate({
        "encoder": {"hidden": 32, "heads": 4, "ffn": 64, "layers": 1, "gcn_channels": [16]},
        "hali": {"dim": 16}, "text": {"tiny": {"hidden": 32, "layers": 1}}, "top_k": 3,
    })  # fmt: skip
    uri = str(tmp_path_factory.mktemp("rec") / "recognizer")
    save_recognizer(build_recognizer(cfg, sorted(corpus.lexicon), corpus.lexicon, seed=0), uri)
    return uri


@pytest.fixture(scope="module")
def text2gloss(tmp_path_factory) -> str:
    """An (untrained) tiny text -> gloss model with English templates and ASL_ tags: the serving path."""
    return tiny_text2gloss(str(tmp_path_factory.mktemp("t2g") / "text2gloss"))


@pytest.fixture(scope="module")
def producer(tmp_path_factory) -> str:
    """An (untrained) tiny gloss -> pose producer: the serving path."""
    return tiny_producer(str(tmp_path_factory.mktemp("prod") / "producer"))


@pytest.fixture(scope="module")
def producer_set(text2gloss, producer, tmp_path_factory) -> str:
    """SignLLM as served: four sign languages, ase (text -> gloss -> pose) and bfi (a sentence-reading producer),
    each with its own models (MLSF), and qsb and qsc sharing one multilingual text -> LangGloss model and one
    multilingual producer (Prompt2LangGloss's single shared model)."""
    from ray_slt.models.producer_set import add_language

    uri = str(tmp_path_factory.mktemp("set") / "signllm")
    add_language(uri, "ase", producer, text2gloss, spoken=["en"])
    sentences = tiny_producer(str(tmp_path_factory.mktemp("prod_text") / "producer"), input="text", seed=1)
    add_language(uri, "bfi", sentences, spoken=["en"])
    d = tmp_path_factory.mktemp("shared")
    t2g = tiny_text2gloss(str(d / "t2g"), tag="auto", languages=("qsb", "qsc"))
    shared = tiny_producer(str(d / "producer"), seed=2, languages=("qsb", "qsc"))
    for code in ("qsb", "qsc"):
        add_language(uri, code, shared, t2g, spoken=["en"])
    return uri


@pytest.fixture(scope="module")
def textlm(tmp_path_factory) -> str:
    """A tiny text language model (stage textlm) of English sentences, saved (kind textlm)."""
    from ray_slt.models.checkpoint import save_textlm
    from ray_slt.models.config import TextLMConfig
    from ray_slt.models.textlm import build_textlm

    cfg = TextLMConfig.model_validate({"tiny": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64},
                                       "tokenizer": {"vocab_size": 300}})  # fmt: skip
    texts = ["my sister eats an apple", "the weather is fine today", "my brother reads a book"]
    uri = str(tmp_path_factory.mktemp("lm") / "textlm")
    save_textlm(build_textlm(cfg, texts=texts, seed=0), uri)
    return uri


@pytest.fixture(scope="module")
def server(ray_local, recognizer, text2gloss, producer, producer_set, textlm, tmp_path_factory):
    from ray import serve

    from ray_slt.config import build_config
    from ray_slt.serve.app import start

    translator = tiny_checkpoint(str(tmp_path_factory.mktemp("tr") / "tiny"))
    small = {"num_cpus": 0.1}
    cfg = build_config({
        "kind": "serve", "app_name": "rec_app",
        "models": {"translate": {"checkpoint": translator, "deployment": small},
                   "recognize": {"checkpoint": recognizer, "deployment": small, "options": {"top_k": 3}},
                   "text2gloss": {"checkpoint": text2gloss, "deployment": small},
                   "produce": {"checkpoint": producer, "deployment": small},
                   "signllm": {"checkpoint": producer_set, "deployment": small},
                   "score": {"checkpoint": textlm, "deployment": small}},
        "features": {"deployment": small}, "ingress": {"num_cpus": 0}, "http": {"port": free_port()},
    })  # fmt: skip
    url = start(cfg)
    try:
        yield SimpleNamespace(
            url=url,
            recognizer=recognizer,
            text2gloss=text2gloss,
            producer=producer,
            producer_set=producer_set,
            textlm=textlm,
        )
    finally:
        serve.shutdown()


def _sample(path: Path) -> dict:
    """The keypoints the server extracts from a shipped .pose (the extraction stage's own code, in process)."""
    from ray_slt.features.extract import ExtractConfig, SampleProcessor
    from ray_slt.features.store import decode_row

    proc = SampleProcessor(ExtractConfig(), out=str(path.parent / "x"), run_id="t")
    try:
        row = proc.process({"sample_id": path.stem, "pose_uri": str(path)})
    finally:
        proc.close()
    assert row["status"] == "ok", row
    return decode_row(row)


def test_routes_come_from_the_configuration(server):
    status, health = request(server.url + "healthz")
    assert status == 200 and set(health["routes"]) == {"translate", "recognize", "text2gloss", "produce", "signllm",
                                                       "score"}  # fmt: skip
    rec = health["routes"]["recognize"]
    assert (rec["kind"], rec["predicts"], rec["inputs"], rec["protocol"]) == ("recognizer", "labels", "pose", "islr")
    assert rec["settings"]["top_k"] == 3 and rec["settings"]["zero_shot"] is True
    status, spec = request(server.url + "openapi.json")
    assert set(spec["paths"]) == {"/translate", "/recognize", "/text2gloss", "/produce", "/signllm", "/score",
                                  "/healthz"}  # fmt: skip


def test_text2gloss_answers_glosses_without_tags(server):
    """A text -> gloss model is served like any other: a sentence in (JSON or text/plain), the glosses its
    predictor gives in process out, language tags stripped; an empty sentence is a 400."""
    from ray_slt.models.registry import load_predictor

    status, health = request(server.url + "healthz")
    t2g = health["routes"]["text2gloss"]
    assert (t2g["kind"], t2g["predicts"], t2g["inputs"], t2g["protocol"]) == ("text2gloss", "gloss", "text", "gloss")
    assert t2g["settings"]["tag"] == "ASL" and t2g["settings"]["templates"] == "en"
    sentence = "my sister eats an apple"
    want = load_predictor(server.text2gloss).predict([{"text": sentence}])[0]["gloss"]
    status, out = request(server.url + "text2gloss", json.dumps({"text": sentence}).encode(), "application/json")
    assert status == 200 and out["gloss"] == want and "ASL_" not in out["gloss"]
    status, plain = request(server.url + "text2gloss", sentence.encode(), "text/plain")
    assert status == 200 and plain["gloss"] == want
    status, out = request(server.url + "text2gloss", json.dumps({"text": "  "}).encode(), "application/json")
    assert status == 400 and "text" in out["error"]


def test_a_text_language_model_answers_its_log_probability(server):
    """A text LM (kind textlm) is served like any other model: a sentence in, the log-probability, token count and
    perplexity its predictor gives in process out."""
    from ray_slt.models.registry import load_predictor

    status, health = request(server.url + "healthz")
    lm = health["routes"]["score"]
    assert (lm["kind"], lm["predicts"], lm["inputs"], lm["protocol"]) == ("textlm", "score", "text", "lm")
    sentence = "my sister reads an apple"
    want = load_predictor(server.textlm).predict([{"text": sentence}])[0]
    status, out = request(server.url + "score", json.dumps({"text": sentence}).encode(), "application/json")
    assert status == 200 and (out["logprob"], out["tokens"]) == (want["logprob"], want["tokens"])
    assert out["perplexity"] == pytest.approx(want["perplexity"]) and out["tokens"] > 5


def test_produce_answers_a_pose_file_and_the_frames_the_model_gives_in_process(server):
    """A producer is served like any other model: glosses in, the produced frames out (as in process),
    with the production as a .pose file that pose-format reads; empty or over-long input is a clear 4xx."""
    import base64

    import numpy as np
    from pose_format import Pose

    from ray_slt.models.registry import load_predictor

    status, health = request(server.url + "healthz")
    p = health["routes"]["produce"]
    assert (p["kind"], p["predicts"], p["inputs"], p["protocol"]) == ("producer", "pose", "gloss", "production")
    want = load_predictor(server.producer).predict([{"gloss": "MAN APPLE EAT"}])[0]
    status, out = request(server.url + "produce", json.dumps({"gloss": "MAN APPLE EAT"}).encode(), "application/json")
    assert status == 200 and 1 <= out["num_frames"] <= 12
    # the same production as in process; an untrained model feeds its own output back, so float rounding that
    # differs between processes (thread counts) grows along the sequence: compare its start
    k = min(3, len(want["frames"]), out["num_frames"])
    assert np.allclose(out["frames"][:k], want["frames"][:k], atol=1e-3)
    assert out["fps"] == 12.5 and len(out["pose"]["points"]) == out["num_frames"]
    pose = Pose.read(base64.b64decode(out["pose_b64"]))
    assert pose.header.components[0].name == "PROMPT2SIGN_50" and pose.body.data.shape[0] == out["num_frames"]
    assert np.asarray(pose.body.data).shape[1:] == (1, 50, 3)
    status, bad = request(server.url + "produce", json.dumps({"gloss": " "}).encode(), "application/json")
    assert status == 400 and "gloss" in bad["error"]
    status, bad = request(server.url + "produce", json.dumps({"gloss": "A " * 5000}).encode(), "application/json")
    assert status in (400, 413) and "characters" in bad["error"]


def test_a_producer_set_produces_in_the_sign_language_asked_for(server):
    """SignLLM served (MLSF + Prompt2LangGloss): a sentence and a sign language in; the ase chain writes glosses
    (tags stripped) and produces them, the bfi chain produces the sentence itself, each as its models do in
    process; a language the set lacks, a spoken language its chain does not read, or no language with two in
    the set: 400 naming what it has."""
    from ray_slt.models.registry import load_predictor

    status, health = request(server.url + "healthz")
    info = health["routes"]["signllm"]
    assert (info["kind"], info["inputs"], info["predicts"]) == ("producer_set", "text", "pose")
    assert info["languages"] == {"ase": {"spoken": ["en"], "text2gloss": True, "shared": False},
                                 "bfi": {"spoken": ["en"], "text2gloss": False, "shared": False},
                                 "qsb": {"spoken": ["en"], "text2gloss": True, "shared": True},
                                 "qsc": {"spoken": ["en"], "text2gloss": True, "shared": True}}  # fmt: skip
    sentence = "my sister eats an apple"
    gloss = load_predictor(server.text2gloss).predict([{"text": sentence}])[0]["gloss"]
    in_process = load_predictor(server.producer_set)
    want = {
        "ase": load_predictor(server.producer).predict([{"gloss": gloss}])[0],
        **{c: in_process.predict([{"text": sentence, "sign_language": c}])[0] for c in ("bfi", "qsb", "qsc")},
    }
    for code in ("ase", "bfi", "qsb", "qsc"):
        body = json.dumps({"text": sentence, "sign_language": code, "spoken_language": "en"}).encode()
        status, out = request(server.url + "signllm", body, "application/json")
        assert status == 200 and out["sign_language"] == code, out
        assert out["gloss"] == (gloss if code == "ase" else want[code]["gloss"])
        if code in ("qsb", "qsc"):  # what the shared model wrote, tags and all (``gloss``: the language's stripped)
            assert out["langgloss"] == want[code]["langgloss"]
            # an untrained front may write nothing: the producer is given its unknown word, and the answer says so
            assert ("note" in out) == (out["gloss"] == ""), out.get("note")
        k = min(3, len(want[code]["frames"]), out["num_frames"])
        assert np.allclose(out["frames"][:k], want[code]["frames"][:k], atol=1e-3)
    for payload, says in [({"text": sentence, "sign_language": "gsg"}, "no producer for sign language 'gsg'"),
                          ({"text": sentence, "sign_language": "ase", "spoken_language": "de"}, "reads en"),
                          ({"text": sentence}, "one of ase, bfi, qsb, qsc")]:  # fmt: skip
        status, bad = request(server.url + "signllm", json.dumps(payload).encode(), "application/json")
        assert status == 400 and says in bad["error"], (payload, bad)


def test_recognize_answers_what_the_model_gives_in_process(server, corpus):
    from ray_slt.models.registry import load_predictor

    pose = corpus.poses[0]
    status, out = request(server.url + "recognize", pose.read_bytes(), "application/x-pose")
    assert status == 200, out
    assert out["route"] == "recognize" and len(out["ranked"]) == len(out["scores"]) == 3
    assert out["scores"] == sorted(out["scores"], reverse=True)
    predictor = load_predictor(server.recognizer, top_k=3)
    want = predictor.predict([_sample(pose)])[0]
    assert out["ranked"] == want["ranked"] and np.allclose(out["scores"], want["scores"], atol=1e-5)
    assert out["model_id"] == predictor.model_id
    # the same upload to the translator's route still translates
    status, tr = request(server.url + "translate", pose.read_bytes(), "application/x-pose")
    assert status == 200 and isinstance(tr["text"], str) and "ranked" not in tr


def test_candidates_in_the_request_rank_signs_the_model_never_saw(server, corpus):
    from ray_slt.models.registry import load_predictor

    pose = corpus.poses[1]
    cands = [{"gloss": "NEW-A", "description": corpus.lexicon["QSL-001"]},
             {"gloss": "NEW-B", "description": "Closed fist, wrist held straight, starting at the chest, circling."},
             {"gloss": "NEW-C", "description": corpus.lexicon["QSL-002"]}]  # fmt: skip
    body, ctype = _multipart(pose.read_bytes(), json.dumps(cands))
    status, out = request(server.url + "recognize", body, ctype)
    assert status == 200, out
    assert sorted(out["ranked"]) == ["NEW-A", "NEW-B", "NEW-C"]
    want = load_predictor(server.recognizer, top_k=3).predict([{**_sample(pose), "candidates": cands}])[0]
    assert out["ranked"] == want["ranked"]


@pytest.mark.parametrize(
    "route, candidates, status, reason",
    [
        ("recognize", "not json", 400, "'candidates' is not valid JSON"),
        ("recognize", json.dumps([{"gloss": "A"}]), 400, "string 'gloss' and 'description'"),
        ("recognize", json.dumps([{"gloss": "A", "description": "x"}] * 2), 400, "given twice"),
        ("recognize", json.dumps([{"gloss": f"G{i}", "description": "x"} for i in range(1001)]), 413, "limit of 1000"),
        ("translate", json.dumps([{"gloss": "A", "description": "x"}]), 400, "takes no candidates"),
        ("speak", None, 404, "no route 'speak'"),
    ],
)
def test_bad_requests_get_specific_answers(server, corpus, route, candidates, status, reason):
    body, ctype = _multipart(corpus.poses[0].read_bytes(), candidates)
    got, out = request(server.url + route, body, ctype)
    assert got == status and reason in out["error"], out
    assert request(server.url + "healthz")[0] == 200


def _multipart(pose: bytes, candidates: str | None) -> tuple[bytes, str]:
    b = "----raysltboundary"
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="clip.pose"\r\n'
             f"Content-Type: application/x-pose\r\n\r\n".encode() + pose + b"\r\n"]  # fmt: skip
    if candidates is not None:
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="candidates"\r\n\r\n{candidates}\r\n'.encode())
    return b"".join(parts) + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


NO_BROWSER = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (.ci/run installs Debian's chromium)"
)


@NO_BROWSER
def test_page_has_a_recognition_tab(server, corpus, tmp_path):
    async def run() -> dict:
        async with Chromium.launch(str(tmp_path / "profile")) as browser:
            page = await browser.new_page()
            await page.goto(server.url)
            await page.wait_for("document.getElementById('tab-recognize') !== null")
            tabs = await page.eval("[...document.getElementById('tabs').children].map(b => b.textContent)")
            await page.eval("document.getElementById('tab-recognize').click()")
            await page.wait_for("document.getElementById('service').textContent.includes('/recognize')")
            candidates_shown = await page.eval("!document.getElementById('candidates-row').hidden")
            lines = "NEW-A: closed fist at the chest, circling\\nNEW-B: flat hand at the chin, tapping twice"
            await page.eval(f"document.getElementById('candidates').value = '{lines}'")
            await page.set_files("#file", [str(corpus.poses[0])])
            await page.wait_for("!document.getElementById('translate').disabled")
            label = await page.eval("document.getElementById('translate').textContent")
            await page.eval("document.getElementById('translate').click()")
            state = await page.wait_for(
                "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state", timeout=120
            )
            return {
                "tabs": tabs, "candidates_shown": candidates_shown, "label": label, "state": state,
                "status": await page.eval("document.getElementById('status').textContent"),
                "items": await page.eval("[...document.getElementById('ranking').children].map(li => li.textContent)"),
                "result": await page.eval("window.lastResult || null"),
            }  # fmt: skip

    out = asyncio.run(run())
    # /healthz order: by route name
    assert out["tabs"] == ["Produce · /produce", "Recognize · /recognize", "Score · /score", "Produce · /signllm",
                           "Write glosses · /text2gloss", "Translate · /translate"]  # fmt: skip
    assert out["candidates_shown"] and out["label"] == "Recognize"
    assert out["state"] == "done", out["status"]
    assert sorted(out["result"]["ranked"]) == ["NEW-A", "NEW-B"]
    assert [i.split(" (")[0] for i in out["items"]] == out["result"]["ranked"]


@NO_BROWSER
def test_page_has_a_text_tab_that_writes_glosses(server, tmp_path):
    """The text -> gloss route gets a tab with a sentence box instead of the clip input; its answer is the glosses
    the model gives in process."""
    from ray_slt.models.registry import load_predictor

    sentence = "tomorrow my sister reads a book"
    want = load_predictor(server.text2gloss).predict([{"text": sentence}])[0]["gloss"]

    async def run() -> dict:
        async with Chromium.launch(str(tmp_path / "profile")) as browser:
            page = await browser.new_page()
            await page.goto(server.url)
            await page.wait_for("document.getElementById('tab-text2gloss') !== null")
            await page.eval("document.getElementById('tab-text2gloss').click()")
            await page.wait_for("document.getElementById('service').textContent.includes('/text2gloss')")
            cards = await page.eval("[document.getElementById('input-card').hidden, "
                                    "document.getElementById('text-card').hidden]")  # fmt: skip
            await page.eval(f"document.getElementById('sentence').value = '{sentence}'")
            await page.eval("document.getElementById('send-text').click()")
            state = await page.wait_for(
                "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state", timeout=120
            )
            return {
                "cards": cards, "state": state,
                "status": await page.eval("document.getElementById('text-status').textContent"),
                "title": await page.eval("document.getElementById('result-title').textContent"),
                "shown": await page.eval("document.getElementById('translation').textContent"),
                "result": await page.eval("window.lastResult || null"),
            }  # fmt: skip

    out = asyncio.run(run())
    assert out["cards"] == [True, False]  # the clip input hidden, the sentence box shown
    assert out["state"] == "done", out["status"]
    assert out["title"] == "2 · Glosses" and out["result"]["gloss"] == want and out["shown"] == (want or "(no glosses)")


@NO_BROWSER
def test_page_has_a_produce_tab_that_animates_the_produced_pose(server, tmp_path):
    """The producer's route gets a tab with a gloss box; its answer is animated on the canvas (frame after frame)
    and offered as a .pose download."""

    async def run() -> dict:
        async with Chromium.launch(str(tmp_path / "profile")) as browser:
            page = await browser.new_page()
            await page.goto(server.url)
            await page.wait_for("document.getElementById('tab-produce') !== null")
            await page.eval("document.getElementById('tab-produce').click()")
            await page.wait_for("document.getElementById('service').textContent.includes('/produce')")
            help_text = await page.eval("document.getElementById('text-help').textContent")
            await page.eval("document.getElementById('sentence').value = 'MAN APPLE EAT'")
            await page.eval("document.getElementById('send-text').click()")
            state = await page.wait_for(
                "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state", timeout=120
            )
            await page.wait_for("Number(document.getElementById('overlay').dataset.drawn) > 3", timeout=30)
            out = {
                "help": help_text, "state": state,
                "status": await page.eval("document.getElementById('text-status').textContent"),
                "title": await page.eval("document.getElementById('result-title').textContent"),
                "viewer": await page.eval("document.getElementById('viewer-title').textContent"),
                "viewer_shown": await page.eval("!document.getElementById('viewer-card').hidden"),
                "download": await page.eval("document.getElementById('download').hidden ? null : "
                                            "document.getElementById('download').href.slice(0, 37)"),
                "info": await page.eval("document.getElementById('frame-info').textContent"),
                "result": await page.eval("window.lastResult || null"),
                "language_row_hidden": await page.eval("document.getElementById('language-row').hidden"),
            }  # fmt: skip
            # the producer set's tab: a sign language to choose, the sentence produced in it
            await page.eval("document.getElementById('tab-signllm').click()")
            await page.wait_for("document.getElementById('service').textContent.includes('/signllm')")
            out["set_row_shown"] = await page.eval("!document.getElementById('language-row').hidden")
            out["options"] = await page.eval(
                "[...document.getElementById('sign-language').options].map(o => o.value + ' = ' + o.textContent)"
            )
            await page.eval("document.getElementById('sign-language').value = 'ase'")
            await page.eval("document.getElementById('sentence').value = 'my sister eats an apple'")
            await page.eval("document.body.dataset.state = 'working'; document.getElementById('send-text').click()")
            out["set_state"] = await page.wait_for(
                "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state", timeout=120
            )
            out["set_shown"] = await page.eval("document.getElementById('translation').textContent")
            out["set_result"] = await page.eval("window.lastResult || null")
            return out

    out = asyncio.run(run())
    assert out["state"] == "done", out["status"]
    assert out["help"].startswith("The model of the tab chosen above reads glosses and writes a signing pose")
    assert out["title"] == "2 · Produced signing" and out["viewer"] == "3 · Produced pose" and out["viewer_shown"]
    assert out["download"] == "data:application/octet-stream;base64,"
    assert out["info"].endswith(f"{out['result']['num_frames']} frames produced")
    assert out["language_row_hidden"] and out["set_row_shown"]
    assert out["options"] == [
        "ase = ase · text → glosses → pose (from en)",
        "bfi = bfi · text → pose (from en)",
        "qsb = qsb · text → glosses → pose (shared model) (from en)",
        "qsc = qsc · text → glosses → pose (shared model) (from en)",
    ]
    r = out["set_result"]
    assert out["set_state"] == "done" and r["sign_language"] == "ase" and isinstance(r["frames"], list)
    assert out["set_shown"] == f"{r['num_frames']} frames at {r['fps']:.1f} fps · ase glosses: {r['gloss'] or '(none)'}"
